// The server with its buffers in an arena (lib/byte-arena.ts), as the standalone server runs: this
// file's process sets V8's heap growth first (ava runs each file in a process of its own), so every
// server it starts keeps buffered bytes in slots that are reused as messages leave. Resumes,
// long-poll re-polls and eviction gaps read the bytes back from those slots.
import test from 'ava'
import { applyHeapGrowth } from '../lib/heap-growth.ts'
import { SseClient, startServer } from './helpers/server.ts'

applyHeapGrowth(200)

async function pub (base: string, ch: string, body: string): Promise<number> {
  return (await fetch(`${base}/pub/${ch}`, { method: 'POST', body })).status
}

/** parkline_buffer_arena_bytes from the server's /metrics. */
async function arenaBytes (base: string): Promise<number> {
  const m = /^parkline_buffer_arena_bytes (\d+)$/m.exec(await (await fetch(`${base}/metrics`)).text())
  if (m === null) throw new Error('no parkline_buffer_arena_bytes')
  return Number(m[1])
}

/** Publishes to other channels: the read cache (256 entries) no longer holds this one's messages. */
async function flushCache (base: string): Promise<void> {
  for (let i = 0; i < 300; i++) await pub(base, 'noise' + (i % 5), 'n')
}

test('this process keeps buffered bytes in an arena', async (t) => {
  const srv = await startServer(t)
  t.is(await arenaBytes(srv.base), 0)
  t.is(await pub(srv.base, 'a', 'x'), 202)
  t.true(await arenaBytes(srv.base) > 0)
})

test('SSE resumes read every later message back from the slots, while evictions reuse them', async (t) => {
  const srv = await startServer(t, { bufferLength: 20 })
  const sizes = [1, 40, 700, 3000, 15000, 20000]
  const body = (i: number): string => String.fromCharCode(97 + (i % 26)).repeat(sizes[i % sizes.length]!) + i
  const live = await SseClient.connect(srv.port, '/sub/r')
  await live.until(() => live.comments.includes(': hi'))
  for (let i = 0; i < 60; i++) t.is(await pub(srv.base, 'r', body(i)), 201)
  await live.until(() => live.events.length === 60)
  await flushCache(srv.base)
  // the last 20 are kept; a resume from the 45th gets 46 … 59 exactly once, intact
  const resumed = await SseClient.connect(srv.port, '/sub/r', { 'Last-Event-ID': live.events[45]!.id! })
  await resumed.until(() => resumed.events.length === 14)
  t.deepEqual(resumed.events.map((e) => e.data), Array.from({ length: 14 }, (_, k) => body(46 + k)))
  // a resume from before the window: the 20 kept, after a gap signal
  const old = await SseClient.connect(srv.port, '/sub/r', { 'Last-Event-ID': live.events[3]!.id! })
  await old.until(() => old.events.length === 20)
  t.deepEqual(old.events.map((e) => e.data), Array.from({ length: 20 }, (_, k) => body(40 + k)))
  for (const c of [live, resumed, old]) c.close()
})

test('a long-poll re-poll that finds newer messages gets them from the slots, one per poll, in order', async (t) => {
  const srv = await startServer(t)
  for (let i = 0; i < 5; i++) t.is(await pub(srv.base, 'lp', 'm' + i), 202)
  await flushCache(srv.base)
  let etag: string | null = null
  let modified: string | null = null
  const got: string[] = []
  for (let i = 0; i < 5; i++) {
    const headers: Record<string, string> = etag === null ? { 'If-Modified-Since': 'Thu, 01 Jan 1970 00:00:00 GMT' } : { 'If-None-Match': etag, 'If-Modified-Since': modified! }
    const r = await fetch(`${srv.base}/sub/lp`, { headers })
    t.is(r.status, 200)
    got.push(await r.text())
    etag = r.headers.get('etag')
    modified = r.headers.get('last-modified')
  }
  t.deepEqual(got, ['m0', 'm1', 'm2', 'm3', 'm4'])
})

test('DELETE frees the slots of the messages it removes: a slab they emptied is given back', async (t) => {
  const srv = await startServer(t)
  // 16,000-byte bodies: four to a slab; eight fill two slabs of a class no other test here uses
  for (let i = 0; i < 8; i++) t.is(await pub(srv.base, 'd', String(i).repeat(16000)), 202)
  const full = await arenaBytes(srv.base)
  t.is((await fetch(`${srv.base}/pub/d`, { method: 'DELETE' })).status, 200)
  t.is(await arenaBytes(srv.base), full - 64 * 1024, 'one empty slab kept, the other given back')
})
