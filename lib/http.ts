// Request-side helpers shared by the publisher and the subscriber: paths, channel ids, cursors,
// CORS. Pure functions over strings; no Fastify here.
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
import { isIP } from 'node:net'
import { ERRORS, type ErrorSpec } from './errors.ts'
import {
  ABSENT, INVALID, MAX_CURSOR_SOURCE_LENGTH, defaultCursor, makeCursor, parseCompound, parseHttpDate,
  parseTags, percentDecode, type Cursor
} from './message-id.ts'

/**
 * nginx-style normalisation: runs of `/` merged, `.` and `..` resolved. Null when `..` climbs above
 * the root (answered 400).
 */
export function normalizePath (path: string): string | null {
  if (path.indexOf('//') === -1 && path.indexOf('/.') === -1 && !/%2e/i.test(path)) return path
  const segs = path.split('/')
  const out: string[] = []
  for (let i = 1; i < segs.length; i++) {
    // nginx decodes before it normalises: `%2e%2e` is a `..` segment too
    const s = dotSegment(segs[i]!)
    const last = i === segs.length - 1
    if (s === '' && !last) continue
    if (s === '.' || s === '..') {
      if (s === '..') {
        if (out.length === 0) return null
        out.pop()
      }
      if (last) out.push('')
      continue
    }
    out.push(s)
  }
  return '/' + out.join('/')
}

/** Split a raw URL into its normalised path and raw query string. */
export function splitUrl (url: string): { path: string | null, query: string } {
  const q = url.indexOf('?')
  const rawPath = q === -1 ? url : url.slice(0, q)
  return { path: normalizePath(rawPath), query: q === -1 ? '' : url.slice(q + 1) }
}

/** The first raw (still percent-encoded) value of a query parameter, or undefined. */
export function queryParam (query: string, name: string): string | undefined {
  if (query.length === 0) return undefined
  let start = 0
  while (start <= query.length) {
    let end = query.indexOf('&', start)
    if (end === -1) end = query.length
    const eq = query.indexOf('=', start)
    const keyEnd = eq !== -1 && eq < end ? eq : end
    if (query.slice(start, keyEnd) === name) return eq !== -1 && eq < end ? query.slice(eq + 1, end) : ''
    start = end + 1
  }
  return undefined
}

/**
 * Channel ids from the path after the prefix (§1): percent-decoded to raw bytes (one per char),
 * split on the multiplex delimiter when there is one.
 */
export function parseChannelIds (rawId: string, delimiter: string, maxLength: number, maxChannels: number): string[] | ErrorSpec {
  const id = percentDecode(rawId)
  if (id.indexOf('\0') !== -1) return ERRORS.BAD_CHANNEL_ID
  if (id.length === 0) return ERRORS.NO_CHANNEL_ID
  if (id.length > maxLength) return ERRORS.CHANNEL_ID_TOO_LONG
  if (delimiter.length === 0 || id.indexOf(delimiter) === -1) return [id]
  const ids = id.split(delimiter)
  if (ids.length > maxChannels) return ERRORS.TOO_MANY_CHANNELS
  for (const c of ids) if (c.length === 0) return ERRORS.BAD_CHANNEL_ID
  // each position gets each message of its channel: one channel at 250 positions would make one
  // connection cost every publish to it 250 deliveries (a client's amplification of the fan-out)
  if (ids.length > MAX_REPEATS) {
    const seen = new Map<string, number>()
    for (const c of ids) {
      const n = (seen.get(c) ?? 0) + 1
      if (n > MAX_REPEATS) return ERRORS.REPEATED_CHANNEL
      seen.set(c, n)
    }
  }
  return ids
}

/** Positions one channel may hold in one subscription (`/sub/a,a` is Nchan's, and allowed). */
export const MAX_REPEATS = 4

function header (headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name]
  return Array.isArray(v) ? v[0] : v
}

