// Coalescing (option `coalesce`), shared by the stream transports: the live messages a channel
// receives in one event-loop turn leave as one Buffer per frame variant, concatenated once per
// channel and written once per subscriber at the end of the turn (setImmediate): one syscall per
// subscriber per turn instead of one per message. The latency budget is the rest of the turn.
//
//   deliver(sub, m1) ─┐                       ┌─ sub A (from m1): write(concat(m1, m2))  ← shared
//   deliver(sub, m2) ─┴─ batch[ch] = [m1, m2] ┼─ sub B (from m1): write(same Buffer)
//                         (setImmediate)      └─ sub C (from m2, joined mid-turn): write(m2)
//
// Only single-channel subscribers whose socket takes bytes and who have no signal to carry are
// held; everyone else is written at once by the transport. A subscriber remembers where in the
// channel's batch it joined (Subscriber.batchFrom) and is flagged F_BATCHED until the flush.
import type { Channel } from '../lib/channel-registry.ts'
import type { Core } from '../lib/core.ts'
import { writeShared, type Message } from '../lib/message.ts'
import { F_BATCHED, F_CLOSED, type Subscriber } from '../lib/subscriber.ts'

export type Framer = (m: Message) => Buffer

export class Coalescer {
  readonly #core: Core
  readonly #transportIndex: number
  /** One framer per variant (SSE: one; WebSocket: plain and meta). */
  readonly #framers: readonly Framer[]
  readonly #variantOf: (sub: Subscriber) => number
  #channels: Channel[]
  #batches: Message[][]
  #slot: Map<Channel, number>
  /**
   * The turn before's channels and batches, emptied: the next flush swaps them in, so a turn
   * allocates no new lists and no new map (a one-to-one publish flushes every turn), only a batch
   * per channel. `#slot` holds a turn's channels only past SCAN of them.
   */
  #doneChannels: Channel[]
  #doneBatches: Message[][]
  #doneSlot: Map<Channel, number>
  /** Per framer variant, the frame of a whole batch (flush's scratch). */
  readonly #all: Array<Buffer | null>
  /** Fan-out hands the same message to every subscriber in a row: skip the map for those. */
  #lastMsg: Message | null
  #lastSlot: number
  /** setImmediate(flushCoalescer) is queued (a flushNow may have emptied the turn before it runs). */
  #scheduled: boolean
  /** A flush is writing (the spare lists are in use as the next turn's). */
  #flushing: boolean
  readonly #keepsWrites: boolean
  /** Per slot of this turn's batches, the bytes of its messages (their data): held up to queueCap (hold). */
  readonly #bytes: number[] = []

  /**
   * `keepsWrites`: a write counts as the subscriber's last (Subscriber.lastWrite, which times its
   * keepalive); false for WebSocket, whose pings go every interval whatever it was sent.
   */
  constructor (core: Core, transportIndex: number, framers: readonly Framer[], variantOf: (sub: Subscriber) => number, keepsWrites = true) {
    this.#keepsWrites = keepsWrites
    this.#core = core
    this.#transportIndex = transportIndex
    this.#framers = framers
    this.#variantOf = variantOf
    this.#channels = []
    this.#batches = []
    this.#slot = new Map()
    this.#doneChannels = []
    this.#doneBatches = []
    this.#doneSlot = new Map()
    this.#all = new Array<Buffer | null>(framers.length).fill(null)
    this.#lastMsg = null
    this.#lastSlot = -1
    this.#scheduled = false
    this.#flushing = false
    core.coalescers.push(this)
  }

  /** Write what this turn held now, ahead of its setImmediate (a publish's answer goes after it). */
  flushNow (): void {
    if (this.#channels.length > 0) this.flush()
  }

  /** setImmediate's end of the turn. */
  flushQueued (): void {
    this.#scheduled = false
    if (this.#channels.length > 0) this.flush()
  }

  /** `ch`'s index in this turn's batch, or -1: a scan while the turn has few channels, the map past that. */
  #slotOf (ch: Channel): number {
    const channels = this.#channels
    if (channels.length > SCAN) return this.#slot.get(ch) ?? -1
    for (let i = channels.length - 1; i >= 0; i--) if (channels[i] === ch) return i
    return -1
  }

  #add (ch: Channel): number {
    const channels = this.#channels
    const i = channels.length
    channels.push(ch)
    if (i === SCAN) for (let j = 0; j <= i; j++) this.#slot.set(channels[j]!, j)
    else if (i > SCAN) this.#slot.set(ch, i)
    return i
  }

