// channel id -> Channel. A channel exists while it holds a buffered message or a subscriber
// (PROTOCOL.md §3.2 "Lifetime"); an empty one is dropped at once.
import type { ByteArena } from './byte-arena.ts'
import { MessageBuffer } from './message-buffer.ts'
import type { Subscriber } from './subscriber.ts'

/** Channel.horizonTag covering every message of Channel.horizonTime's second. */
export const HORIZON_ALL = Number.MAX_SAFE_INTEGER

/** Dropped records whose floors are kept (ChannelRegistry #dropped). */
export const DROPPED_CAP = 65_536

export class Channel {
  /** Raw id bytes, one per char (latin1): ids compare as byte strings. */
  readonly key: string
  readonly buffer: MessageBuffer
  /** Id of the newest message that left the buffer; (created, -1) when none has (§11a). */
  floorTime: number
  floorTag: number
  /** Why the floor message left: expiry (true) or eviction (false); for gap metrics. */
  floorExpired: boolean
  /**
   * The floor is known, not only the record's creation: a message left the buffer (floorTag >= 0),
   * or the registry knows the channel's whole history above it (ChannelRegistry.knownSince, a
   * dropped record's floor). A multiplexed subscriber's loss on another position counts only
   * against a known floor (Subscriber.lostAt).
   */
  floorKnown: boolean
  /**
   * Where the floor is not known: the id up to which messages may have been lost all the same
   * (Subscriber.lostAt), (0, -1) when none; a tag of HORIZON_ALL covers its whole second. A Redis
   * node that loads a channel the store has no record of, or a record made again, knows that
   * nothing was published on it for a message timeout before (a record lives as long as its
   * newest message), and the last id a recent DELETE removed: older messages may have come and
   * expired, or been deleted, unseen here.
   */
  horizonTime: number
  horizonTag: number
  /** Newest id issued, (0, 0) before the first publish. */
  lastTime: number
  lastTag: number
  /** ms of the last subscriber arrival or long-poll answer; -1 = never. */
  lastRequested: number
  /** Subscribers, and for each the position of this channel in its subscription. */
  subs: Subscriber[]
  subPos: number[]
  /** `[this]`, made at first use: the `channels` of every one-channel subscriber of it (read only). */
  #alone: readonly Channel[] | null
  /** The second it is filed under for message expiry (lib/expiry.ts); 0 = not filed. */
  expiryAt: number

  constructor (key: string, capacity: number, nowSec: number, arena: ByteArena | null = null) {
    this.key = key
    this.buffer = new MessageBuffer(capacity, arena)
    this.floorTime = nowSec
    this.floorTag = -1
    this.floorExpired = false
    this.floorKnown = false
    this.horizonTime = 0
    this.horizonTag = -1
    this.lastTime = 0
    this.lastTag = 0
    this.lastRequested = -1
    this.subs = []
    this.subPos = []
    this.#alone = null
    this.expiryAt = 0
  }

  /**
   * A subscription to this channel alone: one array shared by all of them (a subscriber never
   * changes its `channels`), not one per subscriber or per long-poll.
   */
  get alone (): readonly Channel[] {
    if (this.#alone === null) this.#alone = [this]
    return this.#alone
  }

  get subscriberCount (): number { return this.subs.length }

  /** Next id for a publish at `nowSec`: strictly increasing even if the clock steps back (§2.1). */
  nextId (nowSec: number): void {
    // a record made again in the second its deleted predecessor last published in (ChannelRegistry
    // #after: its floor is that id) goes on after it
    if (this.lastTime === 0 && this.floorTag >= 0) {
      this.lastTime = this.floorTime
      this.lastTag = this.floorTag
    }
    if (nowSec > this.lastTime) {
      this.lastTime = nowSec
      this.lastTag = 0
    } else {
      this.lastTag++
    }
  }

  /** Record that a message left the buffer. */
  setFloor (time: number, tag: number, expired: boolean): void {
    this.floorTime = time
    this.floorTag = tag
    this.floorExpired = expired
    this.floorKnown = true
  }

  /** True when a message newer than the cursor (time, tag) may have been lost below the horizon. */
  hasHorizonAfter (time: number, tag: number): boolean {
    return this.horizonTime > time || (this.horizonTime === time && this.horizonTag > tag)
  }

  /** True when a message newer than the cursor (time, tag) has left the buffer. */
  hasGapAfter (time: number, tag: number): boolean {
    return this.floorTime > time || (this.floorTime === time && this.floorTag > tag)
  }

  addSub (sub: Subscriber, pos: number): number {
    this.subs.push(sub)
    this.subPos.push(pos)
    return this.subs.length - 1
  }

  /** Swap-with-last removal; fixes the moved subscriber's slot. */
  removeSub (slot: number): void {
    const last = this.subs.length - 1
    if (slot !== last) {
      const moved = this.subs[last]!
      const movedPos = this.subPos[last]!
      this.subs[slot] = moved
      this.subPos[slot] = movedPos
      moved.setSlot(movedPos, slot)
    }
    this.subs.pop()
    this.subPos.pop()
  }

  get isEmpty (): boolean { return this.subs.length === 0 && this.buffer.size === 0 }
}

export class ChannelRegistry {
  readonly #channels = new Map<string, Channel>()
  /**
   * Deleted channels' newest ids, kept until the clock has passed their second (prune): a record
   * made again meanwhile goes on after that id instead of issuing it again (a resume from the old
   * id would skip the new messages), with what the delete took below its floor (a resume from
   * inside it gets the gap signal).
   */
  readonly #deleted = new Map<string, readonly [number, number]>()
  /**
   * Records dropped empty (their messages expired or evicted, their subscribers gone), by key: the
   * floor each had, which a record made again starts from. Without it a channel whose unread
   * messages expired would come back knowing nothing of them, and a multiplexed subscriber
   * resuming past it would never learn of the loss. At most DROPPED_CAP, the oldest forgotten
   * first (knownSince moves up past what was forgotten).
   */
  readonly #dropped = new Map<string, readonly [number, number, boolean]>()
  /**
   * Every channel that had a message since this second has a record here or in #dropped: a record
   * made without either starts from a known floor (this second, tag -1). 0: not known (the records
   * are replicas of another authority's, a Redis store's). Set by the in-memory engine, and by a
   * worker for the channels it owns (`owns`), to the second it starts issuing ids in.
   */
  knownSince = 0
  /**
   * Which channels this registry is the authority of, where not all (a worker owns some): knownSince
   * and #dropped hold for those only; null: all of them.
   */
  owns: ((key: string) => boolean) | null = null
  readonly capacity: number
  /** Where every channel's buffered bytes go (lib/byte-arena.ts), or null: each message keeps its own store. */
  readonly arena: ByteArena | null

