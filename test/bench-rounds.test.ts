// benchmarks/rounds.ts in smoke mode (BENCH_SMOKE=1, 2 rounds, Parkline, Nchan and the floor): the
// report the issue-13 targets are judged from has every section, each server's figures from both
// rounds, the servers in a rotated order, a verdict on each target it can judge with the floor's
// figure and the machine's busy share beside it, and each round's own report kept where
// ROUNDS_KEEP says, from which ROUNDS_FROM makes the same report again.
// Nchan is not optional: without nginx + libnginx-mod-nchan this test fails and says how to install them.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import test from 'ava'
import { haveNchan, runBench } from './helpers/bench.ts'

test.serial('the rounds report runs in smoke mode and judges the open-loop, closed-loop and one-to-one rows on medians', async (t) => {
  t.timeout(420000)
  if (!haveNchan(t, 'the rounds need')) return
  const { code, stdout, stderr, doc, dir } = await runBench(t, 'benchmarks/rounds.ts', (tmp) => ({
    BENCH_SMOKE: '1',
    WARMUP: '1',
    ROUNDS: '2',
    SERVERS: 'parkline,nchan,floor',
    SCENARIOS: 'rate,broadcast,one2one',
    ONE2ONE_RATES: '200,400',
    ROUNDS_KEEP: path.join(tmp, 'kept')
  }), 410000, { outName: 'rounds.md', tail: true })
  t.is(code, 0, stdout + stderr)

  t.regex(doc, /^# Suite rows over 2 rounds/)
  t.regex(doc, /the servers in this order: 1: parkline, nchan, floor \(\d+ s\); 2: nchan, floor, parkline \(\d+ s\)/)
  t.true(['round-1.md', 'round-2.md'].every((f) => readdirSync(path.join(dir, 'kept')).includes(f)))
  // ROUNDS_FROM makes the same report again from the kept rounds, running nothing
  const again = await runBench(t, 'benchmarks/rounds.ts', { ROUNDS_FROM: path.join(dir, 'kept') }, 60000, { outName: 'again.md' })
  t.is(again.code, 0, again.stderr)
  t.regex(again.doc, /^- command: `ROUNDS_FROM=\S+ node benchmarks\/rounds\.ts`, re-rendered from 2 rounds' reports/m)
  t.regex(again.doc, /^- commit: \w+.*; Node v[\d.]+; \d+ cores .*load average [\d.]+ [\d.]+ [\d.]+ before, [\d.]+ [\d.]+ [\d.]+ after$/m)
  // all but the header (a round's seconds there are rounds.ts's own wall time, in a re-render run.ts's)
  const body = (d: string): string => d.slice(d.indexOf('- a figure is the median'))
  t.is(body(again.doc), body(doc))
  t.notRegex(doc, /failed, left out/)
  const rows = (heading: string): string[] => {
    // the table that follows the heading, without its header lines
    const lines = doc.split('\n')
    const at = lines.indexOf(heading)
    t.true(at >= 0, heading)
    let i = at + 1
    while (i < lines.length && !lines[i]!.startsWith('|')) i++
    const table: string[] = []
    for (; i < lines.length && lines[i]!.startsWith('|'); i++) table.push(lines[i]!)
    return table.slice(2)
  }
  // both servers, with a figure from each round (a median, then both rounds' values)
  for (const heading of ['## Open-loop broadcast (3 msgs/s, then 10 msgs/s to every subscriber)', '## Closed-loop broadcast']) {
    const r = rows(heading)
    t.is(r.length, 3, heading)
    for (const row of r) t.regex(row, /\| 2 of 2 \|$/, row)
    t.truthy(r.find((x) => x.startsWith('| Parkline')))
    t.truthy(r.find((x) => x.startsWith('| Nchan (nginx)')))
    t.truthy(r.find((x) => x.startsWith('| floor (bare node:net)')))
  }
  // the server's CPU per delivery: a figure for each server, each round
  for (const row of rows('## Closed-loop broadcast')) t.regex(row, /\| [\d,]+ \[[\d,]+, [\d,]+\] \| ([\d.]+×|n\/a) \| 2 of 2 \|$/, row)
  const sse = rows('## One-to-one, SSE subscribers: p99 (ms) per rate')
  t.true(sse.some((x) => x.startsWith('| 200 |')), sse.join('\n'))
  // and per one-to-one message, at each rate, for each server, with Parkline's ratio to Nchan
  const cpu = rows('Server CPU per message (µs; all the server\'s processes, over each step\'s window), SSE:')
  t.regex(cpu.find((x) => x.startsWith('| 200 |')) ?? '', /^\| 200 \|( [\d.,]+ \[[\d.,]+, [\d.,]+\] \|){3} ([\d.]+×|n\/a) \|$/, cpu.join('\n'))
  // a verdict on each target the rounds judge
  const judged = doc.slice(doc.indexOf('## Issue-13 targets, judged on the medians'))
  // each with the floor's figure against Nchan's, and the broadcasts with the machine's busy share per server and round
  const busy = /the machine busy \(all cores\): Parkline [^,]+ \d+% \[\d+%, \d+%\], Nchan \(nginx\) \d+% \[\d+%, \d+%\], floor \(bare node:net\) \d+% \[\d+%, \d+%\]/.source
  for (const re of [new RegExp(/- open-loop broadcast at 10 msgs\/s: median p99 [\d.]+× Nchan's \(target ≤ 0\.8×\): (met|\*\*not met\*\*); the floor's [\d.]+×; each server's p99, largest round over smallest: Parkline [^,]+ [\d.]+×, Nchan \(nginx\) [\d.]+×, floor \(bare node:net\) [\d.]+×; /.source + busy),
    new RegExp(/- closed-loop broadcast: median deliveries\/s [\d.]+× Nchan's \(target ≥ 1\.3×\): (met|\*\*not met\*\*); median p99 [\d.]+× \(target ≤ 1×\): (met|\*\*not met\*\*); the floor's deliveries\/s [\d.]+× Nchan's( \(it misses the 1\.3× too\))?, p99 [\d.]+×; /.source + busy),
    /- one-to-one SSE: .*; the floor's: /]) t.regex(judged, re)

  // a loaded host where Nchan's ladder was clean at no rate (CI once): both one-to-one targets are
  // still named, as not judged, rather than left out of the verdicts
  const unclean = path.join(dir, 'unclean')
  mkdirSync(unclean)
  for (const f of ['round-1.md', 'round-2.md']) {
    const src = readFileSync(path.join(dir, 'kept', f), 'utf8')
    const marked = src.replace(/^(\| Nchan \(nginx\) \| SSE \| [\d,]+ \|.*)\| yes \| {2}\|/gm, '$1| no | 3 sends late |')
    writeFileSync(path.join(unclean, f), marked)
  }
  const none = await runBench(t, 'benchmarks/rounds.ts', { ROUNDS_FROM: unclean }, 60000, { outName: 'none.md' })
  t.is(none.code, 0, none.stderr)
  t.regex(none.doc, /^- one-to-one SSE: p99 ≤ Nchan's at every rate Nchan was clean at in most rounds: not judged \(Nchan was clean at no rate in most rounds; .*; the floor's: /m)
  t.regex(none.doc, /^- one-to-one SSE: highest clean rate: not judged \(Nchan's lower median is no clean rate at all: \[0, 0\]\); Parkline's [\d,]+; the floor's [\d,]+$/m)
  t.regex(none.doc, /^Steps not clean: .*Nchan \(nginx\) at 200\/s in round 1: /m)
})
