// Embedded: a host's hook that guards channels reads request.parklineChannels, the channels as
// Parkline serves them; a URL prefix cannot guard one (percent-encoding, multiplexed lists).
import test from 'ava'
import net, { type AddressInfo } from 'node:net'
import { once } from 'node:events'
import Fastify from 'fastify'
import helmet from '@fastify/helmet'
import parkline from '../lib/plugin.ts'
import { rawExchange, rawRequest } from './helpers/server.ts'
import { TRANSPORT_HEADERS } from './helpers/auth.ts'

test('request.parklineChannels names the channels of every spelling of a request (escapes, %2F, a multiplexed list), so a host hook can guard one; null off Parkline\'s locations', async (t) => {
  const app = Fastify({ logger: false })
  await app.register(parkline, { prefix: '/rt', logLevel: 'silent', publisherOpen: true })
  const seen: Array<{ url: string, channels: unknown }> = []
  app.addHook('onRequest', async (request, reply) => {
    seen.push({ url: request.url, channels: request.parklineChannels })
    if (request.parklineChannels?.channels.some((c) => c.startsWith('admin/')) === true && request.headers.authorization !== 'Bearer ok') {
      return await reply.code(401).send()
    }
  })
  app.get('/other', async () => 'other')
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as net.AddressInfo).port
  const get = async (path: string, extra = ''): Promise<number> => (await rawRequest(port, `GET ${path} HTTP/1.1\r\nHost: a\r\n${extra}\r\n`)).status
  for (const path of ['/rt/sub/admin/secret', '/rt/sub/%61dmin/secret', '/rt/sub/admin%2Fsecret', '/rt/sub/public,admin/secret', '/rt/sub/public%2Cadmin%2Fsecret']) {
    t.is(await get(path), 401, path)
  }
  t.is((await rawRequest(port, 'POST /rt/pub/%61dmin%2Fx HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx')).status, 401)
  t.is((await rawRequest(port, 'POST /rt/pub/admin%2Fx HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ok\r\nContent-Length: 1\r\n\r\nx')).status, 202)
  t.is((await rawRequest(port, 'POST /rt/pub/caf%C3%A9 HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx')).status, 202)
  t.is(await get('/other'), 200)
  // a path that normalises to another is refused 400: a hook is shown no channel for it
  for (const path of ['/rt/sub/ok/%2e%2e/secret', '/rt/sub/ok/../secret', '/rt/pub/a/./b']) t.is(await get(path), 400, path)
  const of = (url: string): unknown => seen.find((s) => s.url === url)?.channels
  t.is(of('/rt/sub/ok/%2e%2e/secret'), null)
  t.is(of('/rt/pub/a/./b'), null)
  t.deepEqual(of('/rt/sub/public%2Cadmin%2Fsecret'), { location: 'subscriber', channels: ['public', 'admin/secret'] })
  t.deepEqual(of('/rt/pub/caf%C3%A9'), { location: 'publisher', channels: ['café'] })
  t.is(of('/other'), null)
})

test('embedded with the rewriteUrl of docs/api.md 14, ids whose escapes are not UTF-8 (%FF%FE) are served, each its own channel; without it Fastify refuses them', async (t) => {
  for (const rewrite of [false, true]) {
    const app = Fastify({
      logger: false,
      ...(rewrite
        ? { rewriteUrl: (req: { url?: string }) => { const url = req.url ?? '/'; try { decodeURI(url); return url } catch { return url.replaceAll('%', '%25') } } }
        : {})
    })
    await app.register(parkline, { prefix: '/rt', logLevel: 'silent', publisherOpen: true })
    const seen: unknown[] = []
    app.addHook('onRequest', async (request) => { seen.push(request.parklineChannels) })
    await app.listen({ port: 0, host: '127.0.0.1' })
    t.teardown(() => app.close())
    const port = (app.server.address() as net.AddressInfo).port
    const published = await rawRequest(port, 'POST /rt/pub/%FF%FE HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi')
    t.is(published.status, rewrite ? 202 : 400)
    if (!rewrite) continue
    t.deepEqual(seen[0], { location: 'publisher', channels: [Buffer.from([0xff, 0xfe]).toString('utf8')] })
    const poll = await rawRequest(port, 'GET /rt/sub/%FF%FE HTTP/1.1\r\nHost: a\r\n\r\n')
    t.is(poll.status, 200)
    t.is(poll.body, 'hi')
    t.is((await rawRequest(port, 'GET /rt/pub/%FE%FF HTTP/1.1\r\nHost: a\r\n\r\n')).status, 404, 'another channel')
  }
})

