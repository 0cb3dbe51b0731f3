// Conformance helpers: a raw-bytes SSE reader that keeps every byte, a long-poll walker, and one
// "driver" per transport of the registry (transports/index.ts) so a single table of cases runs
// against every transport alike; `SHOWS` says what each transport can put on the wire.
import http, { type IncomingHttpHeaders } from 'node:http'
import net from 'node:net'
import { once } from 'node:events'
import { parseResponse } from './server.ts'
import { RawStream, parseChunked, parseMultipart } from './stream.ts'

// ---- ids --------------------------------------------------------------------------------------

/** `last message id: …` of a plain publisher answer. */
export function infoId (plain: string): string {
  const m = /\r\nlast message id: (\S+)$/.exec(plain)
  if (m === null) throw new Error('no last message id in ' + JSON.stringify(plain))
  return m[1]!
}

/** Seconds and tag list of an id (`T:G` or `T:[0],-`). */
export function splitId (id: string): { seconds: number, tags: string } {
  const i = id.indexOf(':')
  return { seconds: Number(id.slice(0, i)), tags: id.slice(i + 1) }
}

export function httpDate (seconds: number): string {
  return new Date(seconds * 1000).toUTCString()
}

/** Publish with a raw body and return the status and the id the publisher reports. */
export async function pub (base: string, channel: string, body: string | Buffer = '', headers: Record<string, string> = {}, method = 'POST'): Promise<{ status: number, id: string, text: string }> {
  const res = await fetch(`${base}/pub/${channel}`, { method, body: typeof body === 'string' ? Buffer.from(body) : body, headers, signal: AbortSignal.timeout(15000) })
  const text = await res.text()
  return { status: res.status, id: res.status === 201 || res.status === 202 ? infoId(text) : '', text }
}

/** Sleep until just after the next whole second, so a short burst of publishes shares a second. */
export async function nextSecond (): Promise<void> {
  const ms = 1000 - (Date.now() % 1000) + 15
  await new Promise((resolve) => setTimeout(resolve, ms))
}

// ---- raw SSE ------------------------------------------------------------------------------------

export interface RawEvent {
  id: string | null
  event: string | null
  data: string
  /** Comment lines of this event block (`:parkline-gap …`). */
  comments: string[]
  /** The event block exactly as it came, latin1 (comments, fields and the closing blank line). */
  raw: string
}

/**
 * An SSE client over a raw socket that keeps the exact bytes after the head (`text`, latin1) and
 * parses them as the EventSource spec does (LF, CR or CRLF line ends).
 */
export class RawSse {
  socket: net.Socket
  status = 0
  head = ''
  headers: Record<string, string> = {}
  /** Every byte after the head, latin1. */
  text = ''
  events: RawEvent[] = []
  comments: string[] = []
  retries: number[] = []
  closed = false
  #headBuf = ''
  #pos = 0
  #blockStart = -1
  #pending: RawEvent = { id: null, event: null, data: '', comments: [], raw: '' }
  #hasData = false
  #waiters: Array<() => void> = []

  private constructor (socket: net.Socket) {
    this.socket = socket
  }

