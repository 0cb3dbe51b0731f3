// WebSocket transport (PROTOCOL.md §7, §11a, §11b, §11c, §11e, §12), against two real clients,
// the `ws` library and Node's global WebSocket (undici), plus a raw client for exact bytes.
import { once } from 'node:events'
import net from 'node:net'
import test, { type ExecutionContext } from 'ava'
import WebSocket from 'ws'
import { nextSecond, pub, splitId } from '../helpers/conformance.ts'
import { eventually, info, rawRequest, startServer, type Running } from '../helpers/server.ts'
import { KINDS, RawWs, openClient as open, type Client } from '../helpers/websocket.ts'
import { Message } from '../../lib/message.ts'
import { FrameHeader, NEED_MORE, closeCode, frame, readHeader } from '../../transports/websocket-frame.ts'
import { coreOf } from '../../lib/plugin.ts'

function url (srv: Running, path: string): string {
  return `ws://127.0.0.1:${srv.port}${path}`
}

const subs = (srv: Running): number => coreOf(srv.app).table.size

// ---- frames ---------------------------------------------------------------------------------------

for (const kind of KINDS) {
  test(`[${kind}] plain frames: text body only, octet-stream binary, empty message, 70 KB in one frame`, async (t) => {
    const srv = await startServer(t)
    const c = await open(kind, srv, '/sub/plain')
    t.teardown(() => c.close())
    const big = Buffer.alloc(70 * 1024, 'x')
    await pub(srv.base, 'plain', 'hello', { 'Content-Type': 'text/plain' })
    await pub(srv.base, 'plain', Buffer.from([0, 1, 2, 255]), { 'Content-Type': 'application/octet-stream' })
    await pub(srv.base, 'plain', '')
    await pub(srv.base, 'plain', big, { 'Content-Type': 'application/octet-stream; x=1' })
    await pub(srv.base, 'plain', 'no type')
    const got = await c.wait(5)
    t.is(got.length, 5)
    t.deepEqual(got[0], { data: Buffer.from('hello'), binary: false })
    t.deepEqual(got[1], { data: Buffer.from([0, 1, 2, 255]), binary: true })
    t.deepEqual(got[2], { data: Buffer.alloc(0), binary: false })
    t.true(got[3]!.data.equals(big))
    t.false(got[3]!.binary, 'binary only for exactly application/octet-stream')
    t.deepEqual(got[4], { data: Buffer.from('no type'), binary: false })
    t.is(c.protocol, '')
  })

  test(`[${kind}] a body that is not UTF-8 goes in a binary frame (a text frame must be UTF-8): the client stays and gets what follows`, async (t) => {
    const srv = await startServer(t)
    const c = await open(kind, srv, '/sub/utf8')
    t.teardown(() => c.close())
    const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0xff, 0xfe])
    await pub(srv.base, 'utf8', png, { 'Content-Type': 'image/png' })
    await pub(srv.base, 'utf8', 'ünïcødé ☃', { 'Content-Type': 'text/plain; charset=utf-8' })
    // a lone surrogate's bytes, an overlong form: not UTF-8 either
    await pub(srv.base, 'utf8', Buffer.from([0x61, 0xed, 0xa0, 0x80, 0xc0, 0xaf]), { 'Content-Type': 'text/plain' })
    await pub(srv.base, 'utf8', 'after')
    const got = await c.wait(4)
    t.deepEqual(got[0], { data: png, binary: true })
    t.deepEqual(got[1], { data: Buffer.from('ünïcødé ☃'), binary: false })
    t.deepEqual(got[2], { data: Buffer.from([0x61, 0xed, 0xa0, 0x80, 0xc0, 0xaf]), binary: true })
    t.deepEqual(got[3], { data: Buffer.from('after'), binary: false })
    // a subscriber that resumes from before them gets the same frames, and stays too
    const again = await open(kind, srv, '/sub/utf8?last_event_id=0', ['ws+meta.nchan'])
    t.teardown(() => again.close())
    const replay = await again.wait(4)
    t.deepEqual(replay.map((g) => g.binary), [true, false, true, false])
    t.is(coreOf(srv.app).table.size, 2, 'both still subscribed')
  })

  test(`[${kind}] resume with ?last_event_id= yields exactly the later ones`, async (t) => {
    const srv = await startServer(t)
    const ids: string[] = []
    for (let i = 0; i < 5; i++) ids.push((await pub(srv.base, 'res', 'm' + i)).id)
    const c = await open(kind, srv, '/sub/res?last_event_id=' + encodeURIComponent(ids[1]!), ['ws+meta.nchan'])
    t.teardown(() => c.close())
    t.is(c.protocol, 'ws+meta.nchan')
    const got = await c.wait(3)
    t.deepEqual(got.map((g) => g.data.toString()), [2, 3, 4].map((i) => `id: ${ids[i]}\n\nm${i}`))
    const live = await pub(srv.base, 'res', 'live')
    await c.wait(4)
    t.is(got.length, 4)
    t.is(got[3]!.data.toString(), `id: ${live.id}\n\nlive`)
  })

  test(`[${kind}] a client data frame gets close 1008 Publishing not allowed.`, async (t) => {
    const srv = await startServer(t)
    const c = await open(kind, srv, '/sub/pubnot')
    c.send('hi')
    const end = await c.closed
    t.deepEqual(end, { code: 1008, reason: 'Publishing not allowed.' })
    t.true(await eventually(() => subs(srv) === 0))
  })

  test(`[${kind}] DELETE closes with 1001 410 Gone`, async (t) => {
    const srv = await startServer(t)
    const c = await open(kind, srv, '/sub/gone')
    t.is((await info(srv.base, 'gone')).json!.subscribers, 1, 'counted once the 101 is sent')
    const res = await fetch(`${srv.base}/pub/gone`, { method: 'DELETE' })
    t.is(res.status, 200)
    t.deepEqual(await c.closed, { code: 1001, reason: '410 Gone' })
    t.is(subs(srv), 0)
  })

  test(`[${kind}] counts are exact after connect and close`, async (t) => {
    const srv = await startServer(t)
    const cs: Client[] = []
    for (let i = 0; i < 3; i++) {
      cs.push(await open(kind, srv, '/sub/cnt'))
      t.is((await info(srv.base, 'cnt')).json!.subscribers, i + 1)
    }
    const p = await pub(srv.base, 'cnt', 'x')
    t.is(p.status, 201)
    for (const c of cs) await c.wait(1)
    cs[0]!.close()
    t.true(await eventually(async () => (await info(srv.base, 'cnt')).json!.subscribers === 2))
    cs[1]!.close()
    cs[2]!.close()
    t.true(await eventually(() => subs(srv) === 0))
    const status = await (await fetch(`${srv.base}/status`)).text()
    t.regex(status, /\nsubscribers websocket: 0\n/)
  })
}

