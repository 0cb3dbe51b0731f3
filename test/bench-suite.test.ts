// benchmarks/run.ts in smoke mode (BENCH_SMOKE=1: 200 subscribers, 2 s per scenario): Parkline,
// Nchan, the floor (one process and two: floor2) and a second Nchan each start, as a full run does,
// and every scenario reports a positive headline figure for each.
// Nchan is not optional: without nginx + libnginx-mod-nchan this test fails and says how to install them.
import { existsSync, readFileSync } from 'node:fs'
import test from 'ava'
import { haveNchan, runBench } from './helpers/bench.ts'

const SERVERS = ['parkline', 'nchan', 'floor', 'floor2', 'nchan2']
const SCENARIOS = ['memory', 'rate', 'broadcast', 'one2one', 'longpoll', 'publish']

test.serial('the benchmark suite runs in smoke mode against Parkline, Nchan, both floors and Nchan again', async (t) => {
  // generous: under a full parallel test run on 2 cores the smoke run takes far longer than alone
  t.timeout(420000)
  if (!haveNchan(t, 'the suite needs')) return
  // the suite's own watchdog (smoke: 160 s) raised to just under this test's bound: alone the
  // smoke run takes about 130 s here, beside the other test files longer
  const { code, stderr, doc, out } = await runBench(t, 'benchmarks/run.ts', { BENCH_SMOKE: '1', WARMUP: '1', BENCH_MAX_SECONDS: '390', SERVERS: SERVERS.join(','), SCENARIOS: SCENARIOS.join(',') },
    410000, { outName: 'suite.md', tail: true })
  t.is(code, 0, stderr)

  const json = JSON.parse(readFileSync(out.replace(/\.md$/, '.json'), 'utf8')) as {
    headlines: Record<string, Record<string, number | null>>
    errors: Record<string, string | null>
  }
  for (const server of SERVERS) {
    t.is(json.errors[server], null, `${server} failed`)
    for (const scenario of SCENARIOS) {
      const v = json.headlines[server]?.[scenario]
      t.true(typeof v === 'number' && v > 0, `${server} ${scenario}: ${String(v)}`)
    }
  }

  t.regex(doc, /- commit: \S+/)
  t.regex(doc, /- command: `BENCH_SMOKE=1 .*npm run bench`/)
  // the results table: one column per server, ratio columns, a positive cell in each headline row
  const header = doc.split('\n').find((l) => l.startsWith('| measure |'))
  t.truthy(header)
  t.true(header!.includes('Nchan') && header!.includes('floor') && header!.includes('/ Nchan') && header!.includes('/ floor'))
  t.true(header!.includes('| Nchan 2nd run / Nchan |'), 'the run-to-run ratio column')
  for (const label of ['memory: server PSS with N idle SSE subscribers (MiB)', 'rate 3 msg/s: latency p99 (ms)', 'rate 10 msg/s: latency p99 (ms)', 'broadcast: deliveries/s',
    'one2one: ceiling (deliveries/s)', 'publish (autocannon): requests/s']) {
    const row = doc.split('\n').find((l) => l.startsWith(`| ${label} |`))
    t.truthy(row, label)
    const cells = row!.split('|').slice(3, 3 + SERVERS.length).map((c) => Number(c.trim().replace(/,/g, '')))
    t.true(cells.every((x) => x > 0), `${label}: ${cells.join(', ')}`)
  }
  for (const svg of ['broadcast', 'rate', 'ramp']) t.true(existsSync(out.replace(/\.md$/, `-${svg}.svg`)), svg)
  // issue 13's targets, judged from the run: a verdict for Parkline on each row that has one
  const lines = doc.split('\n')
  const at = lines.indexOf('## Targets (issue 13), judged from this run')
  t.true(at > 0, 'targets section')
  const targetRows = lines.slice(at + 4).filter((l, i, a) => a.slice(0, i + 1).every((x) => x.startsWith('| ')))
  for (const label of ['broadcast, closed loop: deliveries/s', 'broadcast, closed loop: p99 (ms)', 'publish (autocannon): requests/s']) {
    const row = targetRows.find((l) => l.startsWith(`| ${label} |`))
    t.truthy(row, label)
    t.regex(row!.split('|')[8]!, /^ (met|\*\*not met\*\*) $/, label)
  }
  t.truthy(targetRows.find((l) => l.startsWith('| memory, default topology')), 'memory target row')
  // both floors and the second Nchan are judged by the same targets: a verdict of their own on every measured row
  t.true(lines[at + 2]!.endsWith('| Parkline | floor | floor ×2 | Nchan, 2nd run |'), lines[at + 2])
  const bp99 = targetRows.find((l) => l.startsWith('| broadcast, closed loop: p99 (ms) |'))!
  t.regex(bp99.split('|')[6]!, /^ [\d.,]+ \([\d.]+×\) $/, 'the two floors have a broadcast p99 figure')
  t.regex(bp99.split('|')[10]!, /^ (met|\*\*not met\*\*) $/, 'and a verdict')
  t.regex(bp99.split('|')[7]!, /^ [\d.,]+ \([\d.]+×\) $/, 'the second Nchan has a broadcast p99 figure')
  t.regex(bp99.split('|')[11]!, /^ (met|\*\*not met\*\*) $/, 'and a verdict')
  const open10 = targetRows.find((l) => l.startsWith('| broadcast, open loop 10 msgs/s ('))
  t.truthy(open10, 'open-loop 10 msgs/s target row')
  t.regex(open10!.split('|')[8]!, /^ (met|\*\*not met\*\*) $/)
  // each ladder's warm-up at its first rate is listed, for every server, and never judged clean;
  // it lasts WARMUP s (1) or until every channel had two messages (200 at 100/s: 4 s), whichever is longer
  const warmups = lines.filter((l) => l.includes('| SSE |') && l.includes('warm-up (4 s, every channel twice), not judged'))
  t.is(warmups.length, SERVERS.length, 'one SSE warm-up row per server')
  for (const row of warmups) t.is(row.split('|')[8]!.trim(), 'no', row)
  // the long-poll ladder ran on every server, the floor included, and its targets have a floor verdict
  for (const server of ['Parkline', 'Nchan', 'floor']) t.truthy(lines.find((l) => l.startsWith(`| ${server}`) && l.includes('| long-poll |') && l.includes('| yes |')), `${server} long-poll step`)
  const lpRate = targetRows.find((l) => l.startsWith('| long-poll one-to-one: highest clean rate'))
  t.truthy(lpRate, 'long-poll clean-rate target row')
  t.regex(lpRate!.split('|')[5]!, /^ [\d,]+ \([\d.]+×\) $/, 'the floor has a long-poll figure')
})
