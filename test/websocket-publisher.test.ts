// Publishing over a WebSocket on the publisher location (transports/websocket-publisher.ts): what
// Nchan does is compared in test/nchan-differential.test.ts; here what Parkline adds around it:
// order, fragments, size, access control checked at the handshake and again at each message,
// the option, shutdown, and worker processes.
import http from 'node:http'
import v8 from 'node:v8'
import vm from 'node:vm'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import test from 'ava'
import { SseClient, eventually, info, startServer } from './helpers/server.ts'
import { serve } from './helpers/node.ts'
import { RawWs } from './helpers/websocket.ts'
import { API_KEY, AUTH_SERVER, SECRET, revoke } from './helpers/auth.ts'
import { OP_BINARY, OP_CONTINUATION, OP_PING, OP_TEXT } from '../transports/websocket-frame.ts'
import { SignJWT } from 'jose'

async function publisherToken (channels: string[], ttl: number, jti: string): Promise<string> {
  const now = Math.floor(Date.now() / 1000)
  return await new SignJWT({ sub: 'pub-1', jti, iat: now, exp: now + ttl, parkline: { publish: channels } })
    .setProtectedHeader({ alg: 'HS256' })
    .sign(new TextEncoder().encode(SECRET))
}

test('many messages sent at once are published in the order sent, each answered in turn; a subscriber gets them all', async (t) => {
  const srv = await startServer(t)
  const sse = await SseClient.connect(srv.port, '/sub/order')
  t.teardown(() => sse.close())
  await sse.until(() => sse.comments.includes(': hi'))
  const ws = await RawWs.connect(srv.port, '/pub/order')
  t.teardown(() => ws.close())
  t.is(ws.status, 101)
  for (let i = 0; i < 60; i++) ws.send(OP_TEXT, `m${i}`)
  const answers = await ws.waitMessages(60)
  t.deepEqual(answers.map((f) => /queued messages: (\d+)/.exec(f.payload.toString())![1]), Array.from({ length: 60 }, (_, i) => String(i + 1)))
  // the subscriber counted in each answer
  t.true(answers.every((f) => f.payload.toString().includes('active subscribers: 1')))
  const evs = await sse.waitEvents(60)
  t.deepEqual(evs.map((e) => e.data), Array.from({ length: 60 }, (_, i) => `m${i}`))
})

test('a fragmented message is published whole; a ping gets its pong; past maxMessageSize the connection closes 1009 and nothing is published', async (t) => {
  const srv = await startServer(t, { maxMessageSize: 1024 })
  const ws = await RawWs.connect(srv.port, '/pub/frag')
  t.teardown(() => ws.close())
  ws.send(OP_TEXT, 'frag', { fin: false })
  ws.send(OP_PING, 'p')
  ws.send(OP_CONTINUATION, 'men', { fin: false })
  ws.send(OP_CONTINUATION, 't')
  await ws.waitMessages(1)
  t.true(ws.frames.some((f) => f.opcode === 0xa && f.payload.toString() === 'p'))
  const poll = await fetch(`${srv.base}/sub/frag`)
  t.is(await poll.text(), 'fragment')
  // 1024 bytes in two fragments is the limit; one byte more is refused from its header
  ws.send(OP_BINARY, Buffer.alloc(1000), { fin: false })
  ws.send(OP_CONTINUATION, Buffer.alloc(24))
  await ws.waitMessages(2)
  ws.send(OP_BINARY, Buffer.alloc(1025))
  await ws.waitClosed()
  t.is(ws.closeFrame?.code, 1009)
  t.is((await info(srv.base, 'frag')).json!.messages, 2)
})

