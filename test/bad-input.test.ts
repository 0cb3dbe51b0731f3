// PROTOCOL.md §10: every row of the bad-input table, on real sockets, byte for byte where it
// matters. Plus §1 channel ids, path normalisation, and §3.1/§4.1 method answers.
import test from 'ava'
import net from 'node:net'
import { once } from 'node:events'
import { randomBytes } from 'node:crypto'
import { SseClient, connectReading, info, parseResponse, publish, rawExchange, rawRequest, startServer, type HttpAnswer } from './helpers/server.ts'
import Fastify from 'fastify'
import parkline, { coreOf } from '../lib/plugin.ts'

const MiB = 1048576
const H = 'Host: 127.0.0.1\r\n'

interface Exchange { text: string, closed: boolean, answer: HttpAnswer }

/** Index just past the first complete response in `s` (Content-Length framing), or -1. */
function responseEnd (s: string, headOnly: boolean): number {
  const end = s.indexOf('\r\n\r\n')
  if (end === -1) return -1
  if (headOnly) return end + 4
  const m = /\r\ncontent-length: *(\d+)/i.exec(s.slice(0, end))
  if (m === null) return -1
  const total = end + 4 + Number(m[1])
  return s.length >= total ? total : -1
}

/**
 * Send raw bytes; return what came back and whether the server closed the connection. With
 * `waitClose` it waits for the close (up to `ms`), otherwise for one complete response.
 */
async function exchange (port: number, data: string | Buffer, opts: { waitClose?: boolean, headOnly?: boolean, ms?: number } = {}): Promise<Exchange> {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => {})
  await once(socket, 'connect')
  let text = ''
  let closed = false
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, opts.ms ?? 4000)
    const finish = (): void => { clearTimeout(timer); resolve() }
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1')
      if (opts.waitClose !== true && responseEnd(text, opts.headOnly === true) !== -1) finish()
    })
    socket.on('end', () => { closed = true; finish() })
    socket.on('close', () => { closed = true; finish() })
    socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data)
  })
  socket.destroy()
  return { text, closed, answer: parseResponse(text) }
}

/** Count of HTTP responses (status lines) in a raw reply. */
function statusLines (text: string): number {
  return (text.match(/HTTP\/1\.1 \d{3} /g) ?? []).length
}

async function plainInfo (base: string, channel: string): Promise<{ messages: number, last_message_id: string, subscribers: number } | null> {
  return (await info(base, channel)).json
}

// ---- body size ---------------------------------------------------------------------------------

test('POST of exactly 1 MiB is accepted and delivered byte-exact', async (t) => {
  const { base } = await startServer(t)
  const body = randomBytes(MiB)
  const r = await publish(base, 'big', body, { 'Content-Type': 'application/octet-stream' })
  t.is(r.status, 202)
  t.regex(r.text, /queued messages: 1\r\n/)
  const lp = await fetch(`${base}/sub/big`)
  t.is(lp.status, 200)
  t.is(lp.headers.get('content-length'), String(MiB))
  const got = Buffer.from(await lp.arrayBuffer())
  t.is(got.length, MiB)
  t.true(got.equals(body))
})

test('POST of exactly 1 MiB reaches an SSE subscriber (201) byte-exact', async (t) => {
  const { base, port } = await startServer(t)
  // no LF in the body, so the SSE data line is the body itself
  const body = Buffer.alloc(MiB, 'x')
  body[0] = 0xff
  body[MiB - 1] = 0x01
  const sse = await SseClient.connect(port, '/sub/big1')
  t.is(sse.status, 200)
  const r = await publish(base, 'big1', body)
  t.is(r.status, 201)
  await sse.waitEvents(1, 10000)
  t.is(sse.events[0]!.data, body.toString('latin1'))
  sse.close()
})

test('POST of 1 MiB + 1 by Content-Length: 413 before the body is sent, Connection: close, nothing queued', async (t) => {
  const { base, port } = await startServer(t)
  t.is((await publish(base, 'c413', 'seed')).status, 202)
  const before = await plainInfo(base, 'c413')
  // headers only: the excess is known from Content-Length, so the answer must not wait for a body
  const x = await exchange(port, `POST /pub/c413 HTTP/1.1\r\n${H}Content-Length: ${MiB + 1}\r\n\r\n`, { waitClose: true })
  t.is(x.answer.status, 413)
  t.regex(x.text, /^HTTP\/1\.1 413 /)
  t.is(x.answer.headers.connection, 'close')
  t.is(x.answer.body, 'Request Entity Too Large')
  t.true(x.closed)
  // with the body actually sent, too
  const y = await exchange(port, Buffer.concat([Buffer.from(`PUT /pub/c413 HTTP/1.1\r\n${H}Content-Length: ${MiB + 1}\r\n\r\n`), Buffer.alloc(MiB + 1, 'y')]), { waitClose: true })
  t.is(y.answer.status, 413)
  t.is(y.answer.headers.connection, 'close')
  t.true(y.closed)
  const after = await plainInfo(base, 'c413')
  t.is(after!.messages, 1)
  t.is(after!.last_message_id, before!.last_message_id)
})

