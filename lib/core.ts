// The in-memory engine: channels, ids, buffers, the connection table and fan-out.
// Transports call in through register/unregister/nextMessage; the publisher through
// publish/deleteChannel. Nothing here knows a wire format.
import { ChannelRegistry, HORIZON_ALL, type Channel } from './channel-registry.ts'
import { ConnectionTable } from './connection-table.ts'
import { defaultSubscriberCap, type ParklineOptions } from './config.ts'
import { Message, frameAlloc, type Alloc } from './message.ts'
import { F_BATCHED, F_CATCHING_UP, F_CLOSED, F_HELD, F_TOKEN_EXP, type Subscriber, type Transport, type TransportFactory } from './subscriber.ts'
import { REFUSAL_REASONS, Stats } from './stats.ts'
import { MemoryEngine, type Engine, type PublishResult } from './engine.ts'
import { withGaps } from './message-id.ts'
import { channelInfo } from './channel-info.ts'
import { IdempotencyKeys } from './idempotency.ts'
import type { Grant, Revocations } from './auth.ts'
import type { Access } from './access.ts'
import type { Metrics } from './metrics.ts'
import type { Socket } from 'node:net'
import { sweepLingering } from './linger.ts'
import { ExpiryWheel } from './expiry.ts'
import { ByteArena } from './byte-arena.ts'
import { heapGrowthSet } from './heap-growth.ts'
import { wallNow } from './clock.ts'

/** What Parkline logs through: pino's (the host's `fastify.log`, or the standalone server's). */
export interface ParklineLog {
  info (obj: object, msg: string): void
  warn (obj: object, msg: string): void
  error? (obj: object, msg: string): void
}

export interface Next { msg: Message, pos: number, gap: string | null }

/** What an engine does with a message between its id and this process's fan-out (Core.publish). */
export interface PublishHook {
  beforeFanout (ch: Channel, msg: Message): void
}

export class Core {
  readonly opts: ParklineOptions
  readonly registry: ChannelRegistry
  readonly table: ConnectionTable
  readonly transports: readonly Transport[]
  readonly stats: Stats
  /** Idempotency-Keys seen per channel (in-memory engine, and a worker for the channels it owns). */
  readonly idempotency: IdempotencyKeys
  /** Every store of Idempotency-Keys in this process, swept of keys past their window each tick. */
  readonly keyStores: IdempotencyKeys[] = []
  /** Coarse clock in whole seconds, refreshed by the shared timer and by publishes. */
  nowSec: number
  /** Subscriber limit of this process (EXTENSION b). */
  readonly maxSubscribers: number
  /** Set once SIGTERM/close() began: no new subscribers. */
  draining: boolean
  /** Embedded: the host's app.close() has passed its onClose hooks' start; app.parkline refuses from then on. */
  closed = false
  /** Where ids, info and counts come from (in-memory, owner workers, Redis). */
  engine: Engine
  /**
   * Access control's revocation list (lib/auth.ts), when tokens are checked: revocations decided
   * anywhere in the deployment are recorded here, so a reconnect with a revoked token is refused.
   */
  revocations: Revocations | null
  /** Tokens with `exp` are checked: the shared timer ends their subscribers when exp passes. */
  tokenExpiry: boolean
  /**
   * Subscribers pass access control (a credential or authorizeUrl): long-poll answers carry
   * `Cache-Control: private` (docs/api.md §5), so no shared cache hands one user's answer to another.
   */
  privateAnswers: boolean
  /** Access control at the HTTP edge (lib/access.ts), for /status and /metrics; null in benchmarks. */
  access: Access | null
  /** Prometheus families (lib/metrics.ts), set by the plugin; null in benchmarks. */
  metrics: Metrics | null
  /** Messages a coalescer held in this turn (so the fan-out knows its latency is recorded later). */
  held: number
  /** Every transport's coalescer (transports/coalesce.ts), so a publish's answer can wait for them. */
  readonly coalescers: Array<{ flushNow: () => void }> = []
  /** The host's (or the standalone server's) pino logger; null: Parkline logs nothing. */
  log: ParklineLog | null
  /** Subscribers cut at their queue cap since the last warning, by policy (rate-limited warnings). */
  #cut = { disconnect: 0, 'drop-oldest': 0, since: 0 }
  #full = { refused: 0, since: 0 }
  #timer: NodeJS.Timeout | null
  /** Channels holding messages, by the second their oldest expires (messageTimeout > 0). */
  readonly #expiry: ExpiryWheel
  /** messageTimeout in ms; 0 = messages do not expire. */
  readonly #ttl: number
  /** Where a message made here copies its body (Message's constructor). */
  readonly #alloc: Alloc
  /** #pick's answer (scratch: read at once by its caller). */
  #bestPos = -1
  #bestIndex = -1
  #bestTime = 0

