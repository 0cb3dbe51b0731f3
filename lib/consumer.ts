// Server-side consumers (`app.parkline.subscribe(...)`): a subscriber with no socket, whose frames
// are Message objects handed to an async iterator. It registers through the core like any other
// subscriber, so the engine (memory, workers, Redis) counts it, replays its buffer and fans out to
// it: the host sees exactly the ids and order an SSE client sees. The replay is pulled by the
// consumer (one buffered message per `next()`), live messages wait in a bounded queue.
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Core } from './core.ts'
import { ERRORS, ParklineError, type ErrorSpec } from './errors.ts'
import { unpinned, type Message } from './message.ts'
import { gapSignals, type Cursor } from './message-id.ts'
import { F_CATCHING_UP, F_CLOSED, Subscriber, type SubscribeRequest, type Transport } from './subscriber.ts'

/** One message as a server-side consumer receives it. */
export interface ParklineMessage {
  /** The id an SSE subscriber of the same subscription sees (multiplexed: the vector id). */
  id: string
  channel: string
  /** The message's own bytes, shared with every subscriber: read them, never write into them. */
  data: Buffer
  contentType: string | null
  event: string | null
  /**
   * The cursor after which messages were lost (evicted, expired, a restart), or null (the gap
   * signal, docs/api.md 12.1). Several channels of a multiplexed subscription may lose messages
   * at once: then one cursor per channel, each bracketing its channel, separated by a space.
   */
  gap: string | null
  /** The same signals one by one: a cursor per channel that lost messages; empty when none. */
  gaps: readonly string[]
}

const NO_GAPS: readonly string[] = Object.freeze([])

interface Waiter {
  resolve: (r: IteratorResult<ParklineMessage>) => void
  reject: (err: Error) => void
}

/** Why the server ended a consumer with an error; 410 (deleted) and 503 (shutdown) end it as done. */
const END_REASONS: Record<number, string> = {
  408: 'subscriber timeout'
}

/** Per-consumer state beside its Subscriber record; only server-side consumers have one. */
export class ConsumerState {
  readonly queue: ParklineMessage[] = []
  waiter: Waiter | null = null
  /** Set when the subscription ended; an Error ends the iterator with that error. */
  ended: Error | true | null = null
  /** The engine counted it (Core.register / Transport.ready): the replay may start. */
  ready = false
  readonly limit: number
  constructor (limit: number) {
    this.limit = limit
  }
}

export class ConsumerTransport implements Transport {
  readonly name = 'server'
  readonly index: number
  readonly core: Core

  constructor (core: Core, index: number) {
    this.core = core
    this.index = index
  }

  /** Never negotiated from a request: consumers are created by `open` only. */
  detect (_req: IncomingMessage): boolean {
    return false
  }

  serve (_sr: SubscribeRequest): void {
    throw new Error('the server consumer transport serves no HTTP request')
  }

  /** A subscriber for `keys` from `cursor`; the caller iterates it with `next`. */
  open (keys: readonly string[], cursor: Cursor, limit: number): Subscriber {
    const core = this.core
    if (core.draining) throw fail(ERRORS.DRAINING)
    // no socket: the record's socket is never touched by this transport or the core
    const sub = new Subscriber(this, null as unknown as Socket, null, core.channelsFor(keys), cursor, null, F_CATCHING_UP)
    const state = new ConsumerState(limit)
    stateOf.set(sub, state)
    if (core.register(sub)) state.ready = true
    return sub
  }

  ready (sub: Subscriber): void {
    const state = stateOf.get(sub)
    if (state === undefined) return
    state.ready = true
    this.#wake(sub, state)
  }

  /** Held by the fence (Core.fence): the next pull replays what is buffered for it. */
  resume (sub: Subscriber): void {
    const state = stateOf.get(sub)
    if (state === undefined || !state.ready) return
    sub.flags |= F_CATCHING_UP
    this.#wake(sub, state)
  }

