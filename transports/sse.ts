// EventSource (PROTOCOL.md §6) on the shared HTTP-stream machinery (http-stream.ts): after the head
// the subscriber is a net.Socket plus one Subscriber record. What is SSE's own: the head with
// `: hi` and a random `retry:`, the frames (one shared Buffer per message for single-channel
// subscribers, Message.sseFrame; multiplexed ones print their own vector id), the gap comment or
// event, the `:<code>:` endings, the overflow event, keepalives, and the 200 + `:503:` answer at
// the connection limit (a native EventSource gives up on any non-200, but honours `retry:`).
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Core } from '../lib/core.ts'
import { corsLines, randomBetween, userLimitRetryAfter } from '../lib/http.ts'
import { ERRORS } from '../lib/errors.ts'
import { queuedCopy, writeShared, type Message } from '../lib/message.ts'
import { gapSignals } from '../lib/message-id.ts'
import { F_GAP_EVENT, queuedAtKeepalive, type Subscriber } from '../lib/subscriber.ts'
import { Coalescer } from './coalesce.ts'
import { HttpStreamTransport } from './http-stream.ts'
import { endAndLinger } from '../lib/linger.ts'

const HEAD = 'HTTP/1.1 200 OK\r\n' +
  'Content-Type: text/event-stream; charset=utf-8\r\n' +
  'Cache-Control: no-cache, no-transform\r\n' +
  'X-Accel-Buffering: no\r\n' +
  'Connection: close\r\n'
const HI = ': hi\n\n'
/** Largest `data:` lines a multiplexed subscriber's frame copies (see SseTransport.payload): a 4 KiB kernel buffer's worth. */
const MULTI_COPY_MAX = 4096
const KEEPALIVE_COMMENT = Buffer.from(':\n\n')
const KEEPALIVE_EVENT = Buffer.from('event: ping\n\n')
const END_LINES: Record<number, Buffer> = {
  400: Buffer.from(':400: 400 Bad Request\n\n'),
  408: Buffer.from(':408: 408 Request Timeout\n\n'),
  410: Buffer.from(':410: 410 Gone\n\n'),
  429: Buffer.from(':429: 429 ' + ERRORS.USER_LIMIT.message + '\n\n'),
  503: Buffer.from(':503: 503 Service Unavailable\n\n')
}

export class SseTransport extends HttpStreamTransport {
  readonly name = 'eventsource'
  // the gap rides as a comment (or an event) before the next message
  protected readonly signalsGap = true
  readonly #keepalive: Buffer
  readonly #overflowNotice: Buffer
  /** `Parkline-Keepalive: <s>` (the interval): a client knows from the open that silence means a dead path. */
  readonly #keepaliveLine: string
  readonly #exposeLine: string
  /** The last multiplexed frame made (payload): its message and id, for the next subscriber's. */
  #multiMsg: Message | null = null
  #multiId = ''
  #multiFrame: Buffer = Buffer.alloc(0)

  constructor (core: Core, index: number) {
    super(core, index)
    this.#keepalive = core.opts.ping === 'event' ? KEEPALIVE_EVENT : KEEPALIVE_COMMENT
    this.#keepaliveLine = core.opts.keepalive > 0 ? `Parkline-Keepalive: ${core.opts.keepalive}\r\n` : ''
    this.#exposeLine = core.opts.keepalive > 0 ? 'Access-Control-Expose-Headers: Parkline-Keepalive\r\n' : ''
    this.#overflowNotice = Buffer.from(`event: parkline-overflow\ndata: {"policy":"disconnect","limit":${core.opts.queueCap}}\n\n`)
    this.coalescer = core.opts.coalesce ? new Coalescer(core, index, [sseFrameOf], onlyVariant) : null
  }

  detect (req: IncomingMessage): boolean {
    return acceptsEventStream(req.headers)
  }

  protected open (_sub: Subscriber, origin: string | null): string {
    return this.#head(origin)
  }

