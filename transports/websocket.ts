// WebSocket (PROTOCOL.md §7): RFC 6455, push only. The handshake is routed through Fastify
// (lib/plugin.ts), so the host's hooks run, then `serve()` here takes the socket with its HTTP
// parser released, so after the `101` a subscriber is a net.Socket plus one Subscriber
// record, as for SSE. Every live message is one shared frame per variant (Message.wsFrame,
// wsMetaFrame) written to every single-channel subscriber; listeners are module-level functions
// that find their record via a Symbol. Framing and the header-first decoder: websocket-frame.ts.
import { STATUS_CODES, type IncomingHttpHeaders, type IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Channel } from '../lib/channel-registry.ts'
import type { Core } from '../lib/core.ts'
import { ERRORS, type ErrorSpec } from '../lib/errors.ts'
import { corsLines, randomBetween, userLimitRetryAfter } from '../lib/http.ts'
import { unpinned, writeShared, type Message } from '../lib/message.ts'
import { formatId, withGaps, type Cursor } from '../lib/message-id.ts'
import type { Grant } from '../lib/auth.ts'
import {
  F_BATCHED, F_CATCHING_UP, F_CLOSED, F_WS_DEFLATE, F_WS_GAP, F_WS_META, F_WS_PING, Subscriber, queuedAtKeepalive, unstarted, type SubscribeRequest, type Transport
} from '../lib/subscriber.ts'
import { kSubscriber, kUpgradeHead } from '../lib/symbols.ts'
import { OVERFLOW, enqueue, owedGap } from '../lib/backlog.ts'
import { Coalescer } from './coalesce.ts'
import { detachSocket, dropListeners } from './detach.ts'
import { endAndLinger } from '../lib/linger.ts'
import {
  CLOSE_GOING_AWAY, CLOSE_INTERNAL_ERROR, CLOSE_NORMAL, CLOSE_POLICY, CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG,
  CLOSE_TRY_AGAIN_LATER, FrameHeader, MAX_CONTROL_FRAME, NEED_MORE, OP_CLOSE, OP_PING, OP_PONG, acceptKey,
  closeCode, closeFrame, frame, framePrefixHead, framePrefixed, readHeader, unmaskPayload
} from './websocket-frame.ts'

/** A `101` answer's first lines (the subscriber's and the publisher's). */
export const HEAD = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n'
/** A client data frame larger than this is answered 1009 rather than 1008 (its payload is never read). */
export const MAX_PAYLOAD = 65536
/** Bodies above this are written after their per-subscriber meta head instead of copied into it. */
const COPY_LIMIT = 4096

const EMPTY = Buffer.alloc(0)
const PING = frame(OP_PING, EMPTY)
const CLOSE_EMPTY = frame(OP_CLOSE, EMPTY)
const END_FRAMES: Record<number, Buffer> = {
  408: closeFrame(CLOSE_NORMAL, '408 Request Timeout'),
  410: closeFrame(CLOSE_GOING_AWAY, '410 Gone'),
  429: closeFrame(CLOSE_TRY_AGAIN_LATER, '429 Too Many Requests'),
  503: closeFrame(CLOSE_GOING_AWAY, '503 Service Unavailable')
}
const INTERNAL_ERROR = closeFrame(CLOSE_INTERNAL_ERROR)
const OVERFLOW_CLOSE = closeFrame(CLOSE_TRY_AGAIN_LATER, 'Overflow')
const PUBLISHING = closeFrame(CLOSE_POLICY, 'Publishing not allowed.')
const TOO_BIG = closeFrame(CLOSE_TOO_BIG, 'Message too big')
const PROTOCOL_ERROR = closeFrame(CLOSE_PROTOCOL_ERROR)

export const PROTO_NONE = 0
const PROTO_NCHAN = 1
export const PROTO_PARKLINE = 2

/** Bytes after an incomplete control frame (or before the 101), kept until the next read. */
const kPartial = Symbol('parkline.ws.partial')

type WsSocket = Socket & { [kSubscriber]?: Subscriber, [kPartial]?: Buffer | null }

const WS_KEY = /^[+/0-9A-Za-z]{22}==$/