/** The starting cursor of a subscribe request (§4.2), or INVALID (answered 400). */
export function requestCursor (headers: IncomingHttpHeaders, query: string, n: number): Cursor | typeof INVALID {
  const ims = header(headers, 'if-modified-since')
  const inm = header(headers, 'if-none-match')
  if (ims !== undefined) {
    const seconds = parseHttpDate(ims)
    if (!(seconds > 0)) return defaultCursor(n)
    if (inm === undefined) return INVALID
    const p = parseTags(percentDecode(inm.trim()), n)
    if (p === null) return INVALID
    return makeCursor(seconds, p.tags, p.active)
  }
  if (inm !== undefined) {
    const c = parseCompound(inm, n)
    if (c === INVALID) return INVALID
    return c === ABSENT ? defaultCursor(n) : c
  }
  const lastEventId = header(headers, 'last-event-id')
  if (lastEventId !== undefined && lastEventId.length <= MAX_CURSOR_SOURCE_LENGTH) {
    const c = parseCompound(lastEventId, n)
    if (c === INVALID) return INVALID
    if (c !== ABSENT) return c
  }
  const q = queryParam(query, 'last_event_id')
  if (q !== undefined && q.length <= MAX_CURSOR_SOURCE_LENGTH) {
    const c = parseCompound(q, n)
    if (c === INVALID) return INVALID
    if (c !== ABSENT) return c
  }
  // EXTENSION (§4.2 step 4): NchanSubscriber.js long-poll sends `Etag: <id>` on a cold start.
  const etag = header(headers, 'etag')
  if (etag !== undefined && etag.length <= MAX_CURSOR_SOURCE_LENGTH) {
    const c = parseCompound(etag, n)
    if (c !== INVALID && c !== ABSENT) return c
  }
  return defaultCursor(n)
}

export const PUB_ALLOW = 'GET, POST, PUT, DELETE'
export const SUB_ALLOW = 'GET'
// Authorization: a token sent by a cross-origin client (access control, docs/api.md §16)
export const PUB_ALLOW_HEADERS = 'Content-Type, X-EventSource-Event, Authorization, Idempotency-Key'
export const SUB_ALLOW_HEADERS = 'If-None-Match, If-Modified-Since, Content-Type, Cache-Control, X-EventSource-Event, Etag, Last-Event-ID, Authorization'
export const EXPOSE_HEADERS = 'Last-Modified, Etag, Content-Type, Parkline-Gap, WWW-Authenticate'
export const VARY = 'If-None-Match, If-Modified-Since'

/** Origin of the request, or null. */
export function requestOrigin (headers: IncomingHttpHeaders): string | null {
  const o = header(headers, 'origin')
  return o === undefined ? null : o
}

/** Is this origin allowed by the allow-list (empty list = all)? */
export function originAllowed (origin: string | null, allowed: readonly string[]): boolean {
  return origin === null || allowed.length === 0 || allowed.includes(origin)
}

/**
 * The request's Origin where corsOrigins allows it, else null: an answer given before the origin
 * is judged (a bad path, a limit, a 404) carries CORS headers only for a site that may read it.
 */
export function allowedOrigin (headers: IncomingHttpHeaders, allowed: readonly string[]): string | null {
  const origin = requestOrigin(headers)
  return originAllowed(origin, allowed) ? origin : null
}

/** CORS response header lines (raw `Name: value\r\n` form) for a request origin. */
export function corsLines (origin: string | null): string {
  return origin === null ? '' : 'Access-Control-Allow-Origin: ' + origin + '\r\nAccess-Control-Allow-Credentials: true\r\n'
}

/**
 * `%` and the control bytes a header value cannot carry (all but HTAB) percent-encoded, so the
 * value decodes back to the same bytes (X-Channel-Id: lib/access.ts, lib/auth-authorize.ts).
 */
export function percentEncodeUnsafe (s: string): string {
  return s.replace(UNSAFE_IN_HEADER, percentEncoded)
}

/** One byte as `%XX`. */
export function percentEncoded (c: string): string {
  return '%' + c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')
}

const UNSAFE_IN_HEADER = /[\x00-\x08\x0a-\x1f\x7f%]/g

/** Uniform random integer in [min, max]. */
export function randomBetween (min: number, max: number): number {
  return min + Math.floor(Math.random() * (max - min + 1))
}

/** Retry-After seconds of a subscription refused at maxSubscribersPerUser (Core.overUserLimit). */
export function userLimitRetryAfter (): number {
  return randomBetween(5, 30)
}

