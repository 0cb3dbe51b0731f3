// EventSource (PROTOCOL.md §6). After the head, the subscriber is a net.Socket plus one Subscriber
// record: Node's HTTP objects are released (detach.ts) and Fastify's never outlive the handler.
// Every live message is one shared Buffer (Message.sseFrame) written to every single-channel
// subscriber; listeners are module-level functions that find their record via a Symbol.
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Core } from '../lib/core.ts'
import { corsLines, randomBetween } from '../lib/http.ts'
import type { Message } from '../lib/message.ts'
import { F_CATCHING_UP, F_CLOSED, F_GAP_EVENT, Subscriber, type SubscribeRequest, type Transport } from '../lib/subscriber.ts'
import { kSubscriber } from '../lib/symbols.ts'
import { Coalescer } from './coalesce.ts'
import { detachSocket } from './detach.ts'

const HEAD = 'HTTP/1.1 200 OK\r\n' +
  'Content-Type: text/event-stream; charset=utf-8\r\n' +
  'Cache-Control: no-cache, no-transform\r\n' +
  'X-Accel-Buffering: no\r\n' +
  'Connection: close\r\n'
const HI = ': hi\n\n'
const KEEPALIVE_COMMENT = Buffer.from(':\n\n')
const KEEPALIVE_EVENT = Buffer.from('event: ping\n\n')
const END_LINES: Record<number, Buffer> = {
  400: Buffer.from(':400: 400 Bad Request\n\n'),
  408: Buffer.from(':408: 408 Request Timeout\n\n'),
  410: Buffer.from(':410: 410 Gone\n\n'),
  503: Buffer.from(':503: 503 Service Unavailable\n\n')
}

type SseSocket = Socket & { [kSubscriber]?: Subscriber }

export class SseTransport implements Transport {
  readonly name = 'eventsource'
  readonly index: number
  readonly core: Core
  readonly #keepalive: Buffer
  readonly #overflowNotice: Buffer
  /** Option `coalesce`: a turn's messages leave in one write per subscriber (coalesce.ts). */
  readonly #coalescer: Coalescer | null

  constructor (core: Core, index: number) {
    this.core = core
    this.index = index
    this.#coalescer = core.opts.coalesce ? new Coalescer(core, index, [sseFrameOf], sseVariant) : null
    this.#keepalive = core.opts.ping === 'event' ? KEEPALIVE_EVENT : KEEPALIVE_COMMENT
    this.#overflowNotice = Buffer.from(`event: parkline-overflow\ndata: {"policy":"disconnect","limit":${core.opts.queueCap}}\n\n`)
  }

  detect (req: IncomingMessage): boolean {
    const accept = req.headers.accept
    return accept !== undefined && accept.indexOf('text/event-stream') !== -1
  }