/** The one header record the decoder fills; reads are synchronous, so one is enough. */
const header = new FrameHeader()

/** A handshake problem (§7 table), or null when the handshake can be answered 101. */
export function handshakeError (headers: IncomingHttpHeaders): ErrorSpec | null {
  const version = headers['sec-websocket-version']
  if (version === undefined || version === '') return ERRORS.WS_NO_VERSION
  if (version.trim() !== '13') return ERRORS.WS_BAD_VERSION
  const key = headers['sec-websocket-key']
  if (key === undefined || key.trim() === '') return ERRORS.WS_NO_KEY
  // RFC 6455 §4.2.1: 16 bytes in base64; anything else (two keys joined, a word) would get a 101
  // whose accept value no client matches
  if (!WS_KEY.test(key.trim())) return ERRORS.WS_BAD_KEY
  return null
}

/**
 * Answer a handshake that will not be upgraded: a short HTTP response (§7: with
 * `Sec-WebSocket-Version: 13`, CORS when there is an Origin), then close (ws `abortHandshake`).
 */
export function rejectUpgrade (socket: Duplex, err: ErrorSpec, origin: string | null, extra = ''): void {
  if (!socket.writable) {
    socket.destroy()
    return
  }
  const status = err.statusCode
  let text = `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nSec-WebSocket-Version: 13\r\n`
  if (err.message.length > 0) text += 'Content-Type: text/plain\r\n'
  text += `Content-Length: ${Buffer.byteLength(err.message)}\r\n` + extra + corsLines(origin) + 'Connection: close\r\n\r\n' + err.message
  socket.on('error', onError)
  socket.once('finish', destroyThis)
  socket.end(text)
}

export class WebSocketTransport implements Transport {
  readonly name = 'websocket'
  readonly index: number
  readonly core: Core
  /** Option `coalesce`: a turn's messages leave in one write per subscriber (coalesce.ts). */
  readonly #coalescer: Coalescer | null

  constructor (core: Core, index: number) {
    this.core = core
    this.index = index
    // variants: plain frames, and ws+meta frames of a single-channel subscription (both shared)
    // pings go every keepalive interval, messages or not: lastWrite is the last ping (keepalive)
    // (and each compressed, for those that negotiated permessage-deflate)
    this.#coalescer = core.opts.coalesce ? new Coalescer(core, index, [wsFrameOf, wsMetaFrameOf, wsDeflateFrameOf, wsDeflateMetaFrameOf], wsVariant, false) : null
  }

  detect (req: IncomingMessage): boolean {
    return wantsWebSocket(req.headers)
  }

  /**
   * A handshake routed through Fastify (so the host's hooks ran): Node emitted it as a request
   * (shouldUpgradeCallback declined it) or the plugin routed it from 'upgrade' (lib/plugin.ts).
   * Take the socket from Node's HTTP objects and go on as for an upgrade.
   */
  serve (sr: SubscribeRequest): void {
    const socket = detachSocket(sr.req, sr.res)
    // RFC 6455 §4.1: the handshake is an HTTP/1.1 request; an HTTP/1.0 one is no upgrade
    const err = sr.req.httpVersionMinor < 1 || sr.req.httpVersionMajor !== 1 ? ERRORS.BAD_REQUEST : handshakeError(sr.req.headers)
    const head = (sr.req as IncomingMessage & { [kUpgradeHead]?: Buffer })[kUpgradeHead] ?? EMPTY
    this.#serve(socket, err, sr.req.headers, head, sr.channels, sr.cursor, sr.origin, sr.flags, sr.grant, sr.host)
  }

  /**
   * A handshake read off a raw connection (lib/raw-publish.ts, the standalone server): an HTTP/1.1
   * request that never had Node's HTTP objects; `head` holds the bytes that came after it (the
   * client's first frames, if any). The raw connection's listeners and Node's own go, as
   * detachSocket drops them on Node's path; the rest is serve's.
   */
  serveSocket (socket: Socket, headers: IncomingHttpHeaders, head: Buffer, channels: readonly Channel[], cursor: Cursor, origin: string | null, flags: number, grant: Grant | null): void {
    dropListeners(socket)
    this.#serve(socket, handshakeError(headers), headers, head, channels, cursor, origin, flags, grant, '')
  }