  constructor (opts: ParklineOptions, transports: readonly TransportFactory[], fdLimit: number) {
    this.opts = opts
    // buffered bytes in an arena only where V8's heap growth is set: the arena makes the heap smaller,
    // and with V8's own growing factor a heap of a few tens of MB is marked again and again under
    // load (benchmarks/results/heap-growth-2026-12-02.md)
    const arena = heapGrowthSet() ? new ByteArena() : null
    this.registry = new ChannelRegistry(opts.bufferLength, arena)
    // with the arena, a published message's frame is copied into it and dies with the fan-out:
    // it may be a view of a shared slab instead of a store of its own (benchmarks/results/pooled-frames-2026-12-02.md)
    this.#alloc = arena === null ? Buffer.allocUnsafeSlow : frameAlloc
    this.transports = transports.map((T, i) => new T(this, i))
    this.table = new ConnectionTable(transports.length)
    this.stats = new Stats(this.transports.map((t) => t.name))
    this.idempotency = new IdempotencyKeys(opts.idempotencyWindow)
    this.keyStores.push(this.idempotency)
    this.nowSec = Math.floor(Date.now() / 1000)
    this.maxSubscribers = opts.maxSubscribers > 0 ? opts.maxSubscribers : defaultSubscriberCap(fdLimit)
    this.draining = false
    this.engine = new MemoryEngine(this)
    this.revocations = null
    this.tokenExpiry = false
    this.privateAnswers = false
    this.access = null
    this.metrics = null
    this.held = 0
    this.log = null
    this.#timer = null
    this.#expiry = new ExpiryWheel(this.nowSec)
    this.#ttl = opts.messageTimeout * 1000
  }

  // ---- publishing ---------------------------------------------------------------------------

