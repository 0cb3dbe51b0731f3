// lib/clock.ts: the wall clock messages are stamped with (publishedAt), taken at a millisecond edge
// of Date.now() instead of from performance.timeOrigin, which a process preempted at start-up
// keeps wrong for life. Driven here by simulated clocks, so a trial can be "preempted" on purpose.
import test from 'ava'
import { calibrateOrigin, wallNow } from '../../lib/clock.ts'

/**
 * Simulated clocks: `now` (performance.now()) advances `step` ms per read, plus the pauses queued
 * in `pauses` (read number → extra ms); `date` is floor(now + origin), the wall clock.
 */
function clocks (origin: number, step: number, pauses: Map<number, number> = new Map()): { now: () => number, date: () => number } {
  let t = 0
  let reads = 0
  const advance = (): number => {
    t += step + (pauses.get(++reads) ?? 0)
    return t
  }
  return { now: advance, date: () => Math.floor(advance() + origin) }
}

test('calibrateOrigin finds the offset to a fraction of a ms at a Date.now() edge', (t) => {
  const origin = 1_796_000_000_123.4567
  const c = clocks(origin, 0.002)
  const got = calibrateOrigin(c.now, c.date)
  t.true(Math.abs(got - origin) <= 0.004, `${got} vs ${origin}`)
})

test('a trial preempted across its edge loses to a narrow one', (t) => {
  const origin = 1_796_000_000_000.25
  // the first trial: a 40 ms pause between two reads of its spin, so its edge's bracket is wide
  const c = clocks(origin, 0.002, new Map([[10, 40]]))
  const got = calibrateOrigin(c.now, c.date, 3)
  t.true(Math.abs(got - origin) <= 0.004, `${got} vs ${origin}`)
  // with that trial alone the estimate would carry the pause
  const alone = clocks(origin, 0.002, new Map([[10, 40]]))
  const one = calibrateOrigin(alone.now, alone.date, 1)
  t.true(Math.abs(one - origin) > 1, `${one} vs ${origin}`)
})

test('no edge seen: the fallback is kept', (t) => {
  let t0 = 0
  const got = calibrateOrigin(() => (t0 += 0.001), () => 5, 2, 100, 42)
  t.is(got, 42)
})

test('wallNow reads the wall clock, in ms', (t) => {
  // a wall clock (not a monotonic one, not seconds): within a second of Date.now()
  t.true(Math.abs(wallNow() - Date.now()) < 1000)
  t.false(Number.isInteger(wallNow()) && Number.isInteger(wallNow()) && Number.isInteger(wallNow()))
})
