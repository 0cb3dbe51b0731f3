// The HTTP streams — EventSource (§6), multipart/mixed and chunked (§8) — share everything but
// their bytes: after the head Node's HTTP objects are released (detach.ts), the socket's listeners
// are module-level functions that find the Subscriber via socket[kSubscriber], the replay is paced
// by drain, live messages are coalesced per event-loop turn where the frame is shared
// (coalesce.ts) and wait in a bounded backlog while the socket is backed up (EXTENSION e).
// Subclasses supply only the bytes.
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Core } from '../lib/core.ts'
import type { Grant } from '../lib/access.ts'
import type { Channel } from '../lib/channel-registry.ts'
import { corsLines, randomBetween, userLimitRetryAfter } from '../lib/http.ts'
import { ERRORS } from '../lib/errors.ts'
import { withHeaderLines } from '../lib/host-headers.ts'
import { formatHttpDate, formatId, withGaps, type Cursor } from '../lib/message-id.ts'
import type { Message } from '../lib/message.ts'
import { F_BATCHED, F_CATCHING_UP, F_CLOSED, Subscriber, queuedAtKeepalive, unstarted, type SubscribeRequest, type Transport } from '../lib/subscriber.ts'
import { kSubscriber } from '../lib/symbols.ts'
import { detachSocket, dropListeners } from './detach.ts'
import { OVERFLOW, enqueue, owedGap } from '../lib/backlog.ts'
import { endAndLinger } from '../lib/linger.ts'
import type { Coalescer } from './coalesce.ts'

type StreamSocket = Socket & { [kSubscriber]?: Subscriber }

export abstract class HttpStreamTransport implements Transport {
  abstract readonly name: string
  readonly index: number
  readonly core: Core
  /** Whether an overflow under drop-oldest can be signalled (§11e); if not, it disconnects. */
  protected abstract readonly signalsGap: boolean
  /**
   * Set by a subclass whose single-channel frame is the same for every subscriber (option
   * `coalesce`): its framer must give exactly what write() sends for such a subscriber.
   */
  protected coalescer: Coalescer | null

  constructor (core: Core, index: number) {
    this.core = core
    this.index = index
    this.coalescer = null
  }

  /** What ends the stream for a status (410 DELETE, 408 timeout, 503 shutdown, 401 auth): its last bytes. */
  protected abstract endBytes (status: number, reason?: string): Buffer

  /** What ends the stream on overflow under policy `disconnect`. */
  protected overflowBytes (): Buffer {
    return this.endBytes(503)
  }

  /**
   * At the connection limit or while draining (EXTENSION b): 503 with a jittered Retry-After, the
   * socket ended and lingering (as every stream's end). The bytes are the ones Node's writeHead
   * gave for these headers.
   */
  protected refuseSocket (socket: Socket, origin: string | null): void {
    socket.on('error', onError)
    const head = 'HTTP/1.1 503 Service Unavailable\r\nRetry-After: ' + randomBetween(1, 10) + '\r\nConnection: close\r\nContent-Length: 0\r\n' +
      corsLines(origin) + 'Date: ' + formatHttpDate(Math.floor(Date.now() / 1000)) + '\r\n\r\n'
    endAndLinger(this.core, socket, head, 'latin1')
  }

  /** The user holds maxSubscribersPerUser subscriptions here: `429` with Retry-After, then close. */
  protected refuseUser (socket: Socket, origin: string | null): void {
    socket.on('error', onError)
    const body = ERRORS.USER_LIMIT.message
    const head = 'HTTP/1.1 429 Too Many Requests\r\nRetry-After: ' + userLimitRetryAfter() + '\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ' + body.length + '\r\n' +
      corsLines(origin) + 'Date: ' + formatHttpDate(Math.floor(Date.now() / 1000)) + '\r\n\r\n'
    endAndLinger(this.core, socket, head + body, 'latin1')
  }

  abstract detect (req: IncomingMessage): boolean

  /** The head and the stream's first bytes; may set per-connection state on `sub`. */
  protected abstract open (sub: Subscriber, origin: string | null): string

  /**
   * The bytes of `msg` for this subscriber — shared and cached on the Message wherever the id is
   * not the subscriber's own — or null when the message is not sent at all (chunked: an empty
   * message would end the stream).
   */
  protected abstract payload (sub: Subscriber, msg: Message, id: string): Buffer | null