  deliver (sub: Subscriber, msg: Message, pos: number): void {
    const state = stateOf.get(sub)
    if (state === undefined || state.ended !== null) return
    const gap = this.core.liveGap(sub, pos, msg.time)
    const item = toItem(sub, msg, pos, gap)
    this.core.stats.delivered[this.index]!++
    if (state.waiter !== null && state.queue.length === 0) {
      const w = state.waiter
      state.waiter = null
      w.resolve({ value: item, done: false })
      return
    }
    if (state.queue.length >= state.limit) {
      // bounded: a consumer that does not keep up is ended, like a stream past its queue cap;
      // it resumes from the last id it read (nothing it read is lost, nothing is skipped silently)
      this.core.stats.overflowDisconnect++
      this.#finish(sub, state, fail(ERRORS.CONSUMER_OVERFLOW, ` (${state.limit} messages)`))
      return
    }
    state.queue.push(item)
  }

  end (sub: Subscriber, status: number): void {
    const state = stateOf.get(sub)
    if (state === undefined) return
    // what was already queued is still handed out before the end (nothing counted is lost)
    this.#finish(sub, state, status === 410 || status === 503 ? true : fail(ERRORS.CONSUMER_ENDED, `: ${END_REASONS[status] ?? String(status)}`))
  }

  keepalive (_sub: Subscriber): boolean { return false }

  /** The consumer asks for its next message. */
  next (sub: Subscriber): Promise<IteratorResult<ParklineMessage>> {
    const state = stateOf.get(sub)
    if (state === undefined) return Promise.resolve({ value: undefined, done: true })
    const item = this.#take(sub, state)
    if (item !== null) return Promise.resolve({ value: item, done: false })
    if (state.ended !== null) return state.ended === true ? Promise.resolve({ value: undefined, done: true }) : Promise.reject(state.ended)
    if (state.waiter !== null) return Promise.reject(new Error('next() called before the previous one settled'))
    return new Promise((resolve, reject) => { state.waiter = { resolve, reject } })
  }

  /** The consumer stopped (break, return(), abort): unregister, end the iterator. */
  stop (sub: Subscriber): void {
    const state = stateOf.get(sub)
    if (state === undefined) return
    state.queue.length = 0
    this.#finish(sub, state, true)
  }

  #take (sub: Subscriber, state: ConsumerState): ParklineMessage | null {
    if (state.queue.length > 0) return state.queue.shift()!
    if (!state.ready || (sub.flags & F_CATCHING_UP) === 0 || (sub.flags & F_CLOSED) !== 0) return null
    // replay, one buffered message per pull; once the buffer is exhausted, live fan-out takes over
    const next = this.core.nextMessage(sub)
    if (next === null) {
      sub.flags &= ~F_CATCHING_UP
      return null
    }
    this.core.stats.delivered[this.index]!++
    return toItem(sub, next.msg, next.pos, next.gap)
  }

  #wake (sub: Subscriber, state: ConsumerState): void {
    if (state.waiter === null) return
    const item = this.#take(sub, state)
    if (item === null) return
    const w = state.waiter
    state.waiter = null
    w.resolve({ value: item, done: false })
  }

  #finish (sub: Subscriber, state: ConsumerState, how: Error | true): void {
    if (state.ended === null) state.ended = how
    this.core.unregister(sub)
    const w = state.waiter
    if (w === null) return
    state.waiter = null
    if (state.ended === true) w.resolve({ value: undefined, done: true })
    else w.reject(state.ended)
  }
}

const stateOf = new WeakMap<Subscriber, ConsumerState>()

function fail (e: ErrorSpec, detail = ''): ParklineError {
  return new ParklineError(e.code, e.message + detail, e.statusCode)
}

function toItem (sub: Subscriber, msg: Message, pos: number, gap: string | null): ParklineMessage {
  const id = sub.advance(msg, pos)
  // the application may keep `data`: its own bytes, not a view that keeps a shared slab (lib/message.ts)
  return { id, channel: sub.channels[pos]!.key, data: unpinned(msg.data), contentType: msg.contentType, event: msg.event, gap, gaps: gap === null ? NO_GAPS : gapSignals(gap) }
}
