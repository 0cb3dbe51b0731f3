// lib/auth.ts pure parts: channel patterns, credential extraction, the loopback rule, revocations,
// option validation.
import { generateKeyPairSync } from 'node:crypto'
import test from 'ava'
import {
  AUTH_DEFAULTS, Revocations, authConfigured, cookieValue, extractBearer, extractSubscriberCredential, grantFromClaims,
  isLoopback, matchesAny, queryValue, validateAuthOptions, type AuthOptions
} from '../../lib/auth.ts'
import { ConfigError } from '../../lib/errors.ts'

function opts (over: Partial<AuthOptions> = {}): AuthOptions {
  return { ...AUTH_DEFAULTS, apiKey: [], anonymousSubscribe: [], ...over }
}

test('patterns: exact ids, prefixes ending in *, and * alone', (t) => {
  t.true(matchesAny(['news'], 'news'))
  t.false(matchesAny(['news'], 'news2'))
  t.false(matchesAny(['news'], 'new'))
  t.true(matchesAny(['user.42.*'], 'user.42.x'))
  t.true(matchesAny(['user.42.*'], 'user.42.'))
  t.false(matchesAny(['user.42.*'], 'user.42'))
  t.false(matchesAny(['user.42.*'], 'user.421.x'))
  t.true(matchesAny(['*'], 'anything'))
  t.true(matchesAny(['*'], ''))
  t.true(matchesAny('*', 'anything'))
  t.false(matchesAny([], 'a'))
  // A * that is not last is an ordinary character.
  t.false(matchesAny(['a*b'], 'axb'))
  t.true(matchesAny(['a*b'], 'a*b'))
  t.true(matchesAny(['x', 'user.*'], 'user.1'))
})

test('extraction: header beats cookie beats query, query only with tokenInQuery', (t) => {
  const headers = { authorization: 'Bearer h.h.h', cookie: 'a=1; parkline_token=c.c.c; b=2' }
  t.deepEqual(extractSubscriberCredential(headers, 'access_token=q.q.q', 'parkline_token', true), { token: 'h.h.h', source: 'header' })
  t.deepEqual(extractSubscriberCredential({ cookie: headers.cookie }, 'access_token=q.q.q', 'parkline_token', true), { token: 'c.c.c', source: 'cookie' })
  t.deepEqual(extractSubscriberCredential({}, 'x=1&access_token=q.q.q', 'parkline_token', true), { token: 'q.q.q', source: 'query' })
  t.is(extractSubscriberCredential({}, 'access_token=q.q.q', 'parkline_token', false), null)
  t.is(extractSubscriberCredential({ cookie: 'other=1' }, '', 'parkline_token', false), null)
  // Another cookie name is configurable; an empty cookie counts as none.
  t.deepEqual(extractSubscriberCredential({ cookie: 'tok="z.z.z"' }, '', 'tok', false), { token: 'z.z.z', source: 'cookie' })
  t.is(extractSubscriberCredential({ cookie: 'parkline_token=' }, '', 'parkline_token', false), null)
  // Another scheme is not a bearer token; the cookie still counts.
  t.deepEqual(extractSubscriberCredential({ authorization: 'Basic dTpw', cookie: 'parkline_token=c' }, '', 'parkline_token', false), { token: 'c', source: 'cookie' })
  // A malformed Bearer header is reported, not skipped over.
  t.is(extractSubscriberCredential({ authorization: 'Bearer a b', cookie: 'parkline_token=c' }, '', 'parkline_token', false), 'malformed')
})

test('extraction: Bearer syntax (RFC 6750 §2.1)', (t) => {
  t.deepEqual(extractBearer({ authorization: 'bearer abc' }), { token: 'abc', source: 'header' })
  t.deepEqual(extractBearer({ authorization: 'BEARER a-b_c.d~e+f/g==' }), { token: 'a-b_c.d~e+f/g==', source: 'header' })
  t.is(extractBearer({ authorization: 'Bearer' }), 'malformed')
  t.is(extractBearer({ authorization: 'Bearer ' }), 'malformed')
  t.is(extractBearer({ authorization: 'Bearer a,b' }), 'malformed')
  t.is(extractBearer({ authorization: 'Bearerx abc' }), null)
  t.is(extractBearer({ authorization: 'Basic abc' }), null)
  t.is(extractBearer({}), null)
  // The publisher reads only this: a cookie or query token is no credential there.
  t.is(extractBearer({ cookie: 'parkline_token=c.c.c' }), null)
})