test('a chunked body growing past 1 MiB: 413 once the excess arrives, Connection: close, nothing queued', async (t) => {
  const { base, port } = await startServer(t)
  const { socket, text, closed, ended } = await connectReading(port)
  socket.write(`POST /pub/chunky HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n`)
  const chunk = Buffer.concat([Buffer.from('10000\r\n'), Buffer.alloc(65536, 'c'), Buffer.from('\r\n')])
  // 16 chunks are exactly 1 MiB: no answer may come yet
  for (let i = 0; i < 16; i++) {
    if (!socket.write(chunk)) await once(socket, 'drain')
  }
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.is(text(), '')
  // one byte more is over the limit; the answer comes without the terminating chunk
  socket.write('1\r\nz\r\n')
  await Promise.race([ended, new Promise((resolve) => setTimeout(resolve, 5000))])
  socket.destroy()
  const a = parseResponse(text())
  t.is(a.status, 413)
  t.is(a.headers.connection, 'close')
  t.true(closed())
  t.is((await info(base, 'chunky')).status, 404)
})

test('a chunked body of exactly 1 MiB is accepted', async (t) => {
  const { base, port } = await startServer(t)
  const parts: Buffer[] = [Buffer.from(`POST /pub/chunk1 HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n`)]
  for (let i = 0; i < 16; i++) parts.push(Buffer.from('10000\r\n'), Buffer.alloc(65536, i), Buffer.from('\r\n'))
  parts.push(Buffer.from('0\r\n\r\n'))
  const x = await exchange(port, Buffer.concat(parts))
  t.is(x.answer.status, 202)
  const lp = await fetch(`${base}/sub/chunk1`)
  const got = Buffer.from(await lp.arrayBuffer())
  t.is(got.length, MiB)
  t.is(got[0], 0)
  t.is(got[MiB - 1], 15)
})

test('Expect: 100-continue with an oversize Content-Length: immediate 413, no 100, body never sent', async (t) => {
  const { base, port } = await startServer(t)
  const x = await exchange(port, `POST /pub/exp HTTP/1.1\r\n${H}Expect: 100-continue\r\nContent-Length: ${MiB + 1}\r\n\r\n`, { waitClose: true })
  t.regex(x.text, /^HTTP\/1\.1 413 /)
  t.false(x.text.includes('100 Continue'))
  t.is(x.answer.headers.connection, 'close')
  t.true(x.closed)
  t.is((await info(base, 'exp')).status, 404)
})

test('Expect: 100-continue with an oversize Content-Length: the 413 carries CORS headers only for an origin corsOrigins allows', async (t) => {
  const { port } = await startServer(t, { corsOrigins: ['https://app.example'] })
  const head = (origin: string): string => `POST /pub/exp HTTP/1.1\r\n${H}Origin: ${origin}\r\nExpect: 100-continue\r\nContent-Length: ${MiB + 1}\r\n\r\n`
  const evil = await exchange(port, head('https://evil.example'), { waitClose: true })
  t.regex(evil.text, /^HTTP\/1\.1 413 /)
  t.false('access-control-allow-origin' in evil.answer.headers)
  t.false('access-control-allow-credentials' in evil.answer.headers)
  const app = await exchange(port, head('https://app.example'), { waitClose: true })
  t.regex(app.text, /^HTTP\/1\.1 413 /)
  t.is(app.answer.headers['access-control-allow-origin'], 'https://app.example')
})

/** Send a publish head with `Expect: 100-continue`, wait for an answer, then send the body: the first answer's text, the last's status. */
async function continueThenBody (port: number, head: string, body: string): Promise<{ interim: string, final: number }> {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => {})
  await once(socket, 'connect')
  let text = ''
  socket.on('data', (d: Buffer) => { text += d.toString('latin1') })
  const until = async (pred: () => boolean): Promise<void> => {
    const deadline = Date.now() + 5000
    while (!pred() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
  }
  socket.write(head)
  await until(() => text.includes('\r\n\r\n'))
  const interim = text
  socket.write(body)
  await until(() => responseEnd(text.slice(interim.length), false) !== -1)
  socket.destroy()
  return { interim, final: parseResponse(text.slice(interim.length)).status }
}