  /** A handshake in error (`err`) or refused is answered and closed; any other upgraded. */
  #serve (socket: Socket, err: ErrorSpec | null, headers: IncomingHttpHeaders, head: Buffer, channels: readonly Channel[], cursor: Cursor, origin: string | null, flags: number, grant: Grant | null, host: string): void {
    if (err !== null || this.#refuse(socket, origin) || this.#refuseUser(socket, origin, grant)) {
      this.core.releaseChannels(channels)
      if (err !== null) rejectUpgrade(socket, err, origin)
      return
    }
    this.#start(socket, headers, head, channels, cursor, origin, flags, grant, host)
  }

  /** Shutdown, the connection limit (EXTENSION b) or the store away: 503 with a jittered Retry-After. */
  #refuse (socket: Duplex, origin: string | null): boolean {
    const core = this.core
    if (!core.refusing) return false
    core.countRefusal()
    rejectUpgrade(socket, ERRORS.OVER_CAPACITY, origin, 'Retry-After: ' + randomBetween(1, 10) + '\r\n')
    return true
  }

  /** The user holds maxSubscribersPerUser subscriptions here: 429 with Retry-After. */
  #refuseUser (socket: Duplex, origin: string | null, grant: Grant | null): boolean {
    if (!this.core.overUserLimit(grant)) return false
    rejectUpgrade(socket, ERRORS.USER_LIMIT, origin, 'Retry-After: ' + userLimitRetryAfter() + '\r\n')
    return true
  }

  #start (socket: WsSocket, headers: IncomingHttpHeaders, head: Buffer, channels: readonly Channel[], cursor: Cursor, origin: string | null, flags: number, grant: Grant | null, host: string): void {
    // a client must wait for the 101 (RFC 6455 §4.1): more than a close handshake sent with the
    // handshake is not held (as after it, onData), and such a client is dropped
    if (head.length > MAX_CONTROL_FRAME * 2) {
      this.core.releaseChannels(channels)
      socket.destroy()
      return
    }
    const proto = pickProtocol(headers['sec-websocket-protocol'])
    let f = flags | F_CATCHING_UP
    let h = HEAD + 'Sec-WebSocket-Accept: ' + acceptKey(String(headers['sec-websocket-key']).trim()) + '\r\n'
    if (proto !== PROTO_NONE) {
      f |= F_WS_META
      if (proto === PROTO_PARKLINE) f |= F_WS_GAP
      h += 'Sec-WebSocket-Protocol: ' + (proto === PROTO_PARKLINE ? 'ws+meta.parkline' : 'ws+meta.nchan') + '\r\n'
    }
    const deflate = this.core.opts.websocketDeflate ? acceptDeflate(headers['sec-websocket-extensions']) : null
    if (deflate !== null) {
      f |= F_WS_DEFLATE
      h += 'Sec-WebSocket-Extensions: ' + deflate + '\r\n'
    }
    h += corsLines(origin) + host + '\r\n'
    const sub = new Subscriber(this, socket, null, channels, cursor, origin, f)
    sub.grant = grant
    socket[kSubscriber] = sub
    // bytes that came with the handshake wait for the 101 (the pooled chunk is not kept)
    socket[kPartial] = head.length > 0 ? Buffer.from(head) : null
    socket.on('data', onData)
    socket.on('end', onEnd)
    socket.on('close', onClose)
    socket.on('error', onError)
    socket.on('drain', onDrain)
    // (option tcpNoDelay: false leaves small writes to Nagle, for fewer packets)
    socket.setNoDelay(this.core.opts.tcpNoDelay)
    sub.pendingHead = h
    if (this.core.register(sub)) this.ready(sub)
    // the client's FIN came while it was admitted (access control that waited), before these
    // listeners: ours follows, as onEnd would have sent it, and 'close' unregisters
    if (socket.readableEnded && !socket.writableEnded) socket.end()
  }

  /**
   * Refused at maxSubscribersPerUser once registered (the user's owner worker, or Redis, said no):
   * the `101` never left, so the upgrade is refused as at admission (429).
   */
  endOverLimit (sub: Subscriber): void {
    if (!unstarted(this.core, sub)) {
      this.end(sub, 429)
      return
    }
    const socket = sub.socket as WsSocket
    socket[kPartial] = null
    rejectUpgrade(socket, ERRORS.USER_LIMIT, sub.origin, 'Retry-After: ' + userLimitRetryAfter() + '\r\n')
  }

  /** Counted everywhere: the `101` goes out (§3.2: not before), then the replay. */
  ready (sub: Subscriber): void {
    const head = sub.pendingHead
    if (head === null) return
    sub.pendingHead = null
    const socket = sub.socket as WsSocket
    socket.write(head, 'latin1')
    sub.lastWrite = this.core.nowSec
    const early = socket[kPartial]
    if (early !== null && early !== undefined) {
      socket[kPartial] = null
      this.read(sub, early)
    }
    this.pump(sub)
  }

  /**
   * Held by the fence (Core.fence): replay what is buffered for it now, as catching up. Frames
   * queued for it before the hold leave first (its cursor is already past them); a drop gap the
   * queue still owes rides with the first message replayed.
   */
  resume (sub: Subscriber): void {
    if (sub.backlog !== null && sub.backlog.frames.length > 0) this.flush(sub)
    sub.flags |= F_CATCHING_UP
    this.pump(sub)
  }

  /** Replay from the buffer until caught up, paced by drain (as SSE's pump; EXTENSION e exempt). */
  pump (sub: Subscriber): void {
    const socket = sub.socket
    if (sub.pendingHead !== null) return
    while ((sub.flags & F_CLOSED) === 0) {
      if (socket.writableNeedDrain) return
      const next = this.core.nextMessage(sub)
      if (next === null) {
        sub.flags &= ~F_CATCHING_UP
        return
      }
      this.#write(sub, next.msg, sub.advance(next.msg, next.pos), withGaps(owedGap(sub), next.gap))
    }
  }

  /** The frame this subscriber gets for `msg`: shared unless its meta lines are its own. */
  #frame (sub: Subscriber, msg: Message, id: string, gap: string | null): Buffer {
    const flags = sub.flags
    const deflate = (flags & F_WS_DEFLATE) !== 0
    if ((flags & F_WS_META) === 0) return deflate ? msg.wsDeflateFrame() : msg.wsFrame()
    const g = (flags & F_WS_GAP) !== 0 ? gap : null
    if (sub.channels.length === 1 && g === null) return deflate ? msg.wsDeflateMetaFrame() : msg.wsMetaFrame()
    // meta lines of its own (multiplexed ids, a gap): sent uncompressed, as the extension allows
    return framePrefixed(msg.wsOpcode, msg.wsMeta(id, g), msg.data)
  }

  #write (sub: Subscriber, msg: Message, id: string, gap: string | null): void {
    const socket = sub.socket
    const flags = sub.flags
    const g = (flags & F_WS_GAP) !== 0 ? gap : null
    if ((flags & F_WS_META) !== 0 && (sub.channels.length > 1 || g !== null) && msg.data.length > COPY_LIMIT) {
      // per-subscriber meta lines in front of a large shared body: two writes, one syscall; on a
      // socket that still holds unread bytes, bytes of their own (lib/message.ts)
      const queued = socket.writableLength > 0
      const head = framePrefixHead(msg.wsOpcode, msg.wsMeta(id, g), msg.data.length)
      socket.cork()
      socket.write(queued ? unpinned(head) : head)
      socket.write(queued ? unpinned(msg.data) : msg.data)
      socket.uncork()
    } else {
      writeShared(socket, this.#frame(sub, msg, id, gap))
    }
    this.core.stats.delivered[this.index]!++
  }

  /**
   * Live delivery, as SSE's: frames go to the socket while it takes them, then wait in the
   * subscriber's backlog (messages not yet started) until 'drain'. Past queueCap the policy runs
   * (EXTENSION e); drop-oldest needs a gap signal, so only ws+meta.parkline gets it, every other
   * WebSocket subscriber is disconnected with 1013 `Overflow`.
   */
  deliver (sub: Subscriber, msg: Message, pos: number): void {
    const socket = sub.socket
    const gap = this.core.liveGap(sub, pos, msg.time)
    const waiting = socket.writableLength > 0
    // the cursor before this message, the `requested` of a drop gap should it be queued: kept as
    // numbers (a string is made only if it is queued); a multiplexed vector changes in advance
    const time0 = sub.time0
    const tag0 = sub.tag0
    const beforeMulti = sub.backlog === null && waiting && sub.multi !== null ? sub.requested(pos) : null
    const id = sub.advance(msg, pos)
    if (!socket.writableNeedDrain && (sub.backlog === null || sub.backlog.frames.length === 0)) {
      // a backlog left with no frames only carries a drop gap to signal on this message
      const pending = sub.backlog === null ? null : sub.backlog.gapFrom
      // the drop gap first (its requested id is the older), then this message's own signals
      const g = withGaps(pending, gap)
      if (!waiting) {
        sub.backlog = null
        if (g === null && this.#coalescer !== null && sub.channels.length === 1) {
          this.#coalescer.hold(sub, msg)
          return
        }
        this.#write(sub, msg, id, g)
        return
      }
      // bytes wait for the socket: the message goes at once only if it fits under queueCap with
      // them (§11e), after any frames this turn held for it (none is expected)
      if ((sub.flags & F_BATCHED) !== 0) this.releaseHeld(sub)
      const frame = this.#frame(sub, msg, id, g)
      if (socket.writableLength + frame.length <= this.core.opts.queueCap) {
        sub.backlog = null
        writeShared(socket, frame)
        this.core.stats.delivered[this.index]!++
        return
      }
    }
    const frame = this.#frame(sub, msg, id, gap)
    // drop-oldest needs a gap line: only ws+meta.parkline can carry one
    const before = sub.backlog !== null || !waiting ? null : beforeMulti ?? formatId(time0, tag0)
    if (enqueue(this.core, sub, before, msg, frame, id, frame.length, null, (sub.flags & F_WS_GAP) !== 0) === OVERFLOW) {
      closeWith(this.core, socket, OVERFLOW_CLOSE)
      return
    }
    // no 'drain' is coming (what waits went under the high-water mark): what was queued goes now
    if (!socket.writableNeedDrain) this.flush(sub)
  }

  /** 'drain': everything waiting leaves in one corked write; a drop gap rides on the first frame. */
  flush (sub: Subscriber): void {
    const backlog = sub.backlog
    if (backlog === null || backlog.frames.length === 0) return
    sub.backlog = null
    if (backlog.gapFrom !== null) backlog.frames[0] = this.#frame(sub, backlog.msgs[0]!, backlog.ids[0]!, backlog.gapFrom)
    const socket = sub.socket
    socket.cork()
    for (let i = 0; i < backlog.frames.length; i++) socket.write(backlog.frames[i]!)
    socket.uncork()
    this.core.stats.delivered[this.index]! += backlog.frames.length
  }

  /**
   * 410 → 1001 `410 Gone`, 408 → 1000 `408 Request Timeout`, 503 → 1001 `503 Service Unavailable`,
   * 401 → 1008 with the reason (`token expired`, `revoked`).
   */
  end (sub: Subscriber, status: number, reason?: string): void {
    this.core.unregister(sub)
    sub.backlog = null
    const head = sub.pendingHead
    sub.pendingHead = null
    if (head !== null) sub.socket.write(head, 'latin1')
    closeWith(this.core, sub.socket, status === 401 ? closeFrame(CLOSE_POLICY, reason ?? 'Unauthorized') : END_FRAMES[status] ?? INTERNAL_ERROR)
  }

  releaseHeld (sub: Subscriber): void {
    this.#coalescer?.release(sub)
  }

  /**
   * Shared tick (EXTENSION c): an empty ping; a connection that has not answered the previous
   * one with a pong by now is dropped.
   */
  keepalive (sub: Subscriber): boolean {
    if (sub.pendingHead !== null) return false
    const socket = sub.socket
    if ((sub.flags & F_WS_PING) !== 0) {
      this.core.unregister(sub)
      socket.destroy()
      return false
    }
    if (socket.writableLength > 0) return queuedAtKeepalive(this.core, sub)
    socket.write(PING)
    sub.flags |= F_WS_PING
    sub.lastWrite = this.core.nowSec
    return true
  }

  /**
   * Client frames (RFC 6455 §5): pings are answered, pongs clear the keepalive flag, a close is
   * echoed; data frames are refused from their header alone (1009 past MAX_PAYLOAD, else 1008),
   * malformed frames and a continuation frame (nothing to continue) get 1002. What is left over is at most one incomplete control frame.
   */
  read (sub: Subscriber, buf: Buffer): void {
    const socket = sub.socket as WsSocket
    const h = header
    let off = 0
    // the latest ping of this read: one pong answers it (RFC 6455 §5.5.3), so a read packed with
    // thousands of pings costs one frame and one write, not one each
    let ping: Buffer | null = null
    while (off < buf.length) {
      if ((sub.flags & F_CLOSED) !== 0) return
      const n = readHeader(buf, off, h, (sub.flags & F_WS_DEFLATE) !== 0)
      if (n === NEED_MORE) break
      if (n < 0) return this.#fail(sub, PROTOCOL_ERROR)
      // a continuation frame continues nothing here (a message's first frame is already refused):
      // a protocol error (RFC 6455 §5.4), not a publish
      if (h.opcode === 0) return this.#fail(sub, PROTOCOL_ERROR)
      if (h.opcode < OP_CLOSE) return this.#fail(sub, h.length > MAX_PAYLOAD ? TOO_BIG : PUBLISHING)
      if (off + n + h.length > buf.length) break
      const payload = unmaskPayload(buf, h)
      off += n + h.length
      if (h.opcode === OP_PING) {
        ping = payload
      } else if (h.opcode === OP_PONG) {
        sub.flags &= ~F_WS_PING
      } else {
        const code = closeCode(payload)
        if (code < 0) return this.#fail(sub, closeFrame(-code))
        // a ping that came before the close is answered before ours (RFC 6455 §5.5.2)
        if (ping !== null && socket.writableLength <= this.core.opts.queueCap) writeShared(socket, frame(OP_PONG, ping))
        this.core.unregister(sub)
        sub.backlog = null
        closeWith(this.core, socket, code === 1005 ? CLOSE_EMPTY : closeFrame(code))
        return
      }
    }
    socket[kPartial] = off < buf.length ? Buffer.from(buf.subarray(off)) : null
    // a peer that pings without reading gets no more pongs (the latest is enough)
    if (ping !== null && socket.writableLength <= this.core.opts.queueCap) writeShared(socket, frame(OP_PONG, ping))
  }

  #fail (sub: Subscriber, close: Buffer): void {
    this.core.unregister(sub)
    sub.backlog = null
    closeWith(this.core, sub.socket, close)
  }
}