  /**
   * Publish; returns the message and how many subscribers the channel had (201 vs 202).
   * `hook.beforeFanout` sees the message with its id before this process's fan-out (an owner
   * worker sends it to the other workers first, so their fan-outs run alongside this one).
   */
  publish (key: string, data: Buffer, contentType: string | null, event: string | null, hook: PublishHook | null = null): { msg: Message, channel: Channel, subscribers: number } {
    const sec = Math.floor(Date.now() / 1000)
    if (sec > this.nowSec) this.nowSec = sec
    // ids take the highest second this process has seen, not the clock's: after the clock steps
    // back, a channel's next id is not of an earlier second than another channel's last, which a
    // multiplexed cursor in that later second would count as delivered (§2.1, §2.2)
    let ch = this.registry.getOrCreate(key, this.nowSec)
    const now = wallNow()
    // messages past the timeout are gone now, not at the next tick: the answer's count says so; a
    // channel they left with no message and no subscriber (now, or at a read of its info before)
    // is gone (§5.4), and made again here
    if (this.#ttl > 0) this.#expireChannel(ch, this.#ttl, now)
    if (ch.isEmpty && ch.lastTime !== 0) {
      this.registry.release(ch)
      const again = this.registry.getOrCreate(key, this.nowSec)
      // a record kept for other workers' replicas of it, while nobody anywhere subscribes: made
      // again all the same (nobody has asked for the channel since)
      if (again === ch && this.engine.subscribedElsewhere?.(key) !== true) ch.lastRequested = -1
      ch = again
    }
    ch.nextId(this.nowSec)
    // the subscribers the message went to, as Nchan counts them in its answer: a long-poll it
    // answers (and uncounts) included
    const subscribers = ch.subs.length
    // counted where a publish is accepted (here, or by the worker or Redis engine), not per replica
    this.stats.published++
    const msg = new Message(ch.lastTime, ch.lastTag, data, contentType, event, now, -1, this.#alloc)
    if (hook !== null) hook.beforeFanout(ch, msg)
    this.#append(ch, msg)
    return { msg, channel: ch, subscribers }
  }

  /**
   * A publish whose Idempotency-Key this channel saw inside the window: the answer it gets instead
   * of publishing (the original id; 201/202 by the subscribers now), or null. `subscribers`: the
   * count where the caller knows it better than the channel record (an owner worker).
   */
  replayed (key: string, idempotencyKey: string, subscribers: number | null, fingerprint: string): PublishResult | null {
    const seen = this.idempotency.get(key, idempotencyKey)
    if (seen === undefined) return null
    const id = seen.id
    const ch = this.registry.get(key)
    if (ch !== undefined) this.expireDue(ch)
    const info = ch === undefined ? { messages: 0, requested: -1, subscribers: 0, lastMessageId: id } : { ...channelInfo(ch, Date.now()), lastMessageId: id }
    if (subscribers !== null) info.subscribers = subscribers
    if (seen.fingerprint !== fingerprint) return { status: info.subscribers > 0 ? 201 : 202, info, conflict: true }
    return { status: info.subscribers > 0 ? 201 : 202, info, replayed: true }
  }

  /** A message whose id another authority assigned (a channel's owner worker, Redis). */
  applyMessage (key: string, time: number, tag: number, data: Buffer, contentType: string | null, event: string | null, publishedAt: number): Message {
    const ch = this.registry.getOrCreate(key, this.nowSec)
    if (time > ch.lastTime || (time === ch.lastTime && tag > ch.lastTag)) {
      ch.lastTime = time
      ch.lastTag = tag
    }
    return this.#append(ch, new Message(time, tag, data, contentType, event, publishedAt, -1, this.#alloc))
  }

  /**
   * Fill a channel's replica from the authority's copy (a worker's first subscriber on it): the
   * buffer is replaced, nothing is fanned out (its subscribers replay it once they are counted).
   */
  restoreChannel (key: string, lastTime: number, lastTag: number, floorTime: number, floorTag: number, msgs: ReadonlyArray<readonly [number, number, Buffer, string | null, string | null, number]>, floorKnown = floorTag >= 0): void {
    this.loadChannel(key, lastTime, lastTag, floorTime, floorTag)
    const ch = this.registry.get(key)!
    // the authority's word on its floor: one it knows with no message gone yet (it knows the
    // channel's history since then, lib/channel-registry.ts knownSince) counts here as there
    ch.floorKnown = floorKnown
    ch.buffer.clear()
    for (const [time, tag, data, ct, ev, at] of msgs) {
      if (ch.buffer.full) ch.setFloor(ch.buffer.timeAt(0), ch.buffer.tagAt(0), false)
      ch.buffer.push(new Message(time, tag, data, ct, ev, at, -1, this.#alloc))
    }
    this.#fileExpiry(ch)
  }

  // ---- what engines may do to the core (nothing else of it is theirs) ---------------------------

  /** Messages up to (time, tag) left the authority's buffer: the replica's floor follows (gap signal). */
  raiseFloor (key: string, time: number, tag: number): void {
    const ch = this.registry.get(key)
    if (ch !== undefined && (time > ch.floorTime || (time === ch.floorTime && tag > ch.floorTag))) {
      ch.floorTime = time
      ch.floorTag = tag
      if (tag >= 0) ch.floorKnown = true
      // what is held at or below the floor has left (the store holds none of it either); if it
      // stayed, a subscriber without a cursor would walk from it into a gap signal it did not earn
      const buffer = ch.buffer
      while (buffer.size > 0 && (buffer.timeAt(0) < time || (buffer.timeAt(0) === time && buffer.tagAt(0) <= tag))) buffer.shift()
    }
  }

  /** The held message with this id as [published ms, body bytes], or null (never held, or gone). */
  heldMessage (key: string, time: number, tag: number): [number, number] | null {
    const buffer = this.registry.get(key)?.buffer
    if (buffer === undefined) return null
    const i = buffer.indexAfter(time, tag - 1)
    if (i === buffer.size || buffer.timeAt(i) !== time || buffer.tagAt(i) !== tag) return null
    return [buffer.publishedAtOf(i), buffer.bodyLengthOf(i)]
  }

  /** A replica nobody here subscribes to any more: its messages go, and the record if nothing holds it. */
  dropReplica (key: string): void {
    const ch = this.registry.get(key)
    if (ch === undefined || ch.subs.length > 0) return
    ch.buffer.clear()
    this.registry.release(ch)
  }

  /** Subscribers this process holds on a channel. */
  localSubscribers (key: string): number {
    return this.registry.get(key)?.subs.length ?? 0
  }

  /**
   * Keep live fan-out away from `sub` while the engine fills its channels' replicas (it replays
   * from them once served). True when this call paused it (give it back with resumeLive).
   */
  pauseLive (sub: Subscriber): boolean {
    if ((sub.flags & F_CATCHING_UP) !== 0) return false
    sub.flags |= F_CATCHING_UP
    return true
  }

  resumeLive (sub: Subscriber): void {
    sub.flags &= ~F_CATCHING_UP
  }

  /** Restore a channel's id state from a snapshot before its messages are applied. */
  loadChannel (key: string, lastTime: number, lastTag: number, floorTime: number, floorTag: number, horizonTime = 0, horizonTag = -1): void {
    const ch = this.registry.getOrCreate(key, this.nowSec)
    ch.lastTime = lastTime
    ch.lastTag = lastTag
    ch.floorTime = floorTime
    ch.floorTag = floorTag
    ch.floorKnown = floorTag >= 0
    ch.horizonTime = horizonTime
    ch.horizonTag = horizonTag
  }

  /** The authority has no record of the channel: a cursor up to this id may have lost messages (Channel.horizonTime). */
  setHorizon (key: string, time: number, tag: number): void {
    const ch = this.registry.get(key)
    if (ch === undefined) return
    ch.horizonTime = time
    ch.horizonTag = tag
  }

  #append (ch: Channel, msg: Message): Message {
    const buffer = ch.buffer
    // the oldest is evicted: its id is the floor (gap signal)
    if (buffer.full) ch.setFloor(buffer.timeAt(0), buffer.tagAt(0), false)
    buffer.push(msg)
    // a channel holding messages is filed for expiry once (a newer message never expires first)
    if (ch.expiryAt === 0) this.#fileExpiry(ch)
    if (ch.subs.length > 0) this.#fanout(ch, msg)
    return msg
  }

  /**
   * Where a multiplexed subscription's channels get their ids from different authorities (owner
   * workers), a live message of second `s` may arrive before another authority's message of an
   * earlier second. A client that resumed from the first one's id (second `s`) would never get the
   * second one. The engine sets `fence(sub, pos)`: the second up to which every other authority of
   * `sub`'s channels has sent all it published before (Infinity where there is none). A message
   * from `pos` past it waits in the buffer (the subscriber is held, F_HELD) until the engine calls
   * fenceMoved(); it is then served from the buffer in id order. Null: no engine needs one.
   */
  fence: ((sub: Subscriber, pos: number) => number) | null = null
  readonly #held = new Set<Subscriber>()

  #hold (sub: Subscriber): void {
    sub.flags |= F_HELD
    this.#held.add(sub)
  }

  /** The engine's fence moved: every held subscriber is served what the fence now lets through. */
  fenceMoved (): void {
    if (this.#held.size === 0) return
    const held = [...this.#held]
    this.#held.clear()
    for (const sub of held) {
      sub.flags &= ~F_HELD
      if ((sub.flags & F_CLOSED) !== 0) continue
      const t = sub.transport
      if (t.resume !== undefined) t.resume(sub)
      else t.ready(sub)
    }
  }

  /** Subscribers the fence holds (tests, /status). */
  get heldCount (): number {
    return this.#held.size
  }

  #fanout (ch: Channel, msg: Message): void {
    // Backwards: answering a long-poll removes it (swap-with-last brings in an already visited one).
    // A subscriber at two positions of the channel (`/sub/a,a`) has two slots, and its removal
    // moves a visited one below the cursor too: a slot whose cursor is this message's id already
    // has it. So does a subscriber whose cursor is at or past this message's id: one that resumed
    // here with an id another node or worker gave it first (this process applies the message
    // later), or a cursor in the future (§4.4: the first message with a larger id).
    const subs = ch.subs
    const pos = ch.subPos
    const held = this.held
    const fence = this.fence
    const time = msg.time
    const tag = msg.tag
    for (let i = subs.length - 1; i >= 0; i--) {
      if (i >= subs.length) continue
      const sub = subs[i]!
      if ((sub.flags & (F_CATCHING_UP | F_HELD)) !== 0) continue
      const p = pos[i]!
      const m = sub.multi
      if (m === null) {
        if (time < sub.time0 || (time === sub.time0 && tag <= sub.tag0)) continue
      } else if (m.tags[p] !== HORIZON_ALL && (time === m.times[p] ? tag <= m.tags[p]! : time < m.times[p]! && (m.horizon === null || !m.horizon[p]))) {
        // at or below the position's cursor, in any second (§4.4: a cursor in the future waits
        // for a larger id; an id of an earlier second than the vector's is one a resume has, its
        // position printed at `-` there). Within the cursor's second only for a position whose
        // cursor is its channel's horizon (MultiState.horizon): a second of this process's own
        // clock, which may run ahead of the authority's ids. `-` is tag -1, which no tag is below.
        continue
      }
      if (fence !== null && sub.multi !== null && msg.time > fence(sub, p)) {
        this.#hold(sub)
        continue
      }
      sub.transport.deliver(sub, msg, p)
    }
    // written now: its latency is now; held by a coalescer: when the coalescer writes it
    if (this.held === held) this.observeDelivery(msg)
  }

  /**
   * A subscriber reached its queue cap (cut, or messages dropped): one warning per 10 s at most,
   * with the counts since the last, so a storm of slow clients cannot flood the log.
   */
  subscriberCut (policy: 'disconnect' | 'drop-oldest'): void {
    const c = this.#cut
    c[policy]++
    if (!warnDue(c)) return
    this.log?.warn({ disconnected: c.disconnect, dropOldest: c['drop-oldest'], queueCap: this.opts.queueCap }, 'slow subscribers reached their queue cap')
    c.disconnect = 0
    c['drop-oldest'] = 0
  }

  /** Publish-to-write latency of one message, once per process (lib/metrics.ts). */
  observeDelivery (msg: Message): void {
    if (msg.latencyObserved) return
    msg.latencyObserved = true
    const m = this.metrics
    if (m !== null) m.delivery.observe(Math.max(0, (wallNow() - msg.publishedAt) / 1000))
  }

  /**
   * DELETE: disconnect every subscriber (multiplexed ones whole) and drop the messages. Where this
   * process assigns the channel's ids (`idsHere`: the in-memory engine, a channel's owner worker),
   * a record made again within the same second goes on after the deleted one's newest id
   * (ChannelRegistry.delete).
   */
  deleteChannel (ch: Channel, idsHere = true): void {
    const subs = ch.subs.slice()
    for (const sub of subs) {
      if ((sub.flags & F_CLOSED) === 0) sub.transport.end(sub, 410)
    }
    ch.buffer.clear()
    this.registry.delete(ch, idsHere)
  }

  /** A delete decided elsewhere (another worker, Redis): end local subscribers, drop the replica. */
  deleteLocal (key: string): void {
    const ch = this.registry.get(key)
    if (ch !== undefined) this.deleteChannel(ch, false)
  }

  // ---- subscribers ----------------------------------------------------------------------------

  /**
   * Count the subscriber on each of its channels and in the table (§4.4). True when it already
   * counts deployment-wide; otherwise the engine calls `sub.transport.ready(sub)` once it does.
   */
  register (sub: Subscriber): boolean {
    const now = Date.now()
    for (let k = 0; k < sub.channels.length; k++) {
      const ch = sub.channels[k]!
      sub.setSlot(k, ch.addSub(sub, k))
      ch.lastRequested = now
    }
    this.table.add(sub)
    const user = this.#userOf(sub.grant)
    if (user !== null) {
      const n = (this.#perUser.get(user) ?? 0) + 1
      this.#perUser.set(user, n)
      this.engine.usersChanged?.(user, n)
    }
    if (this.opts.subscriberTimeout > 0) sub.deadline = this.nowSec + this.opts.subscriberTimeout
    // a token's expiry is a deadline too (no timer of its own): whichever comes first
    const exp = sub.grant === null ? 0 : sub.grant.exp
    if (exp > 0 && (sub.deadline === 0 || exp < sub.deadline)) {
      sub.deadline = exp
      sub.flags |= F_TOKEN_EXP
    }
    return this.engine.registered(sub)
  }

  /** Remove at once (abort, answer, close); idempotent. */
  unregister (sub: Subscriber): void {
    if ((sub.flags & F_CLOSED) !== 0) return
    // what this turn held for it (coalescing) leaves before anything that ends it
    if ((sub.flags & F_BATCHED) !== 0) sub.transport.releaseHeld?.(sub)
    sub.flags |= F_CLOSED
    if ((sub.flags & F_HELD) !== 0) this.#held.delete(sub)
    if (sub.tableIndex < 0) return
    for (let k = 0; k < sub.channels.length; k++) {
      const ch = sub.channels[k]!
      const slot = sub.slotAt(k)
      if (slot >= 0 && ch.subs[slot] === sub) ch.removeSub(slot)
      sub.setSlot(k, -1)
      this.registry.release(ch)
    }
    this.table.remove(sub)
    const user = this.#userOf(sub.grant)
    if (user !== null) {
      const n = this.#perUser.get(user)! - 1
      if (n > 0) this.#perUser.set(user, n)
      else this.#perUser.delete(user)
      this.engine.usersChanged?.(user, n)
    }
    this.engine.unregistered(sub)
  }

  /** Subscribers registered here per token `sub`, with maxSubscribersPerUser set (only users that hold some). */
  readonly #perUser = new Map<string, number>()

  /** Users holding subscribers here, with how many (maxSubscribersPerUser). */
  usersHeld (): IterableIterator<[string, number]> {
    return this.#perUser.entries()
  }

  /** The user a grant counts for under maxSubscribersPerUser, or null (no limit, no token, no `sub`). */
  #userOf (grant: Grant | null): string | null {
    return this.opts.maxSubscribersPerUser > 0 && grant !== null ? grant.sub : null
  }

  /** The user a subscriber of this grant counts for (maxSubscribersPerUser), or null. */
  userOf (grant: Grant | null): string | null {
    return this.#userOf(grant)
  }

  /** The user's subscribers registered here. */
  heldBy (user: string): number {
    return this.#perUser.get(user) ?? 0
  }

  /**
   * A registered subscriber refused at maxSubscribersPerUser after it was admitted (with workers,
   * the user's owner said no; with Redis, the USER script): counted, and answered 429 as its
   * admission would have been.
   */
  endOverUserLimit (sub: Subscriber): void {
    this.stats.refusedBy[REFUSAL_REASONS.indexOf('user_limit')]!++
    if (sub.transport.endOverLimit !== undefined) sub.transport.endOverLimit(sub)
    else sub.transport.end(sub, 429)
  }

  /**
   * Would one more subscriber of this grant pass the user's limit (maxSubscribersPerUser), here
   * and, with workers, on the others? A refusal is counted. Checked where the subscriber is
   * admitted, in the turn that registers it. With workers the others' count is known to the user's
   * owner only (lib/cluster.ts), with Redis to Redis (lib/redis-engine.ts): this process checks
   * its own here, and the owner's or Redis' answer follows (endOverUserLimit).
   */
  overUserLimit (grant: Grant | null): boolean {
    const user = this.#userOf(grant)
    // with workers, the others' subscribers of this user too, as they last said (lib/cluster.ts)
    if (user === null || (this.#perUser.get(user) ?? 0) + (this.engine.usersElsewhere?.(user) ?? 0) < this.opts.maxSubscribersPerUser) return false
    this.stats.refusedBy[REFUSAL_REASONS.indexOf('user_limit')]!++
    return true
  }

  /** Would creating the missing ones of `keys` pass the maxChannels cap? */
  overChannelCap (keys: readonly string[]): boolean {
    const room = this.opts.maxChannels - this.registry.size
    if (room >= keys.length) return false
    let missing = 0
    for (const k of keys) if (this.registry.get(k) === undefined) missing++
    if (missing <= room) return false
    // records kept only for a copy nobody here subscribes to (a Redis node's linger) go first
    const freed = this.engine.reclaim?.(missing - room) ?? 0
    return missing > room + freed
  }

  /** Channels for a subscription, created when missing (a waiting subscriber keeps one alive). */
  channelsFor (keys: readonly string[]): readonly Channel[] {
    if (keys.length === 1) return this.registry.getOrCreate(keys[0]!, this.nowSec).alone
    const out = new Array<Channel>(keys.length)
    for (let i = 0; i < keys.length; i++) out[i] = this.registry.getOrCreate(keys[i]!, this.nowSec)
    return out
  }

  /** Drop channels a rejected or answered request created but never used. */
  releaseChannels (channels: readonly Channel[]): void {
    for (const ch of channels) this.registry.release(ch)
  }

  /**
   * The next buffered message after the subscriber's per-position cursors, merged by
   * (seconds, tag, position) (§4.3), with the gap signal if its cursor fell below the floor.
   */
  nextMessage (sub: Subscriber): Next | null {
    if (!this.#pick(sub)) return null
    const bestPos = this.#bestPos
    const bestTime = this.#bestTime
    const ch = sub.channels[bestPos]!
    const best = ch.buffer.at(this.#bestIndex)
    let gap: string | null = null
    if (this.#lost(sub, bestPos)) {
      gap = sub.requested(bestPos)
      this.stats.gap(ch.floorExpired ? 'expired' : 'evicted')
    }
    if (sub.multi !== null) gap = withGaps(gap, this.#hiddenGap(sub, bestPos, bestTime))
    return { msg: best, pos: bestPos, gap }
  }

  /** Would nextMessage give the subscriber a message now? (Nothing is counted, no gap signal spent.) */
  hasNext (sub: Subscriber): boolean {
    return this.#pick(sub)
  }

  /** nextMessage's choice, left in #bestPos, #bestIndex and #bestTime: false when nothing is buffered past the cursors. */
  #pick (sub: Subscriber): boolean {
    // an expired message is gone at its expiry, not at the next tick: every process (worker,
    // node) then agrees with the channel info the authority gives
    if (this.opts.messageTimeout > 0) {
      const ttl = this.opts.messageTimeout * 1000
      const now = Date.now()
      for (let k = 0; k < sub.channels.length; k++) this.#expireChannel(sub.channels[k]!, ttl, now)
    }
    // compared by id where it is stored: only the message sent is made (lib/message-buffer.ts)
    let bestPos = -1
    let bestIndex = -1
    let bestTime = 0
    let bestTag = 0
    for (let k = 0; k < sub.channels.length; k++) {
      const buffer = sub.channels[k]!.buffer
      const i = buffer.indexAfter(sub.timeAt(k), sub.tagAt(k))
      if (i === buffer.size) continue
      const time = buffer.timeAt(i)
      const tag = buffer.tagAt(i)
      if (bestPos === -1 || bestTime > time || (bestTime === time && bestTag > tag)) {
        bestPos = k
        bestIndex = i
        bestTime = time
        bestTag = tag
      }
    }
    this.#bestPos = bestPos
    this.#bestIndex = bestIndex
    this.#bestTime = bestTime
    if (bestPos !== -1 && this.fence !== null && sub.multi !== null && bestTime > this.fence(sub, bestPos)) {
      // another authority may still send this subscriber a message of an earlier second
      this.#hold(sub)
      return false
    }
    return bestPos !== -1
  }

  /**
   * Gap signal for a live delivery from position `pos` (§11a): a subscriber that parked with an
   * explicit cursor below the floor (its messages expired, or the channel record is newer) learns
   * of the loss together with the next message to arrive. Call before `sub.advance`.
   */
  liveGap (sub: Subscriber, pos: number, msgTime: number): string | null {
    const ch = sub.channels[pos]!
    let gap: string | null = null
    if (this.#lost(sub, pos)) {
      this.stats.gap(ch.floorExpired ? 'expired' : 'evicted')
      gap = sub.requested(pos)
    }
    return sub.multi === null ? gap : withGaps(gap, this.#hiddenGap(sub, pos, msgTime))
  }

  /**
   * Did position `pos` lose messages after its cursor? One channel: its cursor is an id of that
   * channel, and any floor above it (the record's creation included: a restart, a record made
   * again) is a loss. A multiplexed position: as for the others (Subscriber.lostAt), a known floor,
   * else the horizon: a replica's creation floor is no loss (a Redis record made in second C had
   * nothing published for a message timeout before; a channel's first message after a cursor
   * whose vector was of an earlier second is not a gap).
   */
  #lost (sub: Subscriber, pos: number): boolean {
    if (sub.multi !== null) return sub.lostAt(pos)
    const time = sub.time0
    return time > 0 && sub.channels[pos]!.hasGapAfter(time, sub.tag0)
  }

  /**
   * A multiplexed subscriber's loss on another position that the id of a message from `pos` at
   * `time`, a later second, would hide (an earlier second keeps the id's, Subscriber.advance): the
   * id vector restarts there (§2.2), so a client resuming from that id reads every other position
   * from `time` on and never learns what left below its cursor.
   * The gap is signalled with this message instead (Subscriber.advance then moves that position's
   * cursor up to its floor, so it is not signalled twice). Nothing buffered is skipped: the merge
   * serves each position's older messages first. One signal per position that lost messages
   * (§11a), each bracketing its own position, joined by spaces (withGaps). A replica's creation
   * floor is no loss here (Subscriber.lostAt).
   */
  #hiddenGap (sub: Subscriber, pos: number, time: number): string | null {
    if (time <= sub.vTime) return null
    let gaps: string | null = null
    for (let k = 0; k < sub.channels.length; k++) {
      if (k === pos || !sub.lostAt(k)) continue
      this.stats.gap(sub.channels[k]!.floorExpired ? 'expired' : 'evicted')
      gaps = withGaps(gaps, sub.requested(k))
    }
    return gaps
  }

  /** Mark a channel as requested (long-poll answered from the buffer). */
  touch (channels: readonly Channel[]): void {
    const now = Date.now()
    for (const ch of channels) ch.lastRequested = now
    if (this.engine.touched !== undefined) this.engine.touched(channels.map((c) => c.key))
  }

  /** Connections Parkline ended that are still draining, with their deadline (lib/linger.ts): they hold fds too. */
  readonly lingering = new Map<Socket, number>()
  /** Publish bodies being read now (bounded by maxPublishing). */
  publishing = 0

  get atCapacity (): boolean { return this.table.size + this.lingering.size >= this.maxSubscribers }

  /** New subscribers get 503 with Retry-After: draining, at the limit, or the shared store is away. */
  get refusing (): boolean { return this.draining || this.atCapacity || this.engine.up === false }

  /** A new subscriber refused because `refusing`: counted, with why (draining first, as /health says). */
  countRefusal (): void {
    const reason = this.draining ? 'draining' : this.atCapacity ? 'capacity' : 'unavailable'
    this.stats.refusedBy[REFUSAL_REASONS.indexOf(reason)]!++
    if (reason === 'capacity') this.#capacityRefused()
  }

  /**
   * Subscribers refused at the connection limit: one warning per 10 s at most, with the count
   * since the last, so an operator learns the limit is what turns clients away (the metric
   * parkline_connections_refused_total counts them too) and a storm cannot flood the log.
   */
  #capacityRefused (): void {
    const c = this.#full
    c.refused++
    if (!warnDue(c)) return
    this.log?.warn({ refused: c.refused, maxSubscribers: this.maxSubscribers, subscribers: this.table.size, lingering: this.lingering.size },
      `new subscribers refused (503): this process holds its limit of ${this.maxSubscribers} connections; raise the open-file limit (LimitNOFILE, ulimit -n) or maxSubscribers, or add workers`)
    c.refused = 0
  }

  // ---- the one shared timer -------------------------------------------------------------------

  start (): void {
    if (this.#timer !== null) return
    this.#timer = setInterval(onTick, 1000, this)
    this.#timer.unref()
  }

  stop (): void {
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
  }

  tick (): void {
    const now = Date.now()
    if (this.lingering.size > 0) sweepLingering(this.lingering, now)
    this.nowSec = Math.max(this.nowSec, Math.floor(now / 1000))
    this.registry.prune(this.nowSec)
    for (const keys of this.keyStores) keys.sweep()
    if (this.#ttl > 0) this.#expiry.take(this.nowSec, (ch) => { this.#expireFiled(ch, now) })
    const keepalive = this.opts.keepalive
    const deadlines = this.opts.subscriberTimeout > 0 || this.draining || this.tokenExpiry
    if (keepalive === 0 && !deadlines) return
    const subs = this.table.subs
    // Keepalives spread over ticks: subscribers that wrote in the same second (connected in one
    // burst, or all sent one broadcast) would otherwise all be due in one tick, every interval,
    // and that tick would stop the event loop for a write to each (~5 µs apiece). At most twice
    // the even share per tick; the rest stay due for the next.
    let keepalives = keepalive > 0 ? Math.max(64, Math.ceil(2 * subs.length / keepalive)) : 0
    for (let i = subs.length - 1; i >= 0; i--) {
      if (i >= subs.length) continue
      const sub = subs[i]!
      if (deadlines && sub.deadline > 0 && sub.deadline <= now / 1000) {
        if (this.draining) sub.transport.end(sub, 503)
        else if ((sub.flags & F_TOKEN_EXP) !== 0) sub.transport.end(sub, 401, 'token expired')
        else sub.transport.end(sub, 408)
        continue
      }
      // only a keepalive written counts against the share: a transport without one (long-poll,
      // multipart, chunked) or a stream still backed up (queuedAtKeepalive) never takes the turn
      // of the streams behind it in the table
      if (keepalives > 0 && this.nowSec - sub.lastWrite >= keepalive && sub.transport.keepalive(sub)) {
        if (--keepalives === 0 && !deadlines) return
      }
    }
  }

  /** File `ch` for expiry under its oldest message's second, if it holds messages (lib/expiry.ts). */
  #fileExpiry (ch: Channel): void {
    if (this.#ttl > 0 && ch.buffer.size > 0) this.#expiry.file(ch, ch.buffer.publishedAtOf(0) + this.#ttl)
  }

  /** A channel's second came: its due messages go, and it is filed again (or released, emptied). */
  #expireFiled (ch: Channel, now: number): void {
    this.#expireChannel(ch, this.#ttl, now)
    // (emptied now, or before its second by a read: expireDue, a subscriber's #pick)
    if (ch.buffer.size === 0) this.registry.release(ch)
    else this.#fileExpiry(ch)
  }

  /**
   * The channel's messages past the timeout go now, before its info is read (§6: expired messages
   * are not counted), rather than at its second's tick; one they leave with no message and no
   * subscriber is released, as the tick would (§5.4: gone).
   */
  expireDue (ch: Channel): void {
    if (this.#ttl > 0 && this.#expireChannel(ch, this.#ttl, Date.now()) && ch.isEmpty) this.registry.release(ch)
  }

  /**
   * Drop a channel's messages older than the timeout (true when any went). The record stays: a
   * subscriber may be about to register on it (the shared timer releases emptied ones).
   */
  #expireChannel (ch: Channel, ttl: number, now: number): boolean {
    const buffer = ch.buffer
    if (buffer.size === 0 || buffer.publishedAtOf(0) + ttl > now) return false
    while (buffer.size > 0 && buffer.publishedAtOf(0) + ttl <= now) {
      ch.setFloor(buffer.timeAt(0), buffer.tagAt(0), true)
      buffer.shift()
    }
    return true
  }

  /**
   * Graceful shutdown (EXTENSION b): no new subscribers; each one gets a random moment in the
   * drain window, and the shared timer ends them in waves.
   */
  drain (windowSec: number): void {
    this.draining = true
    const now = Date.now() / 1000
    for (const sub of this.table.subs) sub.deadline = now + Math.random() * windowSec
  }

  /**
   * A revocation decided somewhere in the deployment (POST revokePath): record it, and end this
   * process's subscribers admitted with that user (`sub`) or token (`jti`) with 401 `revoked`.
   * `at` is when it was decided (tokens of that user issued before it are refused), `until` how
   * long a revoked jti is remembered (its exp). Returns how many subscribers it ended here.
   */
  revokeLocal (kind: 'sub' | 'jti', value: string, at: number, until: number): number {
    if (this.revocations !== null) {
      if (kind === 'sub') this.revocations.revokeSub(value, at)
      else this.revocations.revokeJti(value, until)
    }
    // a user's tokens issued after the revocation (a fresh login) keep their streams
    return this.#endGranted((g) => kind === 'sub' ? g.sub === value && this.#issuedBy(g.iat, at) : g.jti === value, 'revoked')
  }

  /**
   * Many revocations at once (a Redis node reading the store's list): each recorded, then one pass
   * over the subscribers ending those any revocation covers, instead of one pass per revocation.
   */
  revokeAll (rows: ReadonlyArray<readonly ['sub' | 'jti', string, number, number]>): number {
    const r = this.revocations
    if (r === null || rows.length === 0) return 0
    for (const [kind, value, at, until] of rows) {
      if (kind === 'sub') r.revokeSub(value, at)
      else r.revokeJti(value, until)
    }
    const now = Math.floor(Date.now() / 1000)
    return this.#endGranted((g) => r.isRevoked(g, now), 'revoked')
  }

  /** Ends with 401 `reason` this process's subscribers whose grant `ended` says; how many. */
  #endGranted (ended: (g: Grant) => boolean, reason: string): number {
    const subs = this.table.subs
    let n = 0
    for (let i = subs.length - 1; i >= 0; i--) {
      if (i >= subs.length) continue
      const sub = subs[i]!
      const g = sub.grant
      if (g === null || !ended(g)) continue
      sub.transport.end(sub, 401, reason)
      if (subs[i] === sub) this.unregister(sub)
      n++
    }
    return n
  }

  /**
   * After new credentials (lib/access.ts reload): the subscribers admitted with an API key taken
   * out end with 401 `key withdrawn`. Returns how many.
   */
  endWithdrawn (): number {
    const access = this.access
    return access === null ? 0 : this.#endGranted((g) => g.key !== undefined && !access.granted(g), 'key withdrawn')
  }

  /** Does a revocation of a sub at `at` cover its token stamped `iat`? (Revocations.issuedBy, its clock-skew leeway included) */
  #issuedBy (iat: number, at: number): boolean {
    return this.revocations === null ? iat <= at : this.revocations.issuedBy(iat, at)
  }

  /** Cut every subscriber off now. */
  closeAll (status: number): void {
    const subs = this.table.subs
    while (subs.length > 0) {
      const sub = subs[subs.length - 1]!
      sub.transport.end(sub, status)
      if (subs[subs.length - 1] === sub) this.unregister(sub)
    }
  }
}

/** A warning kept to one per 10 s: true when this one may be logged (its window starts again). */
function warnDue (c: { since: number }): boolean {
  const now = Date.now()
  if (now - c.since < 10_000) return false
  c.since = now
  return true
}

function onTick (core: Core): void {
  core.tick()
}
