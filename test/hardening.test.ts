// Hostile and careless clients, on loopback, bounded in count and time: slow publisher bodies,
// never-reading subscribers cut at the cap, odd Content-Types, odd request lines and methods,
// forwarded status requests, channel floods. Each answers as it should and holds nothing after.
import { readFileSync, readdirSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { once } from 'node:events'
import test from 'ava'
import Fastify from 'fastify'
import parkline, { coreOf } from '../lib/plugin.ts'
import { LINGER_MS } from '../lib/linger.ts'
import { serve } from './helpers/node.ts'
import { eventually, exitedWithOutput, freePort, rawExchange, rawRequest, startServer, startStandalone } from './helpers/server.ts'
import { spawn } from 'node:child_process'

async function connect (port: number): Promise<net.Socket> {
  const s = net.connect(port, '127.0.0.1')
  s.on('error', () => {})
  await once(s, 'connect')
  return s
}

test('a publisher that trickles its body gets 408 after bodyTimeout and is closed; bodies read at once are bounded', async (t) => {
  const srv = await startServer(t, { bodyTimeout: 1, maxPublishing: 2 })
  const slow = await connect(srv.port)
  let answer = ''
  slow.on('data', (d: Buffer) => { answer += d.toString('latin1') })
  const closed = once(slow, 'close')
  slow.write('POST /pub/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab')
  await closed
  t.regex(answer, /^HTTP\/1\.1 408 /)
  t.is((await rawRequest(srv.port, 'GET /pub/slow HTTP/1.1\r\nHost: x\r\n\r\n')).status, 404, 'nothing was published')
  // two stalled bodies fill maxPublishing: a third publish is refused at once, not queued (bodies
  // over 16 KiB: a smaller one waits a second for its rest before Node's server reads it and counts it)
  const stalled = [await connect(srv.port), await connect(srv.port)]
  for (const s of stalled) s.write('POST /pub/s HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\nx')
  t.true(await eventually(() => coreOf(srv.app).publishing === 2))
  const third = await rawRequest(srv.port, 'POST /pub/s HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx')
  t.is(third.status, 503)
  t.truthy(third.headers['retry-after'])
  for (const s of stalled) s.destroy()
  t.true(await eventually(() => coreOf(srv.app).publishing === 0, 3000))
})

test('a subscriber that never reads, cut at its queue cap, is destroyed after the linger and counts until then', async (t) => {
  t.timeout(LINGER_MS + 20000)
  const srv = await startServer(t, { queueCap: 4096, maxSubscribers: 1 })
  const core = coreOf(srv.app)
  const fdsBefore = readdirSync('/proc/self/fd').length
  const zombie = await connect(srv.port)
  zombie.write('GET /sub/z HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n')
  t.true(await eventually(() => core.table.size === 1))
  zombie.pause() // never reads again
  const big = 'x'.repeat(64 * 1024)
  for (let i = 0; i < 200 && core.stats.overflowDisconnect === 0; i++) await fetch(`${srv.base}/pub/z`, { method: 'POST', body: big })
  t.is(core.stats.overflowDisconnect, 1)
  t.is(core.table.size, 0)
  t.is(core.lingering.size, 1)
  // still holding its fd: it counts against maxSubscribers
  t.is((await rawRequest(srv.port, 'GET /sub/other HTTP/1.1\r\nHost: x\r\n\r\n')).status, 503)
  t.true(await eventually(() => core.lingering.size === 0, LINGER_MS + 5000), 'destroyed after the linger')
  zombie.destroy()
  // the server's end and the test's client end are both gone: no descriptor left behind
  t.true(await eventually(() => readdirSync('/proc/self/fd').length <= fdsBefore + 1, 3000), `fds ${fdsBefore} -> ${readdirSync('/proc/self/fd').length}`)
  t.is((await rawExchange(srv.port, 'GET /sub/other HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n', { ms: 300 })).slice(0, 12), 'HTTP/1.1 200')
})

test('a Content-Type that is no media type is stored verbatim; PUT, DELETE and OPTIONS with one are answered normally', async (t) => {
  const srv = await startServer(t)
  for (const ct of ['foo', 'text', '/', '']) {
    const ch = 'ct' + Buffer.from(ct).toString('hex')
    const pub = await rawRequest(srv.port, `POST /pub/${ch} HTTP/1.1\r\nHost: x\r\nContent-Type: ${ct}\r\nContent-Length: 2\r\n\r\nhi`)
    t.is(pub.status, 202, JSON.stringify(ct))
    const lp = await rawRequest(srv.port, `GET /sub/${ch} HTTP/1.1\r\nHost: x\r\n\r\n`)
    t.is(lp.status, 200)
    t.is(lp.headers['content-type'], ct, 'verbatim')
    t.is(lp.body, 'hi')
  }
  for (const m of ['PUT', 'DELETE', 'OPTIONS']) {
    const r = await rawRequest(srv.port, `${m} /pub/ctfoo HTTP/1.1\r\nHost: x\r\nContent-Type: foo\r\nContent-Length: 0\r\n\r\n`)
    t.true([200, 202].includes(r.status), `${m} ${r.status}`)
    t.false((r.headers['content-type'] ?? '').includes('json'))
  }
})

test('odd request lines and methods: bare LF 400, CONNECT 405, %2e%2e is a dot segment, HTTP/1.0 WebSocket 400', async (t) => {
  const srv = await startServer(t)
  t.regex(await rawExchange(srv.port, 'GET /sub/x HTTP/1.1\nHost: x\n\n'), /^HTTP\/1\.1 400 /)
  t.regex(await rawExchange(srv.port, 'GET /sub/x HTTP/9.9\r\nHost: x\r\n\r\n'), /^HTTP\/1\.1 505 /)
  const connect = await rawExchange(srv.port, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n')
  t.regex(connect, /^HTTP\/1\.1 405 /)
  t.regex(connect, /\r\nAllow: /)
  t.is((await rawRequest(srv.port, 'POST /sub/%2e%2e/pub/dots HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx')).status, 202, 'nginx decodes %2e before normalising')
  t.is((await rawRequest(srv.port, 'GET /pub/dots HTTP/1.1\r\nHost: x\r\n\r\n')).status, 200)
  t.is((await rawRequest(srv.port, 'GET /sub/%2E%2E/%2e%2e/x HTTP/1.1\r\nHost: x\r\n\r\n')).status, 400, '.. above the root')
  const ws = await rawRequest(srv.port, 'GET /sub/x HTTP/1.0\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n')
  t.is(ws.status, 400)
})

test('a disallowed Origin gets 403 without CORS headers; /status and /metrics believe X-Forwarded-For only from trustedProxies', async (t) => {
  const srv = await startServer(t, { corsOrigins: ['https://good.example'] })
  const evil = await rawRequest(srv.port, 'GET /sub/x HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n\r\n')
  t.is(evil.status, 403)
  t.false('access-control-allow-origin' in evil.headers)
  t.false('access-control-allow-credentials' in evil.headers)
  // a loopback proxy forwarding an outside client: refused unless the proxy is trusted
  const via = (xff: string): string => `GET /status HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: ${xff}\r\n\r\n`
  t.is((await rawRequest(srv.port, via('203.0.113.5'))).status, 403)
  t.is((await rawRequest(srv.port, via('127.0.0.1'))).status, 403, 'the proxy is not trusted')
  t.is((await rawRequest(srv.port, 'GET /status HTTP/1.1\r\nHost: x\r\n\r\n')).status, 200)
  const trusting = await startServer(t, { trustedProxies: ['127.0.0.1'] })
  t.is((await rawRequest(trusting.port, via('203.0.113.5'))).status, 403)
  t.is((await rawRequest(trusting.port, via('127.0.0.1'))).status, 200, 'a local process through the trusted proxy')
  // a relay in front of the trusted proxy (on its host) gave the client before the loopback hop
  t.is((await rawRequest(trusting.port, via('10.0.0.1, 127.0.0.1'))).status, 403, 'every hop counts')
  t.is((await rawRequest(trusting.port, 'GET /metrics HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.5\r\n\r\n')).status, 403)
})

test('a disallowed Origin learns nothing from any answer: the revoke location refuses it 403 (preflight and POST, nothing revoked), and a bad path, a limit or a 404 carries no CORS headers for it, standalone and embedded', async (t) => {
  const key = 'k'.repeat(24)
  const good = 'https://good.example'
  const standalone = await startServer(t, { corsOrigins: [good], apiKey: [key] })
  const app = Fastify({ logger: false })
  await app.register(parkline, { prefix: '/rt', logLevel: 'silent', corsOrigins: [good], apiKey: [key] })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const embedded = (app.server.address() as net.AddressInfo).port
  const noCors = (r: { headers: Record<string, string | string[] | undefined> }, what: string): void => {
    t.false('access-control-allow-origin' in r.headers, what)
    t.false('access-control-allow-credentials' in r.headers, what)
  }
  for (const [port, pre] of [[standalone.port, ''], [embedded, '/rt']] as const) {
    const revoke = pre === '' ? '/admin/revoke' : '/rt/parkline/revoke'
    for (const origin of ['https://evil.example', good]) {
      const refused = origin !== good
      const o = `Origin: ${origin}\r\n`
      const pf = await rawRequest(port, `OPTIONS ${revoke} HTTP/1.1\r\nHost: x\r\n${o}Access-Control-Request-Method: POST\r\n\r\n`)
      t.is(pf.status, refused ? 403 : 200, `${revoke} preflight from ${origin}`)
      const body = '{"sub":"u"}'
      const post = await rawRequest(port, `POST ${revoke} HTTP/1.1\r\nHost: x\r\n${o}Authorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`)
      t.is(post.status, refused ? 403 : 200, `${revoke} from ${origin}`)
      if (refused) {
        noCors(pf, `${revoke} preflight`)
        noCors(post, revoke)
        for (const [path, extra, status] of [[`${pre}/sub/a/../b`, '', 400], [`${pre}/sub/${'a'.repeat(9000)}`, '', 414], [`${pre}/sub/x`, 'Host: y\r\n', 400]] as const) {
          const r = await rawRequest(port, `GET ${path} HTTP/1.1\r\nHost: x\r\n${extra}${o}\r\n`)
          // refused: 403 for the origin, or the fault itself; never readable by that page
          t.true(r.status === status || r.status === 403, `${path.slice(0, 40)}: ${r.status}`)
          noCors(r, path.slice(0, 40))
        }
      } else {
        t.is(post.headers['access-control-allow-origin'], good)
      }
    }
  }
  const nf = await rawRequest(standalone.port, 'GET /nowhere HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n\r\n')
  t.is(nf.status, 404)
  noCors(nf, '404')
})

test('/status and /metrics refuse a page of another site in a local browser (DNS rebinding), and answer local processes and the server\'s own pages', async (t) => {
  const srv = await startServer(t)
  const get = async (path: string, headers: string): Promise<number> => (await rawRequest(srv.port, `GET ${path} HTTP/1.1\r\n${headers}\r\n`)).status
  for (const path of ['/status', '/metrics']) {
    // a rebinding page's same-origin fetch: its own name as Host, no Origin on a GET
    t.is(await get(path, 'Host: rebind.example:8080\r\nSec-Fetch-Site: same-origin\r\n'), 403, path)
    t.is(await get(path, 'Host: rebind.example:8080\r\nOrigin: http://rebind.example:8080\r\n'), 403, path)
    t.is(await get(path, 'Host: 127.0.0.1\r\nOrigin: https://evil.example\r\nSec-Fetch-Site: cross-site\r\n'), 403, path)
    // a scraper or curl (no Origin, no Sec-Fetch-Site), the URL opened in a browser, the server's own page
    t.is(await get(path, 'Host: rebind.example:8080\r\n'), 200, path)
    t.is(await get(path, 'Host: localhost:8080\r\nSec-Fetch-Site: none\r\n'), 200, path)
    t.is(await get(path, 'Host: localhost:8080\r\nSec-Fetch-Site: same-origin\r\n'), 200, path)
  }
})

test('channel records are bounded by maxChannels: a flood of multiplexed subscriptions gets 503, nothing leaks', async (t) => {
  const srv = await startServer(t, { maxChannels: 300 })
  const core = coreOf(srv.app)
  // short ids: a multiplexed list counts against maxChannelIdLength (1024 bytes) as a whole
  const ids = (from: number): string => Array.from({ length: 255 }, (_, i) => 'f' + (from + i).toString(36)).join(',')
  const first = await connect(srv.port)
  first.write(`GET /sub/${ids(0)} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`)
  t.true(await eventually(() => core.registry.size === 255))
  const second = await rawRequest(srv.port, `GET /sub/${ids(1000)} HTTP/1.1\r\nHost: x\r\n\r\n`)
  t.is(second.status, 503)
  t.truthy(second.headers['retry-after'])
  t.is(core.registry.size, 255, 'the refused subscription created nothing')
  // existing channels are still served; a publish to a new channel past the cap is refused too
  t.is((await fetch(`${srv.base}/pub/f3`, { method: 'POST', body: 'x' })).status, 201)
  for (let i = 0; i < 45; i++) await fetch(`${srv.base}/pub/extra${i}`, { method: 'POST', body: 'x' })
  t.is((await fetch(`${srv.base}/pub/one-too-many`, { method: 'POST', body: 'x' })).status, 503)
  first.destroy()
  t.true(await eventually(() => core.registry.size === 46, 3000), 'the subscriber\'s empty channels were freed when it left')
})

test('requests pipelined on one connection are applied in the order sent: POST then DELETE, POST POST then GET', async (t) => {
  const srv = await startServer(t)
  const sse = await connect(srv.port)
  let events = ''
  sse.on('data', (d: Buffer) => { events += d.toString('latin1') })
  sse.write('GET /sub/c HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n')
  t.true(await eventually(() => events.includes(': hi')))
  const answers = await rawExchange(srv.port, 'POST /pub/c HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\nmessage' +
    'DELETE /pub/c HTTP/1.1\r\nHost: x\r\n\r\n', { until: (s) => (s.match(/HTTP\/1\.1 /g) ?? []).length === 2 && s.endsWith('\n') })
  t.deepEqual([...answers.matchAll(/HTTP\/1\.1 (\d+)/g)].map((m) => m[1]), ['201', '200'])
  t.true(await eventually(() => events.includes(':410:')))
  t.regex(events, /data: message\n\n[\s\S]*:410:/, 'the message, then the end')
  const three = await rawExchange(srv.port, 'POST /pub/d HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na' +
    'POST /pub/d HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nb' +
    'GET /pub/d HTTP/1.1\r\nHost: x\r\nAccept: text/json\r\n\r\n', { until: (s) => s.includes('"messages"') && s.endsWith('}') })
  t.regex(three, /"messages": 2/)
  sse.destroy()
})

for (const where of ['embedded', 'standalone'] as const) {
  test(`${where}: a publish pipelined behind an answer that closes the connection is not applied (it could never be answered)`, async (t) => {
    const srv = where === 'embedded' ? await startServer(t) : await startStandalone(t, {}, true)
    // a channel-info GET with a body is answered before its body is read: 404, Connection: close
    const answers = await rawExchange(srv.port, 'GET /pub/behind HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello' +
      'POST /pub/behind HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx', { ms: 2000 })
    t.deepEqual([...answers.matchAll(/HTTP\/1\.1 (\d+)/g)].map((m) => m[1]), ['404'])
    t.regex(answers, /connection: close/i)
    t.is((await rawRequest(srv.port, 'GET /pub/behind HTTP/1.1\r\nHost: x\r\n\r\n')).status, 404, 'nothing was published')
  })
}

test('a request pipelined behind a parked long-poll is not applied: the poll gets 400 and the connection closes', async (t) => {
  const srv = await startServer(t)
  const out = await rawExchange(srv.port, 'GET /sub/a HTTP/1.1\r\nHost: x\r\n\r\n' +
    'POST /pub/b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello', { ms: 2000 })
  t.regex(out, /^HTTP\/1\.1 400 /)
  t.is((out.match(/HTTP\/1\.1 /g) ?? []).length, 1, 'only the poll is answered')
  t.is((await rawRequest(srv.port, 'GET /pub/b HTTP/1.1\r\nHost: x\r\n\r\n')).status, 404, 'nothing was published')
})

test('behind a parked long-poll on Node\'s path, a request Node would answer itself (no Host, an unknown Expect) is not answered either: the poll gets 400 and the connection closes', async (t) => {
  const srv = await startServer(t)
  // a byte past ASCII sends the poll through Node's parser
  for (const behind of ['GET /health HTTP/1.1\r\n\r\n', 'POST /pub/q HTTP/1.1\r\nHost: x\r\nExpect: x-unknown\r\nContent-Length: 1\r\n\r\nz']) {
    const out = await rawExchange(srv.port, 'GET /sub/q HTTP/1.1\r\nHost: x\r\nX-A: \xe9\r\n\r\n' + behind, { ms: 2000 })
    t.regex(out, /^HTTP\/1\.1 400 /, JSON.stringify(behind))
    t.is((out.match(/HTTP\/1\.1 /g) ?? []).length, 1, 'only the poll is answered')
  }
  // alone, each gets what Node answers
  const noHost = await rawExchange(srv.port, 'GET /health HTTP/1.1\r\n\r\n', { ms: 2000 })
  t.regex(noHost, /^HTTP\/1\.1 400 Bad Request\r\n/)
  t.regex(noHost, /\r\nConnection: close\r\n/)
  t.regex(await rawExchange(srv.port, 'POST /pub/q HTTP/1.1\r\nHost: x\r\nExpect: x-unknown\r\nContent-Length: 1\r\n\r\nz', { ms: 2000 }), /^HTTP\/1\.1 417 /)
  // HTTP/1.0 needs no Host
  t.regex(await rawExchange(srv.port, 'GET /health HTTP/1.0\r\n\r\n', { ms: 2000 }), /^HTTP\/1\.1 200 /)
  // without Host, an Expect is not looked at: 400 and the close (no 100 inviting the body, no 417, no 413)
  for (const expect of ['100-continue', 'x-unknown']) {
    for (const length of [2, 99999999]) {
      const out = await rawExchange(srv.port, `POST /pub/q HTTP/1.1\r\nExpect: ${expect}\r\nContent-Length: ${length}\r\n\r\n`, { ms: 1500 })
      t.regex(out, /^HTTP\/1\.1 400 Bad Request\r\n/, `${expect}, ${length}: ${out}`)
      t.regex(out, /\r\nConnection: close\r\n/)
      t.is((out.match(/HTTP\/1\.1 /g) ?? []).length, 1, out)
    }
  }
})

test('embedded: behind a parked long-poll, a request Node answers itself or a route of the host app answers: the poll gets 400 and the connection closes; behind a stream, no answer', async (t) => {
  const app = Fastify({ logger: false })
  await app.register(parkline, { logLevel: 'silent', publisherOpen: true })
  app.get('/other', async () => 'other')
  app.post('/side', async () => 'done')
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as net.AddressInfo).port
  for (const behind of ['GET /other HTTP/1.1\r\n\r\n', 'POST /pub/q HTTP/1.1\r\nHost: x\r\nExpect: x-unknown\r\nContent-Length: 1\r\n\r\nz', 'GET /other HTTP/1.1\r\nHost: x\r\n\r\n']) {
    const out = await rawExchange(port, 'GET /sub/q HTTP/1.1\r\nHost: x\r\n\r\n' + behind, { ms: 2000 })
    t.regex(out, /^HTTP\/1\.1 400 /, JSON.stringify(behind))
    t.is((out.match(/HTTP\/1\.1 /g) ?? []).length, 1, 'only the poll is answered')
  }
  const side = 'POST /side HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 1\r\n\r\nz'
  t.regex(await rawExchange(port, 'GET /sub/q HTTP/1.1\r\nHost: x\r\n\r\n' + side, { ms: 2000 }), /^HTTP\/1\.1 400 /)
  const stream = await rawExchange(port, 'GET /sub/q HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n' + side, { ms: 1000 })
  t.regex(stream, /^HTTP\/1\.1 200 /)
  t.is((stream.match(/HTTP\/1\.1 /g) ?? []).length, 1, 'the stream goes on, the request behind it unanswered')
  // (read in the same packet, the host's route ran: Node's parser hands it over before the
  // subscriber's handler has run; docs/api.md 11 says so)
  // a poll alone still parks, and is answered by a publish
  const poll = rawExchange(port, 'GET /sub/q2 HTTP/1.1\r\nHost: x\r\n\r\n', { ms: 3000, until: (s) => s.endsWith('hi') })
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.is((await rawRequest(port, 'POST /pub/q2 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi')).status, 201)
  t.regex(await poll, /^HTTP\/1\.1 200 [\s\S]*hi$/)
})

test('with access control, a publish pipelined behind a subscriber being admitted is not applied', async (t) => {
  const srv = await startServer(t, { apiKey: ['k-0123456789abcdef'], anonymousSubscribe: ['*'] })
  await rawExchange(srv.port, 'GET /sub/a HTTP/1.1\r\nHost: x\r\n\r\n' +
    'POST /pub/b HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k-0123456789abcdef\r\nContent-Length: 5\r\n\r\nhello', { ms: 1500 })
  t.is((await rawRequest(srv.port, 'GET /pub/b HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k-0123456789abcdef\r\n\r\n')).status, 404, 'nothing was published')
})

test('a WebSocket handshake and a publish held by an authorize request that waits: the bytes their clients send meanwhile are not read in (bounded per connection)', async (t) => {
  t.timeout(60000)
  // an authorize endpoint that holds each request until the test lets it go
  const held: http.ServerResponse[] = []
  let hold = true
  const upstream = http.createServer((_req, res) => { if (hold) held.push(res); else res.writeHead(200).end() })
  upstream.listen(0, '127.0.0.1')
  await once(upstream, 'listening')
  t.teardown(() => { upstream.closeAllConnections(); upstream.close() })
  const srv = await startServer(t, { authorizeUrl: `http://127.0.0.1:${(upstream.address() as net.AddressInfo).port}/auth`, authorizeTimeout: 30, authorizePublish: true, publisherOpen: true })
  // the server's side of each connection, to read how much of it the server took in
  const serverSide: net.Socket[] = []
  srv.app.server.on('connection', (s: net.Socket) => { serverSide.push(s) })
  const ws = await connect(srv.port)
  ws.write('GET /sub/flood HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n')
  const pub = await connect(srv.port)
  pub.write('POST /pub/flood HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx')
  t.true(await eventually(() => held.length === 2, 10000), 'both wait on the authorize request')
  // 4 MiB behind each: masked empty pings, and requests pipelined behind the publish
  const pings = Buffer.alloc(4 << 20)
  for (let i = 0; i + 6 <= pings.length; i += 6) pings.set([0x89, 0x80, 0x12, 0x34, 0x56, 0x78], i)
  const piped = Buffer.from('POST /pub/flood HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx'.repeat(Math.ceil((4 << 20) / 58)))
  ws.write(pings)
  pub.write(piped)
  // until the kernel takes no more of either (what it could not take waits in the clients), or
  // took it all
  let last = -1
  t.true(await eventually(async () => {
    const now = ws.writableLength + pub.writableLength
    const same = now === last
    last = now
    await new Promise((resolve) => setTimeout(resolve, 200))
    return same
  }, 20000), 'the clients stopped sending')
  const conns = serverSide.filter((s) => s.remotePort === ws.localPort || s.remotePort === pub.localPort)
  t.is(conns.length, 2)
  // read in: the request, and at most the raw path's bound (64 KiB), the read that crossed it and
  // the socket's own buffer (64 KiB, and the read that filled it); before, the bound was 1 MiB,
  // and a handshake read on to it too (1,144,981 bytes here)
  t.log(`read in while waiting: ${conns.map((s) => s.bytesRead).join(' and ')} bytes`)
  for (const s of conns) t.true(s.bytesRead < 512 * 1024, `the server read ${s.bytesRead} bytes of a connection waiting on access control`)
  hold = false
  for (const res of held) res.writeHead(200).end()
  ws.destroy()
  pub.destroy()
  // the server serves on
  t.is((await rawRequest(srv.port, 'POST /pub/after HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok')).status, 202)
})

test('a publish answered before its body is read (bad id, method, Idempotency-Key) closes the connection: the rest of a huge declared body is never read', async (t) => {
  const srv = await startServer(t, { idempotencyWindow: 60 })
  const heads = [
    ['POST /pub/%00 HTTP/1.1', '', 400],
    ['PATCH /pub/x HTTP/1.1', '', 405],
    ['POST /pub/x HTTP/1.1', 'Idempotency-Key: \x01bad\r\n', 400],
    ['PUT /pub/' + 'x'.repeat(2000) + ' HTTP/1.1', '', 403]
  ] as const
  for (const [line, extra, status] of heads) {
    const s = await connect(srv.port)
    let answer = ''
    s.on('data', (d: Buffer) => { answer += d.toString('latin1') })
    const closed = once(s, 'close')
    // 1 TB declared, two bytes sent
    s.write(`${line}\r\nHost: x\r\n${extra}Content-Length: 1000000000000\r\n\r\nab`)
    const gone = await Promise.race([closed.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 5000))])
    t.true(gone, `${line.slice(0, 20)}: the server closed the connection (answer: ${JSON.stringify(answer.slice(0, 40))})`)
    t.regex(answer, new RegExp(`^HTTP/1\\.1 ${status} `), line.slice(0, 20))
    t.regex(answer, /\r\nconnection: close\r\n/i)
    s.destroy()
  }
})

