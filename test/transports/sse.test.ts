// SSE specifics (PROTOCOL.md §6, EXTENSIONs b, c, d): the head, `: hi`, `retry:`, keepalives from
// the shared timer and the `event: ping` form.
import net from 'node:net'
import test from 'ava'
import { RawSse, lpCursor, lpGet, pub } from '../helpers/conformance.ts'
import { eventually, rawExchange, startServer } from '../helpers/server.ts'
import { coreOf } from '../../lib/plugin.ts'

const HI_RETRY = /^: hi\n\nretry: (\d+)\n\n/

test('the head comes at once, then `: hi` and `retry:` in [retryMin, retryMax]; no Content-Length or chunking', async (t) => {
  const { port } = await startServer(t, { retryMin: 1500, retryMax: 1510 })
  const c = await RawSse.connect(port, '/sub/head', { Origin: 'https://o.example' })
  t.teardown(() => c.close())
  await c.until(() => HI_RETRY.test(c.text))
  const lines = c.head.split('\r\n')
  t.is(lines[0], 'HTTP/1.1 200 OK')
  t.is(c.headers['content-type'], 'text/event-stream; charset=utf-8')
  t.is(c.headers['cache-control'], 'no-cache, no-transform')
  t.is(c.headers['x-accel-buffering'], 'no')
  t.is(c.headers.connection, 'close')
  t.false('content-length' in c.headers)
  t.false('transfer-encoding' in c.headers)
  const retry = Number(HI_RETRY.exec(c.text)![1])
  t.true(retry >= 1500 && retry <= 1510, `retry ${retry}`)
  t.is(c.text, `: hi\n\nretry: ${retry}\n\n`, 'nothing else before a message exists')
  t.deepEqual(c.retries, [retry])
})

test('with buffered messages, `: hi` and `retry:` still come first', async (t) => {
  const { base, port } = await startServer(t)
  const a = await pub(base, 'first', 'one')
  const b = await pub(base, 'first', 'two')
  const c = await RawSse.connect(port, '/sub/first')
  t.teardown(() => c.close())
  await c.waitEvents(2)
  const m = HI_RETRY.exec(c.text)
  t.not(m, null)
  const retry = Number(m![1])
  t.true(retry >= 1000 && retry <= 5000, `default range, got ${retry}`)
  t.is(c.text, `: hi\n\nretry: ${retry}\n\nid: ${a.id}\ndata: one\n\nid: ${b.id}\ndata: two\n\n`)
})

test('retry: is drawn per connection from the range', async (t) => {
  const { port } = await startServer(t, { retryMin: 1000, retryMax: 5000 })
  const values = new Set<number>()
  for (let i = 0; i < 20; i++) {
    const c = await RawSse.connect(port, '/sub/rnd')
    await c.until(() => c.retries.length === 1)
    const v = c.retries[0]!
    t.true(v >= 1000 && v <= 5000)
    values.add(v)
    c.close()
  }
  t.true(values.size > 1, 'not one fixed value')
})

test('a retry range of 0 sends no retry: line', async (t) => {
  const { base, port } = await startServer(t, { retryMin: 0, retryMax: 0 })
  const c = await RawSse.connect(port, '/sub/noretry')
  t.teardown(() => c.close())
  const p = await pub(base, 'noretry', 'x')
  await c.waitEvents(1)
  t.is(c.text, `: hi\n\nid: ${p.id}\ndata: x\n\n`)
})

test('HTTP/1.0 SSE: same head, still no Content-Length or Transfer-Encoding', async (t) => {
  const { base, port } = await startServer(t)
  const p = await pub(base, 'h10', 'x')
  const raw = await rawExchange(port, 'GET /sub/h10 HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n', {
    until: (s) => s.endsWith('data: x\n\n')
  })
  const end = raw.indexOf('\r\n\r\n')
  const head = raw.slice(0, end).toLowerCase()
  t.regex(head, /^http\/1\.[01] 200 ok\r\n/)
  t.true(head.includes('\r\ncontent-type: text/event-stream; charset=utf-8'))
  t.false(head.includes('content-length'))
  t.false(head.includes('transfer-encoding'))
  t.regex(raw.slice(end + 4), new RegExp(`^: hi\\n\\nretry: \\d+\\n\\nid: ${p.id}\\ndata: x\\n\\n$`))
})