test('embedded: a checkContinue listener the host adds after registering Parkline is the only one (no 100 Continue of Parkline\'s before its answer)', async (t) => {
  const app = Fastify({ logger: false })
  await app.register(parkline, { prefix: '/rt', logLevel: 'silent', publisherOpen: true })
  app.server.on('checkContinue', (_req, res) => { res.writeHead(417, { Connection: 'close' }); res.end() })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as net.AddressInfo).port
  const out = await rawExchange(port, 'POST /rt/pub/c HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n', { ms: 1500 })
  t.regex(out, /^HTTP\/1\.1 417 /)
  t.false(out.includes('100 Continue'))
  t.is(app.server.listenerCount('checkContinue'), 1)
})

test('a publish whose client sent its FIN before the handler ran (a host hook that waits) is still applied', async (t) => {
  const app = Fastify({ logger: false })
  await app.register(parkline, { prefix: '/rt', logLevel: 'silent', publisherOpen: true })
  app.addHook('onRequest', async () => { await new Promise((resolve) => setTimeout(resolve, 100)) })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const { port } = app.server.address() as AddressInfo
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true })
  socket.on('error', () => {})
  t.teardown(() => socket.destroy())
  await once(socket, 'connect')
  socket.end('POST /rt/pub/fin HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none')
  let messages = 0
  for (let i = 0; i < 100 && messages < 1; i++) {
    await new Promise((resolve) => setTimeout(resolve, 30))
    const r = await fetch(`http://127.0.0.1:${port}/rt/pub/fin`, { headers: { accept: 'text/json' } })
    if (r.status === 200) messages = (await r.json() as { messages: number }).messages
  }
  t.is(messages, 1, 'the publish was applied (its client half-closed before the hook let it through)')
})

test('embedded: a page of another site that sends the user\'s cookies is refused 403 on every transport and on publish, where the host\'s hook admits by a session cookie; this site, a same-site page, a listed origin and a client without Origin are admitted', async (t) => {
  const start = async (corsOrigins: string[]): Promise<{ app: ReturnType<typeof Fastify>, port: number }> => {
    const app = Fastify({ logger: false })
    // the host's own auth: a session cookie, as a web app keeps its users'
    app.addHook('onRequest', async (request, reply) => {
      if (request.url.startsWith('/rt/') && request.headers.cookie !== 'session=alice') return await reply.code(401).send()
    })
    await app.register(parkline, { prefix: '/rt', logLevel: 'silent', publisherOpen: true, corsOrigins })
    await app.listen({ port: 0, host: '127.0.0.1' })
    t.teardown(() => app.close())
    return { app, port: (app.server.address() as AddressInfo).port }
  }
  const { app, port } = await start([])
  await app.parkline.publish('private', 'secret')
  const cookie = 'Cookie: session=alice\r\n'
  const evil = 'Origin: https://evil.example\r\nSec-Fetch-Site: cross-site\r\n'
  const poll = (extra: string, p = port): Promise<Awaited<ReturnType<typeof rawRequest>>> =>
    rawRequest(p, `GET /rt/sub/private?last_event_id=0:0 HTTP/1.1\r\nHost: push.example\r\n${extra}\r\n`)
  const refused = (r: Awaited<ReturnType<typeof rawRequest>>, what: string): void => {
    t.is(r.status, 403, what)
    t.regex(r.body, /another site sent cookies; list its origin in corsOrigins/, what)
    t.false(r.raw.includes('secret'), what)
    t.false('access-control-allow-origin' in r.headers, what)
  }
  refused(await poll(cookie + evil), 'long-poll')
  refused(await poll(cookie + evil + 'Accept: text/event-stream\r\n'), 'EventSource')
  // a WebSocket handshake carries an Origin and no CORS: without Sec-Fetch-Site, by the Origin's host
  refused(await poll(cookie + 'Origin: https://evil.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'), 'WebSocket')
  // a plain form POST needs no preflight: it would publish as the user
  refused(await rawRequest(port, `POST /rt/pub/private HTTP/1.1\r\nHost: push.example\r\n${cookie}${evil}Content-Type: text/plain\r\nContent-Length: 6\r\n\r\nforged`), 'publish')
  t.is((await app.parkline.info('private'))?.messages, 1, 'nothing published')
  // admitted: this site's page, a same-site page, a client that is no browser page
  for (const extra of ['Origin: http://push.example\r\n', 'Origin: https://app.example\r\nSec-Fetch-Site: same-site\r\n', 'Sec-Fetch-Site: same-origin\r\n', '']) {
    const r = await poll(cookie + extra)
    t.is(r.status, 200, extra)
    t.is(r.body, 'secret', extra)
  }
  // without the cookie, the host's own hook judges (here: 401), not this rule
  t.is((await poll(evil)).status, 401)
  // an origin the operator listed may use the user's cookies
  const listed = await start(['https://partner.example'])
  await listed.app.parkline.publish('private', 'secret')
  const r = await poll(cookie + 'Origin: https://partner.example\r\nSec-Fetch-Site: cross-site\r\n', listed.port)
  t.is(r.status, 200)
  t.is(r.headers['access-control-allow-origin'], 'https://partner.example')
  // with a list, an origin not on it is refused whatever it sends (section 10)
  const unlisted = await poll(cookie + evil, listed.port)
  t.is(unlisted.status, 403)
  t.is(unlisted.body, 'Origin not allowed')
})