test('a body trickling under bodyMinRate is cut after the grace, long before bodyTimeout', async (t) => {
  t.timeout(20000)
  const srv = await startServer(t, { bodyTimeout: 60, bodyMinRate: 100 })
  const s = await connect(srv.port)
  let answer = ''
  s.on('data', (d: Buffer) => { answer += d.toString('latin1') })
  s.write('POST /pub/trickle HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n')
  const t0 = Date.now()
  // one byte every 200 ms: 5 B/s, bounded to 60 bytes
  for (let i = 0; i < 60 && !s.destroyed && answer === ''; i++) {
    s.write('x')
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  t.true(await eventually(() => answer !== '', 3000))
  t.regex(answer, /^HTTP\/1\.1 408 /)
  // cut by the rate (bodyTimeout is 60 s; this loop gives up after ~12 s), not before the grace
  t.true(Date.now() - t0 >= 5000)
  s.destroy()
})

test('stalled publisher bodies hold at most maxPublishing of them in memory: RSS stays bounded, the rest are refused', async (t) => {
  const node = await serve(t, ['--workers', '1', '--max-publishing', '4', '--body-timeout', '20'])
  const rss = (): number => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${node.proc.pid}/status`, 'utf8'))![1]) * 1024
  const before = rss()
  const chunk = Buffer.alloc(1040000, 120)
  const sockets: net.Socket[] = []
  const answers: string[] = []
  for (let i = 0; i < 40; i++) {
    const s = await connect(node.port)
    let got = ''
    s.on('data', (d: Buffer) => { got += d.toString('latin1') })
    s.on('close', () => { answers.push(got.slice(9, 12)) })
    s.write(`POST /pub/big${i} HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n`)
    s.write(chunk)
    sockets.push(s)
  }
  t.true(await eventually(() => answers.length >= 36, 10000), `answered ${answers.length}`)
  // refused at once: 503 (or a reset, when the server closes while the client is still sending its
  // megabyte, which can discard the answer in flight); none accepted
  t.true(answers.every((a) => a === '503' || a === ''), answers.join(','))
  t.true(answers.filter((a) => a === '503').length > 0)
  const grown = rss() - before
  // 4 bodies of ~1 MB are read at once; 40 unbounded would be ~40 MB
  t.true(grown < 24 * 1048576, `RSS grew ${(grown / 1048576).toFixed(1)} MiB`)
  for (const s of sockets) s.destroy()
})

test('SIGHUP (a logrotate recipe) reads the configuration again and ends nothing: the server and its subscribers stay', async (t) => {
  const node = await serve(t, ['--workers', '1'], 'info')
  const sub = net.connect(node.port, '127.0.0.1')
  sub.on('error', () => {})
  t.teardown(() => sub.destroy())
  let got = ''
  sub.on('data', (d: Buffer) => { got += d.toString('latin1') })
  sub.write('GET /sub/hup HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n')
  t.true(await eventually(() => got.includes(': hi'), 5000))
  node.proc.kill('SIGHUP')
  t.true(await eventually(() => node.log().includes('configuration read again: no credential changed'), 5000), node.log())
  t.is(node.proc.exitCode, null)
  t.is((await fetch(`${node.base}/pub/hup`, { method: 'POST', body: 'still here' })).status, 201)
  t.true(await eventually(() => got.includes('data: still here'), 5000))
})

test('an open-file limit that caps the subscribers, or a maxSubscribers above it, is said at start', async (t) => {
  const start = async (extra: string): Promise<string> => {
    const port = await freePort()
    // a process of its own with the limit lowered (soft and hard), as a unit without LimitNOFILE gets
    const child = spawn('bash', ['-c', `ulimit -n 4096 && exec "${process.execPath}" bin/parkline.ts serve --port ${port} --host 127.0.0.1 ${extra.includes('--workers') ? '' : '--workers 1 '}--drain-window 0 ${extra}`], { stdio: ['ignore', 'pipe', 'pipe'] })
    t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
    let out = ''
    child.stdout!.on('data', (d: Buffer) => { out += d.toString() })
    child.stderr!.on('data', (d: Buffer) => { out += d.toString() })
    t.true(await eventually(() => out.includes('parkline listening on'), 15000), out)
    child.kill('SIGKILL')
    return out
  }
  const capped = await start('')
  t.regex(capped, /the open-file limit \(4096\) caps this process at 3686 subscribers/)
  t.regex(capped, /"maxSubscribers":3686/)
  const over = await start('--max-subscribers 100000')
  t.regex(over, /maxSubscribers 100000 is above 90% of this process's open-file limit \(4096\)/)
  // with workers, once for all of them (worker 0's), not a line per worker
  const workers = await start('--workers 2')
  t.is((workers.match(/the open-file limit \(4096\) caps/g) ?? []).length, 1, workers)
  t.regex(workers, /the open-file limit \(4096\) caps each of the 2 workers at 3686 subscribers \(7372 in all\)/)
})

for (const fast of [true, false]) {
  test(`${fast ? 'raw path' : 'Fastify path'}: multiplexed long-polls answered at once leave no channel records behind (new ids in every poll cannot fill maxChannels)`, async (t) => {
    const s = await startStandalone(t, { maxChannels: 100 }, fast)
    const registry = coreOf(s.app).registry
    t.is((await rawRequest(s.port, 'POST /pub/held HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi')).status, 202)
    // 60 polls naming 3 new ids each: 180 records made, past the cap if they stayed
    for (let i = 0; i < 60; i++) {
      const r = await rawRequest(s.port, `GET /sub/held,j${i}a,j${i}b,j${i}c HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\nIf-None-Match: 0\r\n\r\n`)
      t.is(r.status, 200, `poll ${i}: ${r.body}`)
      t.is(r.body, 'hi')
    }
    t.is(registry.size, 1, 'the channel with the message only')
    t.is((await rawRequest(s.port, 'GET /pub/j0a HTTP/1.1\r\nHost: a\r\n\r\n')).status, 404)
    // and new channels are still made
    t.is((await rawRequest(s.port, 'POST /pub/after HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx')).status, 202)
  })
}

test('the start-up line names the address bound (0.0.0.0 on every interface, as the README shows); a bad flag is named as the command line\'s', async (t) => {
  const port = await freePort()
  const child = spawn(process.execPath, ['bin/parkline.ts', 'serve', '--port', String(port), '--host', '0.0.0.0', '--workers', '1', '--drain-window', '0'], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  let out = ''
  child.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr!.on('data', (d: Buffer) => { out += d.toString() })
  t.true(await eventually(() => out.includes('parkline listening on'), 15000), out)
  t.true(out.includes(`parkline listening on http://0.0.0.0:${port}`), out)
  child.kill('SIGKILL')
  const bad = spawn(process.execPath, ['bin/parkline.ts', 'serve', '--buffer-length', '0'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  bad.stderr!.on('data', (d: Buffer) => { err += d.toString() })
  bad.stdout!.on('data', (d: Buffer) => { err += d.toString() })
  const code = await exitedWithOutput(bad)
  t.is(code, 2)
  t.regex(err, /bufferLength \(command line\) must be an integer >= 1/)
})

test('a fault in a handler is logged (at error, with its stack) and answered a plain 500; the request in that line shows no query (a token given as ?access_token= stays out of the log)', async (t) => {
  // a real server process whose log is read: a route of the test's throws, as a fault would
  const code = `
    import { buildServer } from './lib/server.ts'
    import { resolveOptions } from './lib/config.ts'
    const app = await buildServer(resolveOptions({ port: 0, host: '127.0.0.1', logLevel: 'error', tokenInQuery: true, jwtSecret: 's'.repeat(40) }))
    app.get('/boom', async () => { throw new Error('a fault') })
    await app.listen({ port: 0, host: '127.0.0.1' })
    process.stderr.write('port ' + app.server.address().port + '\\n')`
  const proc = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { if (proc.exitCode === null) proc.kill('SIGKILL') })
  let out = ''
  let err = ''
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  proc.stderr!.on('data', (d: Buffer) => { err += d.toString() })
  t.true(await eventually(() => /port \d+/.test(err), 20000), err)
  const port = Number(/port (\d+)/.exec(err)![1])
  const answer = await rawRequest(port, 'GET /boom?access_token=eyJsecret.token.here HTTP/1.1\r\nHost: x\r\n\r\n')
  t.is(answer.status, 500)
  t.is(answer.body, 'Internal Server Error', 'the client learns nothing of the fault')
  t.true(await eventually(() => out.includes('request failed: a fault'), 5000), out)
  t.false(out.includes('eyJsecret'), out)
  t.regex(out, /"url":"\/boom\?redacted"/)
})

/** The kernel's timer on the server's end of a loopback connection (/proc/net/tcp `tr`): 2 = keepalive. */
function serverTimer (serverPort: number, clientPort: number): string | undefined {
  const hex = (p: number): string => p.toString(16).toUpperCase().padStart(4, '0')
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/)
    if (f.length < 6 || !f[1]!.endsWith(':' + hex(serverPort)) || !f[2]!.endsWith(':' + hex(clientPort)) || f[3] !== '01') continue
    return f[5]!.split(':')[0]
  }
  return undefined
}

for (const tcpKeepAlive of [60, 0]) {
  test(`tcpKeepAlive ${tcpKeepAlive}: the kernel ${tcpKeepAlive > 0 ? 'keeps a keepalive timer on' : 'keeps no timer on'} a parked long-poll's connection (a client gone without a FIN is found)`, async (t) => {
    const { port } = await startServer(t, { tcpKeepAlive })
    const socket = net.connect(port, '127.0.0.1')
    t.teardown(() => socket.destroy())
    await once(socket, 'connect')
    socket.write('GET /sub/quiet HTTP/1.1\r\nHost: x\r\n\r\n')
    // (a delayed ACK shows as a timer too, for a few ms: the idle connection's is what counts)
    const want = tcpKeepAlive > 0 ? '02' : '00'
    t.true(await eventually(() => serverTimer(port, socket.localPort!) === want, 3000), `timer ${serverTimer(port, socket.localPort!)}`)
    await new Promise((resolve) => setTimeout(resolve, 300))
    t.is(serverTimer(port, socket.localPort!), want)
  })
}
