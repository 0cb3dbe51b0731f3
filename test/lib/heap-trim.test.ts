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

/** Busy for `ms` of CPU, keeping survivors, which also grows the young generation. */
function busy (ms: number): void {
  let keep: Array<{ i: number, s: string }> = []
  const until = Date.now() + ms
  while (Date.now() < until) {
    for (let i = 0; i < 50_000; i++) keep.push({ i, s: 'y' + i })
    keep = keep.slice(-200_000)
  }
  keep.length = 0
}

async function waitFor (done: () => boolean, ms: number): Promise<void> {
  for (let i = 0; i < ms / 100 && !done(); i++) await new Promise((resolve) => setTimeout(resolve, 100))
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

test.serial('with the default share (1%), a second busy spell seconds later is trimmed again', async (t) => {
  const stop = startIdleTrim()
  t.teardown(stop)
  let pause = 0
  for (const round of [1, 2]) {
    const before = heapTrims.count
    const seconds = heapTrims.seconds
    busy(1500)
    // the gap after a pause of p is p / 1%: wait that long on top of the two quiet ticks
    await waitFor(() => heapTrims.count > before, 10_000 + pause * 100 * 1000)
    t.is(heapTrims.count, before + 1, `busy spell ${round} (pause before it ${pause.toFixed(3)} s)`)
    pause = heapTrims.seconds - seconds
  }
})

test('an idempotency window holds no cache until the first key', (t) => {
  const keys = new IdempotencyKeys(60)
  t.is(keys.get('ch', 'k'), undefined)
  keys.set('ch', 'k', '1:0')
  t.is(keys.get('ch', 'k'), '1:0')
  t.is(keys.get('other', 'k'), undefined)
  const off = new IdempotencyKeys(0)
  off.set('ch', 'k', '1:0')
  t.is(off.get('ch', 'k'), undefined)
})
