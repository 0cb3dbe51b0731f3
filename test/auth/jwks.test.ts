// jwksUrl: the key set is fetched with undici from a real node:http server, cached, refetched for
// an unknown kid at most once per cooldown. The clock is injected, so the 10 s cooldown is
// crossed without waiting.
import http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import test, { type ExecutionContext } from 'ava'
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose'
import { buildServer } from '../../lib/server.ts'
import { resolveOptions } from '../../lib/config.ts'
import { eventually } from '../helpers/server.ts'
import { AUTH_DEFAULTS, Auth, isRefusal, type AuthOptions, type Grant, type Refusal, type SubscriberContext } from '../../lib/auth.ts'

interface JwksServer { url: string, hits: () => number, keys: JWK[], status: number, hang: boolean }

async function jwksServer (t: ExecutionContext): Promise<JwksServer> {
  let hits = 0
  const state: JwksServer = { url: '', hits: () => hits, keys: [], status: 200, hang: false }
  const server = http.createServer((req, res) => {
    hits++
    if (state.hang) return
    res.writeHead(state.status, { 'content-type': 'application/jwk-set+json' })
    res.end(JSON.stringify({ keys: state.keys }))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`
  return state
}

async function keyPair (alg: 'RS256' | 'ES256' | 'EdDSA', kid: string): Promise<{ jwk: JWK, privateKey: CryptoKey, kid: string, alg: string }> {
  const { publicKey, privateKey } = await generateKeyPair(alg)
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' }
  return { jwk, privateKey, kid, alg }
}

async function sign (k: { privateKey: CryptoKey, kid: string, alg: string }, claims = { parkline: { subscribe: ['news'] } }): Promise<string> {
  return await new SignJWT(claims).setProtectedHeader({ alg: k.alg, kid: k.kid }).setExpirationTime('1h').sign(k.privateKey)
}

function ctx (token: string): SubscriberContext {
  return { headers: { authorization: 'Bearer ' + token }, query: '', channels: ['news'], transport: 'websocket', uri: '/sub/news', method: 'GET', remoteAddress: '10.0.0.1' }
}

function setup (t: ExecutionContext, url: string, clock: { ms: number }, over: Partial<AuthOptions> = {}): Auth {
  const a = new Auth({ ...AUTH_DEFAULTS, apiKey: [], anonymousSubscribe: [], jwksUrl: url, ...over }, { now: () => clock.ms })
  t.teardown(() => a.close())
  return a
}

test('keys come from the JWKS; RS256, ES256 and EdDSA; fetched once while cached', async (t) => {
  const srv = await jwksServer(t)
  const ks = [await keyPair('RS256', 'r1'), await keyPair('ES256', 'e1'), await keyPair('EdDSA', 'd1')]
  srv.keys = ks.map((k) => k.jwk)
  const clock = { ms: Date.now() }
  const a = setup(t, srv.url, clock)
  // Concurrent first uses share one fetch.
  const rs = await Promise.all(ks.map(async (k) => await a.subscriber(ctx(await sign(k)))))
  for (const r of rs) t.is((r as Grant).kind, 'jwt')
  t.is(srv.hits(), 1)
  t.is(a.stats.jwksFetches, 1)
  for (const k of ks) t.false(isRefusal(await a.subscriber(ctx(await sign(k)))))
  t.is(srv.hits(), 1)
})

test('rotation: a new kid refetches once; another unknown kid within 10 s does not', async (t) => {
  const srv = await jwksServer(t)
  const k1 = await keyPair('ES256', 'k1')
  const k2 = await keyPair('ES256', 'k2')
  const k3 = await keyPair('ES256', 'k3')
  srv.keys = [k1.jwk]
  const clock = { ms: Date.now() }
  const a = setup(t, srv.url, clock)
  t.false(isRefusal(await a.subscriber(ctx(await sign(k1)))))
  t.is(srv.hits(), 1)

  // The IdP rotates to k2. Past the cooldown, the unknown kid triggers one refetch.
  srv.keys = [k1.jwk, k2.jwk]
  clock.ms += 11_000
  t.false(isRefusal(await a.subscriber(ctx(await sign(k2)))))
  t.is(srv.hits(), 2)
  t.false(isRefusal(await a.subscriber(ctx(await sign(k1)))))
  t.is(srv.hits(), 2)

  // k3 is not published yet: unknown, and within 10 s of the refetch no new fetch is made.
  clock.ms += 5_000
  const r = await a.subscriber(ctx(await sign(k3)))
  t.is((r as Refusal).status, 401)
  t.is((r as Refusal).wwwAuthenticate, 'Bearer error="invalid_token", error_description="unknown key"')
  t.is(srv.hits(), 2)
  // A burst of made-up kids costs nothing either.
  await Promise.all([1, 2, 3].map(async () => await a.subscriber(ctx(await sign({ ...k3, kid: 'bogus' })))))
  t.is(srv.hits(), 2)

  // Once k3 is published and the cooldown has passed, it is fetched.
  srv.keys = [k2.jwk, k3.jwk]
  clock.ms += 6_000
  t.false(isRefusal(await a.subscriber(ctx(await sign(k3)))))
  t.is(srv.hits(), 3)
})

test('concurrent tokens with a new kid share one refetch', async (t) => {
  const srv = await jwksServer(t)
  const k1 = await keyPair('RS256', 'k1')
  const k2 = await keyPair('RS256', 'k2')
  srv.keys = [k1.jwk]
  const clock = { ms: Date.now() }
  const a = setup(t, srv.url, clock)
  t.false(isRefusal(await a.subscriber(ctx(await sign(k1)))))
  srv.keys = [k2.jwk]
  clock.ms += 20_000
  const tok = await sign(k2)
  const rs = await Promise.all([1, 2, 3, 4].map(async () => await a.subscriber(ctx(tok))))
  for (const r of rs) t.false(isRefusal(r))
  t.is(srv.hits(), 2)
})

test('the set is refetched when older than its max age', async (t) => {
  const srv = await jwksServer(t)
  const k1 = await keyPair('ES256', 'k1')
  srv.keys = [k1.jwk]
  const clock = { ms: Date.now() }
  const a = setup(t, srv.url, clock)
  t.false(isRefusal(await a.subscriber(ctx(await sign(k1)))))
  clock.ms += 601_000
  t.false(isRefusal(await a.subscriber(ctx(await sign(k1)))))
  t.is(srv.hits(), 2)
  // If that refetch fails, the stale keys are still used.
  srv.status = 500
  clock.ms += 601_000
  t.false(isRefusal(await a.subscriber(ctx(await sign(k1)))))
  t.is(srv.hits(), 3)
})

test('no JWKS at all (error, timeout): 503 with Retry-After, retried after a backoff', async (t) => {
  const srv = await jwksServer(t)
  const k1 = await keyPair('ES256', 'k1')
  srv.keys = [k1.jwk]
  srv.status = 500
  const clock = { ms: Date.now() }
  const a = setup(t, srv.url, clock)
  const tok = await sign(k1)
  const r = await a.subscriber(ctx(tok)) as Refusal
  t.is(r.status, 503)
  t.is(typeof r.retryAfter, 'number')
  t.is(r.wwwAuthenticate, undefined)
  // Within the backoff no new fetch.
  t.is((await a.subscriber(ctx(tok)) as Refusal).status, 503)
  t.is(srv.hits(), 1)
  srv.status = 200
  clock.ms += 1_500
  t.false(isRefusal(await a.subscriber(ctx(tok))))
  t.is(srv.hits(), 2)

  // A hanging JWKS server: 503 (it never answers: only authorizeTimeout can end the wait).
  const slow = await jwksServer(t)
  slow.hang = true
  const b = setup(t, slow.url, { ms: Date.now() }, { authorizeTimeout: 0.3 })
  t.is((await b.subscriber(ctx(tok)) as Refusal).status, 503)
})

test('JWKS refuses HS* and alg none, and a kid that names no key', async (t) => {
  const srv = await jwksServer(t)
  const k1 = await keyPair('ES256', 'k1')
  // An oct key in the set must not make HS256 acceptable.
  srv.keys = [k1.jwk, { kty: 'oct', k: 'c2VjcmV0', kid: 'h1', alg: 'HS256' }]
  const a = setup(t, srv.url, { ms: Date.now() })
  const hs = await new SignJWT({ parkline: { admin: true } }).setProtectedHeader({ alg: 'HS256', kid: 'h1' }).sign(new TextEncoder().encode('secret'))
  const r = await a.subscriber(ctx(hs)) as Refusal
  t.is(r.status, 401)
  t.is(r.wwwAuthenticate, 'Bearer error="invalid_token", error_description="algorithm not allowed"')
  const none = `${Buffer.from('{"alg":"none","kid":"k1"}').toString('base64url')}.${Buffer.from('{}').toString('base64url')}.`
  t.is((await a.subscriber(ctx(none)) as Refusal).status, 401)
})

test('a server whose JWKS hangs at start fetches it then, and its close aborts that fetch instead of waiting out authorizeTimeout', async (t) => {
  let asked = 0
  let aborted = 0
  const server = http.createServer((req) => {
    asked++
    req.socket.on('close', () => { aborted++ })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`
  const app = await buildServer(resolveOptions({ port: 0, host: '127.0.0.1', logLevel: 'silent', jwksUrl: url, authorizeTimeout: 30 }))
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.true(await eventually(() => asked === 1, 10000), 'the JWKS was fetched at start')
  t.is(aborted, 0)
  // the fetch still hangs (30 s timeout): the close ends it, and the JWKS server sees its
  // connection go (a close that waited for the fetch would leave it open past this wait)
  const closed = app.close()
  t.true(await eventually(() => aborted === 1, 10000), 'the hanging JWKS fetch was aborted by the close')
  await closed
  t.is(asked, 1)
})

test('jwksUp (parkline_jwks_up): false before any keys, true once fetched, false while a refetch fails (old keys still used), true again', async (t) => {
  const srv = await jwksServer(t)
  const k = await keyPair('ES256', 'k1')
  srv.keys = [k.jwk]
  const clock = { ms: Date.now() }
  const a = setup(t, srv.url, clock)
  t.false(a.jwksUp, 'no keys yet')
  t.false(isRefusal(await a.subscriber(ctx(await sign(k)))))
  t.true(a.jwksUp)
  // older than maxAge (10 min): refetched before use, and that fetch fails; the keys are kept
  srv.status = 500
  clock.ms += 601_000
  t.false(isRefusal(await a.subscriber(ctx(await sign(k)))), 'the keys fetched before still verify')
  t.false(a.jwksUp, 'the last fetch failed')
  srv.status = 200
  clock.ms += 60_000
  t.false(isRefusal(await a.subscriber(ctx(await sign(k)))))
  t.true(a.jwksUp)
  t.is(new Auth({ ...AUTH_DEFAULTS, jwtSecret: 'x'.repeat(32) }).jwksUp, null, 'no jwksUrl')
})

test('a server whose JWKS failed at start fetches it again on its own, each cooldown, until it answers; none after the close', async (t) => {
  const srv = await jwksServer(t)
  const k = await keyPair('ES256', 'k1')
  srv.keys = [k.jwk]
  srv.status = 500
  // as the server builds it: a trouble log, so the JWKS is fetched at start (prefetch)
  const a = new Auth({ ...AUTH_DEFAULTS, apiKey: [], anonymousSubscribe: [], jwksUrl: srv.url }, { jwksCooldownMs: 100, trouble: () => {} })
  t.teardown(() => a.close())
  t.true(await eventually(() => srv.hits() >= 2, 5000), 'tried again with no token asking')
  t.false(a.jwksUp)
  srv.status = 200
  // no token reaches it: the retry alone brings it up
  t.true(await eventually(() => a.jwksUp === true, 5000))
  const hits = srv.hits()
  await new Promise((resolve) => setTimeout(resolve, 400))
  t.is(srv.hits(), hits, 'no more fetches once it succeeded')
  srv.status = 500
  a.close()
  await new Promise((resolve) => setTimeout(resolve, 400))
  t.is(srv.hits(), hits, 'none after the close')
})