test('Expect: 100-continue within the limit gets 100 Continue before the body, then the publish', async (t) => {
  const { base, port } = await startServer(t)
  const x = await continueThenBody(port, `POST /pub/exp2 HTTP/1.1\r\n${H}Expect: 100-continue\r\nContent-Length: 5\r\n\r\n`, 'hello')
  t.is(x.interim, 'HTTP/1.1 100 Continue\r\n\r\n')
  t.is(x.final, 202)
  const lp = await fetch(`${base}/sub/exp2`)
  t.is(await lp.text(), 'hello')
})

test('Expect: 100-continue on a publish access control refuses: its 401, no 100, the body never asked for; an admitted one gets its 100', async (t) => {
  const key = 'k'.repeat(40)
  const { base, port } = await startServer(t, { apiKey: [key] })
  for (const [auth, status] of [['', 401], [`Authorization: Bearer ${'x'.repeat(40)}\r\n`, 401]] as const) {
    const x = await exchange(port, `POST /pub/exp3 HTTP/1.1\r\n${H}${auth}Expect: 100-continue\r\nContent-Length: 5\r\n\r\n`, { waitClose: true })
    t.regex(x.text, new RegExp(`^HTTP/1\\.1 ${status} `), auth)
    t.false(x.text.includes('100 Continue'), auth)
    t.is(x.answer.headers.connection, 'close')
    t.true(x.closed)
  }
  // the revoke location reads a body too: refused there without a 100 as well
  const r = await exchange(port, `POST /admin/revoke HTTP/1.1\r\n${H}Expect: 100-continue\r\nContent-Length: 11\r\n\r\n`, { waitClose: true })
  t.regex(r.text, /^HTTP\/1\.1 401 /)
  t.false(r.text.includes('100 Continue'))
  // admitted: the 100, then the body, then the publish
  const x = await continueThenBody(port, `POST /pub/exp3 HTTP/1.1\r\n${H}Authorization: Bearer ${key}\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n`, 'hello')
  t.is(x.interim, 'HTTP/1.1 100 Continue\r\n\r\n')
  t.is(x.final, 202)
  const got = await fetch(`${base}/pub/exp3`, { headers: { Authorization: `Bearer ${key}`, Accept: 'application/json' } })
  t.is(((await got.json()) as { messages: number }).messages, 1)
})

// ---- request line and header section -----------------------------------------------------------

const TLS_CLIENT_HELLO = Buffer.concat([
  Buffer.from('16030100f4010000f00303', 'hex'), randomBytes(32), Buffer.from('20', 'hex'), randomBytes(32),
  Buffer.from('0026c02bc02fc02cc030cca9cca8c009c013c00ac014009c009d002f0035c012000a130113021303', 'hex')
])

const GARBAGE: Array<[string, string | Buffer]> = [
  ['GARBAGE', 'GARBAGE\r\n\r\n'],
  ['a TLS ClientHello', TLS_CLIENT_HELLO],
  ['GET  /  /  /', `GET  /  /  / HTTP/1.1\r\n${H}\r\n`],
  ['NUL bytes in the request line', `GET /sub/a\0b HTTP/1.1\r\n${H}\r\n`],
  ['only NUL bytes', Buffer.alloc(64, 0)],
  ['bare-LF junk', 'junk\njunk junk\n\n'],
  ['a 5000-char method', 'A'.repeat(5000) + ` /sub/x HTTP/1.1\r\n${H}\r\n`]
]

for (const [name, bytes] of GARBAGE) {
  test(`garbage request line (${name}) → 400, Connection: close, closed`, async (t) => {
    const { port } = await startServer(t)
    const x = await exchange(port, bytes, { waitClose: true })
    t.regex(x.text, /^HTTP\/1\.1 400 Bad Request\r\n/)
    t.is(x.answer.headers.connection, 'close')
    t.is(x.answer.headers['content-type'], 'text/plain')
    t.is(statusLines(x.text), 1)
    t.true(x.closed)
  })
}

test('a path no route serves → 404 `Not Found`, text/plain like every error answer of Parkline\'s (not Fastify\'s JSON), CORS for an allowed origin', async (t) => {
  const { base } = await startServer(t, { corsOrigins: ['http://app.example'] })
  for (const path of ['/nowhere', '/x/y?z=1', '/subscribe/a']) {
    const res = await fetch(base + path, { headers: { Origin: 'http://app.example' } })
    t.is(res.status, 404, path)
    t.is(res.headers.get('content-type'), 'text/plain', path)
    t.is(await res.text(), 'Not Found', path)
    t.is(res.headers.get('access-control-allow-origin'), 'http://app.example', path)
  }
})

test('HTTP/9.9 → 505 HTTP Version Not Supported', async (t) => {
  const { port } = await startServer(t)
  const x = await exchange(port, `GET /sub/x HTTP/9.9\r\n${H}\r\n`, { waitClose: true })
  t.regex(x.text, /^HTTP\/1\.1 505 HTTP Version Not Supported\r\n/)
  t.true(x.closed)
})

