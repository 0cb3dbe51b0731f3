// Chunked stream (PROTOCOL.md §8, §4.1, §11b, §11e), byte for byte over raw sockets, plus the
// `transports` option that switches transports off.
import http from 'node:http'
import net from 'node:net'
import { once } from 'node:events'
import test from 'ava'
import { resolveOptions } from '../../lib/config.ts'
import { ConfigError } from '../../lib/errors.ts'
import { teAcceptsChunked } from '../../transports/chunked.ts'
import { pub } from '../helpers/conformance.ts'
import { eventually, info, rawExchange, rawRequest, startServer } from '../helpers/server.ts'
import { RawStream, parseChunked } from '../helpers/stream.ts'
import { coreOf } from '../../lib/plugin.ts'

test('TE parsing: chunked with q > 0 counts; q=0, malformed weights and look-alikes do not', (t) => {
  for (const v of ['chunked', 'CHUNKED', 'trailers, chunked', 'chunked;q=1', 'chunked; q=0.5', 'deflate;q=0, chunked;q=0.001', 'chunked;Q=1.000', 'chunked;foo=bar', ' chunked ']) {
    t.true(teAcceptsChunked(v), v)
  }
  for (const v of ['chunked;q=0', 'chunked; q=0.000', 'chunked;q=0.', 'chunked;q=abc', 'chunked;q=1.5', 'chunked;q=-1', 'chunkedx', 'xchunked', 'trailers', 'gzip;q=1', '']) {
    t.false(teAcceptsChunked(v), v)
  }
})

