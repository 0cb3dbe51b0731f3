// The suite's rows that one run of each server cannot settle, run ROUNDS times (`npm run
// bench:rounds`): benchmarks/run.ts once per round with the same knobs, the servers in a different
// order each round (rotated), then each figure's median over the rounds beside every round's own.
// On a shared 2-core machine one run's p99 moves by 2-5× from minute to minute for every server
// alike (Nchan against itself: the suite's "Nchan 2nd run" column); a median of rounds that
// alternate the servers compares them under the same conditions.
//
// Reported per server: the open-loop broadcast (3 and 10 msgs/s: p99, and deliveries/s at 10), the
// closed-loop broadcast (deliveries/s, p99, deliveries per server CPU-second), and per one-to-one
// ladder (SSE, long-poll) each rate's p99, in how many rounds it was clean, and the server's CPU
// per message, and the highest clean rate. The
// issue-13 targets are judged on the medians: p99 ≤ Nchan's at every rate Nchan was clean at in
// most rounds (a rate Parkline's ladder did not reach counts against it), clean rate (not judged
// where Nchan was clean at the ladder's top: its own ceiling is then unknown), broadcast ratios
// (closed loop ≥ 1.3× Nchan's deliveries/s; open loop at 10 msgs/s, p99 ≤ 0.8× Nchan's).
// A round that fails is reported and left out; the others stand.
//
// Knobs (env): ROUNDS (5), SERVERS (parkline,nchan,floor, and floorc where the machine has a C
// compiler; one Parkline topology per run: the
// report tells servers apart by label), SCENARIOS (rate,broadcast,one2one,longpoll),
// ONE2ONE_RATES (1000,2000,4000,5000,6000,6500,7000,8000,10000,13000,16000: from 4,000 up the
// steps are at most 1.3× apart, and 6,500 and 13,000 are 1.3× a ceiling of 5,000 and 10,000, so
// the clean-rate ratio can resolve the 1.3× target), BENCH_OUT (report path; default
// benchmarks/results/rounds-<date>.md), ROUNDS_KEEP (a directory: each round's own run.ts report
// is kept there as round-<n>.md, with its .json and SVGs, a failed round's as round-<n>-failed.md;
// by default they are deleted), ROUNDS_FROM (such a directory: write the report again from its
// rounds, running nothing), and every knob of benchmarks/run.ts, passed through.
//
// Where the floor (bare node:net) ran, each verdict also gives the floor's figure against Nchan's,
// and the broadcast verdicts how busy the whole machine was. The floor does nothing per message
// but its writes: a target it misses as well is one no Node server reached on this host in these
// rounds. That is context for the verdict, never used to turn one into "met". The C floor
// (SERVERS=…,floorc; benchmarks/suite/floor.c, epoll and write(2)) goes further: a broadcast
// target it misses as well is one no server of any language reached beside this load generator
// on this host in these rounds.
import { spawnSync } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { hasCompiler } from './suite/servers.ts'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const env = process.env
const ROUNDS = Math.max(1, Math.floor(Number(env.ROUNDS ?? 5)))
const SERVERS = (env.SERVERS ?? (hasCompiler() ? 'parkline,nchan,floor,floorc' : 'parkline,nchan,floor')).split(',').map((s) => s.trim()).filter((s) => s !== '')
const SCENARIOS = env.SCENARIOS ?? 'rate,broadcast,one2one,longpoll'
const RATES = env.ONE2ONE_RATES ?? '1000,2000,4000,5000,6000,6500,7000,8000,10000,13000,16000'

type Rounds = Array<{ order: string[], servers: Map<string, Round>, seconds: number }>

/** What the report's header says of the run. */
interface Meta {
  date: string
  command: string
  /** commit (and whether the tree had changes), Node, cores, load average before and after */
  machine: string
  scenarios: string
  rates: string
  failed: string[]
}

/** One server's figures from one round's report. */
interface Round {
  /** closed loop; perCpuSec: deliveries per second of the server's CPU (absent in older reports) */
  broadcast?: { perSec: number, p99: number, perCpuSec?: number }
  /** the open-loop broadcast (the suite's `rate` scenario): p99 at 3 msgs/s, deliveries/s and p99 at 10 */
  open?: { p99At3: number, perSecAt10: number, p99At10: number }
  /** transport ('SSE' | 'long-poll') → rate → { p99, clean, why (not clean) } */
  steps: Map<string, Map<number, Step>>
  /** scenario as run.ts names it ('rate 10/s', 'broadcast', …) → the machine's busy % of all its cores in that window */
  busy: Map<string, number>
}

/** cpuUs: the server's CPU per message published at that step (absent in older reports) */
interface Step { p99: number, clean: boolean, why: string, cpuUs?: number }

