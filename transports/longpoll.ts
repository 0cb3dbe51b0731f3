// Long-poll (PROTOCOL.md §5): one message per request; parks when the cursor is at or past the
// newest message. A parked request is, like an SSE stream, a bare socket plus its Subscriber
// record: Node's request, response and parser are released (detach.ts). The answer is written
// raw — status line, the message's header block built once, the shared body — and the socket is
// then handed back to Node's HTTP server for the next poll on the same connection.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Core } from '../lib/core.ts'
import type { Channel } from '../lib/channel-registry.ts'
import { formatHttpDate, gapSignals, withGaps, type Cursor } from '../lib/message-id.ts'
import { EXPOSE_HEADERS, VARY, randomBetween, userLimitRetryAfter } from '../lib/http.ts'
import { ERRORS } from '../lib/errors.ts'
import { queuedCopy, type Message } from '../lib/message.ts'
import { F_CLOSED, Subscriber, type SubscribeRequest, type Transport } from '../lib/subscriber.ts'
import { kRawConnection, kRawPublishers, kSubscriber } from '../lib/symbols.ts'
import { detachSocket, reattachSocket } from './detach.ts'
import { randomBoundary } from './multipart.ts'
import type { RawPublishers } from '../lib/raw-publish.ts'

/** Parked on a released socket: answers are written raw, then the socket goes back to Node. */
const F_LP_RAW = 1 << 16
/** The request asked for the connection to close after the answer (HTTP/1.0, Connection: close). */
const F_LP_CLOSE = 1 << 17
/** Read by lib/raw-publish.ts, not Node: its answer is written there, which reads on (pollAnswer). */
const F_LP_OWNED = 1 << 18

/** Embedded: the host app's header lines for this connection's poll (lib/host-headers.ts), set by each poll served through Fastify. */
const kHostHead = Symbol('parkline.hostHead')

type LpSocket = Socket & { [kSubscriber]?: Subscriber, [kHostHead]?: string }

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 408: 'Request Timeout', 410: 'Gone', 429: 'Too Many Requests', 503: 'Service Unavailable' }

export class LongpollTransport implements Transport {
  readonly name = 'longpoll'
  readonly answersAtOnce = true
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
    sub.grant = sr.grant
    // (the connection's previous poll may have had other host headers: each poll sets its own)
    const hostSocket = sub.socket as LpSocket
    if (sr.host !== '' || hostSocket[kHostHead] !== undefined) hostSocket[kHostHead] = sr.host
    if (this.#answeredAtOnce(sub)) return
    const req = sr.req
    const socket = sub.socket as LpSocket
    // A request with a body stays with Node (it may still be arriving); every other parked poll is
    // released. Taken from inside Node's parser (the standalone server's fast path runs the handler
    // from 'request', before the parser has marked the request complete), it is released once that
    // parse has returned, as a poll through Fastify is (see releaseParked).
    const bodyless = req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined
    if (bodyless && req.complete) release(sub, req, sr.res)
    socket[kSubscriber] = sub
    socket.on('close', onClose)
    socket.on('data', onParkedData)
    core.register(sub)
    if (bodyless && !req.complete) {
      toRelease.push(sub, req, sr.res)
      if (toRelease.length === 3) queueMicrotask(releaseParked)
    }
  }

  deliver (sub: Subscriber, msg: Message, pos: number): void {
    this.#park(sub)
    const gap = this.core.liveGap(sub, pos, msg.time)
    this.#respond(sub, msg, sub.advance(msg, pos), gap)
  }

  end (sub: Subscriber, status: number, reason?: string): void {
    this.#park(sub)
    this.#status(sub, status, reason)
  }

  keepalive (_sub: Subscriber): boolean {
    // long-poll gets no keepalive (EXTENSION c)
    return false
  }