  #head (origin: string | null): string {
    const { retryMin, retryMax } = this.core.opts
    const retry = retryMax === 0 ? '' : 'retry: ' + randomBetween(retryMin, retryMax) + '\n\n'
    return HEAD + this.#keepaliveLine + corsLines(origin) + (origin === null ? '' : this.#exposeLine) + '\r\n' + HI + retry
  }

  /**
   * At maxSubscribersPerUser: as a refusal at the connection limit (an EventSource does not
   * reconnect after any other status), with `retry:` the Retry-After of the other transports and
   * `:429:`.
   */
  protected refuseUser (socket: Socket, origin: string | null): void {
    socket.on('error', onError)
    const retry = 'retry: ' + userLimitRetryAfter() * 1000 + '\n\n'
    endAndLinger(this.core, socket, HEAD + corsLines(origin) + '\r\n' + HI + retry + ':429: 429 ' + ERRORS.USER_LIMIT.message + '\n\n', 'latin1')
  }

  /** EXTENSION b: `200`, `: hi`, `retry:`, then `:503:` and close. */
  protected refuseSocket (socket: Socket, origin: string | null): void {
    socket.on('error', onError)
    // (a client that never closes its side is destroyed after the linger, as every stream's end)
    endAndLinger(this.core, socket, this.#head(origin) + END_LINES[503]!.toString('latin1'), 'latin1')
  }

  // A multiplexed subscription prints its own id line before the `data:` lines. A small message is
  // copied with it into one frame (one write; at most MULTI_COPY_MAX, shared by the subscribers
  // printing the same id, which a client that does not read may keep); a larger one is written as its id line and the shared `data:`
  // lines together (one writev), never copied: a copy each would be kept by every such client (a
  // 1 MiB message in each one's socket). A backlog (bounded by queueCap) keeps whole frames.
  protected payload (sub: Subscriber, msg: Message, id: string): Buffer {
    if (sub.channels.length === 1) return msg.sseFrame()
    if (msg.sseData().length > MULTI_COPY_MAX) return msg.sseData()
    // subscribers of the same channels, at the same place, print the same id (a broadcast's): the
    // frame made for the one before is theirs too, one Buffer for the run of them
    if (msg === this.#multiMsg && id === this.#multiId) return this.#multiFrame
    const frame = Buffer.concat([Buffer.from(msg.sseHead(id), 'latin1'), msg.sseData()])
    this.#multiMsg = msg
    this.#multiId = id
    this.#multiFrame = frame
    return frame
  }

  /** Is the payload of `msg` for `sub` its whole frame (single-channel, or copied with its id line), not the shared `data:` lines alone? */
  #whole (sub: Subscriber, msg: Message): boolean {
    return sub.channels.length === 1 || msg.sseData().length <= MULTI_COPY_MAX
  }

  protected size (sub: Subscriber, msg: Message, payload: Buffer, id: string): number {
    return this.#whole(sub, msg) ? payload.length : msg.sseHead(id).length + payload.length
  }

  protected queued (sub: Subscriber, msg: Message, payload: Buffer, id: string): Buffer {
    return this.#whole(sub, msg) ? payload : Buffer.concat([Buffer.from(msg.sseHead(id), 'latin1'), payload])
  }

  protected write (sub: Subscriber, msg: Message | null, payload: Buffer, id: string, gap: string | null): void {
    const socket = sub.socket
    if (msg === null || this.#whole(sub, msg)) {
      if (gap !== null) socket.write(gapText(sub, gap, id), 'latin1')
      writeShared(socket, payload)
      return
    }
    // (as writeShared: bytes that wait behind others get a store of their own, one for all sockets)
    const data = socket.writableLength > 0 && socket.writableCorked === 0 ? queuedCopy(payload) : payload
    socket.cork()
    socket.write(gap === null ? msg.sseHead(id) : gapText(sub, gap, id) + msg.sseHead(id), 'latin1')
    socket.write(data)
    socket.uncork()
  }

  protected endBytes (status: number, reason?: string): Buffer {
    // 401: `:401: token expired` / `:401: revoked` (rare: built when it happens)
    if (status === 401) return Buffer.from(`:401: ${reason ?? 'Unauthorized'}\n\n`)
    return END_LINES[status] ?? END_LINES[503]!
  }

  protected overflowBytes (): Buffer {
    return this.#overflowNotice
  }

  keepalive (sub: Subscriber): boolean {
    if (sub.pendingHead !== null) return false
    if (sub.socket.writableLength > 0) return queuedAtKeepalive(this.core, sub)
    sub.socket.write(this.#keepalive)
    sub.lastWrite = this.core.nowSec
    return true
  }
}

/** §11a: a comment just before the message, or with `?parkline_gap=event` an event of its own. */
function gapText (sub: Subscriber, gap: string, resumed: string): string {
  let out = ''
  // one signal per channel that lost messages (lib/message-id.ts withGaps)
  for (const requested of gapSignals(gap)) {
    const json = '{"requested":"' + requested + '","resumed":"' + resumed + '"}'
    out += (sub.flags & F_GAP_EVENT) !== 0 ? 'event: parkline-gap\ndata: ' + json + '\n\n' : ':parkline-gap ' + json + '\n'
  }
  return out
}

function sseFrameOf (m: Message): Buffer {
  return m.sseFrame()
}

function onlyVariant (): number {
  return 0
}

function onError (): void {
  // the refused connection closes by itself
}

/** §4.1: an Accept that names text/event-stream. */
export function acceptsEventStream (headers: IncomingHttpHeaders): boolean {
  const accept = headers.accept
  return accept !== undefined && accept.indexOf('text/event-stream') !== -1
}
