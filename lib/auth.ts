// Admission for subscribers, publishers and the revoke endpoint: API keys, JWTs (jose), Nchan's
// authorize request and publisher upstream request (undici). Pure decisions: the HTTP layer hands
// in headers, query and channels and gets back a Grant or a Refusal to write out (RFC 6750).
//
// How the mechanisms combine (user-facing text belongs in docs/configuration.md):
// - nothing configured (authConfigured false): subscribers are 'open'; the publisher is
//   loopback-only unless publisherOpen.
// - apiKey: the operator's key, accepted from `Authorization: Bearer` only, everywhere; it grants
//   every channel and admin, and skips the authorize request.
// - JWT key (secret, PEM or JWKS): subscribers need a token (header, cookie, or query when
//   tokenInQuery) whose `parkline.subscribe` covers every requested channel; publishers need one
//   in the header whose `parkline.publish` covers the channel.
// - authorizeUrl: for subscribers the app's answer decides, after the JWT when both are set
//   (both must admit). For publishers only with authorizePublish.
// - anonymousSubscribe: channels every one of which matches need no credential at all (nor the
//   authorize request). A credential that is sent anyway must be valid: an invalid token is 401
//   even on anonymous channels (as Mercure does), so a client learns its token is bad.
import { createHash, timingSafeEqual } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import type { JWTPayload } from 'jose'
import { LRUCache } from 'lru-cache'
import { Agent } from 'undici'
import {
  AuthorizeClient, newStats, upstreamPublish, type AuthStats, type AuthTrouble, type AuthorizeDecision, type UpstreamPublishContext,
  type UpstreamPublishResult
} from './auth-authorize.ts'
import { JwksCache, JwtVerifier, parsePublicKey } from './auth-jwt.ts'
import { CREDENTIALS, MAX_LEEWAY, laterUntil, type ParklineOptions } from './config.ts'
import { ConfigError } from './errors.ts'
import { isLoopback, percentEncodeUnsafe } from './http.ts'
export type { AuthStats, UpstreamPublishContext, UpstreamPublishResult }
export { isLoopback }

/** A JWS in compact form: three base64url parts (lib/auth-jwt.ts verifies it). */
const JWT_SHAPE = /^[\w-]+\.[\w-]+\.[\w-]*$/

/**
 * The access-control options (lib/config.ts documents each), resolved by the caller; a jwtPublicKey
 * given as a file path is read first (lib/access.ts).
 */
export type AuthOptions = Pick<ParklineOptions, 'apiKey' | 'jwtSecret' | 'jwtPreviousSecret' | 'jwtPublicKey' | 'jwksUrl' | 'jwtIssuer' | 'jwtAudience' |
'jwtLeeway' | 'jwtMaxLifetime' | 'authCookie' | 'tokenInQuery' | 'anonymousSubscribe' | 'authorizeUrl' | 'authorizePublish' | 'authorizeTimeout' |
'authorizeCacheTtl' | 'publishUpstreamUrl' | 'publisherOpen'>

/** The shipped defaults, for the config table and for tests. */
export const AUTH_DEFAULTS: Readonly<AuthOptions> = Object.freeze({
  apiKey: [],
  jwtSecret: '',
  jwtPreviousSecret: '',
  jwtPublicKey: '',
  jwksUrl: '',
  jwtIssuer: '',
  jwtAudience: '',
  jwtLeeway: 0,
  jwtMaxLifetime: 0,
  authCookie: 'parkline_token',
  tokenInQuery: false,
  anonymousSubscribe: [],
  authorizeUrl: '',
  authorizePublish: false,
  authorizeTimeout: 5,
  authorizeCacheTtl: 5,
  publishUpstreamUrl: '',
  publisherOpen: false
})

export type GrantKind = 'apikey' | 'jwt' | 'anonymous' | 'authorize' | 'loopback' | 'open'

/** An admitted request, and what it may do. */
export interface Grant {
  kind: GrantKind
  /** The token's `sub`, `jti`; null when absent (and for every kind but 'jwt'). */
  sub: string | null
  jti: string | null
  /** The token's `exp` and `iat` in unix seconds; 0 = none. */
  exp: number
  iat: number
  /**
   * Channel patterns this credential may subscribe to / publish on, in the byte form channel ids
   * have (patternBytes); '*' = every channel.
   */
  subscribe: string[] | '*'
  publish: string[] | '*'
  admin: boolean
  /** An API key's grant: the key's digest, so a connection it opened ends when the key is taken out (Auth.keyHeld). */
  key?: Buffer
}

/** A refused request: write status, the headers named here, and body (text/plain unless headers says). */
export interface Refusal {
  status: number
  /** Error code for logs (PKL_ERR_*; to be added to lib/errors.ts). */
  code: string
  body: string | Buffer
  /** WWW-Authenticate value. */
  wwwAuthenticate?: string
  /** Retry-After seconds (503). */
  retryAfter?: number
  /** Other headers to send: those kept from an authorize answer (content-type, location...). */
  headers?: Record<string, string>
}

export type AuthResult = Grant | Refusal

export function isRefusal (r: AuthResult): r is Refusal {
  return 'status' in r
}

export type SubscriberTransport = 'websocket' | 'eventsource' | 'longpoll' | 'chunked' | 'multipart'

export interface SubscriberContext {
  headers: IncomingHttpHeaders
  /** Raw query string (after `?`), '' when none. */
  query: string
  /** The channel ids, split and percent-decoded: byte strings, one char per byte (lib/http.ts parseChannelIds). */
  channels: string[]
  /** The ids as requested, multiplexed ones still joined (sent as X-Channel-Id); defaults to channels joined by ','. */
  rawChannels?: string
  transport: SubscriberTransport
  uri: string
  method: string
  remoteAddress: string | undefined
}

