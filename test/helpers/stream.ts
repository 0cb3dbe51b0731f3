// Raw clients for the plain HTTP streams (PROTOCOL.md §8): every byte after the head is kept
// (latin1), so tests assert exact wire formats; small parsers for multipart/mixed and chunked.
import net from 'node:net'
import { once } from 'node:events'
import { parseResponse } from './server.ts'

export class RawStream {
  socket: net.Socket
  status = 0
  head = ''
  headers: Record<string, string> = {}
  /** Every byte after the head, latin1. */
  text = ''
  closed = false
  #headBuf = ''
  #waiters: Array<() => void> = []

  private constructor (socket: net.Socket) {
    this.socket = socket
  }

  /** GET `path` with exactly these header lines (after Host). */
  static async connect (port: number, path: string, headers: Record<string, string>, version = '1.1'): Promise<RawStream> {
    const socket = net.connect(port, '127.0.0.1')
    socket.on('error', () => {})
    await once(socket, 'connect')
    const c = new RawStream(socket)
    let req = `GET ${path} HTTP/${version}\r\nHost: 127.0.0.1\r\n`
    for (const [k, v] of Object.entries(headers)) req += `${k}: ${v}\r\n`
    socket.on('data', (d: Buffer) => c.#feed(d.toString('latin1')))
    socket.on('close', () => { c.closed = true; c.#wake() })
    socket.write(req + '\r\n')
    await c.until(() => c.status !== 0)
    return c
  }

  static async multipart (port: number, path: string, headers: Record<string, string> = {}): Promise<RawStream> {
    return await RawStream.connect(port, path, { Accept: 'multipart/mixed', ...headers })
  }

  static async chunked (port: number, path: string, headers: Record<string, string> = {}): Promise<RawStream> {
    return await RawStream.connect(port, path, { TE: 'chunked', ...headers })
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
    this.#wake()
  }

  /** The boundary of a multipart/mixed head. */
  get boundary (): string {
    const m = /boundary=(\S+)/.exec(this.headers['content-type'] ?? '')
    if (m === null) throw new Error('no boundary in ' + JSON.stringify(this.head))
    return m[1]!
  }

  async until (pred: () => boolean, ms = 5000): Promise<void> {
    const deadline = Date.now() + ms
    while (!pred()) {
      if (this.closed) throw new Error('stream closed while waiting; got ' + JSON.stringify(this.text.slice(-300)))
      const left = deadline - Date.now()
      if (left <= 0) throw new Error('timed out waiting on stream; got ' + JSON.stringify(this.text.slice(-300)))
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.#waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
  }

  async waitParts (n: number, ms = 5000): Promise<Part[]> {
    const b = this.boundary
    await this.until(() => parseMultipart(this.text, b).parts.length >= n, ms)
    return parseMultipart(this.text, b).parts
  }

  async waitChunks (n: number, ms = 5000): Promise<Buffer[]> {
    await this.until(() => parseChunked(this.text).chunks.length >= n, ms)
    return parseChunked(this.text).chunks
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

export interface Part {
  /** Header lines as sent (`Name: value`), in order. */
  lines: string[]
  headers: Record<string, string>
  body: Buffer
}

/**
 * Parse a multipart/mixed body: `--B`, then parts each ended by `\r\n--B`, then `--\r\n`. Only
 * complete parts are returned; `ended` once the closing delimiter arrived.
 */
export function parseMultipart (text: string, boundary: string): { parts: Part[], ended: boolean, preamble: string } {
  const first = '--' + boundary
  const delim = '\r\n--' + boundary
  const parts: Part[] = []
  const start = text.indexOf(first)
  if (start === -1) return { parts, ended: false, preamble: text }
  let p = start + first.length
  for (;;) {
    if (text.startsWith('--', p)) return { parts, ended: true, preamble: text.slice(0, start) }
    if (!text.startsWith('\r\n', p)) return { parts, ended: false, preamble: text.slice(0, start) }
    const headerEnd = text.indexOf('\r\n\r\n', p)
    if (headerEnd === -1) break
    const lines = headerEnd === p ? [] : text.slice(p + 2, headerEnd).split('\r\n')
    const next = text.indexOf(delim, headerEnd + 4)
    if (next === -1) break
    const headers: Record<string, string> = {}
    for (const l of lines) {
      const i = l.indexOf(':')
      headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim()
    }
    parts.push({ lines, headers, body: Buffer.from(text.slice(headerEnd + 4, next), 'latin1') })
    p = next + delim.length
  }
  return { parts, ended: false, preamble: text.slice(0, start) }
}

/** Parse a chunked body: the complete chunks so far, and whether the last chunk (`0\r\n\r\n`) came. */
export function parseChunked (text: string): { chunks: Buffer[], ended: boolean } {
  const chunks: Buffer[] = []
  let p = 0
  for (;;) {
    const eol = text.indexOf('\r\n', p)
    if (eol === -1) return { chunks, ended: false }
    const size = parseInt(text.slice(p, eol), 16)
    if (!/^[0-9a-f]+$/.test(text.slice(p, eol))) throw new Error('bad chunk size line ' + JSON.stringify(text.slice(p, eol)))
    if (size === 0) return { chunks, ended: text.startsWith('\r\n', eol + 2) }
    if (text.length < eol + 2 + size + 2) return { chunks, ended: false }
    if (text.slice(eol + 2 + size, eol + 4 + size) !== '\r\n') throw new Error('chunk not followed by CRLF')
    chunks.push(Buffer.from(text.slice(eol + 2, eol + 2 + size), 'latin1'))
    p = eol + 4 + size
  }
}
