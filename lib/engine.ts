// The engine interface: where ids are assigned, where channel info and subscriber counts live.
// The in-memory engine answers from this process; the worker engine (cluster.ts) asks the
// channel's owner worker (itself, or a peer over the mesh); the Redis engine asks Redis. Fan-out always stays local:
// every engine hands each message to Core.applyMessage once per process.
import { channelInfo, type ChannelInfo } from './channel-info.ts'
import type { Core } from './core.ts'
import type { Subscriber } from './subscriber.ts'
import { fingerprint } from './idempotency.ts'
import { saveRevocation } from './revocation-file.ts'

export interface PublishResult {
  /** 201 when the channel had a subscriber anywhere in the deployment, else 202. */
  status: 201 | 202
  info: ChannelInfo
  /** An Idempotency-Key seen inside its window: nothing was published; info names the original id. */
  replayed?: boolean
  /**
   * The Idempotency-Key was seen inside its window with another message (body, Content-Type or
   * event): nothing was published, and the publisher is answered 422 (lib/idempotency.ts).
   */
  conflict?: boolean
}

/** What /status reports for the whole host (the worker engine): the engine sums its processes' figures. */
export interface Totals {
  published: number
  stored: number
  channels: number
  subscribers: number
  /** Subscribers per transport, in the options' order (Core.transports). */
  transports: number[]
}

export interface Engine {
  readonly name: string
  /**
   * Publish, or (an `idempotencyKey` this channel saw inside idempotencyWindow) answer the
   * original message's id without publishing again (`conflict` where it came with another
   * message). `requestFingerprint`: the fingerprint of the message as the publisher sent it, where
   * the publisher upstream rewrote it (lib/idempotency.ts); else it is taken from these arguments.
   */
  publish (key: string, data: Buffer, contentType: string | null, event: string | null, idempotencyKey?: string | null, requestFingerprint?: string): PublishResult | Promise<PublishResult>
  /**
   * The answer a publish with this Idempotency-Key and request fingerprint gets without publishing
   * (replayed, or conflict), or null when the channel has not seen the key inside the window.
   * Asked before the publisher upstream request, so a retry is answered as the original was
   * instead of going to the upstream again; publishes nothing.
   */
  replay (key: string, idempotencyKey: string, requestFingerprint: string): PublishResult | null | Promise<PublishResult | null>
  /** Channel info, or null when the channel does not exist. */
  info (key: string): ChannelInfo | null | Promise<ChannelInfo | null>
  /** Delete everywhere; resolves to the info as it was, or null when it did not exist. */
  delete (key: string): ChannelInfo | null | Promise<ChannelInfo | null>
  /**
   * A subscriber was counted locally. True when it already counts deployment-wide; false when the
   * engine will call `sub.transport.ready(sub)` once it does (§3.2: before the SSE head is sent).
   */
  registered (sub: Subscriber): boolean
  unregistered (sub: Subscriber): void
  /** Totals for /status, summed over the host's worker processes where the engine can (null: this process's own figures stand). */
  totals (): Totals | null
  /**
   * Revoke a user's (`sub`) or token's (`jti`) subscribers on every process and node of the
   * deployment (Core.revokeLocal everywhere); resolves to how many were ended in all.
   */
  revoke (kind: 'sub' | 'jti', value: string, at: number, until: number): Promise<{ ended: number, complete: boolean }>
  /**
   * True when a publish to `key` makes its record in another process, which checks `maxChannels`
   * there (the workers engine: the channel's owner), so the process it lands on does not: it
   * makes no record for it. Absent = false.
   */
  recordsElsewhere? (key: string): boolean
  /** Engines with a shared store: the whole deployment's subscribers and live nodes, when known. */
  deployment? (): { nodes: number, subscribers: number } | null
  /**
   * False when this process's buffers may not yet hold everything the subscriber is owed in order
   * (a multiplexed subscription with a channel whose replica is filled only once it is counted):
   * a long-poll is then counted first and answered once the engine filled them. Absent = true.
   */
  answersEarly? (sub: Subscriber): boolean
  /**
   * At maxChannels: drop up to `n` copies of other authorities' channels that no subscriber here
   * holds (kept a while in case one comes back), so their records make room. Returns how many.
   */
  reclaim? (n: number): number
  /**
   * With in-memory workers, for a channel this process owns: whether subscribers on other workers
   * hold it (a channel whose messages all expired is gone only when nobody anywhere subscribes).
   * Absent = none elsewhere.
   */
  subscribedElsewhere? (key: string): boolean
  /**
   * With in-memory workers, maxSubscribersPerUser: the user's subscribers in this process are now
   * `count` (the engine tells the user's owner), and, on the user's owner, the user's subscribers
   * on the other workers (elsewhere 0: the owner's answer follows registered()). Absent = this
   * process counts alone.
   */
  usersChanged? (user: string, count: number): void
  usersElsewhere? (user: string): number
  /** A long-poll was answered from this process's replica: the authority's "last requested" moves. */
  touched? (keys: readonly string[]): void
  /**
   * With in-memory workers: the channels this process owns and the messages in their buffers, as
   * last counted for the primary (once a second); absent = every channel it holds is its own.
   */
  owned? (): { channels: number, stored: number }
  /** With in-memory workers: replicas loaded from their channels' owners since the process started. */
  replicaLoads? (): number
  /** Engines with a shared store (Redis): its state, for /status and /health; absent = always up. */
  health? (): { up: boolean, pendingCommands: number, connectedServers: number, mode?: string, faults?: number, failovers?: number, cluster?: { masters: number, reachable: number, slots: number } | null }
  /** False while the shared store is away: new subscribers get 503 at once (absent = always up). */
  readonly up?: boolean
}

