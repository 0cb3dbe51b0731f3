// V8's heap growing percent per standalone server process (lib/heap-growth.ts): set in place at
// start unless 0 or given to Node, reported in the start-up line; the embedded plugin leaves it.
import { spawnSync } from 'node:child_process'
import test from 'ava'
import { applyHeapGrowth, heapGrowthGiven } from '../lib/heap-growth.ts'
import { resolveOptions } from '../lib/config.ts'
import { ConfigError } from '../lib/errors.ts'
import { eventually, publish, SseClient } from './helpers/server.ts'
import { serve } from './helpers/node.ts'

test('a growing percent given to Node is recognised in each spelling, and wins', (t) => {
  t.true(heapGrowthGiven(['--heap-growing-percent=80']))
  t.true(heapGrowthGiven(['--heap_growing_percent=80']))
  t.true(heapGrowthGiven(['--heap-growing-percent', '80']))
  t.false(heapGrowthGiven(['--heap-growing-percents=80', '--max-old-space-size=512']))
  t.deepEqual({ ...applyHeapGrowth(150, ['--heap-growing-percent=80']) }, { percent: null, kept: 'a --heap-growing-percent was given to Node' })
  t.deepEqual({ ...applyHeapGrowth(0, []) }, { percent: null, kept: 'heapGrowth is 0' })
})

test('heapGrowth: 200 by default, 0 to 1000, from the environment too', (t) => {
  t.is(resolveOptions({}).heapGrowth, 200)
  t.is(resolveOptions({}, { env: { PARKLINE_HEAP_GROWTH: '0' } }).heapGrowth, 0)
  t.throws(() => resolveOptions({ heapGrowth: -1 }), { instanceOf: ConfigError })
  t.throws(() => resolveOptions({ heapGrowth: 1001 }), { instanceOf: ConfigError, message: /heapGrowth/ })
})

test('V8 takes the flag at run time: the next collection sizes the heap with it', (t) => {
  // a fresh process sets it as the server does, then collects; V8 prints the factor it used.
  // 8.3 is above V8's own largest (4), so only the flag can have given it
  const script = "import { applyHeapGrowth } from './lib/heap-growth.ts'; applyHeapGrowth(Number(process.argv[1])); globalThis.gc()"
  const factors = (percent: number): string[] => {
    const r = spawnSync(process.execPath, ['--expose-gc', '--trace-gc-verbose', '--input-type=module', '-e', script, String(percent)], { encoding: 'utf8' })
    t.is(r.status, 0, r.stderr)
    return [...r.stdout.matchAll(/\[HeapController\] factor ([\d.]+)/g)].map((m) => m[1]!)
  }
  t.deepEqual(factors(730), ['8.3'])
  const own = factors(0)
  t.is(own.length, 1)
  t.true(Number(own[0]) <= 4, 'V8\'s own factor: at most 4')
})

test('the single process sets it at start and says so; --heap-growth 0 leaves V8 its own', async (t) => {
  const node = await serve(t, ['--workers', '1'], 'info')
  await eventually(async () => node.log().includes('parkline listening'), 10000)
  const line = JSON.parse(node.log().split('\n').find((l) => l.includes('parkline listening'))!) as { heapGrowingPercent: number | null }
  t.is(line.heapGrowingPercent, 200)
  const sub = await SseClient.connect(node.port, '/sub/hg')
  await sub.until(() => sub.comments.includes(': hi'))
  t.is((await publish(node.base, 'hg', 'one')).status, 201)
  await sub.until(() => sub.events.length === 1)
  sub.close()

  const off = await serve(t, ['--workers', '1', '--heap-growth', '0'], 'info')
  await eventually(async () => off.log().includes('parkline listening'), 10000)
  const offLine = JSON.parse(off.log().split('\n').find((l) => l.includes('parkline listening'))!) as { heapGrowingPercent: number | null, heapGrowingPercentKept: string | null }
  t.is(offLine.heapGrowingPercent, null)
  t.is(offLine.heapGrowingPercentKept, 'heapGrowth is 0')
})

/** parkline_buffer_arena_bytes from a server's /metrics. */
async function arenaBytes (base: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text()
  const m = /^parkline_buffer_arena_bytes (\d+)$/m.exec(text)
  if (m === null) throw new Error('no parkline_buffer_arena_bytes in /metrics')
  return Number(m[1])
}

test('buffered bytes go to the arena where the heap growth is set (standalone, single and workers), nowhere with --heap-growth 0', async (t) => {
  const node = await serve(t, ['--workers', '1'])
  t.is(await arenaBytes(node.base), 0)
  // 16,000-byte bodies take the largest slots, four to a 64 KiB slab: five messages, two slabs
  const body = (i: number): string => String(i).repeat(16000)
  const sub = await SseClient.connect(node.port, '/sub/arena')
  await sub.until(() => sub.comments.includes(': hi'))
  for (let i = 0; i < 5; i++) t.is((await publish(node.base, 'arena', body(i))).status, 201)
  await sub.until(() => sub.events.length === 5)
  t.is(await arenaBytes(node.base), 2 * 64 * 1024)
  // publishes elsewhere take the read cache's entries: the resume reads the five back from the arena
  for (let i = 0; i < 300; i++) t.is((await publish(node.base, 'other' + (i % 7), 'x')).status, 202)
  const late = await SseClient.connect(node.port, '/sub/arena', { 'Last-Event-ID': sub.events[0]!.id! })
  await late.until(() => late.events.length === 4)
  t.deepEqual(late.events.map((e) => e.data), [1, 2, 3, 4].map(body))
  t.deepEqual(late.events.map((e) => e.id), sub.events.slice(1).map((e) => e.id))
  sub.close()
  late.close()
  // DELETE frees their slots: one slab is given back, one kept for the next message of its size
  const before = await arenaBytes(node.base)
  t.is((await fetch(`${node.base}/pub/arena`, { method: 'DELETE' })).status, 200)
  t.is(await arenaBytes(node.base), before - 64 * 1024)

  const two = await serve(t, ['--workers', '2'])
  for (let i = 0; i < 10; i++) t.is((await publish(two.base, 'w' + i, body(i))).status, 202)
  t.true(await arenaBytes(two.base) >= 2 * 64 * 1024, 'workers keep their buffers in arenas too (summed over them)')

  const off = await serve(t, ['--workers', '1', '--heap-growth', '0'])
  t.is((await publish(off.base, 'arena', 'x')).status, 202)
  t.is(await arenaBytes(off.base), 0, 'no growth set: each message keeps its own store')
})