export interface PublisherContext {
  headers: IncomingHttpHeaders
  /** The channel id, a byte string as SubscriberContext's. */
  channel: string
  method: 'POST' | 'PUT' | 'DELETE' | 'GET'
  uri: string
  remoteAddress: string | undefined
  /** A local process, as lib/http.ts localClient judges it (proxies, trustedProxies); absent: a loopback peer. */
  local?: boolean
}

export interface AdminContext {
  headers: IncomingHttpHeaders
  remoteAddress: string | undefined
}

/** Knobs tests (and only tests, mostly) turn; every field has a production default. */
export interface AuthTuning {
  /** Clock in ms (Date.now): JWT exp/nbf, JWKS cooldown and age, revocations. */
  now?: () => number
  /** Least time between two JWKS fetches caused by an unknown kid (10 s). */
  jwksCooldownMs?: number
  /** Age at which the JWKS is fetched again (10 min). */
  jwksMaxAgeMs?: number
  /** Most authorize decisions cached (10,000). */
  authorizeCacheMax?: number
  /** Most bytes of an upstream refusal body passed on (4 KiB). */
  refusalBodyCap?: number
  /** Largest message the publisher upstream may answer with (1 MiB; pass maxMessageSize). */
  upstreamMaxBody?: number
  /** Told each failure of the JWKS, authorize or publisher upstream (lib/access.ts logs them). */
  trouble?: AuthTrouble
  /** Sockets per upstream origin (128). */
  connections?: number
  /** Most revocation entries kept (100,000). */
  maxRevocations?: number
}

export const AUTH_CODES = {
  UNAUTHORIZED: 'PKL_ERR_UNAUTHORIZED',
  INVALID_TOKEN: 'PKL_ERR_INVALID_TOKEN',
  INVALID_REQUEST: 'PKL_ERR_INVALID_AUTH_REQUEST',
  INSUFFICIENT_SCOPE: 'PKL_ERR_INSUFFICIENT_SCOPE',
  PUBLISHER_LOOPBACK_ONLY: 'PKL_ERR_PUBLISHER_LOOPBACK_ONLY',
  ADMIN_DISABLED: 'PKL_ERR_ADMIN_DISABLED',
  AUTHORIZE_REFUSED: 'PKL_ERR_AUTHORIZE_REFUSED',
  AUTH_UNAVAILABLE: 'PKL_ERR_AUTH_UNAVAILABLE'
} as const

// ---- configuration ----------------------------------------------------------------------------

function jwtConfigured (o: Pick<AuthOptions, 'jwtSecret' | 'jwtPublicKey' | 'jwksUrl'>): boolean {
  return o.jwtSecret.length > 0 || o.jwtPublicKey.length > 0 || o.jwksUrl.length > 0
}

/**
 * What a reload may not change: whether API keys are set at all, and whether a JWT key is (which
 * decide whether publishers need a credential and whether streams end at a token's exp).
 */
export function checkCredentialKinds (was: Pick<AuthOptions, 'apiKey' | 'jwtSecret' | 'jwtPublicKey' | 'jwksUrl'>, next: Pick<AuthOptions, 'apiKey' | 'jwtSecret' | 'jwtPublicKey' | 'jwksUrl'>): void {
  const keys = (o: Pick<AuthOptions, 'apiKey'>): boolean => o.apiKey.some((k) => k.length > 0)
  if (keys(was) !== keys(next)) throw new ConfigError(`apiKey: ${keys(was) ? 'removing every API key' : 'adding API keys where none were set'} takes a restart`)
  if (jwtConfigured(was) !== jwtConfigured(next)) throw new ConfigError(`jwtSecret/jwtPublicKey: ${jwtConfigured(was) ? 'removing the last JWT key' : 'adding a JWT key where none was set'} takes a restart`)
}

/** True when any credential mechanism is set: an API key, a JWT key, or the authorize request. */
export function authConfigured (o: AuthOptions): boolean {
  return o.apiKey.some((k) => k.length > 0) || jwtConfigured(o) || o.authorizeUrl.length > 0
}

/** A guessable HMAC key lets anyone mint tokens: RFC 7518 §3.2 wants at least the hash's size (also `parkline token`'s rule). */
export function checkJwtSecret (secret: string, name = 'jwtSecret'): void {
  const n = Buffer.byteLength(secret)
  if (n > 0 && n < 32) throw new ConfigError(`${name} must be 32 bytes or more (RFC 7518 §3.2), got ${n}: make one with \`openssl rand -hex 32\``)
}

function checkUrl (name: string, v: string): void {
  if (v.length === 0) return
  let u: URL
  try {
    u = new URL(v)
  } catch {
    // (not echoed: it may hold a password)
    throw new ConfigError(`${name} must be an http(s) URL; the value given is not a URL`)
  }
  // the value without its user:password@, which ends up in logs and the journal
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new ConfigError(`${name} must be an http(s) URL, got ${JSON.stringify(u.protocol + '//' + u.host + u.pathname)}`)
}

/**
 * Throws ConfigError for settings Auth cannot run with; returns warnings for settings that are
 * legal but probably not what was meant. The Auth constructor calls it; config.ts may call it
 * earlier to fail at boot with the other options.
 */