for (const [where, path] of [['subscriber', '/sub/'], ['publisher', '/pub/'], ['an unrouted path', '/x/']] as const) {
  test(`a 17 KB URI on ${where} → 414`, async (t) => {
    const { port } = await startServer(t)
    const x = await exchange(port, `GET ${path}${'u'.repeat(17 * 1024)} HTTP/1.1\r\n${H}\r\n`)
    t.is(x.answer.status, 414)
    t.regex(x.text, /^HTTP\/1\.1 414 /)
  })
}

test('a URI bigger than the whole header section (45 KB) → 414 too', async (t) => {
  const { port } = await startServer(t)
  const x = await exchange(port, `GET /sub/${'u'.repeat(45 * 1024)} HTTP/1.1\r\n${H}\r\n`)
  t.is(x.answer.status, 414)
})

test('a URI that merges down below 8 KiB after normalisation still counts as a long request line → 414', async (t) => {
  const { port } = await startServer(t)
  const x = await exchange(port, `GET /sub/${'/'.repeat(17 * 1024)}x HTTP/1.1\r\n${H}\r\n`)
  t.is(x.answer.status, 414)
})

const OVERSIZE_HEADERS: Array<[string, string]> = [
  ['one 17 KB header', `X-Big: ${'h'.repeat(17 * 1024)}\r\n`],
  ['one 17 KB cookie', `Cookie: a=${'c'.repeat(17 * 1024)}\r\n`],
  ['64 × 1 KB headers', Array.from({ length: 64 }, (_, i) => `X-H${i}: ${'h'.repeat(1024)}\r\n`).join('')],
  // 33 KB: just over the 32 KiB section (PROTOCOL.md §10, nginx's 4 × 8k), which 40 KiB let through
  ['32 × 1 KB headers (33 KB)', Array.from({ length: 32 }, (_, i) => `X-H${i}: ${'h'.repeat(1024)}\r\n`).join('')],
  ['1001 header fields', Array.from({ length: 1001 }, (_, i) => `X-${i}: v\r\n`).join('')],
  ['3000 header fields', Array.from({ length: 3000 }, (_, i) => `X-${i}: v\r\n`).join('')]
]

for (const [name, headers] of OVERSIZE_HEADERS) {
  for (const path of ['/pub/hdr', '/sub/hdr']) {
    test(`${name} on ${path} → 400, never 431`, async (t) => {
      const { base, port } = await startServer(t)
      await publish(base, 'hdr', 'm')
      const x = await exchange(port, `GET ${path} HTTP/1.1\r\n${H}${headers}\r\n`)
      t.is(x.answer.status, 400)
      t.false(x.text.includes(' 431 '))
      t.is(x.answer.body, 'Request Header Or Cookie Too Large')
    })
  }
}

test('a second Host (RFC 9112 §3.2) → 400 on every location, and a publish carrying one is not applied', async (t) => {
  const { base, port } = await startServer(t)
  const two = 'Host: evil.example\r\nHost: 127.0.0.1\r\n'
  const requests = [
    `POST /pub/dh HTTP/1.1\r\n${two}Content-Length: 1\r\n\r\nx`,
    `GET /pub/dh HTTP/1.1\r\n${two}\r\n`,
    `GET /sub/dh HTTP/1.1\r\n${two}Accept: text/event-stream\r\n\r\n`,
    `GET /sub/dh HTTP/1.1\r\n${two}\r\n`,
    `GET /sub/dh HTTP/1.1\r\nhost: a\r\nHOST: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`
  ]
  for (const req of requests) {
    const x = await exchange(port, req)
    t.is(x.answer.status, 400, req.split('\r\n')[0])
    t.is(x.answer.body, 'Bad Request', req.split('\r\n')[0])
  }
  t.is((await fetch(`${base}/pub/dh`, { headers: { Accept: 'text/json' } })).status, 404, 'nothing was published')
})

test('embedded: a second Host → 400 on every route of Parkline\'s (its locations, health, status, metrics, revoke); a host route is the host\'s', async (t) => {
  const app = Fastify({ logger: false })
  await app.register(parkline, { prefix: '/rt', logLevel: 'silent', publisherOpen: true, apiKey: ['embedded-key-0123456789'] })
  app.get('/own', async () => 'own')
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as net.AddressInfo).port
  const two = 'Host: evil.example\r\nHost: 127.0.0.1\r\n'
  const heads = [
    'GET /rt/parkline/health', 'GET /rt/parkline/status', 'GET /rt/parkline/metrics', 'GET /rt/sub/dh', 'GET /rt/pub/dh',
    'POST /rt/parkline/revoke'
  ]
  for (const head of heads) {
    const body = head.startsWith('POST') ? '{"sub":"x"}' : ''
    const x = await exchange(port, `${head} HTTP/1.1\r\n${two}Authorization: Bearer embedded-key-0123456789\r\nContent-Length: ${body.length}\r\n\r\n${body}`)
    t.is(x.answer.status, 400, head)
    t.is(x.answer.body, 'Bad Request', head)
    // and with one Host, served
    const one = await exchange(port, `${head} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer embedded-key-0123456789\r\nContent-Length: ${body.length}\r\n\r\n${body}`, { headOnly: true })
    t.not(one.answer.status, 400, head)
  }
  t.is((await exchange(port, `GET /own HTTP/1.1\r\n${two}\r\n`)).answer.status, 200, 'the host decides for its own routes')
})

