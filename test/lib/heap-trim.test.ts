// lib/heap-trim.ts: the standalone server's memory-reducing collection when it goes idle after being
// busy. It must give back a grown young generation, run once per busy spell, and must not leave
// `gc` reachable from the main context.
import test from 'ava'
import { getHeapSpaceStatistics } from 'node:v8'
import { heapTrims, startIdleTrim, trimHeap, youngGeneration } from '../../lib/heap-trim.ts'
import { IdempotencyKeys } from '../../lib/idempotency.ts'

/** Physical memory the young generation holds (a regular major collection keeps it committed). */
function newSpace (): number {
  return getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.physical_space_size
}

test.serial('trimHeap gives back a grown young generation and exposes no gc()', (t) => {
  // survivors of scavenges make V8 grow the young generation
  let keep: Array<{ i: number, s: string }> = []
  for (let round = 0; round < 20 && newSpace() < 8 * 1048576; round++) {
    for (let i = 0; i < 100_000; i++) keep.push({ i, s: 'x' + i })
    keep = keep.slice(-200_000)
  }
  keep = []
  const grown = newSpace()
  t.true(grown >= 8 * 1048576, `young generation grew to ${grown} B`)
  t.true(trimHeap())
  t.true(newSpace() < grown / 4, `young generation ${grown} → ${newSpace()} B`)
  t.is(typeof (globalThis as { gc?: unknown }).gc, 'undefined')
})

/**
 * Busy for `ms`, keeping survivors, which grows the young generation: on until it holds 8 MB (at
 * most 15 s more), since a loaded machine gives the loop less CPU in the same time.
 */
function busy (ms: number): void {
  let keep: Array<{ i: number, s: string }> = []
  const until = Date.now() + ms
  const limit = until + 15_000
  while (Date.now() < until || (youngGeneration() < 8 * 1048576 && Date.now() < limit)) {
    for (let i = 0; i < 50_000; i++) keep.push({ i, s: 'y' + i })
    keep = keep.slice(-200_000)
  }
  keep.length = 0
}

/** Checks once a second: polling faster would itself keep a process on a loaded machine from looking idle. */
async function waitFor (done: () => boolean, ms: number): Promise<void> {
  for (let i = 0; i < ms / 1000 && !done(); i++) await new Promise((resolve) => setTimeout(resolve, 1000))
}

test.serial('the idle trim collects once a busy process goes idle, not again while it stays idle, and keeps to its share of the time', async (t) => {
  // a share so small that the gap after one trim outlasts the test
  const stop = startIdleTrim({ maxShare: 1e-6 })
  t.teardown(stop)
  const before = heapTrims.count
  busy(1500)
  const grown = youngGeneration()
  t.true(grown > 4 * 1048576, `young generation grew to ${grown} B`)
  // idle: the trim runs after two quiet ticks of a second (bounded wait, no timing asserted)
  await waitFor(() => heapTrims.count > before, 10_000)
  t.is(heapTrims.count, before + 1)
  t.true(heapTrims.seconds > 0)
  t.true(youngGeneration() < grown / 4, `young generation ${grown} → ${youngGeneration()} B`)
  await new Promise((resolve) => setTimeout(resolve, 3500))
  t.is(heapTrims.count, before + 1, 'an idle process is not collected again')
  // busy again, then idle: within the gap its share sets, nothing runs
  busy(1500)
  t.true(youngGeneration() > 4 * 1048576)
  await new Promise((resolve) => setTimeout(resolve, 3500))
  t.is(heapTrims.count, before + 1, 'no trim within the gap')
})

test.serial('a second busy spell is trimmed again once the gap its share sets has passed', async (t) => {
  // share 1: the gap after a trim equals its pause (a fraction of a second); the default, 1%, is 100×
  const stop = startIdleTrim({ maxShare: 1 })
  t.teardown(stop)
  for (const round of [1, 2]) {
    const before = heapTrims.count
    busy(1500)
    t.true(youngGeneration() > 4 * 1048576, `busy spell ${round} grew the young generation`)
    await waitFor(() => heapTrims.count > before, 15_000)
    t.is(heapTrims.count, before + 1, `busy spell ${round}`)
  }
})

test('an idempotency window holds no cache until the first key', (t) => {
  const keys = new IdempotencyKeys(60)
  t.is(keys.get('ch', 'k'), undefined)
  keys.set('ch', 'k', '1:0', 'fp')
  t.deepEqual(keys.get('ch', 'k'), { id: '1:0', fingerprint: 'fp' })
  t.is(keys.get('other', 'k'), undefined)
  const off = new IdempotencyKeys(0)
  off.set('ch', 'k', '1:0', 'fp')
  t.is(off.get('ch', 'k'), undefined)
})
