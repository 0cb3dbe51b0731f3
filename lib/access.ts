// Access control at the HTTP edge: who may subscribe, publish and revoke. The decisions are
// lib/auth.ts's (JWT, API keys, Nchan's authorize request); this file hands them the request and
// writes refusals out (RFC 6750, CORS so a browser can read them). With nothing configured it
// loads none of that: subscribers are open and the publisher answers loopback clients only
// (`publisherOpen: true` restores Nchan's open publisher).
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyRequest } from 'fastify'
import type { Auth, AuthOptions, Grant, Refusal, SubscriberTransport, UpstreamPublishResult } from './auth.ts'
import { CREDENTIALS, OPTIONS, withoutCredentials, type Credentials, type ParklineOptions } from './config.ts'
import { oncePer } from './stats.ts'
import { ConfigError, ERRORS } from './errors.ts'
import { isLoopback, localClient, percentEncodeUnsafe, percentEncoded, proxied } from './http.ts'
import { withCors, type Reply } from './reply.ts'
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'

/** What the publisher and subscriber read of a request: Fastify's has it, and so has the fast path's. */
export interface RequestLike {
  headers: IncomingHttpHeaders
  method: string
  /** The request target as received. */
  originalUrl: string
  socket: Socket
  raw: IncomingMessage
}

/**
 * A publisher-location request: Node's or Fastify's (`raw`), or one read whole off a raw publisher
 * connection (lib/raw-publish.ts), which has its body at hand and no IncomingMessage.
 */
export interface PublishRequestLike extends Omit<RequestLike, 'raw'> {
  raw: IncomingMessage | null
  /** The whole body, when it was read before the request was handed over. */
  wholeBody?: Buffer
}

export type { Grant, Refusal }

/**
 * A WebSocket publisher's handshake as the POST each of its messages stands for (what access
 * control, an authorize request and the publisher upstream are asked about), with `headers`.
 */
export function asPost (request: PublishRequestLike, headers = request.headers): PublishRequestLike {
  return { headers, method: 'POST', originalUrl: request.originalUrl, socket: request.socket, raw: request.raw }
}

/** Refusals counted for /metrics, by status. */
export type RefusalCounts = Record<string, number>

/**
 * With no credential configured (so lib/auth.ts, which checks these, is not loaded): the access
 * options set that change nothing then. Each means its operator expects access to be checked, so
 * the start refuses them (Access.create) rather than serve every channel to anyone.
 */
export function inertOptions (o: ParklineOptions): string[] {
  const w: string[] = []
  if (o.authorizePublish) w.push('authorizePublish has no effect without authorizeUrl')
  if (o.jwtIssuer !== '' || o.jwtAudience !== '') w.push('jwtIssuer/jwtAudience have no effect without a JWT key')
  if (o.tokenInQuery) w.push('tokenInQuery has no effect without a JWT key (jwtSecret, jwtPublicKey, jwksUrl)')
  if (o.jwtLeeway !== 0) w.push('jwtLeeway has no effect without a JWT key (jwtSecret, jwtPublicKey, jwksUrl)')
  if (o.jwtMaxLifetime !== 0) w.push('jwtMaxLifetime has no effect without a JWT key (jwtSecret, jwtPublicKey, jwksUrl)')
  if (o.jwtPreviousSecret !== '') w.push('jwtPreviousSecret has no effect without jwtSecret')
  if (o.anonymousSubscribe.length > 0) w.push('anonymousSubscribe has no effect with no credential configured: every subscriber is admitted, on every channel')
  return w
}

/** Options that restrict access, set where nothing checks it: refused, not left to look in force. */
function refuseInert (inert: string[]): void {
  if (inert.length > 0) throw new ConfigError(`${inert.join('; ')}: with no credential configured (apiKey, jwtSecret, jwtPublicKey, jwksUrl, authorizeUrl) every channel is open to anyone; configure one, or leave these out`)
}

/**
 * Who is let in with no check: subscribers with neither a credential (apiKey, a JWT key) nor
 * authorizeUrl; the publisher with publisherOpen and neither a credential nor authorizePublish.
 * publishUpstreamUrl admits no one. For the start's warning (lib/cli.ts) and checksSubscribers.
 */
export function openAccess (opts: ParklineOptions): { subscribers: boolean, publishers: boolean } {
  const credential = credentialConfigured(opts)
  return {
    subscribers: !credential && opts.authorizeUrl === '',
    publishers: !credential && opts.publisherOpen && !(opts.authorizeUrl !== '' && opts.authorizePublish)
  }
}