export function validateAuthOptions (o: AuthOptions): string[] {
  if (!Number.isFinite(o.jwtLeeway) || o.jwtLeeway < 0 || o.jwtLeeway > MAX_LEEWAY) throw new ConfigError(`jwtLeeway must be 0..${MAX_LEEWAY} seconds, got ${o.jwtLeeway}`)
  if (!Number.isSafeInteger(o.jwtMaxLifetime) || o.jwtMaxLifetime < 0) throw new ConfigError(`jwtMaxLifetime must be a whole number of seconds >= 0, got ${o.jwtMaxLifetime}`)
  if (!(o.authorizeTimeout > 0) || !Number.isFinite(o.authorizeTimeout)) throw new ConfigError(`authorizeTimeout must be > 0 seconds, got ${o.authorizeTimeout}`)
  if (!(o.authorizeCacheTtl >= 0) || !Number.isFinite(o.authorizeCacheTtl)) throw new ConfigError(`authorizeCacheTtl must be >= 0 seconds, got ${o.authorizeCacheTtl}`)
  if (o.authCookie.length === 0 || !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(o.authCookie)) throw new ConfigError(`authCookie must be a cookie name, got ${JSON.stringify(o.authCookie)}`)
  // a key short enough to guess publishes, deletes and revokes on every channel
  for (const k of o.apiKey) {
    if (k.length > 0 && Buffer.byteLength(k) < 16) throw new ConfigError(`apiKey: each key must be 16 bytes or more, one is ${Buffer.byteLength(k)}: make one with \`openssl rand -hex 24\` (in PARKLINE_API_KEY and --api-key a comma separates two keys)`)
    // what `Authorization: Bearer` carries (RFC 6750 §2.1 b64token; extractBearer answers 400 to
    // anything else): a key pasted with a space, a quote or a line end in it, which no request
    // could ever match, is refused here
    if (k.length > 0 && !TOKEN68.test(k)) throw new ConfigError('apiKey: a key may hold only letters, digits, - . _ ~ + / and = at its end, as a Bearer token does (RFC 6750 §2.1); one holds another character (in PARKLINE_API_KEY and --api-key a comma separates two keys): make one with `openssl rand -hex 24`')
  }
  checkJwtSecret(o.jwtSecret)
  checkJwtSecret(o.jwtPreviousSecret, 'jwtPreviousSecret')
  // the secret being rotated out, with none in its place: every HS token would still verify
  if (o.jwtPreviousSecret !== '' && o.jwtSecret === '') throw new ConfigError('jwtPreviousSecret needs jwtSecret (the secret that replaces it): set jwtSecret, or leave jwtPreviousSecret out')
  checkUrl('jwksUrl', o.jwksUrl)
  checkUrl('authorizeUrl', o.authorizeUrl)
  checkUrl('publishUpstreamUrl', o.publishUpstreamUrl)
  for (const p of o.anonymousSubscribe) {
    const star = p.indexOf('*')
    if (p.length === 0 || (star !== -1 && star !== p.length - 1)) throw new ConfigError(`anonymousSubscribe: ${JSON.stringify(p)} is not a channel id or a prefix ending in *`)
  }
  if (o.jwtPublicKey.length > 0) {
    let parsed
    try {
      parsed = parsePublicKey(o.jwtPublicKey)
    } catch (err) {
      throw new ConfigError(`jwtPublicKey: ${(err as Error).message}`)
    }
    const bits = parsed.key.asymmetricKeyDetails?.modulusLength
    if (bits !== undefined && bits < 2048) throw new ConfigError(`jwtPublicKey: RSA keys need 2048 bits or more, got ${bits}`)
  }
  const warnings: string[] = []
  const local = o.apiKey.some((k) => k.length > 0) || jwtConfigured(o)
  if (o.publisherOpen && local) warnings.push('publisherOpen is ignored: with apiKey or a JWT key set, publishers need a credential')
  // options that would restrict access but change nothing as set: refused, not left to look in force
  if (o.authorizePublish && o.authorizeUrl.length === 0) throw new ConfigError('authorizePublish has no effect without authorizeUrl: set authorizeUrl, or leave it out')
  if (o.authorizeUrl.length > 0 && !o.authorizePublish && !local) {
    warnings.push(o.publisherOpen
      ? 'authorizeUrl is asked about subscribers only, and publisherOpen lets anyone publish and delete: set authorizePublish to send publishers there too'
      : 'authorizeUrl is asked about subscribers only: publishers stay loopback-only (authorizePublish sends them there too)')
  }
  if ((o.jwtIssuer.length > 0 || o.jwtAudience.length > 0) && !jwtConfigured(o)) throw new ConfigError('jwtIssuer/jwtAudience have no effect without a JWT key (jwtSecret, jwtPublicKey, jwksUrl): set one, or leave them out')
  if (o.jwtMaxLifetime > 0 && !jwtConfigured(o)) throw new ConfigError('jwtMaxLifetime has no effect without a JWT key (jwtSecret, jwtPublicKey, jwksUrl): set one, or leave it out')
  const jwks = o.jwksUrl === '' ? null : new URL(o.jwksUrl)
  if (jwks !== null && jwks.protocol === 'http:' && !isLoopback(jwks.hostname.replace(/^\[|\]$/g, '')) && jwks.hostname !== 'localhost') {
    warnings.push('jwksUrl is plain http to another host: whoever is on the path between can hand Parkline keys of their own, and mint tokens it accepts; use https')
  }
  return warnings
}

// ---- channel patterns -------------------------------------------------------------------------

/**
 * A pattern (a token's claim, anonymousSubscribe) in the form channel ids have: its UTF-8 bytes,
 * one char per byte. Ids are matched as the bytes they are, never as text decoded from them: an
 * id that is not valid UTF-8 would decode lossily (U+FFFD for each bad sequence), and one pattern
 * would then match many channels. ASCII is its own byte form.
 */
export function patternBytes (pattern: string): string {
  for (let i = 0; i < pattern.length; i++) if (pattern.charCodeAt(i) > 0x7f) return Buffer.from(pattern, 'utf8').toString('latin1')
  return pattern
}