/** A backlog that keeps each frame's message, so a drop gap can be framed into the first one. */
/** `ws+meta.parkline` > `ws+meta.nchan` > none, from the client's list (§7). */
export function pickProtocol (value: string | string[] | undefined): number {
  if (value === undefined) return PROTO_NONE
  const list = Array.isArray(value) ? value.join(',') : value
  let found = PROTO_NONE
  for (const p of list.split(',')) {
    const t = p.trim()
    if (t === 'ws+meta.parkline') return PROTO_PARKLINE
    if (t === 'ws+meta.nchan') found = PROTO_NCHAN
  }
  return found
}

/** Send a close frame and end our side; a peer that never closes its side is destroyed later. */
function closeWith (core: Core, socket: Socket, close: Buffer): void {
  const s = socket as WsSocket
  s[kPartial] = null
  // the close frame, then the linger (lib/linger.ts): a peer that never answers is destroyed
  endAndLinger(core, socket, close)
}

function destroyThis (this: Duplex): void {
  this.destroy()
}

function onData (this: WsSocket, chunk: Buffer): void {
  const sub = this[kSubscriber]
  // after our close frame, the peer's echo (and anything else) is ignored
  if (sub === undefined || (sub.flags & F_CLOSED) !== 0) return
  let buf = chunk
  const partial = this[kPartial]
  if (partial !== null && partial !== undefined) {
    buf = Buffer.concat([partial, chunk])
    this[kPartial] = null
  }
  if (sub.pendingHead !== null) {
    // not counted yet (workers, Redis): a client that sends more than a close handshake is dropped
    if (buf.length > MAX_CONTROL_FRAME * 2) {
      ;(sub.transport as WebSocketTransport).core.unregister(sub)
      this.destroy()
      return
    }
    this[kPartial] = buf === chunk ? Buffer.from(chunk) : buf
    return
  }
  ;(sub.transport as WebSocketTransport).read(sub, buf)
}