const num = (s: string): number => Number(s.replace(/,/g, ''))

/** Rows of the markdown table that follows `heading` (cells trimmed, header first). */
function table (md: string, heading: RegExp): string[][] {
  const lines = md.split('\n')
  let i = lines.findIndex((l) => heading.test(l))
  if (i < 0) return []
  while (i < lines.length && !lines[i]!.startsWith('|')) i++
  const rows: string[][] = []
  for (; i < lines.length && lines[i]!.startsWith('|'); i++) {
    if (/^\|[-:| ]+\|$/.test(lines[i]!)) continue
    rows.push(lines[i]!.split('|').slice(1, -1).map((c) => c.trim()))
  }
  return rows
}

/** label (as the report names the server) → its figures. */
function parseRound (md: string): Map<string, Round> {
  const out = new Map<string, Round>()
  const get = (label: string): Round => {
    let r = out.get(label)
    if (r === undefined) out.set(label, r = { steps: new Map(), busy: new Map() })
    return r
  }
  const results = table(md, /^## Results/)
  if (results.length > 0) {
    const labels = results[0]!.slice(2)
    const row = (name: string): string[] | undefined => results.find((r) => r[0] === name)
    const per = row('broadcast: deliveries/s')
    const p99 = row('broadcast: latency p99 (ms)')
    const perCpu = row('broadcast: deliveries per server CPU-second')
    if (per !== undefined && p99 !== undefined) {
      for (const [i, label] of labels.entries()) {
        const b: NonNullable<Round['broadcast']> = { perSec: num(per[i + 2] ?? ''), p99: num(p99[i + 2] ?? '') }
        if (label.includes(' / ') || !(b.perSec > 0) || !Number.isFinite(b.p99)) continue
        const c = num(perCpu?.[i + 2] ?? 'n/a')
        if (Number.isFinite(c)) b.perCpuSec = c
        get(label).broadcast = b
      }
    }
    const o3 = row('rate 3 msg/s: latency p99 (ms)')
    const o10 = row('rate 10 msg/s: deliveries/s')
    const o10p = row('rate 10 msg/s: latency p99 (ms)')
    if (o3 !== undefined && o10 !== undefined && o10p !== undefined) {
      for (const [i, label] of labels.entries()) {
        const o = { p99At3: num(o3[i + 2] ?? ''), perSecAt10: num(o10[i + 2] ?? ''), p99At10: num(o10p[i + 2] ?? '') }
        if (label.includes(' / ') || !(o.perSecAt10 > 0) || !Number.isFinite(o.p99At10) || !Number.isFinite(o.p99At3)) continue
        get(label).open = o
      }
    }
  }
  for (const r of table(md, /^## one2one steps/).slice(1)) {
    const [label, transport, rate, , , , p99, clean, why, cpu] = r
    if (why!.startsWith('warm-up') || !Number.isFinite(num(p99!))) continue
    const byRate = get(label!).steps.get(transport!) ?? new Map<number, Step>()
    get(label!).steps.set(transport!, byRate)
    const step: Step = { p99: num(p99!), clean: clean === 'yes', why: clean === 'yes' ? '' : why! }
    if (cpu !== undefined && Number.isFinite(num(cpu))) step.cpuUs = num(cpu)
    byRate.set(num(rate!), step)
  }
  const bound = table(md, /^## What bound each run/)
  // 'machine busy (of 200)': of the cores × 100
  const of = num(/machine busy \(of (\d+)\)/.exec(bound[0]?.join('|') ?? '')?.[1] ?? '')
  const at = bound[0]?.findIndex((c) => c.startsWith('machine busy')) ?? -1
  if (of > 0 && at > 0) {
    for (const r of bound.slice(1)) {
      const busy = num(r[at] || 'n/a')
      if (Number.isFinite(busy)) get(r[0]!).busy.set(r[1]!, 100 * busy / of)
    }
  }
  return out
}

/**
 * The server's CPU per message (µs) at each rate, median [each round's], and Parkline's over
 * Nchan's: what each costs the host per message, which late sends of a publisher sharing the cores
 * do not move the way they move a clean rate. Not an issue-13 target; reported beside them.
 */
function cpuTable (L: string[], transport: string, have: string[], rates: number[], rounds: Array<Map<string, Round>>, parkline: string | undefined, nchan: string | undefined): void {
  const vals = (l: string, rate: number): number[] => cpuOf(rounds, l, transport, rate)
  if (!rates.some((rate) => have.some((l) => vals(l, rate).length > 0))) return
  const both = parkline !== undefined && nchan !== undefined
  L.push(`Server CPU per message (µs; all the server's processes, over each step's window), ${transport}:`, '')
  L.push(`| msgs/s | ${have.join(' | ')} |${both ? ' Parkline / Nchan |' : ''}`, `|--:|${have.map(() => '--:').join('|')}|${both ? '--:|' : ''}`)
  const ratios: number[] = []
  for (const rate of rates) {
    const cells = have.map((l) => { const v = vals(l, rate); return v.length === 0 ? '-' : `${fmt(median(v))} [${v.map(fmt).join(', ')}]` })
    let rr = ''
    if (both) {
      const p = vals(parkline, rate)
      const n = vals(nchan, rate)
      if (p.length > 0 && n.length > 0 && median(n) > 0) {
        ratios.push(median(p) / median(n))
        rr = ` ${ratio(median(p), median(n))} |`
      } else rr = ' n/a |'
    }
    L.push(`| ${rate.toLocaleString('en-US')} | ${cells.join(' | ')} |${rr}`)
  }
  L.push('')
  if (ratios.length > 0) L.push(`Parkline's median CPU per message over Nchan's, ${transport}, at the ${ratios.length} rates both ran: ${Math.min(...ratios).toFixed(2)}× to ${Math.max(...ratios).toFixed(2)}×.`, '')
}

/** One server's CPU per message (µs) at one rate, each round's that has it. */
function cpuOf (rounds: Array<Map<string, Round>>, label: string, transport: string, rate: number): number[] {
  return rounds.flatMap((r) => { const c = r.get(label)?.steps.get(transport)?.get(rate)?.cpuUs; return c === undefined ? [] : [c] })
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

/** The lower median: always one of the values (a rate the ladder ran). */
function lowerMedian (xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[(xs.length - 1) >> 1]!
}

const fmt = (x: number): string => x >= 100 ? Math.round(x).toLocaleString('en-US') : x.toFixed(x >= 10 ? 1 : 2)
const ratio = (a: number, b: number): string => b > 0 ? (a / b).toFixed(2) + '×' : 'n/a'

function main (): void {
  if ((env.ROUNDS_FROM ?? '') !== '') { rerender(env.ROUNDS_FROM!); return }
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'parkline-rounds-'))
  const rounds: Rounds = []
  const failed: string[] = []
  const started = new Date()
  const load = os.loadavg()
  try {
    for (let i = 0; i < ROUNDS; i++) {
      const order = SERVERS.map((_, k) => SERVERS[(k + i) % SERVERS.length]!)
      const out = path.join(tmp, `round-${i + 1}.md`)
      console.log(`round ${i + 1}/${ROUNDS}: ${order.join(', ')}`)
      const t0 = Date.now()
      const r = spawnSync(process.execPath, [path.join(ROOT, 'benchmarks/run.ts')], {
        cwd: ROOT,
        stdio: ['ignore', 'inherit', 'inherit'],
        env: { ...env, SERVERS: order.join(','), SCENARIOS, ONE2ONE_RATES: RATES, BENCH_OUT: out }
      })
      if (r.status !== 0) {
        failed.push(`round ${i + 1} (${order.join(', ')}): benchmarks/run.ts exited with ${r.status ?? r.signal}`)
        console.log(failed.at(-1))
        // kept under a name ROUNDS_FROM does not read: left out there too
        try { renameSync(out, path.join(tmp, `round-${i + 1}-failed.md`)) } catch {}
        continue
      }
      rounds.push({ order, servers: parseRound(readFileSync(out, 'utf8')), seconds: (Date.now() - t0) / 1000 })
    }
  } finally {
    const keep = env.ROUNDS_KEEP ?? ''
    if (keep !== '') {
      try {
        mkdirSync(keep, { recursive: true })
        for (const f of readdirSync(tmp)) copyFileSync(path.join(tmp, f), path.join(keep, f))
      } catch (err) {
        // the medians still get written; only the rounds' own reports are lost
        console.log(`ROUNDS_KEEP: could not keep the rounds' reports in ${keep}: ${(err as Error).message}`)
      }
    }
    rmSync(tmp, { recursive: true, force: true })
  }
  const commit = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim()
  const dirty = spawnSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim() !== ''
  const set = ['ROUNDS', 'SERVERS', 'SCENARIOS', 'ONE2ONE_RATES', 'SUBSCRIBERS', 'DURATION', 'STEP_DURATION', 'WARMUP', 'WORKERS', 'PARKLINE_NODE_ARGS']
    .filter((k) => env[k] !== undefined).map((k) => `${k}=${env[k]}`)
  writeReport(rounds, {
    date: started.toISOString().slice(0, 10),
    command: `\`${[...set, 'node benchmarks/rounds.ts'].join(' ')}\``,
    machine: `commit: ${commit}${dirty ? ' (with uncommitted changes)' : ''}; Node ${process.version}; ${os.availableParallelism()} cores (${os.cpus()[0]?.model.trim() ?? 'unknown'}), load average ${load.map((x) => x.toFixed(2)).join(' ')} before, ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} after`,
    scenarios: SCENARIOS,
    rates: RATES,
    failed
  })
}

/**
 * ROUNDS_FROM=<dir>: the report again from the rounds' own reports that ROUNDS_KEEP kept
 * (round-<n>.md), without running anything: each round's servers, wall time, commit and knobs as
 * its report gives them.
 */
function rerender (dir: string): void {
  const files = readdirSync(dir).map((f) => /^round-(\d+)\.md$/.exec(f)).filter((m) => m !== null)
    .sort((a, b) => Number(a[1]) - Number(b[1])).map((m) => path.join(dir, m[0]))
  if (files.length === 0) throw new Error(`ROUNDS_FROM: no round-<n>.md in ${dir}`)
  const docs = files.map((f) => readFileSync(f, 'utf8'))
  const first = docs[0]!
  const rounds: Rounds = docs.map((md) => ({
    order: (/, servers ([\w,]+), /.exec(md)?.[1] ?? '?').split(','),
    servers: parseRound(md),
    seconds: Number(/total wall time (\d+) s/.exec(md)?.[1] ?? NaN)
  }))
  const knob = (name: string, fallback: string): string => new RegExp(`\\b${name}=(\\S+)`).exec(first)?.[1] ?? fallback
  // 'load average 1.03 0.85 0.61 before, 0.85 0.85 0.62 after'
  const loads = (md: string, when: string): string => new RegExp(`(?:load average |, )([\\d.]+ [\\d.]+ [\\d.]+) ${when}`).exec(md)?.[1] ?? '?'
  const machine = /- machine: (\d+ cores \([^)]*\))/.exec(first)?.[1] ?? '?'
  writeReport(rounds, {
    date: /^# [^(]*\((\d{4}-\d{2}-\d{2})\)/.exec(first)?.[1] ?? '?',
    command: `\`ROUNDS_FROM=${dir} node benchmarks/rounds.ts\`, re-rendered from ${files.length} rounds' reports (each one's own command is in it; the first's: ${/- command: (`[^`]*`)/.exec(first)?.[1] ?? '?'})`,
    machine: `commit: ${/- commit: ([^;]+);/.exec(first)?.[1] ?? '?'}; ${/; (Node v[\d.]+);/.exec(first)?.[1] ?? '?'}; ${machine}, load average ${loads(first, 'before')} before, ${loads(docs.at(-1)!, 'after')} after`,
    scenarios: knob('SCENARIOS', SCENARIOS),
    rates: knob('ONE2ONE_RATES', RATES),
    failed: readdirSync(dir).filter((f) => /^round-\d+-failed\.md$/.test(f)).sort().map((f) => `${f}: its run.ts exited with an error`)
  })
}

function writeReport (rounds: Rounds, meta: Meta): void {
  const failed = meta.failed
  const TOP_RATE = Math.max(...meta.rates.split(',').map(Number).filter((x) => x > 0))
  const labels = [...new Set(rounds.flatMap((r) => [...r.servers.keys()]))]
  const nchan = labels.find((l) => l === 'Nchan (nginx)')
  const parkline = labels.find((l) => l.startsWith('Parkline'))
  const floor = labels.find((l) => l === 'floor (bare node:net)')
  const cfloor = labels.find((l) => l === 'floor (bare C, epoll)')
  const L: string[] = []
  L.push(`# Suite rows over ${rounds.length} rounds (${meta.date})`, '')
  L.push(`- command: ${meta.command}`)
  L.push(`- ${meta.machine}`)
  L.push(`- each round is one \`node benchmarks/run.ts\` with SCENARIOS=${meta.scenarios} ONE2ONE_RATES=${meta.rates}, the servers in this order: ` +
    rounds.map((r, i) => `${i + 1}: ${r.order.join(', ')} (${Math.round(r.seconds)} s)`).join('; '))
  L.push('- a figure is the median over the rounds; the rounds\' own values follow it in brackets, in round order')
  for (const f of failed) L.push(`- **failed, left out:** ${f}`)
  L.push('')

  const oc = labels.filter((l) => rounds.some((r) => r.servers.get(l)?.open !== undefined))
  const oMed = new Map<string, { p99At3: number, perSecAt10: number, p99At10: number }>()
  if (oc.length > 0) {
    L.push('## Open-loop broadcast (3 msgs/s, then 10 msgs/s to every subscriber)', '')
    L.push('| server | p99 at 3 msgs/s (ms) | deliveries/s at 10 msgs/s | p99 at 10 msgs/s (ms) | p99 at 10 / Nchan\'s | rounds with a figure |', '|---|--:|--:|--:|--:|--:|')
    for (const l of oc) {
      const xs = rounds.map((r) => r.servers.get(l)?.open).filter((o) => o !== undefined)
      oMed.set(l, { p99At3: median(xs.map((o) => o.p99At3)), perSecAt10: median(xs.map((o) => o.perSecAt10)), p99At10: median(xs.map((o) => o.p99At10)) })
    }
    for (const l of oc) {
      const xs = rounds.map((r) => r.servers.get(l)?.open).filter((o) => o !== undefined)
      const m = oMed.get(l)!
      const n = nchan !== undefined ? oMed.get(nchan) : undefined
      L.push(`| ${l} | ${fmt(m.p99At3)} [${xs.map((o) => fmt(o.p99At3)).join(', ')}] | ${fmt(m.perSecAt10)} [${xs.map((o) => fmt(o.perSecAt10)).join(', ')}] | ` +
        `${fmt(m.p99At10)} [${xs.map((o) => fmt(o.p99At10)).join(', ')}] | ${n !== undefined ? ratio(m.p99At10, n.p99At10) : 'n/a'} | ${xs.length} of ${rounds.length} |`)
    }
    L.push('')
  }

  const bc = labels.filter((l) => rounds.some((r) => r.servers.get(l)?.broadcast !== undefined))
  const bMed = new Map<string, { perSec: number, p99: number, perCpuSec: number | null }>()
  if (bc.length > 0) {
    L.push('## Closed-loop broadcast', '')
    L.push('| server | deliveries/s | p99 (ms) | deliveries/s / Nchan\'s | p99 / Nchan\'s | deliveries per server CPU-second | per CPU-second / Nchan\'s | rounds with a figure |', '|---|--:|--:|--:|--:|--:|--:|--:|')
    for (const l of bc) {
      const xs = rounds.map((r) => r.servers.get(l)?.broadcast).filter((b) => b !== undefined)
      const cpu = xs.flatMap((b) => b.perCpuSec === undefined ? [] : [b.perCpuSec])
      bMed.set(l, { perSec: median(xs.map((b) => b.perSec)), p99: median(xs.map((b) => b.p99)), perCpuSec: cpu.length > 0 ? median(cpu) : null })
    }
    for (const l of bc) {
      const xs = rounds.map((r) => r.servers.get(l)?.broadcast).filter((b) => b !== undefined)
      const m = bMed.get(l)!
      const n = nchan !== undefined ? bMed.get(nchan) : undefined
      const cpu = m.perCpuSec === null ? 'n/a' : `${fmt(m.perCpuSec)} [${xs.map((b) => b.perCpuSec === undefined ? '-' : fmt(b.perCpuSec)).join(', ')}]`
      const cpuRatio = m.perCpuSec !== null && n?.perCpuSec != null ? ratio(m.perCpuSec, n.perCpuSec) : 'n/a'
      L.push(`| ${l} | ${fmt(m.perSec)} [${xs.map((b) => fmt(b.perSec)).join(', ')}] | ${fmt(m.p99)} [${xs.map((b) => fmt(b.p99)).join(', ')}] | ` +
        `${n !== undefined ? ratio(m.perSec, n.perSec) : 'n/a'} | ${n !== undefined ? ratio(m.p99, n.p99) : 'n/a'} | ${cpu} | ${cpuRatio} | ${xs.length} of ${rounds.length} |`)
    }
    L.push('', 'Deliveries per server CPU-second: the deliveries over the CPU time of all the server\'s processes (utime+stime) in the same window. ' +
      'It is what each server delivers per second of its own CPU; deliveries/s are what it carried beside the load generator on this host.', '')
  }

  const judged: string[] = []
  for (const transport of ['SSE', 'long-poll']) {
    const have = labels.filter((l) => rounds.some((r) => r.servers.get(l)?.steps.has(transport)))
    if (have.length === 0) continue
    const rates = [...new Set(rounds.flatMap((r) => have.flatMap((l) => [...(r.servers.get(l)?.steps.get(transport)?.keys() ?? [])])))].sort((a, b) => a - b)
    const cell = (l: string, rate: number): { med: number, vals: number[], clean: number, ran: number } | null => {
      const s = rounds.map((r) => r.servers.get(l)?.steps.get(transport)?.get(rate)).filter((x) => x !== undefined)
      if (s.length === 0) return null
      return { med: median(s.map((x) => x.p99)), vals: s.map((x) => x.p99), clean: s.filter((x) => x.clean).length, ran: s.length }
    }
    L.push(`## One-to-one, ${transport} subscribers: p99 (ms) per rate`, '')
    L.push('Each cell: median p99 [each round\'s], then clean in how many of the rounds (a ladder stops at its first step that is not clean, so a later rate may have run in fewer rounds).', '')
    L.push(`| msgs/s | ${have.join(' | ')} |${parkline !== undefined && nchan !== undefined ? ' Parkline / Nchan |' : ''}`, `|--:|${have.map(() => '--:').join('|')}|${parkline !== undefined && nchan !== undefined ? '--:|' : ''}`)
    // per server against Nchan, at the rates Nchan was clean at in most rounds: the worst p99
    // ratio, and the rates its ladder never reached (a miss)
    // (Parkline and the floor always have one: a ladder that gave no figure reached no rate)
    const vsNchan = new Map<string, { worst: { r: number, rate: number } | null, unreached: number[] }>()
    for (const l of new Set([...have, ...[parkline, floor].filter((x) => x !== undefined)])) vsNchan.set(l, { worst: null, unreached: [] })
    for (const rate of rates) {
      const cells = have.map((l) => {
        const c = cell(l, rate)
        return c === null ? 'not reached' : `${fmt(c.med)} [${c.vals.map(fmt).join(', ')}], clean ${c.clean}/${rounds.length}`
      })
      const n = nchan === undefined ? null : cell(nchan, rate)
      let rr = ''
      if (parkline !== undefined && nchan !== undefined) {
        const p = cell(parkline, rate)
        rr = p !== null && n !== null ? ` ${ratio(p.med, n.med)} |` : ' n/a |'
      }
      if (n !== null && n.clean * 2 > rounds.length) {
        for (const [l, v] of vsNchan) {
          if (l === nchan) continue
          const p = cell(l, rate)
          if (p === null) v.unreached.push(rate)
          else if (v.worst === null || p.med / n.med > v.worst.r) v.worst = { r: p.med / n.med, rate }
        }
      }
      L.push(`| ${rate.toLocaleString('en-US')} | ${cells.join(' | ')} |${rr}`)
    }
    L.push('')
    const cleanRates = have.map((l) => {
      // the rounds this server's ladder ran in
      const per = rounds.flatMap((r) => {
        const steps = r.servers.get(l)?.steps.get(transport)
        if (steps === undefined) return []
        let top = 0
        for (const [rate, s] of [...steps].sort((a, b) => a[0] - b[0])) {
          if (!s.clean) break
          top = rate
        }
        return [top]
      })
      return { l, med: lowerMedian(per), per }
    })
    L.push(`Highest clean rate (msgs/s), lower median [each round's]: ${cleanRates.map((c) => `${c.l} ${c.med.toLocaleString('en-US')} [${c.per.map((x) => x.toLocaleString('en-US')).join(', ')}]`).join('; ')}.`, '')
    // why each ladder stopped where it did, round by round (late sends, a p99 over the bound, …)
    const stops = have.flatMap((l) => rounds.flatMap((r, i) => {
      const bad = [...(r.servers.get(l)?.steps.get(transport) ?? [])].filter(([, st]) => !st.clean)
      return bad.map(([rate, st]) => `${l} at ${rate.toLocaleString('en-US')}/s in round ${i + 1}: ${st.why}`)
    }))
    if (stops.length > 0) L.push('Steps not clean: ' + stops.join('; ') + '.', '')
    cpuTable(L, transport, have, rates, rounds.map((r) => r.servers), parkline, nchan)
    const worstOf = (l: string): string => {
      const v = vsNchan.get(l)!
      if (v.unreached.length > 0) return `its ladder did not reach ${v.unreached.map((x) => x.toLocaleString('en-US')).join(', ')}/s`
      return v.worst === null ? 'n/a' : `${v.worst.r.toFixed(2)}× (at ${v.worst.rate.toLocaleString('en-US')}/s)`
    }
    const cpuMed = (l: string): number[] => rates.flatMap((rate) => {
      const v = cpuOf(rounds.map((r) => r.servers), l, transport, rate)
      return v.length === 0 ? [] : [median(v)]
    })
    if (parkline !== undefined && nchan !== undefined) {
      const v = vsNchan.get(parkline)!
      const floorSays = floor !== undefined ? `; the floor's: ${worstOf(floor)}` : ''
      if (v.unreached.length > 0) {
        judged.push(`- one-to-one ${transport}: p99 ≤ Nchan's at every rate Nchan was clean at in most rounds: **not met** (Parkline's ladder did not reach ${v.unreached.map((x) => x.toLocaleString('en-US')).join(', ')}/s${floorSays})`)
      } else if (v.worst !== null) {
        judged.push(`- one-to-one ${transport}: Parkline's median p99 / Nchan's, worst over the rates Nchan was clean at in most rounds: **${v.worst.r.toFixed(2)}×** (at ${v.worst.rate.toLocaleString('en-US')}/s): ${v.worst.r <= 1 ? 'met' : '**not met**'}${floorSays}`)
      } else {
        // Nchan was clean at no rate in most rounds (a loaded host: why, in "Steps not clean"
        // above): nothing to hold Parkline's p99 against, said rather than left out
        judged.push(`- one-to-one ${transport}: p99 ≤ Nchan's at every rate Nchan was clean at in most rounds: not judged (Nchan was clean at no rate in most rounds; why each ladder stopped: "Steps not clean" above)${floorSays}`)
      }
    }
    const pc = cleanRates.find((c) => c.l === parkline)
    const nc = cleanRates.find((c) => c.l === nchan)
    const fc = cleanRates.find((c) => c.l === floor)
    if (pc !== undefined && nc !== undefined && nc.med === 0) {
      judged.push(`- one-to-one ${transport}: highest clean rate: not judged (Nchan's lower median is no clean rate at all: [${nc.per.map((x) => x.toLocaleString('en-US')).join(', ')}]); Parkline's ${pc.med.toLocaleString('en-US')}` +
        (fc !== undefined ? `; the floor's ${fc.med.toLocaleString('en-US')}` : ''))
    } else if (pc !== undefined && nc !== undefined) {
      const need = transport === 'SSE' ? 1.3 : 1
      const verdict = nc.med >= TOP_RATE ? `not judged (Nchan was clean at the ladder's top, ${TOP_RATE.toLocaleString('en-US')}/s: its ceiling is unknown)` : pc.med >= need * nc.med ? 'met' : '**not met**'
      let host = ''
      if (fc !== undefined && nc.med < TOP_RATE) {
        // the floor does no per-message work but its writes: where it misses the ratio too, no
        // Node server reached it on this host in these rounds (its CPU per message beside it)
        const f = cpuMed(floor!)
        const n = cpuMed(nchan!)
        const cpu = f.length > 0 && n.length > 0 ? `, at ${ratio(median(f), median(n))} Nchan's CPU per message (medians over the rates)` : ''
        host = `; the floor's ${fc.med.toLocaleString('en-US')} (${ratio(fc.med, nc.med)}${cpu})` +
          (fc.med < need * nc.med && pc.med < need * nc.med ? ': the floor misses it too, so no Node server reached it on this host in these rounds (why each ladder stopped: "Steps not clean" above)' : '')
      }
      judged.push(`- one-to-one ${transport}: highest clean rate (lower median) ${pc.med.toLocaleString('en-US')} vs Nchan's ${nc.med.toLocaleString('en-US')} (${ratio(pc.med, nc.med)}; target ≥ ${need}×): ${verdict}${host}`)
    }
  }
  // What 1.3× Nchan's closed-loop deliveries/s would ask of a server's own CPU on this host: the
  // rest of the machine's CPU per delivery (load generator, publisher, kernel work they cause) as
  // in Nchan's windows, the whole machine busy, and the server's share what is left.
  const cores = Number(/(\d+) cores/.exec(meta.machine)?.[1] ?? NaN)
  const neededEfficiency = (n: { perSec: number, perCpuSec: number | null }, l: string): string | null => {
    const v = rounds.flatMap((r) => { const x = r.servers.get(l)?.busy.get('broadcast'); return x === undefined ? [] : [x] })
    if (n.perCpuSec === null || v.length === 0 || !Number.isFinite(cores)) return null
    const other = (cores * median(v) / 100 - n.perSec / n.perCpuSec) / n.perSec
    const target = 1.3 * n.perSec
    const left = cores - target * other
    const c = cfloor === undefined ? undefined : bMed.get(cfloor)
    // (with the rest of the machine free, the ratio of deliveries/s would be that of deliveries
    // per CPU-second: the C floor's is then the most any server reaches here)
    const cSays = c?.perCpuSec == null
      ? ''
      : `; the C floor, nothing but epoll and write(2), did ${fmt(c.perCpuSec)} (${ratio(c.perCpuSec, n.perCpuSec)} Nchan's)` +
        (c.perCpuSec < 1.3 * n.perCpuSec ? ', under 1.3× even were the load generator\'s CPU free' : '')
    return `- closed-loop broadcast, what 1.3× would take here: beside Nchan the rest of the machine used ${(other * 1e6).toFixed(1)} µs of CPU per delivery ` +
      `(${cores} cores × ${Math.round(median(v))}% busy, less Nchan's own); at ${fmt(target)} deliveries/s that leaves ${left <= 0 ? 'no CPU' : `${left.toFixed(2)} CPU-seconds a second`} to the server, ` +
      (left <= 0 ? 'so no server reaches it' : `so it would have to deliver ${fmt(target / left)} per CPU-second (${ratio(target / left, n.perCpuSec)} Nchan's ${fmt(n.perCpuSec)})`) + cSays
  }
  // the machine's busy share (all cores) in a scenario's window, per server: median [each round's]
  const busy = (scenario: string): string => labels.flatMap((l) => {
    const v = rounds.flatMap((r) => { const b = r.servers.get(l)?.busy.get(scenario); return b === undefined ? [] : [b] })
    return v.length === 0 ? [] : [`${l} ${Math.round(median(v))}% [${v.map((x) => Math.round(x) + '%').join(', ')}]`]
  }).join(', ')
  if (parkline !== undefined && nchan !== undefined && bMed.has(parkline) && bMed.has(nchan)) {
    const p = bMed.get(parkline)!
    const n = bMed.get(nchan)!
    const f = floor === undefined ? undefined : bMed.get(floor)
    const host = f === undefined
      ? ''
      : `; the floor's deliveries/s ${ratio(f.perSec, n.perSec)} Nchan's` + (f.perSec < 1.3 * n.perSec && p.perSec < 1.3 * n.perSec ? ' (it misses the 1.3× too)' : '') +
        `, p99 ${ratio(f.p99, n.p99)}`
    const c = cfloor === undefined ? undefined : bMed.get(cfloor)
    // the C floor: epoll and one write(2) per delivery, nothing else; where it misses the ratio
    // as well, no server of any language reached it beside this load generator on this host
    const hostC = c === undefined
      ? ''
      : `; the C floor's deliveries/s ${ratio(c.perSec, n.perSec)} Nchan's` +
        (c.perSec < 1.3 * n.perSec && p.perSec < 1.3 * n.perSec ? ' (it misses the 1.3× too: no server reached it on this host in these rounds)' : '') +
        `, p99 ${ratio(c.p99, n.p99)}`
    const b = busy('broadcast')
    judged.push(`- closed-loop broadcast: median deliveries/s ${ratio(p.perSec, n.perSec)} Nchan's (target ≥ 1.3×): ${p.perSec >= 1.3 * n.perSec ? 'met' : '**not met**'}; median p99 ${ratio(p.p99, n.p99)} (target ≤ 1×): ${p.p99 <= n.p99 ? 'met' : '**not met**'}${host}${hostC}` +
      (b === '' ? '' : `; the machine busy (all cores): ${b}`))
    const need = neededEfficiency(n, nchan!)
    if (need !== null) judged.push(need)
  }
  if (parkline !== undefined && nchan !== undefined && oMed.has(parkline) && oMed.has(nchan)) {
    const p = oMed.get(parkline)!
    const n = oMed.get(nchan)!
    const f = floor === undefined ? undefined : oMed.get(floor)
    // how far one server's p99 moved between rounds: the largest over the smallest
    const spread = (l: string): string => {
      const v = rounds.flatMap((r) => { const o = r.servers.get(l)?.open; return o === undefined ? [] : [o.p99At10] })
      return v.length < 2 || Math.min(...v) <= 0 ? 'n/a' : (Math.max(...v) / Math.min(...v)).toFixed(1) + '×'
    }
    const b = busy('rate 10/s')
    judged.push(`- open-loop broadcast at 10 msgs/s: median p99 ${ratio(p.p99At10, n.p99At10)} Nchan's (target ≤ 0.8×): ${p.p99At10 <= 0.8 * n.p99At10 ? 'met' : '**not met**'}` +
      (f === undefined ? '' : `; the floor's ${ratio(f.p99At10, n.p99At10)}`) +
      (cfloor === undefined || !oMed.has(cfloor) ? '' : `; the C floor's ${ratio(oMed.get(cfloor)!.p99At10, n.p99At10)}`) +
      `; each server's p99, largest round over smallest: ${oc.map((l) => `${l} ${spread(l)}`).join(', ')}` +
      (b === '' ? '' : `; the machine busy (all cores): ${b}`))
  }
  if (judged.length > 0) L.push('## Issue-13 targets, judged on the medians', '', ...judged, '')
  const out = env.BENCH_OUT !== undefined && env.BENCH_OUT !== ''
    ? path.resolve(env.BENCH_OUT)
    : path.join(ROOT, 'benchmarks/results', `rounds-${meta.date}.md`)
  writeFileSync(out, L.join('\n'))
  console.log(`wrote ${path.relative(process.cwd(), out)}`)
}

main()
