// The wall clock a message's publishedAt is stamped with, with sub-ms precision, the same in every
// process. The delivery histogram (parkline_publish_delivery_seconds) subtracts a stamp another
// worker or node took. Expiry compares stamps with Date.now().
//
// Not `performance.timeOrigin + performance.now()`. Node reads timeOrigin once at process start,
// beside the monotonic clock, and a process preempted between the two reads keeps the gap as an
// error for its whole life. benchmarks/micro/clock-offset.ts found 8 of 200 processes started
// under load 17-77 ms off, which is what a worker started beside its siblings on a busy host gets.
//
// Instead the offset from performance.now() to Date.now() is taken at a millisecond edge of
// Date.now(). Of TRIALS edges, the one whose bracket is narrowest wins: the bracket runs from the
// performance.now() read before the last Date.now() that had not changed yet to the one read
// after the Date.now() that had. A preempted trial has a wide bracket and loses. That costs at
// most TRIALS ms of spinning at start-up, once per process.
import { performance } from 'node:perf_hooks'

const TRIALS = 3

/**
 * Date.now() minus performance.now(), in ms, to a fraction of a ms: `now` and `date` are the two
 * clocks (injectable for tests). Each trial spins to the next change of `date` (at most ~1 ms,
 * bounded by `maxSpins`). Falls back to `fallback` when no trial saw an edge.
 */
export function calibrateOrigin (now: () => number, date: () => number, trials = TRIALS, maxSpins = 1_000_000, fallback = performance.timeOrigin): number {
  let best = Infinity
  let origin = fallback
  for (let k = 0; k < trials; k++) {
    // `lo`: read just before the last `date` that still gave d0, so the edge came after it
    let lo = now()
    const d0 = date()
    let d = d0
    let hi = 0
    for (let spins = 0; spins < maxSpins; spins++) {
      const t = now()
      d = date()
      if (d !== d0) {
        hi = now()
        break
      }
      lo = t
    }
    if (d === d0) continue
    // the edge to `d` came between `lo` and `hi`
    if (hi - lo < best) {
      best = hi - lo
      origin = d - (lo + hi) / 2
    }
  }
  return origin
}

const ORIGIN = calibrateOrigin(() => performance.now(), Date.now)

/** Now on the wall clock, in ms with a fraction (the clock of Date.now(), calibrated as above). */
export function wallNow (): number {
  return ORIGIN + performance.now()
}
