// The Parkline client's transports, one small class each with the same shape (centrifuge-js
// src/transport_*.ts): `supported()`, `open(lastId)`, `close()`, and four callbacks. A transport
// delivers messages of one connection and reports how it ended; choosing the next transport and the
// delay is the Parkline class's job (parkline.ts).
//
//   websocket    WebSocket with the `ws+meta.parkline` (or `ws+meta.nchan`) subprotocol (§7)
//   eventsource  text/event-stream read with fetch (§6), so `: hi` is visible (buffering proxies)
//                and it works the same in browsers and Node 24 (which has no global EventSource)
//   longpoll     one GET per message, walking with If-Modified-Since / If-None-Match (§5)
//
// A token (access control) goes where the transport allows: `Authorization: Bearer` on every fetch
// (eventsource, longpoll, probes), `?access_token=` on the WebSocket URL (browsers cannot set
// headers on a WebSocket; the server must allow it with `tokenInQuery`). 401 and 403 are reported
// as `auth` in CloseInfo, never as a reason to fall back: another transport would be refused too.
import {
  MAX_QUERY_CURSOR, type SseEvent, SseParser, authChallenge, cursorHeaders, longpollId, multipartBoundary, multipartParts, parseId, parseWsMeta, parseWsMetaBytes, retryAfterMs, sendsCursor, withCursor, withQuery
} from './wire.ts'

export type TransportName = 'websocket' | 'eventsource' | 'longpoll'

export const TRANSPORT_NAMES: readonly TransportName[] = ['websocket', 'eventsource', 'longpoll']

/** The subset of the WebSocket API the client uses (browsers' and Node 24's global WebSocket). */
export interface WebSocketLike {
  readonly protocol: string
  binaryType: string
  onopen: ((ev: unknown) => void) | null
  onmessage: ((ev: { data: unknown }) => void) | null
  onclose: ((ev: { code: number, reason: string, wasClean?: boolean }) => void) | null
  onerror: ((ev: unknown) => void) | null
  close (code?: number, reason?: string): void
}

export type WebSocketCtor = new (url: string, protocols?: string | string[]) => WebSocketLike

export type FetchLike = (input: string, init?: {
  headers?: Record<string, string>
  signal?: AbortSignal
  cache?: 'no-store'
  credentials?: 'include' | 'same-origin' | 'omit'
}) => Promise<{
  status: number
  headers: { get (name: string): string | null }
  body: { getReader (): { read (): Promise<{ done: boolean, value?: Uint8Array }>, cancel (): Promise<void> } } | null
  text (): Promise<string>
  arrayBuffer (): Promise<ArrayBuffer>
}>

/** Everything a transport needs; built once by the Parkline client. */
export interface TransportContext {
  /** Absolute http(s) URL of the subscriber location. */
  url: string
  /** The same location as ws(s). */
  wsUrl: string
  connectTimeout: number
  keepalive: number
  probeTimeout: number
  credentials: 'include' | 'same-origin'
  WebSocket: WebSocketCtor | undefined
  fetch: FetchLike | undefined
  /** Another transport of the client's order carries a cursor in headers (EventSource, long-poll). */
  cursorElsewhere: boolean
}

export interface DeliveredMeta {
  id: string | undefined
  contentType: string | undefined
  /** SSE event name from `X-EventSource-Event`, when there was one. */
  event: string | undefined
}

/** How a connection ended. */
export interface CloseInfo {
  /** The connection got as far as its first bytes (WebSocket open, SSE body, long-poll answer or park). */
  opened: boolean
  /** Human-readable cause, e.g. `close 1001 410 Gone`, `HTTP 503`, `no first byte in 5000 ms`. */
  reason: string
  /** What the server asked for: `retry:` or `Retry-After`, in ms; null when it said nothing. */
  hint: number | null
  /** The server refused for now (503, `:503:`, overflow): wait `hint`, then try the same transport. */
  refused: boolean
  /** This transport does not work on this path (blocked, black-holed, buffered): use the next one. */
  fallback: boolean
  /** The server rejected the cursor (400): restart without it. */
  badCursor: boolean
  /** The server ended the connection within the protocol (close frame, `:410:`, an HTTP status). */
  clean: boolean
  /**
   * Access control: the server refused the credential (401, 403) or ended the connection because
   * its token expired or was revoked (`:401: …`, WebSocket close 1008, long-poll 401). Null otherwise.
   */
  auth: AuthEnd | null
}

/** A refusal or an end for access control. */
export interface AuthEnd {
  /** 401 (no, bad, expired or revoked token) or 403 (the token does not grant the channel). */
  status: number
  /** RFC 6750 `error` (`invalid_token`, `insufficient_scope`), when the server named one. */
  error: string | undefined
  /** `token expired`, `revoked`, the error description or the body of the refusal. */
  reason: string
}

export interface TransportCallbacks {
  onOpen (): void
  onMessage (data: string | ArrayBuffer, meta: DeliveredMeta): void
  /** Several messages that came together (a multipart long-poll answer), the last with the answer's id. */
  onMessages (list: Array<[string | ArrayBuffer, DeliveredMeta]>): void
  onGap (requested: string, resumed: string | undefined): void
  /** Called exactly once per `open()`, unless `close()` was called first. */
  onClose (info: CloseInfo): void
}