  ready (sub: Subscriber): void {
    // Counted. An engine that filled the channel's replica meanwhile (Redis, a node's first
    // subscriber) may now hold a message for this cursor: answer as serve() would have; otherwise
    // the poll stays parked until a message or a status answer.
    if ((sub.flags & F_CLOSED) !== 0 || (sub.res === null && (sub.flags & F_LP_RAW) === 0)) return
    const next = this.core.nextMessage(sub)
    if (next === null) return
    this.#park(sub)
    this.core.touch(sub.channels)
    if (this.core.opts.longpollMultipart) this.#respondAll(sub, next.msg, sub.advance(next.msg, next.pos), next.gap)
    else this.#respond(sub, next.msg, sub.advance(next.msg, next.pos), next.gap)
  }

  /**
   * A poll read off a raw connection (lib/raw-publish.ts, the standalone server): no request or
   * response objects at all. Answered at once or parked as serve() does; its answer is written raw
   * and the connection's next request is read there again (pollAnswer).
   */
  serveRaw (socket: Socket, channels: readonly Channel[], cursor: Cursor, origin: string | null, flags: number, grant: SubscribeRequest['grant'], close: boolean): void {
    const core = this.core
    const sub = new Subscriber(this, socket, null, channels, cursor, origin, flags | F_LP_RAW | F_LP_OWNED | (close ? F_LP_CLOSE : 0))
    sub.grant = grant
    if (this.#answeredAtOnce(sub)) return
    // bytes, FIN, errors and close on the connection are raw-publish's listeners' (they end a
    // parked poll; its close: rawConnectionClosed): no listener, so no listener array, per poll
    ;(socket as LpSocket)[kSubscriber] = sub
    core.register(sub)
  }

  /**
   * A new poll: answered from the buffer, or 503 while the server refuses, if it can be at once.
   * Not from the buffer while the engine is not up (the store away, or its revocations not read
   * yet; a channel owner away): this copy may be stale, and a token revoked elsewhere meanwhile
   * would be served with it. It gets the 503 that every other transport gets then.
   */
  #answeredAtOnce (sub: Subscriber): boolean {
    const core = this.core
    const engine = core.engine
    const next = engine.up === false || engine.answersEarly?.(sub) === false ? null : core.nextMessage(sub)
    if (next !== null) {
      core.touch(sub.channels)
      if (core.opts.longpollMultipart) this.#respondAll(sub, next.msg, sub.advance(next.msg, next.pos), next.gap)
      else this.#respond(sub, next.msg, sub.advance(next.msg, next.pos), next.gap)
      // the other channels of a multiplexed poll were made for it: an empty one is dropped again,
      // or each poll naming new ids would leave their records behind for good
      core.releaseChannels(sub.channels)
      return true
    }
    if (core.refusing) {
      core.countRefusal()
      core.releaseChannels(sub.channels)
      this.#status(sub, 503)
      return true
    }
    // a poll that would park counts against its user's maxSubscribersPerUser
    if (core.overUserLimit(sub.grant)) {
      core.releaseChannels(sub.channels)
      this.#status(sub, 429)
      return true
    }
    return false
  }