function onEnd (this: WsSocket): void {
  this.end()
}

function onClose (this: WsSocket): void {
  const sub = this[kSubscriber]
  if (sub !== undefined) (sub.transport as WebSocketTransport).core.unregister(sub)
}

function onError (): void {
  // 'close' follows and unregisters
}

function onDrain (this: WsSocket): void {
  const sub = this[kSubscriber]
  if (sub === undefined || (sub.flags & F_CLOSED) !== 0) return
  const t = sub.transport as WebSocketTransport
  if ((sub.flags & F_CATCHING_UP) !== 0) t.pump(sub)
  else if (sub.backlog !== null) t.flush(sub)
}

function wsFrameOf (m: Message): Buffer {
  return m.wsFrame()
}

function wsMetaFrameOf (m: Message): Buffer {
  return m.wsMetaFrame()
}

function wsDeflateFrameOf (m: Message): Buffer {
  return m.wsDeflateFrame()
}

function wsDeflateMetaFrameOf (m: Message): Buffer {
  return m.wsDeflateMetaFrame()
}

/** 0: plain frames; 1: ws+meta.nchan / ws+meta.parkline (one channel, no gap line); 2 and 3: those with permessage-deflate. */
function wsVariant (sub: Subscriber): number {
  return ((sub.flags & F_WS_META) === 0 ? 0 : 1) + ((sub.flags & F_WS_DEFLATE) === 0 ? 0 : 2)
}