export interface ClientTransport {
  readonly name: TransportName
  /** The environment has what this transport needs (feature detection; runtime failures fall back). */
  supported (): boolean
  /** Connect, resuming after `lastId`, with `token` (a bearer token) when there is one. */
  open (lastId: string | null, token?: string | null): void
  /** Stop without calling onClose. */
  close (): void
}

function closeInfo (opened: boolean, reason: string, extra: Partial<CloseInfo> = {}): CloseInfo {
  return { opened, reason, hint: null, refused: false, fallback: false, badCursor: false, clean: false, auth: null, ...extra }
}

/** `headers` plus `Authorization: Bearer <token>` when there is a token. */
function withToken (headers: Record<string, string>, token: string | null): Record<string, string> {
  if (token !== null) headers.Authorization = 'Bearer ' + token
  return headers
}

function isAuthStatus (status: number): boolean {
  return status === 401 || status === 403
}

/**
 * What a 400 means: the cursor sent, which the server could not read (`Message ID invalid`, §2.3:
 * the client starts over from the oldest message); a credential it could not read (a `Bearer`
 * challenge, as `invalid_request`: an auth end); or anything else (a channel id or a header it
 * refuses), which the same request would get again: it waits, with backoff, and keeps its cursor.
 */
function badRequest (headers: { get (name: string): string | null }, body: string, sentCursor: boolean): 'cursor' | 'auth' | 'other' {
  if (headers.get('WWW-Authenticate') !== null) return 'auth'
  return sentCursor && /message id/i.test(body) ? 'cursor' : 'other'
}

/** The AuthEnd of a 401/403 answer (its body read when the caller has it). */
function authEnd (status: number, headers: { get (name: string): string | null }, body = ''): AuthEnd {
  return { status, ...authChallenge(status, headers.get('WWW-Authenticate'), body) }
}

/** Ask for the next message after `lastId` with one long-poll GET: the id it answers with, or null. */
async function probeOnce (ctx: TransportContext, lastId: string | null, token: string | null, signal: AbortSignal): Promise<string | undefined | null> {
  const res = await ctx.fetch!(ctx.url, {
    headers: withToken(lastId === null ? {} : (cursorHeaders(lastId) ?? {}), token), signal, cache: 'no-store', credentials: ctx.credentials
  })
  // only the head is read: the body is let go, so its connection does not wait for a reader
  res.body?.getReader().cancel().catch(() => {})
  if (res.status !== 200) return null
  return longpollId(res.headers.get('Last-Modified'), res.headers.get('Etag'))
}

// Node: undici publishes every ping a WebSocket receives on a diagnostics channel, so the silence
// watchdog can count pings there (browsers hide pings from scripts: there the watchdog probes).
type PingListener = (msg: unknown) => void
const pingTargets = new WeakMap<object, () => void>()
let pingHooked = false
function hookPings (): void {
  if (pingHooked) return
  pingHooked = true
  try {
    const p = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process
    const dc = p?.getBuiltinModule?.('node:diagnostics_channel') as { subscribe?: (name: string, fn: PingListener) => void } | undefined
    dc?.subscribe?.('undici:websocket:ping', (msg) => {
      const ws = (msg as { websocket?: object } | null)?.websocket
      if (ws !== undefined) pingTargets.get(ws)?.()
    })
  } catch {}
}

const WS_PROTOCOLS = ['ws+meta.nchan', 'ws+meta.parkline']

/**
 * WebSocket (§7). Offers `ws+meta.nchan` first: Nchan only answers a header that starts with it,
 * while Parkline picks `ws+meta.parkline` from anywhere in the list (and so adds `gap:` lines).
 * Fails over when the socket does not open within connectTimeout, and when it stays silent (no
 * message, no ping) for `keepalive` ms while a long-poll probe shows a message it never delivered.
 */
export class WebSocketTransport implements ClientTransport {
  readonly name = 'websocket'
  #ctx: TransportContext
  #cb: TransportCallbacks
  #ws: WebSocketLike | null = null
  #timer: ReturnType<typeof setTimeout> | null = null
  #probe: AbortController | null = null
  #opened = false
  #done = true
  #lastId: string | null = null
  #token: string | null = null
  #seen: string[] = []
  /** The cursor this connection could not carry (WebSocket alone, a vector too long for a URL). */
  #startsOver: string | null = null

  constructor (ctx: TransportContext, cb: TransportCallbacks) {
    this.#ctx = ctx
    this.#cb = cb
  }

  supported (): boolean {
    return typeof this.#ctx.WebSocket === 'function'
  }

