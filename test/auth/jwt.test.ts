// lib/auth.ts with API keys and JWTs: signatures, algorithms, claims, RFC 6750 answers, scopes,
// revocations. Tokens are made with jose; the unsigned and forged ones by hand.
import test from 'ava'
import { SignJWT, base64url, exportSPKI, generateKeyPair, type JWTPayload } from 'jose'
import { AUTH_DEFAULTS, Auth, isRefusal, type AuthOptions, type AuthResult, type Grant, type PublisherContext, type Refusal, type SubscriberContext } from '../../lib/auth.ts'

const SECRET = 'a-test-secret-that-is-32-bytes-long!!'
const enc = new TextEncoder()

function opts (over: Partial<AuthOptions> = {}): AuthOptions {
  return { ...AUTH_DEFAULTS, apiKey: [], anonymousSubscribe: [], ...over }
}

function auth (t: { teardown: (fn: () => Promise<void>) => void }, over: Partial<AuthOptions>): Auth {
  const a = new Auth(opts(over))
  t.teardown(() => a.close())
  return a
}

function sub (channels: string[], headers: Record<string, string> = {}, query = ''): SubscriberContext {
  return { headers, query, channels, transport: 'eventsource', uri: '/sub/' + channels.join(','), method: 'GET', remoteAddress: '10.0.0.9' }
}

function bearer (token: string): Record<string, string> {
  return { authorization: 'Bearer ' + token }
}

const now = (): number => Math.floor(Date.now() / 1000)

async function hs (claims: JWTPayload, alg = 'HS256', secret = SECRET): Promise<string> {
  return await new SignJWT(claims).setProtectedHeader({ alg }).sign(enc.encode(secret))
}

function asGrant (t: { true: (v: boolean, m?: string) => void }, r: AuthResult): Grant {
  t.true(!isRefusal(r), isRefusal(r) ? `refused: ${r.status} ${String(r.body)}` : '')
  return r as Grant
}

function asRefusal (t: { true: (v: boolean, m?: string) => void }, r: AuthResult): Refusal {
  t.true(isRefusal(r), 'expected a refusal, got a grant')
  return r as Refusal
}

function invalid (reason: string): string {
  return `Bearer error="invalid_token", error_description="${reason}"`
}

const SUB_NEWS = { parkline: { subscribe: ['news'] } }

test('HS256/384/512 with jwtSecret: valid token admitted, claims in the grant', async (t) => {
  const a = auth(t, { jwtSecret: SECRET })
  for (const alg of ['HS256', 'HS384', 'HS512']) {
    const exp = now() + 60
    const tok = await hs({ sub: 'u1', jti: 'j-' + alg, iat: now(), exp, parkline: { subscribe: ['news', 'user.1.*'], publish: ['x'] } }, alg)
    const g = asGrant(t, await a.subscriber(sub(['news', 'user.1.inbox'], bearer(tok))))
    t.is(g.kind, 'jwt')
    t.is(g.sub, 'u1')
    t.is(g.jti, 'j-' + alg)
    t.is(g.exp, exp)
    t.deepEqual(g.subscribe, ['news', 'user.1.*'])
    t.deepEqual(g.publish, ['x'])
    t.false(g.admin)
  }
})