test('a message in very many fragments costs its size, not its fragment count: 600,000 empty continuations and a few 1-byte ones leave the heap as it was, and it is published whole', async (t) => {
  const srv = await startServer(t)
  const ws = await RawWs.connect(srv.port, '/pub/many')
  t.teardown(() => ws.close())
  ws.send(OP_TEXT, 'a', { fin: false })
  const before = process.memoryUsage().heapUsed
  // masked, FIN 0, continuation, empty (the mask key 0): 6 bytes each
  const one = Buffer.from([0x00, 0x80, 0, 0, 0, 0])
  const burst = Buffer.concat(Array.from({ length: 100_000 }, () => one))
  for (let i = 0; i < 6; i++) {
    ws.socket.write(burst)
    for (let k = 0; k < 100; k++) ws.send(OP_CONTINUATION, 'x', { fin: false })
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  // everything read: the end of the message comes after all of it
  ws.send(OP_CONTINUATION, 'b')
  await ws.waitMessages(1, 20000)
  const grown = process.memoryUsage().heapUsed - before
  // (kept as they came, 600,000 fragments took some 240 MB of heap; read garbage stays well under this)
  t.log(`heap grew ${grown}`)
  t.true(grown < 64 * 1024 * 1024, `the heap grew ${grown} bytes`)
  const poll = await fetch(`${srv.base}/sub/many`)
  t.is(await poll.text(), 'a' + 'x'.repeat(600) + 'b')
})

test('access control: the handshake is a publisher request (401 without a credential, no upgrade); a token that expires or is revoked closes the connection (1008) before anything more is published', async (t) => {
  const srv = await startServer(t, AUTH_SERVER)
  const refused = await RawWs.connect(srv.port, '/pub/guarded')
  t.is(refused.status, 401)
  // an API key: published
  const keyed = await RawWs.connect(srv.port, '/pub/guarded', { Authorization: `Bearer ${API_KEY}` })
  t.teardown(() => keyed.close())
  t.is(keyed.status, 101)
  keyed.send(OP_TEXT, 'by key')
  await keyed.waitMessages(1)
  // a token that grants another channel: refused
  const other = await RawWs.connect(srv.port, '/pub/guarded', { Authorization: `Bearer ${await publisherToken(['elsewhere'], 60, 'jti-other')}` })
  t.is(other.status, 403)
  // a token for 4 s (at least 3 whole seconds, whenever in its second it is made): one message
  // now, none once its exp has passed
  const shortExp = Math.floor(Date.now() / 1000) + 4
  const short = await RawWs.connect(srv.port, '/pub/guarded', { Authorization: `Bearer ${await publisherToken(['guarded'], 4, 'jti-short')}` })
  t.teardown(() => short.close())
  t.is(short.status, 101)
  short.send(OP_TEXT, 'in time')
  await short.waitMessages(1)
  // publisherToken reads the clock after shortExp was taken: its exp is shortExp, or one more if
  // the second turned between; by shortExp + 2 either has passed
  await new Promise((resolve) => setTimeout(resolve, (shortExp + 2) * 1000 - Date.now()))
  short.send(OP_TEXT, 'too late')
  await short.waitClosed()
  t.deepEqual(short.closeFrame, { code: 1008, reason: 'token expired' })
  // a token revoked while its connection is open
  const rev = await RawWs.connect(srv.port, '/pub/guarded', { Authorization: `Bearer ${await publisherToken(['guarded'], 60, 'jti-rev')}` })
  t.teardown(() => rev.close())
  rev.send(OP_TEXT, 'before revoke')
  await rev.waitMessages(1)
  t.is((await revoke(srv.base, { jti: 'jti-rev' })).status, 200)
  rev.send(OP_TEXT, 'after revoke')
  await rev.waitClosed()
  t.deepEqual(rev.closeFrame, { code: 1008, reason: 'revoked' })
  const walked: string[] = []
  let headers: Record<string, string> = {}
  for (let i = 0; i < 3; i++) {
    const res = await fetch(`${srv.base}/sub/guarded`, { headers: { ...headers, Authorization: `Bearer ${API_KEY}` } })
    walked.push(await res.text())
    headers = { 'If-Modified-Since': res.headers.get('last-modified')!, 'If-None-Match': res.headers.get('etag')! }
  }
  t.deepEqual(walked, ['by key', 'in time', 'before revoke'])
  const final = await fetch(`${srv.base}/pub/guarded`, { headers: { Accept: 'text/json', Authorization: `Bearer ${API_KEY}` } })
  t.is((JSON.parse(await final.text()) as { messages: number }).messages, 3)
})

test('authorizePublish: each message is asked about again once the decision\'s cache lapses (authorizeCacheTtl 0: at each message); a publisher the app stops allowing is closed (1008 with its status) before anything more is published, one it still allows within a cached decision is not asked', async (t) => {
  // the app's authorize endpoint: allows until told otherwise; counts what it is asked
  let allow = true
  const asked: string[] = []
  const app = http.createServer((req, res) => {
    asked.push(`${String(req.headers['x-original-method'])} ${String(req.headers['x-channel-id'])}`)
    res.writeHead(allow ? 200 : 403, { 'Content-Length': '0' }).end()
  })
  app.listen(0, '127.0.0.1')
  await once(app, 'listening')
  t.teardown(() => { app.close() })
  const authorizeUrl = `http://127.0.0.1:${(app.address() as AddressInfo).port}/auth`
  for (const ttl of [0, 120]) {
    allow = true
    asked.length = 0
    const srv = await startServer(t, { authorizeUrl, authorizePublish: true, authorizeCacheTtl: ttl })
    const ws = await RawWs.connect(srv.port, `/pub/asked${ttl}`)
    t.teardown(() => ws.close())
    t.is(ws.status, 101)
    ws.send(OP_TEXT, 'allowed')
    await ws.waitMessages(1)
    allow = false
    ws.send(OP_TEXT, 'after')
    if (ttl === 0) {
      await ws.waitClosed()
      t.deepEqual(ws.closeFrame, { code: 1008, reason: '403 Forbidden' })
      t.deepEqual(asked, ['POST asked0', 'POST asked0', 'POST asked0'], 'the handshake, then each message')
    } else {
      await ws.waitMessages(2)
      t.deepEqual(asked, ['POST asked120'], 'the handshake\'s decision, cached, answers each message')
    }
    allow = true
    const res = await fetch(`${srv.base}/pub/asked${ttl}`, { headers: { Accept: 'text/json' } })
    t.is((JSON.parse(await res.text()) as { messages: number }).messages, ttl === 0 ? 1 : 2, 'a message the app refused is not published')
  }
})

test('websocketPublish: false: a handshake on the publisher location is answered as a GET (channel info), nothing is upgraded', async (t) => {
  const srv = await startServer(t, { websocketPublish: false })
  const ws = await RawWs.connect(srv.port, '/pub/off')
  t.is(ws.status, 404)
  ws.close()
})

test('shutdown closes an open publisher connection (1001 `503 Service Unavailable`)', async (t) => {
  const srv = await startServer(t)
  const ws = await RawWs.connect(srv.port, '/pub/bye')
  ws.send(OP_TEXT, 'x')
  await ws.waitMessages(1)
  const closing = srv.app.close()
  await ws.waitClosed()
  t.deepEqual(ws.closeFrame, { code: 1001, reason: '503 Service Unavailable' })
  await closing
})

test('with worker processes: messages from a WebSocket publisher on any worker reach subscribers on every worker, in order', async (t) => {
  const node = await serve(t, ['--workers', '2'])
  const subs: SseClient[] = []
  for (let i = 0; i < 4; i++) {
    const s = await SseClient.connect(node.port, '/sub/wsw')
    t.teardown(() => s.close())
    await s.until(() => s.comments.includes(': hi'))
    subs.push(s)
  }
  const pubs: RawWs[] = []
  for (let i = 0; i < 2; i++) {
    const ws = await RawWs.connect(node.port, '/pub/wsw')
    t.teardown(() => ws.close())
    t.is(ws.status, 101)
    pubs.push(ws)
  }
  for (let i = 0; i < 20; i++) {
    const ws = pubs[i % 2]!
    ws.send(OP_TEXT, `w${i}`)
    await ws.waitMessages(Math.floor(i / 2) + 1)
  }
  for (const s of subs) t.deepEqual((await s.waitEvents(20)).map((e) => e.data), Array.from({ length: 20 }, (_, i) => `w${i}`))
  t.true(pubs[1]!.messages.at(-1)!.payload.toString().includes('active subscribers: 4'))
})

test('authorizeUrl with authorizePublish: the handshake is asked about as a POST (X-Original-Method), so an app that lets a client read channel info but not publish refuses it', async (t) => {
  const methods: string[] = []
  const app = http.createServer((req, res) => {
    const m = String(req.headers['x-original-method'])
    methods.push(m)
    res.writeHead(m === 'GET' ? 200 : 403).end()
  })
  app.listen(0, '127.0.0.1')
  await once(app, 'listening')
  t.teardown(() => { app.closeAllConnections(); app.close() })
  const srv = await startServer(t, { authorizeUrl: `http://127.0.0.1:${(app.address() as AddressInfo).port}/auth`, authorizePublish: true, authorizeCacheTtl: 0 })
  const ws = await RawWs.connect(srv.port, '/pub/reader')
  t.is(ws.status, 403)
  t.deepEqual(methods, ['POST'])
  // channel info (a GET) is still the app's to allow
  t.is((await fetch(`${srv.base}/pub/reader`)).status, 404)
  t.deepEqual(methods, ['POST', 'GET'])
})

test('messages sent just before a close frame, or before the client ends its side, are published and answered first', async (t) => {
  const srv = await startServer(t)
  const ws = await RawWs.connect(srv.port, '/pub/last')
  t.teardown(() => ws.close())
  // three messages and the close, in one write
  const frames: Buffer[] = []
  const grab = ws.socket.write.bind(ws.socket)
  ws.socket.write = ((b: Buffer) => { frames.push(Buffer.from(b)); return true }) as typeof ws.socket.write
  for (const m of ['a', 'b', 'c']) ws.send(OP_TEXT, m)
  ws.send(0x8, Buffer.from([0x03, 0xe8]))
  ws.socket.write = grab
  ws.socket.write(Buffer.concat(frames))
  await ws.waitClosed()
  t.is(ws.messages.length, 3)
  t.is(ws.closeFrame?.code, 1000)
  t.is((await info(srv.base, 'last')).json!.messages, 3)
  // the client's FIN after three messages: all three published
  const fin = await RawWs.connect(srv.port, '/pub/fin')
  t.teardown(() => fin.close())
  for (const m of ['x', 'y', 'z']) fin.send(OP_TEXT, m)
  fin.socket.end()
  await fin.waitClosed()
  // answered too: the server's side stays open until it has (half-open)
  t.is(fin.messages.length, 3)
  t.is((await info(srv.base, 'fin')).json!.messages, 3)
})

for (const engine of ['one process', 'workers'] as const) {
  test(`${engine}: messages before a refused one (not UTF-8, too big) in the same read are published and answered, then the close`, async (t) => {
    const srv = engine === 'one process'
      ? await startServer(t, { maxMessageSize: 1000 })
      : await serve(t, ['--workers', '2', '--max-message-size', '1000'])
    const base = `http://127.0.0.1:${srv.port}`
    for (const [channel, last, code] of [['notutf8', Buffer.from([0xff, 0xfe]), 1007], ['toobig', Buffer.alloc(1001, 0x61), 1009]] as const) {
      const ws = await RawWs.connect(srv.port, `/pub/${channel}`)
      t.teardown(() => ws.close())
      const frames: Buffer[] = []
      const grab = ws.socket.write.bind(ws.socket)
      ws.socket.write = ((b: Buffer) => { frames.push(Buffer.from(b)); return true }) as typeof ws.socket.write
      for (const m of ['a', 'b', 'c']) ws.send(OP_TEXT, m)
      ws.send(OP_TEXT, last)
      ws.socket.write = grab
      ws.socket.write(Buffer.concat(frames))
      await ws.waitClosed()
      t.is(ws.messages.length, 3, `${channel}: each good message answered`)
      t.is(ws.closeFrame?.code, code)
      t.is((await info(base, channel)).json!.messages, 3, `${channel}: the good ones published, the refused one not`)
    }
  })
}

test('the HTTP publisher\'s limits: a message that does not arrive within bodyTimeout closes 1008 `408 Request Timeout`; no more publisher connections than maxPublishing; a 1 MiB message sent in 1 KiB pieces is published whole; the Content-Type kept as sent', async (t) => {
  const srv = await startServer(t, { bodyTimeout: 1, maxPublishing: 2 })
  const slow = await RawWs.connect(srv.port, '/pub/slow')
  t.teardown(() => slow.close())
  // a frame header that promises 100 bytes, and 10 of them
  slow.socket.write(Buffer.concat([Buffer.from([0x81, 0x80 | 100, 1, 2, 3, 4]), Buffer.alloc(10)]))
  await slow.waitClosed(5000)
  t.deepEqual(slow.closeFrame, { code: 1008, reason: '408 Request Timeout' })
  const a = await RawWs.connect(srv.port, '/pub/cap', { 'Content-Type': 'foo' })
  t.teardown(() => a.close())
  const b = await RawWs.connect(srv.port, '/pub/cap')
  t.teardown(() => b.close())
  const c = await RawWs.connect(srv.port, '/pub/cap')
  t.deepEqual([a.status, b.status, c.status], [101, 101, 503])
  // one MiB in 1 KiB writes
  const big = Buffer.alloc(1024 * 1024, 'q')
  const frames: Buffer[] = []
  const grab = a.socket.write.bind(a.socket)
  a.socket.write = ((x: Buffer) => { frames.push(Buffer.from(x)); return true }) as typeof a.socket.write
  a.send(OP_TEXT, big)
  a.socket.write = grab
  const whole = Buffer.concat(frames)
  for (let off = 0; off < whole.length; off += 1024) a.socket.write(whole.subarray(off, off + 1024))
  await a.waitMessages(1, 10000)
  const poll = await fetch(`${srv.base}/sub/cap`)
  t.is(poll.headers.get('content-type'), 'foo')
  t.is((await poll.arrayBuffer()).byteLength, big.length)
})

test('a JWT admitted inside jwtLeeway publishes for its leeway; a peer that answers no ping within a keepalive interval is dropped', async (t) => {
  const srv = await startServer(t, { ...AUTH_SERVER, jwtLeeway: 30, keepalive: 1 })
  const now = Math.floor(Date.now() / 1000)
  const token = await new SignJWT({ sub: 'late', jti: 'jti-late', iat: now - 60, exp: now - 5, parkline: { publish: ['lee'] } })
    .setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(SECRET))
  const ws = await RawWs.connect(srv.port, '/pub/lee', { Authorization: `Bearer ${token}` })
  t.teardown(() => ws.close())
  t.is(ws.status, 101)
  ws.send(OP_TEXT, 'inside the leeway')
  t.regex((await ws.waitMessages(1))[0]!.payload.toString(), /queued messages: 1/)
  // pings come each second; this client answers none: gone within a few
  await ws.waitClosed(6000)
  t.true(ws.frames.some((f) => f.opcode === OP_PING))
})