  static async connect (port: number, path: string, headers: Record<string, string> = {}): Promise<RawSse> {
    const socket = net.connect(port, '127.0.0.1')
    socket.on('error', () => {})
    await once(socket, 'connect')
    const c = new RawSse(socket)
    let req = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n`
    if (!Object.keys(headers).some((k) => k.toLowerCase() === 'accept')) req += 'Accept: text/event-stream\r\n'
    for (const [k, v] of Object.entries(headers)) req += `${k}: ${v}\r\n`
    socket.on('data', (d: Buffer) => c.#feed(d.toString('latin1')))
    socket.on('close', () => { c.closed = true; c.#parse(); c.#wake() })
    socket.write(req + '\r\n')
    await c.until(() => c.status !== 0)
    return c
  }

  #wake (): void {
    const w = this.#waiters
    this.#waiters = []
    for (const f of w) f()
  }

  #feed (s: string): void {
    if (this.status === 0) {
      this.#headBuf += s
      const end = this.#headBuf.indexOf('\r\n\r\n')
      if (end === -1) return
      this.head = this.#headBuf.slice(0, end + 4)
      const r = parseResponse(this.head)
      this.status = r.status
      this.headers = r.headers
      s = this.#headBuf.slice(end + 4)
      this.#headBuf = ''
    }
    this.text += s
    this.#parse()
    this.#wake()
  }

  #parse (): void {
    const s = this.text
    for (;;) {
      const start = this.#pos
      const lf = s.indexOf('\n', start)
      const cr = s.indexOf('\r', start)
      let end: number
      let len: number
      if (cr !== -1 && (lf === -1 || cr < lf)) {
        if (cr === s.length - 1 && !this.closed) return // maybe CRLF split across reads
        end = cr
        len = s.charCodeAt(cr + 1) === 10 ? 2 : 1
      } else if (lf !== -1) {
        end = lf
        len = 1
      } else {
        return
      }
      this.#pos = end + len
      this.#line(s.slice(start, end), start, this.#pos)
    }
  }

  #line (line: string, start: number, next: number): void {
    if (line === '') {
      if (this.#hasData) {
        const ev = this.#pending
        if (ev.data.endsWith('\n')) ev.data = ev.data.slice(0, -1)
        ev.raw = this.text.slice(this.#blockStart, next)
        this.events.push(ev)
      }
      this.#pending = { id: null, event: null, data: '', comments: [], raw: '' }
      this.#hasData = false
      this.#blockStart = -1
      return
    }
    if (this.#blockStart === -1) this.#blockStart = start
    if (line.startsWith(':')) {
      this.comments.push(line)
      this.#pending.comments.push(line)
      return
    }
    const i = line.indexOf(':')
    const field = i === -1 ? line : line.slice(0, i)
    let value = i === -1 ? '' : line.slice(i + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    if (field === 'data') {
      this.#pending.data += value + '\n'
      this.#hasData = true
    } else if (field === 'id') this.#pending.id = value
    else if (field === 'event') this.#pending.event = value
    else if (field === 'retry') this.retries.push(Number(value))
  }

  async until (pred: () => boolean, ms = 5000): Promise<void> {
    const deadline = Date.now() + ms
    while (!pred()) {
      if (this.closed) throw new Error('stream closed while waiting; got ' + JSON.stringify(this.text.slice(-300)))
      const left = deadline - Date.now()
      if (left <= 0) throw new Error('timed out waiting on SSE stream; got ' + JSON.stringify(this.text.slice(-300)))
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.#waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
  }

  async waitEvents (n: number, ms = 5000): Promise<RawEvent[]> {
    await this.until(() => this.events.length >= n, ms)
    return this.events
  }

  async waitText (needle: string, from = 0, ms = 5000): Promise<number> {
    await this.until(() => this.text.indexOf(needle, from) !== -1, ms)
    return this.text.indexOf(needle, from)
  }

  async waitClosed (ms = 5000): Promise<void> {
    const deadline = Date.now() + ms
    while (!this.closed) {
      const left = deadline - Date.now()
      if (left <= 0) throw new Error('stream still open')
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.#waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
  }

  close (): void {
    this.socket.destroy()
  }
}

/** The SSE event block a message must produce (§6), built independently of the server. */
export function sseFrame (id: string, body: Buffer, event: string | null = null): Buffer {
  const parts: Buffer[] = []
  if (event !== null) parts.push(Buffer.from(`event: ${event}\n`, 'latin1'))
  parts.push(Buffer.from(`id: ${id}\n`, 'latin1'))
  // a line ends at each LF (dropped) and at each lone CR, one not followed by LF (kept, then an LF)
  let start = 0
  for (let i = 0; i <= body.length; i++) {
    const end = i === body.length
    const lf = !end && body[i] === 10
    const loneCr = !end && body[i] === 13 && i + 1 < body.length && body[i + 1] !== 10
    if (!end && !lf && !loneCr) continue
    parts.push(Buffer.from('data: '), body.subarray(start, loneCr ? i + 1 : i), Buffer.from('\n'))
    start = i + 1
  }
  parts.push(Buffer.from('\n'))
  return Buffer.concat(parts)
}

// ---- long-poll ----------------------------------------------------------------------------------

export interface LpAnswer { status: number, headers: IncomingHttpHeaders, body: Buffer }

/** One long-poll GET (node:http, so headers and bytes are exactly what came). */
export function lpGet (port: number, path: string, headers: Record<string, string> = {}, agent: http.Agent | false = false): { done: Promise<LpAnswer>, abort: () => void } {
  let req: http.ClientRequest
  const done = new Promise<LpAnswer>((resolve, reject) => {
    req = http.get({ host: '127.0.0.1', port, path, headers, agent }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('error', reject)
  })
  return { done, abort: () => req.destroy() }
}

/** The id a long-poll client sees: `Date.parse(Last-Modified)/1000 + ":" + Etag` (§5). */
export function lpId (a: LpAnswer): string {
  return Date.parse(a.headers['last-modified']!) / 1000 + ':' + String(a.headers.etag)
}

/** If-Modified-Since / If-None-Match for resuming after `id`. */
export function lpCursor (id: string): Record<string, string> {
  const { seconds, tags } = splitId(id)
  return { 'If-Modified-Since': httpDate(seconds), 'If-None-Match': tags }
}

// ---- transport drivers ----------------------------------------------------------------------------

export interface Got {
  id: string
  data: Buffer
  event: string | null
  contentType: string | null
  /** Gap signal as sent: SSE comment line / event data, long-poll Parkline-Gap header. */
  gap: string | null
  /** SSE only: the event block exactly as sent. */
  raw: Buffer | null
}

export interface Ended {
  /** 410 / 408 / 503 from the server; 0 when the connection just closed. */
  status: number
  /** Long-poll status answers: their headers and body. */
  headers: IncomingHttpHeaders
  body: Buffer
}

export interface Session {
  got: Got[]
  wait (n: number, ms?: number): Promise<Got[]>
  /** Resolves when the server ends the subscription (or the connection drops). */
  ended: Promise<Ended>
  /** Drop the connection from the client side. */
  close (): void
  lastId (): string | null
}

export interface OpenOptions {
  /** Resume after this id (SSE: Last-Event-ID; long-poll: If-Modified-Since + If-None-Match). */
  cursor?: string
  /** Query string without `?`. */
  query?: string
  headers?: Record<string, string>
}

/** Where a driver connects: a `Running` server, or a conformance topology's subscriber side. */
export interface Target { port: number }

export interface Driver {
  name: 'sse' | 'longpoll' | 'multipart' | 'websocket' | 'chunked'
  open (srv: Target, path: string, opts?: OpenOptions): Promise<Session>
}

class SseSession implements Session {
  got: Got[] = []
  ended: Promise<Ended>
  c: RawSse
  #seen = 0
  #gap: string | null = null

  constructor (c: RawSse) {
    this.c = c
    this.ended = (async () => {
      await c.waitClosed(600000)
      const m = /:(\d{3}): \d{3} [^\n]*\n\n$/.exec(c.text)
      return { status: m === null ? 0 : Number(m[1]), headers: {}, body: Buffer.alloc(0) }
    })()
  }

  #collect (): void {
    const evs = this.c.events
    for (; this.#seen < evs.length; this.#seen++) {
      const ev = evs[this.#seen]!
      if (ev.event === 'parkline-gap') {
        this.#gap = ev.data
        continue
      }
      const gapComment = ev.comments.find((l) => l.startsWith(':parkline-gap '))
      this.got.push({
        id: ev.id ?? '',
        data: Buffer.from(ev.data, 'latin1'),
        event: ev.event,
        contentType: null,
        gap: gapComment ?? this.#gap,
        raw: Buffer.from(ev.raw, 'latin1')
      })
      this.#gap = null
    }
  }

  async wait (n: number, ms = 5000): Promise<Got[]> {
    await this.c.until(() => { this.#collect(); return this.got.length >= n }, ms)
    return this.got
  }

  close (): void { this.c.close() }

  lastId (): string | null {
    this.#collect()
    return this.got.length === 0 ? null : this.got[this.got.length - 1]!.id
  }
}

class LongpollSession implements Session {
  got: Got[] = []
  ended: Promise<Ended>
  #cursor: Record<string, string> = {}
  #abort: (() => void) | null = null
  #stopped = false
  #waiters: Array<() => void> = []
  #end: Ended | null = null

  constructor (port: number, path: string, opts: OpenOptions) {
    this.#cursor = opts.cursor === undefined ? {} : lpCursor(opts.cursor)
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    const fullPath = path + (opts.query === undefined ? '' : '?' + opts.query)
    this.ended = (async () => {
      try {
        while (!this.#stopped) {
          const r = lpGet(port, fullPath, { ...opts.headers, ...this.#cursor }, agent)
          this.#abort = r.abort
          const a = await r.done
          if (a.status !== 200) {
            this.#end = { status: a.status, headers: a.headers, body: a.body }
            break
          }
          const id = lpId(a)
          this.got.push({
            id,
            data: a.body,
            event: null,
            contentType: a.headers['content-type'] ?? null,
            gap: (a.headers['parkline-gap'] as string | undefined) ?? null,
            raw: null
          })
          this.#cursor = { 'If-Modified-Since': a.headers['last-modified']!, 'If-None-Match': String(a.headers.etag) }
          this.#wake()
        }
      } catch {
        // connection dropped
      }
      agent.destroy()
      this.#stopped = true
      this.#wake()
      return this.#end ?? { status: 0, headers: {}, body: Buffer.alloc(0) }
    })()
  }

  #wake (): void {
    const w = this.#waiters
    this.#waiters = []
    for (const f of w) f()
  }

  async wait (n: number, ms = 5000): Promise<Got[]> {
    const deadline = Date.now() + ms
    while (this.got.length < n) {
      if (this.#stopped) throw new Error(`long-poll ended (${this.#end?.status ?? 'dropped'}) after ${this.got.length} messages`)
      const left = deadline - Date.now()
      if (left <= 0) {
        throw new Error(`timed out waiting for ${n} long-poll messages, have ${this.got.length} (${this.got.map((g) => `${g.data.toString()}@${g.id}`).join(' ')}); ` +
          `polling with ${JSON.stringify(this.#cursor)}`)
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.#waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
    return this.got
  }

  close (): void {
    this.#stopped = true
    this.#abort?.()
  }

  lastId (): string | null {
    return this.got.length === 0 ? null : this.got[this.got.length - 1]!.id
  }
}

export const sseDriver: Driver = {
  name: 'sse',
  async open (srv, path, opts = {}) {
    const headers: Record<string, string> = { ...opts.headers }
    if (opts.cursor !== undefined) headers['Last-Event-ID'] = opts.cursor
    const c = await RawSse.connect(srv.port, path + (opts.query === undefined ? '' : '?' + opts.query), headers)
    if (c.status !== 200) throw new Error('SSE answered ' + c.status)
    return new SseSession(c)
  }
}

export const longpollDriver: Driver = {
  name: 'longpoll',
  async open (srv, path, opts = {}) {
    return new LongpollSession(srv.port, path, opts)
  }
}

/** multipart/mixed (§8): ids from each part's Last-Modified + Etag, gaps from Parkline-Gap. */
class MultipartSession implements Session {
  got: Got[] = []
  ended: Promise<Ended>
  c: RawStream
  #seen = 0

  constructor (c: RawStream) {
    this.c = c
    // the stream's end (`--\r\n`) is the same for DELETE, timeout and shutdown: no status to report
    this.ended = c.waitClosed(600000).then(() => ({ status: 0, headers: {}, body: Buffer.alloc(0) }))
  }

  #collect (): void {
    const parts = parseMultipart(this.c.text, this.c.boundary).parts
    for (; this.#seen < parts.length; this.#seen++) {
      const p = parts[this.#seen]!
      this.got.push({
        id: Date.parse(p.headers['last-modified']!) / 1000 + ':' + p.headers.etag,
        data: p.body,
        event: null,
        contentType: p.headers['content-type'] ?? null,
        gap: p.headers['parkline-gap'] ?? null,
        raw: null
      })
    }
  }

  async wait (n: number, ms = 5000): Promise<Got[]> {
    await this.c.until(() => { this.#collect(); return this.got.length >= n }, ms)
    return this.got
  }

  close (): void { this.c.close() }

  lastId (): string | null {
    this.#collect()
    return this.got.length === 0 ? null : this.got[this.got.length - 1]!.id
  }
}

export const multipartDriver: Driver = {
  name: 'multipart',
  async open (srv, path, opts = {}) {
    const headers: Record<string, string> = { ...opts.headers }
    if (opts.cursor !== undefined) headers['Last-Event-ID'] = opts.cursor
    const c = await RawStream.multipart(srv.port, path + (opts.query === undefined ? '' : '?' + opts.query), headers)
    if (c.status !== 200) throw new Error('multipart answered ' + c.status)
    return new MultipartSession(c)
  }
}

/**
 * Chunked (§8): each non-empty message is one chunk and nothing else goes on the wire, so a session
 * knows bodies only: no ids, content types or gap signals, empty messages never arrive, and the
 * stream's end (`0\r\n\r\n`) is the same for DELETE, timeout and shutdown.
 */
class ChunkedSession implements Session {
  got: Got[] = []
  ended: Promise<Ended>
  c: RawStream
  #seen = 0

  constructor (c: RawStream) {
    this.c = c
    this.ended = c.waitClosed(600000).then(() => ({ status: 0, headers: {}, body: Buffer.alloc(0) }))
  }

  #collect (): void {
    const chunks = parseChunked(this.c.text).chunks
    for (; this.#seen < chunks.length; this.#seen++) {
      this.got.push({ id: '', data: chunks[this.#seen]!, event: null, contentType: null, gap: null, raw: null })
    }
  }

  async wait (n: number, ms = 5000): Promise<Got[]> {
    await this.c.until(() => { this.#collect(); return this.got.length >= n }, ms)
    return this.got
  }

  close (): void { this.c.close() }

  /** Chunked carries no ids: a client cannot say where it stopped. */
  lastId (): string | null { return null }
}

export const chunkedDriver: Driver = {
  name: 'chunked',
  async open (srv, path, opts = {}) {
    const headers: Record<string, string> = { ...opts.headers }
    if (opts.cursor !== undefined) headers['Last-Event-ID'] = opts.cursor
    const c = await RawStream.chunked(srv.port, path + (opts.query === undefined ? '' : '?' + opts.query), headers)
    if (c.status !== 200) throw new Error('chunked answered ' + c.status)
    return new ChunkedSession(c)
  }
}

/** What a transport can show a client, so a case asserts what the wire carries and no more. */
export interface Shows {
  /** Message ids (so also resume from what was received). */
  ids: boolean
  /** The §11a gap signal. */
  gap: boolean
  /** Why the server ended the subscription (410, 408): `Ended.status`. */
  endStatus: boolean
  /** Each message's Content-Type. */
  contentType: boolean
  /** Empty messages arrive (chunked skips them: a zero-length chunk would end the stream). */
  emptyBodies: boolean
}

export const SHOWS: Readonly<Record<Driver['name'], Shows>> = {
  sse: { ids: true, gap: true, endStatus: true, contentType: false, emptyBodies: true },
  longpoll: { ids: true, gap: true, endStatus: true, contentType: true, emptyBodies: true },
  multipart: { ids: true, gap: true, endStatus: false, contentType: true, emptyBodies: true },
  websocket: { ids: true, gap: true, endStatus: true, contentType: true, emptyBodies: true },
  chunked: { ids: false, gap: false, endStatus: false, contentType: false, emptyBodies: false }
}
