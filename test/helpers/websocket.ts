// A raw WebSocket client for exact-byte tests: sends the handshake itself, keeps the `101` head
// as it came, parses server frames (which must be unmasked) and can send any frame, masked or not.
import net from 'node:net'
import { once } from 'node:events'
import { randomBytes } from 'node:crypto'
import type { Driver, Ended, Got, OpenOptions, Session } from './conformance.ts'
import { parseResponse, type Running } from './server.ts'
import WebSocket from 'ws'

export interface WsFrame { fin: boolean, rsv: number, opcode: number, masked: boolean, payload: Buffer }

export class RawWs {
  socket: net.Socket
  status = 0
  head = ''
  headers: Record<string, string> = {}
  /** Body of a non-101 answer. */
  body = ''
  frames: WsFrame[] = []
  closed = false
  #buf = Buffer.alloc(0)
  #waiters: Array<() => void> = []

  private constructor (socket: net.Socket) {
    this.socket = socket
  }

  /** Open with the standard handshake headers (`headers` may override or, with '', drop them). */
  static async connect (port: number, path: string, headers: Record<string, string> = {}): Promise<RawWs> {
    const socket = net.connect(port, '127.0.0.1')
    socket.on('error', () => {})
    await once(socket, 'connect')
    const c = new RawWs(socket)
    const all: Record<string, string> = {
      Host: '127.0.0.1',
      Upgrade: 'websocket',
      Connection: 'Upgrade',
      'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
      'Sec-WebSocket-Version': '13',
      ...headers
    }
    let req = `GET ${path} HTTP/1.1\r\n`
    for (const [k, v] of Object.entries(all)) if (v !== '') req += `${k}: ${v}\r\n`
    socket.on('data', (d: Buffer) => c.#feed(d))
    socket.on('close', () => { c.closed = true; c.#wake() })
    socket.write(req + '\r\n')
    await c.until(() => c.status !== 0)
    if (c.status !== 101) {
      // the whole body, then (Connection: close) the end of the connection
      const length = Number(c.headers['content-length'] ?? 0)
      await c.until(() => c.closed || Buffer.byteLength(c.body, 'latin1') >= length).catch(() => {})
      if (c.headers.connection === 'close') await c.waitClosed().catch(() => {})
    }
    return c
  }

  #wake (): void {
    const w = this.#waiters
    this.#waiters = []
    for (const f of w) f()
  }

  #feed (d: Buffer): void {
    this.#buf = Buffer.concat([this.#buf, d])
    if (this.status === 0) {
      const end = this.#buf.indexOf('\r\n\r\n')
      if (end === -1) return
      this.head = this.#buf.subarray(0, end + 4).toString('latin1')
      const r = parseResponse(this.head)
      this.status = r.status
      this.headers = r.headers
      this.#buf = this.#buf.subarray(end + 4)
    }
    if (this.status !== 101) {
      this.body += this.#buf.toString('latin1')
      this.#buf = Buffer.alloc(0)
      this.#wake()
      return
    }
    for (;;) {
      const b = this.#buf
      if (b.length < 2) break
      let len = b[1]! & 0x7f
      let off = 2
      if (len === 126) {
        if (b.length < 4) break
        len = b.readUInt16BE(2)
        off = 4
      } else if (len === 127) {
        if (b.length < 10) break
        len = Number(b.readBigUInt64BE(2))
        off = 10
      }
      const masked = (b[1]! & 0x80) !== 0
      if (masked) off += 4
      if (b.length < off + len) break
      this.frames.push({ fin: (b[0]! & 0x80) !== 0, rsv: b[0]! & 0x70, opcode: b[0]! & 0x0f, masked, payload: Buffer.from(b.subarray(off, off + len)) })
      this.#buf = b.subarray(off + len)
    }
    this.#wake()
  }

  /** Data frames (text/binary) received so far. */
  get messages (): WsFrame[] {
    return this.frames.filter((f) => f.opcode === 1 || f.opcode === 2)
  }

  /** The close frame, if one came: its code and reason. */
  get closeFrame (): { code: number, reason: string } | null {
    const f = this.frames.find((x) => x.opcode === 8)
    if (f === undefined) return null
    return { code: f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1005, reason: f.payload.subarray(2).toString('utf8') }
  }

  /** Send a frame; masked unless `masked: false`. */
  send (opcode: number, payload: Buffer | string = '', opts: { fin?: boolean, masked?: boolean, rsv?: number } = {}): void {
    this.socket.write(RawWs.encode(opcode, payload, opts))
  }

  /** A client frame's bytes, as `send` writes them. */
  static encode (opcode: number, payload: Buffer | string = '', opts: { fin?: boolean, masked?: boolean, rsv?: number } = {}): Buffer {
    const p = typeof payload === 'string' ? Buffer.from(payload) : payload
    const masked = opts.masked ?? true
    const b0 = ((opts.fin ?? true) ? 0x80 : 0) | (opts.rsv ?? 0) | opcode
    let head: Buffer
    if (p.length < 126) {
      head = Buffer.from([b0, p.length])
    } else if (p.length < 65536) {
      head = Buffer.alloc(4)
      head[0] = b0
      head[1] = 126
      head.writeUInt16BE(p.length, 2)
    } else {
      head = Buffer.alloc(10)
      head[0] = b0
      head[1] = 127
      head.writeBigUInt64BE(BigInt(p.length), 2)
    }
    if (!masked) return Buffer.concat([head, p])
    head[1] = head[1]! | 0x80
    const mask = randomBytes(4)
    const body = Buffer.alloc(p.length)
    for (let i = 0; i < p.length; i++) body[i] = p[i]! ^ mask[i & 3]!
    return Buffer.concat([head, mask, body])
  }

  async until (pred: () => boolean, ms = 5000): Promise<void> {
    const deadline = Date.now() + ms
    while (!pred()) {
      if (this.closed) { if (pred()) return; throw new Error('closed while waiting; frames: ' + this.frames.length) }
      const left = deadline - Date.now()
      if (left <= 0) throw new Error('timed out; frames: ' + this.frames.length)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.#waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
  }

  async waitMessages (n: number, ms = 5000): Promise<WsFrame[]> {
    await this.until(() => this.messages.length >= n, ms)
    return this.messages
  }

  async waitClosed (ms = 5000): Promise<void> {
    const deadline = Date.now() + ms
    while (!this.closed) {
      const left = deadline - Date.now()
      if (left <= 0) throw new Error('still open')
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

// ---- conformance driver (test/transports/conformance.test.ts) -------------------------------------

/** Split a `ws+meta.*` payload into its meta lines and body (§7). */
export function parseMeta (payload: Buffer): { meta: Record<string, string>, body: Buffer } {
  const end = payload.indexOf('\n\n')
  const meta: Record<string, string> = {}
  for (const line of payload.subarray(0, end).toString('latin1').split('\n')) {
    const i = line.indexOf(': ')
    meta[line.slice(0, i)] = line.slice(i + 2)
  }
  return { meta, body: payload.subarray(end + 2) }
}

const END_STATUS: Record<string, number> = { '410 Gone': 410, '408 Request Timeout': 408, '503 Service Unavailable': 503 }

/** A `ws+meta.parkline` subscription: ids, content types and gaps from the meta lines. */
class WsSession implements Session {
  got: Got[] = []
  ended: Promise<Ended>
  c: RawWs
  #seen = 0

  constructor (c: RawWs) {
    this.c = c
    this.ended = c.waitClosed(600000).then(() => {
      const f = c.closeFrame
      return { status: f === null ? 0 : END_STATUS[f.reason] ?? 0, headers: {}, body: Buffer.alloc(0) }
    })
  }

  #collect (): void {
    const ms = this.c.messages
    for (; this.#seen < ms.length; this.#seen++) {
      const { meta, body } = parseMeta(ms[this.#seen]!.payload)
      this.got.push({ id: meta.id!, data: body, event: null, contentType: meta['content-type'] ?? null, gap: meta.gap ?? null, raw: null })
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

export const websocketDriver: Driver = {
  name: 'websocket',
  async open (srv: Running, path: string, opts: OpenOptions = {}) {
    const headers: Record<string, string> = { 'Sec-WebSocket-Protocol': 'ws+meta.parkline', ...opts.headers }
    if (opts.cursor !== undefined) headers['Last-Event-ID'] = opts.cursor
    const c = await RawWs.connect(srv.port, path + (opts.query === undefined ? '' : '?' + opts.query), headers)
    if (c.status !== 101) throw new Error('WebSocket answered ' + c.status)
    return new WsSession(c)
  }
}

// ---- real clients ---------------------------------------------------------------------------------

export interface ClientGot { data: Buffer, binary: boolean }
/** A real WebSocket client: the `ws` library, or Node's global WebSocket (undici). */
export interface Client {
  got: ClientGot[]
  protocol: string
  /** What the server agreed to in Sec-WebSocket-Extensions ('' for none). */
  extensions: string
  closed: Promise<{ code: number, reason: string }>
  wait (n: number, ms?: number): Promise<ClientGot[]>
  send (data: string): void
  close (): void
}

export type ClientKind = 'ws' | 'global'
export const KINDS: ClientKind[] = ['ws', 'global']

/** Open `path` on `srv` with a real client of `kind`; resolves once open. */
export async function openClient (kind: ClientKind, srv: Running, path: string, protocols: string[] = []): Promise<Client> {
  const url = `ws://127.0.0.1:${srv.port}${path}`
  const got: ClientGot[] = []
  let wake: (() => void) | null = null
  const notify = (): void => { const w = wake; wake = null; w?.() }
  let client: Client
  if (kind === 'ws') {
    const ws = new WebSocket(url, protocols)
    ws.on('message', (d: Buffer, binary: boolean) => { got.push({ data: Buffer.from(d), binary }); notify() })
    const closed = new Promise<{ code: number, reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })))
    ws.on('error', () => {})
    await once(ws, 'open')
    client = { got, protocol: ws.protocol, extensions: ws.extensions, closed, wait: null!, send: (d) => ws.send(d), close: () => ws.terminate() }
  } else {
    const ws = new globalThis.WebSocket(url, protocols)
    ws.binaryType = 'arraybuffer'
    ws.onmessage = (e: MessageEvent) => {
      const binary = typeof e.data !== 'string'
      got.push({ data: binary ? Buffer.from(e.data as ArrayBuffer) : Buffer.from(e.data as string), binary })
      notify()
    }
    const closed = new Promise<{ code: number, reason: string }>((resolve) => { ws.onclose = (e) => resolve({ code: e.code, reason: e.reason }) })
    await new Promise<void>((resolve, reject) => { ws.onopen = () => resolve(); ws.onerror = () => reject(new Error('global WebSocket failed')) })
    client = { got, protocol: ws.protocol, extensions: ws.extensions, closed, wait: null!, send: (d) => ws.send(d), close: () => ws.close() }
  }
  client.wait = async (n, ms = 5000) => {
    const deadline = Date.now() + ms
    while (got.length < n) {
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for ${n} messages, have ${got.length}`)
      await new Promise<void>((resolve) => { const t = setTimeout(resolve, left); wake = () => { clearTimeout(t); resolve() } })
    }
    return got
  }
  return client
}