test('keepalive: the shared timer writes `:\\n\\n` to every SSE stream; a parked long-poll gets none', async (t) => {
  const { base, port, app } = await startServer(t, { keepalive: 1 })
  const a = await RawSse.connect(port, '/sub/ka')
  const b = await RawSse.connect(port, '/sub/ka2')
  t.teardown(() => { a.close(); b.close() })
  await a.until(() => HI_RETRY.test(a.text))
  const p = await pub(base, 'lpka', 'first')
  const poll = lpGet(port, '/sub/lpka', lpCursor(p.id))
  t.true(await eventually(() => coreOf(app).table.size === 3))
  for (const c of [a, b]) {
    await c.until(() => (c.text.replace(HI_RETRY, '').match(/:\n\n/g) ?? []).length >= 2, 6000)
    t.regex(c.text, /^: hi\n\nretry: \d+\n\n(:\n\n)+$/)
    t.is(c.events.length, 0, 'a comment is never dispatched')
  }
  // the parked poll got nothing in the meantime: its answer is the message
  const q = await pub(base, 'lpka', 'second')
  t.is(q.status, 201)
  const ans = await poll.done
  t.is(ans.status, 200)
  t.is(ans.body.toString(), 'second')
  // keepalives do not disturb delivery
  const m = await pub(base, 'ka', 'msg')
  await a.waitEvents(1)
  t.is(a.events[0]!.data, 'msg')
  t.is(a.events[0]!.id, m.id)
  t.is(a.events[0]!.raw, `id: ${m.id}\ndata: msg\n\n`)
})

test('ping: event sends `event: ping`, which has no data and is never dispatched', async (t) => {
  const { base, port } = await startServer(t, { keepalive: 1, ping: 'event' })
  const c = await RawSse.connect(port, '/sub/ping')
  t.teardown(() => c.close())
  await c.until(() => (c.text.match(/event: ping\n\n/g) ?? []).length >= 2, 6000)
  t.regex(c.text, /^: hi\n\nretry: \d+\n\n(event: ping\n\n)+$/)
  t.is(c.events.length, 0)
  const m = await pub(base, 'ping', 'real')
  await c.waitEvents(1)
  t.deepEqual(c.events.map((e) => [e.event, e.id, e.data]), [[null, m.id, 'real']])
})

test('a stream whose socket takes nothing for a whole keepalive interval is dropped and counted; a reader of the same message stays', async (t) => {
  const { base, port, app } = await startServer(t, { keepalive: 1, maxMessageSize: 32 * 1024 * 1024 })
  const core = coreOf(app)
  // the reader reads as fast as it can and keeps only a count and the tail
  const reader = net.connect(port, '127.0.0.1')
  reader.on('error', () => {})
  let got = 0
  let tail = ''
  let closed = false
  reader.on('data', (d: Buffer) => { got += d.length; tail = (tail + d.toString('latin1', Math.max(0, d.length - 64))).slice(-64) })
  reader.on('close', () => { closed = true })
  reader.write('GET /sub/stall HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n')
  const stuck = await RawSse.connect(port, '/sub/stall')
  t.teardown(() => { reader.destroy(); stuck.close() })
  await stuck.until(() => HI_RETRY.test(stuck.text))
  t.true(await eventually(() => core.table.size === 2 && got > 0))
  stuck.socket.pause() // reads nothing more
  // one message larger than the kernel's buffers between the two ends hold (a single message past
  // queueCap still goes out, §11e): the part the stuck socket cannot take stays queued
  const before = core.stats.overflowDisconnect
  const size = 16 * 1024 * 1024
  const p = await pub(base, 'stall', Buffer.alloc(size, 120))
  t.is(p.status, 201)
  const start = got
  t.true(await eventually(() => got - start > size, 30000), 'the reader has the message')
  t.true(await eventually(() => core.table.size === 1, 20000), 'the stuck stream is dropped')
  t.is(core.stats.overflowDisconnect, before + 1)
  // the reader stays and gets its keepalives again
  const after = got
  t.true(await eventually(() => got > after && tail.endsWith('\n:\n\n'), 6000), 'a keepalive after the message')
  t.false(closed)
})

