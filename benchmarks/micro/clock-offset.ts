// How far apart two processes on one host read "now" when each takes it as
// `performance.timeOrigin + performance.now()`, the clock the suite's latency used until
// 2026-12-02, against CLOCK_MONOTONIC (`process.hrtime`), which every process shares.
//
//   node benchmarks/micro/clock-offset.ts      PROCS (40) processes started at once, while BUSY (4)
//                                              bounded busy loops (BUSY_S, 8 s) keep the cores
//                                              taken, ROUNDS (5) times
//
// Each child prints `timeOrigin + performance.now() - hrtime ms`, and the same for lib/clock.ts's
// wallNow() (the server's stamp for publishedAt, calibrated at a Date.now() edge). On a correct
// clock that difference is the same in every process (wall time minus monotonic time). Node reads timeOrigin once, at
// start, beside the monotonic clock: a process preempted between the two reads keeps the gap as an
// error for its whole life, and every latency it stamps, or measures against another process's
// stamp, carries it. Reported per round: the spread (max - min) and how many processes were more
// than 1 ms off the round's median.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const num = (name: string, dflt: number): number => {
  const v = Number(process.env[name] ?? dflt)
  return Number.isFinite(v) && v > 0 ? Math.floor(v) : dflt
}

if (process.argv[2] === 'child') {
  const { wallNow } = await import('../../lib/clock.ts')
  const mono = (): number => Number(process.hrtime.bigint()) / 1e6
  // each clock read between two monotonic reads, 5 times, the narrowest bracket kept: a child
  // preempted while it measures must not read as a clock that is off
  const offset = (clock: () => number): number => {
    let best = Infinity
    let off = NaN
    for (let k = 0; k < 5; k++) {
      const m1 = mono()
      const w = clock()
      const m2 = mono()
      if (m2 - m1 < best) { best = m2 - m1; off = w - (m1 + m2) / 2 }
    }
    return off
  }
  process.stdout.write(`${offset(() => performance.timeOrigin + performance.now()).toFixed(3)} ${offset(wallNow).toFixed(3)}\n`)
} else {
  const PROCS = num('PROCS', 40)
  const BUSY = num('BUSY', 4)
  const BUSY_S = num('BUSY_S', 8)
  const ROUNDS = num('ROUNDS', 5)
  const self = fileURLToPath(import.meta.url)
  const run = (args: string[]): Promise<string> => new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d })
    child.on('error', reject)
    child.on('close', () => { resolve(out) })
  })
  console.log(`# clock offset: ${PROCS} processes started together beside ${BUSY} busy loops, ${ROUNDS} rounds (Node ${process.version})`)
  console.log('| round | clock | spread (ms) | processes > 1 ms off the median | largest offset from the median (ms) |')
  console.log('|--:|---|--:|--:|--:|')
  for (let r = 1; r <= ROUNDS; r++) {
    // busy loops that end by themselves after BUSY_S seconds
    const busy = Array.from({ length: BUSY }, () => run(['-e', `const end = Date.now() + ${BUSY_S * 1000}; while (Date.now() < end);`]))
    const lines = (await Promise.all(Array.from({ length: PROCS }, () => run([self, 'child'])))).map((l) => l.trim().split(' ').map(Number))
    await Promise.all(busy)
    for (const [col, name] of [[0, '`performance.timeOrigin + now()`'], [1, 'lib/clock.ts `wallNow()`']] as const) {
      const offsets = lines.map((l) => l[col]!).filter(Number.isFinite).sort((a, b) => a - b)
      const median = offsets[offsets.length >> 1]!
      const off = offsets.map((o) => Math.abs(o - median))
      console.log(`| ${r} | ${name} | ${(offsets[offsets.length - 1]! - offsets[0]!).toFixed(2)} | ${off.filter((o) => o > 1).length} of ${offsets.length} | ${Math.max(...off).toFixed(2)} |`)
    }
  }
}