/** An id's bytes as text, for a message (bytes that are not UTF-8 show as U+FFFD). */
export function idText (id: string): string {
  for (let i = 0; i < id.length; i++) if (id.charCodeAt(i) > 0x7f) return Buffer.from(id, 'latin1').toString('utf8')
  return id
}

/**
 * A pattern is an exact channel id, or a prefix ending in `*` (`user.42.*` matches `user.42.x`,
 * `*` alone matches every channel). A `*` anywhere else is an ordinary character. Patterns and
 * the channel are byte strings (patternBytes).
 */
export function matchesAny (patterns: readonly string[] | '*', channel: string): boolean {
  if (patterns === '*') return true
  for (let i = 0; i < patterns.length; i++) {
    const p = patterns[i]!
    const last = p.length - 1
    if (last >= 0 && p.charCodeAt(last) === 42 /* * */) {
      if (channel.length >= last && channel.startsWith(p.slice(0, last))) return true
    } else if (p === channel) {
      return true
    }
  }
  return false
}

const NONE: readonly string[] = Object.freeze([])

/** The first channel neither `granted` nor `extra` covers, or null when all are covered. */
function firstUncovered (channels: readonly string[], granted: readonly string[] | '*', extra: readonly string[]): string | null {
  if (granted === '*') return null
  for (const c of channels) if (!matchesAny(granted, c) && !matchesAny(extra, c)) return c
  return null
}

// ---- credential extraction --------------------------------------------------------------------

export type TokenSource = 'header' | 'cookie' | 'query'
export interface Credential { token: string, source: TokenSource }
/** An `Authorization: Bearer` header that is not `Bearer <token68>` (RFC 6750 §2.1): 400. */
export const MALFORMED = 'malformed'

const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*$/

/** The token of `Authorization: Bearer <t>`; null when there is no Bearer header. */
export function extractBearer (headers: IncomingHttpHeaders): Credential | null | typeof MALFORMED {
  const v = headers.authorization
  if (typeof v !== 'string' || v.length < 6 || v.slice(0, 6).toLowerCase() !== 'bearer') return null
  if (v.length > 6 && v.charCodeAt(6) !== 32) return null // another scheme that starts with "bearer"
  const t = v.slice(7).trim()
  return TOKEN68.test(t) ? { token: t, source: 'header' } : MALFORMED
}

/** A cookie's value (first of that name, quotes removed), or null. */
export function cookieValue (header: string | undefined, name: string): string | null {
  if (header === undefined) return null
  let start = 0
  while (start < header.length) {
    let end = header.indexOf(';', start)
    if (end === -1) end = header.length
    const eq = header.indexOf('=', start)
    if (eq !== -1 && eq < end && header.slice(start, eq).trim() === name) {
      let v = header.slice(eq + 1, end).trim()
      if (v.length >= 2 && v.charCodeAt(0) === 34 && v.charCodeAt(v.length - 1) === 34) v = v.slice(1, -1)
      return v
    }
    start = end + 1
  }
  return null
}

/** A query parameter's first value, percent-decoded; null when absent or undecodable. */
export function queryValue (query: string, name: string): string | null {
  for (const part of query.split('&')) {
    const eq = part.indexOf('=')
    if (eq === -1 || part.slice(0, eq) !== name) continue
    try {
      return decodeURIComponent(part.slice(eq + 1).replace(/\+/g, ' '))
    } catch {
      return null
    }
  }
  return null
}

/**
 * A subscriber's token: `Authorization: Bearer`, else the `authCookie` cookie, else
 * `?access_token=` when tokenInQuery. A malformed Bearer header is not skipped over.
 */
export function extractSubscriberCredential (headers: IncomingHttpHeaders, query: string, authCookie: string, tokenInQuery: boolean): Credential | null | typeof MALFORMED {
  const bearer = extractBearer(headers)
  if (bearer !== null) return bearer
  const cookie = cookieValue(headers.cookie, authCookie)
  if (cookie !== null && cookie.length > 0) return { token: cookie, source: 'cookie' }
  if (tokenInQuery && query.length > 0) {
    const q = queryValue(query, 'access_token')
    if (q !== null && q.length > 0) return { token: q, source: 'query' }
  }
  return null
}

// ---- revocations ------------------------------------------------------------------------------

/**
 * Revoked token ids and subjects. A jti stays revoked until its token's exp plus the clock-skew
 * leeway (after which the token is refused as expired anyway, so the entry is dropped); one whose
 * exp was not given, for good: a token without exp, or with a later exp than a guess would give,
 * is never good again. A sub revoked at T refuses that subject's tokens issued up to T (iat ≤ T
 * plus the clock-skew leeway; a token without iat counts as issued at 0), for good: a token issued
 * before T may live any length.
 * Nothing in force is ever dropped to make room: past `max` entries in force a new revocation is
 * refused (room(): the revoke request gets 507), never made by un-revoking an older one. A
 * revocation told by another worker or node is recorded whatever the count (it was decided where
 * the list held the same). In-process only: a cluster has to broadcast revocations.
 */
export class Revocations {
  #jti = new Map<string, number>()
  #sub = new Map<string, number>()
  #max: number
  /**
   * Seconds of clock skew allowed (jwtLeeway): a sub revoked at T also refuses the tokens whose iat
   * is up to this much after T, since an issuer whose clock runs ahead stamps them so.
   */
  leeway = 0

  constructor (max = 100_000) {
    this.#max = max
  }

  get size (): number {
    return this.#jti.size + this.#sub.size
  }

  /** Most entries in force (maxRevocations). */
  get max (): number {
    return this.#max
  }