test('an answer that leaves a declared body unread says Connection: close: the body is never read as the next request', async (t) => {
  const { port } = await startServer(t)
  for (const head of ['PATCH /sub/cb', 'GET /pub/cb', 'DELETE /pub/cb', 'OPTIONS /pub/cb', 'OPTIONS /sub/cb']) {
    const x = await exchange(port, `${head} HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhello`)
    t.is(x.answer.headers.connection, 'close', head)
  }
  // without a body the connection stays
  t.is((await exchange(port, `GET /pub/cb HTTP/1.1\r\n${H}\r\n`)).answer.headers.connection, 'keep-alive')
})

test('a bad request pipelined behind a publish Node parses: the publish is answered first, then the bad one by its own line (400 for garbage, 405 for an unknown method), then the close', async (t) => {
  const srv = await startServer(t)
  // a byte past ASCII in a header value sends the publish through Node's parser (the raw path's
  // answers are tested apart)
  const odd = 'X-A: \xe9\r\n'
  for (const [channel, behind, status, allow] of [
    ['pg1', 'GARBAGE\r\n\r\n', 400, undefined],
    ['pg2', `BREW /sub/x HTTP/1.1\r\n${H}\r\n`, 405, 'GET'],
    ['pg3', `BREW /pub/x HTTP/1.1\r\n${H}\r\n`, 405, 'GET, POST, PUT, DELETE']
  ] as const) {
    const text = await rawExchange(srv.port, `POST /pub/${channel} HTTP/1.1\r\n${H}${odd}Content-Length: 1\r\n\r\nA${behind}`, { ms: 3000 })
    const answers = text.split(/(?=HTTP\/1\.1 \d{3} )/)
    t.is(answers.length, 2, text)
    t.is(parseResponse(answers[0]!).status, 202, text)
    const bad = parseResponse(answers[1]!)
    t.is(bad.status, status, text)
    t.is(bad.headers.allow as string | undefined, allow as string | undefined, text)
    t.is(bad.headers.connection, 'close', text)
    t.is((await plainInfo(srv.base, channel))?.messages, 1)
  }
  // two publishes before it, both still to be answered when it is read: both answers, in order
  const two = await rawExchange(srv.port, `POST /pub/pg4 HTTP/1.1\r\n${H}${odd}Content-Length: 1\r\n\r\nA` +
    `POST /pub/pg4 HTTP/1.1\r\n${H}${odd}Content-Length: 1\r\n\r\nBGARBAGE\r\n\r\n` + 'more garbage, in a later chunk'.repeat(200), { ms: 3000 })
  t.deepEqual(two.split(/(?=HTTP\/1\.1 \d{3} )/).map((a) => parseResponse(a).status), [202, 202, 400], two)
  t.is((await plainInfo(srv.base, 'pg4'))?.messages, 2)
})

test('an oversize header on an unrouted path → 400 too', async (t) => {
  const { port } = await startServer(t)
  const x = await exchange(port, `GET /elsewhere HTTP/1.1\r\n${H}X-Big: ${'h'.repeat(17 * 1024)}\r\n\r\n`)
  t.is(x.answer.status, 400)
})

test('30 headers of 1 KB (31 KB in total, under the 32 KiB section) are served normally', async (t) => {
  const { base, port } = await startServer(t)
  await publish(base, 'h30', 'thirty')
  const headers = Array.from({ length: 30 }, (_, i) => `X-H${i}: ${'h'.repeat(1024)}\r\n`).join('')
  t.true(headers.length > 30 * 1024)
  for (const path of ['/pub/h30', '/sub/h30']) {
    const x = await exchange(port, `GET ${path} HTTP/1.1\r\n${H}${headers}\r\n`)
    t.is(x.answer.status, 200, path)
  }
})