/** A segment that is `.` or `..` once `%2e` is decoded, as such; any other as it came. */
function dotSegment (s: string): string {
  if (s.length < 3 || s.length > 6 || !/^(\.|%2e)+$/i.test(s)) return s
  const d = s.replace(/%2e/gi, '.')
  return d === '.' || d === '..' ? d : s
}

/**
 * Headers a proxy adds. A request that carries one came through a proxy: behind a reverse proxy
 * on the same host every client's socket is a loopback one, so the loopback exemptions (the
 * publisher with no credential configured, statusLoopbackOnly) must not take it for a local process.
 */
const PROXY_HEADERS = ['x-forwarded-for', 'forwarded', 'x-real-ip', 'via', 'x-forwarded-host', 'x-forwarded-proto', 'x-forwarded-port',
  'x-forwarded-server', 'x-client-ip', 'true-client-ip', 'cf-connecting-ip', 'x-cluster-client-ip', 'fastly-client-ip', 'client-ip',
  'x-forwarded'] as const

/** The request carries a header a proxy adds (PROXY_HEADERS). */
export function proxied (headers: IncomingHttpHeaders): boolean {
  for (let i = 0; i < PROXY_HEADERS.length; i++) if (headers[PROXY_HEADERS[i]!] !== undefined) return true
  return false
}