test('cookie and query parsing', (t) => {
  t.is(cookieValue('a=1;b=2; c = 3', 'c'), '3')
  t.is(cookieValue('a=1; a=2', 'a'), '1')
  t.is(cookieValue('ab=1', 'a'), null)
  t.is(cookieValue(undefined, 'a'), null)
  t.is(queryValue('access_token=a%2Eb', 'access_token'), 'a.b')
  t.is(queryValue('access_token=%zz', 'access_token'), null)
  t.is(queryValue('xaccess_token=1', 'access_token'), null)
})

test('isLoopback: 127/8, ::1, ::ffff:127.x and nothing else', (t) => {
  for (const a of ['127.0.0.1', '127.0.0.2', '127.255.255.254', '::1', '::ffff:127.0.0.1', '::FFFF:127.1.2.3']) t.true(isLoopback(a), a)
  for (const a of [undefined, '', '10.1.2.3', '128.0.0.1', '::2', '::ffff:10.0.0.1', '1127.0.0.1', '127.example', 'fe80::1', '::ffff:127.0.0.1.evil']) t.false(isLoopback(a), String(a))
})

test('authConfigured: any of apiKey, a JWT key, authorizeUrl', (t) => {
  t.false(authConfigured(opts()))
  t.false(authConfigured(opts({ anonymousSubscribe: ['*'], publisherOpen: true, publishUpstreamUrl: 'http://x/' })))
  t.false(authConfigured(opts({ apiKey: [''] })))
  t.true(authConfigured(opts({ apiKey: ['k-0123456789abcdef'] })))
  t.true(authConfigured(opts({ jwtSecret: 's' })))
  t.true(authConfigured(opts({ jwtPublicKey: 'pem' })))
  t.true(authConfigured(opts({ jwksUrl: 'http://x/' })))
  t.true(authConfigured(opts({ authorizeUrl: 'http://x/' })))
})