test('20 headers of 1 KB (20 KB in total) are served normally', async (t) => {
  const { base, port } = await startServer(t)
  await publish(base, 'h20', 'twenty')
  const headers = Array.from({ length: 20 }, (_, i) => `X-H${i}: ${'h'.repeat(1024)}\r\n`).join('')
  const pub = await exchange(port, `GET /pub/h20 HTTP/1.1\r\n${H}${headers}\r\n`)
  t.is(pub.answer.status, 200)
  t.regex(pub.answer.body, /^queued messages: 1\r\n/)
  const sub = await exchange(port, `GET /sub/h20 HTTP/1.1\r\n${H}${headers}\r\n`)
  t.is(sub.answer.status, 200)
  t.is(sub.answer.body, 'twenty')
  // and an 8 KB header line, just under the per-line limit
  const near = await exchange(port, `GET /sub/h20 HTTP/1.1\r\n${H}X-Near: ${'n'.repeat(8000)}\r\n\r\n`)
  t.is(near.answer.status, 200)
})

// ---- body framing --------------------------------------------------------------------------------

const BAD_FRAMING: Array<[string, string]> = [
  ['a bad chunk size', `POST /pub/frame HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`],
  ['Content-Length plus chunked', `POST /pub/frame HTTP/1.1\r\n${H}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`],
  ['a negative Content-Length', `POST /pub/frame HTTP/1.1\r\n${H}Content-Length: -1\r\n\r\nabc`],
  ['a duplicate Content-Length (same value)', `POST /pub/frame HTTP/1.1\r\n${H}Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc`],
  ['a duplicate Content-Length (different values)', `POST /pub/frame HTTP/1.1\r\n${H}Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd`],
  ['a comma-listed Content-Length', `POST /pub/frame HTTP/1.1\r\n${H}Content-Length: 3, 3\r\n\r\nabc`]
]

for (const [name, bytes] of BAD_FRAMING) {
  test(`${name} → 400, connection closed, nothing queued`, async (t) => {
    const { base, port } = await startServer(t)
    const x = await exchange(port, bytes, { waitClose: true })
    t.regex(x.text, /^HTTP\/1\.1 400 /)
    t.is(statusLines(x.text), 1)
    t.true(x.closed)
    t.is((await info(base, 'frame')).status, 404)
  })
}

// ---- channel ids (§1) ---------------------------------------------------------------------------

test('odd bytes in channel ids are accepted, and %FF%FE and %FE%FF are distinct channels', async (t) => {
  const { base, port } = await startServer(t)
  t.is((await publish(base, '%FF%FE', 'ff-fe')).status, 202)
  t.is((await publish(base, '%FE%FF', 'fe-ff')).status, 202)
  t.is((await publish(base, '%FE%FF', 'fe-ff 2')).status, 202)
  t.is((await info(base, '%FF%FE')).json!.messages, 1)
  t.is((await info(base, '%FE%FF')).json!.messages, 2)
  t.is(await (await fetch(`${base}/sub/%FF%FE`)).text(), 'ff-fe')
  t.is(await (await fetch(`${base}/sub/%FE%FF`)).text(), 'fe-ff')
  for (const id of ['%C0%AF', '%ED%A0%80', '%01%7F%80', 'caf%C3%A9']) {
    t.is((await publish(base, id, id)).status, 202, id)
    t.is(await (await fetch(`${base}/sub/${id}`)).text(), id, id)
  }
  // SSE on an invalid-UTF-8 id works too
  const sse = await SseClient.connect(port, '/sub/%FF%FE')
  t.is(sse.status, 200)
  await sse.waitEvents(1)
  t.is(sse.events[0]!.data, 'ff-fe')
  t.is((await publish(base, '%FF%FE', 'live')).status, 201)
  await sse.waitEvents(2)
  t.is(sse.events[1]!.data, 'live')
  sse.close()
})

test('%00 in a channel id → 400 on subscriber and publisher', async (t) => {
  const { base, port } = await startServer(t)
  for (const req of ['GET /sub/a%00b', 'GET /pub/a%00b', 'POST /pub/%00']) {
    const x = await exchange(port, `${req} HTTP/1.1\r\n${H}Content-Length: 0\r\n\r\n`)
    t.is(x.answer.status, 400, req)
    t.is(x.answer.headers['content-type'], 'text/plain', req)
  }
  t.is((await info(base, '%00')).status, 400)
})

test('channel ids over 1024 bytes → 403 with an empty body; 1024 bytes is fine', async (t) => {
  const { base, port } = await startServer(t)
  const ok = 'k'.repeat(1024)
  t.is((await publish(base, ok, 'max')).status, 202)
  t.is(await (await fetch(`${base}/sub/${ok}`)).text(), 'max')
  // the limit is on decoded bytes: 1024 bytes written as 3072 characters is fine
  t.is(await (await fetch(`${base}/sub/${'%6B'.repeat(1024)}`)).text(), 'max')
  for (const req of [`GET /sub/${'k'.repeat(1025)}`, `GET /pub/${'k'.repeat(1025)}`, `POST /pub/${'k'.repeat(1025)}`, `GET /sub/${'%6B'.repeat(1025)}`]) {
    const x = await exchange(port, `${req} HTTP/1.1\r\n${H}Content-Length: 0\r\n\r\n`)
    t.is(x.answer.status, 403, req.slice(0, 12))
    t.is(x.answer.headers['content-length'], '0')
    t.is(x.answer.body, '')
  }
  // for a multiplexed list the limit covers the whole list, commas included: 2 × 512 + 1 = 1025
  const x = await exchange(port, `GET /sub/${'a'.repeat(512)},${'b'.repeat(512)} HTTP/1.1\r\n${H}\r\n`)
  t.is(x.answer.status, 403)
  t.is(x.answer.body, '')
})