/** How often one kind of upstream failure (JWKS, authorize, publisher upstream) is logged while it lasts. */
const TROUBLE_LOG_MS = 60_000

/** A URL for a log line: without a user:password@ it may carry. */
function redactUrl (url: string): string {
  try {
    const u = new URL(withoutCredentials(url))
    // a key or token in the query stays out of the log too
    if (u.search !== '') u.search = '?redacted'
    u.hash = ''
    return u.toString()
  } catch { return url }
}

const LOOPBACK_ONLY: Refusal = { status: 403, code: ERRORS.PUBLISHER_LOOPBACK_ONLY.code, body: ERRORS.PUBLISHER_LOOPBACK_ONLY.message }
const PROXIED: Refusal = { status: 403, code: ERRORS.PUBLISHER_PROXIED.code, body: ERRORS.PUBLISHER_PROXIED.message }
const ADMIN_DISABLED: Refusal = { status: 403, code: ERRORS.ADMIN_DISABLED.code, body: ERRORS.ADMIN_DISABLED.message }
// a subscriber of another site whose only credential was a cookie (ambientCredentials)
const CROSS_SITE_COOKIE: Refusal = {
  status: 401,
  code: ERRORS.UNAUTHORIZED.code,
  wwwAuthenticate: 'Bearer',
  body: 'Unauthorized: cookies are not used on a request from another site; list its origin in corsOrigins'
}

/**
 * What a request of another site is judged by (ambientCredentials): its headers without what the
 * browser attaches on its own, the Cookie and an `Authorization` that is not a bearer token (HTTP
 * Basic or Digest credentials the browser keeps for the server).
 */
function withoutAmbient (headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const { cookie: _cookie, authorization, ...rest } = headers
  return authorization !== undefined && /^bearer /i.test(authorization) ? { ...rest, authorization } : rest
}

/** An API key or a JWT key is configured: then every publisher request needs a credential. */
export function credentialConfigured (o: Pick<ParklineOptions, 'apiKey' | 'jwtSecret' | 'jwtPublicKey' | 'jwksUrl'>): boolean {
  return o.apiKey.some((k) => k.length > 0) || o.jwtSecret !== '' || o.jwtPublicKey !== '' || o.jwksUrl !== ''
}

/** Any credential mechanism, or the publisher upstream, is configured: lib/auth.ts is loaded. */
export function accessConfigured (o: ParklineOptions): boolean {
  return credentialConfigured(o) || o.authorizeUrl !== '' || o.publishUpstreamUrl !== ''
}

/**
 * A jwtPublicKey value that is no PEM text looks like a file path: a name with an extension, or in
 * a directory that exists. Only such a value is quoted in a message; another may be a key's body
 * pasted without its PEM lines, a private JWK, a secret.
 */
function pathLike (value: string): boolean {
  const dir = path.dirname(value)
  return value.length <= 1024 && !/[\s\x00-\x1f]/.test(value) && (/\.[A-Za-z0-9]{1,8}$/.test(value) || (dir !== '.' && existsSync(dir)))
}

/** jwtPublicKey's PEM text: the value itself, or the file it names (read now). */
export function publicKeyText (value: string): string {
  // a path instead of the PEM text (handier in an environment variable or on the command line)
  if (value === '' || value.includes('-----BEGIN')) return value
  let text: string
  try {
    text = readFileSync(value, 'utf8')
  } catch (err) {
    // (the error's code alone: its message repeats the value)
    const code = (err as NodeJS.ErrnoException).code ?? 'error'
    const missing = code === 'ENOENT' || code === 'ENOTDIR' || code === 'ENAMETOOLONG'
    if (!pathLike(value)) throw new ConfigError(`jwtPublicKey: not a PEM key (no -----BEGIN line), nor a file to read (${code}); the value is not shown, as it may be a secret`)
    throw new ConfigError(missing
      ? `jwtPublicKey: not a PEM key, and no file ${JSON.stringify(value)} to read (${code})`
      : `jwtPublicKey: the file ${JSON.stringify(value)} cannot be read (${code})`)
  }
  // (what it holds is not said: the option may name the wrong file, a secret's)
  if (!text.includes('-----BEGIN')) throw new ConfigError(`jwtPublicKey: the file ${JSON.stringify(value)} holds no PEM key`)
  return text
}