test('validateAuthOptions: bad values throw, odd combinations warn', (t) => {
  t.deepEqual(validateAuthOptions(opts()), [])
  t.throws(() => validateAuthOptions(opts({ jwtLeeway: 31 })), { instanceOf: ConfigError, message: /jwtLeeway/ })
  t.throws(() => validateAuthOptions(opts({ jwtLeeway: -1 })), { instanceOf: ConfigError })
  t.throws(() => validateAuthOptions(opts({ jwtSecret: 'a-test-secret-that-is-32-bytes-long!!', jwtMaxLifetime: -1 })), { instanceOf: ConfigError, message: /^jwtMaxLifetime must be/ })
  t.throws(() => validateAuthOptions(opts({ jwtSecret: 'a-test-secret-that-is-32-bytes-long!!', jwtMaxLifetime: 1.5 })), { instanceOf: ConfigError, message: /^jwtMaxLifetime must be/ })
  t.throws(() => validateAuthOptions(opts({ authorizeTimeout: 0 })), { instanceOf: ConfigError, message: /authorizeTimeout/ })
  t.throws(() => validateAuthOptions(opts({ authorizeCacheTtl: -1 })), { instanceOf: ConfigError })
  t.throws(() => validateAuthOptions(opts({ authorizeUrl: 'ftp://x/' })), { instanceOf: ConfigError, message: /authorizeUrl/ })
  t.throws(() => validateAuthOptions(opts({ jwksUrl: 'not a url' })), { instanceOf: ConfigError, message: /jwksUrl/ })
  t.throws(() => validateAuthOptions(opts({ jwtPublicKey: 'garbage' })), { instanceOf: ConfigError, message: /jwtPublicKey/ })
  t.throws(() => validateAuthOptions(opts({ anonymousSubscribe: ['a*b'] })), { instanceOf: ConfigError, message: /anonymousSubscribe/ })
  t.throws(() => validateAuthOptions(opts({ authCookie: 'a b' })), { instanceOf: ConfigError, message: /authCookie/ })
  const w = validateAuthOptions(opts({ apiKey: ['k-0123456789abcdef'], publisherOpen: true }))
  t.is(w.length, 1)
  t.regex(w.join('\n'), /publisherOpen is ignored/)
  // options that would restrict access but change nothing as set are refused, not warned about
  t.throws(() => validateAuthOptions(opts({ apiKey: ['k-0123456789abcdef'], authorizePublish: true })), { instanceOf: ConfigError, message: /^authorizePublish has no effect without authorizeUrl/ })
  t.throws(() => validateAuthOptions(opts({ apiKey: ['k-0123456789abcdef'], jwtIssuer: 'i' })), { instanceOf: ConfigError, message: /^jwtIssuer\/jwtAudience have no effect without a JWT key/ })
  t.throws(() => validateAuthOptions(opts({ apiKey: ['k-0123456789abcdef'], jwtMaxLifetime: 600 })), { instanceOf: ConfigError, message: /^jwtMaxLifetime has no effect without a JWT key/ })
  t.throws(() => validateAuthOptions(opts({ apiKey: ['a-15-byte-key!!'] })), { instanceOf: ConfigError, message: /^apiKey: each key must be 16 bytes or more, one is 15/ })
  const err = t.throws(() => validateAuthOptions(opts({ apiKey: ['a-15-byte-key!!'] })))
  t.false(err.message.includes('a-15-byte-key'), 'the key is not in the message')
  t.deepEqual(validateAuthOptions(opts({ apiKey: ['a-16-byte-key___', ''] })), [])
  // a Bearer token's characters only (RFC 6750 §2.1): a comma is only ever a separator
  for (const bad of ['first-key-0123456,second-key-0123', 'a key with spaces in', 'publisher-key-0001\n', '"publisher-key-0001"', 'a-16-byte-key!!!', 'publisher=key=0001']) {
    const e = t.throws(() => validateAuthOptions(opts({ apiKey: [bad] })), { instanceOf: ConfigError, message: /^apiKey: a key may hold only letters, digits/ }, JSON.stringify(bad))
    t.false(e.message.includes(bad), 'the key is not in the message')
  }
  t.deepEqual(validateAuthOptions(opts({ apiKey: ['AZaz09-._~+/publisherkey==', '0123456789abcdef'] })), [])
  t.throws(() => validateAuthOptions(opts({ jwtSecret: 'x'.repeat(31) })), { instanceOf: ConfigError, message: /^jwtSecret must be 32 bytes or more \(RFC 7518 §3.2\), got 31/ })
  t.deepEqual(validateAuthOptions(opts({ jwtSecret: 'x'.repeat(32) })), [])
  t.regex(validateAuthOptions(opts({ jwksUrl: 'http://login.example/jwks.json' })).join(), /jwksUrl is plain http to another host/)
  for (const local of ['http://127.0.0.1:9/jwks', 'http://localhost:9/jwks', 'http://[::1]:9/jwks', 'https://login.example/jwks.json']) t.deepEqual(validateAuthOptions(opts({ jwksUrl: local })), [], local)
})

test('grantFromClaims: the parkline claim, and a malformed one', (t) => {
  const g = grantFromClaims({ sub: 'u1', jti: 'j1', exp: 200, iat: 100, parkline: { subscribe: ['a.*'], publish: ['b'] } })!
  t.deepEqual(g, { kind: 'jwt', sub: 'u1', jti: 'j1', exp: 200, iat: 100, subscribe: ['a.*'], publish: ['b'], admin: false })
  const admin = grantFromClaims({ parkline: { admin: true } })!
  t.is(admin.subscribe, '*')
  t.is(admin.publish, '*')
  t.true(admin.admin)
  t.deepEqual(grantFromClaims({})!.subscribe, [])
  t.is(grantFromClaims({ parkline: { subscribe: 'a' } }), null)
  t.is(grantFromClaims({ parkline: { subscribe: [1] } }), null)
  t.is(grantFromClaims({ parkline: { admin: 'yes' } }), null)
  t.is(grantFromClaims({ parkline: [] }), null)
})