  /** Hold `msg` for `sub` (single-channel, live, socket not backed up) until the end of the turn. */
  hold (sub: Subscriber, msg: Message): void {
    let i = this.#lastSlot
    if (msg !== this.#lastMsg) {
      const ch = sub.channels[0]!
      let found = this.#slotOf(ch)
      if (found !== -1 && this.#bytes[found]! + msg.data.length > this.#core.opts.queueCap) {
        // the channel's frames held this turn would pass a subscriber's queueCap: they leave now,
        // and this message starts the channel's next batch. A socket that did not take them then
        // queues what follows under the cap (the transport's deliver sees it waiting), so a burst
        // published within one turn cannot hold more than queueCap and a message per subscriber
        this.flush()
        found = -1
      }
      if (found === -1) {
        i = this.#add(ch)
        this.#batches.push([msg])
        this.#bytes[i] = msg.data.length
        if (!this.#scheduled) {
          this.#scheduled = true
          setImmediate(flushCoalescer, this)
        }
      } else {
        i = found
        const list = this.#batches[i]!
        if (list[list.length - 1] !== msg) {
          list.push(msg)
          this.#bytes[i]! += msg.data.length
        }
      }
      this.#lastMsg = msg
      this.#lastSlot = i
    }
    this.#core.held++
    if ((sub.flags & F_BATCHED) === 0) {
      sub.flags |= F_BATCHED
      sub.batchFrom = this.#batches[i]!.length - 1
    }
    this.#core.stats.delivered[this.#transportIndex]!++
  }

  /**
   * `sub` ends (Core.unregister) while frames are held for it in this turn: they leave now, before
   * its end bytes, so nothing counted as delivered is dropped; if its socket can no longer take
   * them (the client left), they are taken off the delivered count instead.
   */
  release (sub: Subscriber): void {
    if ((sub.flags & F_BATCHED) === 0) return
    sub.flags &= ~F_BATCHED
    const i = this.#slotOf(sub.channels[0]!)
    if (i === -1) return
    const msgs = this.#batches[i]!.slice(sub.batchFrom)
    const socket = sub.socket
    if (socket.destroyed || !socket.writable) {
      this.#core.stats.delivered[this.#transportIndex]! -= msgs.length
      return
    }
    const framer = this.#framers[this.#variantOf(sub)]!
    writeShared(socket, msgs.length === 1 ? framer(msgs[0]!) : Buffer.concat(msgs.map(framer)))
    if (this.#keepsWrites) sub.lastWrite = this.#core.nowSec
    for (let m = 0; m < msgs.length; m++) this.#core.observeDelivery(msgs[m]!)
  }

  flush (): void {
    const channels = this.#channels
    const batches = this.#batches
    const slot = this.#slot
    // A hold during the writes below (none is expected) starts the next turn's batch. A flush
    // inside this one (none is expected either) gets lists and scratch of its own: the spare ones
    // are this flush's next turn.
    const nested = this.#flushing
    if (nested) {
      this.#channels = []
      this.#batches = []
      this.#slot = new Map()
    } else {
      this.#channels = this.#doneChannels
      this.#batches = this.#doneBatches
      this.#slot = this.#doneSlot
      this.#flushing = true
    }
    this.#lastMsg = null
    this.#lastSlot = -1
    this.#bytes.length = 0
    try {
      this.#write(channels, batches, nested ? new Array<Buffer | null>(this.#framers.length).fill(null) : this.#all)
    } finally {
      // emptied for the turn after next: no message or channel stays referenced from here
      channels.length = 0
      batches.length = 0
      if (slot.size > 0) slot.clear()
      if (!nested) {
        this.#doneChannels = channels
        this.#doneBatches = batches
        this.#doneSlot = slot
        this.#flushing = false
      }
    }
  }

  #write (channels: Channel[], batches: Message[][], all: Array<Buffer | null>): void {
    const now = this.#core.nowSec
    const keepsWrites = this.#keepsWrites
    const framers = this.#framers
    for (let c = 0; c < channels.length; c++) {
      const msgs = batches[c]!
      all.fill(null)
      const subs = channels[c]!.subs
      for (let i = subs.length - 1; i >= 0; i--) {
        if (i >= subs.length) continue
        const sub = subs[i]!
        // a channel's subscribers mix transports, each with its own coalescer and frames
        if ((sub.flags & F_BATCHED) === 0 || sub.transport.index !== this.#transportIndex) continue
        sub.flags &= ~F_BATCHED
        if ((sub.flags & F_CLOSED) !== 0) continue
        const v = this.#variantOf(sub)
        const framer = framers[v]!
        let out: Buffer
        if (msgs.length === 1) out = framer(msgs[0]!)
        else if (sub.batchFrom === 0) out = all[v] ??= Buffer.concat(msgs.map(framer))
        else out = Buffer.concat(msgs.slice(sub.batchFrom).map(framer))
        writeShared(sub.socket, out)
        if (keepsWrites) sub.lastWrite = now
      }
      for (let i = 0; i < msgs.length; i++) this.#core.observeDelivery(msgs[i]!)
    }
    all.fill(null)
  }
}

/** Channels in a turn found by a scan of the turn's list; past this many, by a map. */
const SCAN = 8

function flushCoalescer (c: Coalescer): void {
  c.flushQueued()
}