export class MemoryEngine implements Engine {
  readonly name = 'memory'
  readonly #core: Core

  constructor (core: Core) {
    this.#core = core
    // this process assigns every id from this second on: a channel without a record had none since
    core.registry.knownSince = core.nowSec
  }

  publish (key: string, data: Buffer, contentType: string | null, event: string | null, idempotencyKey: string | null = null, requestFingerprint?: string): PublishResult {
    const core = this.#core
    const fp = idempotencyKey === null ? '' : requestFingerprint ?? fingerprint(data, contentType, event)
    if (idempotencyKey !== null) {
      const replay = core.replayed(key, idempotencyKey, null, fp)
      if (replay !== null) return replay
    }
    const { msg, channel, subscribers } = core.publish(key, data, contentType, event)
    if (idempotencyKey !== null) core.idempotency.set(key, idempotencyKey, msg.id, fp)
    const info = channelInfo(channel, Date.now())
    info.subscribers = subscribers
    return { status: subscribers > 0 ? 201 : 202, info }
  }

  replay (key: string, idempotencyKey: string, requestFingerprint: string): PublishResult | null {
    return this.#core.replayed(key, idempotencyKey, null, requestFingerprint)
  }

  info (key: string): ChannelInfo | null {
    const ch = this.#core.registry.get(key)
    if (ch === undefined) return null
    // its last messages expired, nobody subscribes: the channel is gone (§5.4)
    this.#core.expireDue(ch)
    if (ch.isEmpty) return null
    return channelInfo(ch, Date.now())
  }

  delete (key: string): ChannelInfo | null {
    const ch = this.#core.registry.get(key)
    if (ch === undefined) return null
    // (its last messages expired, nobody subscribes: gone already, §5.4; a record with neither
    // that the tick has not released yet is gone too, as its info says)
    this.#core.expireDue(ch)
    if (this.#core.registry.get(key) !== ch) return null
    const info = ch.isEmpty ? null : channelInfo(ch, Date.now())
    this.#core.deleteChannel(ch)
    return info
  }

  registered (_sub: Subscriber): boolean {
    return true
  }

  unregistered (_sub: Subscriber): void {}

  totals (): null {
    return null
  }

  async revoke (kind: 'sub' | 'jti', value: string, at: number, until: number): Promise<{ ended: number, complete: boolean }> {
    const ended = this.#core.revokeLocal(kind, value, at, until)
    // in force from here; kept across a restart once on disk (lib/revocation-file.ts)
    const file = this.#core.opts.revocationsFile
    if (file !== '') saveRevocation(file, [kind, value, at, until])
    return { ended, complete: true }
  }
}