test('revocations: a jti until its exp, a sub for tokens issued before', (t) => {
  const r = new Revocations()
  const tok = { jti: 'j1', sub: 'u1', iat: 100 }
  t.false(r.isRevoked(tok, 150))
  r.revokeJti('j1', 200)
  t.true(r.isRevoked(tok, 150))
  t.false(r.isRevoked({ jti: 'j2', sub: 'u1', iat: 100 }, 150))
  // Past its exp the token is expired anyway: the entry is forgotten.
  t.false(r.isRevoked(tok, 200))
  t.is(r.size, 0)

  r.revokeSub('u1', 120)
  t.true(r.isRevoked({ jti: null, sub: 'u1', iat: 119 }, 150))
  t.true(r.isRevoked({ jti: null, sub: 'u1', iat: 120 }, 150), 'issued in the revocation\'s own second: it may predate it, refused')
  t.false(r.isRevoked({ jti: null, sub: 'u1', iat: 130 }, 150), 'issued after: kept')
  t.true(r.isRevoked({ jti: null, sub: 'u1', iat: 0 }, 150), 'no iat: counts as old')
  t.false(r.isRevoked({ jti: null, sub: 'u2', iat: 0 }, 150))
  // An earlier revocation does not undo a later one.
  r.revokeSub('u1', 110)
  t.true(r.isRevoked({ jti: null, sub: 'u1', iat: 115 }, 150))

  // With a clock-skew leeway (jwtLeeway), a token stamped up to that much after the revocation
  // (an issuer whose clock runs ahead) goes too; one stamped later is a fresh login, kept.
  r.leeway = 10
  t.true(r.isRevoked({ jti: null, sub: 'u1', iat: 130 }, 150))
  t.false(r.isRevoked({ jti: null, sub: 'u1', iat: 131 }, 150))
  r.leeway = 0

  // prune drops expired jti entries only; exp 0 stays.
  r.revokeJti('a', 300)
  r.revokeJti('b', 400)
  r.revokeJti('forever', 0)
  t.is(r.prune(350), 1)
  t.true(r.isRevoked({ jti: 'b', sub: null, iat: 0 }, 350))
  t.true(r.isRevoked({ jti: 'forever', sub: null, iat: 0 }, 1e10))
})

test('revocations: nothing in force is dropped to make room; past the bound a new one is refused, an expired jti makes room, and one held may be revoked again', (t) => {
  const r = new Revocations(3)
  t.is(r.max, 3)
  r.revokeJti('j0', 0)
  r.revokeJti('j1', 100)
  t.true(r.room('sub', 's0', 50))
  r.revokeSub('s0', 10)
  // full: a fourth is refused, and every one held stays revoked
  t.false(r.room('jti', 'j2', 50))
  t.false(r.room('sub', 's1', 50))
  t.true(r.room('jti', 'j1', 50), 'one held may be revoked again')
  t.true(r.room('sub', 's0', 50))
  t.true(r.isRevoked({ jti: 'j0', sub: null, iat: 0 }, 1e10), 'a jti without exp: for good')
  t.true(r.isRevoked({ jti: null, sub: 's0', iat: 5 }, 1e10), 'a sub: for good')
  // once j1's token has expired, its entry makes room
  t.true(r.room('jti', 'j2', 100))
  t.is(r.size, 2)
  // a revocation told by another worker or node is recorded whatever the count
  r.revokeJti('j2', 0)
  r.revokeJti('j3', 0)
  t.is(r.size, 4)
  t.true(r.isRevoked({ jti: 'j3', sub: null, iat: 0 }, 1))
})