test('/metrics: parkline_websocket_publishers counts the connections open, parkline_websocket_published_total their messages', async (t) => {
  const srv = await startServer(t)
  const metric = async (name: string): Promise<number> => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(await (await fetch(`${srv.base}/metrics`)).text())?.[1])
  t.is(await metric('parkline_websocket_publishers'), 0)
  const ws = await RawWs.connect(srv.port, '/pub/met')
  for (const m of ['1', '2', '3']) ws.send(OP_TEXT, m)
  await ws.waitMessages(3)
  t.is(await metric('parkline_websocket_publishers'), 1)
  t.is(await metric('parkline_websocket_published_total'), 3)
  ws.close()
  t.true(await eventually(async () => await metric('parkline_websocket_publishers') === 0))
  t.is(await metric('parkline_websocket_published_total'), 3)
})

test('a client that sends faster than its messages are published: no more than 16 of them wait (parkline_websocket_publish_waiting), the rest stays unread; all are published in order once the upstream answers', async (t) => {
  // a publisher upstream that holds every request until the test lets it go
  const held: http.ServerResponse[] = []
  let asked = 0
  const upstream = http.createServer((req, res) => { req.resume(); asked++; held.push(res) })
  upstream.listen(0, '127.0.0.1')
  await once(upstream, 'listening')
  t.teardown(() => { upstream.closeAllConnections(); upstream.close() })
  const srv = await startServer(t, { publishUpstreamUrl: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/up` })
  const metric = async (name: string): Promise<number> => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(await (await fetch(`${srv.base}/metrics`)).text())?.[1])
  const sse = await SseClient.connect(srv.port, '/sub/flood')
  t.teardown(() => sse.close())
  await sse.until(() => sse.comments.includes(': hi'))
  const ws = await RawWs.connect(srv.port, '/pub/flood')
  t.teardown(() => ws.close())
  // 400 messages in one write: one read of the server's
  const frames: Buffer[] = []
  const grab = ws.socket.write.bind(ws.socket)
  ws.socket.write = ((b: Buffer) => { frames.push(Buffer.from(b)); return true }) as typeof ws.socket.write
  for (let i = 0; i < 400; i++) ws.send(OP_TEXT, `m${i}`)
  ws.socket.write = grab
  ws.socket.write(Buffer.concat(frames))
  t.true(await eventually(() => held.length === 1), 'the first message went to the upstream')
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.is(await metric('parkline_websocket_publish_waiting'), 16, 'sixteen wait, the rest is not read yet')
  t.is(asked, 1, 'one at a time')
  // the upstream lets each go as it comes (304: published unchanged)
  const answer = (): void => { while (held.length > 0) held.shift()!.writeHead(304).end() }
  const timer = setInterval(answer, 5)
  t.teardown(() => clearInterval(timer))
  const answers = await ws.waitMessages(400, 20_000)
  // the buffer keeps 100: each answer counts up to it
  t.deepEqual(answers.map((f) => /queued messages: (\d+)/.exec(f.payload.toString())![1]), Array.from({ length: 400 }, (_, i) => String(Math.min(i + 1, 100))))
  const evs = await sse.waitEvents(400, 20_000)
  t.deepEqual(evs.map((e) => e.data), Array.from({ length: 400 }, (_, i) => `m${i}`))
  t.is(await metric('parkline_websocket_publish_waiting'), 0)
  t.is(asked, 400)
})

// (serial: the heap is measured, and AVA runs serial tests before the others of the file)
test.serial('a frame sent a byte per read is published whole, and what it holds meanwhile is about its bytes, not a Buffer per read', async (t) => {
  t.timeout(60000)
  v8.setFlagsFromString('--expose-gc')
  const gc = vm.runInNewContext('gc') as () => void
  const srv = await startServer(t)
  const ws = await RawWs.connect(srv.port, '/pub/trickle')
  t.teardown(() => ws.close())
  ws.socket.setNoDelay(true)
  const payload = Buffer.alloc(100_000)
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 7) & 0xff
  const first = RawWs.encode(OP_BINARY, payload)
  const second = RawWs.encode(OP_TEXT, 'after it')
  const turn = async (): Promise<void> => { await new Promise((resolve) => setImmediate(resolve)) }
  // 60,000 bytes, one a write, each read by the server before the next comes (it runs in this process)
  const sent = 60_000
  for (let i = 0; i < 100; i++) { ws.socket.write(first.subarray(i, i + 1)); await turn() }
  gc()
  const before = process.memoryUsage()
  for (let i = 100; i < sent; i++) { ws.socket.write(first.subarray(i, i + 1)); await turn() }
  gc()
  const after = process.memoryUsage()
  const held = (after.heapUsed + after.arrayBuffers) - (before.heapUsed + before.arrayBuffers)
  // a Buffer kept per read held some 200 bytes each: about 12 MB here; the frame's own buffer is
  // at most twice the bytes that came
  t.log(`${held} bytes held for ${sent - 100} bytes read`)
  t.true(held < 4_000_000, `${held} bytes held for ${sent - 100} bytes read`)
  // the rest in larger writes, the last with the next frame: both published, the first byte-exact
  ws.socket.write(first.subarray(sent, first.length - 1))
  ws.socket.write(Buffer.concat([first.subarray(first.length - 1), second]))
  await ws.waitMessages(2, 20000)
  const lp = await fetch(`${srv.base}/sub/trickle`, { headers: { 'If-Modified-Since': new Date(0).toUTCString() } })
  t.true(Buffer.from(await lp.arrayBuffer()).equals(payload), 'the first message, byte-exact')
  t.is((await info(srv.base, 'trickle')).json!.messages, 2)
})
