// The two calls lib/auth.ts makes to the application, both over undici on one keep-alive Agent:
// Nchan's authorize request (nchan_authorize_request) and its publisher upstream request
// (nchan_publisher_upstream_request). No decisions about tokens here: only HTTP, caching and limits.
import { createHash } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import { LRUCache } from 'lru-cache'
import { request, type Dispatcher } from 'undici'
import { percentEncodeUnsafe } from './http.ts'

/** Counters lib/auth.ts exposes for metrics; one object shared by the clients here and the Auth. */
export interface AuthStats {
  /** Requests actually sent to authorizeUrl. */
  authorizeCalls: number
  /** Decisions answered from the cache. */
  authorizeCacheHits: number
  /** Requests that joined an identical call already in flight. */
  authorizeShared: number
  /** Timeouts and connection errors of the authorize request (each answered 503). */
  authorizeErrors: number
  /** JWKS documents fetched (successful or not). */
  jwksFetches: number
  /** Requests sent to publishUpstreamUrl, and how many failed (answered 503). */
  upstreamPublishCalls: number
  upstreamPublishErrors: number
  /** Refusals returned by Auth, by status code ('401', '403', ...). */
  refusals: Record<string, number>
}

/** An upstream the access checks depend on failed (no answer, a bad answer): what, and why. */
export type AuthTrouble = (what: 'jwks' | 'authorize' | 'upstream', why: string) => void

/** An error's words, for a log line. */
export function why (err: unknown): string {
  const e = err as { message?: string, code?: string, cause?: { message?: string, code?: string } } | null
  const m = e?.message ?? String(err)
  const c = e?.cause?.code ?? e?.code
  return c !== undefined && !m.includes(c) ? `${m} (${c})` : m
}

export function newStats (): AuthStats {
  return {
    authorizeCalls: 0,
    authorizeCacheHits: 0,
    authorizeShared: 0,
    authorizeErrors: 0,
    jwksFetches: 0,
    upstreamPublishCalls: 0,
    upstreamPublishErrors: 0,
    refusals: {}
  }
}

/**
 * Read at most `cap` bytes of a response body. A longer body is cut and the rest discarded (the
 * connection is destroyed rather than drained, so a huge answer costs nothing more).
 */
export async function readCapped (body: Dispatcher.ResponseData['body'], cap: number): Promise<{ buf: Buffer, over: boolean }> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body as AsyncIterable<Buffer>) {
    if (size + chunk.length > cap) {
      chunks.push(chunk.subarray(0, cap - size))
      size = cap
      body.destroy()
      return { buf: Buffer.concat(chunks, size), over: true }
    }
    chunks.push(chunk)
    size += chunk.length
  }
  return { buf: Buffer.concat(chunks, size), over: false }
}

/** First value of a header, arrays joined the way Node joins them (`; ` for Cookie, `, ` otherwise). */
function headerValue (h: string | string[] | undefined, sep: string): string | undefined {
  if (h === undefined) return undefined
  return typeof h === 'string' ? h : h.join(sep)
}

/**
 * Channel ids are raw bytes, one per char (lib/http.ts parseChannelIds), and may hold control
 * characters a header value cannot carry. Such a value is percent-encoded: the controls and `%`
 * (so it decodes back unambiguously). Any other value goes out as is, as Nchan sends
 * $nchan_channel_id.
 */
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/
export function headerSafe (s: string): string {
  return CONTROL.test(s) ? percentEncodeUnsafe(s) : s
}

/** The X-Forwarded-For the app sees: the client's own list with the peer address appended. */
function forwardedFor (headers: IncomingHttpHeaders, remoteAddress: string | undefined): string | undefined {
  const xff = headerValue(headers['x-forwarded-for'], ', ')
  if (remoteAddress === undefined) return xff
  return xff === undefined || xff.length === 0 ? remoteAddress : xff + ', ' + remoteAddress
}

// ---- authorize request ------------------------------------------------------------------------

export interface AuthorizeRequest {
  headers: IncomingHttpHeaders
  /** X-Channel-Id: the channel ids as the client requested them (multiplexed ones joined). */
  channelId: string
  uri: string
  method: string
  /** X-Subscriber-Type (the transport); null for a publisher. */
  subscriberType: string | null
  remoteAddress: string | undefined
}

/**
 * One upstream answer. `status` 2xx admits; `unavailable` marks a timeout or connection error
 * (answered 503 by the caller, never cached); otherwise status, body and kept headers go back to
 * the client. One shape for every decision.
 */
export interface AuthorizeDecision {
  status: number
  body: Buffer
  headers: Record<string, string>
  unavailable: boolean
}

const EMPTY = Buffer.alloc(0)
/** Upstream headers passed on with a refusal: what a client needs to act on it. */
const KEPT_HEADERS = ['content-type', 'www-authenticate', 'location', 'retry-after'] as const