function authOptions (o: ParklineOptions): AuthOptions {
  const pem = publicKeyText(o.jwtPublicKey)
  return {
    apiKey: o.apiKey.filter((k) => k.length > 0),
    jwtSecret: o.jwtSecret,
    jwtPreviousSecret: o.jwtPreviousSecret,
    jwtPublicKey: pem,
    jwksUrl: o.jwksUrl,
    jwtIssuer: o.jwtIssuer,
    jwtAudience: o.jwtAudience,
    jwtLeeway: o.jwtLeeway,
    jwtMaxLifetime: o.jwtMaxLifetime,
    authCookie: o.authCookie,
    tokenInQuery: o.tokenInQuery,
    anonymousSubscribe: o.anonymousSubscribe,
    authorizeUrl: o.authorizeUrl,
    authorizePublish: o.authorizePublish,
    authorizeTimeout: o.authorizeTimeout,
    authorizeCacheTtl: o.authorizeCacheTtl,
    publishUpstreamUrl: o.publishUpstreamUrl,
    publisherOpen: o.publisherOpen
  }
}

/** Options whose values differ between two resolutions (JSON-compared). */
function differing (a: ParklineOptions, b: ParklineOptions, names: readonly string[]): string[] {
  const ra = a as unknown as Record<string, unknown>
  const rb = b as unknown as Record<string, unknown>
  return names.filter((k) => JSON.stringify(ra[k]) !== JSON.stringify(rb[k]))
}

/**
 * A configuration read again (SIGHUP) against the running one: throws ConfigError where the
 * running server cannot take its credentials (CREDENTIALS: bad values, API keys or a JWT key
 * turned on or off, access control where none was configured at start), so that nothing is
 * applied; otherwise returns the other options that differ, which take effect at a restart.
 */
export async function checkReload (current: ParklineOptions, next: ParklineOptions): Promise<string[]> {
  const others = differing(current, next, OPTIONS.map((o) => o.name).filter((k) => !(CREDENTIALS as readonly string[]).includes(k)))
  const merged = { ...current, ...pickCredentials(next) }
  if (!accessConfigured(current)) {
    if (credentialConfigured(merged)) throw new ConfigError('no access control was configured at start: turning it on takes a restart')
    // refused at start too (jwtIssuer, jwtPreviousSecret… with no key): not taken in silence, nor
    // handed to a worker forked again later, which would refuse to start with it
    const inert = inertOptions(merged)
    if (inert.length > 0) throw new ConfigError(`${inert.join('; ')}: no access control was configured at start`)
    return others
  }
  const { checkCredentialKinds, validateAuthOptions } = await import('./auth.ts')
  checkCredentialKinds(current, merged)
  validateAuthOptions(authOptions(merged))
  return others
}

/** The credentials of `o`, alone. */
export function pickCredentials (o: Credentials): Credentials {
  const out: Record<string, unknown> = {}
  for (const k of CREDENTIALS) out[k] = o[k]
  return out as unknown as Credentials
}

export class Access {
  /** The decisions, when anything is configured (null: open subscribers, loopback publisher). */
  readonly auth: Auth | null
  readonly #publisherOpen: boolean
  readonly #delimiter: string
  readonly #corsOrigins: readonly string[]
  readonly #trustedProxies: readonly string[]
  /** An API key or a JWT key is configured (credentialConfigured). */
  readonly #credential: boolean
  readonly #checksSubscribers: boolean
  /** What the start should say about the access options (Auth's own warnings, or inertOptions'). */
  warnings: readonly string[] = []
  /** Refusals written by this process, by status (the secure default's included). */
  readonly refusals: RefusalCounts = {}

  /** The running options (the Core's): a reload writes the new credentials into them. */
  readonly #opts: ParklineOptions

  private constructor (auth: Auth | null, o: ParklineOptions) {
    this.auth = auth
    this.#opts = o
    this.#publisherOpen = o.publisherOpen
    this.#delimiter = o.multiplexDelimiter
    this.#corsOrigins = o.corsOrigins
    this.#trustedProxies = o.trustedProxies
    this.#credential = credentialConfigured(o)
    this.#checksSubscribers = !openAccess(o).subscribers
  }