test('RFC 6750 answers: no credential, invalid token, insufficient scope', async (t) => {
  const a = auth(t, { jwtSecret: SECRET })
  const none = asRefusal(t, await a.subscriber(sub(['news'])))
  t.is(none.status, 401)
  t.is(none.wwwAuthenticate, 'Bearer')
  t.is(none.code, 'PKL_ERR_UNAUTHORIZED')

  const bad = asRefusal(t, await a.subscriber(sub(['news'], bearer('not-a-jwt'))))
  t.is(bad.status, 401)
  t.is(bad.wwwAuthenticate, invalid('malformed token'))

  // a publisher's credential where API keys are taken too: a key that is not one (no JWT shape)
  // is an unknown credential, a JWT that does not verify a malformed or invalid token
  const both = auth(t, { jwtSecret: SECRET, apiKey: ['k-0123456789abcdef'] })
  const pub = (token: string): PublisherContext => ({ headers: bearer(token), channel: 'news', method: 'POST', uri: '/pub/news', remoteAddress: '127.0.0.1' })
  t.is(asRefusal(t, await both.publisher(pub('k-not-the-key-0123456789'))).wwwAuthenticate, invalid('unknown credential'))
  t.is(asRefusal(t, await both.publisher(pub('not-a-jwt'))).wwwAuthenticate, invalid('unknown credential'))
  t.is(asRefusal(t, await both.publisher(pub('a.b.c'))).wwwAuthenticate, invalid('malformed token'))
  // a JWT goes to the verifier still: one that verifies is judged by its grant
  t.is(asRefusal(t, await both.publisher(pub(await hs({ parkline: { publish: ['other'] } })))).status, 403)
  t.false(isRefusal(await both.publisher(pub(await hs({ parkline: { publish: ['news'] } })))))
  t.false(isRefusal(await both.publisher(pub('k-0123456789abcdef'))))

  const tok = await hs(SUB_NEWS)
  const scope = asRefusal(t, await a.subscriber(sub(['sports'], bearer(tok))))
  t.is(scope.status, 403)
  t.is(scope.wwwAuthenticate, 'Bearer error="insufficient_scope"')
  t.is(scope.body, 'Forbidden: token does not grant subscribe on channel "sports"')

  const malformed = asRefusal(t, await a.subscriber(sub(['news'], { authorization: 'Bearer two words' })))
  t.is(malformed.status, 400)
  t.is(malformed.wwwAuthenticate, 'Bearer error="invalid_request", error_description="malformed Authorization header"')
  t.deepEqual(a.stats.refusals, { 401: 2, 403: 1, 400: 1 })
})

test('exp, nbf and jwtLeeway', async (t) => {
  const strict = auth(t, { jwtSecret: SECRET })
  const lenient = auth(t, { jwtSecret: SECRET, jwtLeeway: 30 })
  const expired = await hs({ ...SUB_NEWS, exp: now() - 10 })
  const future = await hs({ ...SUB_NEWS, nbf: now() + 10 })
  const farFuture = await hs({ ...SUB_NEWS, nbf: now() + 120 })
  const longExpired = await hs({ ...SUB_NEWS, exp: now() - 120 })

  t.is(asRefusal(t, await strict.subscriber(sub(['news'], bearer(expired)))).wwwAuthenticate, invalid('token expired'))
  t.is(asRefusal(t, await strict.subscriber(sub(['news'], bearer(future)))).wwwAuthenticate, invalid('token not yet valid'))
  asGrant(t, await lenient.subscriber(sub(['news'], bearer(expired))))
  asGrant(t, await lenient.subscriber(sub(['news'], bearer(future))))
  t.is(asRefusal(t, await lenient.subscriber(sub(['news'], bearer(longExpired)))).wwwAuthenticate, invalid('token expired'))
  t.is(asRefusal(t, await lenient.subscriber(sub(['news'], bearer(farFuture)))).wwwAuthenticate, invalid('token not yet valid'))
})

