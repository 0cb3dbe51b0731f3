// Chunked stream (PROTOCOL.md §8): each non-empty message is one HTTP/1.1 chunk, built once per
// message (Message.chunk) and written as is to every subscriber; ids and content types are not
// sent, so the start position comes from the connect-time cursor only. An empty message is
// skipped: a zero-length chunk would end the stream.
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import type { Core } from '../lib/core.ts'
import { corsLines } from '../lib/http.ts'
import type { Message } from '../lib/message.ts'
import type { Subscriber } from '../lib/subscriber.ts'
import { Coalescer } from './coalesce.ts'
import { HttpStreamTransport } from './http-stream.ts'

const HEAD = 'HTTP/1.1 200 OK\r\n' +
  'Transfer-Encoding: chunked\r\n' +
  'X-Accel-Buffering: no\r\n' +
  'Connection: close\r\n'
const END = Buffer.from('0\r\n\r\n')

/**
 * Does a `TE` value list `chunked` with q > 0 (RFC 9110 §10.1.4)? `chunked;q=0` and a malformed
 * weight do not count; no weight means q = 1.
 */
export function teAcceptsChunked (te: string): boolean {
  let start = 0
  while (start <= te.length) {
    let end = te.indexOf(',', start)
    if (end === -1) end = te.length
    const element = te.slice(start, end)
    start = end + 1
    const semi = element.indexOf(';')
    if ((semi === -1 ? element : element.slice(0, semi)).trim().toLowerCase() !== 'chunked') continue
    if (semi === -1) return true
    let q = 1
    for (const param of element.slice(semi + 1).split(';')) {
      const eq = param.indexOf('=')
      if (eq === -1 || param.slice(0, eq).trim().toLowerCase() !== 'q') continue
      const v = param.slice(eq + 1).trim()
      q = /^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/.test(v) ? Number(v) : 0
    }
    if (q > 0) return true
  }
  return false
}

/** §4.1: a TE that accepts chunked, on HTTP/1.1 (RFC 9112 §6.1: no Transfer-Encoding in answer to an HTTP/1.0 request). */
export function wantsChunked (headers: IncomingHttpHeaders, httpVersionMinor: number): boolean {
  const te = headers.te
  return typeof te === 'string' && httpVersionMinor >= 1 && teAcceptsChunked(te)
}

export class ChunkedTransport extends HttpStreamTransport {
  readonly name = 'chunked'
  // a chunk carries no metadata: drop-oldest could not tell the client, so it disconnects (§11e)
  protected readonly signalsGap = false
  protected endBytes (_status: number): Buffer {
    return END
  }

  constructor (core: Core, index: number) {
    super(core, index)
    // every subscriber's chunk is the same bytes: a turn's chunks leave in one write
    this.coalescer = core.opts.coalesce ? new Coalescer(core, index, [chunkOf], onlyVariant) : null
  }

  detect (req: IncomingMessage): boolean {
    return wantsChunked(req.headers, req.httpVersionMinor)
  }

  protected open (_sub: Subscriber, origin: string | null): string {
    return HEAD + corsLines(origin) + '\r\n'
  }

  protected payload (_sub: Subscriber, msg: Message, _id: string): Buffer | null {
    return msg.data.length === 0 ? null : msg.chunk()
  }

  protected size (_sub: Subscriber, _msg: Message, payload: Buffer, _id: string): number {
    return payload.length
  }

  protected write (sub: Subscriber, _msg: Message | null, payload: Buffer, _id: string, _gap: string | null): void {
    sub.socket.write(payload)
  }
}

const NOTHING = Buffer.alloc(0)

/** An empty message is skipped (a zero-length chunk would end the stream). */
function chunkOf (m: Message): Buffer {
  return m.data.length === 0 ? NOTHING : m.chunk()
}

function onlyVariant (): number {
  return 0
}