  /**
   * Built once per plugin; loads jose and undici only when something is configured. A failure of
   * the JWKS, authorize or publisher upstream is logged (`log`), one line per kind each
   * TROUBLE_LOG_MS while it lasts, naming the URL and the error; the requests it fails get 503.
   */
  static async create (o: ParklineOptions, log: { warn: (obj: object, msg: string) => void }): Promise<Access> {
    if (!accessConfigured(o)) {
      refuseInert(inertOptions(o))
      return new Access(null, o)
    }
    const { Auth } = await import('./auth.ts')
    const urls = { jwks: o.jwksUrl, authorize: o.authorizeUrl, upstream: o.publishUpstreamUrl }
    const names = { jwks: 'jwksUrl', authorize: 'authorizeUrl', upstream: 'publishUpstreamUrl' }
    const due = oncePer(TROUBLE_LOG_MS)
    const trouble = (what: 'jwks' | 'authorize' | 'upstream', why: string): void => {
      if (!due(what)) return
      log.warn({ parkline: 'auth', option: names[what], url: redactUrl(urls[what]), error: why },
        `${names[what]} failed: ${why}; ${what === 'jwks' ? 'tokens it would verify are refused (503 while no key was ever had)' : 'the requests that need it answer 503'} until it answers (this line at most once a minute)`)
    }
    const a = new Access(new Auth(authOptions(o), { upstreamMaxBody: o.maxMessageSize, trouble, maxRevocations: o.maxRevocations }), o)
    // publishUpstreamUrl alone loads Auth with no credential: the inert options are refused too
    if (!credentialConfigured(o) && o.authorizeUrl === '') refuseInert(inertOptions(o))
    a.warnings = a.auth!.warnings
    return a
  }