test('jwtMaxLifetime: a token without exp, or one whose exp is further ahead, is refused; within it (and jwtLeeway) admitted', async (t) => {
  const off = auth(t, { jwtSecret: SECRET })
  const capped = auth(t, { jwtSecret: SECRET, jwtMaxLifetime: 600 })
  const lenient = auth(t, { jwtSecret: SECRET, jwtMaxLifetime: 600, jwtLeeway: 30 })
  const forever = await hs(SUB_NEWS)
  const hour = await hs({ ...SUB_NEWS, exp: now() + 3600 })
  const inside = await hs({ ...SUB_NEWS, exp: now() + 590 })
  const justOver = await hs({ ...SUB_NEWS, exp: now() + 620 })
  // off (the default): a token without exp is admitted
  asGrant(t, await off.subscriber(sub(['news'], bearer(forever))))
  asGrant(t, await off.subscriber(sub(['news'], bearer(hour))))
  t.is(asRefusal(t, await capped.subscriber(sub(['news'], bearer(forever)))).wwwAuthenticate, invalid('token without exp'))
  t.is(asRefusal(t, await capped.subscriber(sub(['news'], bearer(hour)))).wwwAuthenticate, invalid('token lives too long'))
  t.is(asRefusal(t, await capped.subscriber(sub(['news'], bearer(justOver)))).wwwAuthenticate, invalid('token lives too long'))
  asGrant(t, await capped.subscriber(sub(['news'], bearer(inside))))
  asGrant(t, await lenient.subscriber(sub(['news'], bearer(justOver))))
  // publishers the same
  const pubForever = await hs({ parkline: { publish: ['news'] } })
  const r = asRefusal(t, await capped.publisher({ headers: bearer(pubForever), channel: 'news', method: 'POST', uri: '/pub/news', remoteAddress: '10.1.2.3' }))
  t.is(r.status, 401)
  t.is(r.wwwAuthenticate, invalid('token without exp'))
  // a forged token is refused for its signature, whatever its exp
  const forged = await hs(SUB_NEWS, 'HS256', 'another-secret-also-32-bytes-long!!')
  t.is(asRefusal(t, await capped.subscriber(sub(['news'], bearer(forged)))).wwwAuthenticate, invalid('bad signature'))
})

test('jwtPreviousSecret: HS tokens signed with it or with jwtSecret are admitted, others refused; an expired one signed with it is said expired; it needs jwtSecret', async (t) => {
  const PREV = 'the-secret-being-rotated-out-32-bytes!!'
  const a = auth(t, { jwtSecret: SECRET, jwtPreviousSecret: PREV })
  asGrant(t, await a.subscriber(sub(['news'], bearer(await hs(SUB_NEWS)))))
  asGrant(t, await a.subscriber(sub(['news'], bearer(await hs(SUB_NEWS, 'HS512', PREV)))))
  t.is(asRefusal(t, await a.subscriber(sub(['news'], bearer(await hs(SUB_NEWS, 'HS256', 'a-third-secret-also-32-bytes-long!!!'))))).wwwAuthenticate, invalid('bad signature'))
  t.is(asRefusal(t, await a.subscriber(sub(['news'], bearer(await hs({ ...SUB_NEWS, exp: now() - 10 }, 'HS256', PREV))))).wwwAuthenticate, invalid('token expired'))
  // without it, the old secret's tokens are refused
  const b = auth(t, { jwtSecret: SECRET })
  t.is(asRefusal(t, await b.subscriber(sub(['news'], bearer(await hs(SUB_NEWS, 'HS256', PREV))))).wwwAuthenticate, invalid('bad signature'))
  t.throws(() => new Auth(opts({ jwtPreviousSecret: PREV, apiKey: ['k-0123456789abcdef'] })), { message: /^jwtPreviousSecret needs jwtSecret/ })
  t.throws(() => new Auth(opts({ jwtSecret: SECRET, jwtPreviousSecret: 'short' })), { message: /^jwtPreviousSecret must be 32 bytes or more/ })
})

test('forged signature and wrong secret are refused', async (t) => {
  const a = auth(t, { jwtSecret: SECRET })
  const other = await hs(SUB_NEWS, 'HS256', 'another-secret-also-32-bytes-long!!')
  t.is(asRefusal(t, await a.subscriber(sub(['news'], bearer(other)))).wwwAuthenticate, invalid('bad signature'))
  // Same header and signature, payload swapped for one granting more.
  const good = await hs(SUB_NEWS)
  const [h, , s] = good.split('.')
  const forged = `${h}.${base64url.encode(JSON.stringify({ parkline: { admin: true } }))}.${s}`
  t.is(asRefusal(t, await a.subscriber(sub(['news'], bearer(forged)))).wwwAuthenticate, invalid('bad signature'))
})