test('embedded: request.parklineChannels is null on a host route under a location\'s path; a request routed to Parkline but under neither location (caseSensitive: false, an escaped location) gets the host\'s own 404', async (t) => {
  const app = Fastify({ logger: false, routerOptions: { caseSensitive: false } })
  const seen = new Map<string, unknown>()
  app.addHook('onRequest', async (request) => { seen.set(request.url, request.parklineChannels) })
  app.setNotFoundHandler(async (_request, reply) => await reply.code(404).send('host 404'))
  await app.register(parkline, { prefix: '/rt', logLevel: 'silent', publisherOpen: true })
  app.get('/rt/pub/special', async () => 'host route')
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as AddressInfo).port
  const get = async (path: string): Promise<Awaited<ReturnType<typeof rawRequest>>> => await rawRequest(port, `GET ${path} HTTP/1.1\r\nHost: a\r\n\r\n`)
  const special = await get('/rt/pub/special')
  t.is(special.body, 'host route')
  t.is(seen.get('/rt/pub/special'), null)
  for (const path of ['/RT/SUB/ch', '/rt/%70ub/x']) {
    const r = await get(path)
    t.is(r.status, 404, path)
    t.is(r.body, 'host 404', path)
    t.is(seen.get(path), null, path)
  }
  // Parkline's own still are
  t.is((await get('/rt/pub/other')).status, 404)
  t.deepEqual(seen.get('/rt/pub/other'), { location: 'publisher', channels: ['other'] })
})