test('[ws] ping gets a pong with the same payload; unsolicited pongs are ignored', async (t) => {
  const srv = await startServer(t)
  const ws = new WebSocket(url(srv, '/sub/ping'))
  t.teardown(() => ws.terminate())
  await once(ws, 'open')
  ws.pong(Buffer.from('unsolicited'))
  ws.ping(Buffer.from('payload-123'))
  const [data] = await once(ws, 'pong') as [Buffer]
  t.is(data.toString(), 'payload-123')
  ws.ping(Buffer.alloc(0))
  const [empty] = await once(ws, 'pong') as [Buffer]
  t.is(empty.length, 0)
  t.is(subs(srv), 1)
})

test('[ws] client close: its code is echoed', async (t) => {
  const srv = await startServer(t)
  const ws = new WebSocket(url(srv, '/sub/echo'))
  await once(ws, 'open')
  ws.close(4001, 'bye')
  const [code] = await once(ws, 'close') as [number]
  t.is(code, 4001)
  t.true(await eventually(() => subs(srv) === 0))
})

// ---- handshake (raw) --------------------------------------------------------------------------------

test('[raw] the 101: Upgrade, Connection, Accept, CORS with Origin, no Content-Length', async (t) => {
  const srv = await startServer(t)
  const c = await RawWs.connect(srv.port, '/sub/head', { 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', Origin: 'https://example.com' })
  t.teardown(() => c.close())
  t.is(c.head, 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n' +
    'Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n' +
    'Access-Control-Allow-Origin: https://example.com\r\nAccess-Control-Allow-Credentials: true\r\n\r\n')
  t.false('content-length' in c.headers)
  t.false('sec-websocket-protocol' in c.headers)
})

test('[raw] subprotocol: ws+meta.parkline over ws+meta.nchan over none', async (t) => {
  const srv = await startServer(t)
  const cases: Array<[string, string | null]> = [
    ['ws+meta.nchan, ws+meta.parkline', 'ws+meta.parkline'],
    ['ws+meta.parkline', 'ws+meta.parkline'],
    ['chat, ws+meta.nchan', 'ws+meta.nchan'],
    ['chat', null],
    ['', null]
  ]
  for (const [offered, chosen] of cases) {
    const c = await RawWs.connect(srv.port, '/sub/proto', { 'Sec-WebSocket-Protocol': offered })
    t.is(c.status, 101)
    t.is<string | null, string | null>(c.headers['sec-websocket-protocol'] ?? null, chosen, offered)
    c.close()
  }
})

test('[raw] handshake errors: exact 400 bodies with Sec-WebSocket-Version: 13', async (t) => {
  const srv = await startServer(t)
  const cases: Array<[Record<string, string>, string, number, string]> = [
    [{ 'Sec-WebSocket-Version': '' }, '/sub/hs', 400, 'No Sec-Websocket-Version header present'],
    [{ 'Sec-WebSocket-Version': '8' }, '/sub/hs', 400, 'Unsupported websocket protocol version (only version 13 is supported)'],
    [{ 'Sec-WebSocket-Key': '' }, '/sub/hs', 400, 'No Sec-Websocket-Key header present'],
    // RFC 6455 §4.2.1: 16 bytes in base64, nothing else
    [{ 'Sec-WebSocket-Key': 'x' }, '/sub/hs', 400, 'Invalid Sec-WebSocket-Key header'],
    [{ 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==, dGhlIHNhbXBsZSBub25jZQ==' }, '/sub/hs', 400, 'Invalid Sec-WebSocket-Key header'],
    [{ 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ=' }, '/sub/hs', 400, 'Invalid Sec-WebSocket-Key header'],
    [{}, '/sub/hs?last_event_id=a:b:c', 400, 'Message ID invalid'],
    [{ 'Last-Event-ID': 'abc:1' }, '/sub/hs', 400, 'Message ID invalid'],
    [{}, '/sub/', 404, 'No channel id provided.'],
    [{}, '/sub/a,,b', 400, 'Invalid channel id']
  ]
  for (const [headers, path, status, body] of cases) {
    const c = await RawWs.connect(srv.port, path, { Origin: 'https://o.example', ...headers })
    t.is(c.status, status, path + ' ' + JSON.stringify(headers))
    t.is(c.headers['content-type'], 'text/plain')
    t.is(c.headers['sec-websocket-version'], '13')
    t.is(c.headers['access-control-allow-origin'], 'https://o.example')
    t.is(c.headers['access-control-allow-credentials'], 'true')
    t.is(c.body, body)
    t.true(c.closed)
  }
  const long = await RawWs.connect(srv.port, '/sub/' + 'x'.repeat(1025))
  t.is(long.status, 403)
  t.is(long.body, '')
  t.is(subs(srv), 0)
  // nothing was created by the rejected handshakes
  t.is((await info(srv.base, 'hs')).status, 404)
})

test('[raw] an allow-list refuses other origins with 403 before the upgrade', async (t) => {
  const srv = await startServer(t, { corsOrigins: ['https://ok.example'] })
  const bad = await RawWs.connect(srv.port, '/sub/cors', { Origin: 'https://evil.example' })
  t.is(bad.status, 403)
  const ok = await RawWs.connect(srv.port, '/sub/cors', { Origin: 'https://ok.example' })
  t.teardown(() => ok.close())
  t.is(ok.status, 101)
})

test('[raw] an upgrade outside the subscriber location is not a subscription (on the publisher location it is a publisher, docs/api.md 5.2)', async (t) => {
  const srv = await startServer(t)
  await pub(srv.base, 'other', 'x')
  const p = await RawWs.connect(srv.port, '/pub/other')
  t.teardown(() => p.close())
  t.is(p.status, 101)
  const c = await RawWs.connect(srv.port, '/elsewhere/other')
  t.not(c.status, 101)
  t.is(subs(srv), 0)
})

// ---- exact frame bytes (raw) --------------------------------------------------------------------------

test('[raw] ws+meta.nchan frames match the exact bytes, with and without content-type', async (t) => {
  const srv = await startServer(t)
  const c = await RawWs.connect(srv.port, '/sub/meta', { 'Sec-WebSocket-Protocol': 'ws+meta.nchan' })
  t.teardown(() => c.close())
  t.is(c.headers['sec-websocket-protocol'], 'ws+meta.nchan')
  const a = await pub(srv.base, 'meta', 'typed', { 'Content-Type': 'text/plain; charset=utf-8' })
  const b = await pub(srv.base, 'meta', 'no type')
  const o = await pub(srv.base, 'meta', Buffer.from([1, 2]), { 'Content-Type': 'application/octet-stream' })
  const got = await c.waitMessages(3)
  t.deepEqual(got[0], { fin: true, rsv: 0, opcode: 1, masked: false, payload: Buffer.from(`id: ${a.id}\ncontent-type: text/plain; charset=utf-8\n\ntyped`) })
  t.deepEqual(got[1], { fin: true, rsv: 0, opcode: 1, masked: false, payload: Buffer.from(`id: ${b.id}\n\nno type`) })
  t.deepEqual(got[2], { fin: true, rsv: 0, opcode: 2, masked: false, payload: Buffer.concat([Buffer.from(`id: ${o.id}\ncontent-type: application/octet-stream\n\n`), Buffer.from([1, 2])]) })
})

test('[raw] a content type past ASCII makes the message binary (its bytes go into the ws+meta lines), in every mode', async (t) => {
  const srv = await startServer(t)
  const meta = await RawWs.connect(srv.port, '/sub/ct', { 'Sec-WebSocket-Protocol': 'ws+meta.nchan' })
  t.teardown(() => meta.close())
  const plain = await RawWs.connect(srv.port, '/sub/ct')
  t.teardown(() => plain.close())
  // (Node's parser takes a header byte past ASCII; fetch would not send it as is)
  const answer = await rawRequest(srv.port, Buffer.from('POST /pub/ct HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain; charset=\xe9\r\nContent-Length: 2\r\n\r\nok', 'latin1'))
  t.is(answer.status, 201)
  const id = /last message id: (\S+)/.exec(answer.body)![1]!
  const [m] = await meta.waitMessages(1)
  t.is(m!.opcode, 2)
  t.deepEqual(m!.payload, Buffer.concat([Buffer.from(`id: ${id}\ncontent-type: text/plain; charset=`), Buffer.from([0xe9]), Buffer.from('\n\nok')]))
  const [p] = await plain.waitMessages(1)
  t.is(p!.opcode, 2, 'one opcode a message, whatever the mode')
  t.deepEqual(p!.payload, Buffer.from('ok'))
})

test('[raw] one unfragmented frame per message: empty and 70 KB', async (t) => {
  const srv = await startServer(t)
  const c = await RawWs.connect(srv.port, '/sub/sizes')
  t.teardown(() => c.close())
  const big = Buffer.alloc(70 * 1024)
  for (let i = 0; i < big.length; i++) big[i] = i & 0xff
  await pub(srv.base, 'sizes', '')
  await pub(srv.base, 'sizes', big)
  await pub(srv.base, 'sizes', Buffer.alloc(126, 'a'))
  const got = await c.waitMessages(3)
  t.is(c.frames.length, 3)
  // (the 70 KB body holds every byte value, so it is not UTF-8: a binary frame)
  t.deepEqual(got.map((f) => [f.fin, f.opcode, f.payload.length]), [[true, 1, 0], [true, 2, 70 * 1024], [true, 1, 126]])
  t.true(got[1]!.payload.equals(big))
})

test('[raw] ws+meta.parkline: a gap: line after eviction, once', async (t) => {
  const srv = await startServer(t, { bufferLength: 5 })
  const ids: string[] = []
  for (let i = 0; i < 8; i++) ids.push((await pub(srv.base, 'gap', 'm' + i, { 'Content-Type': 'text/plain' })).id)
  const c = await RawWs.connect(srv.port, '/sub/gap?last_event_id=' + encodeURIComponent(ids[0]!), { 'Sec-WebSocket-Protocol': 'ws+meta.nchan, ws+meta.parkline' })
  t.teardown(() => c.close())
  t.is(c.headers['sec-websocket-protocol'], 'ws+meta.parkline')
  const got = await c.waitMessages(5)
  t.is(got[0]!.payload.toString(), `id: ${ids[3]}\ncontent-type: text/plain\ngap: ${ids[0]}\n\nm3`)
  t.deepEqual(got.slice(1).map((f) => f.payload.toString()), [4, 5, 6, 7].map((i) => `id: ${ids[i]}\ncontent-type: text/plain\n\nm${i}`))
  // ws+meta.nchan never gets the extra line (NchanSubscriber.js's regex)
  const n = await RawWs.connect(srv.port, '/sub/gap?last_event_id=' + encodeURIComponent(ids[0]!), { 'Sec-WebSocket-Protocol': 'ws+meta.nchan' })
  t.teardown(() => n.close())
  const gotN = await n.waitMessages(5)
  t.is(gotN[0]!.payload.toString(), `id: ${ids[3]}\ncontent-type: text/plain\n\nm3`)
})

test('[raw] multiplexed ids follow the vector rule in ws+meta frames', async (t) => {
  const srv = await startServer(t)
  for (let attempt = 0; ; attempt++) {
    const a = `mwa${attempt}`
    const b = `mwb${attempt}`
    const c = await RawWs.connect(srv.port, `/sub/${a},${b}`, { 'Sec-WebSocket-Protocol': 'ws+meta.nchan' })
    t.teardown(() => c.close())
    t.is((await info(srv.base, a)).json!.subscribers, 1)
    t.is((await info(srv.base, b)).json!.subscribers, 1)
    await nextSecond()
    const A1 = await pub(srv.base, a, 'A1')
    const B1 = await pub(srv.base, b, 'B1')
    const A2 = await pub(srv.base, a, 'A2')
    const T = splitId(A1.id).seconds
    if (![B1, A2].every((p) => splitId(p.id).seconds === T) && attempt < 3) { c.close(); continue }
    const got = await c.waitMessages(3)
    t.deepEqual(got.map((f) => f.payload.toString()), [`id: ${T}:[0],-\n\nA1`, `id: ${T}:0,[0]\n\nB1`, `id: ${T}:[1],0\n\nA2`])
    // plain mode: the same shared frame as a single-channel subscriber
    const p = await RawWs.connect(srv.port, `/sub/${a},${b}`)
    t.teardown(() => p.close())
    const plain = await p.waitMessages(3)
    t.deepEqual(plain.map((f) => f.payload.toString()), ['A1', 'B1', 'A2'])
    return
  }
})

// ---- control and malformed frames (raw) -----------------------------------------------------------------

test('[raw] ping/pong, close echo, malformed frames get 1002, oversized data 1009', async (t) => {
  const srv = await startServer(t)
  const c = await RawWs.connect(srv.port, '/sub/ctl')
  c.send(0x9, 'abc')
  await c.until(() => c.frames.length === 1)
  t.deepEqual(c.frames[0], { fin: true, rsv: 0, opcode: 0xa, masked: false, payload: Buffer.from('abc') })
  // a close split across two reads is still read whole
  const closePayload = Buffer.from([0x03, 0xe8, 0x6f, 0x6b])
  c.send(0x8, closePayload)
  await c.waitClosed()
  t.deepEqual(c.closeFrame, { code: 1000, reason: '' })

  const cases: Array<[string, (w: RawWs) => void, number]> = [
    ['unmasked', (w) => w.send(0x9, 'x', { masked: false }), 1002],
    ['rsv', (w) => w.send(0x9, 'x', { rsv: 0x40 }), 1002],
    ['long control', (w) => w.send(0x9, Buffer.alloc(126)), 1002],
    ['fragmented control', (w) => w.send(0x9, 'x', { fin: false }), 1002],
    ['unknown opcode', (w) => w.send(0x3, 'x'), 1002],
    ['bad close code', (w) => w.send(0x8, Buffer.from([0x03, 0xed])), 1002],
    ['continuation of nothing', (w) => w.send(0x0, 'x'), 1002],
    ['binary', (w) => w.send(0x2, 'x'), 1008],
    ['too big', (w) => w.send(0x2, Buffer.alloc(70000)), 1009]
  ]
  for (const [name, act, code] of cases) {
    const w = await RawWs.connect(srv.port, '/sub/ctl')
    act(w)
    await w.waitClosed()
    t.is(w.closeFrame?.code, code, name)
  }
  t.true(await eventually(() => subs(srv) === 0))
})

test('[raw] a read packed with pings gets one pong, for the latest (RFC 6455 §5.5.3)', async (t) => {
  const srv = await startServer(t)
  const c = await RawWs.connect(srv.port, '/sub/pings')
  t.teardown(() => c.close())
  c.socket.cork()
  for (let i = 0; i < 2000; i++) c.send(0x9, 'p' + i)
  c.socket.uncork()
  await c.until(() => c.frames.some((f) => f.payload.toString() === 'p1999'))
  const pongs = c.frames.filter((f) => f.opcode === 0xa)
  t.true(pongs.length < 100, `${pongs.length} pongs for 2000 pings`)
  t.is(pongs[pongs.length - 1]!.payload.toString(), 'p1999')
  // and the connection is as before: a ping alone is answered at once
  c.send(0x9, 'again')
  await c.until(() => c.frames.some((f) => f.payload.toString() === 'again'))
  t.false(c.closed)
})

/** A plain TCP connection to the server, with everything it sent so far as latin1 text. */
async function rawConnection (t: ExecutionContext, srv: Running): Promise<{ socket: net.Socket, text: () => string }> {
  const socket = net.connect(srv.port, '127.0.0.1')
  t.teardown(() => socket.destroy())
  await once(socket, 'connect')
  let text = ''
  socket.on('data', (d: Buffer) => { text += d.toString('latin1') })
  return { socket, text: () => text }
}

test('[raw] a ping sent in the handshake\'s packet is answered after the 101', async (t) => {
  const srv = await startServer(t)
  const { socket, text } = await rawConnection(t, srv)
  socket.write(Buffer.concat([
    Buffer.from('GET /sub/early HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n'),
    Buffer.from([0x89, 0x82, 1, 2, 3, 4, 0x68 ^ 1, 0x69 ^ 2])
  ]))
  t.true(await eventually(() => text().endsWith('\r\n\r\n\x8a\x02hi')), JSON.stringify(text()))
  t.true(text().startsWith('HTTP/1.1 101 '))
})

test('[raw] more than a close handshake sent with the handshake (before the 101) is not held: the connection is dropped', async (t) => {
  const srv = await startServer(t)
  const { socket, text } = await rawConnection(t, srv)
  const closed = once(socket, 'close')
  // a masked 1,000-byte binary frame with the handshake: a client must wait for the 101
  const payload = Buffer.alloc(1000, 0x61)
  socket.write(Buffer.concat([
    Buffer.from('GET /sub/early,early2,early3 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n'),
    Buffer.from([0x82, 0xfe, 0x03, 0xe8, 0, 0, 0, 0]), payload
  ]))
  await closed
  t.is(text(), '')
  t.is(coreOf(srv.app).table.size, 0)
  // and no channel record is left behind (they count against maxChannels)
  t.is(coreOf(srv.app).registry.size, 0)
})

test('[raw] a ping split into 1-byte writes is read whole', async (t) => {
  const srv = await startServer(t)
  const c = await RawWs.connect(srv.port, '/sub/early')
  t.teardown(() => c.close())
  // a ping split into 1-byte writes
  const ping = Buffer.from([0x89, 0x82, 1, 2, 3, 4, 0x68 ^ 1, 0x69 ^ 2])
  for (const byte of ping) {
    c.socket.write(Buffer.from([byte]))
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  await c.until(() => c.frames.length === 1)
  t.is(c.frames[0]!.payload.toString(), 'hi')
})

// ---- server-side ends -------------------------------------------------------------------------------------

test('[raw] subscriber timeout closes with 1000 408 Request Timeout', async (t) => {
  const srv = await startServer(t, { subscriberTimeout: 1 })
  const c = await RawWs.connect(srv.port, '/sub/to')
  await c.waitClosed(5000)
  t.deepEqual(c.closeFrame, { code: 1000, reason: '408 Request Timeout' })
  t.is(subs(srv), 0)
})

test('[raw] shutdown closes with 1001 503 Service Unavailable; a draining server refuses with 503', async (t) => {
  const srv = await startServer(t)
  const c = await RawWs.connect(srv.port, '/sub/bye')
  coreOf(srv.app).draining = true
  const refused = await RawWs.connect(srv.port, '/sub/bye')
  t.is(refused.status, 503)
  t.regex(refused.headers['retry-after'] ?? '', /^([1-9]|10)$/)
  coreOf(srv.app).draining = false
  const closing = srv.app.close()
  await c.waitClosed()
  t.deepEqual(c.closeFrame, { code: 1001, reason: '503 Service Unavailable' })
  await closing
})

test('[raw] keepalive: an empty ping per tick; no pong by the next tick drops the connection', async (t) => {
  const srv = await startServer(t, { keepalive: 1 })
  const silent = await RawWs.connect(srv.port, '/sub/ka')
  t.teardown(() => silent.close())
  const ws = new WebSocket(url(srv, '/sub/ka')) // answers pings by itself
  t.teardown(() => ws.terminate())
  await once(ws, 'open')
  await silent.until(() => silent.frames.some((f) => f.opcode === 0x9))
  t.deepEqual(silent.frames.find((f) => f.opcode === 0x9)!.payload, Buffer.alloc(0))
  await silent.waitClosed(5000)
  t.is(coreOf(srv.app).table.size, 1)
  t.is(ws.readyState, WebSocket.OPEN)
})

for (const coalesce of [true, false]) test(`[raw] keepalive on a busy channel (coalesce ${String(coalesce)}): pings go every interval whatever the messages; no pong drops the connection`, async (t) => {
  const srv = await startServer(t, { keepalive: 2, coalesce })
  const silent = await RawWs.connect(srv.port, '/sub/busy')
  t.teardown(() => silent.close())
  const ws = new WebSocket(url(srv, '/sub/busy')) // answers pings by itself
  t.teardown(() => ws.terminate())
  let got = 0
  ws.on('message', () => { got++ })
  await once(ws, 'open')
  // a message every 300 ms: the connection is never idle for an interval
  let sent = 0
  for (; sent < 60 && !silent.closed; sent++) {
    await pub(srv.base, 'busy', `m${sent}`)
    await new Promise((resolve) => setTimeout(resolve, 300))
  }
  t.true(silent.frames.some((f) => f.opcode === 0x9), 'pinged while messages flowed')
  t.true(silent.closed, `not dropped after ${sent} messages`)
  t.true(silent.frames.filter((f) => f.opcode === 0x1).length > 0)
  t.true(await eventually(() => got === sent, 5000), `${got} of ${sent}`)
  t.is(ws.readyState, WebSocket.OPEN)
  t.is(coreOf(srv.app).table.size, 1)
})

test('[raw] overflow: a subscriber that does not read is closed with 1013 Overflow', async (t) => {
  const srv = await startServer(t, { queueCap: 16384 })
  const c = await RawWs.connect(srv.port, '/sub/slow')
  t.teardown(() => c.close())
  c.socket.pause()
  const body = Buffer.alloc(32768, 'z')
  for (let i = 0; i < 400 && subs(srv) > 0; i++) await pub(srv.base, 'slow', body)
  t.is(subs(srv), 0)
  c.socket.resume()
  await c.waitClosed(10000)
  t.deepEqual(c.closeFrame, { code: 1013, reason: 'Overflow' })
  t.is(c.frames[c.frames.length - 1]!.opcode, 0x8, 'whole frames, then the close')
})

test('[raw] overflow with drop-oldest: ws+meta.parkline signals the gap; plain is disconnected', async (t) => {
  const srv = await startServer(t, { queueCap: 16384, queuePolicy: 'drop-oldest' })
  const plain = await RawWs.connect(srv.port, '/sub/drop')
  t.teardown(() => plain.close())
  const meta = await RawWs.connect(srv.port, '/sub/drop', { 'Sec-WebSocket-Protocol': 'ws+meta.parkline' })
  t.teardown(() => meta.close())
  plain.socket.pause()
  meta.socket.pause()
  const body = Buffer.alloc(32768, 'z')
  const ids: string[] = []
  // until both reached their cap: which one does first depends on the kernel's buffer for each
  const stats = coreOf(srv.app).stats
  for (let i = 0; i < 400 && (stats.overflowDropOldest === 0 || stats.overflowDisconnect === 0); i++) ids.push((await pub(srv.base, 'drop', body)).id)
  t.true(stats.overflowDropOldest > 0)
  t.true(stats.overflowDisconnect > 0)
  meta.socket.resume()
  plain.socket.resume()
  await plain.waitClosed(10000)
  t.is(plain.closeFrame?.code, 1013)
  const last = await pub(srv.base, 'drop', 'after')
  await meta.until(() => meta.messages.some((f) => f.payload.toString().startsWith(`id: ${last.id}\n`)), 10000)
  const gaps = meta.messages.filter((f) => f.payload.subarray(0, 200).toString().includes('\ngap: '))
  t.is(gaps.length, 1)
})

// ---- abort storm ----------------------------------------------------------------------------------------

test('[raw] abort storm: 200 connect-then-abort after the 101 leaves the count at 0', async (t) => {
  const srv = await startServer(t)
  for (let round = 0; round < 4; round++) {
    await Promise.all(Array.from({ length: 50 }, async () => {
      const c = await RawWs.connect(srv.port, '/sub/storm')
      c.socket.destroy()
    }))
  }
  t.true(await eventually(() => subs(srv) === 0))
  const i = await info(srv.base, 'storm')
  t.true(i.status === 404 || i.json!.subscribers === 0)
  const c = await RawWs.connect(srv.port, '/sub/storm')
  t.teardown(() => c.close())
  t.is((await info(srv.base, 'storm')).json!.subscribers, 1)
  await pub(srv.base, 'storm', 'still works')
  t.is((await c.waitMessages(1))[0]!.payload.toString(), 'still works')
})

// ---- framing units --------------------------------------------------------------------------------------

test('frame(): header sizes at the 125/126/65535/65536 boundaries; frames are built once per message', (t) => {
  for (const [n, headerLen] of [[0, 2], [125, 2], [126, 4], [65535, 4], [65536, 10]] as const) {
    const f = frame(0x1, Buffer.alloc(n))
    t.is(f.length, n + headerLen)
    t.is(f[0], 0x81)
  }
  const m = new Message(1, 0, Buffer.from('x'), null, null, Date.now())
  t.is(m.wsFrame(), m.wsFrame())
  t.is(m.wsMetaFrame(), m.wsMetaFrame())
  t.deepEqual(m.wsMetaFrame(), frame(0x1, Buffer.from('id: 1:0\n\nx')))
})

test('readHeader(): incremental, and malformed headers are refused', (t) => {
  const h = new FrameHeader()
  const masked = Buffer.from([0x89, 0x80, 1, 2, 3, 4])
  for (let i = 0; i < masked.length; i++) t.is(readHeader(masked.subarray(0, i), 0, h), NEED_MORE)
  t.is(readHeader(masked, 0, h), 6)
  t.is(h.opcode, 0x9)
  t.is(readHeader(Buffer.from([0x89, 0x00]), 0, h), -1002, 'unmasked')
  t.is(readHeader(Buffer.from([0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]), 0, h), -1002, '64-bit length with the top bit')
  t.is(closeCode(Buffer.from([0x03, 0xe8, 0xff])), -1007)
  t.is(closeCode(Buffer.from([0x0f, 0xa1])), 4001)
})

test('a ping and a close in one read get the pong, then the close (RFC 6455 §5.5.2); a 64-bit length past 2^53 with its top bit clear is too big (1009), not malformed; subscriber and publisher alike', async (t) => {
  const srv = await startServer(t, { publisherOpen: true })
  const pingClose = Buffer.from([0x89, 0x82, 0, 0, 0, 0, 0x70, 0x70, 0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8])
  for (const path of ['/sub/pc', '/pub/pc']) {
    const ws = await RawWs.connect(srv.port, path)
    t.teardown(() => ws.close())
    ws.socket.write(pingClose)
    await ws.waitClosed()
    const ops = ws.frames.map((f) => f.opcode)
    t.deepEqual(ops.filter((o) => o === 0xa || o === 0x8), [0xa, 0x8], `${path}: ${ops.join(',')}`)
    t.is(ws.frames.find((f) => f.opcode === 0xa)!.payload.toString(), 'pp')
    t.is(ws.closeFrame?.code, 1000)
  }
  for (const [path, op] of [['/sub/big', 0x82], ['/pub/big', 0x81]] as const) {
    const ws = await RawWs.connect(srv.port, path)
    t.teardown(() => ws.close())
    // length 2^53 (0x0020_0000_0000_0000): well formed, only far too big
    ws.socket.write(Buffer.from([op, 0xff, 0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))
    await ws.waitClosed()
    t.is(ws.closeFrame?.code, 1009, path)
  }
  // the top bit set: malformed (1002)
  const bad = await RawWs.connect(srv.port, '/pub/bad')
  t.teardown(() => bad.close())
  bad.socket.write(Buffer.from([0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))
  await bad.waitClosed()
  t.is(bad.closeFrame?.code, 1002)
})
