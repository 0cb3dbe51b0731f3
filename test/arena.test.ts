// The server with its buffers in an arena (lib/byte-arena.ts), as the standalone server runs: this
// file's process sets V8's heap growth first (ava runs each file in a process of its own), so every
// server it starts keeps buffered bytes in slots that are reused as messages leave. Resumes,
// long-poll re-polls and eviction gaps read the bytes back from those slots.
import net from 'node:net'
import { once } from 'node:events'
import test from 'ava'
import { applyHeapGrowth } from '../lib/heap-growth.ts'
import { coreOf } from '../lib/plugin.ts'
import { FRAME_SLAB } from '../lib/message.ts'
import { SseClient, eventually, startServer } from './helpers/server.ts'

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

test('this process keeps buffered bytes in an arena, and makes published frames in a shared slab', async (t) => {
  const srv = await startServer(t)
  t.is(await arenaBytes(srv.base), 0)
  t.is(await pub(srv.base, 'a', 'x'), 202)
  t.true(await arenaBytes(srv.base) > 0)
  // the message just published, from the buffer's read cache: its frame is a view of frameAlloc's slab
  const m = coreOf(srv.app).registry.get('a')!.buffer.newest()!
  t.is(m.sseFrame().toString('latin1'), `id: ${m.id}\ndata: x\n\n`)
  t.is(m.sseFrame().buffer.byteLength, FRAME_SLAB)
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

test('a subscriber that stops reading holds its messages in stores of their own, not views of a shared slab', async (t) => {
  // frames are made in a shared slab here (the arena copies them): what a socket queues must not keep a slab each
  const srv = await startServer(t, { queueCap: 16 * 1024 * 1024, bufferLength: 1000 })
  const core = coreOf(srv.app)
  const socket = net.connect(srv.port, '127.0.0.1')
  // before the server's close, which waits for this connection
  t.teardown(() => socket.destroy())
  await once(socket, 'connect')
  let text = ''
  socket.on('data', (d: Buffer) => { text += d.toString('latin1') })
  socket.write('GET /sub/slow HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n')
  while (!text.includes(': hi')) await once(socket, 'data')
  socket.pause()
  const sub = [...core.table.subs].find((s) => s.channels[0]!.key === 'slow')!
  // large messages (stores of their own at any size) until the kernel's buffers are full
  const big = 'B'.repeat(50_000)
  for (let i = 0; i < 400 && sub.socket.writableLength === 0; i++) t.is(await pub(srv.base, 'slow', big), 201)
  t.true(sub.socket.writableLength > 0, 'the socket never backed up')
  // small ones now, each framed in a shared slab: into Node's write queue (writableHighWaterMark), then,
  // past it, into the subscriber's backlog
  for (let i = 0; i < 150; i++) t.is(await pub(srv.base, 'slow', 'small ' + i), 201)
  t.is(await pub(srv.base, 'slow', big), 201)
  t.true(sub.socket.writableNeedDrain, 'the socket\'s queue never filled')
  for (let i = 150; i < 300; i++) t.is(await pub(srv.base, 'slow', 'small ' + i), 201)
  // Node's write queue (Writable's writableBuffer, undocumented, not in @types/node) and the backlog
  const writeQueue = (sub.socket as unknown as { writableBuffer: Array<{ chunk: Buffer }> }).writableBuffer
  const queued = [...writeQueue.map((w) => w.chunk), ...(sub.backlog?.frames ?? [])]
  const small = queued.filter((b) => b.length < 1000)
  t.true(small.length >= 300, `${small.length} small frames queued`)
  const pinning = small.filter((b) => b.buffer.byteLength !== b.length)
  t.is(pinning.length, 0, `${pinning.length} frames keep a larger store, e.g. ${pinning[0]?.length} bytes in ${pinning[0]?.buffer.byteLength}`)
  const msgs = sub.backlog?.msgs ?? []
  t.true(msgs.length > 0, 'nothing in the backlog')
  t.is(msgs.filter((m) => m.stored.buffer.byteLength > m.stored.length).length, 0, 'backlogged messages keep views of a shared slab')
  // one copy each: the backlog's frame is the one its message keeps
  t.is(msgs.filter((m, i) => sub.backlog!.frames[i] !== m.stored).length, 0, 'a backlogged frame copied twice')
  // and every message arrives, once, in order
  socket.resume()
  t.true(await eventually(() => text.includes('data: small 299\n'), 20000), `the last message never came: ${text.length} bytes read, stats ${JSON.stringify({ cut: core.stats.overflowDisconnect, subs: core.table.size })}`)
  const smalls = [...text.matchAll(/data: small (\d+)\n/g)].map((m) => Number(m[1]))
  t.deepEqual(smalls, Array.from({ length: 300 }, (_, i) => i))
})
