// The publisher's secure default (loopback-only unless configured) and Nchan's publisher upstream
// request (publishUpstreamUrl) against real node:http upstreams.
import http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import test, { type ExecutionContext } from 'ava'
import { AUTH_DEFAULTS, Auth, isLoopback, type AuthOptions, type Grant, type PublisherContext, type Refusal, type UpstreamPublishContext } from '../../lib/auth.ts'

interface Seen { method: string, url: string, headers: http.IncomingHttpHeaders, body: Buffer }

async function upstream (t: ExecutionContext, handler: (seen: Seen, res: http.ServerResponse) => void): Promise<{ url: string, seen: Seen[] }> {
  const seen: Seen[] = []
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const s = { method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks) }
      seen.push(s)
      handler(s, res)
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/upstream`, seen }
}

function setup (t: ExecutionContext, over: Partial<AuthOptions>, upstreamMaxBody?: number): Auth {
  const a = new Auth({ ...AUTH_DEFAULTS, apiKey: [], anonymousSubscribe: [], ...over }, upstreamMaxBody === undefined ? {} : { upstreamMaxBody })
  t.teardown(() => a.close())
  return a
}

function pub (remoteAddress: string | undefined, method: PublisherContext['method'] = 'POST'): PublisherContext {
  return { headers: {}, channel: 'c', method, uri: '/pub/c', remoteAddress }
}

test('secure default: with no credential configured only loopback clients publish', async (t) => {
  const a = setup(t, {})
  const r = await a.publisher(pub('10.1.2.3')) as Refusal
  t.is(r.status, 403)
  t.is(r.body, 'Forbidden: publisher is loopback-only; set apiKey, a JWT key, or publisherOpen')
  t.is(r.wwwAuthenticate, undefined)
  t.is(r.code, 'PKL_ERR_PUBLISHER_LOOPBACK_ONLY')
  for (const addr of ['127.0.0.2', '127.0.0.1', '::1', '::ffff:127.0.0.1']) {
    t.true(isLoopback(addr))
    const g = await a.publisher(pub(addr, 'DELETE')) as Grant
    t.is(g.kind, 'loopback')
    t.is(g.publish, '*')
    t.false(g.admin)
  }
  for (const addr of ['10.1.2.3', '::ffff:10.1.2.3', '192.168.1.1', undefined]) {
    t.false(isLoopback(addr))
    t.is((await a.publisher(pub(addr, 'GET')) as Refusal).status, 403)
  }
  // Subscribers are open at the same time.
  t.is((await a.subscriber({ headers: {}, query: '', channels: ['c'], transport: 'longpoll', uri: '/sub/c', method: 'GET', remoteAddress: '10.1.2.3' }) as Grant).kind, 'open')
})

test('publisherOpen opens the publisher to every client', async (t) => {
  const a = setup(t, { publisherOpen: true })
  t.is((await a.publisher(pub('10.1.2.3')) as Grant).kind, 'open')
  // ...but not once a credential is configured: then one is required.
  const b = setup(t, { publisherOpen: true, apiKey: ['k-0123456789abcdef'] })
  t.deepEqual(b.warnings, ['publisherOpen is ignored: with apiKey or a JWT key set, publishers need a credential'])
  t.is((await b.publisher(pub('10.1.2.3')) as Refusal).status, 401)
})

function message (over: Partial<UpstreamPublishContext> = {}): UpstreamPublishContext {
  return {
    headers: {
      host: 'parkline.example',
      'content-type': 'text/plain',
      'content-length': '5',
      connection: 'keep-alive, x-hop',
      'x-hop': 'hop-by-hop',
      'transfer-encoding': 'chunked',
      authorization: 'Bearer pub',
      'x-app': 'kept'
    },
    body: Buffer.from('hello'),
    channel: 'room.1',
    uri: '/pub/room.1',
    method: 'POST',
    ...over
  }
}

test('publisher upstream: 200 publishes the answer instead, with its content-type', async (t) => {
  const up = await upstream(t, (s, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ wrapped: s.body.toString() }))
  })
  const a = setup(t, { publishUpstreamUrl: up.url })
  const r = await a.upstreamPublish(message())
  t.is(r.action, 'publish')
  if (r.action !== 'publish') return
  t.is(r.body.toString(), '{"wrapped":"hello"}')
  t.is(r.contentType, 'application/json')
  const s = up.seen[0]!
  t.is(s.method, 'POST')
  t.is(s.url, '/upstream')
  t.is(s.body.toString(), 'hello')
  t.is(s.headers['content-type'], 'text/plain')
  t.is(s.headers['content-length'], '5')
  t.is(s.headers.authorization, 'Bearer pub')
  t.is(s.headers['x-app'], 'kept')
  t.is(s.headers['x-hop'], undefined)
  t.is(s.headers['transfer-encoding'], undefined)
  t.not(s.headers.host, 'parkline.example')
  t.is(s.headers['x-channel-id'], 'room.1')
  t.is(s.headers['x-original-uri'], '/pub/room.1')
  t.is(s.headers['x-original-method'], 'POST')
  t.is(a.stats.upstreamPublishCalls, 1)
})

test('publisher upstream: 204 drops the message, 304 publishes it unchanged', async (t) => {
  let status = 204
  const up = await upstream(t, (s, res) => {
    res.writeHead(status)
    res.end()
  })
  const a = setup(t, { publishUpstreamUrl: up.url })
  t.deepEqual(await a.upstreamPublish(message()), { action: 'drop' })
  status = 304
  const r = await a.upstreamPublish(message())
  t.is(r.action, 'publish')
  if (r.action !== 'publish') return
  t.is(r.body.toString(), 'hello')
  // null: the publisher keeps the request's own, verbatim (test/publisher-upstream.test.ts)
  t.is(r.contentType, null)
})

test('publisher upstream: any other status goes back to the publisher with its body', async (t) => {
  const up = await upstream(t, (s, res) => {
    res.writeHead(422, { 'content-type': 'application/problem+json' })
    res.end('{"title":"rejected"}')
  })
  const a = setup(t, { publishUpstreamUrl: up.url })
  const r = await a.upstreamPublish(message())
  t.deepEqual(r, { action: 'reply', status: 422, body: Buffer.from('{"title":"rejected"}'), contentType: 'application/problem+json', retryAfter: null })
})

test('publisher upstream: a timeout or connection error is a 503; a too-large answer a 502', async (t) => {
  const hang = await upstream(t, () => {})
  const a = setup(t, { publishUpstreamUrl: hang.url, authorizeTimeout: 0.3 })
  // the upstream never answers: a 503 can only come from authorizeTimeout
  const r = await a.upstreamPublish(message())
  t.is(r.action, 'reply')
  if (r.action !== 'reply') return
  t.is(r.status, 503)
  t.is(r.retryAfter, 1)
  t.is(a.stats.upstreamPublishErrors, 1)

  const big = await upstream(t, (s, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end(Buffer.alloc(2000, 'x'))
  })
  const b = setup(t, { publishUpstreamUrl: big.url }, 1000)
  const r2 = await b.upstreamPublish(message())
  t.is(r2.action === 'reply' ? r2.status : 0, 502)
})

test('upstreamPublish without publishUpstreamUrl is a programming error', async (t) => {
  const a = setup(t, {})
  await t.throwsAsync(a.upstreamPublish(message()), { message: /publishUpstreamUrl/ })
})

test('authorizeUrl without authorizePublish: publishers stay loopback-only (or open), and a warning at start says which', async (t) => {
  const a = setup(t, { authorizeUrl: 'http://127.0.0.1:9/authorize' })
  t.deepEqual(a.warnings, ['authorizeUrl is asked about subscribers only: publishers stay loopback-only (authorizePublish sends them there too)'])
  t.is((await a.publisher(pub('10.1.2.3')) as Refusal).code, 'PKL_ERR_PUBLISHER_LOOPBACK_ONLY')
  t.is((await a.publisher(pub('127.0.0.1')) as Grant).kind, 'loopback')
  const b = setup(t, { authorizeUrl: 'http://127.0.0.1:9/authorize', publisherOpen: true })
  t.deepEqual(b.warnings, ['authorizeUrl is asked about subscribers only, and publisherOpen lets anyone publish and delete: set authorizePublish to send publishers there too'])
  t.is((await b.publisher(pub('10.1.2.3')) as Grant).kind, 'open')
  t.deepEqual(setup(t, { authorizeUrl: 'http://127.0.0.1:9/authorize', authorizePublish: true }).warnings, [])
  t.deepEqual(setup(t, { authorizeUrl: 'http://127.0.0.1:9/authorize', apiKey: ['k-0123456789abcdef'] }).warnings, [])
})

test('the start-up warning about open access: subscribers open without a credential or authorizeUrl; the publisher open with publisherOpen unless a credential or authorizePublish', async (t) => {
  const { openAccess } = await import('../../lib/access.ts')
  const { resolveOptions } = await import('../../lib/config.ts')
  const open = (o: Record<string, unknown>): unknown => openAccess(resolveOptions(o))
  t.deepEqual(open({}), { subscribers: true, publishers: false })
  t.deepEqual(open({ publisherOpen: true }), { subscribers: true, publishers: true })
  // the publisher upstream admits no one: subscribers are still open
  t.deepEqual(open({ publishUpstreamUrl: 'http://127.0.0.1:9/up' }), { subscribers: true, publishers: false })
  t.deepEqual(open({ authorizeUrl: 'http://127.0.0.1:9/a', publisherOpen: true }), { subscribers: false, publishers: true })
  t.deepEqual(open({ authorizeUrl: 'http://127.0.0.1:9/a', publisherOpen: true, authorizePublish: true }), { subscribers: false, publishers: false })
  t.deepEqual(open({ apiKey: ['a-long-enough-publisher-key'], publisherOpen: true }), { subscribers: false, publishers: false })
})