  /**
   * `next`'s credentials in place of the running ones (checkReload passed): requests from now on
   * are judged by them. Returns the names that changed (a public key file's new contents count).
   */
  reload (next: Credentials): string[] {
    if (this.auth === null) return []
    const merged = { ...this.#opts, ...pickCredentials(next) }
    const changed = this.auth.replaceCredentials(authOptions(merged))
    Object.assign(this.#opts, pickCredentials(next))
    // the connections an API key taken out had opened end (a WebSocket publisher at its next message)
    if (changed.includes('apiKey')) this.onKeysChanged?.()
    return changed
  }

  /** Set by the plugin: ends the subscribers whose API key was taken out (Core.endWithdrawn). */
  onKeysChanged: (() => void) | null = null

  /** The grant's credential is still configured (false for an API key taken out since). */
  granted (g: Grant): boolean {
    return this.auth === null || this.auth.keyHeld(g)
  }

  /** Tokens carry an exp the shared timer must honour. */
  get checksTokens (): boolean {
    const o = this.auth?.options
    return o !== undefined && (o.jwtSecret !== '' || o.jwtPublicKey !== '' || o.jwksUrl !== '')
  }

  /** Subscribers are checked: a credential is configured, or authorizeUrl (openAccess). */
  get checksSubscribers (): boolean {
    return this.#checksSubscribers
  }

  async subscriber (request: RequestLike, transport: string, keys: string[], query: string): Promise<Grant | Refusal | null> {
    if (this.auth === null) return null
    // a page of another site gets no use of the user's cookies (ambientCredentials)
    const otherSite = !ambientCredentials(request.headers, this.#corsOrigins)
    // the ids are byte strings (latin1): matched as bytes (lib/auth.ts patternBytes), and sent to
    // an authorize endpoint as their bytes, as Nchan sends $nchan_channel_id
    const r = await this.auth.subscriber({
      headers: otherSite ? withoutAmbient(request.headers) : request.headers,
      query,
      channels: keys,
      // the ids the subscription uses (decoded), each with `%` and the delimiter escaped, so the
      // application sees exactly the channels it admits
      rawChannels: keys.map((c) => escapeId(c, this.#delimiter)).join(this.#delimiter),
      transport: transport as SubscriberTransport,
      uri: request.originalUrl,
      method: request.method,
      remoteAddress: request.socket.remoteAddress
    })
    // Parkline's own "no credential" answer says why a cookie would not count (whether one was
    // sent or not: the answer, readable by the page, must not tell it whether the user has one)
    if (otherSite && isRefusal(r) && r.code === ERRORS.UNAUTHORIZED.code) return this.#count(CROSS_SITE_COOKIE)
    return this.#count(r)
  }

  /**
   * A subscriber's grant whose token was revoked after its check, while its admission waited (an
   * authorize request, its turn on a pipelined connection): the refusal, counted; otherwise null.
   * A revocation ends the subscribers it finds registered (Core.revokeLocal); this covers the one
   * still on its way there.
   */
  revoked (grant: Grant | null): Refusal | null {
    const r = grant === null || this.auth === null ? null : this.auth.revokedSince(grant)
    return r === null ? null : this.#count(r)
  }

  /** Synchronous without access control: no promise, so no microtask, on every publish. */
  publisher (request: PublishRequestLike, key: string): Grant | Refusal | null | Promise<Grant | Refusal | null> {
    if (this.auth === null) {
      if (this.#publisherOpen || this.#local(request)) return null
      return this.#count(proxied(request.headers) ? PROXIED : LOOPBACK_ONLY)
    }
    return this.#publisherAuth(this.auth, request, key)
  }

  async #publisherAuth (auth: Auth, request: PublishRequestLike, key: string): Promise<Grant | Refusal> {
    // the loopback exemption (no API key or JWT key configured) is for local processes, as without
    // access control: a page of another site in a local browser is not one, nor a client a reverse
    // proxy on this host relays. With a key configured nothing reads it: not worked out per publish.
    const local = this.#credential ? undefined : this.#local(request)
    const r = await auth.publisher({
      headers: request.headers,
      channel: key,
      method: request.method as 'POST' | 'PUT' | 'DELETE' | 'GET',
      uri: request.originalUrl,
      remoteAddress: request.socket.remoteAddress,
      local
    })
    // Auth's loopback-only refusal, for a request a proxy relayed: say so, as without Auth
    if (local === false && isRefusal(r) && r.code === LOOPBACK_ONLY.code && proxied(request.headers)) return this.#count(PROXIED)
    return this.#count(r)
  }

  /** A local process (lib/http.ts localClient), and not a page of another site in a local browser. */
  #local (request: PublishRequestLike): boolean {
    return localClient(request.socket.remoteAddress, request.headers, this.#trustedProxies) && !crossSite(request, this.#corsOrigins)
  }

  async admin (request: FastifyRequest): Promise<Grant | Refusal> {
    if (this.auth === null) return this.#count(ADMIN_DISABLED)
    return this.#count(await this.auth.admin({ headers: request.headers, remoteAddress: request.socket.remoteAddress }))
  }

  /** `authorizeUrl` with `authorizePublish`: publishers are asked about too (a WebSocket publisher's each message, once its decision's cache lapsed). */
  get authorizesPublishers (): boolean {
    return this.auth !== null && this.auth.options.authorizeUrl !== '' && this.auth.options.authorizePublish
  }

  /** `publishUpstreamUrl` is set: publishes go to the publisher upstream request. */
  get hasUpstream (): boolean {
    return this.auth !== null && this.auth.options.publishUpstreamUrl !== ''
  }

  /** Nchan's publisher upstream request, when `publishUpstreamUrl` is set; null (synchronously) otherwise. */
  upstream (request: PublishRequestLike, key: string, body: Buffer): UpstreamPublishResult | null | Promise<UpstreamPublishResult | null> {
    if (this.auth === null || this.auth.options.publishUpstreamUrl === '') return null
    return this.auth.upstreamPublish({ headers: request.headers, body, channel: key, uri: request.originalUrl, method: request.method, remoteAddress: request.socket.remoteAddress })
  }

  async close (): Promise<void> {
    await this.auth?.close()
  }

  #count<T extends Grant | Refusal> (r: T): T {
    if ('status' in r) this.refusals[r.status] = (this.refusals[r.status] ?? 0) + 1
    return r
  }
}

/**
 * `%`, control bytes and the multiplex delimiter percent-encoded in one channel id (X-Channel-Id),
 * so the list splits at the delimiter and each id decodes back to its bytes (the header itself
 * then needs no more encoding: lib/auth-authorize.ts headerSafe).
 */
function escapeId (id: string, delimiter: string): string {
  const out = percentEncodeUnsafe(id)
  return delimiter === '' ? out : out.replaceAll(delimiter, percentEncoded(delimiter))
}

/**
 * A browser page of another site: it carries an Origin that is neither this server's own nor one
 * the operator listed in corsOrigins. The loopback exemption is for local processes, not for a
 * page in a browser on the same machine that would otherwise publish to (or delete) channels on
 * localhost behind the user's back.
 *
 * "This server's own" is a page whose origin names the Host the request was sent to, and that Host
 * is a loopback name (`localhost`, 127.0.0.0/8, `[::1]`, `0.0.0.0`). A page of another name whose DNS now
 * answers 127.0.0.1 (DNS rebinding) also sends an Origin equal to its Host, and the socket's peer is
 * loopback for it too: such a page is another site. The operator lists a name of the server's own in
 * corsOrigins to let its pages publish.
 */
export function crossSite (request: Pick<PublishRequestLike, 'headers'>, allowed: readonly string[]): boolean {
  const origin = request.headers.origin
  const host = request.headers.host
  if (origin === undefined) {
    // no Origin: a local process (no Sec-Fetch-Site either), a URL the user opened (`none`), or a
    // browser's same-site GET, which a DNS-rebinding page also sends: trusted under a loopback Host only
    const site = request.headers['sec-fetch-site']
    if (site === undefined || site === 'none') return false
    if (site === 'cross-site' || host === undefined) return true
    return !loopbackName(hostnameOf(host)) && !allowed.some((o) => originHost(o) === host)
  }
  if (allowed.includes(origin)) return false
  try {
    const url = new URL(origin)
    return url.host !== host || !loopbackName(url.hostname)
  } catch {
    return true
  }
}

/**
 * Whether a subscriber request may use the browser's ambient credentials, its cookies (the token
 * cookie `authCookie`, the Cookie an authorize request forwards). A page of another site that the
 * operator did not list in corsOrigins may not: the browser would attach a user's cookies to its
 * EventSource, long-poll or WebSocket request, and with every Origin echoed with credentials
 * (corsOrigins empty) that page would read the user's channels. Its request is judged as if it
 * carried no cookie (a token in `Authorization` or the query still counts).
 *
 * The browser's `Sec-Fetch-Site` decides where it is sent (`cross-site`: no; `same-site`,
 * `same-origin`, `none`: yes; a page cannot set it); without one of those (an older browser, a
 * WebSocket handshake, no browser), an `Origin` whose host name is not the `Host`'s (ports aside:
 * cookies are not kept per port, and a proxy's `$host` has none) is another site. A listed origin
 * always may, but `null`.
 */
export function ambientCredentials (headers: IncomingHttpHeaders, allowed: readonly string[]): boolean {
  const origin = headers.origin
  // (`null` is no site's: any page can send it from a sandboxed frame, so listing it admits the
  // origin, never the user's cookies)
  if (origin !== undefined && origin !== 'null' && allowed.includes(origin)) return true
  const site = headers['sec-fetch-site']
  if (site === 'cross-site') return false
  if (site === 'same-origin' || site === 'same-site' || site === 'none') return true
  if (origin === undefined) return site === undefined
  const host = headers.host
  if (host === undefined) return false
  try {
    return new URL(origin).hostname === hostnameOf(host).toLowerCase()
  } catch {
    return false
  }
}

/** A Host header's name without its port (`[::1]:8080` → `[::1]`). */
function hostnameOf (host: string): string {
  const colon = host.lastIndexOf(':')
  return colon === -1 || host.endsWith(']') ? host : host.slice(0, colon)
}

/** An origin's host (name and port), or null. */
function originHost (origin: string): string | null {
  try {
    return new URL(origin).host
  } catch {
    return null
  }
}

/** A URL's hostname that only names this machine: `localhost` (and under it), 127/8, `[::1]`, `0.0.0.0`, `[::]`. */
function loopbackName (hostname: string): boolean {
  const h = hostname.toLowerCase()
  // (0.0.0.0 and [::]: what the server prints for an address it listens on everywhere)
  if (h === 'localhost' || h.endsWith('.localhost') || h === '0.0.0.0' || h === '[::]') return true
  return isLoopback(h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h)
}

export function isRefusal (r: Grant | Refusal | null): r is Refusal {
  return r !== null && 'status' in r
}

/**
 * Write a refusal: its status, WWW-Authenticate (RFC 6750), Retry-After, the headers an authorize
 * answer carried, CORS (so a browser can read it), and its short body.
 */
export function sendRefusal<R extends Reply> (reply: R, r: Refusal, origin: string | null): R {
  withCors(reply.code(r.status), origin)
  if (r.wwwAuthenticate !== undefined) reply.header('WWW-Authenticate', r.wwwAuthenticate)
  if (r.retryAfter !== undefined) reply.header('Retry-After', String(r.retryAfter))
  if (origin !== null) reply.header('Access-Control-Expose-Headers', 'WWW-Authenticate, Retry-After')
  let type = 'text/plain'
  if (r.headers !== undefined) {
    for (const [k, v] of Object.entries(r.headers)) {
      if (k.toLowerCase() === 'content-type') type = v
      else reply.header(k, v)
    }
  }
  const body = typeof r.body === 'string' ? Buffer.from(r.body) : r.body
  if (body.length === 0) reply.header('Content-Length', '0').send()
  else reply.header('Content-Type', type).send(body)
  return reply
}