test('alg none is refused, whatever key is configured', async (t) => {
  const { publicKey } = await generateKeyPair('RS256')
  const pem = await exportSPKI(publicKey)
  const payload = base64url.encode(JSON.stringify({ sub: 'x', parkline: { admin: true } }))
  const unsigned = [
    `${base64url.encode('{"alg":"none","typ":"JWT"}')}.${payload}.`,
    `${base64url.encode('{"alg":"none"}')}.${payload}.`,
    `${base64url.encode('{"alg":"NONE"}')}.${payload}.`
  ]
  for (const o of [{ jwtSecret: SECRET }, { jwtPublicKey: pem }]) {
    const a = auth(t, o)
    for (const tok of unsigned) {
      const r = asRefusal(t, await a.subscriber(sub(['news'], { cookie: 'parkline_token=' + tok })))
      t.is(r.status, 401)
      t.is(r.wwwAuthenticate, invalid('algorithm not allowed'))
      t.is(asRefusal(t, await a.publisher({ headers: bearer(tok), channel: 'news', method: 'POST', uri: '/pub/news', remoteAddress: '127.0.0.1' })).status, 401)
    }
  }
})

test('jwtIssuer and jwtAudience are checked when set', async (t) => {
  const a = auth(t, { jwtSecret: SECRET, jwtIssuer: 'https://idp.example', jwtAudience: 'parkline' })
  const ok = await hs({ ...SUB_NEWS, iss: 'https://idp.example', aud: ['other', 'parkline'] })
  asGrant(t, await a.subscriber(sub(['news'], bearer(ok))))
  const wrongIss = await hs({ ...SUB_NEWS, iss: 'https://evil.example', aud: 'parkline' })
  t.is(asRefusal(t, await a.subscriber(sub(['news'], bearer(wrongIss)))).wwwAuthenticate, invalid('wrong issuer'))
  const noIss = await hs({ ...SUB_NEWS, aud: 'parkline' })
  t.is(asRefusal(t, await a.subscriber(sub(['news'], bearer(noIss)))).wwwAuthenticate, invalid('wrong issuer'))
  const wrongAud = await hs({ ...SUB_NEWS, iss: 'https://idp.example', aud: 'someone-else' })
  t.is(asRefusal(t, await a.subscriber(sub(['news'], bearer(wrongAud)))).wwwAuthenticate, invalid('wrong audience'))
})

test('a malformed parkline claim is an invalid token', async (t) => {
  const a = auth(t, { jwtSecret: SECRET })
  const tok = await hs({ parkline: { subscribe: 'news' } })
  t.is(asRefusal(t, await a.subscriber(sub(['news'], bearer(tok)))).wwwAuthenticate, invalid('bad parkline claim'))
})

for (const alg of ['RS256', 'PS384', 'ES256', 'ES384', 'EdDSA'] as const) {
  test(`${alg} via jwtPublicKey`, async (t) => {
    const { publicKey, privateKey } = await generateKeyPair(alg)
    const a = auth(t, { jwtPublicKey: await exportSPKI(publicKey) })
    const tok = await new SignJWT(SUB_NEWS).setProtectedHeader({ alg }).setExpirationTime('1m').sign(privateKey)
    t.is(asGrant(t, await a.subscriber(sub(['news'], bearer(tok)))).kind, 'jwt')
    // Signed by another key of the same kind: bad signature.
    const other = await generateKeyPair(alg)
    const forged = await new SignJWT(SUB_NEWS).setProtectedHeader({ alg }).sign(other.privateKey)
    t.is(asRefusal(t, await a.subscriber(sub(['news'], bearer(forged)))).wwwAuthenticate, invalid('bad signature'))
  })
}

test('the algorithm list follows the key, not the token: an ES256 key refuses ES384 and RS256', async (t) => {
  const es256 = await generateKeyPair('ES256')
  const a = auth(t, { jwtPublicKey: await exportSPKI(es256.publicKey) })
  const es384 = await generateKeyPair('ES384')
  const rs = await generateKeyPair('RS256')
  for (const [alg, key] of [['ES384', es384.privateKey], ['RS256', rs.privateKey]] as const) {
    const tok = await new SignJWT(SUB_NEWS).setProtectedHeader({ alg }).sign(key)
    t.is(asRefusal(t, await a.subscriber(sub(['news'], bearer(tok)))).wwwAuthenticate, invalid('algorithm not allowed'))
  }
})