export interface AuthorizeClientOptions {
  url: string
  dispatcher: Dispatcher
  timeoutMs: number
  /** 0 turns the cache off (every request asks; identical concurrent ones still share a call). */
  cacheTtlMs: number
  cacheMax: number
  bodyCap: number
  stats: AuthStats
  trouble?: AuthTrouble
}

/**
 * The headers the authorize request carries. A publisher's Cookie is not forwarded: a cookie never
 * authorizes a publish, a DELETE or a channel-info read (a page in a logged-in browser could
 * otherwise forge one).
 */
function forwarded (r: AuthorizeRequest): Record<string, string> {
  const h = r.headers
  const out: Record<string, string> = {}
  const cookie = r.subscriberType === null ? undefined : headerValue(h.cookie, '; ')
  if (cookie !== undefined) out.cookie = cookie
  const authz = headerValue(h.authorization, ', ')
  if (authz !== undefined) out.authorization = authz
  const origin = headerValue(h.origin, ', ')
  if (origin !== undefined) out.origin = origin
  const ua = headerValue(h['user-agent'], ', ')
  if (ua !== undefined) out['user-agent'] = ua
  out['x-channel-id'] = headerSafe(r.channelId)
  out['x-original-uri'] = headerSafe(r.uri)
  out['x-original-method'] = r.method
  if (r.subscriberType !== null) out['x-subscriber-type'] = r.subscriberType
  const xff = forwardedFor(h, r.remoteAddress)
  if (xff !== undefined) out['x-forwarded-for'] = xff
  return out
}

export class AuthorizeClient {
  #url: string
  #dispatcher: Dispatcher
  #timeoutMs: number
  #bodyCap: number
  #stats: AuthStats
  readonly #trouble: AuthTrouble | null
  #cache: LRUCache<string, AuthorizeDecision> | null
  #inflight = new Map<string, Promise<AuthorizeDecision>>()

  constructor (o: AuthorizeClientOptions) {
    this.#url = o.url
    this.#dispatcher = o.dispatcher
    this.#timeoutMs = o.timeoutMs
    this.#bodyCap = o.bodyCap
    this.#stats = o.stats
    this.#trouble = o.trouble ?? null
    // No ttlAutopurge: lru-cache then checks ages on read and sets no timer per entry. maxSize
    // bounds the refusal bodies held (each at most bodyCap).
    this.#cache = o.cacheTtlMs > 0
      ? new LRUCache<string, AuthorizeDecision>({
        max: o.cacheMax,
        ttl: o.cacheTtlMs,
        maxSize: o.cacheMax * 256 + 8 * 1048576,
        sizeCalculation: (d) => 64 + d.body.length
      })
      : null
  }

  /**
   * The cache key: everything that is forwarded, so a cached (or shared in-flight) decision only
   * ever answers a request the app would have seen as identical — the channels, the URI (an app
   * may read a token from its query), the credentials, Origin, User-Agent, X-Forwarded-For, and
   * the subscriber type or publisher method. A long-poll loop repeats all of it, so it still hits.
   * Hashed, so no credential is kept in memory as a key.
   */
  static key (r: AuthorizeRequest): string {
    const hash = createHash('sha256')
    for (const [k, v] of Object.entries(forwarded(r)).sort((a, b) => (a[0] < b[0] ? -1 : 1))) hash.update(k).update('\0').update(v).update('\0')
    return hash.digest('base64')
  }