/**
 * The answer to the first `Sec-WebSocket-Extensions` offer of permessage-deflate this server can
 * take (RFC 7692 §5, §7.1), or null: parameters it knows, each once, and no
 * `server_max_window_bits` below 15 (its frames are compressed once for every subscriber, with a
 * 32 KiB window; 15 is echoed, as §7.1.2.1 asks). The client's own window and context do not
 * matter: a client that sends a message is refused (§7: the subscriber location does not
 * publish), compressed or not.
 */
export function acceptDeflate (value: string | string[] | undefined): string | null {
  if (value === undefined) return null
  for (const offer of (Array.isArray(value) ? value.join(',') : value).split(',')) {
    const params = offer.split(';')
    if (params[0]!.trim().toLowerCase() !== 'permessage-deflate') continue
    const seen = new Set<string>()
    let ok = true
    for (let i = 1; i < params.length && ok; i++) {
      const p = params[i]!
      const eq = p.indexOf('=')
      const name = (eq === -1 ? p : p.slice(0, eq)).trim().toLowerCase()
      let v = eq === -1 ? null : p.slice(eq + 1).trim()
      if (v !== null && v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1)
      if (seen.has(name)) ok = false
      seen.add(name)
      if (name === 'server_no_context_takeover' || name === 'client_no_context_takeover') ok &&= v === null
      else if (name === 'client_max_window_bits') ok &&= v === null || /^(8|9|1[0-5])$/.test(v)
      else if (name === 'server_max_window_bits') ok &&= v === '15'
      else ok = false
    }
    if (ok) return seen.has('server_max_window_bits') ? DEFLATE_ANSWER + '; server_max_window_bits=15' : DEFLATE_ANSWER
  }
  return null
}

const DEFLATE_ANSWER = 'permessage-deflate; server_no_context_takeover'

/** §4.1: `Upgrade: websocket` (whole value) and a Connection header with the token `upgrade`. */
export function wantsWebSocket (headers: IncomingHttpHeaders): boolean {
  const upgrade = headers.upgrade
  if (upgrade === undefined || upgrade.toLowerCase() !== 'websocket') return false
  const connection = headers.connection
  if (connection === undefined) return false
  for (const token of connection.split(',')) if (token.trim().toLowerCase() === 'upgrade') return true
  return false
}