test('key confusion: an HS256 token signed with the PEM text is refused', async (t) => {
  const { publicKey } = await generateKeyPair('RS256')
  const pem = await exportSPKI(publicKey)
  const attack = await hs({ parkline: { admin: true } }, 'HS256', pem)
  const a = auth(t, { jwtPublicKey: pem })
  t.is(asRefusal(t, await a.subscriber(sub(['news'], bearer(attack)))).wwwAuthenticate, invalid('algorithm not allowed'))
  t.is(asRefusal(t, await a.admin({ headers: bearer(attack), remoteAddress: '127.0.0.1' })).status, 401)
  // With a secret configured as well, HS* is verified with the secret only: still refused.
  const both = auth(t, { jwtPublicKey: pem, jwtSecret: SECRET })
  t.is(asRefusal(t, await both.subscriber(sub(['news'], bearer(attack)))).wwwAuthenticate, invalid('bad signature'))
  asGrant(t, await both.subscriber(sub(['news'], bearer(await hs(SUB_NEWS)))))
})

test('apiKey: accepted in constant time from the header, refused otherwise', async (t) => {
  const a = auth(t, { apiKey: ['first-key-0123456', 'second-key-012345'] })
  for (const k of ['first-key-0123456', 'second-key-012345']) {
    const g = asGrant(t, await a.publisher({ headers: bearer(k), channel: 'any', method: 'DELETE', uri: '/pub/any', remoteAddress: '10.1.2.3' }))
    t.deepEqual([g.kind, g.publish, g.subscribe, g.admin], ['apikey', '*', '*', true])
    t.is(asGrant(t, await a.admin({ headers: bearer(k), remoteAddress: '10.1.2.3' })).kind, 'apikey')
    t.is(asGrant(t, await a.subscriber(sub(['x', 'y'], bearer(k)))).kind, 'apikey')
  }
  for (const k of ['first-key-012345', 'first-key-01234567', 'FIRST-KEY-0123456', 'x']) {
    const r = asRefusal(t, await a.publisher({ headers: bearer(k), channel: 'any', method: 'POST', uri: '/pub/any', remoteAddress: '127.0.0.1' }))
    t.is(r.status, 401)
    t.is(r.wwwAuthenticate, invalid('unknown credential'))
  }
  // No credential: the bare challenge, even from loopback (credentials configured beat the loopback rule).
  const none = asRefusal(t, await a.publisher({ headers: {}, channel: 'any', method: 'GET', uri: '/pub/any', remoteAddress: '127.0.0.1' }))
  t.is(none.status, 401)
  t.is(none.wwwAuthenticate, 'Bearer')
  // The key in a cookie or the query is not accepted.
  const a2 = auth(t, { apiKey: ['first-key-0123456'], tokenInQuery: true })
  t.is(asRefusal(t, await a2.subscriber(sub(['x'], { cookie: 'parkline_token=first-key-0123456' }))).status, 401)
  t.is(asRefusal(t, await a2.subscriber(sub(['x'], {}, 'access_token=first-key-0123456'))).status, 401)
})