  async decide (r: AuthorizeRequest): Promise<AuthorizeDecision> {
    const key = AuthorizeClient.key(r)
    if (this.#cache !== null) {
      const hit = this.#cache.get(key)
      if (hit !== undefined) {
        this.#stats.authorizeCacheHits++
        return hit
      }
    }
    const pending = this.#inflight.get(key)
    if (pending !== undefined) {
      this.#stats.authorizeShared++
      return await pending
    }
    const call = this.#call(r)
    this.#inflight.set(key, call)
    try {
      const d = await call
      // Errors and 5xx are the app's trouble, not a decision: ask again next time.
      if (this.#cache !== null && !d.unavailable && d.status < 500) this.#cache.set(key, d)
      return d
    } finally {
      this.#inflight.delete(key)
    }
  }

  async #call (r: AuthorizeRequest): Promise<AuthorizeDecision> {
    const out = forwarded(r)
    this.#stats.authorizeCalls++
    try {
      // One deadline for connect, headers and body alike.
      const res = await request(this.#url, {
        dispatcher: this.#dispatcher,
        method: 'GET',
        headers: out,
        signal: AbortSignal.timeout(this.#timeoutMs)
      })
      if (res.statusCode >= 200 && res.statusCode < 300) {
        await res.body.dump()
        return { status: res.statusCode, body: EMPTY, headers: {}, unavailable: false }
      }
      const { buf } = await readCapped(res.body, this.#bodyCap)
      const kept: Record<string, string> = {}
      for (const name of KEPT_HEADERS) {
        const v = res.headers[name]
        if (typeof v === 'string') kept[name] = v
      }
      return { status: res.statusCode, body: buf, headers: kept, unavailable: false }
    } catch (err) {
      this.#stats.authorizeErrors++
      this.#trouble?.('authorize', why(err))
      return { status: 503, body: EMPTY, headers: {}, unavailable: true }
    }
  }
}

// ---- publisher upstream request ---------------------------------------------------------------

export interface UpstreamPublishContext {
  headers: IncomingHttpHeaders
  body: Buffer
  channel: string
  uri: string
  method: string
  remoteAddress?: string | undefined
}

export type UpstreamPublishResult =
  /** contentType null: the request's own */
  | { action: 'publish', body: Buffer, contentType: string | null }
  | { action: 'drop' }
  | { action: 'reply', status: number, body: Buffer, contentType: string | null, retryAfter: number | null }

/**
 * RFC 9110 §7.6.1 connection-specific fields, plus what undici sets itself, the ones Parkline sets,
 * and Cookie: as for the publisher's authorize request, a cookie never authorizes a publish (a page
 * in a logged-in browser could otherwise forge one through an application that reads it).
 */
const NOT_FORWARDED = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te',
  'trailer', 'transfer-encoding', 'upgrade', 'host', 'content-length', 'expect',
  'x-channel-id', 'x-original-uri', 'x-original-method', 'cookie'
])

export interface UpstreamPublishOptions {
  url: string
  dispatcher: Dispatcher
  timeoutMs: number
  /** Largest message the app may hand back for publishing (the server's maxMessageSize). */
  maxBody: number
  bodyCap: number
  stats: AuthStats
  trouble?: AuthTrouble
}

/**
 * POST the message to the app with the publisher's headers; its status says what to do:
 * 200 publish the answer's body instead, 204 drop (the publisher gets 204), 304 publish the
 * original, anything else goes back to the publisher; no answer in time is a 503.
 */
export async function upstreamPublish (o: UpstreamPublishOptions, ctx: UpstreamPublishContext): Promise<UpstreamPublishResult> {
  const h = ctx.headers
  // Fields named in Connection are hop-by-hop too (RFC 9110 §7.6.1).
  const listed = headerValue(h.connection, ',')
  const dropped = listed === undefined ? null : new Set(listed.toLowerCase().split(',').map((s) => s.trim()))
  const out: Record<string, string | string[]> = {}
  for (const name in h) {
    const v = h[name]
    if (v === undefined || NOT_FORWARDED.has(name) || (dropped !== null && dropped.has(name))) continue
    out[name] = v
  }
  // `%` always encoded, as for the publisher's authorize request: one id, one value
  out['x-channel-id'] = percentEncodeUnsafe(ctx.channel)
  out['x-original-uri'] = headerSafe(ctx.uri)
  out['x-original-method'] = ctx.method
  const xff = forwardedFor(h, ctx.remoteAddress)
  if (xff !== undefined) out['x-forwarded-for'] = xff

  o.stats.upstreamPublishCalls++
  try {
    const res = await request(o.url, {
      dispatcher: o.dispatcher,
      method: 'POST',
      headers: out,
      body: ctx.body,
      signal: AbortSignal.timeout(o.timeoutMs)
    })
    const type = typeof res.headers['content-type'] === 'string' ? res.headers['content-type'] : null
    switch (res.statusCode) {
      case 200: {
        const { buf, over } = await readCapped(res.body, o.maxBody)
        if (over) return { action: 'reply', status: 502, body: Buffer.from('Bad Gateway: publisher upstream answered a message over the size limit'), contentType: 'text/plain', retryAfter: null }
        return { action: 'publish', body: buf, contentType: type }
      }
      case 204:
        await res.body.dump()
        return { action: 'drop' }
      case 304: {
        await res.body.dump()
        // the original as it came: null keeps the request's own Content-Type, verbatim (Fastify's
        // path holds a placeholder in the header: lib/publisher.ts requestContentType)
        return { action: 'publish', body: ctx.body, contentType: null }
      }
      default: {
        const { buf } = await readCapped(res.body, o.bodyCap)
        return { action: 'reply', status: res.statusCode, body: buf, contentType: type, retryAfter: null }
      }
    }
  } catch (err) {
    o.stats.upstreamPublishErrors++
    o.trouble?.('upstream', why(err))
    return {
      action: 'reply',
      status: 503,
      body: Buffer.from('Service Unavailable: publisher upstream did not answer'),
      contentType: 'text/plain',
      retryAfter: Math.max(1, Math.ceil(o.timeoutMs / 1000))
    }
  }
}
