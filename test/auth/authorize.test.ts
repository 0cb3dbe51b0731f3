// authorizeUrl (Nchan's nchan_authorize_request) against real node:http upstreams: forwarded
// headers, pass-through of refusals, timeouts, the decision cache and in-flight sharing.
import http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import test, { type ExecutionContext } from 'ava'
import { SignJWT } from 'jose'
import { AUTH_DEFAULTS, Auth, isRefusal, type AuthOptions, type Grant, type Refusal, type SubscriberContext } from '../../lib/auth.ts'

interface Upstream { url: string, requests: http.IncomingMessage[] }

/** A real upstream on 127.0.0.1:0; `handler` answers (or not) each request. */
async function upstream (t: ExecutionContext, handler: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<Upstream> {
  const requests: http.IncomingMessage[] = []
  const server = http.createServer((req, res) => {
    requests.push(req)
    handler(req, res)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/auth`, requests }
}

function setup (t: ExecutionContext, over: Partial<AuthOptions>): Auth {
  const a = new Auth({ ...AUTH_DEFAULTS, apiKey: [], anonymousSubscribe: [], ...over })
  t.teardown(() => a.close())
  return a
}

function sub (over: Partial<SubscriberContext> = {}): SubscriberContext {
  return {
    headers: { cookie: 'session=abc', authorization: 'Bearer opaque', origin: 'https://app.example', 'user-agent': 'test-agent/1', 'x-forwarded-for': '203.0.113.7', 'x-secret': 'not forwarded' },
    query: 'last_event_id=1',
    channels: ['room.1', 'room.2'],
    rawChannels: 'room.1,room.2',
    transport: 'eventsource',
    uri: '/sub/room.1,room.2?last_event_id=1',
    method: 'GET',
    remoteAddress: '10.9.8.7',
    ...over
  }
}

const ok = (req: http.IncomingMessage, res: http.ServerResponse): void => { res.end('yes') }

test('the authorize request carries the client headers and the X- fields', async (t) => {
  const up = await upstream(t, ok)
  const a = setup(t, { authorizeUrl: up.url })
  const g = await a.subscriber(sub()) as Grant
  t.is(g.kind, 'authorize')
  t.deepEqual(g.subscribe, ['room.1', 'room.2'])
  t.is(up.requests.length, 1)
  const r = up.requests[0]!
  t.is(r.method, 'GET')
  t.is(r.url, '/auth')
  t.is(r.headers.cookie, 'session=abc')
  t.is(r.headers.authorization, 'Bearer opaque')
  t.is(r.headers.origin, 'https://app.example')
  t.is(r.headers['user-agent'], 'test-agent/1')
  t.is(r.headers['x-channel-id'], 'room.1,room.2')
  t.is(r.headers['x-original-uri'], '/sub/room.1,room.2?last_event_id=1')
  t.is(r.headers['x-original-method'], 'GET')
  t.is(r.headers['x-subscriber-type'], 'eventsource')
  t.is(r.headers['x-forwarded-for'], '203.0.113.7, 10.9.8.7')
  t.is(r.headers['x-secret'], undefined)
  t.is(a.stats.authorizeCalls, 1)

  // No XFF from the client: the peer address alone. A control character in a channel id is escaped.
  await a.subscriber(sub({ headers: {}, channels: ['a\nb'], rawChannels: 'a\nb', transport: 'websocket' }))
  const r2 = up.requests[1]!
  t.is(r2.headers['x-forwarded-for'], '10.9.8.7')
  t.is(r2.headers['x-channel-id'], 'a%0Ab')
  t.is(r2.headers['x-subscriber-type'], 'websocket')
  t.is(r2.headers.cookie, undefined)
})

test('any non-2xx answer goes back to the client with its body and content-type', async (t) => {
  const up = await upstream(t, (req, res) => {
    const code = Number(req.headers['x-channel-id'])
    if (code === 302) res.setHeader('location', 'https://login.example/')
    if (code === 401) res.setHeader('www-authenticate', 'Cookie realm="app"')
    res.writeHead(code, { 'content-type': 'application/json', 'x-internal': 'dropped' })
    res.end(JSON.stringify({ refused: code }))
  })
  const a = setup(t, { authorizeUrl: up.url })
  for (const code of [401, 403, 404, 302, 500]) {
    const r = await a.subscriber(sub({ channels: [String(code)], rawChannels: String(code) })) as Refusal
    t.true(isRefusal(r))
    t.is(r.status, code)
    t.is(r.code, 'PKL_ERR_AUTHORIZE_REFUSED')
    t.is(r.body.toString(), JSON.stringify({ refused: code }))
    t.is(r.headers!['content-type'], 'application/json')
    t.false('x-internal' in r.headers!)
    if (code === 302) t.is(r.headers!.location, 'https://login.example/')
    if (code === 401) t.is(r.headers!['www-authenticate'], 'Cookie realm="app"')
  }
  t.deepEqual(a.stats.refusals, { 401: 1, 403: 1, 404: 1, 302: 1, 500: 1 })
})

test('a refusal body is capped at 4 KiB', async (t) => {
  const up = await upstream(t, (req, res) => {
    res.writeHead(403, { 'content-type': 'text/plain' })
    res.end(Buffer.alloc(100_000, 'x'))
  })
  const a = setup(t, { authorizeUrl: up.url })
  const r = await a.subscriber(sub()) as Refusal
  t.is(r.status, 403)
  t.is((r.body as Buffer).length, 4096)
})

test('a hanging upstream is a 503 with Retry-After within authorizeTimeout', async (t) => {
  const up = await upstream(t, () => {})
  const a = setup(t, { authorizeUrl: up.url, authorizeTimeout: 0.3 })
  const start = performance.now()
  const r = await a.subscriber(sub()) as Refusal
  const took = performance.now() - start
  t.is(r.status, 503)
  t.is(r.retryAfter, 1)
  t.is(r.code, 'PKL_ERR_AUTH_UNAVAILABLE')
  // it waited for authorizeTimeout (a lower bound: a loaded host lengthens a wait, never shortens
  // it); the upstream never answers, so only that timeout could end it
  t.true(took >= 250, `took ${took} ms`)
  t.is(a.stats.authorizeErrors, 1)
  t.is(a.stats.authorizeCalls, 1)
  // Not cached: the next request asks again, and fails the same way. Counted where it is sent: on
  // a loaded host the client can give up on it before the upstream has read it (CI once saw the
  // upstream count 1 request here), so the upstream's own count would make this test race.
  t.is((await a.subscriber(sub()) as Refusal).status, 503)
  t.is(a.stats.authorizeCalls, 2)
  t.is(a.stats.authorizeErrors, 2)
  t.is(a.stats.authorizeCacheHits, 0)
})

test('a connection error is a 503', async (t) => {
  // A port that was just listening and is now closed: connection refused.
  const server = http.createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as AddressInfo).port
  server.close()
  await once(server, 'close')
  const a = setup(t, { authorizeUrl: `http://127.0.0.1:${port}/auth` })
  t.is((await a.subscriber(sub()) as Refusal).status, 503)
})

test('decisions are cached: two identical requests, one upstream call; ttl 0 asks each time', async (t) => {
  const up = await upstream(t, ok)
  const a = setup(t, { authorizeUrl: up.url, authorizeCacheTtl: 5 })
  t.false(isRefusal(await a.subscriber(sub())))
  t.false(isRefusal(await a.subscriber(sub())))
  t.is(up.requests.length, 1)
  t.is(a.stats.authorizeCacheHits, 1)
  // Anything forwarded differs — URI (an app may read a token from its query), client address,
  // credentials, channels, origin, transport: asked again, never answered from another's decision.
  await a.subscriber(sub({ uri: '/sub/room.1,room.2?token=other' }))
  await a.subscriber(sub({ remoteAddress: '10.0.0.2' }))
  await a.subscriber(sub({ headers: { cookie: 'session=other' } }))
  await a.subscriber(sub({ channels: ['room.3'], rawChannels: 'room.3' }))
  await a.subscriber(sub({ transport: 'longpoll' }))
  await a.subscriber(sub({ headers: { cookie: 'session=abc', authorization: 'Bearer opaque', origin: 'https://evil.example' } }))
  t.is(up.requests.length, 7)

  const up0 = await upstream(t, ok)
  const b = setup(t, { authorizeUrl: up0.url, authorizeCacheTtl: 0 })
  await b.subscriber(sub())
  await b.subscriber(sub())
  t.is(up0.requests.length, 2)
  t.is(b.stats.authorizeCacheHits, 0)
})

test('refusals (4xx) are cached, 5xx are not', async (t) => {
  let status = 403
  const up = await upstream(t, (req, res) => { res.writeHead(status); res.end() })
  const a = setup(t, { authorizeUrl: up.url })
  t.is((await a.subscriber(sub()) as Refusal).status, 403)
  t.is((await a.subscriber(sub()) as Refusal).status, 403)
  t.is(up.requests.length, 1)
  status = 502
  const other = sub({ channels: ['x'], rawChannels: 'x' })
  t.is((await a.subscriber(other) as Refusal).status, 502)
  t.is((await a.subscriber(other) as Refusal).status, 502)
  t.is(up.requests.length, 3)
})

test('identical concurrent requests share one upstream call', async (t) => {
  const pending: http.ServerResponse[] = []
  const up = await upstream(t, (req, res) => { pending.push(res) })
  const a = setup(t, { authorizeUrl: up.url, authorizeCacheTtl: 0 })
  const all = Promise.all([1, 2, 3, 4, 5].map(async () => await a.subscriber(sub())))
  while (up.requests.length === 0) await new Promise((resolve) => setTimeout(resolve, 5))
  await new Promise((resolve) => setTimeout(resolve, 20))
  for (const res of pending) res.end()
  const rs = await all
  for (const r of rs) t.false(isRefusal(r))
  t.is(up.requests.length, 1)
  t.is(a.stats.authorizeShared, 4)
})

test('anonymous channels skip the authorize request', async (t) => {
  const up = await upstream(t, (req, res) => { res.writeHead(403); res.end() })
  const a = setup(t, { authorizeUrl: up.url, anonymousSubscribe: ['public.*'] })
  t.is((await a.subscriber(sub({ channels: ['public.a'], rawChannels: 'public.a' })) as Grant).kind, 'anonymous')
  t.is(up.requests.length, 0)
  t.is((await a.subscriber(sub({ channels: ['public.a', 'room'], rawChannels: 'public.a,room' })) as Refusal).status, 403)
  t.is(up.requests.length, 1)
})

test('with a JWT key as well, both must admit; the grant is the JWT one', async (t) => {
  const secret = 'a-test-secret-that-is-32-bytes-long!!'
  let status = 200
  const up = await upstream(t, (req, res) => { res.writeHead(status); res.end() })
  const a = setup(t, { authorizeUrl: up.url, jwtSecret: secret })
  const tok = await new SignJWT({ sub: 'u', parkline: { subscribe: ['room.*'] } }).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(secret))
  const headers = { authorization: 'Bearer ' + tok }
  const g = await a.subscriber(sub({ headers })) as Grant
  t.is(g.kind, 'jwt')
  t.is(g.sub, 'u')
  t.is(up.requests[0]!.headers.authorization, 'Bearer ' + tok)
  // No token: refused locally, the app is not asked.
  t.is((await a.subscriber(sub({ headers: {} })) as Refusal).status, 401)
  t.is(up.requests.length, 1)
  status = 403
  t.is((await a.subscriber(sub({ headers, transport: 'chunked' })) as Refusal).status, 403)
})

test('authorizePublish: the API key, the master key, skips the authorize request (as for subscribers) and is never sent to it; a JWT still is asked', async (t) => {
  const up = await upstream(t, (_req, res) => { res.writeHead(403); res.end() })
  const a = setup(t, { authorizeUrl: up.url, authorizePublish: true, apiKey: ['k-0123456789abcdef'], jwtSecret: 'x'.repeat(32) })
  const g = await a.publisher({ headers: { authorization: 'Bearer k-0123456789abcdef' }, channel: 'c1', method: 'POST', uri: '/pub/c1', remoteAddress: '10.0.0.5' }) as Grant
  t.is(g.kind, 'apikey')
  t.is(up.requests.length, 0, 'the key went to no other service')
  const token = await new SignJWT({ parkline: { publish: ['c1'] } }).setProtectedHeader({ alg: 'HS256' }).sign(Buffer.from('x'.repeat(32)))
  t.is((await a.publisher({ headers: { authorization: `Bearer ${token}` }, channel: 'c1', method: 'POST', uri: '/pub/c1', remoteAddress: '10.0.0.5' }) as Refusal).status, 403)
  t.is(up.requests.length, 1)
})

test('authorizePublish: the publisher is asked too, with X-Original-Method and no subscriber type', async (t) => {
  const up = await upstream(t, (req, res) => {
    res.writeHead(req.headers.authorization === 'Bearer good' ? 204 : 403)
    res.end()
  })
  const a = setup(t, { authorizeUrl: up.url, authorizePublish: true })
  const g = await a.publisher({ headers: { authorization: 'Bearer good' }, channel: 'c1', method: 'DELETE', uri: '/pub/c1', remoteAddress: '10.0.0.5' }) as Grant
  t.is(g.kind, 'authorize')
  t.deepEqual(g.publish, ['c1'])
  const r = up.requests[0]!
  t.is(r.headers['x-original-method'], 'DELETE')
  t.is(r.headers['x-channel-id'], 'c1')
  t.is(r.headers['x-subscriber-type'], undefined)
  t.is(r.headers['x-forwarded-for'], '10.0.0.5')
  // Loopback does not bypass it.
  t.is((await a.publisher({ headers: {}, channel: 'c1', method: 'POST', uri: '/pub/c1', remoteAddress: '127.0.0.1' }) as Refusal).status, 403)
  // Without authorizePublish the publisher falls back to the loopback rule.
  const b = setup(t, { authorizeUrl: up.url })
  t.is((await b.publisher({ headers: {}, channel: 'c1', method: 'POST', uri: '/pub/c1', remoteAddress: '127.0.0.1' }) as Grant).kind, 'loopback')
  t.is((await b.publisher({ headers: {}, channel: 'c1', method: 'POST', uri: '/pub/c1', remoteAddress: '10.0.0.1' }) as Refusal).status, 403)
  t.is(up.requests.length, 2)
})