test('publisher: Bearer only, publish scope covers the channel for POST, GET and DELETE', async (t) => {
  const a = auth(t, { jwtSecret: SECRET, tokenInQuery: true })
  const tok = await hs({ sub: 'p', parkline: { subscribe: ['*'], publish: ['room.*'] } })
  for (const method of ['POST', 'PUT', 'GET', 'DELETE'] as const) {
    t.is(asGrant(t, await a.publisher({ headers: bearer(tok), channel: 'room.1', method, uri: '/pub/room.1', remoteAddress: '10.1.2.3' })).kind, 'jwt')
  }
  const r = asRefusal(t, await a.publisher({ headers: bearer(tok), channel: 'lobby', method: 'POST', uri: '/pub/lobby', remoteAddress: '10.1.2.3' }))
  t.is(r.status, 403)
  t.is(r.wwwAuthenticate, 'Bearer error="insufficient_scope"')
  t.is(r.body, 'Forbidden: token does not grant publish on channel "lobby"')
  // A valid token in a cookie is no publisher credential; neither in the query.
  const cookie = asRefusal(t, await a.publisher({ headers: { cookie: 'parkline_token=' + tok }, channel: 'room.1', method: 'POST', uri: '/pub/room.1?access_token=' + tok, remoteAddress: '10.1.2.3' }))
  t.is(cookie.status, 401)
  t.is(cookie.wwwAuthenticate, 'Bearer')
  // ...while the same cookie admits the subscriber.
  asGrant(t, await a.subscriber(sub(['room.1'], { cookie: 'parkline_token=' + tok })))
  // An admin token publishes anywhere.
  const admin = await hs({ parkline: { admin: true } })
  asGrant(t, await a.publisher({ headers: bearer(admin), channel: 'lobby', method: 'DELETE', uri: '/pub/lobby', remoteAddress: '10.1.2.3' }))
})

test('multiplexed subscription: every channel granted; the body names the first refused', async (t) => {
  const a = auth(t, { jwtSecret: SECRET })
  const tok = await hs({ parkline: { subscribe: ['a', 'c.*'] } })
  asGrant(t, await a.subscriber(sub(['a', 'c.1', 'c.2'], bearer(tok))))
  const r = asRefusal(t, await a.subscriber(sub(['a', 'b', 'c.1', 'd'], bearer(tok))))
  t.is(r.status, 403)
  t.is(r.body, 'Forbidden: token does not grant subscribe on channel "b"')
  const ctl = asRefusal(t, await a.subscriber(sub(['a', 'x\ny'], bearer(tok))))
  t.is(ctl.body, 'Forbidden: token does not grant subscribe on channel "x\\ny"')
  // admin: true grants every channel.
  asGrant(t, await a.subscriber(sub(['a', 'b', 'zz'], bearer(await hs({ parkline: { admin: true } })))))
})

test('anonymousSubscribe: no token needed; a token adds channels; an invalid one is 401', async (t) => {
  const a = auth(t, { jwtSecret: SECRET, anonymousSubscribe: ['public', 'feed.*'] })
  const g = asGrant(t, await a.subscriber(sub(['public', 'feed.x'])))
  t.is(g.kind, 'anonymous')
  t.deepEqual(g.publish, [])
  // One channel outside the anonymous set: a credential is needed.
  t.is(asRefusal(t, await a.subscriber(sub(['public', 'private']))).wwwAuthenticate, 'Bearer')
  // A token covering the rest: anonymous and granted channels together.
  const tok = await hs({ sub: 'u', parkline: { subscribe: ['private'] } })
  t.is(asGrant(t, await a.subscriber(sub(['public', 'private'], bearer(tok)))).kind, 'jwt')
  // A valid token on anonymous channels is used (its identity shows in the grant).
  t.is(asGrant(t, await a.subscriber(sub(['public'], bearer(tok)))).sub, 'u')
  // An invalid one is refused even on anonymous channels.
  const expired = await hs({ exp: now() - 100 })
  t.is(asRefusal(t, await a.subscriber(sub(['public'], bearer(expired)))).wwwAuthenticate, invalid('token expired'))
  // API keys only: anonymous channels still work without the key.
  const k = auth(t, { apiKey: ['k-0123456789abcdef'], anonymousSubscribe: ['*'] })
  t.is(asGrant(t, await k.subscriber(sub(['any']))).kind, 'anonymous')
  const k2 = auth(t, { apiKey: ['k-0123456789abcdef'] })
  t.is(asRefusal(t, await k2.subscriber(sub(['any']))).wwwAuthenticate, 'Bearer')
})

test('nothing configured: subscribers open', async (t) => {
  const a = auth(t, {})
  const g = asGrant(t, await a.subscriber(sub(['x'], bearer('garbage'))))
  t.is(g.kind, 'open')
  t.is(g.subscribe, '*')
})

