// Loaded into a server with `node --import <this file>` (benchmarks/micro/idle-stall.ts): every
// event-loop turn that took longer than LAG_MIN_MS (default 5) is appended to LAG_FILE as
// `<ms since start> <gap ms> <ms on CLOCK_MONOTONIC>`, measured by a 1 ms interval timer. One
// timer per process, unref'd. The third column is when the turn ended (the stall covers [third -
// gap, third]), on the clock benchmarks/loadgen.ts LAT_TRACE writes (monoMs: the same in every
// process on the host). A `%p` in LAG_FILE is the process id: with `NODE_OPTIONS="--import <this
// file>"` every process of a run (server, publisher, load generator) keeps a file of its own; a `%n` is the
// name of its script (`parkline`, `publisher`, `loadgen`), to tell them apart.
import { appendFileSync } from 'node:fs'

const file = process.env.LAG_FILE?.replace('%p', String(process.pid)).replace('%n', (process.argv[1] ?? 'node').replace(/^.*\//, '').replace(/\.[jt]s$/, ''))
const min = Number(process.env.LAG_MIN_MS ?? 5)
if (file !== undefined && file !== '') {
  const t0 = performance.now()
  let last = t0
  setInterval(() => {
    const now = performance.now()
    const gap = now - last - 1
    last = now
    if (gap > min) appendFileSync(file, `${(now - t0).toFixed(0)} ${gap.toFixed(1)} ${(Number(process.hrtime.bigint()) / 1e6).toFixed(0)}\n`)
  }, 1).unref()
}