  /** Unpark: uncount and drop the socket's reference; the connection lives on for the next poll. */
  #park (sub: Subscriber): void {
    this.core.unregister(sub)
    const socket = sub.socket as LpSocket
    if (socket[kSubscriber] === sub) {
      socket[kSubscriber] = undefined
      // a poll read off a raw connection added none
      if ((sub.flags & F_LP_OWNED) !== 0) return
      socket.removeListener('close', onClose)
      socket.removeListener('data', onParkedData)
      socket.removeListener('error', onError)
      socket.removeListener('end', onEnd)
    }
  }

  /**
   * Write one answer: through Node's response for a poll answered at once, raw on a released
   * socket — which then goes back to Node's HTTP server for the next request, or is closed.
   * `headers` is a flat [name, value, …] list; `block` is a prebuilt `Name: value\r\n` block.
   */
  #send (sub: Subscriber, status: number, reason: string, block: string, headers: string[], body: Buffer | null, close: boolean): void {
    // an answer given after an access check is this user's: a shared cache (a long-poll answer is
    // cacheable by its Last-Modified, spec §5) must not hand it to someone else
    if (this.core.privateAnswers) headers.push('Cache-Control', 'private')
    // draining (SIGTERM): the connection ends after this answer (docs/api.md 12.4)
    if (this.core.draining) close = true
    const res = sub.res
    sub.res = null
    if (res !== null) {
      if (res.headersSent) return
      if (block.length > 0) headers = blockToList(block).concat(headers)
      // embedded: the host app's headers, as on an answer written raw; what a hook set on the
      // response itself (reply.raw.setHeader) is among them where it is not Parkline's, so the
      // response keeps nothing of its own that Node would merge in (a Content-Type, a Cache-Control)
      const host = (sub.socket as LpSocket)[kHostHead]
      if (host !== undefined && host !== '') headers = headers.concat(blockToList(host))
      for (const name of res.getHeaderNames()) res.removeHeader(name)
      if (close) headers.push('Connection', 'close')
      res.writeHead(status, reason, headers)
      // Node's response may queue it (a socket with unread bytes, an earlier pipelined answer): bytes of its own
      res.end(body === null ? undefined : queuedCopy(body))
      return
    }
    if ((sub.flags & F_LP_RAW) === 0) return
    sub.flags &= ~F_LP_RAW
    const owned = (sub.flags & F_LP_OWNED) !== 0
    const socket = sub.socket
    // ended by the client's FIN (onEnd) and not closed yet: nobody to answer, and #park took the
    // error listener, so a write would throw write-after-end
    if (socket.destroyed || socket.writableEnded) return
    close = close || (sub.flags & F_LP_CLOSE) !== 0
    let head = 'HTTP/1.1 ' + status + ' ' + reason + '\r\n' + block
    for (let i = 0; i < headers.length; i += 2) head += headers[i] + ': ' + headers[i + 1] + '\r\n'
    if (owned) {
      pollAnswer(socket, head, body, close)
      return
    }
    // a poll released from Node's objects (embedded, or the standalone server's Fastify path): the
    // host app's headers (a raw poll of the standalone server, above, has none)
    const host = (socket as LpSocket)[kHostHead]
    if (host !== undefined) head += host
    head += close ? 'Connection: close\r\n\r\n' : 'Connection: keep-alive\r\n\r\n'
    // a socket that still holds bytes its client has not read gets bytes of their own (lib/message.ts)
    const out = body !== null && socket.writableLength > 0 ? queuedCopy(body) : body
    socket.cork()
    socket.write(head, 'latin1')
    if (out !== null && out.length > 0) socket.write(out)
    socket.uncork()
    if (close) {
      // #park took every listener: a reset from the client before the close completes would be
      // an 'error' nobody listens to, which ends the process
      socket.on('error', onError)
      socket.end()
    } else {
      reattachSocket(socket)
    }
  }

  #respond (sub: Subscriber, msg: Message, id: string, gap: string | null): void {
    const extra: string[] = []
    // one channel: the message's header block is shared by every poll it answers
    const colon = id.indexOf(':')
    const block = sub.channels.length === 1 ? msg.longpollHeaders() : msg.longpollHeaders(id.slice(colon + 1), Number(id.slice(0, colon)))
    if (sub.origin !== null) pushCors(extra, sub.origin)
    // one header line per channel that lost messages (lib/message-id.ts withGaps)
    if (gap !== null) for (const g of gapSignals(gap)) extra.push('Parkline-Gap', g)
    this.#send(sub, 200, 'OK', block, extra, msg.data, false)
    this.core.stats.delivered[this.index]!++
  }

  /**
   * Option longpollMultipart (Nchan's nchan_longpoll_multipart_response): every buffered message
   * after the cursor in one answer. One message is answered as usual; several become one
   * multipart/mixed body whose parts carry only their Content-Type (as Nchan's do), with the last
   * message's id in Last-Modified/Etag so the next poll resumes after it.
   */
  #respondAll (sub: Subscriber, first: Message, firstId: string, gap: string | null): void {
    const msgs: Message[] = [first]
    let id = firstId
    for (let next = this.core.nextMessage(sub); next !== null; next = this.core.nextMessage(sub)) {
      msgs.push(next.msg)
      id = sub.advance(next.msg, next.pos)
      // every part's gap signals, one per channel
      gap = withGaps(gap, next.gap)
    }
    if (msgs.length === 1) {
      this.#respond(sub, first, firstId, gap)
      return
    }
    const b = randomBoundary()
    const chunks: Buffer[] = []
    for (let i = 0; i < msgs.length; i++) {
      const m = msgs[i]!
      const type = m.contentType === null ? '\r\n\r\n' : '\r\nContent-Type: ' + m.contentType + '\r\n\r\n'
      chunks.push(Buffer.from((i === 0 ? '--' : '\r\n--') + b + type, 'latin1'), m.data)
    }
    chunks.push(Buffer.from('\r\n--' + b + '--\r\n', 'latin1'))
    const body = Buffer.concat(chunks)
    // the id's own seconds (a multiplexed id may stay in a later second than its last message's)
    const colon = id.indexOf(':')
    const headers = [
      'Content-Type', 'multipart/mixed; boundary=' + b,
      'Last-Modified', formatHttpDate(Number(id.slice(0, colon))),
      'Etag', id.slice(colon + 1),
      'Vary', VARY,
      'Content-Length', String(body.length)
    ]
    if (sub.origin !== null) pushCors(headers, sub.origin)
    if (gap !== null) for (const g of gapSignals(gap)) headers.push('Parkline-Gap', g)
    this.#send(sub, 200, 'OK', '', headers, body, false)
    this.core.stats.delivered[this.index]! += msgs.length
  }

  /** 408/410/503/400 answers (§5 "Status answers"), and 429 at maxSubscribersPerUser. */
  #status (sub: Subscriber, status: number, reason?: string): void {
    // 401 (token expired or revoked): RFC 6750's challenge and the reason as the body; 429
    // (maxSubscribersPerUser): why
    const body = status === 401 ? Buffer.from(reason ?? 'Unauthorized') : status === 429 ? Buffer.from(ERRORS.USER_LIMIT.message) : null
    const headers = ['Vary', VARY, 'Content-Length', String(body === null ? 0 : body.length)]
    if (status === 401) headers.push('Content-Type', 'text/plain', 'WWW-Authenticate', `Bearer error="invalid_token", error_description="${reason ?? 'Unauthorized'}"`)
    if (status === 429) headers.push('Content-Type', 'text/plain', 'Retry-After', String(userLimitRetryAfter()))
    if (sub.vTime > 0) headers.push('Etag', sub.etag())
    if (sub.origin !== null) pushCors(headers, sub.origin)
    if (status === 503) headers.push('Retry-After', String(randomBetween(1, 10)))
    this.#send(sub, status, STATUS_TEXT[status]!, '', headers, body, status === 503 || status === 400 || status === 429)
  }
}