test('more than 255 multiplexed channels → 403 empty; 255 are accepted', async (t) => {
  const { base, port } = await startServer(t)
  await publish(base, 'a', 'for a')
  const x = await exchange(port, `GET /sub/${Array.from({ length: 256 }, () => 'a').join(',')} HTTP/1.1\r\n${H}\r\n`)
  t.is(x.answer.status, 403)
  t.is(x.answer.body, '')
  t.is(x.answer.headers['content-length'], '0')
  // (255 distinct channels: one channel may hold at most 4 positions)
  const ok = await fetch(`${base}/sub/${Array.from({ length: 255 }, (_, i) => i === 0 ? 'a' : (i + 36).toString(36)).join(',')}`)
  t.is(ok.status, 200)
  t.is(await ok.text(), 'for a')
})

test('an empty multiplexed element → 400; an empty id → 404 `No channel id provided.`', async (t) => {
  const { port } = await startServer(t)
  for (const path of ['/sub/a,,b', '/sub/a,', '/sub/,a', '/sub/,']) {
    const x = await exchange(port, `GET ${path} HTTP/1.1\r\n${H}\r\n`)
    t.is(x.answer.status, 400, path)
  }
  for (const req of ['GET /sub/', 'GET /pub/', 'POST /pub/']) {
    const x = await exchange(port, `${req} HTTP/1.1\r\n${H}Content-Length: 0\r\n\r\n`)
    t.is(x.answer.status, 404, req)
    t.is(x.answer.headers['content-type'], 'text/plain', req)
    t.is(x.answer.body, 'No channel id provided.', req)
  }
})

test('paths are normalised as nginx does: //, . and .. reach the right channel; .. above the root → 400', async (t) => {
  const { base, port } = await startServer(t)
  const pub = await exchange(port, `POST /pub/./norm HTTP/1.1\r\n${H}Content-Length: 3\r\n\r\none`)
  t.is(pub.answer.status, 202)
  const pub2 = await exchange(port, `POST //pub///norm HTTP/1.1\r\n${H}Content-Length: 3\r\n\r\ntwo`)
  t.is(pub2.answer.status, 202)
  t.is((await info(base, 'norm')).json!.messages, 2)
  for (const path of ['/sub//norm', '/sub/./norm', '/sub/zzz/../norm', '/x/../sub/norm']) {
    const x = await exchange(port, `GET ${path} HTTP/1.1\r\n${H}\r\n`)
    t.is(x.answer.status, 200, path)
    t.is(x.answer.body, 'one', path)
  }
  for (const path of ['/sub/../../norm', '/pub/../../norm', '/..', '/sub/a/../../../norm']) {
    const x = await exchange(port, `GET ${path} HTTP/1.1\r\n${H}\r\n`)
    t.is(x.answer.status, 400, path)
  }
})

// ---- methods (§3.1, §4.1) ------------------------------------------------------------------------

for (const method of ['POST', 'PUT', 'DELETE']) {
  test(`${method} on the subscriber → 403 empty, and its body is not read as a next request`, async (t) => {
    const { base, port } = await startServer(t)
    await publish(base, 'ro', 'kept')
    // the body is a complete request of its own; it must never be answered
    const inner = `DELETE /pub/ro HTTP/1.1\r\n${H}\r\n`
    const x = await exchange(port, `${method} /sub/ro HTTP/1.1\r\n${H}Content-Length: ${inner.length}\r\n\r\n${inner}`, { waitClose: true })
    t.is(x.answer.status, 403)
    t.is(x.answer.headers['content-length'], '0')
    t.is(x.answer.body, '')
    t.is(statusLines(x.text), 1)
    t.true(x.closed)
    t.is((await info(base, 'ro')).json!.messages, 1)
  })
}