test('admin: apiKey or an admin JWT, header only', async (t) => {
  const a = auth(t, { jwtSecret: SECRET, apiKey: ['k-0123456789abcdef'] })
  const admin = await hs({ sub: 'ops', parkline: { admin: true } })
  t.is(asGrant(t, await a.admin({ headers: bearer(admin), remoteAddress: '10.0.0.1' })).sub, 'ops')
  const user = await hs({ parkline: { publish: ['*'], subscribe: ['*'] } })
  const r = asRefusal(t, await a.admin({ headers: bearer(user), remoteAddress: '10.0.0.1' }))
  t.is(r.status, 403)
  t.is(r.wwwAuthenticate, 'Bearer error="insufficient_scope"')
  t.is(asRefusal(t, await a.admin({ headers: { cookie: 'parkline_token=' + admin }, remoteAddress: '127.0.0.1' })).status, 401)
  const off = auth(t, {})
  t.is(asRefusal(t, await off.admin({ headers: bearer(admin), remoteAddress: '127.0.0.1' })).status, 403)
})

test('revoked tokens are refused: by jti until exp, by sub for tokens issued before', async (t) => {
  const a = auth(t, { jwtSecret: SECRET })
  const t0 = now()
  const tokA = await hs({ sub: 'alice', jti: 'A', iat: t0 - 100, exp: t0 + 600, ...SUB_NEWS })
  const tokB = await hs({ sub: 'bob', jti: 'B', iat: t0 - 100, exp: t0 + 600, ...SUB_NEWS })
  asGrant(t, await a.subscriber(sub(['news'], bearer(tokA))))
  a.revocations.revokeJti('A', t0 + 600)
  t.is(asRefusal(t, await a.subscriber(sub(['news'], bearer(tokA)))).wwwAuthenticate, invalid('token revoked'))
  asGrant(t, await a.subscriber(sub(['news'], bearer(tokB))))

  a.revocations.revokeSub('bob', t0 - 50)
  t.is(asRefusal(t, await a.subscriber(sub(['news'], bearer(tokB)))).status, 401)
  // A token bob gets after the revocation works.
  const fresh = await hs({ sub: 'bob', iat: t0, exp: t0 + 600, ...SUB_NEWS })
  asGrant(t, await a.subscriber(sub(['news'], bearer(fresh))))
  // Revocation applies to publishers too.
  const pub = await hs({ sub: 'bob', iat: t0 - 100, parkline: { publish: ['news'] } })
  t.is(asRefusal(t, await a.publisher({ headers: bearer(pub), channel: 'news', method: 'POST', uri: '/pub/news', remoteAddress: '10.0.0.1' })).status, 401)
})

test('subscriber token from the cookie, and from ?access_token only with tokenInQuery', async (t) => {
  const tok = await hs(SUB_NEWS)
  const off = auth(t, { jwtSecret: SECRET })
  t.is(asRefusal(t, await off.subscriber(sub(['news'], {}, 'access_token=' + tok))).wwwAuthenticate, 'Bearer')
  t.is(asGrant(t, await off.subscriber(sub(['news'], { cookie: 'x=1; parkline_token=' + tok }))).kind, 'jwt')
  const on = auth(t, { jwtSecret: SECRET, tokenInQuery: true, authCookie: 'tok' })
  t.is(asGrant(t, await on.subscriber(sub(['news'], {}, 'last_event_id=0&access_token=' + tok))).kind, 'jwt')
  t.is(asGrant(t, await on.subscriber(sub(['news'], { cookie: 'tok=' + tok }))).kind, 'jwt')
  // The header wins: a bad header token is refused even with a good cookie.
  const r = asRefusal(t, await on.subscriber(sub(['news'], { authorization: 'Bearer bad', cookie: 'tok=' + tok })))
  t.is(r.wwwAuthenticate, invalid('malformed token'))
  // The publisher answers a malformed Authorization header with 400.
  t.is(asRefusal(t, await on.publisher({ headers: { authorization: 'Bearer' }, channel: 'news', method: 'POST', uri: '/pub/news', remoteAddress: '127.0.0.1' })).status, 400)
})