  #retryLine (): string {
    const { retryMin, retryMax } = this.core.opts
    return retryMax === 0 ? '' : 'retry: ' + randomBetween(retryMin, retryMax) + '\n\n'
  }

  serve (sr: SubscribeRequest): void {
    const core = this.core
    const head = HEAD + corsLines(sr.origin) + '\r\n' + HI + this.#retryLine()
    const socket = detachSocket(sr.req, sr.res) as SseSocket
    socket.on('error', onError)
    socket.on('close', onClose)
    if (core.draining || core.atCapacity) {
      // EXTENSION b: a native EventSource gives up on any non-200, but honours retry:.
      core.releaseChannels(sr.channels)
      core.stats.refused++
      socket.end(head + END_LINES[503]!.toString('latin1'), 'latin1')
      return
    }
    const sub = new Subscriber(this, socket, null, sr.channels, sr.cursor, sr.origin, sr.flags | F_CATCHING_UP)
    socket[kSubscriber] = sub
    socket.on('data', onData)
    socket.on('end', onEnd)
    socket.on('drain', onDrain)
    socket.setNoDelay(true)
    sub.pendingHead = head
    if (core.register(sub)) this.ready(sub)
  }

  /** Counted everywhere: the head goes out (§3.2: not before), then the replay. */
  ready (sub: Subscriber): void {
    const head = sub.pendingHead
    if (head === null) return
    sub.pendingHead = null
    sub.socket.write(head, 'latin1')
    sub.lastWrite = this.core.nowSec
    this.pump(sub)
  }

  /**
   * Replay from the buffer until caught up, paced by socket drain (EXTENSION e: the backlog is
   * exempt from the cap). Live fan-out skips the subscriber meanwhile; the buffer holds what it
   * publishes, so the switch to live is seamless.
   */
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
      if (next.gap !== null) socket.write(gapText(sub, next.gap, id), 'latin1')
      this.#write(sub, next.msg, id)
    }
  }

  #write (sub: Subscriber, msg: Message, id: string): void {
    const socket = sub.socket
    if (sub.channels.length === 1) {
      socket.write(msg.sseFrame())
    } else {
      socket.cork()
      socket.write(msg.sseHead(id), 'latin1')
      socket.write(msg.sseData())
      socket.uncork()
    }
    sub.lastWrite = this.core.nowSec
    this.core.stats.delivered[this.index]!++
  }

  /**
   * Live delivery. While the socket takes bytes, the shared frame is written at once. Once Node's
   * buffer is past its high-water mark, frames wait in the subscriber's backlog (messages not yet
   * started) and leave together, in one writev, on 'drain'. Queued bytes (Node's + backlog) never
   * pass queueCap by more than one message (EXTENSION e); past it the policy runs, in O(1) for
   * disconnect and O(dropped) for drop-oldest, without touching any other subscriber.
   */
  deliver (sub: Subscriber, msg: Message, pos: number): void {
    const socket = sub.socket
    // parked below the floor (expired, or a newer channel record): the gap rides on this message
    const gap = this.core.liveGap(sub, pos)
    const before = sub.backlog === null && socket.writableNeedDrain ? sub.requested(pos) : null
    const id = sub.advance(msg, pos)
    if (!socket.writableNeedDrain && (sub.backlog === null || sub.backlog.frames.length === 0)) {
      // a backlog left with no frames only carries a drop gap to signal on this message
      const pending = sub.backlog === null ? null : sub.backlog.gapFrom
      sub.backlog = null
      const g = pending ?? gap
      if (g !== null) socket.write(gapText(sub, g, id), 'latin1')
      else if (this.#coalescer !== null && sub.channels.length === 1) {
        this.#coalescer.hold(sub, msg)
        return
      }
      this.#write(sub, msg, id)
      return
    }
    let frame = sub.channels.length === 1 ? msg.sseFrame() : Buffer.concat([Buffer.from(msg.sseHead(id), 'latin1'), msg.sseData()])
    if (gap !== null) frame = Buffer.concat([Buffer.from(gapText(sub, gap, id), 'latin1'), frame])
    let backlog = sub.backlog
    if (backlog === null) backlog = sub.backlog = new Backlog(before!)
    const cap = this.core.opts.queueCap
    if (socket.writableLength + backlog.bytes + frame.length > cap && (backlog.frames.length > 0 || socket.writableLength > 0)) {
      if (this.core.opts.queuePolicy === 'disconnect') {
        // finish what is being written, drop what has not started, say why, close;
        // the client resumes from its last id, so nothing inside the buffer window is lost
        this.core.stats.overflowDisconnect++
        this.core.unregister(sub)
        sub.backlog = null
        socket.end(this.#overflowNotice)
        return
      }
      // drop-oldest: make room; the next message delivered carries the gap signal. When even an
      // empty backlog cannot take it (Node still holds a full cap in flight), it is dropped too.
      let dropped = 0
      while (backlog.frames.length > 0 && socket.writableLength + backlog.bytes + frame.length > cap) {
        backlog.bytes -= backlog.frames.shift()!.length
        backlog.ids.shift()
        dropped++
      }
      const dropNew = socket.writableLength + frame.length > cap
      if (dropped > 0 || dropNew) {
        this.core.stats.overflowDropOldest++
        if (backlog.gapFrom === null) {
          backlog.gapFrom = backlog.lastSentId
          this.core.stats.gap('dropped')
        }
      }
      if (dropNew) return
    }
    backlog.frames.push(frame)
    backlog.ids.push(id)
    backlog.bytes += frame.length
  }

  /** 'drain': everything waiting leaves in one corked write. */
  flush (sub: Subscriber): void {
    const backlog = sub.backlog
    if (backlog === null || backlog.frames.length === 0) return // (a pending gap waits for a message)
    sub.backlog = null
    const socket = sub.socket
    socket.cork()
    for (let i = 0; i < backlog.frames.length; i++) {
      if (backlog.gapFrom !== null) {
        socket.write(gapText(sub, backlog.gapFrom, backlog.ids[i]!), 'latin1')
        backlog.gapFrom = null
      }
      socket.write(backlog.frames[i]!)
    }
    socket.uncork()
    sub.lastWrite = this.core.nowSec
    this.core.stats.delivered[this.index]! += backlog.frames.length
  }

  end (sub: Subscriber, status: number): void {
    this.core.unregister(sub)
    sub.backlog = null
    const line = END_LINES[status] ?? END_LINES[503]!
    const head = sub.pendingHead
    sub.pendingHead = null
    if (head !== null) sub.socket.write(head, 'latin1')
    sub.socket.end(line)
  }

  keepalive (sub: Subscriber): void {
    if (sub.socket.writableLength > 0 || sub.pendingHead !== null) return
    sub.socket.write(this.#keepalive)
    sub.lastWrite = this.core.nowSec
  }
}

/** Frames of one subscriber not yet handed to the socket (only exists while it is backed up). */
export class Backlog {
  frames: Buffer[]
  ids: string[]
  bytes: number
  /** Id of the last frame handed to the socket: the `requested` of a drop gap. */
  lastSentId: string
  gapFrom: string | null
  constructor (lastSentId: string) {
    this.frames = []
    this.ids = []
    this.bytes = 0
    this.lastSentId = lastSentId
    this.gapFrom = null
  }
}

function sseFrameOf (m: Message): Buffer {
  return m.sseFrame()
}

function sseVariant (): number {
  return 0
}

function gapText (sub: Subscriber, requested: string, resumed: string): string {
  const json = '{"requested":"' + requested + '","resumed":"' + resumed + '"}'
  return (sub.flags & F_GAP_EVENT) !== 0 ? 'event: parkline-gap\ndata: ' + json + '\n\n' : ':parkline-gap ' + json + '\n'
}

function subOf (socket: SseSocket): Subscriber | undefined {
  return socket[kSubscriber]
}

function onClose (this: SseSocket): void {
  const sub = subOf(this)
  if (sub !== undefined) (sub.transport as SseTransport).core.unregister(sub)
}

function onEnd (this: SseSocket): void {
  this.end()
}

function onError (): void {
  // 'close' follows and unregisters
}

function onData (this: SseSocket): void {
  // An EventSource sends nothing after its request; bytes here are ignored.
}

function onDrain (this: SseSocket): void {
  const sub = subOf(this)
  if (sub === undefined || (sub.flags & F_CLOSED) !== 0) return
  const t = sub.transport as SseTransport
  if ((sub.flags & F_CATCHING_UP) !== 0) t.pump(sub)
  else if (sub.backlog !== null) t.flush(sub)
}