test('embedded: the headers the host\'s hooks set (@fastify/helmet\'s, a request id, cookies, one set on reply.raw) are on every subscriber answer Parkline writes itself — a stream\'s head, a long-poll\'s answer at once and parked, the WebSocket 101 — Parkline\'s own headers stay its own, and a value Node would refuse is left out', async (t) => {
  const app = Fastify({ logger: false })
  await app.register(helmet, { global: true })
  await app.register(parkline, { prefix: '/rt', logLevel: 'silent', publisherOpen: true })
  let n = 0
  app.addHook('onRequest', async (request, reply) => {
    reply.header('X-Request-Id', `r${++n}`)
    reply.header('Set-Cookie', ['a=1; Path=/', 'b=2; Path=/'])
    // Parkline's on its answers: these stay Parkline's
    reply.header('Content-Type', 'text/html')
    reply.header('Cache-Control', 'public, max-age=600')
    reply.header('Access-Control-Allow-Origin', '*')
    // Node would refuse to write it (Fastify's own answers, a publish's, fail with 500): left out,
    // not written as a second header line
    if (request.url.startsWith('/rt/sub/')) reply.header('X-Split', 'a\r\nX-Injected: 1')
  })
  app.addHook('preHandler', async (_request, reply) => {
    reply.raw.setHeader('X-Raw', 'raw')
    // Parkline's, or a cache's, set on the response itself: not on Parkline's answers either
    reply.raw.setHeader('Content-Type', 'text/html')
    reply.raw.setHeader('Cache-Control', 'public, max-age=600')
    reply.raw.setHeader('CDN-Cache-Control', 'max-age=600')
    reply.raw.setHeader('X-Accel-Expires', '600')
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as AddressInfo).port
  const headOf = (text: string): string => text.slice(0, text.indexOf('\r\n\r\n') + 2)
  const hasHeadEnd = (s: string): boolean => s.includes('\r\n\r\n')
  const check = (what: string, head: string, status: RegExp, type: RegExp | null): void => {
    t.regex(head, status, what)
    t.regex(head, /\r\nX-Request-Id: r\d+\r\n/i, what)
    t.regex(head, /\r\nSet-Cookie: a=1; Path=\/\r\n/i, what)
    t.regex(head, /\r\nSet-Cookie: b=2; Path=\/\r\n/i, what)
    t.regex(head, /\r\nX-Raw: raw\r\n/i, what)
    // @fastify/helmet's
    t.regex(head, /\r\nX-Content-Type-Options: nosniff\r\n/i, what)
    t.regex(head, /\r\nStrict-Transport-Security: max-age=\d+/i, what)
    t.regex(head, /\r\nContent-Security-Policy: /i, what)
    t.notRegex(head, /text\/html|max-age=600|Allow-Origin: \*|X-Accel-Expires/i, what)
    t.notRegex(head, /X-Split|X-Injected/i, what)
    if (type !== null) t.regex(head, type, what)
    t.is(head.match(/\r\nContent-Type: /gi)?.length ?? 0, type === null ? 0 : 1, what)
  }
  const sse = await rawExchange(port, 'GET /rt/sub/h1 HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n', { until: (s) => s.includes(': hi'), ms: 3000 })
  check('EventSource', headOf(sse), /^HTTP\/1\.1 200 OK\r\n/, /\r\nContent-Type: text\/event-stream/i)
  t.true(sse.includes('\r\n\r\n: hi\n\n'), 'the stream begins after the head')
  const chunked = await rawExchange(port, 'GET /rt/sub/h1 HTTP/1.1\r\nHost: a\r\nTE: chunked\r\n\r\n', { until: hasHeadEnd, ms: 3000 })
  check('chunked', headOf(chunked), /^HTTP\/1\.1 200 OK\r\n/, null)
  const multipart = await rawExchange(port, 'GET /rt/sub/h1 HTTP/1.1\r\nHost: a\r\nAccept: multipart/mixed\r\n\r\n', { until: hasHeadEnd, ms: 3000 })
  check('multipart', headOf(multipart), /^HTTP\/1\.1 200 OK\r\n/, /\r\nContent-Type: multipart\/mixed/i)
  const ws = await rawExchange(port, `GET /rt/sub/h1 HTTP/1.1\r\nHost: a\r\n${TRANSPORT_HEADERS.websocket}\r\n`, { until: hasHeadEnd, ms: 3000 })
  check('WebSocket', headOf(ws), /^HTTP\/1\.1 101 Switching Protocols\r\n/, null)
  // a long-poll parked, then answered by a publish
  const parked = rawRequest(port, 'GET /rt/sub/h2 HTTP/1.1\r\nHost: a\r\n\r\n', 5000)
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.is((await rawRequest(port, 'POST /rt/pub/h2 HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello')).status, 201)
  const p = await parked
  t.is(p.status, 200)
  t.is(p.body, 'hello')
  check('long-poll, parked', headOf(p.raw), /^HTTP\/1\.1 200 OK\r\n/, /\r\nContent-Type: text\/plain/i)
  // answered at once from the buffer
  const now = await rawRequest(port, 'GET /rt/sub/h2 HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\nIf-None-Match: 0\r\n\r\n')
  t.is(now.status, 200)
  t.is(now.body, 'hello')
  check('long-poll, at once', headOf(now.raw), /^HTTP\/1\.1 200 OK\r\n/, /\r\nContent-Type: text\/plain/i)
})