  open (lastId: string | null, token: string | null = null): void {
    this.#done = false
    this.#opened = false
    this.#startsOver = null
    this.#lastId = lastId
    this.#token = token
    this.#seen = []
    let url = lastId === null ? this.#ctx.wsUrl : withCursor(this.#ctx.wsUrl, lastId)
    if (url === null) {
      // a cursor past what a server reads from a URL (a vector of many channels): it would start
      // from the oldest message, every one again. The next transport carries it in headers; with
      // none (WebSocket alone), it goes anyway, and the server starts from the oldest message
      if (this.#ctx.cursorElsewhere) {
        this.#finish(closeInfo(false, `websocket: a cursor of ${lastId!.length} bytes does not fit a URL (${MAX_QUERY_CURSOR} at most)`, { fallback: true }))
        return
      }
      url = withQuery(this.#ctx.wsUrl, 'last_event_id', lastId!)
      // which may repeat messages and cannot say what was missed: the app is told, as for a gap
      this.#startsOver = lastId
    }
    // the one transport that cannot send a header: RFC 6750 §2.3 (the server needs tokenInQuery)
    if (token !== null) url = withQuery(url, 'access_token', token)
    let ws: WebSocketLike
    try {
      ws = new this.#ctx.WebSocket!(url, WS_PROTOCOLS)
    } catch (err) {
      this.#finish(closeInfo(false, `websocket: ${(err as Error).message}`, { fallback: true }))
      return
    }
    this.#ws = ws
    ws.binaryType = 'arraybuffer'
    this.#arm(this.#ctx.connectTimeout, () => {
      this.#finish(closeInfo(false, `websocket: not open after ${this.#ctx.connectTimeout} ms`, { fallback: true }))
    })
    ws.onopen = () => {
      if (this.#done) return
      this.#opened = true
      // the connect timer ends here (with keepalive 0 no silence watchdog replaces it)
      if (this.#timer !== null) clearTimeout(this.#timer)
      this.#timer = null
      this.#quiet()
      this.#cb.onOpen()
      const over = this.#startsOver
      this.#startsOver = null
      if (over !== null && !this.#done) this.#cb.onGap(over, undefined)
    }
    ws.onmessage = (ev) => {
      if (this.#done) return
      this.#quiet()
      this.#frame(ev.data)
    }
    ws.onclose = (ev) => {
      if (this.#done) return
      const reason = `websocket close ${ev.code}${ev.reason === '' ? '' : ' ' + ev.reason}`
      // 1008 policy: the server ended it for access control (`token expired`, `revoked`)
      if (ev.code === 1008) {
        this.#finish(closeInfo(this.#opened, reason, { clean: true, auth: { status: 401, error: 'invalid_token', reason: ev.reason === '' ? 'policy violation' : ev.reason } }))
        return
      }
      // 1001 503 (shutdown), 1013 (overflow): the server wants us back, just not at once
      const refused = ev.code === 1013 || (ev.code === 1001 && ev.reason.startsWith('503'))
      const info = closeInfo(this.#opened, reason, { refused, fallback: !this.#opened, clean: ev.code !== 1006 })
      if (!this.#opened && ev.code === 1006 && this.#ctx.fetch !== undefined) this.#whyRefused(info)
      else this.#finish(info)
    }
    ws.onerror = () => {}
    if (this.#ctx.keepalive > 0) {
      hookPings()
      pingTargets.set(ws, () => { if (!this.#done && this.#opened) this.#quiet() })
    }
  }

  /**
   * The handshake failed, and no WebSocket API says with which status. Ask once with fetch (the
   * same credentials, `Accept: text/event-stream`, aborted once the head and the first bytes have
   * come): a 401 or 403 there is an access-control refusal, not a reason to fall back; a server at
   * its connection limit or shutting down (503 or 429, or the event stream's `:503:` or `:429:` line, §11b)
   * asks for a wait on the same transport, not before its hint; anything else (200, a timeout, a
   * network error) keeps the original verdict.
   */
  #whyRefused (info: CloseInfo): void {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    const ac = new AbortController()
    this.#probe = ac
    const stop = setTimeout(() => ac.abort(), Math.min(this.#ctx.probeTimeout, this.#ctx.connectTimeout))
    // with the cursor the handshake carried: a cursor the server refuses (400) is not a reason to
    // fall back either, but to start over from the oldest message (badCursor: a gap event)
    const url = this.#lastId === null ? this.#ctx.url : (withCursor(this.#ctx.url, this.#lastId) ?? this.#ctx.url)
    this.#ctx.fetch!(url, {
      headers: withToken({ Accept: 'text/event-stream' }, this.#token), signal: ac.signal, cache: 'no-store', credentials: this.#ctx.credentials
    }).then(async (res) => {
      if (res.status === 400) {
        const body = await res.text().catch(() => '')
        const bad = badRequest(res.headers, body, sendsCursor(this.#ctx.wsUrl, this.#lastId))
        if (bad === 'cursor') return closeInfo(false, `websocket: handshake refused, HTTP 400 ${body.trim()}`, { badCursor: true })
        if (bad === 'auth') {
          const auth = authEnd(400, res.headers, body)
          return closeInfo(false, `websocket: handshake refused, HTTP 400 ${auth.reason}`, { clean: true, auth })
        }
        return info
      }
      if (res.status === 503 || res.status === 429) {
        return closeInfo(false, `websocket: handshake refused, HTTP ${res.status}`, { refused: true, hint: retryAfterMs(res.headers.get('Retry-After')) })
      }
      if (res.status === 200 && res.body !== null) {
        // Parkline writes `: hi`, `retry:` and `:503:` (or `:429:`) of a refused stream at once (§11b)
        const first = await res.body.getReader().read().catch(() => ({ value: undefined }))
        const text = first.value === undefined ? '' : new TextDecoder().decode(first.value)
        const end = /(^|\n):(503|429):/.exec(text)
        if (end !== null) {
          const retry = /(^|\n)retry: *(\d+)/.exec(text)
          return closeInfo(false, `websocket: handshake refused (:${end[2]!}:)`, { refused: true, hint: retry === null ? null : Number(retry[2]) })
        }
        return info
      }
      if (!isAuthStatus(res.status)) return info
      const body = await res.text().catch(() => '')
      const auth = authEnd(res.status, res.headers, body)
      return closeInfo(false, `websocket: handshake refused, HTTP ${res.status} ${auth.reason}`, { clean: true, auth })
    }, () => info).then((result) => {
      clearTimeout(stop)
      ac.abort()
      if (this.#probe === ac) this.#probe = null
      this.#finish(result)
    }, () => {})
  }

  /** (Re)start the silence watchdog. */
  #quiet (): void {
    if (this.#ctx.keepalive <= 0 || this.#probe !== null) return
    this.#arm(this.#ctx.keepalive, () => { this.#checkSilence() })
  }

  #arm (ms: number, fn: () => void): void {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = setTimeout(() => { this.#timer = null; fn() }, ms)
  }

  /**
   * Silent for a whole keepalive window. Browsers hide pings, so ask the server directly: one
   * long-poll for the next message after our cursor. An answer this socket never delivered means
   * the socket is dead (a proxy that passed the handshake and swallows frames); a park means the
   * channel is simply idle.
   */
  #checkSilence (): void {
    if (this.#done || this.#ctx.fetch === undefined) return
    const ac = new AbortController()
    this.#probe = ac
    const stop = setTimeout(() => ac.abort(), this.#ctx.probeTimeout)
    probeOnce(this.#ctx, this.#lastId, this.#token, ac.signal).then(async (id) => {
      if (id !== undefined && id !== null && !this.#seen.includes(id)) {
        // give the socket a moment in case the message is on its way on both paths
        await new Promise((resolve) => setTimeout(resolve, 250))
        if (!this.#done && !this.#seen.includes(id)) {
          this.#finish(closeInfo(true, `websocket silent for ${this.#ctx.keepalive} ms and missed ${id}`, { fallback: true }))
        }
      }
    }, () => {}).finally(() => {
      clearTimeout(stop)
      if (this.#probe === ac) this.#probe = null
      if (!this.#done) this.#quiet()
    })
  }

  #frame (data: unknown): void {
    const isText = typeof data === 'string'
    let meta = null
    let body: string | ArrayBuffer
    if (isText) {
      meta = this.#ws!.protocol === '' ? null : parseWsMeta(data)
      body = meta === null ? data : data.slice(meta.length)
      // octet-stream spelled otherwise goes in a text frame (docs/api.md 8.2, as Nchan): its bytes,
      // as long-poll gives them (they were UTF-8, so encoding the text gives them back)
      if (meta !== null && mediaType(meta.contentType) === 'application/octet-stream') body = new TextEncoder().encode(body).buffer
    } else {
      const buf = data as ArrayBuffer
      meta = this.#ws!.protocol === '' ? null : parseWsMetaBytes(new Uint8Array(buf))
      // binary with meta lines: a body that is not UTF-8, or a Content-Type with a byte past ASCII
      // (docs/api.md 8.2); a UTF-8 body is text here too, as a long-poll gives it, unless octet-stream
      body = meta === null ? buf : mediaType(meta.contentType) === 'application/octet-stream' ? buf.slice(meta.length) : textOrBytes(new Uint8Array(buf, meta.length))
    }
    if (meta?.id !== undefined) {
      this.#lastId = meta.id
      this.#seen.push(meta.id)
      if (this.#seen.length > 64) this.#seen.shift()
    }
    // one gap event per channel that lost messages (a `gap:` line each)
    if (meta?.gap !== undefined) for (const g of meta.gap.split(' ')) this.#cb.onGap(g, meta.id)
    // (with meta lines the type is theirs, none where they name none; a plain binary frame says no more than that)
    this.#cb.onMessage(body, { id: meta?.id, contentType: meta !== null ? meta.contentType : (isText ? undefined : 'application/octet-stream'), event: undefined })
  }

  #finish (info: CloseInfo): void {
    if (this.#done) return
    this.close()
    this.#cb.onClose(info)
  }

  close (): void {
    this.#done = true
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    this.#probe?.abort()
    this.#probe = null
    const ws = this.#ws
    this.#ws = null
    if (ws !== null) {
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null
      try { ws.close() } catch {}
    }
  }
}

/**
 * EventSource stream (§6) read with fetch. Resumes with `?last_event_id=` (a header would force a
 * CORS preflight, which Nchan does not allow), or, for a cursor past what a server reads from the
 * query (128 bytes), with If-Modified-Since and If-None-Match and asks for gap events with `?parkline_gap=event`
 * (§11a). The stream counts as open only once body bytes arrive: Parkline and Nchan both send
 * `: hi` at once, so nothing within connectTimeout means a buffering proxy sits in between.
 */
export class EventSourceTransport implements ClientTransport {
  readonly name = 'eventsource'
  #ctx: TransportContext
  #cb: TransportCallbacks
  #ac: AbortController | null = null
  #timer: ReturnType<typeof setTimeout> | null = null
  #done = true
  #opened = false
  #retry: number | null = null
  #ended: string | null = null
  #endStatus = 0
  #token: string | null = null
  /** A cursor too long for the query, as headers (open). */
  #cursor: Record<string, string> | null = null
  /** The last open sent a cursor (in the query or in headers). */
  #sentCursor = false
  /** When the stream's last bytes came (performance.now(): a monotonic clock). */
  #heardAt = 0
  /** When the last keepalive came on this connection (0: none yet). */
  #pingAt = 0
  /**
   * Silence that ends the stream (ms): 0 until the server showed, with two keepalives (a bare `:`
   * comment, or `event: ping`), that it sends them; then `keepalive`, or twice the longest time
   * between two of them if more (a server whose interval is longer than ours), at most 4 ×
   * `keepalive`
   */
  #silence = 0
  /** The watchdog's last turn came far past its time (a frozen tab, a stalled process). */
  #late = false
  /** This response's `Parkline-Keepalive` (seconds; NaN where the head has none). */
  #headKeepalive = NaN

  constructor (ctx: TransportContext, cb: TransportCallbacks) {
    this.#ctx = ctx
    this.#cb = cb
  }

  supported (): boolean {
    return typeof this.#ctx.fetch === 'function' && typeof TextDecoder === 'function'
  }

  open (lastId: string | null, token: string | null = null): void {
    this.#done = false
    this.#token = token
    const ac = new AbortController()
    this.#ac = ac
    let url = withQuery(this.#ctx.url, 'parkline_gap', 'event')
    this.#cursor = null
    // (a cursor the URL was given counts: a 400 for it is a cursor the server cannot read)
    this.#sentCursor = sendsCursor(this.#ctx.url, lastId)
    if (lastId !== null) {
      const resumed = withCursor(url, lastId)
      // past what a server reads from the query (a vector of many channels): If-Modified-Since and
      // If-None-Match, which carry any length (§2.3; a CORS preflight, which Parkline answers)
      if (resumed === null) this.#cursor = cursorHeaders(lastId)
      else url = resumed
    }
    this.#timer = setTimeout(() => {
      this.#finish(closeInfo(false, `eventsource: no first byte in ${this.#ctx.connectTimeout} ms`, { fallback: true }))
    }, this.#ctx.connectTimeout)
    this.#run(url, ac.signal).catch((err: unknown) => {
      this.#finish(closeInfo(this.#opened, `eventsource: ${(err as Error)?.message ?? String(err)}`, { hint: this.#retry, fallback: !this.#opened }))
    })
  }

  async #run (url: string, signal: AbortSignal): Promise<void> {
    this.#opened = false
    this.#retry = null
    this.#ended = null
    this.#endStatus = 0
    this.#silence = 0
    this.#pingAt = 0
    const res = await this.#ctx.fetch!(url, {
      headers: withToken({ Accept: 'text/event-stream', ...this.#cursor }, this.#token), signal, cache: 'no-store', credentials: this.#ctx.credentials
    })
    if (this.#done) return
    if (isAuthStatus(res.status)) {
      const body = await res.text().catch(() => '')
      if (this.#done) return
      const auth = authEnd(res.status, res.headers, body)
      this.#finish(closeInfo(false, `eventsource: HTTP ${res.status} ${auth.reason}`, { clean: true, auth }))
      return
    }
    if (res.status !== 200) {
      const hint = retryAfterMs(res.headers.get('Retry-After'))
      let bad: 'cursor' | 'auth' | 'other' | null = null
      if (res.status === 400) {
        const body = await res.text().catch(() => '')
        if (this.#done) return
        bad = badRequest(res.headers, body, this.#sentCursor)
        if (bad === 'auth') {
          const auth = authEnd(400, res.headers, body)
          this.#finish(closeInfo(false, `eventsource: HTTP 400 ${auth.reason}`, { clean: true, auth }))
          return
        }
      }
      const refused = res.status === 503 || res.status === 429 || bad === 'other'
      this.#finish(closeInfo(false, `eventsource: HTTP ${res.status}`, {
        hint, refused, badCursor: bad === 'cursor', fallback: !refused && bad === null
      }))
      return
    }
    const type = res.headers.get('Content-Type') ?? ''
    if (!type.startsWith('text/event-stream') || res.body === null) {
      this.#finish(closeInfo(false, `eventsource: answered ${type === '' ? 'without a type' : type}`, { fallback: true }))
      return
    }
    this.#headKeepalive = Number(res.headers.get('Parkline-Keepalive'))
    const parser = new SseParser(
      (ev) => { this.#event(ev) },
      (text) => {
        if (text.trim() === '') this.#keptAlive()
        // `:503: 503 Service Unavailable`, `:410: 410 Gone`, `:408: …`: the server ends the stream
        const m = /^(\d{3}): ?(.*)$/.exec(text)
        if (m !== null) {
          this.#ended = m[2] === '' ? m[1]! : m[2]!
          this.#endStatus = Number(m[1])
        }
      },
      (ms) => { this.#retry = ms },
      // `event: ping` with no data (Parkline's `ping: event`, Nchan's): never dispatched
      (event) => { if (event === 'ping') this.#keptAlive() }
    )
    const reader = res.body.getReader()
    const decoder = new TextDecoder()
    for (;;) {
      const { done, value } = await reader.read()
      if (this.#done) { reader.cancel().catch(() => {}); return }
      if (done) break
      if (value !== undefined && value.length > 0) {
        this.#heardAt = performance.now()
        // the first bytes are read before the stream counts as open: a server at its limit answers
        // `200`, `retry:` and `:503:` (`:429:`, a `:401:`) at once, a refusal that never opened
        parser.feed(decoder.decode(value, { stream: true }))
        if (this.#done) return
        if (!this.#opened) {
          if (this.#ended !== null && refusesAtOpen(this.#endStatus)) break
          if (!this.#markOpen()) return
        }
      }
    }
    const ended = this.#ended as string | null // set by the parser callbacks
    const endStatus = this.#endStatus as number
    // `:401: token expired`, `:401: revoked`: access control ended the stream
    const auth = ended !== null && isAuthStatus(endStatus) ? { status: endStatus, error: 'invalid_token', reason: ended } : null
    // `:503:` (the server is full or draining), `:429:` (this user holds its limit of subscriptions)
    const refused = auth === null && ended !== null && (ended.startsWith('503') || ended.startsWith('429') || ended === 'overflow')
    this.#finish(closeInfo(this.#opened, ended === null ? 'eventsource: stream ended' : `eventsource: ${ended}`, {
      hint: this.#retry, refused, fallback: !this.#opened && ended === null, clean: ended !== null, auth
    }))
  }

  /** The stream is open (its first bytes, or a message): false when a listener closed it. */
  #markOpen (): boolean {
    if (this.#opened) return !this.#done
    this.#opened = true
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    this.#cb.onOpen()
    if (this.#done) return false
    this.#keepsAlive(this.#headKeepalive)
    return !this.#done
  }

  #event (ev: SseEvent): void {
    // a message or gap in the first bytes: open first, so `connect` comes before what it carries
    if (ev.event !== 'ping' && !this.#markOpen()) return
    // (a published message always has an id line: one named like a control event is a message)
    if (ev.ownId) {
      this.#cb.onMessage(ev.data, { id: ev.id === '' ? undefined : ev.id, contentType: undefined, event: ev.event })
      return
    }
    if (ev.event === 'parkline-gap') {
      try {
        const g = JSON.parse(ev.data) as { requested?: string, resumed?: string }
        if (typeof g.requested === 'string') this.#cb.onGap(g.requested, g.resumed)
      } catch {}
      return
    }
    if (ev.event === 'parkline-overflow') {
      this.#ended = 'overflow'
      return
    }
    if (ev.event === 'ping') {
      this.#keptAlive()
      return
    }
    this.#cb.onMessage(ev.data, { id: ev.id === '' ? undefined : ev.id, contentType: undefined, event: ev.event })
  }

  /**
   * The server sends keepalives, so a stream silent past `#silence` is dead (a path gone without a
   * FIN, a proxy that stopped passing bytes): the watchdog starts at the open where the head says
   * the interval (#keepsAlive), else with the second keepalive, when the time between two tells it
   * (a server on a fixed schedule may send its first one just after the open). Servers that send
   * none (Nchan by default) are not watched: an idle channel is silent there.
   */
  /**
   * Parkline says in the stream's head how often it sends keepalives (`Parkline-Keepalive: <s>`):
   * watched from the open, however busy the channel (a server writing messages sends no keepalive,
   * so a dead path under a busy channel would otherwise never be seen).
   */
  #keepsAlive (seconds: number): void {
    const k = this.#ctx.keepalive
    if (this.#done || k <= 0 || !(seconds > 0) || this.#silence !== 0) return
    this.#silence = Math.min(4 * k, Math.max(k, 2 * seconds * 1000))
    this.#heardAt = performance.now()
    this.#watch(this.#silence)
  }

  #keptAlive (): void {
    const k = this.#ctx.keepalive
    if (this.#done || k <= 0) return
    const now = performance.now()
    const prev = this.#pingAt
    this.#pingAt = now
    if (prev === 0) return
    const was = this.#silence
    this.#silence = Math.min(4 * k, Math.max(was, k, 2 * (now - prev)))
    if (was === 0) this.#watch(this.#silence)
  }

  #watch (ms: number): void {
    const due = performance.now() + ms
    this.#timer = setTimeout(() => {
      this.#timer = null
      if (this.#done) return
      const now = performance.now()
      // this turn came far past its time: the silence may have been this process's own (a frozen
      // tab, a stalled loop), not the path's; it is judged once more, a whole window later
      if (now - due > this.#silence / 2 && !this.#late) {
        this.#late = true
        this.#watch(this.#silence)
        return
      }
      this.#late = false
      const quiet = now - this.#heardAt
      if (quiet < this.#silence) {
        this.#watch(this.#silence - quiet)
        return
      }
      // resumes on this transport from the last id, as after any drop
      this.#finish(closeInfo(true, `eventsource: silent for ${Math.round(quiet)} ms, keepalives stopped`, {}))
    }, ms)
  }

  #finish (info: CloseInfo): void {
    if (this.#done) return
    this.close()
    this.#cb.onClose(info)
  }

  close (): void {
    this.#done = true
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    this.#ac?.abort()
    this.#ac = null
  }
}

/** An end status in a stream's first bytes that means it was refused, not opened (§6). */
function refusesAtOpen (status: number): boolean {
  return status === 503 || status === 429 || isAuthStatus(status)
}

/**
 * Long-poll (§5): one message per answer; the next request carries `If-Modified-Since` and
 * `If-None-Match` built from the last id (also on a cold start with a saved id, which Nchan
 * understands too). A request still parked after connectTimeout counts as open.
 */
/**
 * A long-poll timeout (408, 304) sooner than this after its poll: the next poll starts no sooner
 * than this after the last one started (a short subscriberTimeout: at most one poll a second).
 */
const QUICK_POLL_MS = 1000
/**
 * One sooner than this is no timeout (a proxy answering for the server): in a row, with no message
 * between, the pause doubles, from QUICK_POLL_MS to 30 s.
 */
const INSTANT_POLL_MS = 100

export class LongPollTransport implements ClientTransport {
  readonly name = 'longpoll'
  #ctx: TransportContext
  #cb: TransportCallbacks
  #ac: AbortController | null = null
  #timer: ReturnType<typeof setTimeout> | null = null
  #done = true
  #opened = false
  #lastId: string | null = null
  #token: string | null = null
  /** 408 or 304 answers in a row that came sooner than INSTANT_POLL_MS (a proxy's, not a timeout). */
  #instant = 0
  /** The parked poll's `keepalive` timer, until its answer's head comes. */
  #stale: ReturnType<typeof setTimeout> | null = null

  constructor (ctx: TransportContext, cb: TransportCallbacks) {
    this.#ctx = ctx
    this.#cb = cb
  }

  supported (): boolean {
    return typeof this.#ctx.fetch === 'function'
  }

  open (lastId: string | null, token: string | null = null): void {
    this.#done = false
    this.#opened = false
    this.#lastId = lastId
    this.#token = token
    this.#loop().catch((err: unknown) => {
      this.#finish(closeInfo(this.#opened, `longpoll: ${(err as Error)?.message ?? String(err)}`, { fallback: !this.#opened }))
    })
  }

  #markOpen (): void {
    if (this.#opened || this.#done) return
    this.#opened = true
    this.#cb.onOpen()
  }

  async #loop (): Promise<void> {
    while (!this.#done) {
      const ac = new AbortController()
      this.#ac = ac
      // a poll with no answer yet past `keepalive` is asked again from the same cursor: a path
      // that died without a FIN, or a proxy's read timeout (nginx: 60 s, then 504), would hold it
      // for ever. Only the wait for the head: an answer that is coming is read to its end. At least
      // a second past connectTimeout, so that a poll may count as open first
      let stale = false
      const keepalive = this.#ctx.keepalive
      if (keepalive > 0) this.#stale = setTimeout(() => { stale = true; ac.abort() }, Math.max(keepalive, this.#ctx.connectTimeout + 1000))
      try {
        if (await this.#poll(ac)) return
      } catch (err) {
        if (!stale || this.#done) throw err
      } finally {
        this.#answered()
        if (this.#timer !== null) clearTimeout(this.#timer)
        this.#timer = null
      }
    }
  }

  /** One poll and its answer; true when the transport is done. */
  async #poll (ac: AbortController): Promise<boolean> {
    if (!this.#opened) this.#timer = setTimeout(() => { this.#timer = null; this.#markOpen() }, this.#ctx.connectTimeout)
    const cursor = this.#lastId === null ? null : cursorHeaders(this.#lastId)
    const headers = withToken(cursor ?? {}, this.#token)
    // an id no header pair can carry (a saved one gone bad): the server judges it in the query, and
    // its 400 starts the client over from the oldest message with a gap event, as on the streams
    const url = this.#lastId !== null && cursor === null ? withCursor(this.#ctx.url, this.#lastId) ?? this.#ctx.url : this.#ctx.url
    const sent = Date.now()
    const res = await this.#ctx.fetch!(url, { headers, signal: ac.signal, cache: 'no-store', credentials: this.#ctx.credentials })
    this.#answered()
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    if (this.#done) return true
    const status = res.status
    if (status === 200) {
      this.#instant = 0
      const type = res.headers.get('Content-Type') ?? undefined
      // several messages in one answer (the server's longpollMultipart): one part each
      const boundary = multipartBoundary(type)
      // (bytes, then text only where they are UTF-8: a message is not changed on the way)
      const raw = await res.arrayBuffer()
      const body = mediaType(type) === 'application/octet-stream' || boundary !== null ? raw : textOrBytes(new Uint8Array(raw))
      if (this.#done) return true
      this.#markOpen()
      if (this.#done) return true
      const id = longpollId(res.headers.get('Last-Modified'), res.headers.get('Etag'))
      if (id === undefined || parseId(id) === null) {
        // (a proxy that strips Etag or Last-Modified): the cursor cannot move, and polling again
        // would get the same message at once, again and again: not a transport that works here
        this.#finish(closeInfo(this.#opened, 'longpoll: an answer without a readable id (Last-Modified and Etag)', { fallback: true }))
        return true
      }
      if (id === this.#lastId) {
        // the server never answers a cursor with its own message: a cache on the path (one that
        // ignores `no-cache`) served the last answer again, and would at every poll
        this.#finish(closeInfo(this.#opened, `longpoll: the answer repeats the message of the cursor sent (${id}): a cache on the path?`, { fallback: true }))
        return true
      }
      const gap = res.headers.get('Parkline-Gap')
      const parts = boundary === null ? null : multipartParts(new Uint8Array(body as ArrayBuffer), boundary)
      if (boundary !== null && parts === null) {
        this.#finish(closeInfo(this.#opened, 'longpoll: a multipart answer that does not parse', { fallback: true }))
        return true
      }
      this.#lastId = id
      // one gap event per channel that lost messages: a header line each, which fetch joins with `, `
      // (an id holds commas, never a space)
      // (the id served first after the gap: an answer of several parts names only its last)
      if (gap !== null) for (const g of gap.split(', ')) this.#cb.onGap(g, parts === null ? id : undefined)
      if (this.#done) return true
      if (parts === null) {
        this.#cb.onMessage(body, { id, contentType: type, event: undefined })
        return false
      }
      // the answer's id is the last part's; the parts before it carry none (as Nchan's). Handed
      // over together: a stop() in the middle keeps the rest for the next start() (no id to
      // resume from between them)
      const list: Array<[string | ArrayBuffer, DeliveredMeta]> = []
      for (let i = 0; i < parts.length; i++) {
        const p = parts[i]!
        const data = mediaType(p.contentType) === 'application/octet-stream' ? p.data.slice().buffer : textOrBytes(p.data)
        list.push([data, { id: i === parts.length - 1 ? id : undefined, contentType: p.contentType, event: undefined }])
      }
      this.#cb.onMessages(list)
      return false
    }
    const text = await res.text().catch(() => '')
    if (this.#done) return true
    if (isAuthStatus(status)) {
      // refused, or (a parked request) ended because the token expired or was revoked
      const auth = authEnd(status, res.headers, text)
      this.#finish(closeInfo(this.#opened, `longpoll: HTTP ${status} ${auth.reason}`, { clean: true, auth }))
      return true
    }
    if (status === 408 || status === 304) {
      // subscriber timeout: poll again from the same cursor, at most once a second. Answers
      // that come at once are no timeout (a proxy answering for the server): not in a loop,
      // after a pause that grows while they keep coming
      this.#markOpen()
      const took = Date.now() - sent
      if (took >= QUICK_POLL_MS) {
        this.#instant = 0
        return false
      }
      let pause = QUICK_POLL_MS - took
      if (took < INSTANT_POLL_MS) pause = Math.min(QUICK_POLL_MS << Math.min(this.#instant++, 5), 30000)
      else this.#instant = 0
      await new Promise<void>((resolve) => { this.#timer = setTimeout(() => { this.#timer = null; resolve() }, pause) })
      return false
    }
    const hint = retryAfterMs(res.headers.get('Retry-After'))
    const bad = status === 400 ? badRequest(res.headers, text, sendsCursor(this.#ctx.url, this.#lastId)) : null
    if (bad === 'auth') {
      const auth = authEnd(400, res.headers, text)
      this.#finish(closeInfo(this.#opened, `longpoll: HTTP 400 ${auth.reason}`, { clean: true, auth }))
      return true
    }
    const refused = status === 503 || status === 429 || bad === 'other'
    // a 410 (the channel was deleted) is the protocol's answer to a parked poll: long-poll works
    // here, even when it came before the poll counted as open (connectTimeout)
    this.#finish(closeInfo(this.#opened || status === 410, `longpoll: HTTP ${status}${status === 410 ? ' Gone' : ''}`, {
      hint, refused, badCursor: bad === 'cursor', fallback: !refused && !this.#opened && bad === null && status !== 410, clean: true
    }))
    return true
  }

  #answered (): void {
    if (this.#stale !== null) clearTimeout(this.#stale)
    this.#stale = null
  }

  #finish (info: CloseInfo): void {
    if (this.#done) return
    this.close()
    this.#cb.onClose(info)
  }

  close (): void {
    this.#done = true
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    this.#answered()
    this.#ac?.abort()
    this.#ac = null
  }
}

export const TRANSPORT_CLASSES: Record<TransportName, new (ctx: TransportContext, cb: TransportCallbacks) => ClientTransport> = {
  websocket: WebSocketTransport,
  eventsource: EventSourceTransport,
  longpoll: LongPollTransport
}

/** A message's bytes as text where they are UTF-8, else as they are (an ArrayBuffer of their own). */
function textOrBytes (bytes: Uint8Array): string | ArrayBuffer {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes)
  } catch {
    return bytes.slice().buffer
  }
}

/** A Content-Type's media type, lower case, without its parameters (`Application/Octet-Stream; x=1` → `application/octet-stream`). */
function mediaType (type: string | undefined): string | undefined {
  if (type === undefined) return undefined
  const semi = type.indexOf(';')
  return (semi === -1 ? type : type.slice(0, semi)).trim().toLowerCase()
}