  /** Bytes one queued message takes on this subscriber's wire: payload plus per-connection framing. */
  protected abstract size (sub: Subscriber, msg: Message, payload: Buffer, id: string): number

  /**
   * Write one message: the per-subscriber framing around the shared payload. `msg` is null for a
   * frame from the backlog (flush): `payload` is then what `queued` gave.
   */
  protected abstract write (sub: Subscriber, msg: Message | null, payload: Buffer, id: string, gap: string | null): void

  /** What the backlog keeps of a message (a frame `write` is given with no message): the payload. */
  protected queued (_sub: Subscriber, _msg: Message, payload: Buffer, _id: string): Buffer {
    return payload
  }

  serve (sr: SubscribeRequest): void {
    this.#serve(detachSocket(sr.req, sr.res), sr.channels, sr.cursor, sr.origin, sr.flags, sr.grant, sr.host)
  }

  /**
   * A request read off a raw connection (lib/raw-publish.ts, the standalone server): the socket
   * never had Node's HTTP objects, so there is nothing to detach; the raw connection's listeners
   * and Node's own go, as releaseSocket drops them on Node's path. The rest is serve's.
   */
  serveSocket (socket: Socket, channels: readonly Channel[], cursor: Cursor, origin: string | null, flags: number, grant: Grant | null): void {
    dropListeners(socket)
    this.#serve(socket, channels, cursor, origin, flags, grant, '')
  }

