// Every rounds report in benchmarks/results/ (rounds-*.md, written by benchmarks/rounds.ts), one
// line each: what Parkline, the Node floor and the C floor reached against Nchan in that run. The
// floors do nothing but read publishes and write deliveries: how often one of them reaches a target
// says how often that host, with the load generator on it, allowed any server of that kind to.
//
//   node benchmarks/micro/rounds-history.ts [dir]      (default benchmarks/results)
//
// Columns: the one-to-one highest clean rate over Nchan's (SSE, then long-poll; lower medians), and
// the closed-loop broadcast's deliveries/s over Nchan's (medians), each as the report prints them.
// A run without a row or a server has "-". The last lines count the runs in which each reached the
// issue's targets (1.3× for one-to-one SSE and the closed loop, 1× for long-poll).
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'

type Who = 'P' | 'N' | 'F' | 'C'
const dir = process.argv[2] ?? 'benchmarks/results'

function who (label: string): Who {
  if (label.startsWith('Parkline')) return 'P'
  if (label.startsWith('Nchan')) return 'N'
  return label.includes('bare C') ? 'C' : 'F'
}

/** "Highest clean rate (msgs/s), lower median [each round's]: Parkline --workers 1 6,000 [...]; Nchan (nginx) 8,000 [...]; …" */
function cleanRates (line: string): Partial<Record<Who, number>> {
  const out: Partial<Record<Who, number>> = {}
  for (const m of line.matchAll(/(Parkline --workers \d+|Nchan \(nginx\)|floor \(bare node:net\)|floor \(bare C, epoll\)) ([\d,]+) \[/g)) {
    out[who(m[1]!)] = Number(m[2]!.replace(/,/g, ''))
  }
  return out
}

/** The closed-loop table's "deliveries/s / Nchan's" column. */
function closedLoop (text: string): Partial<Record<Who, number>> {
  const out: Partial<Record<Who, number>> = {}
  const section = /## Closed-loop broadcast\n\n([\s\S]*?)\n\n/.exec(text)?.[1] ?? ''
  for (const row of section.split('\n')) {
    const c = row.split('|').map((x) => x.trim())
    if (c.length < 5 || !/^(Parkline|Nchan|floor)/.test(c[1]!)) continue
    const r = Number.parseFloat(c[4]!)
    if (Number.isFinite(r)) out[who(c[1]!)] = r
  }
  return out
}

const ratio = (o: Partial<Record<Who, number>>, k: Who): number | null =>
  o[k] !== undefined && o.N !== undefined && o.N > 0 ? o[k]! / o.N : null
const show = (x: number | null): string => x === null ? '-' : x.toFixed(2) + '×'

const rows: Array<{ file: string, cpu: string, sse: Array<number | null>, lp: Array<number | null>, cl: Array<number | null> }> = []
for (const file of readdirSync(dir).filter((f) => /^rounds-.*\.md$/.test(f)).sort()) {
  const text = readFileSync(join(dir, file), 'utf8')
  const cpu = /2 cores \((Intel|AMD)/.exec(text)?.[1] ?? '?'
  const lines = [...text.matchAll(/^Highest clean rate[^:]*: (.*)$/gm)].map((m) => m[1]!)
  const sse = cleanRates(lines[0] ?? '')
  const lp = cleanRates(lines[1] ?? '')
  const cl = closedLoop(text)
  const three = (o: Partial<Record<Who, number>>, direct = false): Array<number | null> =>
    (['P', 'F', 'C'] as const).map((k) => direct ? (o[k] ?? null) : ratio(o, k))
  // (a report that is not one of the runner's, as this script's own output, has neither)
  if (lines.length === 0 && Object.keys(cl).length === 0) continue
  rows.push({ file, cpu, sse: three(sse), lp: three(lp), cl: three(cl, true) })
}

console.log('| report | host | one-to-one SSE: Parkline / floor / C floor | long-poll: Parkline / floor / C floor | closed loop: Parkline / floor / C floor |')
console.log('|---|---|--:|--:|--:|')
for (const r of rows) {
  console.log(`| ${r.file} | ${r.cpu} | ${r.sse.map(show).join(' / ')} | ${r.lp.map(show).join(' / ')} | ${r.cl.map(show).join(' / ')} |`)
}
const count = (pick: (r: typeof rows[number]) => number | null, bound: number): string => {
  const xs = rows.map(pick).filter((x): x is number => x !== null)
  return `${xs.filter((x) => x >= bound - 1e-9).length} of ${xs.length}`
}
console.log('')
for (const [i, name] of (['Parkline', 'the Node floor', 'the C floor'] as const).entries()) {
  console.log(`- ${name}: one-to-one SSE ≥ 1.3× Nchan's clean rate in ${count((r) => r.sse[i]!, 1.3)} runs; long-poll ≥ 1× in ${count((r) => r.lp[i]!, 1)}; closed loop ≥ 1.3× Nchan's deliveries/s in ${count((r) => r.cl[i]!, 1.3)}`)
}
