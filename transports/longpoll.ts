// Long-poll (PROTOCOL.md §5): one message per request; parks when the cursor is at or past the
// newest message. A parked request keeps Node's ServerResponse (the connection is reused for the
// next poll) but no Fastify object and no closure: the socket's 'close' listener is shared.
import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http'
import type { Socket } from 'node:net'
import type { Core } from '../lib/core.ts'
import { EXPOSE_HEADERS, VARY, randomBetween } from '../lib/http.ts'
import type { Message } from '../lib/message.ts'
import { formatTags } from '../lib/message-id.ts'
import { F_CLOSED, Subscriber, type SubscribeRequest, type Transport } from '../lib/subscriber.ts'
import { kSubscriber } from '../lib/symbols.ts'

type LpSocket = Socket & { [kSubscriber]?: Subscriber }

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 408: 'Request Timeout', 410: 'Gone', 503: 'Service Unavailable' }

export class LongpollTransport implements Transport {
  readonly name = 'longpoll'
  readonly index: number
  readonly core: Core

  constructor (core: Core, index: number) {
    this.core = core
    this.index = index
  }

  detect (_req: IncomingMessage): boolean {
    return true
  }

  serve (sr: SubscribeRequest): void {
    const core = this.core
    const sub = new Subscriber(this, sr.req.socket, sr.res, sr.channels, sr.cursor, sr.origin, sr.flags)
    const next = core.nextMessage(sub)
    if (next !== null) {
      core.touch(sr.channels)
      this.#respond(sub, next.msg, sub.advance(next.msg, next.pos), next.gap)
      return
    }
    if (core.draining || core.atCapacity) {
      core.stats.refused++
      core.releaseChannels(sr.channels)
      this.#status(sub, 503)
      return
    }
    const socket = sub.socket as LpSocket
    socket[kSubscriber] = sub
    socket.on('close', onClose)
    socket.on('data', onParkedData)
    core.register(sub)
  }

  deliver (sub: Subscriber, msg: Message, pos: number): void {
    this.#park(sub)
    const gap = this.core.liveGap(sub, pos)
    this.#respond(sub, msg, sub.advance(msg, pos), gap)
  }

  end (sub: Subscriber, status: number): void {
    this.#park(sub)
    this.#status(sub, status)
  }

  keepalive (_sub: Subscriber): void {
    // long-poll gets no keepalive (EXTENSION c)
  }

  ready (_sub: Subscriber): void {
    // a parked poll has nothing to send until a message or a status answer
  }

  /** Unpark: uncount and drop the socket's reference; the connection lives on for the next poll. */
  #park (sub: Subscriber): void {
    this.core.unregister(sub)
    const socket = sub.socket as LpSocket
    if (socket[kSubscriber] === sub) {
      socket[kSubscriber] = undefined
      socket.removeListener('close', onClose)
      socket.removeListener('data', onParkedData)
    }
  }

  #respond (sub: Subscriber, msg: Message, id: string, gap: string | null): void {
    const res = sub.res!
    sub.res = null
    const etag = sub.channels.length === 1 ? String(msg.tag) : id.slice(id.indexOf(':') + 1)
    const headers: OutgoingHttpHeaders = {
      'Last-Modified': msg.lastModified,
      Etag: etag,
      Vary: VARY,
      'Content-Length': msg.data.length
    }
    if (msg.contentType !== null) headers['Content-Type'] = msg.contentType
    if (sub.origin !== null) addCors(headers, sub.origin)
    if (gap !== null) headers['Parkline-Gap'] = gap
    res.writeHead(200, headers)
    res.end(msg.data)
    this.core.stats.delivered[this.index]!++
  }

  /** 408/410/503/400 answers (§5 "Status answers"). */
  #status (sub: Subscriber, status: number): void {
    const res = sub.res
    sub.res = null
    if (res === null || res.headersSent) return
    const headers: OutgoingHttpHeaders = { Vary: VARY, 'Content-Length': 0 }
    if (sub.vTime > 0) headers.Etag = formatTags(sub.vTags, -1)
    if (sub.origin !== null) addCors(headers, sub.origin)
    if (status === 503) {
      headers['Retry-After'] = randomBetween(1, 10)
      headers.Connection = 'close'
    } else if (status === 400) {
      headers.Connection = 'close'
    }
    res.writeHead(status, STATUS_TEXT[status], headers)
    res.end()
  }
}

function addCors (headers: OutgoingHttpHeaders, origin: string): void {
  headers['Access-Control-Allow-Origin'] = origin
  headers['Access-Control-Allow-Credentials'] = 'true'
  headers['Access-Control-Expose-Headers'] = EXPOSE_HEADERS
}

function onClose (this: LpSocket): void {
  const sub = this[kSubscriber]
  if (sub !== undefined && (sub.flags & F_CLOSED) === 0) {
    this[kSubscriber] = undefined
    sub.res = null
    ;(sub.transport as LongpollTransport).core.unregister(sub)
  }
}

/**
 * Any byte on a parked connection, even half a request Node's parser keeps waiting on: 400 and
 * close (§5). Node's own listener parsed it first, so a parse error has already been answered.
 */
function onParkedData (this: LpSocket): void {
  if (this.writable) rejectIfParked(this)
}

/**
 * Bytes (a pipelined request) arrived on a connection whose long-poll is parked: answer the parked
 * request 400 and close (§5). Called by the subscriber route for every request.
 */
export function rejectIfParked (socket: Socket): void {
  const sub = (socket as LpSocket)[kSubscriber]
  if (sub !== undefined && sub.res !== null && (sub.flags & F_CLOSED) === 0 && sub.transport instanceof LongpollTransport) {
    sub.transport.end(sub, 400)
  }
}