/** An address as Node gives a peer's: IPv6 in its canonical form, an IPv4-mapped one as IPv4. */
export function canonicalIp (a: string): string {
  if (a.startsWith('::ffff:') && isIP(a.slice(7)) === 4) return a.slice(7)
  if (isIP(a) !== 6) return a
  try {
    const h = new URL(`http://[${a}]/`).hostname.slice(1, -1)
    // the URL parser writes ::ffff:127.0.0.1 as ::ffff:7f00:1
    const m = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(h)
    if (m !== null) {
      const hi = parseInt(m[1]!, 16)
      const lo = parseInt(m[2]!, 16)
      return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`
    }
    return h
  } catch {
    return a
  }
}

const CLIENT_IP_HEADERS = ['x-real-ip', 'x-client-ip', 'true-client-ip', 'cf-connecting-ip', 'x-cluster-client-ip', 'fastly-client-ip', 'client-ip'] as const

/**
 * A client address as a proxy's header writes it, as Node would give the peer: quotes, IPv6
 * brackets and a port taken off (`"[::1]:4711"`, `127.0.0.1:5555`, as RFC 7239 and some load
 * balancers write them), then canonical (`::ffff:7f00:1` is 127.0.0.1). Anything else (`unknown`,
 * an obfuscated `_hidden`, a name) is left as written: not an address, so never loopback.
 */
export function headerAddress (written: string): string {
  let a = written.trim()
  if (a.length >= 2 && a.startsWith('"') && a.endsWith('"')) a = a.slice(1, -1).trim()
  const v6 = /^\[([0-9A-Fa-f:.]+)\](?::\d{1,5})?$/.exec(a)
  if (v6 !== null) a = v6[1]!
  else {
    const v4 = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/.exec(a)
    if (v4 !== null) a = v4[1]!
  }
  return canonicalIp(a)
}

/** The client addresses a proxy's headers give: every X-Forwarded-For hop, X-Real-IP (and the like), every Forwarded `for=`. */
function forwardedClients (headers: IncomingHttpHeaders): string[] {
  const out: string[] = []
  const xff = headers['x-forwarded-for']
  // every hop, not only the last (the one the trusted proxy added): a proxy in front of that one
  // (a TLS terminator on the same host) makes the last hop loopback for every client, and the hops
  // before it are where such a proxy puts the real client; a client can only add hops, so
  // judging them all can only refuse more
  if (typeof xff === 'string') for (const hop of xff.split(',')) out.push(headerAddress(hop))
  // the single-address headers: X-Real-IP, and those CDNs and other proxies set (a trusted proxy
  // giving the client there, and passing the client's own X-Forwarded-For on, must not admit a
  // client who wrote `X-Forwarded-For: 127.0.0.1`)
  for (const name of CLIENT_IP_HEADERS) {
    const v = headers[name]
    if (typeof v === 'string') out.push(headerAddress(v))
  }
  const fwd = headers.forwarded
  if (typeof fwd === 'string') for (const a of forwardedFor(fwd)) out.push(headerAddress(a))
  return out
}

/**
 * Every `for=` of a Forwarded header (RFC 7239 §4), its value as written (a token, or a quoted
 * string, which may hold `;`, `,` or `for=` without them counting); '' for an element that has
 * none, which is no address. Every `for=` of an element is given, a repeated one too (the RFC
 * forbids it; a proxy that appends `;for=<peer>` to an element its client wrote must not have
 * the client's judged alone).
 */
export function forwardedFor (header: string): string[] {
  const out: string[] = []
  let element = 0
  let pair = ''
  let quoted = false
  const endPair = (): void => {
    const eq = pair.indexOf('=')
    if (eq !== -1 && pair.slice(0, eq).trim().toLowerCase() === 'for') {
      out.push(pair.slice(eq + 1).trim())
      element++
    }
    pair = ''
  }
  for (let i = 0; i < header.length; i++) {
    const c = header[i]!
    if (quoted) {
      if (c === '\\' && i + 1 < header.length) pair += c + header[++i]!
      else {
        if (c === '"') quoted = false
        pair += c
      }
    } else if (c === '"') {
      quoted = true
      pair += c
    } else if (c === ';') {
      endPair()
    } else if (c === ',') {
      endPair()
      if (element === 0) out.push('')
      element = 0
    } else {
      pair += c
    }
  }
  endPair()
  if (element === 0) out.push('')
  return out
}

/**
 * A local process: a loopback peer that no proxy relayed; or, through a proxy listed in
 * `trustedProxies`, a client that every address the proxy's headers give (every X-Forwarded-For
 * hop, X-Real-IP and the other CLIENT_IP_HEADERS, every Forwarded `for=`) says is
 * loopback. A forwarded request
 * from any other proxy, a loopback one included, is not. (The proxy must append to
 * X-Forwarded-For, not pass the client's own on: docs/api.md 16.1.)
 */
export function localClient (peer: string | undefined, headers: IncomingHttpHeaders, trustedProxies: readonly string[]): boolean {
  if (!proxied(headers)) return isLoopback(peer)
  if (peer === undefined || !trustedProxies.includes(canonicalIp(peer))) return false
  const clients = forwardedClients(headers)
  return clients.length > 0 && clients.every((c) => isLoopback(c))
}

/** 127.0.0.0/8, ::1 and IPv4-mapped 127.x: the clients the secure default lets publish. */
export function isLoopback (addr: string | undefined): boolean {
  if (addr === undefined) return false
  const a = addr.toLowerCase()
  if (a.startsWith('::ffff:')) return isIP(a.slice(7)) === 4 && a.startsWith('127.', 7)
  if (isIP(a) === 4) return a.startsWith('127.')
  return a === '::1' || a === '0:0:0:0:0:0:0:1'
}

/**
 * RFC 9112 §3.2: an HTTP/1.1 request without Host gets 400 and the close, in the bytes Node's own
 * requireHostHeader answers with, for a server that checks it itself (lib/server.ts: so that one
 * pipelined behind a parked poll is seen). True when answered.
 */
export function refuseWithoutHost (req: IncomingMessage, res: ServerResponse): boolean {
  if (req.headers.host !== undefined || req.httpVersion !== '1.1') return false
  res.writeHead(400, ['Connection', 'close'])
  res.end()
  return true
}

/**
 * How long a keep-alive connection idle between requests stays open: the server's keepAliveTimeout
 * plus Node's grace past it (`keepAliveTimeoutBuffer`, 1 s; a fixed 1 s on Nodes without the
 * property), as Node's own server keeps it. Answers advertise keepAliveTimeout alone (`Keep-Alive:
 * timeout=`), so a request a client sends just before that is read, not cut by the close. 0: none.
 */
export function keepAliveIdleMs (server: { keepAliveTimeout?: number, keepAliveTimeoutBuffer?: number }): number {
  const t = server.keepAliveTimeout ?? 5000
  const b = server.keepAliveTimeoutBuffer
  // (Node takes a buffer that is not a finite number >= 0 as its default, 1000)
  return t > 0 ? t + (typeof b === 'number' && Number.isFinite(b) && b >= 0 ? b : 1000) : 0
}
