// lib/heap-trim.ts: the standalone server's memory-reducing collection when it goes idle after being
// busy. It must give back a grown young generation, run once per busy spell, and must not leave
// `gc` reachable from the main context.
import test from 'ava'
import { getHeapSpaceStatistics } from 'node:v8'
import { startIdleTrim, trimHeap, youngGeneration } from '../../lib/heap-trim.ts'
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

test.serial('the idle trim collects once a busy process goes idle, and not again while it stays idle', async (t) => {
  const trim = startIdleTrim()
  t.teardown(trim.stop)
  // busy: keep survivors for 1.5 s of CPU, which also grows the young generation
  let keep: Array<{ i: number, s: string }> = []
  const until = Date.now() + 1500
  while (Date.now() < until) {
    for (let i = 0; i < 50_000; i++) keep.push({ i, s: 'y' + i })
    keep = keep.slice(-200_000)
  }
  keep = []
  const grown = youngGeneration()
  t.true(grown > 4 * 1048576, `young generation grew to ${grown} B`)
  // idle: the trim runs after two quiet ticks of a second (bounded wait, no timing asserted)
  for (let i = 0; i < 100 && trim.trims() === 0; i++) await new Promise((resolve) => setTimeout(resolve, 100))
  t.is(trim.trims(), 1)
  t.true(youngGeneration() < grown / 4, `young generation ${grown} → ${youngGeneration()} B`)
  await new Promise((resolve) => setTimeout(resolve, 3500))
  t.is(trim.trims(), 1, 'an idle process is not collected again')
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