  #serve (socket: Socket, channels: readonly Channel[], cursor: Cursor, origin: string | null, flags: number, grant: Grant | null, host: string): void {
    const core = this.core
    if (core.refusing) {
      core.releaseChannels(channels)
      core.countRefusal()
      this.refuseSocket(socket, origin)
      return
    }
    if (core.overUserLimit(grant)) {
      core.releaseChannels(channels)
      this.refuseUser(socket, origin)
      return
    }
    this.#start(socket, channels, cursor, origin, flags, grant, host)
  }

  /** The stream begins on a socket that is the caller's alone (detached, or read raw); `host`: the host app's header lines (embedded). */
  #start (socket: StreamSocket, channels: readonly Channel[], cursor: Cursor, origin: string | null, flags: number, grant: Grant | null, host: string): void {
    const sub = new Subscriber(this, socket, null, channels, cursor, origin, flags | F_CATCHING_UP)
    sub.grant = grant
    socket[kSubscriber] = sub
    socket.on('error', onError)
    socket.on('close', onClose)
    socket.on('data', onData)
    socket.on('end', onEnd)
    socket.on('drain', onDrain)
    // (option tcpNoDelay: false leaves small writes to Nagle, for fewer packets)
    socket.setNoDelay(this.core.opts.tcpNoDelay)
    sub.pendingHead = withHeaderLines(this.open(sub, origin), host)
    if (this.core.register(sub)) this.ready(sub)
    // the client's FIN came while it was admitted (access control that waited), before these
    // listeners: ours follows, as onEnd would have sent it, and 'close' unregisters
    if (socket.readableEnded && !socket.writableEnded) socket.end()
  }

  /**
   * Refused at maxSubscribersPerUser once registered (the user's owner worker, or Redis, said no):
   * its head never left, so the refusal its admission would have given goes in its place.
   */
  endOverLimit (sub: Subscriber): void {
    if (unstarted(this.core, sub)) this.refuseUser(sub.socket, sub.origin)
    else this.end(sub, 429)
  }

  /** Counted everywhere (§3.2): the head goes out, then the replay. */
  ready (sub: Subscriber): void {
    const head = sub.pendingHead
    if (head === null) return
    sub.pendingHead = null
    sub.socket.write(head, 'latin1')
    sub.lastWrite = this.core.nowSec
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

  /** Replay from the buffer until caught up, paced by drain (the backlog is exempt from the cap). */
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
      const id = sub.advance(next.msg, next.pos)
      const payload = this.payload(sub, next.msg, id)
      if (payload !== null) this.#send(sub, next.msg, payload, id, withGaps(owedGap(sub), next.gap))
    }
  }

  #send (sub: Subscriber, msg: Message | null, payload: Buffer, id: string, gap: string | null): void {
    this.write(sub, msg, payload, id, gap)
    sub.lastWrite = this.core.nowSec
    this.core.stats.delivered[this.index]!++
  }

  /**
   * Live delivery: written at once, coalesced, or queued under the cap (lib/backlog.ts). Written at
   * once only while nothing waits for the socket, or what waits and the message fit under queueCap
   * (§11e): a large message behind a few unread kilobytes overflows, as it would behind a backlog.
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
    let payload: Buffer | null
    if (!socket.writableNeedDrain && (sub.backlog === null || sub.backlog.frames.length === 0)) {
      // a backlog left with no frames only carries a drop gap to signal on this message
      const pending = sub.backlog === null ? null : sub.backlog.gapFrom
      // the drop gap first (its requested id is the older), then this message's own signals
      const g = withGaps(pending, gap)
      if (!waiting) {
        sub.backlog = null
        if (g === null && this.coalescer !== null && sub.channels.length === 1) {
          // a message the transport skips (chunked: an empty one) is not held, nor counted delivered
          if (msg.data.length === 0 && this.payload(sub, msg, id) === null) return
          this.coalescer.hold(sub, msg)
          return
        }
        payload = this.payload(sub, msg, id)
        if (payload !== null) this.#send(sub, msg, payload, id, g)
        return
      }
      // frames this turn held for it leave first (none is expected: nothing waited when they came)
      if ((sub.flags & F_BATCHED) !== 0) this.releaseHeld(sub)
      payload = this.payload(sub, msg, id)
      if (payload === null) return
      if (socket.writableLength + this.size(sub, msg, payload, id) <= this.core.opts.queueCap) {
        sub.backlog = null
        this.#send(sub, msg, payload, id, g)
        return
      }
    } else {
      payload = this.payload(sub, msg, id)
      if (payload === null) return
    }
    const before = sub.backlog !== null || !waiting ? null : beforeMulti ?? formatId(time0, tag0)
    if (enqueue(this.core, sub, before, msg, this.queued(sub, msg, payload, id), id, this.size(sub, msg, payload, id), gap, this.signalsGap) === OVERFLOW) {
      // finish what is being written, drop what has not started, end the stream, close
      endAndLinger(this.core, socket, this.overflowBytes())
      return
    }
    // the socket took what waits under its high-water mark, so no 'drain' is coming: what was
    // queued (drop-oldest keeps the newest whatever Node holds) goes now, with its gap
    if (!socket.writableNeedDrain) this.flush(sub)
  }

  /** 'drain': everything waiting leaves in one corked write. */
  flush (sub: Subscriber): void {
    const backlog = sub.backlog
    if (backlog === null || backlog.frames.length === 0) return
    sub.backlog = null
    const socket = sub.socket
    socket.cork()
    for (let i = 0; i < backlog.frames.length; i++) {
      this.write(sub, null, backlog.frames[i]!, backlog.ids[i]!, backlog.gapFrom)
      backlog.gapFrom = null
    }
    socket.uncork()
    sub.lastWrite = this.core.nowSec
    this.core.stats.delivered[this.index]! += backlog.frames.length
  }

  end (sub: Subscriber, status: number, reason?: string): void {
    this.core.unregister(sub)
    sub.backlog = null
    const head = sub.pendingHead
    sub.pendingHead = null
    if (head !== null) sub.socket.write(head, 'latin1')
    endAndLinger(this.core, sub.socket, this.endBytes(status, reason))
  }

  keepalive (sub: Subscriber): boolean {
    // multipart and chunked get no keepalive (EXTENSION c; SSE overrides), but a peer that stopped
    // reading is found as on the streams that do
    if (sub.pendingHead === null && sub.socket.writableLength > 0) return queuedAtKeepalive(this.core, sub)
    return false
  }

  releaseHeld (sub: Subscriber): void {
    this.coalescer?.release(sub)
  }
}

function onClose (this: StreamSocket): void {
  const sub = this[kSubscriber]
  if (sub !== undefined) (sub.transport as HttpStreamTransport).core.unregister(sub)
}

function onEnd (this: StreamSocket): void {
  this.end()
}

function onError (): void {
  // 'close' follows and unregisters
}

function onData (this: StreamSocket): void {
  // a stream client sends nothing after its request; bytes here are ignored
}

function onDrain (this: StreamSocket): void {
  const sub = this[kSubscriber]
  if (sub === undefined || (sub.flags & F_CLOSED) !== 0) return
  const t = sub.transport as HttpStreamTransport
  if ((sub.flags & F_CATCHING_UP) !== 0) t.pump(sub)
  else if (sub.backlog !== null) t.flush(sub)
}