/** Let go of Node's request, response and parser for a parked poll: answers are then written raw. */
function release (sub: Subscriber, req: IncomingMessage, res: ServerResponse): void {
  sub.flags |= F_LP_RAW | (res.shouldKeepAlive ? 0 : F_LP_CLOSE)
  sub.res = null
  // Node's parser may hold the head of a request pipelined behind the poll: any byte behind a
  // parked poll is answered 400 and closes (§5), those too
  detachSocket(req, res, rejectIfParked)
  sub.socket.on('error', onError)
  sub.socket.on('end', onEnd)
}

/** Polls parked from inside Node's parser in this turn: [sub, req, res, sub, req, res, ...]. */
let toRelease: Array<Subscriber | IncomingMessage | ServerResponse> = []

/**
 * After the parse that delivered them returned: each poll still parked with its response unsent
 * and its request complete is released. The release drops every socket listener, so the parked
 * poll's own ('close', 'data') are added again.
 */
function releaseParked (): void {
  const list = toRelease
  toRelease = []
  for (let i = 0; i < list.length; i += 3) {
    const sub = list[i] as Subscriber
    const req = list[i + 1] as IncomingMessage
    const res = list[i + 2] as ServerResponse
    const socket = sub.socket as LpSocket
    if ((sub.flags & F_CLOSED) !== 0 || sub.res !== res || res.headersSent || !req.complete || socket[kSubscriber] !== sub || socket.destroyed) continue
    release(sub, req, res)
    socket.on('close', onClose)
    socket.on('data', onParkedData)
  }
}