  constructor (capacity: number, arena: ByteArena | null = null) {
    this.capacity = capacity
    this.arena = arena
  }

  get size (): number { return this.#channels.size }

  get (key: string): Channel | undefined { return this.#channels.get(key) }

  getOrCreate (key: string, nowSec: number): Channel {
    let ch = this.#channels.get(key)
    if (ch === undefined) {
      ch = new Channel(key, this.capacity, nowSec, this.arena)
      const dropped = this.#dropped.size > 0 ? this.#dropped.get(key) : undefined
      if (dropped !== undefined) {
        this.#dropped.delete(key)
        ch.floorTime = dropped[0]
        ch.floorTag = dropped[1]
        ch.floorExpired = dropped[2]
        ch.floorKnown = true
      } else if (this.knownSince > 0 && this.knownSince <= nowSec && (this.owns === null || this.owns(key))) {
        // nothing was published on it since knownSince: no message above that can have been lost
        ch.floorTime = this.knownSince
        ch.floorKnown = true
      }
      if (this.#deleted.size > 0) this.#after(ch)
      this.#channels.set(key, ch)
    }
    return ch
  }

  /**
   * A record made again while its deleted predecessor's last second lasts: what the delete took is
   * below its floor, and its ids go on after it (Channel.nextId). The entry stays until prune: a
   * record made and dropped again (a subscriber that came and went) leaves it for the next one.
   * The record's own newest id stays 0:0 until it publishes (channel info, §3.2).
   */
  #after (ch: Channel): void {
    const last = this.#deleted.get(ch.key)
    if (last === undefined || last[0] < ch.floorTime) return
    ch.setFloor(last[0], last[1], false)
  }

  /** Forget the deleted channels' ids whose second the clock has passed (their successors' ids are later anyway). */
  prune (nowSec: number): void {
    if (this.#deleted.size === 0) return
    for (const [key, [time]] of this.#deleted) if (time < nowSec) this.#deleted.delete(key)
  }

  /**
   * Channels held for subscribers this process does not hold itself (the workers engine: a
   * channel's owner, for subscribers on other workers): never released while this says so.
   */
  heldElsewhere: ((key: string) => boolean) | null = null

  /** Drop the channel if it holds nothing. */
  release (ch: Channel): void {
    if (ch.isEmpty && this.#channels.get(ch.key) === ch && (this.heldElsewhere === null || !this.heldElsewhere(ch.key))) {
      this.#channels.delete(ch.key)
      this.#remember(ch)
    }
  }

  /**
   * A dropped record's floor, for the record made again (#dropped). Only where this registry is
   * the channels' authority (the in-memory engine, knownSince > 0): a replica's floor (Redis, a
   * worker that does not own the channel) is the authority's to say again when it is made, and
   * one kept here would be stale by then (messages that came and left meanwhile, unseen here).
   */
  #remember (ch: Channel): void {
    // a record that knew only what knownSince says of every channel tells nothing more: not kept,
    // so churning subscribers of idle channels do not push out the floors that matter
    if (this.knownSince === 0 || !ch.floorKnown || (ch.floorTag < 0 && ch.floorTime <= this.knownSince)) return
    if (this.owns !== null && !this.owns(ch.key)) return
    this.#dropped.set(ch.key, [ch.floorTime, ch.floorTag, ch.floorExpired])
    if (this.#dropped.size > DROPPED_CAP) {
      const [oldest, floor] = this.#dropped.entries().next().value!
      this.#dropped.delete(oldest)
      // what that record knew is forgotten: a record made without one starts above its floor, so
      // a cursor at or below it is told of a possible loss rather than none (a multiplexed idle
      // channel's cursor included: loud, never silent)
      this.knownSince = Math.max(this.knownSince, floor[0] + 1)
    }
  }

  /** Drop the record; `keepIds`: this process assigns its ids, which a record made again goes on after. */
  delete (ch: Channel, keepIds = false): void {
    if (this.#channels.get(ch.key) !== ch) return
    this.#channels.delete(ch.key)
    if (keepIds && ch.lastTime > 0) {
      this.#deleted.set(ch.key, [ch.lastTime, ch.lastTag])
      // a record made again later starts above what the delete took (a resume from inside it: the gap)
      ch.setFloor(ch.lastTime, ch.lastTag, false)
      this.#remember(ch)
    }
  }

  values (): IterableIterator<Channel> { return this.#channels.values() }
}
