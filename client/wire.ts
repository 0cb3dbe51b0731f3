// Wire helpers of the Parkline client (PROTOCOL.md §2, §5, §6, §7): message ids, long-poll cursor
// headers, ws+meta frame heads, an incremental SSE parser and the reconnect delay. Pure functions
// and one small class: no I/O, no globals, so they run unchanged in browsers and in Node.

/** A message id split into seconds, one tag per position (−1 = `-`) and the bracketed position. */
export interface ParsedId {
  seconds: number
  tags: number[]
  /** Position of the channel that sent the message (the bracketed tag; 0 for a single channel). */
  active: number
}

/** Parse `T:G` or a multiplexed `T:[0],-` (§2). Null for anything else. */
export function parseId (id: string): ParsedId | null {
  const colon = id.indexOf(':')
  if (colon <= 0) return null
  const seconds = Number(id.slice(0, colon))
  if (!Number.isSafeInteger(seconds) || seconds < 0) return null
  const parts = id.slice(colon + 1).split(',')
  const tags: number[] = []
  let active = parts.length === 1 ? 0 : -1
  for (let i = 0; i < parts.length; i++) {
    let p = parts[i]!.trim()
    if (p.startsWith('[') && p.endsWith(']')) {
      p = p.slice(1, -1)
      active = i
    }
    if (p === '-') { tags.push(-1); continue }
    if (!/^\d+$/.test(p)) return null
    tags.push(Number(p))
  }
  if (active === -1) return null
  return { seconds, tags, active }
}

/** Position of the sending channel in a (multiplexed) id; 0 when the id says nothing. */
export function activePosition (id: string | undefined): number {
  if (id === undefined) return 0
  const p = parseId(id)
  return p === null ? 0 : p.active
}

/**
 * The long-poll cursor headers for an id (§5): `If-Modified-Since` carries the seconds as an
 * IMF-fixdate, `If-None-Match` the tag part verbatim (`3`, or `[1],0` for a multiplexed id).
 */
export function cursorHeaders (id: string): Record<string, string> | null {
  const colon = id.indexOf(':')
  if (colon <= 0) return null
  const seconds = Number(id.slice(0, colon))
  if (!Number.isSafeInteger(seconds) || seconds <= 0) return null
  return { 'If-Modified-Since': new Date(seconds * 1000).toUTCString(), 'If-None-Match': id.slice(colon + 1) }
}