/**
 * A raw poll's answer (`head`: status line and headers, without Connection): lib/raw-publish.ts
 * ends the head as its other answers (Date, Connection, Keep-Alive), writes it and the body, then
 * reads the connection's next request or ends it. (Reached through symbols: that module imports
 * this one.)
 */
function pollAnswer (socket: Socket, head: string, body: Buffer | null, close: boolean): void {
  const s = socket as Socket & { server?: { [kRawPublishers]?: RawPublishers }, [kRawConnection]?: Parameters<RawPublishers['answerPoll']>[0] }
  const c = s[kRawConnection]
  const rp = s.server?.[kRawPublishers]
  if (c !== undefined && rp !== undefined) {
    rp.answerPoll(c, head, body, close)
    return
  }
  if (socket.destroyed || socket.writableEnded) return
  const out = body !== null && socket.writableLength > 0 ? queuedCopy(body) : body
  socket.write(head + 'Connection: close\r\n\r\n', 'latin1')
  if (out !== null && out.length > 0) socket.write(out)
  socket.end()
}

function pushCors (headers: string[], origin: string): void {
  headers.push('Access-Control-Allow-Origin', origin, 'Access-Control-Allow-Credentials', 'true', 'Access-Control-Expose-Headers', EXPOSE_HEADERS)
}

/** `Name: value\r\n` lines back to a flat list, for Node's writeHead. */
function blockToList (block: string): string[] {
  const out: string[] = []
  for (const line of block.split('\r\n')) {
    const i = line.indexOf(': ')
    if (i > 0) out.push(line.slice(0, i), line.slice(i + 2))
  }
  return out
}

function onError (): void {
  // 'close' follows and unregisters
}

/** The client closed its side while parked (released sockets are half-open capable): close ours. */
function onEnd (this: LpSocket): void {
  this.end()
}

/** A raw connection (lib/raw-publish.ts) closed: the poll parked on it, if any, is unregistered. */
export function rawConnectionClosed (socket: Socket): void {
  onClose.call(socket as LpSocket)
}

function onClose (this: LpSocket): void {
  const sub = this[kSubscriber]
  if (sub !== undefined && (sub.flags & F_CLOSED) === 0) {
    this[kSubscriber] = undefined
    sub.res = null
    sub.flags &= ~F_LP_RAW
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
/** A long-poll is parked on this connection: it owns the next answer there. */
export function isParked (socket: Socket): boolean {
  const sub = (socket as LpSocket)[kSubscriber]
  return sub !== undefined && (sub.res !== null || (sub.flags & F_LP_RAW) !== 0) && (sub.flags & F_CLOSED) === 0 && sub.transport instanceof LongpollTransport
}

export function rejectIfParked (socket: Socket): void {
  const sub = (socket as LpSocket)[kSubscriber]
  if (sub !== undefined && (sub.res !== null || (sub.flags & F_LP_RAW) !== 0) && (sub.flags & F_CLOSED) === 0 && sub.transport instanceof LongpollTransport) {
    sub.transport.end(sub, 400)
  }
}