const ODD_METHODS = ['TRACE', 'HEAD', 'PATCH', 'PROPFIND', 'BREW', 'MKCALENDAR']
for (const [where, path, allow] of [['publisher', '/pub/m', 'GET, POST, PUT, DELETE'], ['subscriber', '/sub/m', 'GET']] as const) {
  for (const method of ODD_METHODS) {
    test(`${method} on the ${where} → prompt 405 with Allow: ${allow}`, async (t) => {
      const { base, port } = await startServer(t)
      await publish(base, 'm', 'x')
      const x = await exchange(port, `${method} ${path} HTTP/1.1\r\n${H}\r\n`, { headOnly: method === 'HEAD' })
      t.is(x.answer.status, 405)
      t.is(x.answer.headers.allow, allow)
      if (method !== 'HEAD') t.is(x.answer.body, 'Method Not Allowed')
      else t.is(x.text.slice(x.text.indexOf('\r\n\r\n') + 4), '')
      t.is(statusLines(x.text), 1)
    })
  }
}

// ---- isolation -----------------------------------------------------------------------------------

test('isolation: after every kind of bad input, a normal subscriber on the same server still gets messages', async (t) => {
  const { base, port, app } = await startServer(t)
  const sse = await SseClient.connect(port, '/sub/iso')
  t.is(sse.status, 200)
  const bad: Array<string | Buffer> = [
    ...GARBAGE.map(([, b]) => b),
    ...BAD_FRAMING.map(([, b]) => b),
    ...OVERSIZE_HEADERS.map(([, h]) => `GET /sub/iso HTTP/1.1\r\n${H}${h}\r\n`),
    `GET /sub/x HTTP/9.9\r\n${H}\r\n`,
    `GET /sub/${'u'.repeat(17 * 1024)} HTTP/1.1\r\n${H}\r\n`,
    `GET /sub/${'u'.repeat(45 * 1024)} HTTP/1.1\r\n${H}\r\n`,
    `POST /pub/iso HTTP/1.1\r\n${H}Content-Length: ${MiB + 1}\r\n\r\n`,
    `POST /pub/iso HTTP/1.1\r\n${H}Expect: 100-continue\r\nContent-Length: ${MiB + 1}\r\n\r\n`,
    `GET /sub/a%00b HTTP/1.1\r\n${H}\r\n`,
    `GET /sub/${'k'.repeat(1025)} HTTP/1.1\r\n${H}\r\n`,
    `GET /sub/a,,b HTTP/1.1\r\n${H}\r\n`,
    `GET /sub/../../x HTTP/1.1\r\n${H}\r\n`,
    `POST /sub/iso HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhello`,
    `DELETE /sub/iso HTTP/1.1\r\n${H}\r\n`,
    `BREW /sub/iso HTTP/1.1\r\n${H}\r\n`,
    `PROPFIND /pub/iso HTTP/1.1\r\n${H}\r\n`,
    `GET /sub/iso HTTP/1.1\r\n${H}Last-Event-ID: -5:-3\r\n\r\n`,
    `GET /sub/iso HTTP/1.1\r\n${H}Accept: text/event-stream\r\nLast-Event-ID: :\r\n\r\n`
  ]
  const answers = await Promise.all(bad.map(async (b) => await exchange(port, b, { ms: 3000 })))
  for (const a of answers) {
    t.true(a.answer.status >= 400 && a.answer.status < 500 || a.answer.status === 505, a.text.slice(0, 40))
  }
  t.is((await publish(base, 'iso', 'still here')).status, 201)
  await sse.waitEvents(1)
  t.is(sse.events[0]!.data, 'still here')
  t.false(sse.closed)
  // new subscribers are accepted too, and nothing was counted by the bad requests
  const lp = await fetch(`${base}/sub/iso`)
  t.is(await lp.text(), 'still here')
  t.is((await info(base, 'iso')).json!.subscribers, 1)
  t.is(coreOf(app).table.size, 1)
  sse.close()
})

test('one channel at more than 4 positions of a subscription: 400 (SSE and long-poll); 4 are served (each position gets each message)', async (t) => {
  const { port, base } = await startServer(t)
  const five = '/sub/' + Array(5).fill('q').join(',')
  for (const accept of ['text/event-stream', '']) {
    const r = await rawRequest(port, `GET ${five} HTTP/1.1\r\nHost: a\r\n${accept === '' ? '' : `Accept: ${accept}\r\n`}\r\n`)
    t.is(r.status, 400, accept)
    t.is(r.body, 'Bad Request: a channel named more than 4 times in one subscription')
  }
  // the same through the multiplexed list spelled with other channels between
  t.is((await rawRequest(port, 'GET /sub/q,x,q,y,q,q,z,q HTTP/1.1\r\nHost: a\r\n\r\n')).status, 400)
  const sse = await SseClient.connect(port, '/sub/' + Array(4).fill('q').join(',') + ',r')
  t.teardown(() => sse.close())
  await sse.until(() => sse.comments.includes(': hi'))
  t.is((await publish(base, 'q', 'x')).status, 201)
  t.deepEqual((await sse.waitEvents(4)).map((e) => e.data), ['x', 'x', 'x', 'x'])
})
