// Small answers, errors as short text/plain, CORS on everything: through Fastify's reply, or
// through a RawReply (Node's own response) on the standalone server's fast path.
import type { IncomingHttpHeaders, ServerResponse } from 'node:http'
import type { ErrorSpec } from './errors.ts'

/** What an answer needs of a reply: Fastify's reply has it, and so has RawReply. */
export interface Reply {
  code (statusCode: number): Reply
  header (key: string, value: string): Reply
  send (payload?: Buffer | string): Reply
  hijack (): Reply
  /** Fastify's: the headers set so far (the host app's hooks'); absent on the standalone fast path's replies. */
  getHeaders? (): Record<string, unknown>
}

export function withCors<R extends Reply> (reply: R, origin: string | null): R {
  if (origin !== null) {
    reply.header('Access-Control-Allow-Origin', origin)
    reply.header('Access-Control-Allow-Credentials', 'true')
  }
  return reply
}

/** An error answer: its status, `text/plain` short body (or an empty one), CORS when asked. */
export function sendError<R extends Reply> (reply: R, err: ErrorSpec, origin: string | null): R {
  withCors(reply, origin).code(err.statusCode)
  if (err.message.length === 0) reply.header('Content-Length', '0').send()
  else reply.header('Content-Type', 'text/plain').send(Buffer.from(err.message))
  return reply
}

/**
 * Status and headers kept as Fastify's reply keeps them (names in lower case), and the framing
 * Node's response gives a body: Content-Length, `application/octet-stream` for a body of no stated
 * type, no Content-Length on 204 and 304. RawReply and lib/raw-publish.ts's SocketReply write it.
 */
export abstract class HeadersReply implements Reply {
  status = 200
  readonly headers: Record<string, string> = {}
  sent = false

  code (statusCode: number): this {
    this.status = statusCode
    return this
  }

  header (key: string, value: string): this {
    this.headers[key.toLowerCase()] = value
    return this
  }

  abstract send (payload?: Buffer | string): this
  abstract hijack (): this

  /** Content-Length and Content-Type for `payload`; true when there is no body. */
  protected frame (payload?: Buffer | string): boolean {
    const h = this.headers
    if (payload === undefined || payload.length === 0) {
      if (this.status >= 200 && this.status !== 204 && this.status !== 304) h['content-length'] = '0'
      return true
    }
    if (h['content-type'] === undefined) h['content-type'] = typeof payload === 'string' ? 'text/plain; charset=utf-8' : 'application/octet-stream'
    h['content-length'] = String(Buffer.byteLength(payload))
    return false
  }
}

/**
 * A reply written straight to Node's response, as Fastify would write it for these answers,
 * without Fastify's per-request work. One per request on the standalone server's fast path
 * (lib/fast-path.ts).
 */
export class RawReply extends HeadersReply {
  readonly raw: ServerResponse

  constructor (res: ServerResponse) {
    super()
    this.raw = res
  }

  send (payload?: Buffer | string): this {
    if (this.sent) return this
    this.sent = true
    const empty = this.frame(payload)
    this.raw.writeHead(this.status, this.headers)
    if (empty) this.raw.end()
    else this.raw.end(payload)
    return this
  }

  hijack (): this {
    this.sent = true
    return this
  }
}

/**
 * An answer given before the request's body was read (a bad id, method or Idempotency-Key, an
 * OPTIONS) to a request that has one: the connection closes after it, as after a refusal. Kept open, Node's
 * server would read and drop the rest of the body with none of the publisher limits (bodyTimeout,
 * bodyMinRate, a size), so a client trickling a huge declared body would hold it as long as it liked.
 */
export function closeIfBodyUnread<R extends Reply> (reply: R, request: { headers: IncomingHttpHeaders }): R {
  // (also where the raw path read the body whole: every path gives the same answer)
  if (declaresBody(request.headers)) reply.header('Connection', 'close')
  return reply
}

/** A request that declares a body: Content-Length above 0, or a Transfer-Encoding. */
function declaresBody (h: IncomingHttpHeaders): boolean {
  const cl = h['content-length']
  return (cl !== undefined && cl !== '0') || h['transfer-encoding'] !== undefined
}