test('revocations: a jti revoked again is never revoked for less time than before', (t) => {
  const r = new Revocations()
  r.revokeJti('a', 300)
  r.revokeJti('a', 200)
  t.true(r.isRevoked({ jti: 'a', sub: null, iat: 0 }, 250))
  r.revokeJti('a', 0)
  r.revokeJti('a', 400)
  t.true(r.isRevoked({ jti: 'a', sub: null, iat: 0 }, 1e10), 'for good stays for good')
  r.revokeJti('b', 300)
  r.revokeJti('b', 500)
  t.true(r.isRevoked({ jti: 'b', sub: null, iat: 0 }, 450))
  // a token is accepted until exp plus the leeway (jwtLeeway): its revocation holds as long
  r.leeway = 10
  r.revokeJti('c', 300)
  t.true(r.isRevoked({ jti: 'c', sub: null, iat: 0 }, 309))
  t.is(r.prune(309), 0)
  t.false(r.isRevoked({ jti: 'c', sub: null, iat: 0 }, 310))
  t.is(r.held('jti', 'b'), 500)
  t.is(r.held('jti', 'a'), 0)
  t.is(r.held('sub', 'nobody'), undefined)
})

test('with no credential configured, access options that change nothing are named, and the start refuses them (every channel would be open)', async (t) => {
  const { inertOptions } = await import('../../lib/access.ts')
  const { resolveOptions } = await import('../../lib/config.ts')
  t.deepEqual(inertOptions(resolveOptions({})), [])
  t.deepEqual(inertOptions(resolveOptions({ authorizePublish: true, jwtIssuer: 'https://login.example', tokenInQuery: true, jwtMaxLifetime: 600, anonymousSubscribe: ['public.*'] })), [
    'authorizePublish has no effect without authorizeUrl',
    'jwtIssuer/jwtAudience have no effect without a JWT key',
    'tokenInQuery has no effect without a JWT key (jwtSecret, jwtPublicKey, jwksUrl)',
    'jwtMaxLifetime has no effect without a JWT key (jwtSecret, jwtPublicKey, jwksUrl)',
    'anonymousSubscribe has no effect with no credential configured: every subscriber is admitted, on every channel'
  ])
})

test('jwtPublicKey: a private key is refused (its public half is what Parkline needs), in every PEM form; the public keys are taken', (t) => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const ed = generateKeyPairSync('ed25519')
  const privates = [
    rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }),
    rsa.privateKey.export({ type: 'pkcs1', format: 'pem' }),
    ec.privateKey.export({ type: 'sec1', format: 'pem' }),
    ed.privateKey.export({ type: 'pkcs8', format: 'pem' }),
    ec.privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'x' })
  ] as string[]
  t.deepEqual(privates.map((p) => /-----BEGIN ([A-Z ]+)-----/.exec(p)![1]), ['PRIVATE KEY', 'RSA PRIVATE KEY', 'EC PRIVATE KEY', 'PRIVATE KEY', 'ENCRYPTED PRIVATE KEY'])
  for (const pem of privates) {
    const err = t.throws(() => validateAuthOptions(opts({ jwtPublicKey: pem })), { instanceOf: ConfigError, message: /^jwtPublicKey: this is a private key: give Parkline only its public half/ })
    // the key itself is never in the message
    t.false(err.message.includes(pem.split('\n')[1]!))
  }
  // OpenSSL reads a private key under another label too: still refused
  const relabeled = (ec.privateKey.export({ type: 'sec1', format: 'pem' }) as string).replaceAll('EC PRIVATE KEY', 'EC PARAMETERS')
  t.throws(() => validateAuthOptions(opts({ jwtPublicKey: relabeled })), { instanceOf: ConfigError, message: /^jwtPublicKey: this is a private key/ })
  for (const k of [rsa, ec, ed]) t.notThrows(() => validateAuthOptions(opts({ jwtPublicKey: k.publicKey.export({ type: 'spki', format: 'pem' }) as string })))
})