test('head: 200, Transfer-Encoding: chunked, X-Accel-Buffering: no; CORS with Origin; counted at once', async (t) => {
  const srv = await startServer(t)
  const c = await RawStream.chunked(srv.port, '/sub/head')
  const o = await RawStream.chunked(srv.port, '/sub/head', { Origin: 'https://app.example' })
  t.teardown(() => { c.close(); o.close() })
  t.is(c.head, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Accel-Buffering: no\r\nConnection: close\r\n\r\n')
  t.is(o.head, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Accel-Buffering: no\r\nConnection: close\r\n' +
    'Access-Control-Allow-Origin: https://app.example\r\nAccess-Control-Allow-Credentials: true\r\n\r\n')
  t.is(c.text, '')
  t.is((await info(srv.base, 'head')).json!.subscribers, 2)
})

test('each non-empty message is one chunk with a hex length; empty messages are skipped', async (t) => {
  const srv = await startServer(t)
  await pub(srv.base, 'ch', 'one', { 'Content-Type': 'text/plain' })
  await pub(srv.base, 'ch', '')
  const c = await RawStream.chunked(srv.port, '/sub/ch')
  t.teardown(() => c.close())
  await c.waitChunks(1)
  t.is(c.text, '3\r\none\r\n')
  const big = 'z'.repeat(300)
  await pub(srv.base, 'ch', '')
  await pub(srv.base, 'ch', big)
  await pub(srv.base, 'ch', Buffer.from([0, 13, 10, 48, 13, 10, 13, 10, 255]))
  await c.waitChunks(3)
  t.is(c.text, '3\r\none\r\n' + `12c\r\n${big}\r\n` + '9\r\n\x00\r\n0\r\n\r\n\xff\r\n')
  t.false(parseChunked(c.text).ended)
  // a skipped message is not counted as delivered: the two live ones are (the first came from the buffer)
  const chunked = coreOf(srv.app).transports.findIndex((tr) => tr.name === 'chunked')
  t.is(coreOf(srv.app).stats.delivered[chunked], 3)
  // a real HTTP client reads the same bodies
  const got: Buffer[] = []
  const req = http.get({ host: '127.0.0.1', port: srv.port, path: '/sub/ch', headers: { TE: 'chunked' } })
  t.teardown(() => req.destroy())
  const res = (await once(req, 'response'))[0] as http.IncomingMessage
  t.is(res.headers['transfer-encoding'], 'chunked')
  res.on('data', (d: Buffer) => got.push(d))
  t.true(await eventually(() => Buffer.concat(got).length === 3 + 300 + 9))
  t.is(Buffer.concat(got).toString('latin1'), 'one' + big + '\x00\r\n0\r\n\r\n\xff')
})

test('resume from a cursor chosen at connect time: exactly the later messages', async (t) => {
  const srv = await startServer(t)
  const ids: string[] = []
  for (let i = 0; i < 4; i++) ids.push((await pub(srv.base, 'res', 'm' + i)).id)
  const a = await RawStream.chunked(srv.port, '/sub/res', { 'Last-Event-ID': ids[1]! })
  const b = await RawStream.chunked(srv.port, '/sub/res?last_event_id=' + encodeURIComponent(ids[2]!))
  t.teardown(() => { a.close(); b.close() })
  await a.waitChunks(2)
  await b.waitChunks(1)
  await pub(srv.base, 'res', 'live')
  await a.waitChunks(3)
  await b.waitChunks(2)
  t.is(a.text, '2\r\nm2\r\n2\r\nm3\r\n4\r\nlive\r\n')
  t.is(b.text, '2\r\nm3\r\n4\r\nlive\r\n')
})

test('DELETE ends the stream with 0\\r\\n\\r\\n, then close; timeout and shutdown the same; counts exact', async (t) => {
  const srv = await startServer(t)
  await pub(srv.base, 'del', 'x')
  const cs = [await RawStream.chunked(srv.port, '/sub/del'), await RawStream.chunked(srv.port, '/sub/del,other')]
  for (const c of cs) await c.waitChunks(1)
  t.is((await info(srv.base, 'del')).json!.subscribers, 2)
  t.is((await info(srv.base, 'other')).json!.subscribers, 1)
  const res = await fetch(`${srv.base}/pub/del`, { method: 'DELETE' })
  t.regex(await res.text(), /active subscribers: 2\r\n/)
  for (const c of cs) {
    await c.waitClosed()
    t.is(c.text, '1\r\nx\r\n0\r\n\r\n')
    t.true(parseChunked(c.text).ended)
  }
  t.is(coreOf(srv.app).table.size, 0)
  const s = await RawStream.chunked(srv.port, '/sub/down')
  coreOf(srv.app).closeAll(503)
  await s.waitClosed()
  t.is(s.text, '0\r\n\r\n')
  const slow = await startServer(t, { subscriberTimeout: 1 })
  const d = await RawStream.chunked(slow.port, '/sub/to')
  await d.waitClosed()
  t.is(d.text, '0\r\n\r\n')
  t.is(coreOf(slow.app).table.size, 0)
})

test('counts are exact after connect and after an abort', async (t) => {
  const srv = await startServer(t)
  const cs: RawStream[] = []
  for (let i = 0; i < 3; i++) {
    cs.push(await RawStream.chunked(srv.port, '/sub/cnt'))
    t.is((await info(srv.base, 'cnt')).json!.subscribers, i + 1)
  }
  t.is((await pub(srv.base, 'cnt', 'x')).status, 201)
  for (const c of cs) c.close()
  t.true(await eventually(async () => (await info(srv.base, 'cnt')).json?.subscribers === 0))
  t.is(coreOf(srv.app).table.size, 0)
  t.regex(await (await fetch(`${srv.base}/status`)).text(), /\nsubscribers chunked: 0\n/)
})

test('TE: chunked;q=0 is not a chunked request, nor TE on HTTP/1.0: they fall through to long-poll', async (t) => {
  const srv = await startServer(t)
  await pub(srv.base, 'q0', 'hello')
  for (const te of ['chunked;q=0', 'chunked; q=0.0']) {
    const a = await rawRequest(srv.port, `GET /sub/q0 HTTP/1.1\r\nHost: x\r\nTE: ${te}\r\n\r\n`)
    t.is(a.status, 200)
    t.is(a.headers['content-length'], '5')
    t.false('transfer-encoding' in a.headers)
    t.is(a.body, 'hello')
  }
  const old = await rawExchange(srv.port, 'GET /sub/q0 HTTP/1.0\r\nHost: x\r\nTE: chunked\r\n\r\n')
  t.regex(old, /^HTTP\/1\.1 200 OK\r\n/)
  t.notRegex(old, /Transfer-Encoding/i)
  t.true(old.endsWith('\r\n\r\nhello'))
})

test('overflow: chunked cannot signal a drop, so drop-oldest disconnects too, after whole chunks', async (t) => {
  const srv = await startServer(t, { queueCap: 65536, queuePolicy: 'drop-oldest', bufferLength: 120 })
  const socket = net.connect(srv.port, '127.0.0.1')
  await once(socket, 'connect')
  let text = ''
  socket.on('data', (d: Buffer) => { text += d.toString('latin1') })
  socket.write('GET /sub/ov HTTP/1.1\r\nHost: x\r\nTE: chunked\r\n\r\n')
  while (!text.includes('\r\n\r\n')) await once(socket, 'data')
  socket.pause()
  const body = 'x'.repeat(50_000)
  for (let i = 0; i < 120 && coreOf(srv.app).stats.overflowDisconnect === 0; i++) await pub(srv.base, 'ov', `${i}:${body}`)
  t.is(coreOf(srv.app).stats.overflowDisconnect, 1)
  t.is(coreOf(srv.app).stats.overflowDropOldest, 0)
  t.is(coreOf(srv.app).stats.gapsDropped, 0)
  socket.resume()
  await once(socket, 'close')
  const p = parseChunked(text.slice(text.indexOf('\r\n\r\n') + 4))
  t.true(p.ended)
  t.true(text.endsWith('\r\n0\r\n\r\n'))
  p.chunks.forEach((c, i) => t.is(c.toString(), `${i}:${body}`))
})

// ---- the transports option ------------------------------------------------------------------------

test('transports option: a switched-off transport never claims a request; no long-poll → 406', async (t) => {
  const srv = await startServer(t, { transports: ['eventsource', 'longpoll'] })
  await pub(srv.base, 'off', 'hi')
  for (const h of ['TE: chunked', 'Accept: multipart/mixed']) {
    const a = await rawRequest(srv.port, `GET /sub/off HTTP/1.1\r\nHost: x\r\n${h}\r\n\r\n`)
    t.is(a.status, 200)
    t.is(a.body, 'hi')
    t.is(a.headers['content-length'], '2')
  }
  // WebSocket switched off: the handshake is an ordinary GET (long-poll here), never a 101
  const ws = await rawRequest(srv.port, 'GET /sub/off HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n')
  t.is(ws.status, 200)
  t.is(ws.body, 'hi')

  const only = await startServer(t, { transports: ['multipart'] })
  const a = await rawRequest(only.port, 'GET /sub/x HTTP/1.1\r\nHost: x\r\nOrigin: https://o.example\r\n\r\n')
  t.is(a.status, 406)
  t.is(a.headers['content-type'], 'text/plain')
  t.is(a.body, 'Not Acceptable')
  t.is(a.headers['access-control-allow-origin'], 'https://o.example')
  t.is((await info(only.base, 'x')).status, 404, 'no channel left behind')
  const sse = await rawRequest(only.port, 'GET /sub/x HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n')
  t.is(sse.status, 406)
  const mp = await RawStream.multipart(only.port, '/sub/x')
  t.is(mp.status, 200)
  mp.close()
  // names are checked at boot
  t.throws(() => resolveOptions({ transports: ['longpoll', 'telepathy'] }), { instanceOf: ConfigError, message: /transports: unknown transport "telepathy"/ })
  t.deepEqual(resolveOptions({ transports: 'longpoll, multipart' }).transports, ['longpoll', 'multipart'])
})

test('a chunked stream whose socket takes nothing for a whole keepalive interval is dropped, though chunked gets no keepalive', async (t) => {
  const srv = await startServer(t, { keepalive: 1, maxMessageSize: 32 * 1024 * 1024 })
  const core = coreOf(srv.app)
  const c = await RawStream.chunked(srv.port, '/sub/stall')
  t.teardown(() => c.close())
  t.true(await eventually(() => core.table.size === 1))
  c.socket.pause()
  const before = core.stats.overflowDisconnect
  // more than the kernel's buffers between the two ends hold: the rest stays queued
  t.is((await pub(srv.base, 'stall', Buffer.alloc(16 * 1024 * 1024, 120))).status, 201)
  t.true(await eventually(() => core.table.size === 0, 20000), 'dropped')
  t.is(core.stats.overflowDisconnect, before + 1)
})