  /**
   * May a revocation of `value` be recorded without passing `max`? One already held may always be
   * recorded again; otherwise expired jti entries are dropped first, then it fits or not.
   */
  room (kind: 'sub' | 'jti', value: string, nowSec: number): boolean {
    if ((kind === 'sub' ? this.#sub : this.#jti).has(value)) return true
    if (this.size < this.#max) return true
    this.prune(nowSec)
    return this.size < this.#max
  }

  /** Revoke one token until `exp` (unix seconds; 0 = for good). */
  revokeJti (jti: string, exp: number): void {
    const prev = this.#jti.get(jti)
    this.#jti.set(jti, prev === undefined ? exp : laterUntil(prev, exp))
  }

  /** Revoke every token of `sub` issued up to `atSec` (its own second included). A later revocation of the same sub wins. */
  revokeSub (sub: string, atSec: number): void {
    const prev = this.#sub.get(sub)
    this.#sub.set(sub, prev !== undefined && prev > atSec ? prev : atSec)
  }

  isRevoked (grant: Pick<Grant, 'jti' | 'sub' | 'iat'>, nowSec = Math.floor(Date.now() / 1000)): boolean {
    if (grant.jti !== null) {
      const exp = this.#jti.get(grant.jti)
      if (exp !== undefined) {
        if (this.#holds(exp, nowSec)) return true
        this.#jti.delete(grant.jti)
      }
    }
    if (grant.sub !== null) {
      const at = this.#sub.get(grant.sub)
      if (at !== undefined && this.issuedBy(grant.iat, at)) return true
    }
    return false
  }

  /**
   * Is a token with this iat one that a revocation of its sub at `at` covers? iat has whole seconds:
   * a token of the revocation's own second may predate it, so it goes too, and so does one stamped
   * up to `leeway` seconds later by an issuer whose clock runs ahead of this server's.
   */
  issuedBy (iat: number, at: number): boolean {
    return iat <= at + this.leeway
  }

  /**
   * The revocations in force at `nowSec`, as [kind, value, at] (a jti's `at` is its token's exp, 0
   * for none; a sub's the second of its revocation): what a store that lost its copy is given again.
   */
  * inForce (nowSec: number): Generator<['jti' | 'sub', string, number]> {
    for (const [jti, exp] of this.#jti) if (this.#holds(exp, nowSec)) yield ['jti', jti, exp]
    for (const [sub, at] of this.#sub) yield ['sub', sub, at]
  }

  /**
   * A jti revoked until `exp` is still held at `nowSec`: its token is accepted until exp plus the
   * clock-skew leeway (jwtLeeway), so it is refused as long.
   */
  #holds (exp: number, nowSec: number): boolean {
    return exp === 0 || exp + this.leeway > nowSec
  }

  /** What is held for `value`: a jti's exp (0: for good), a sub's second; undefined if none. */
  held (kind: 'sub' | 'jti', value: string): number | undefined {
    return (kind === 'sub' ? this.#sub : this.#jti).get(value)
  }

  /** Forget jti entries whose token has expired (its leeway past); returns how many went. */
  prune (nowSec: number): number {
    let n = 0
    for (const [jti, exp] of this.#jti) {
      if (!this.#holds(exp, nowSec)) {
        this.#jti.delete(jti)
        n++
      }
    }
    return n
  }
}

// ---- refusals ---------------------------------------------------------------------------------

function unauthorized (): Refusal {
  // RFC 6750 §3.1: a request with no credential gets the bare challenge, no error code.
  return { status: 401, code: AUTH_CODES.UNAUTHORIZED, wwwAuthenticate: 'Bearer', body: 'Unauthorized: a bearer token is required' }
}

function invalidToken (reason: string): Refusal {
  return {
    status: 401,
    code: AUTH_CODES.INVALID_TOKEN,
    wwwAuthenticate: `Bearer error="invalid_token", error_description="${reason}"`,
    body: `Unauthorized: ${reason}`
  }
}

/** A token revoked (POST revokePath), found at its check or while its admission waited (lib/access.ts revoked). */
export function tokenRevoked (): Refusal {
  return invalidToken('token revoked')
}

function malformedHeader (): Refusal {
  return {
    status: 400,
    code: AUTH_CODES.INVALID_REQUEST,
    wwwAuthenticate: 'Bearer error="invalid_request", error_description="malformed Authorization header"',
    body: 'Bad Request: malformed Authorization header'
  }
}

function insufficientScope (what: string): Refusal {
  return { status: 403, code: AUTH_CODES.INSUFFICIENT_SCOPE, wwwAuthenticate: 'Bearer error="insufficient_scope"', body: `Forbidden: ${what}` }
}

function unavailable (what: string, retryAfter: number): Refusal {
  return { status: 503, code: AUTH_CODES.AUTH_UNAVAILABLE, retryAfter, body: `Service Unavailable: ${what}` }
}

/** Channel ids are raw bytes: shown as text, JSON-quoted so a control character stays out of the body line. */
function quote (channel: string): string {
  return JSON.stringify(idText(channel))
}

// ---- the decision API -------------------------------------------------------------------------

function grant (kind: GrantKind, subscribe: string[] | '*', publish: string[] | '*', admin: boolean): Grant {
  return { kind, sub: null, jti: null, exp: 0, iat: 0, subscribe, publish, admin }
}

/** An API key's grant, with the key's digest (Auth.keyHeld). */
function keyGrant (digest: Buffer): Grant {
  const g = grant('apikey', '*', '*', true)
  g.key = digest
  return g
}

function stringList (v: unknown): string[] | null {
  if (v === undefined) return []
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) return null
  return v as string[]
}

/** The Grant of a verified JWT, or null when its `parkline` claim has the wrong shape. */
export function grantFromClaims (p: JWTPayload): Grant | null {
  const pl = p.parkline
  let subscribe: string[] | '*' = []
  let publish: string[] | '*' = []
  let admin = false
  if (pl !== undefined) {
    if (typeof pl !== 'object' || pl === null || Array.isArray(pl)) return null
    const c = pl as Record<string, unknown>
    const s = stringList(c.subscribe)
    const u = stringList(c.publish)
    if (s === null || u === null || (c.admin !== undefined && typeof c.admin !== 'boolean')) return null
    subscribe = s.map(patternBytes)
    publish = u.map(patternBytes)
    admin = c.admin === true
    if (admin) subscribe = publish = '*'
  }
  // a sub or jti that is not a string could never be revoked: refuse the token instead
  if ((p.sub !== undefined && typeof p.sub !== 'string') || (p.jti !== undefined && typeof p.jti !== 'string')) return null
  return {
    kind: 'jwt',
    sub: typeof p.sub === 'string' ? p.sub : null,
    jti: typeof p.jti === 'string' ? p.jti : null,
    exp: typeof p.exp === 'number' ? p.exp : 0,
    iat: typeof p.iat === 'number' ? p.iat : 0,
    subscribe,
    publish,
    admin
  }
}

export class Auth {
  /** Replaced whole by replaceCredentials (never changed in place). */
  options: AuthOptions
  readonly revocations: Revocations
  readonly stats: AuthStats
  /** Warnings from validateAuthOptions, for the caller to log once. */
  readonly warnings: string[]
  #now: () => number
  #configured: boolean
  #apiKeys: Buffer[]
  #jwt: JwtVerifier | null
  #authorize: AuthorizeClient | null
  #agent: Agent | null
  #timeoutMs: number
  #refusalBodyCap: number
  #upstreamMaxBody: number
  #lastPrune = 0
  /** anonymousSubscribe, each pattern in byte form (patternBytes). */
  readonly #anonymous: string[]
  /**
   * Tokens verified lately (by SHA-256, so no bearer token is a key in memory), up to a minute and
   * never past exp: a publisher or a long-poll loop re-sending one token skips the signature check
   * (measured: benchmarks/results/auth-*.md). Revocation is still checked on every use.
   */
  readonly #verified = new LRUCache<string, Grant>({ max: 10_000 })
  #leeway = 0
  /** Counts replaceCredentials: a verification begun under the old keys is not cached. */
  #generation = 0

  constructor (options: AuthOptions, tuning: AuthTuning = {}) {
    this.warnings = validateAuthOptions(options)
    this.options = options
    this.stats = newStats()
    this.revocations = new Revocations(tuning.maxRevocations)
    this.#now = tuning.now ?? Date.now
    this.#configured = authConfigured(options)
    this.#anonymous = options.anonymousSubscribe.map(patternBytes)
    // Keys are compared as SHA-256 digests: equal lengths for timingSafeEqual, and the time taken
    // says nothing about a key's length or how much of it matched.
    this.#apiKeys = options.apiKey.filter((k) => k.length > 0).map(sha256)
    this.#timeoutMs = Math.round(options.authorizeTimeout * 1000)
    this.#refusalBodyCap = tuning.refusalBodyCap ?? 4096
    this.#upstreamMaxBody = tuning.upstreamMaxBody ?? 1048576
    const needsHttp = options.jwksUrl.length > 0 || options.authorizeUrl.length > 0 || options.publishUpstreamUrl.length > 0
    // One keep-alive Agent for the three upstreams (it keeps a pool per origin).
    this.#agent = needsHttp ? new Agent({ keepAliveTimeout: 30_000, connections: tuning.connections ?? 128 }) : null
    const jwks = options.jwksUrl.length > 0
      ? new JwksCache({
        url: options.jwksUrl,
        dispatcher: this.#agent!,
        now: this.#now,
        cooldownMs: tuning.jwksCooldownMs ?? 10_000,
        maxAgeMs: tuning.jwksMaxAgeMs ?? 600_000,
        timeoutMs: this.#timeoutMs,
        stats: this.stats,
        trouble: tuning.trouble
      })
      : null
    // fetched at start: a JWKS that cannot be had is logged now, not at the first token
    if (jwks !== null && tuning.trouble !== undefined) jwks.prefetch()
    this.#jwks = jwks
    this.#leeway = options.jwtLeeway
    this.revocations.leeway = options.jwtLeeway
    this.#jwt = this.#verifier(options)
    this.#authorize = options.authorizeUrl.length > 0
      ? new AuthorizeClient({
        url: options.authorizeUrl,
        dispatcher: this.#agent!,
        timeoutMs: this.#timeoutMs,
        cacheTtlMs: Math.round(options.authorizeCacheTtl * 1000),
        cacheMax: tuning.authorizeCacheMax ?? 10_000,
        bodyCap: this.#refusalBodyCap,
        stats: this.stats,
        trouble: tuning.trouble
      })
      : null
    this.#trouble = tuning.trouble
  }

  readonly #trouble: AuthTrouble | undefined
  readonly #jwks: JwksCache | null

  #verifier (o: AuthOptions): JwtVerifier | null {
    return jwtConfigured(o)
      ? new JwtVerifier({
        jwtSecret: o.jwtSecret,
        jwtPreviousSecret: o.jwtPreviousSecret,
        jwtPublicKey: o.jwtPublicKey,
        jwtIssuer: o.jwtIssuer,
        jwtAudience: o.jwtAudience,
        jwtLeeway: o.jwtLeeway,
        jwtMaxLifetime: o.jwtMaxLifetime,
        jwks: this.#jwks,
        now: this.#now
      })
      : null
  }

  /**
   * New credentials in place of the running ones (a SIGHUP, `app.parkline.reloadCredentials`):
   * the API keys, the JWT secret and public key, issuer, audience, leeway and max lifetime
   * (CREDENTIALS). What decides which checks run stays as started (checkCredentialReload refuses
   * the rest). From the next request on only the new ones admit: the tokens verified under the old
   * keys are forgotten, so each is verified again. Open subscriptions are not checked again (their
   * token's exp and a revocation end them). Returns the names that changed.
   */
  replaceCredentials (next: AuthOptions): string[] {
    checkCredentialKinds(this.options, next)
    validateAuthOptions(next)
    const changed = CREDENTIALS.filter((k) => JSON.stringify(next[k]) !== JSON.stringify(this.options[k]))
    if (changed.length === 0) return []
    // built first: one that throws leaves the running credentials as they were
    const jwt = this.#verifier(next)
    this.options = next
    this.#apiKeys = next.apiKey.filter((k) => k.length > 0).map(sha256)
    this.#jwt = jwt
    this.#leeway = next.jwtLeeway
    this.revocations.leeway = next.jwtLeeway
    this.#generation++
    this.#verified.clear()
    return changed
  }

  /** The JWKS's state (JwksCache.up); null without jwksUrl. */
  get jwksUp (): boolean | null {
    return this.#jwks === null ? null : this.#jwks.up
  }

  /** Admit a subscription: every channel in ctx.channels must be granted. */
  async subscriber (ctx: SubscriberContext): Promise<AuthResult> {
    if (!this.#configured) return grant('open', '*', [], false)
    const o = this.options
    const cred = extractSubscriberCredential(ctx.headers, ctx.query, o.authCookie, o.tokenInQuery)
    if (cred === MALFORMED) return this.#refuse(malformedHeader())
    // The operator key (header only) is the master key: no scope check, no authorize request.
    if (cred !== null && cred.source === 'header' && this.#apiKeys.length > 0) {
      const d = sha256(cred.token)
      if (this.#holdsKey(d)) return keyGrant(d)
    }
    const anonymous = firstUncovered(ctx.channels, this.#anonymous, NONE) === null
    let g: Grant | null = null
    if (this.#jwt !== null) {
      if (cred === null) return anonymous ? grant('anonymous', this.#anonymous, [], false) : this.#refuse(unauthorized())
      const r = await this.#verifyJwt(cred.token)
      if (isRefusal(r)) return this.#refuse(r)
      // A token adds to the anonymous channels; it never takes them away.
      const refused = firstUncovered(ctx.channels, r.subscribe, this.#anonymous)
      if (refused !== null) return this.#refuse(insufficientScope(`token does not grant subscribe on channel ${quote(refused)}`))
      g = r
    } else if (this.#authorize === null) {
      // API keys only: subscribers need the key unless the channels are anonymous.
      if (cred !== null) return this.#refuse(invalidToken('unknown credential'))
      return anonymous ? grant('anonymous', this.#anonymous, [], false) : this.#refuse(unauthorized())
    }
    if (anonymous && g === null) return grant('anonymous', this.#anonymous, [], false)
    if (this.#authorize !== null && !anonymous) {
      const d = await this.#authorize.decide({
        headers: ctx.headers,
        channelId: ctx.rawChannels ?? ctx.channels.join(','),
        uri: ctx.uri,
        method: ctx.method,
        subscriberType: ctx.transport,
        remoteAddress: ctx.remoteAddress
      })
      const refusal = this.#decisionRefusal(d)
      if (refusal !== null) return this.#refuse(refusal)
      if (g === null) g = grant('authorize', ctx.channels.slice(), [], false)
    }
    return g!
  }

  /** Admit a publisher request (POST/PUT publish, DELETE, GET info) on one channel. */
  async publisher (ctx: PublisherContext): Promise<AuthResult> {
    const authorizePublish = this.#authorize !== null && this.options.authorizePublish
    let g: Grant
    if (this.#apiKeys.length === 0 && this.#jwt === null) {
      if (authorizePublish) {
        // The authorize request is the publisher's credential: loopback does not bypass it.
        g = grant('authorize', [], [ctx.channel], false)
      } else if (this.options.publisherOpen) {
        return grant('open', [], '*', false)
      } else if (ctx.local ?? isLoopback(ctx.remoteAddress)) {
        return grant('loopback', [], '*', false)
      } else {
        return this.#refuse({
          status: 403,
          code: AUTH_CODES.PUBLISHER_LOOPBACK_ONLY,
          body: 'Forbidden: publisher is loopback-only; set apiKey, a JWT key, or publisherOpen'
        })
      }
    } else {
      const r = await this.#headerGrant(ctx.headers)
      if (isRefusal(r)) return r
      if (!matchesAny(r.publish, ctx.channel)) return this.#refuse(insufficientScope(`token does not grant publish on channel ${quote(ctx.channel)}`))
      g = r
    }
    // the operator key is the master key, as for subscribers: no authorize request (docs/api.md 16.4)
    if (authorizePublish && g.kind !== 'apikey') {
      const d = await this.#authorize!.decide({
        headers: ctx.headers,
        // `%` always encoded on the publisher (one id, `,` an ordinary byte): the value decodes
        // back to the id's bytes, whatever they hold (docs/api.md 16.4)
        channelId: percentEncodeUnsafe(ctx.channel),
        uri: ctx.uri,
        method: ctx.method,
        subscriberType: null,
        remoteAddress: ctx.remoteAddress
      })
      const refusal = this.#decisionRefusal(d)
      if (refusal !== null) return this.#refuse(refusal)
    }
    return g
  }

  /**
   * The grant of an `Authorization: Bearer` credential (API key or JWT), refusals already counted.
   * Header only: a cookie or query token never authorizes a publish, delete or revoke.
   */
  async #headerGrant (headers: IncomingHttpHeaders): Promise<AuthResult> {
    const cred = extractBearer(headers)
    if (cred === MALFORMED) return this.#refuse(malformedHeader())
    if (cred === null) return this.#refuse(unauthorized())
    if (this.#apiKeys.length > 0) {
      const d = sha256(cred.token)
      if (this.#holdsKey(d)) return keyGrant(d)
    }
    // a credential that is no JWT (three dot-separated parts) where API keys are taken too: a key
    // that is not one of them, not a "malformed token"
    if (this.#jwt === null || (this.#apiKeys.length > 0 && !JWT_SHAPE.test(cred.token))) return this.#refuse(invalidToken('unknown credential'))
    const r = await this.#verifyJwt(cred.token)
    return isRefusal(r) ? this.#refuse(r) : r
  }

  /** Admit a call to the revoke endpoint: the API key or a JWT with `parkline.admin: true`, header only. */
  async admin (ctx: AdminContext): Promise<AuthResult> {
    if (this.#apiKeys.length === 0 && this.#jwt === null) {
      return this.#refuse({ status: 403, code: AUTH_CODES.ADMIN_DISABLED, body: 'Forbidden: revocation needs apiKey or a JWT key' })
    }
    const r = await this.#headerGrant(ctx.headers)
    if (isRefusal(r)) return r
    if (!r.admin) return this.#refuse(insufficientScope('token is not an admin token'))
    return r
  }

  /** Nchan's publisher upstream request; call only when options.publishUpstreamUrl is set. */
  async upstreamPublish (ctx: UpstreamPublishContext): Promise<UpstreamPublishResult> {
    if (this.#agent === null || this.options.publishUpstreamUrl.length === 0) throw new Error('publishUpstreamUrl is not set')
    // The operator key stays here: the application gets the publisher's other headers (a JWT,
    // cookies), never the master key of every channel.
    const cred = extractBearer(ctx.headers)
    if (cred !== null && cred !== MALFORMED && this.#isApiKey(cred.token)) {
      const { authorization: _, ...rest } = ctx.headers
      ctx = { ...ctx, headers: rest }
    }
    return await upstreamPublish({
      url: this.options.publishUpstreamUrl,
      dispatcher: this.#agent,
      timeoutMs: this.#timeoutMs,
      maxBody: this.#upstreamMaxBody,
      bodyCap: this.#refusalBodyCap,
      stats: this.stats,
      trouble: this.#trouble
    }, ctx)
  }

  /** Close the upstream connections. Calls in flight finish (each is bounded by authorizeTimeout). */
  async close (): Promise<void> {
    this.#jwks?.close()
    // once (a second close would be undici's ClientDestroyedError)
    const agent = this.#agent
    this.#agent = null
    if (agent !== null) await agent.close()
  }

  #isApiKey (token: string): boolean {
    return this.#holdsKey(sha256(token))
  }

  #holdsKey (d: Buffer): boolean {
    if (this.#apiKeys.length === 0) return false
    let ok = false
    // Every key is compared, match or not, so the time does not tell which one matched.
    for (const k of this.#apiKeys) if (timingSafeEqual(d, k)) ok = true
    return ok
  }

  /** False for an API key's grant whose key was taken out since (replaceCredentials). */
  keyHeld (g: Grant): boolean {
    return g.key === undefined || this.#holdsKey(g.key)
  }

  async #verifyJwt (token: string): Promise<Grant | Refusal> {
    const nowSec = Math.floor(this.#now() / 1000)
    const key = createHash('sha256').update(token).digest('base64')
    let g = this.#verified.get(key) ?? null
    if (g !== null && g.exp > 0 && g.exp + this.#leeway <= nowSec) {
      this.#verified.delete(key)
      g = null
    }
    if (g === null) {
      let generation: number
      let out: Awaited<ReturnType<JwtVerifier['verify']>>
      // verified again when the keys were replaced meanwhile (replaceCredentials): from then on
      // only the new ones admit (a third replacement within one verification: refused)
      let tries = 0
      do {
        if (++tries > 2) return unavailable('signing keys changed', 1)
        generation = this.#generation
        out = await this.#jwt!.verify(token)
      } while (generation !== this.#generation)
      if (!out.ok) return out.unavailable ? unavailable(out.reason, 5) : invalidToken(out.reason)
      g = grantFromClaims(out.payload)
      if (g === null) return invalidToken('bad parkline claim')
      const left = g.exp > 0 ? (g.exp + this.#leeway - nowSec) * 1000 : 60_000
      if (left > 0) this.#verified.set(key, g, { ttl: Math.min(60_000, left) })
    }
    // Prune on the way (at most once a minute) instead of running a timer.
    if (nowSec - this.#lastPrune >= 60) {
      this.#lastPrune = nowSec
      this.revocations.prune(nowSec)
    }
    if (this.revocations.isRevoked(g, nowSec)) return tokenRevoked()
    return g
  }

  /** A grant this process admitted whose token has been revoked since: the refusal (counted), or null. */
  revokedSince (grant: Grant): Refusal | null {
    return this.revocations.isRevoked(grant, Math.floor(this.#now() / 1000)) ? this.#refuse(tokenRevoked()) : null
  }

  #decisionRefusal (d: AuthorizeDecision): Refusal | null {
    if (d.unavailable) return unavailable('authorization server did not answer', Math.max(1, Math.ceil(this.#timeoutMs / 1000)))
    if (d.status >= 200 && d.status < 300) return null
    const r: Refusal = { status: d.status, code: AUTH_CODES.AUTHORIZE_REFUSED, body: d.body }
    // Copy: a cached decision is shared by every request it answers.
    if (Object.keys(d.headers).length > 0) r.headers = { ...d.headers }
    return r
  }

  #refuse (r: Refusal): Refusal {
    const key = String(r.status)
    this.stats.refusals[key] = (this.stats.refusals[key] ?? 0) + 1
    return r
  }
}

function sha256 (s: string): Buffer {
  return createHash('sha256').update(s).digest()
}