test('queueCap holds below Node\'s drain mark too: a large message behind a few unread kilobytes overflows instead of being queued whole (§11e)', async (t) => {
  const { base, port, app } = await startServer(t)
  const core = coreOf(app)
  const stuck = await RawSse.connect(port, '/sub/cap')
  t.teardown(() => stuck.close())
  await stuck.until(() => HI_RETRY.test(stuck.text))
  stuck.socket.pause()
  const sub = core.table.subs[0]!
  // fill the kernel's buffers between the two ends until the socket keeps a few bytes in user space
  const before = core.stats.overflowDisconnect
  let sent = 0
  while (sub.socket.writableLength === 0 && sent < 4000) {
    t.is((await pub(base, 'cap', Buffer.alloc(8192, 97))).status, 201)
    sent++
  }
  const waiting = sub.socket.writableLength
  t.true(waiting > 0 && !sub.socket.writableNeedDrain, `${waiting} bytes waiting after ${sent} messages`)
  t.is(core.stats.overflowDisconnect, before)
  // 256 KiB more would put ~4× the 64 KiB cap in user space: the policy (disconnect) runs instead
  t.is((await pub(base, 'cap', Buffer.alloc(256 * 1024, 98))).status, 201)
  t.is(core.stats.overflowDisconnect, before + 1)
  t.is(core.table.size, 0)
  t.true(sub.socket.writableLength < 64 * 1024, `${sub.socket.writableLength} bytes left in user space`)
})

test('a multiplexed stream held by the fence with frames queued for its slow socket gets them first, then the held message, and goes on', async (t) => {
  t.timeout(60000)
  const { base, port, app } = await startServer(t, { queueCap: 256 * 1024 * 1024 })
  const core = coreOf(app)
  let fence = Infinity
  // the fence of a worker deployment (lib/cluster.ts), set by hand: nothing held while Infinity
  core.fence = () => fence
  const c = await RawSse.connect(port, '/sub/fa,fb')
  t.teardown(() => c.close())
  await c.until(() => HI_RETRY.test(c.text))
  c.socket.pause()
  const sub = core.table.subs.find((s) => s.channels.length === 2)!
  // a's messages until some wait in the subscriber's own queue (kernel and Node buffers full)
  const body = Buffer.alloc(64 * 1024, 97)
  let sent = 0
  for (; sent < 2000 && (sub.backlog === null || sub.backlog.frames.length < 3); sent++) t.is((await pub(base, 'fa', body)).status, 201)
  t.true(sub.backlog !== null && sub.backlog.frames.length >= 3, `frames queued after ${sent} messages`)
  fence = 0
  t.is((await pub(base, 'fb', 'held')).status, 201)
  t.is(core.heldCount, 1)
  fence = Infinity
  core.fenceMoved()
  c.socket.resume()
  await c.waitEvents(sent + 1, 30000)
  t.deepEqual(c.events.map((e) => e.data === 'held' ? 'held' : e.data.length), [...Array(sent).fill(64 * 1024), 'held'])
  await pub(base, 'fa', 'after')
  await c.waitEvents(sent + 2, 10000)
  t.is(c.events.at(-1)!.data, 'after')
})