/** The id of a long-poll answer: `Date.parse(Last-Modified)/1000 + ":" + Etag` (§5). */
export function longpollId (lastModified: string | null, etag: string | null): string | undefined {
  if (etag === null) return undefined
  const tag = etag.replace(/^W\//, '').replace(/"/g, '')
  if (lastModified === null) return tag.includes(':') ? tag : undefined
  const ms = Date.parse(lastModified)
  if (Number.isNaN(ms)) return undefined
  return `${Math.floor(ms / 1000)}:${tag}`
}

/** What a `ws+meta.*` frame head says (§7): `id: …\n[content-type: …\n][gap: …\n]\n`. */
export interface WsMeta {
  id: string | undefined
  contentType: string | undefined
  gap: string | undefined
  /** Length of the head in bytes (UTF-16 units for a text frame), blank line included. */
  length: number
}

/** Parse the meta head of a frame; null when the frame does not start with one. */
export function parseWsMeta (head: string): WsMeta | null {
  if (!head.startsWith('id: ')) return null
  const end = head.indexOf('\n\n')
  if (end === -1) return null
  const meta: WsMeta = { id: undefined, contentType: undefined, gap: undefined, length: end + 2 }
  // unknown meta lines are ignored (§7: clients MUST ignore meta lines they do not know)
  for (const line of head.slice(0, end).split('\n')) {
    const i = line.indexOf(': ')
    if (i === -1) continue
    const key = line.slice(0, i)
    const value = line.slice(i + 2)
    if (key === 'id') meta.id = value
    else if (key === 'content-type') meta.contentType = value
    // one line per channel that lost messages: kept joined by a space, which no id holds
    else if (key === 'gap') meta.gap = meta.gap === undefined ? value : meta.gap + ' ' + value
  }
  return meta
}

/** The head of a binary frame: the bytes up to the first blank line, read as latin1 (ids are ASCII). */
export function parseWsMetaBytes (bytes: Uint8Array): WsMeta | null {
  // (the head ends at the first blank line, however long its content-type line)
  const n = bytes.length
  for (let i = 0; i + 1 < n; i++) {
    if (bytes[i] === 10 && bytes[i + 1] === 10) {
      let head = ''
      for (let j = 0; j < i + 2; j++) head += String.fromCharCode(bytes[j]!)
      const meta = parseWsMeta(head)
      if (meta === null) return null
      meta.length = i + 2
      return meta
    }
  }
  return null
}

export interface SseEvent {
  /** The `event:` name, or undefined for the default (`message`). */
  event: string | undefined
  data: string
  /** The stream's last event id after this event (EventSource's `lastEventId`). */
  id: string
  /**
   * The event's own block had an `id:` line. Every message Parkline sends has one; its control
   * events (`parkline-gap`, `parkline-overflow`, `ping`) have none, so a published message whose
   * event name is one of theirs is still a message.
   */
  ownId: boolean
}

/**
 * Incremental text/event-stream parser (the HTML spec's algorithm): lines end in CRLF, LF or CR;
 * `data:` lines join with LF; an event is dispatched at a blank line when it has data. Comments
 * (`: hi`, `:503: …`) and `retry:` go to their own callbacks.
 */
export class SseParser {
  onEvent: (ev: SseEvent) => void
  onComment: (text: string) => void
  onRetry: (ms: number) => void
  /** A block that ends with no data (never dispatched), with its `event:` name if it had one. */
  onEmpty: (event: string | undefined) => void
  lastEventId: string
  /** The current line's text so far, in the chunks it came in (joined once, at its end). */
  #pending: string[] = []
  /** The last chunk ended in a CR: an LF first in the next one ends no other line. */
  #afterCR = false
  #data = ''
  #hasData = false
  #ownId = false
  #event: string | undefined = undefined

  constructor (onEvent: (ev: SseEvent) => void, onComment: (text: string) => void = () => {}, onRetry: (ms: number) => void = () => {}, onEmpty: (event: string | undefined) => void = () => {}) {
    this.onEvent = onEvent
    this.onComment = onComment
    this.onRetry = onRetry
    this.onEmpty = onEmpty
    this.lastEventId = ''
  }

  /** Linear in the text fed, however the stream is cut (a long line is not scanned again per chunk). */
  feed (text: string): void {
    // (an empty chunk, as a stream decoder may yield, must not spend the CR's pending LF)
    if (text.length === 0) return
    let i = 0
    if (this.#afterCR) {
      this.#afterCR = false
      if (text.charCodeAt(0) === 10) i = 1
    }
    let start = i
    for (; i < text.length; i++) {
      const c = text.charCodeAt(i)
      if (c !== 10 && c !== 13) continue
      const piece = text.slice(start, i)
      if (this.#pending.length === 0) {
        this.#line(piece)
      } else {
        this.#pending.push(piece)
        const line = this.#pending.join('')
        this.#pending = []
        this.#line(line)
      }
      if (c === 13) {
        // a CR at the very end may be the first half of a CRLF
        if (i + 1 === text.length) this.#afterCR = true
        else if (text.charCodeAt(i + 1) === 10) i++
      }
      start = i + 1
    }
    if (start < text.length) this.#pending.push(text.slice(start))
  }

  #line (line: string): void {
    if (line === '') {
      if (this.#hasData) {
        this.onEvent({ event: this.#event, data: this.#data, id: this.lastEventId, ownId: this.#ownId })
      } else if (this.#event !== undefined) {
        this.onEmpty(this.#event)
      }
      this.#data = ''
      this.#hasData = false
      this.#ownId = false
      this.#event = undefined
      return
    }
    if (line.charCodeAt(0) === 58) { // ':'
      this.onComment(line.slice(1))
      return
    }
    const i = line.indexOf(':')
    const field = i === -1 ? line : line.slice(0, i)
    let value = i === -1 ? '' : line.slice(i + 1)
    if (value.charCodeAt(0) === 32) value = value.slice(1)
    switch (field) {
      case 'data':
        this.#data = this.#hasData ? this.#data + '\n' + value : value
        this.#hasData = true
        break
      case 'id':
        if (!value.includes('\0')) this.lastEventId = value
        this.#ownId = true
        break
      case 'event':
        this.#event = value
        break
      case 'retry':
        if (/^\d+$/.test(value)) this.onRetry(Number(value))
        break
    }
  }
}

/**
 * The longest delay a timer takes (ms, 2^31 - 1, about 24.8 days): a longer one fires at once, in
 * Node (with a TimeoutOverflowWarning) and in browsers alike.
 */
export const MAX_TIMER_MS = 0x7fffffff

/**
 * The delay before reconnect attempt `attempt` (0-based): exponential from `min`, capped at `max`,
 * with "equal jitter" (a uniform draw in the upper half), so a crowd that lost the server at the
 * same moment comes back spread out. A server's wish (`retry:`, `Retry-After`) is a floor, up to
 * MAX_TIMER_MS (a timer cannot wait longer).
 */
export function backoffDelay (attempt: number, min: number, max: number, random: () => number, serverHint: number | null = null): number {
  const base = Math.min(max, min * 2 ** Math.min(attempt, 30))
  const jittered = Math.round(base / 2 + random() * base / 2)
  return Math.min(MAX_TIMER_MS, serverHint === null ? jittered : Math.max(serverHint, jittered))
}

/** `Retry-After` in ms: delta-seconds or an HTTP date (RFC 9110 §10.2.3); null when absent or bad. */
export function retryAfterMs (value: string | null, now = Date.now()): number | null {
  if (value === null) return null
  const v = value.trim()
  if (/^\d+$/.test(v)) return Number(v) * 1000
  const t = Date.parse(v)
  return Number.isNaN(t) ? null : Math.max(0, t - now)
}

/**
 * Channel names of a subscriber URL's path (§1): the part after `prefix` (or after the last `/`),
 * split on the multiplex delimiter and percent-decoded; position k names bracket k of an id.
 */
export function channelsOf (pathname: string, prefix: string, delimiter = ','): string[] {
  let rest = pathname.startsWith(prefix) ? pathname.slice(prefix.length) : pathname.slice(pathname.lastIndexOf('/') + 1)
  if (rest.length === 0) rest = pathname
  const parts = delimiter === '' ? [rest] : rest.split(delimiter)
  return parts.map((p) => {
    try { return decodeURIComponent(p) } catch { return p }
  })
}

/** `url` with `name=value` in its query, in place of any `name` it had (withRawQuery). */
export function withQuery (url: string, name: string, value: string): string {
  return withRawQuery(url, name, encodeURIComponent(value))
}

/**
 * `url` (less its fragment) with `name=<encoded>` in place of any `name` parameter it had: a server
 * reads a parameter's first occurrence, so a cursor or token the URL was given would otherwise win
 * over every newer one (a resume from the URL's `last_event_id` again: messages twice).
 */
function withRawQuery (url: string, name: string, encoded: string): string {
  const base = withoutQuery(url, name)
  return base + (base.includes('?') ? '&' : '?') + name + '=' + encoded
}

/** Is `part` (of a query) a `name` parameter, as a server reads names: exact, undecoded? */
function isParam (part: string, name: string): boolean {
  return part === name || part.startsWith(name + '=')
}

/** Does `url`'s query hold a `name` parameter? */
export function hasQuery (url: string, name: string): boolean {
  return splitQuery(url).parts.some((p) => isParam(p, name))
}

/** The value of `url`'s first `name` parameter (percent-decoded where it can be), or null. */
export function queryOf (url: string, name: string): string | null {
  const part = splitQuery(url).parts.find((p) => isParam(p, name))
  if (part === undefined) return null
  const raw = part.slice(name.length + 1)
  try {
    return decodeURIComponent(raw)
  } catch {
    return raw
  }
}

/** `url` less its fragment, as the part before its query and the `&`-separated parts of the query. */
function splitQuery (url: string): { path: string, parts: string[] } {
  const hash = url.indexOf('#')
  const base = hash === -1 ? url : url.slice(0, hash)
  const q = base.indexOf('?')
  return q === -1 ? { path: base, parts: [] } : { path: base.slice(0, q), parts: base.slice(q + 1).split('&') }
}

/** `url` less its fragment and every `name` parameter of its query (a `?` left with nothing after it goes too). */
export function withoutQuery (url: string, name: string): string {
  const { path, parts } = splitQuery(url)
  const kept = parts.filter((p) => p !== '' && !isParam(p, name))
  return kept.length === 0 ? path : path + '?' + kept.join('&')
}

/** Does a request to `url` with the client's cursor `lastId` carry a cursor (its own, or one the URL was given)? */
export function sendsCursor (url: string, lastId: string | null): boolean {
  return lastId !== null || hasQuery(url, 'last_event_id')
}

/**
 * The longest `?last_event_id=` (or `Last-Event-ID`) a server reads, as sent (§2.3, as Nchan): a
 * longer one is skipped there, as if the client had sent none, and the stream starts from the
 * oldest message.
 */
export const MAX_QUERY_CURSOR = 128

/**
 * `url` with `last_event_id=<id>`, or null when the id does not fit in MAX_QUERY_CURSOR. An id's
 * own characters (digits, `:`, `,`, `[`, `]`, `-`) go as they are: escaped, each would take three
 * of the 128 bytes, and a vector of some thirty channels would no longer fit.
 */
export function withCursor (url: string, id: string): string | null {
  const value = id.replace(/[^0-9:,[\]-]/g, (c) => encodeURIComponent(c))
  return value.length > MAX_QUERY_CURSOR ? null : withRawQuery(url, 'last_event_id', value)
}

/**
 * The `exp` of a JWT in ms since the epoch, read from its payload without verifying anything (the
 * server verifies; the client only needs to know when to renew). Null when the token is not a JWT
 * or has no numeric `exp`.
 */
export function tokenExpiry (token: string): number | null {
  const parts = token.split('.')
  if (parts.length !== 3) return null
  try {
    const b64 = parts[1]!.replace(/-/g, '+').replace(/_/g, '/')
    const bin = atob(b64 + '='.repeat((4 - b64.length % 4) % 4))
    const bytes = new Uint8Array(bin.length)
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i)
    const claims = JSON.parse(new TextDecoder().decode(bytes)) as { exp?: unknown } | null
    const exp = claims?.exp
    return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : null
  } catch {
    return null
  }
}

/** What a refusal says (RFC 6750 §3): the `error` code and the best human-readable reason. */
export interface AuthChallenge {
  /** `invalid_token`, `insufficient_scope`, …; undefined when the challenge names none. */
  error: string | undefined
  reason: string
}

/**
 * Read a 401/403: `error_description` of `WWW-Authenticate`, else the body's first line, else the
 * `error` code, else `HTTP <status>`.
 */
export function authChallenge (status: number, wwwAuthenticate: string | null, body = ''): AuthChallenge {
  const param = (name: string): string | undefined => {
    if (wwwAuthenticate === null) return undefined
    const m = new RegExp(`(?:^|[\\s,])${name}="((?:[^"\\\\]|\\\\.)*)"`).exec(wwwAuthenticate) ?? new RegExp(`(?:^|[\\s,])${name}=([^\\s,"]+)`).exec(wwwAuthenticate)
    return m === null ? undefined : m[1]!.replace(/\\(.)/g, '$1')
  }
  const error = param('error')
  const text = body.split(/\r?\n/, 1)[0]!.trim().slice(0, 200)
  return { error, reason: param('error_description') ?? (text !== '' ? text : error ?? `HTTP ${status}`) }
}

/** The boundary of a `multipart/mixed` Content-Type, or null for any other type. */
export function multipartBoundary (type: string | null | undefined): string | null {
  if (type === null || type === undefined || !/^\s*multipart\/mixed\s*;/i.test(type)) return null
  const m = /;\s*boundary=(?:"([^"]+)"|([^\s;]+))/i.exec(type)
  return m === null ? null : (m[1] ?? m[2]!)
}

/**
 * The parts of a `multipart/mixed` body (a long-poll answer with several messages, the server's
 * `longpollMultipart`, §5): each part's Content-Type and bytes, in order; null when the body is
 * not one.
 */
export function multipartParts (body: Uint8Array, boundary: string): Array<{ contentType: string | undefined, data: Uint8Array }> | null {
  const text = new TextDecoder('latin1').decode(body)
  const delimiter = '--' + boundary
  if (!text.startsWith(delimiter)) return null
  const parts: Array<{ contentType: string | undefined, data: Uint8Array }> = []
  let pos = delimiter.length
  while (!text.startsWith('--', pos)) {
    if (!text.startsWith('\r\n', pos)) return null
    const headEnd = text.indexOf('\r\n\r\n', pos)
    if (headEnd === -1) return null
    // the head is at least the CRLF after the delimiter (an empty head: CRLF CRLF at once)
    const head = headEnd === pos ? '' : text.slice(pos + 2, headEnd)
    const next = text.indexOf('\r\n' + delimiter, headEnd + 4)
    if (next === -1) return null
    const type = /(?:^|\r\n)content-type:[ \t]*([^\r\n]*)/i.exec(head)
    parts.push({ contentType: type === null ? undefined : type[1]!.trim(), data: body.subarray(headEnd + 4, next) })
    pos = next + 2 + delimiter.length
  }
  return parts
}
