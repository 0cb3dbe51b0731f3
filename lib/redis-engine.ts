// The Redis engine (options `redisUrl`, `redisCluster`, `redisSentinel`; docs/redis.md): several
// Parkline nodes share channels, buffers and ids through one Redis, a Cluster or a Sentinel set.
//
//   node A ──EVALSHA publish──▶ Redis (ids, buffer stream, counts) ──SPUBLISH pk:{T}:c──▶ nodes
//                                                                    with local subscribers
//
// * Ids: one Lua script per publish assigns `time:tag` from Redis' TIME, appends to the channel's
//   stream (MAXLEN = bufferLength), sets the expiry, reads the counts and publishes the message
//   on the channel's shard channel: one id authority per channel (§2.1). Every key of a channel
//   carries the hash tag {T} (hashTag), so each script runs on one Cluster slot. Scripts and key
//   layout: lib/redis-lua.ts.
// * Fan-out stays local: a node subscribes to a channel while it has local subscribers (and for a
//   linger after the last one left, so long-poll clients between polls do not reload it), keeps a
//   replica in the core and applies each message once (framed once per node).
// * Replay: a channel without a replica is subscribed first, then loaded (the buffer after '-'),
//   then the messages that arrived meanwhile are applied if newer than the last loaded one. The
//   subscriber's head waits for that and for its count (§3.2), via registered() → ready(); a
//   long-poll is counted only if it parks.
// * Counts: each node writes its absolute count per channel (pk:{T}:s node -> n). A node is alive
//   while its heartbeat (every 2 s) keeps its score in pk:nodes in the future (6 s); the scripts
//   return the raw counts and the node sums those not known dead; heartbeats sweep dead nodes'
//   counts one key per command (pk:n:<node> lists where a node counted).
// * Faults: every command has a deadline (redisCommandTimeout, one shared timer). A command past
//   it, a lost connection or a failed Cluster node makes the store down for this node: publishes,
//   info and deletes answer 503 (STORE_UNAVAILABLE), new subscribers 503. A probe (every 250 ms)
//   brings it back; then the node rewrites its counts and re-reads every replica's buffer after the
//   last id it applied (at most MAX_LOADS at once), so subscribers get what they missed, or the gap
//   signal when it left the buffer. A record Redis lost is seeded back with the last id, and one
//   whose tail a failover lost is moved on past it (FORWARD), so ids keep increasing.
import { createHash } from 'node:crypto'
import { hostname } from 'node:os'
import { createClient, createCluster, createSentinel, RESP_TYPES } from '@redis/client'
import type { ChannelInfo } from './channel-info.ts'
import { HORIZON_ALL } from './channel-registry.ts'
import { MAX_LEEWAY } from './config.ts'
import type { Core, ParklineLog } from './core.ts'
import type { Engine, PublishResult } from './engine.ts'
import { ERRORS, ParklineError } from './errors.ts'
import { fingerprint } from './idempotency.ts'
import { oncePer } from './stats.ts'
import { formatId } from './message-id.ts'
import { F_CLOSED, type Subscriber } from './subscriber.ts'
import * as LUA from './redis-lua.ts'

const EMPTY = Buffer.alloc(0)
const HEARTBEAT_MS = 2000
/** Warnings about single channels of one kind logged in a window, at most (#channelWarn). */
const CHANNEL_WARNINGS = 10
const CHANNEL_WARN_MS = 10_000
/** While the store is at fault: how often it is probed. */
const PROBE_MS = 250
/** Dead node ids remembered (their stale counts are not summed). */
const MAX_DEAD = 10000
/** Replica loads at once: a recovery re-reads every channel a node holds. */
const MAX_LOADS = 256
/** Pub/sub messages held per replica while it loads; past it they are dropped and it loads again. */
const MAX_PENDING = 10000

/** Granularity of the command deadlines (one timer per engine). */
const DEADLINE_TICK_MS = 100

interface Deadline { at: number, ms: number, reject: (err: Error) => void, fault: boolean }

class CommandTimeoutError extends Error {
  constructor (ms: number) {
    super(`redis command timed out after ${ms} ms`)
    this.name = 'CommandTimeoutError'
  }
}
const NODE_LIFE_MS = 6000
/** A replica with no local subscriber is kept (and kept current) this long before it is dropped. */
const LINGER_MS = 30000
const NODES_KEY = 'pk:nodes'
/** Each node's subscriber total (hash node id -> n), for the deployment's figure in /status. */
const NODE_TOTALS = 'pk:nt'
/** Control channel (plain pub/sub, every node): revocations. */
const CONTROL = 'pk:ctl'
/**
 * Revocations, for nodes that start later, one row per token or user however often it was
 * revoked: revoked jtis (a sorted set: member the jti, score its token's exp, `+inf` for one held
 * for good; a row is dropped MAX_LEEWAY seconds past its exp) and users (a hash: the user's sub to
 * the second of its latest revocation, held for good). Each row is written with what the writing
 * node holds for it, merged again with the row there by a script (lib/redis-lua.ts REVOKE: the
 * later second, the longer exp, as lib/auth.ts Revocations merges). On
 * the slot of pk:nodes, as the store's epoch is: a Redis Cluster master that loses them (restarted
 * without persistence, flushed) loses the epoch with them, which the nodes' heartbeat sees, and
 * they write them back (#restoreRevocations); on a slot of their own, a master that lost them
 * alone went unseen.
 */
export const REVOKED_JTI_KEY = 'pk:{pk:nodes}:revoked'
export const REVOKED_SUB_KEY = 'pk:{pk:nodes}:revoked-sub'
/**
 * Where earlier builds kept them (a sorted set of JSON rows [kind, value, at, until], scored by
 * when each may be forgotten): read at each load whatever their score, and their rows written into
 * the keys above, so that none made before an upgrade, or by a node not yet upgraded, is lost;
 * never written itself (a node not yet upgraded still reads it).
 */
export const LEGACY_REVOKED_KEY = 'pk:revoked'
/** The second from which the store has held every channel's record (lib/redis-lua.ts HEARTBEAT): on pk:nodes' slot. */
const EPOCH_KEY = 'pk:{pk:nodes}:epoch'
/** How often a node where tokens are checked reads the Redis eviction policy (#checkEviction). */
const EVICTION_CHECK_MS = 10_000
/** How long a revoke waits for every node's count. */
const REVOKE_WAIT_MS = 3000

const NEW = 0
const LOADING = 1
const LIVE = 2

/** A store error that the publisher answers with 503 + Retry-After. */
export class StoreUnavailableError extends ParklineError {
  constructor (cause?: unknown) {
    super(ERRORS.STORE_UNAVAILABLE.code, ERRORS.STORE_UNAVAILABLE.message, ERRORS.STORE_UNAVAILABLE.statusCode)
    this.name = 'StoreUnavailableError'
    if (cause !== undefined) this.cause = cause
  }
}

/** This node's copy of one channel. */
class Replica {
  readonly key: string
  state: number
  /** Subscribed on the pub/sub connection (node-redis resubscribes it after a reconnect). */
  subscribed: boolean
  /** A load or catch-up is running; or the pub/sub connection dropped and one is due. */
  busy: boolean
  stale: boolean
  /** Pub/sub payloads held while loading or catching up, applied afterwards if newer. */
  pending: Buffer[]
  lastTime: number
  lastTag: number
  gen: string
  /** ms since the last local subscriber left; 0 while there is one. */
  idleSince: number
  /** Subscribers whose head waits for this replica. */
  waiters: Subscriber[]
  /** Load again after this load: more pub/sub messages arrived than are held, or the record changed under it. */
  again: boolean
  /** The next load only reads the record again (#reread): not a recovery, the node stays up meanwhile. */
  reread: boolean
  /** The running (or queued) load counts in #recovering. */
  counted: boolean
  /** The generation whose message reused an id here and made it read the record again: a second one ends the subscribers. */
  reusedGen: string

  constructor (key: string) {
    this.key = key
    this.state = NEW
    this.subscribed = false
    this.busy = false
    this.stale = false
    this.pending = []
    this.lastTime = 0
    this.lastTag = 0
    this.gen = ''
    this.idleSince = 0
    this.waiters = []
    this.again = false
    this.reread = false
    this.counted = false
    this.reusedGen = ''
  }
}

/** Where the store is: one Redis (redisUrl), a Redis Cluster (redisCluster), or a Sentinel set. */
export type RedisTarget =
  | { mode: 'standalone', url: string, auth?: RedisAuth }
  | { mode: 'cluster', seeds: string[], auth?: RedisAuth }
  | { mode: 'sentinel', sentinels: Array<{ host: string, port: number }>, name: string, tls?: boolean, auth?: RedisAuth }

/** The ACL user (and password) every data node is logged in to as; absent: a URL's own, or none. */
export interface RedisAuth { username?: string, password?: string }

/**
 * What the engine needs of a node-redis client, cluster or sentinel: the three differ only in how
 * a raw command names its routing (cluster: the first key; sentinel: read-only or not).
 */
interface Conn {
  isReady: boolean
  connect (): Promise<unknown>
  destroy (): void
  on (event: string, listener: (...args: unknown[]) => void): unknown
  withTypeMapping (m: unknown): Conn
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  subscribe (channel: string | string[], listener: (...args: any[]) => void, buffers?: true): Promise<unknown>
  sSubscribe (channel: string | string[], listener: (msg: Buffer, channel: Buffer) => void, buffers: true): Promise<unknown>
  sUnsubscribe (channel: string, listener: (msg: Buffer, channel: Buffer) => void, buffers: true): Promise<unknown>
  unsubscribe (channel: string, listener: (msg: Buffer, channel: Buffer) => void, buffers: true): Promise<unknown>
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  sendCommand (...args: any[]): Promise<unknown>
}

/** A pub/sub client of node-redis: ready once it has subscribed again after a reconnect. */
interface PubSubClient { isReady: boolean, getPubSubListeners (type: 'CHANNELS' | 'SHARDED'): Map<string, unknown> }

/** node-redis RedisCluster's slots: the pub/sub client for a shard channel, or for plain channels. */
interface ClusterPubSub {
  getShardedPubSubClient (channel: string): Promise<PubSubClient>
  getPubSubClient (): Promise<PubSubClient>
  masters: Array<{ pubSub?: { client: { on (event: string, listener: (channel: unknown) => void): unknown } } }>
}

/** The cluster client's view of its masters (node-redis RedisCluster.masters). */
interface ClusterView { masters: Array<{ host: string, port: number, address: string }>, nodeClient (node: unknown): Promise<{ sendCommand (args: string[]): Promise<unknown> }> }

export interface RedisEngineOptions {
  /** First connect: how long start() waits before it goes on without Redis (ms). */
  connectWait?: number
  /** Lifecycle lines: connected, lost, recovered, failover. */
  log?: ParklineLog
}

function backoff (retries: number): number {
  return Math.min(2000, 50 * 2 ** Math.min(retries, 6)) + Math.floor(Math.random() * 100)
}

function num (v: unknown): number {
  return typeof v === 'number' ? v : Number(String(v))
}

/**
 * A sorted set's members with their scores as ZRANGEBYSCORE … WITHSCORES answers them: RESP3 (the
 * client's default) gives [member, score] pairs with scores as numbers (`Infinity`), RESP2 a flat
 * list with scores as strings (`inf`). Either, as [member, score].
 */
function scored (v: unknown): Array<[string, number]> {
  const out: Array<[string, number]> = []
  if (!Array.isArray(v)) return out
  const score = (x: unknown): number => {
    if (typeof x === 'number') return x
    const t = str(x)
    return t === 'inf' || t === '+inf' ? Infinity : Number(t)
  }
  if (v.length > 0 && Array.isArray(v[0])) {
    for (const e of v as unknown[][]) out.push([str(e[0]), score(e[1])])
  } else {
    for (let i = 0; i + 1 < v.length; i += 2) out.push([str(v[i]), score(v[i + 1])])
  }
  return out
}

function str (v: unknown): string {
  return Buffer.isBuffer(v) ? v.toString('utf8') : String(v)
}

/** A node-redis client, cluster client or sentinel client for `target`. */
function connection (target: RedisTarget, timeout: number): Conn {
  const socket = { reconnectStrategy: backoff, connectTimeout: 2000 }
  // (node-redis's command timeout covers the wait to be written; #send adds the whole deadline)
  const commandOptions = { timeout }
  const auth = target.auth ?? {}
  if (target.mode === 'cluster') {
    // node-redis connects to a node it finds from the seeds with `defaults` only, not with a seed
    // URL's user:password@ or its rediss: those go into defaults too (lib/engines.ts redisTarget)
    const tls = target.seeds.every((u) => u.startsWith('rediss:'))
    return createCluster({ rootNodes: target.seeds.map((url) => ({ url })), defaults: { disableOfflineQueue: true, socket: tls ? { ...socket, tls: true as const } : socket, ...auth }, commandOptions }) as unknown as Conn
  }
  if (target.mode === 'sentinel') {
    // node-redis gives the master and replicas it learns from the sentinels nodeClientOptions'
    // socket (with their host and port): TLS there reaches them over TLS
    const sock = target.tls === true ? { ...socket, tls: true as const } : socket
    return createSentinel({
      name: target.name,
      sentinelRootNodes: target.sentinels,
      nodeClientOptions: { disableOfflineQueue: true, socket: sock, ...auth },
      sentinelClientOptions: { socket: sock },
      commandOptions,
      passthroughClientErrorEvents: true,
      // ask the sentinels every second (default 10 s): a failover is followed within ~1 s
      scanInterval: 1000
    }) as unknown as Conn
  }
  return createClient({ url: target.url, disableOfflineQueue: true, socket, commandOptions, ...auth }) as unknown as Conn
}

/**
 * The hash tag of a channel's keys: the id with `%`, `{` and `}` percent-encoded, so the tag ends
 * at its own `}` whatever the id holds (`{`, `}`, `:`, any Unicode), and every key of a channel
 * hashes to one Cluster slot.
 */
export function hashTag (key: string): string {
  return key.replace(/[%{}]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase())
}

function unTag (tag: string): string {
  return tag.replace(/%(25|7B|7D)/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)))
}

/** A user's counts (maxSubscribersPerUser): node -> its subscribers of that user (lib/redis-lua.ts USER). */
export function userKey (user: string): string {
  return 'pk:u:' + user
}

/** The keys of a channel (lib/redis-lua.ts). */
export function channelKey (key: string, part: 'm' | 'b' | 's' | 'x' | 'd' | 'c' | 'i' | 'f'): string {
  return `pk:{${hashTag(key)}}:${part}`
}

const SHAS: Record<string, string> = {}
for (const name of ['PUBLISH', 'INFO', 'DELETE', 'LOAD', 'SEED', 'FORWARD', 'REUSED', 'COUNT', 'HEARTBEAT', 'USER', 'REVOKE'] as const) {
  SHAS[name] = createHash('sha1').update(LUA[name]).digest('hex')
}

/** How often one kind of login refusal is logged while it lasts. */
const REFUSAL_LOG_MS = 60_000

/** Errors Redis answers while it works: the command failed, the store is not away. */
const ANSWERS = ['ERR', 'WRONGTYPE', 'NOSCRIPT', 'OOM', 'NOREPLICAS', 'BUSY', 'NOPERM']

/** A command that timed out or found no connection: the store is away (not a script's error). */
function errorText (err: unknown): string {
  return String((err as { message?: string } | null)?.message ?? err)
}

function isFault (err: unknown): boolean {
  const m = String((err as { message?: string } | null)?.message ?? '')
  return !ANSWERS.some((p) => m.startsWith(p))
}

export class RedisEngine implements Engine {
  readonly name = 'redis'
  readonly nodeId: string
  readonly mode: RedisTarget['mode']
  readonly #core: Core
  readonly #cmd: Conn
  readonly #sub: Conn
  /** The command connection with bulk strings as Buffers (message bodies stay binary). */
  readonly #bin: Conn
  /** With redisReplicaAck: the connection publishes and their WAIT go on. */
  readonly #ack: Conn | null = null
  /** Replica loads running, and those waiting for a slot (bounded: a recovery re-reads every channel). */
  #loading = 0
  readonly #loadQueue: Replica[] = []
  /** Bumped by every fault: a load that began before one keeps its replica stale. */
  #epoch = 0
  #sweeping = false
  readonly #replicas = new Map<string, Replica>()
  /** Local subscriber count per channel: what this node has (or will have) written to Redis. */
  readonly #counts = new Map<string, number>()
  #dirty = new Set<string>()
  #arrived = new Set<string>()
  #waiting: Subscriber[] = []
  /** maxSubscribersPerUser: users whose count here changed since the last flush (written absolute, USER). */
  #usersDirty = new Set<string>()
  /**
   * maxSubscribersPerUser: users whose subscribers here the store forgot (this node was swept as
   * dead after 6 s without a heartbeat, or the store lost its data): at the next flush every one of
   * them is asked for again as new, and those past the limit end (429). Meanwhile another node may
   * have admitted that user's subscribers into the room the sweep freed: the deployment is brought
   * back under the limit, not left over it for as long as both streams last.
   */
  #usersRejoin = new Set<string>()
  #flushScheduled = false
  #flushing = false
  /** Subscribers whose F_CATCHING_UP flag the engine set (long-poll), cleared before ready(). */
  readonly #flagged = new WeakSet<Subscriber>()
  /** Registered, count not yet acknowledged by Redis. */
  readonly #uncounted = new WeakSet<Subscriber>()
  /** Registered, not counted until its replicas are loaded and it parks (Transport.answersAtOnce). */
  readonly #deferred = new WeakSet<Subscriber>()
  /** Subscribers not yet ready, with when they registered: past redisCommandTimeout they get 503. */
  readonly #pending = new Map<Subscriber, number>()
  #sharded = false
  #scriptsReady = false
  #cmdReady = false
  /**
   * Revocations broadcast while this node was not listening (before it started, while a
   * connection was down) may not be applied yet: not up, so no token is admitted, until they are
   * read (#loadRevocations). A token revoked on another node is never admitted here meanwhile.
   */
  #revocationsBehind = true
  /**
   * Tokens are checked and the Redis holding the revocations may evict any key (`maxmemory-policy`
   * allkeys-*): a revocation could vanish under memory pressure, and a revoked token be admitted.
   * The node stays down (503) until the policy is one that spares keys without a TTL
   * (noeviction, volatile-*), which it reads again every EVICTION_CHECK_MS.
   */
  #evictable = false
  #evictionCheckedAt = -Infinity
  #subReady = false
  #recovering = 0
  /**
   * Replicas were marked stale (pub/sub lost, a fault) and their re-sync has not started yet: not
   * up meanwhile. Without it a node answered /health 200 and took publishes in the moments between
   * its connections coming back and the re-sync starting (#cmdUp and #subUp await first), so a
   * publish there could take an id the store had lost and a replica already held: that message
   * was never delivered.
   */
  #syncPending = false
  #inflight = 0
  #timer: NodeJS.Timeout | null = null
  #probeTimer: NodeJS.Timeout | null = null
  #deadlineTimer: NodeJS.Timeout | null = null
  /** Commands sent and not answered yet, oldest first (each with the whole redisCommandTimeout). */
  readonly #deadlines = new Set<Deadline>()
  /** Commands with a deadline of their own (a publish's WAIT: what its script left), in no order. */
  readonly #shortDeadlines = new Set<Deadline>()
  /** When expire() last ran. */
  #lastExpire = 0
  #stopped = false
  readonly #onMessage: (msg: Buffer, channel: Buffer) => void
  readonly #onControl: (msg: string) => void
  #controlSubscribed = false
  #revSeq = 0
  #deployment: { nodes: number, subscribers: number } | null = null
  /** Nodes whose heartbeat lapsed (their counts are not summed until swept). */
  #dead = new Set<string>()
  /** Redis' ms clock minus ours, from the last heartbeat: publish deadlines are in Redis' time. */
  #clockOffset = 0
  /** The store's epoch as of the last heartbeat (0 before the first, or unknown): a cursor before it may have lost what a wiped store lost. */
  #storeSince = 0
  /** A heartbeat has read the epoch: one that reads another after it finds the store wiped. */
  #epochRead = false
  /** A command timed out or a node failed: not up until a probe finds every master answering. */
  #faulty = false
  #faults = 0
  #failovers = 0
  #masters = ''
  #cluster: { masters: number, reachable: number, slots: number } | null = null
  readonly #connectWait: number
  readonly #timeout: number
  readonly #log: ParklineLog | null
  /** 'never' until the first connect; 'up'; 'down' since a connection was lost (logged once). */
  #state: 'never' | 'up' | 'down' = 'never'

  constructor (core: Core, target: RedisTarget | string, opts: RedisEngineOptions = {}) {
    this.#core = core
    core.fence = (sub, pos) => this.#fence(sub, pos)
    if (typeof target === 'string') target = { mode: 'standalone', url: target }
    this.mode = target.mode
    this.#connectWait = opts.connectWait ?? 3000
    this.#log = opts.log ?? null
    this.#timeout = core.opts.redisCommandTimeout
    this.nodeId = `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`
    this.#cmd = connection(target, this.#timeout)
    // one client serves commands and (sharded) pub/sub on a cluster or sentinel set
    this.#sub = target.mode === 'standalone' ? connection(target, this.#timeout) : this.#cmd
    this.#bin = this.#cmd.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer })
    // redisReplicaAck: publishes and their WAIT on a connection of their own, so a WAIT (it blocks
    // the connection it runs on) never holds the heartbeat, counts and loads behind it
    if (core.opts.redisReplicaAck > 0) {
      this.#ack = connection(target, this.#timeout)
      this.#ack.on('error', () => {})
    }
    this.#onMessage = (msg, channel) => this.#message(msg, channel)
    this.#onControl = (msg) => { void this.#control(msg) }
    // a channel's record stays while its copy does (until #detach): what the copy learnt when it
    // was loaded (its floor, its horizon) is in the record, and a record made again by a live
    // message would know only this node's second
    core.registry.heldElsewhere = (key) => this.#replicas.has(key)
    // a dropped connection is never fatal: listen to errors, reconnect with backoff
    if (target.mode === 'standalone') {
      this.#cmd.on('error', (err: unknown) => { this.#connectError(err); this.#cmdDown(`the command connection failed: ${this.#lastConnectError}`) })
      this.#cmd.on('end', () => this.#cmdDown('the command connection closed'))
      this.#cmd.on('ready', () => { void this.#cmdUp() })
      this.#sub.on('error', (err: unknown) => { this.#connectError(err); this.#subDown(`the pub/sub connection failed: ${this.#lastConnectError}`) })
      this.#sub.on('end', () => this.#subDown('the pub/sub connection closed'))
      this.#sub.on('ready', () => { void this.#subUp() })
    } else {
      // one client for commands and (sharded) pub/sub; node-redis follows failovers and moves the
      // subscriptions itself. Any node trouble may have lost pub/sub messages: catch up afterwards.
      // (not node-disconnect: node-redis closes a master's pub/sub connection itself once its last
      // subscription there ends; not topology changes other than a new master)
      const fault = (): void => this.#fault(target.mode === 'cluster' ? 'a cluster node failed or reconnects' : 'a connection failed or reconnects')
      const events = target.mode === 'cluster' ? ['node-error', 'node-reconnecting'] : ['error', 'client-error', 'reconnecting']
      for (const ev of events) this.#cmd.on(ev, fault)
      this.#cmd.on(target.mode === 'cluster' ? 'node-error' : 'client-error', (err: unknown) => { this.#connectError(err) })
      this.#cmd.on('error', (err: unknown) => { this.#connectError(err) })
      // a new master is a failover, counted and said as a cluster's is (#clusterState)
      if (target.mode === 'sentinel') {
        let master = ''
        this.#cmd.on('topology-change', (e) => {
          if ((e as { type?: string }).type !== 'MASTER_CHANGE') return
          // (node-redis says MASTER_CHANGE for the first master it opens too: not a failover)
          const n = (e as { node?: { host?: string, port?: number } }).node
          const now = `${n?.host ?? '?'}:${n?.port ?? '?'}`
          if (master !== '' && now !== master) {
            this.#failovers++
            this.#log?.warn({ node: this.nodeId, was: master, now }, 'redis sentinel failover: the master changed')
          }
          master = now
          this.#fault('the sentinel master changed')
        })
      }
      // a slot moved and node-redis could not subscribe its channel on the new master: it is gone
      // from every client (subscribed again by the probe, #clusterPubSubBack)
      if (target.mode === 'cluster') this.#cmd.on('sharded-channel-moved-error', (_err: unknown, channel: unknown) => { this.#resubscribe.add(String(channel)); this.#fault('a slot moved') })
    }
  }

  /** Connect (in the background after `connectWait` ms) and start the heartbeat. */
  async start (): Promise<void> {
    if (this.mode === 'standalone') {
      this.#cmd.connect().catch(() => {})
      this.#sub.connect().catch(() => {})
    } else {
      this.#connectShared()
    }
    this.#connectAck()
    this.#timer = setInterval(onTick, HEARTBEAT_MS, this)
    this.#timer.unref()
    this.#deadlineTimer = setInterval(onDeadlines, DEADLINE_TICK_MS, this)
    this.#deadlineTimer.unref()
    this.#lastExpire = Date.now()
    const deadline = Date.now() + this.#connectWait
    while (!this.up && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
    // (one down for its eviction policy said why in an error line)
    if (!this.up && !this.#stopped && !this.#evictable) {
      this.#log?.warn({ node: this.nodeId, mode: this.mode, lastError: this.#lastConnectError ?? undefined }, 'redis not reachable yet: publishes and new subscribers answer 503 until it is')
    }
  }

  /** The last connection error node-redis reported (its message), for the start's warning. */
  #lastConnectError: string | null = null
  /** Each kind of refusal (WRONGPASS, NOAUTH, NOPERM) is logged at most once per REFUSAL_LOG_MS. */
  readonly #refusalDue = oncePer(REFUSAL_LOG_MS)

  /**
   * A connection error. Redis refusing the login (a wrong password, a user without a permission
   * the connection needs at once) is the operator's to fix and retrying cannot: one error line per
   * kind each REFUSAL_LOG_MS while it lasts, naming what Redis said. Anything else (refused,
   * reset, timed out) is the store being away, which the lost/recovered lines already tell.
   */
  #connectError (err: unknown): void {
    // the sentinel client's client-error event carries { type, node, error }; its error event's
    // message is prefixed with the client's role and address ("Master Client (h:p): WRONGPASS …")
    const e = err !== null && typeof err === 'object' && 'error' in err ? (err as { error: unknown }).error : err
    const m = errorText(e)
    this.#lastConnectError = m
    // (a database number past the server's `databases` is refused at the connection's SELECT)
    const kind = /\b(WRONGPASS|NOAUTH|NOPERM)\b/.exec(m)?.[1] ?? (/\bDB index is out of range\b/.test(m) ? 'DB' : undefined)
    if (kind === undefined || this.#stopped || !this.#refusalDue(kind)) return
    const log = this.#log
    if (log === null) return
    const line = log.error ?? log.warn
    line.call(log, { node: this.nodeId, mode: this.mode, redisError: m }, kind === 'DB'
      ? 'redis refused the database the URL names (/N): it has fewer (its `databases` setting, 16 by default)'
      : 'redis refused Parkline\'s login or a command it needs: check redisUsername/redisPassword (or the URL\'s) and the user\'s ACL (docs/redis.md, Access)')
  }

  #connectAck (): void {
    if (this.#ack === null || this.#stopped) return
    this.#ack.connect().catch(() => {
      const t = setTimeout(() => this.#connectAck(), 500)
      t.unref()
    })
  }

  /** Cluster and sentinel: connect (retrying until it works), then both roles are up. */
  #connectShared (): void {
    if (this.#stopped) return
    this.#cmd.connect().then(async () => {
      await this.#cmdUp()
      await this.#subUp()
    }, () => {
      const t = setTimeout(() => this.#connectShared(), 500)
      t.unref()
    })
  }

  async stop (): Promise<void> {
    if (this.#stopped) return
    this.#stopped = true
    if (this.#timer !== null) clearInterval(this.#timer)
    if (this.#probeTimer !== null) clearInterval(this.#probeTimer)
    if (this.#rereadTimer !== null) clearTimeout(this.#rereadTimer)
    if (this.#cmdReady && !this.#faulty) await this.#leave().catch(() => {})
    if (this.#deadlineTimer !== null) clearInterval(this.#deadlineTimer)
    this.#cmd.destroy()
    if (this.#sub !== this.#cmd) this.#sub.destroy()
    this.#ack?.destroy()
  }

  /** Both connections ready, scripts known, no fault and no catch-up running: publishes are accepted. */
  get up (): boolean {
    return this.#cmdReady && this.#subReady && this.#scriptsReady && !this.#revocationsBehind && !this.#evictable && !this.#faulty && !this.#syncPending && this.#recovering === 0
  }

  /** /status, /metrics and /health (EXTENSION f). */
  health (): { up: boolean, pendingCommands: number, connectedServers: number, mode: string, faults: number, failovers: number, cluster: { masters: number, reachable: number, slots: number } | null } {
    return {
      up: this.up,
      pendingCommands: this.#inflight + this.#dirty.size + this.#waiting.length,
      connectedServers: this.#cluster !== null ? this.#cluster.reachable : this.#cmdReady && this.#subReady && !this.#faulty ? 1 : 0,
      mode: this.mode,
      faults: this.#faults,
      failovers: this.#failovers,
      cluster: this.#cluster
    }
  }

  // ---- routing ------------------------------------------------------------------------------------

  /**
   * One raw command, routed by its first key on a cluster, with the deadline redisCommandTimeout.
   * (node-redis's own command timeout only covers the wait to be written: a Redis that stops
   * answering after that would hold the command for as long as it hangs.)
   */
  #send (key: string | undefined, args: Array<string | Buffer>, conn: Conn = this.#cmd, fault = true, ms = this.#timeout): Promise<unknown> {
    let p: Promise<unknown>
    if (this.mode === 'cluster') p = conn.sendCommand(key, false, args)
    else if (this.mode === 'sentinel') p = conn.sendCommand(false, args)
    else p = conn.sendCommand(args)
    return new Promise((resolve, reject) => {
      const d: Deadline = { at: Date.now() + ms, ms, reject, fault }
      const set = ms === this.#timeout ? this.#deadlines : this.#shortDeadlines
      set.add(d)
      p.then((v) => { set.delete(d); resolve(v) }, (err) => { set.delete(d); reject(err) })
    })
  }

  /**
   * The one deadline timer: commands past redisCommandTimeout are rejected and the store is at
   * fault. One timeout for all in #deadlines, so that set is in deadline order: stop at the first
   * one still due. Those with a deadline of their own (the WAITs in flight) are looked at one by one.
   */
  expire (): void {
    // Judged as of the previous tick: a command is late once it was already due then and is still
    // unanswered now, after a loop turn that read the sockets. A loop that was held up (CPU starved,
    // a long GC, a blocking call) runs timers before I/O, and a reply sitting unread in a socket is
    // no store fault.
    const due = this.#lastExpire
    this.#lastExpire = Date.now()
    this.#expirePending(due)
    let late = 0
    for (const d of this.#deadlines) {
      if (d.at > due) break
      this.#deadlines.delete(d)
      d.reject(new CommandTimeoutError(d.ms))
      if (d.fault) late = d.ms
    }
    for (const d of this.#shortDeadlines) {
      if (d.at > due) continue
      this.#shortDeadlines.delete(d)
      d.reject(new CommandTimeoutError(d.ms))
      if (d.fault) late = d.ms
    }
    if (late > 0) this.#fault(`a command had no answer within ${late} ms`)
  }

  // ---- connection state ---------------------------------------------------------------------

  #cmdDown (cause: string): void {
    // a node serving since its last load ended (the tick had not said so yet) is up: this is a new outage
    this.#checkUp()
    if (!this.#cmd.isReady) this.#cmdReady = false
    this.#revocationsBehind = true
    this.#lost(cause)
  }

  /**
   * A warning about one channel: a failover can bring one for every channel a node holds (100,000
   * lines). The first CHANNEL_WARNINGS of a kind in a CHANNEL_WARN_MS window are logged; the rest
   * are counted, and one line at the window's end (the heartbeat tick) says how many.
   */
  #channelWarn (obj: Record<string, unknown>, msg: string): void {
    let w = this.#warned.get(msg)
    if (w === undefined) {
      w = { since: Date.now(), logged: 0, left: 0 }
      this.#warned.set(msg, w)
    }
    if (w.logged < CHANNEL_WARNINGS) {
      w.logged++
      this.#log?.warn(obj, msg)
    } else {
      w.left++
    }
  }

  readonly #warned = new Map<string, { since: number, logged: number, left: number }>()

  /**
   * One line and one fault (redis faults, parkline_store_faults_total) per outage, however many
   * errors the clients emit while reconnecting: a standalone connection dropped, a command past
   * redisCommandTimeout, a cluster or Sentinel node failing, whichever is seen first.
   */
  #lost (cause: string): void {
    if (this.#state !== 'up' || this.#stopped) return
    this.#state = 'down'
    this.#faults++
    this.#log?.warn({ node: this.nodeId, mode: this.mode, cause }, 'redis unavailable: publishes answer 503 until it is back')
  }

  #checkUp (): void {
    if (!this.up) return
    // multiplexed subscribers the fence held while the node caught up (#fence)
    this.#core.fenceMoved()
    if (this.#state === 'up') return
    this.#log?.info({ node: this.nodeId, mode: this.mode, sharded: this.#sharded, cluster: this.#cluster ?? undefined }, this.#state === 'never' ? 'redis connected' : 'redis recovered')
    if (this.#state === 'never') void this.#checkRecoveryChannels()
    this.#state = 'up'
  }

  /**
   * A subscription a recovery makes (or the start's check of one) refused with NOPERM: the user's
   * ACL, which retrying cannot fix, so an error line says which (once per REFUSAL_LOG_MS). Any
   * other failure is the store being away: the probe and its lines tell of that.
   */
  #recoveryRefused (err: unknown): void {
    const m = errorText(err)
    const log = this.#log
    if (!/\bNOPERM\b/.test(m) || this.#stopped || log === null || !this.#refusalDue('recovery')) return
    const line = log.error ?? log.warn
    line.call(log, { node: this.nodeId, mode: this.mode, redisError: m }, 'the Redis user may not subscribe to the pk:{…}:q… and pk:{…}:p… channels a recovery after a Redis fault makes: this node stays down after a fault until it may. Allow the channels &pk:* (docs/redis.md, Access)')
  }

  /**
   * A sharded cluster, once at the first connect: the short-lived subscriptions a recovery makes
   * (#clusterPubSubBack's `pk:{…}:q<n>`) are ones the user may make. An ACL that allows the
   * channels' `pk:*:c` alone passes everything else, and would keep the node down after its first
   * fault: said now (#recoveryRefused). With Sentinel the start is itself a recovery (node-redis
   * announces the first master as a change), whose `p` subscription says it.
   */
  async #checkRecoveryChannels (): Promise<void> {
    if (this.mode !== 'cluster' || !this.#sharded) return
    const name = `pk:{${hashTag(this.nodeId)}}:q0`
    const noop = (_msg: Buffer, _channel: Buffer): void => {}
    try {
      if (this.#sharded) await within(this.#timeout, this.#sub.sSubscribe(name, noop, true))
      else await within(this.#timeout, this.#sub.subscribe(name, noop, true))
    } catch (err) {
      this.#recoveryRefused(err)
    } finally {
      if (this.#sharded) await within(this.#timeout, this.#sub.sUnsubscribe(name, noop, true)).catch(() => {})
      else await within(this.#timeout, this.#sub.unsubscribe(name, noop, true)).catch(() => {})
    }
  }

  #subDown (cause: string): void {
    if (this.#sub.isReady) return
    this.#checkUp()
    this.#subReady = false
    // a revocation broadcast from now on is not heard: read from the store once back
    this.#revocationsBehind = true
    this.#lost(cause)
    // messages are being lost from now on: hold what arrives until the catch-up read
    if (this.#replicas.size > 0) this.#syncPending = true
    for (const r of this.#replicas.values()) {
      if (r.state === LIVE) r.stale = true
      // a load under way cannot have read what is lost from now on: it loads again when it ends
      if (r.busy) r.again = true
      this.#countBusy(r)
      r.subscribed = false
    }
  }

  /**
   * A command timed out, or (cluster, sentinel) a node failed: down until a probe finds the store
   * answering everywhere; meanwhile pub/sub messages may be lost, so every replica catches up then.
   */
  #fault (cause: string): void {
    if (this.#stopped) return
    this.#checkUp()
    this.#epoch++
    if (!this.#faulty) {
      this.#faulty = true
      // (before the first connect completed there is nothing to count or mark: just probe)
      if (this.#state !== 'never') {
        this.#lost(cause)
        if (this.#replicas.size > 0) this.#syncPending = true
        for (const r of this.#replicas.values()) {
          if (r.state === LIVE) r.stale = true
          this.#countBusy(r)
        }
      }
    }
    if (this.#probeTimer === null) {
      this.#probeTimer = setInterval(onProbe, PROBE_MS, this)
      this.#probeTimer.unref()
    }
  }

  /** Is the store answering everywhere again? Then catch up and accept publishes. */
  async probe (): Promise<void> {
    if (this.#probing || this.#stopped) return
    this.#probing = true
    try {
      if (!await this.#reachable()) return
      const epoch = this.#epoch
      // the catch-up reads only what was published before it: pub/sub must carry the rest, so it
      // waits until every subscription is back on a connection that is up
      if (!await this.#pubSubBack() || epoch !== this.#epoch) return
      if (!await this.#cmdUp() || epoch !== this.#epoch) return
      if (this.#probeTimer !== null) clearInterval(this.#probeTimer)
      this.#probeTimer = null
      this.#faulty = false
      this.#syncAll()
      this.#checkUp()
    } finally {
      this.#probing = false
    }
  }

  #probing = false

  /**
   * Cluster and sentinel: is every subscription of this node on a pub/sub connection that is up?
   * (node-redis resubscribes a connection before it calls it ready.) A subscription a client lost
   * (its reconnect failed, a slot moved and the move failed) is made again here, and the next
   * probe looks again. Standalone: the pub/sub connection's own ready event does this (#subUp).
   */
  async #pubSubBack (): Promise<boolean> {
    if (this.mode === 'standalone') return true
    const names: string[] = []
    for (const r of this.#replicas.values()) if (r.subscribed) names.push(channelKey(r.key, 'c'))
    try {
      return this.mode === 'cluster' ? await this.#clusterPubSubBack(names) : await this.#sentinelPubSubBack(names)
    } catch (err) {
      this.#recoveryRefused(err)
      return false
    }
  }

  /**
   * Cluster: a shard channel whose slot moved to another master is subscribed again there by
   * node-redis; what its new master published before that never reached this node. So a move is a
   * fault: every replica is read again once the probe finds the subscription on the new master.
   * node-redis makes a master's pub/sub client when it first needs one: each is watched as it is
   * seen (at each heartbeat, after each subscribe, in the probe).
   */
  #watchPubSub (): void {
    if (this.mode !== 'cluster') return
    const slots = (this.#cmd as unknown as { _slots?: ClusterPubSub })._slots
    for (const m of slots?.masters ?? []) {
      const client = m.pubSub?.client
      if (client === undefined || this.#watched.has(client)) continue
      this.#watched.add(client)
      client.on('sharded-channel-moved', (channel) => {
        this.#moved.add(String(channel))
        this.#fault('a slot moved')
      })
    }
  }

  readonly #watched = new WeakSet<object>()
  /** Shard channels whose slot moved: their new subscription is confirmed before the catch-up. */
  readonly #moved = new Set<string>()
  /** Shard channels node-redis failed to move: subscribed again from scratch. */
  readonly #resubscribe = new Set<string>()

  async #clusterPubSubBack (names: string[]): Promise<boolean> {
    const slots = (this.#cmd as unknown as { _slots: ClusterPubSub })._slots
    this.#watchPubSub()
    const noop = (_msg: Buffer, _channel: Buffer): void => {}
    for (const name of [...this.#resubscribe]) {
      // whatever a client still lists for it is not subscribed in Redis
      await within(this.#timeout, this.#sub.sUnsubscribe(name, this.#onMessage, true)).catch(() => {})
      this.#resubscribe.delete(name)
    }
    let back = true
    // the channel's master's shard pub/sub connection (Redis 7), or the one pub/sub connection
    const missing: string[] = []
    const clients = await within(this.#timeout, Promise.all(names.map((name) => this.#sharded ? slots.getShardedPubSubClient(name) : slots.getPubSubClient())))
    for (const [i, client] of clients.entries()) {
      if (!client.isReady) back = false
      else if (!client.getPubSubListeners(this.#sharded ? 'SHARDED' : 'CHANNELS').has(names[i]!)) missing.push(names[i]!)
    }
    if (this.#controlSubscribed) {
      const client = await within(this.#timeout, slots.getPubSubClient())
      if (!client.isReady) back = false
      else if (!client.getPubSubListeners('CHANNELS').has(CONTROL)) await within(this.#timeout, this.#sub.subscribe(CONTROL, this.#onControl))
    }
    for (const name of missing) {
      this.#channelWarn({ node: this.nodeId, channel: name }, 'redis pub/sub lost a subscription: subscribing again')
      await this.#subscribe(name)
    }
    if (!back || missing.length > 0) return false
    // a moved channel's SSUBSCRIBE on its new master may not be answered yet (node-redis lists it
    // first): a subscription of the same slot made and ended here is answered after it
    const held = this.#moved.size > 0 ? new Set(names) : null
    for (const name of [...this.#moved]) {
      if (held!.has(name)) {
        // a new name each time: a barrier whose subscribe timed out and was answered later stays
        // listed, and a subscribe of a listed channel sends nothing (no barrier at all)
        const barrier = name.slice(0, -1) + 'q' + String(++this.#barriers)
        await within(this.#timeout, this.#sub.sSubscribe(barrier, noop, true))
        await within(this.#timeout, this.#sub.sUnsubscribe(barrier, noop, true)).catch(() => {})
      }
      this.#moved.delete(name)
    }
    return true
  }

  /**
   * Sentinel: one pub/sub connection carries everything. Each subscription is made again (a no-op
   * where the client still holds it), then a fresh one is made and ended: its answer comes after
   * every command sent before it on that connection, and a connection that is not up refuses it.
   */
  async #sentinelPubSubBack (names: string[]): Promise<boolean> {
    const sub = this.#sub
    const barrier = `pk:{${hashTag(this.nodeId)}}:p${++this.#barriers}`
    const noop = (_msg: Buffer, _channel: Buffer): void => {}
    if (this.#sharded) {
      if (names.length > 0) await within(this.#timeout, sub.sSubscribe(names, this.#onMessage, true))
      await within(this.#timeout, sub.sSubscribe(barrier, noop, true))
      await within(this.#timeout, sub.sUnsubscribe(barrier, noop, true)).catch(() => {})
    } else {
      if (names.length > 0) await within(this.#timeout, sub.subscribe(names, this.#onMessage, true))
      await within(this.#timeout, sub.subscribe(barrier, noop, true))
      await within(this.#timeout, sub.unsubscribe(barrier, noop, true)).catch(() => {})
    }
    if (this.#controlSubscribed) await within(this.#timeout, sub.subscribe(CONTROL, this.#onControl))
    return true
  }

  #barriers = 0

  /** A replica's channel (pk:{T}:c) subscribed, shard or plain as the store is; bounded like every command. */
  async #subscribe (name: string): Promise<void> {
    if (this.#sharded) await within(this.#timeout, this.#sub.sSubscribe(name, this.#onMessage, true))
    else await within(this.#timeout, this.#sub.subscribe(name, this.#onMessage, true))
  }

  /** Every master answers PING (cluster: and covers all slots). Records the cluster's state. */
  async #reachable (): Promise<boolean> {
    if (this.mode !== 'cluster') {
      try {
        await this.#send(undefined, ['PING'])
        return true
      } catch {
        return false
      }
    }
    const view = this.#cmd as unknown as ClusterView
    let reachable = 0
    let slots = 0
    let ok = false
    const masters = view.masters
    // a dead master's client keeps reconnecting (its connect never settles): each ask is bounded
    await Promise.all(masters.map(async (m) => {
      try {
        const info = String(await within(this.#timeout, (async () => await (await view.nodeClient(m)).sendCommand(['CLUSTER', 'INFO']))()))
        reachable++
        const s = /cluster_slots_ok:(\d+)/.exec(info)
        if (s !== null) slots = Math.max(slots, Number(s[1]))
        if (info.includes('cluster_state:ok')) ok = true
      } catch {}
    }))
    const names = masters.map((m) => m.address).sort().join(',')
    if (this.#masters !== '' && names !== this.#masters && masters.length > 0) {
      this.#failovers++
      this.#log?.warn({ node: this.nodeId, was: this.#masters, now: names }, 'redis cluster failover: masters changed')
    }
    if (masters.length > 0) this.#masters = names
    this.#cluster = { masters: masters.length, reachable, slots }
    if (ok && reachable < masters.length) {
      // the cluster moved on (a replica was promoted) before node-redis noticed: refresh its map
      const slotsObj = (this.#cmd as unknown as { _slots?: { rediscover?: (c?: unknown) => Promise<void> } })._slots
      await within(this.#timeout, slotsObj?.rediscover?.() ?? Promise.resolve()).catch(() => {})
    }
    return ok && reachable === masters.length && slots === 16384
  }

  async #cmdUp (): Promise<boolean> {
    try {
      if (!this.#scriptsReady) await this.#loadScripts()
      this.#cmdReady = true
      // a cluster's masters and slots, for /status from the start
      if (this.mode === 'cluster' && this.#cluster === null) await this.#reachable()
      await this.#heartbeat()
      await this.#loadRevocations()
      // the store may have lost our counts (restart, sweep): write them all again, users' too
      for (const key of this.#counts.keys()) this.#dirty.add(key)
      for (const [user] of this.#core.usersHeld()) this.#usersDirty.add(user)
      this.#scheduleFlush()
      this.#syncAll()
      this.#checkUp()
      return true
    } catch (err) {
      // the probe tries again (a reconnect too, standalone)
      if (isFault(err)) this.#fault(`a command failed: ${errorText(err)}`)
      return false
    }
  }

  /**
   * The revocation channel (pk:ctl), subscribed once: node-redis subscribes it again itself after a
   * reconnect. A node that may not subscribe to it (a Redis user allowed `&pk:*:c` alone) would
   * never hear a revocation made on another node: where tokens are checked, it stays down
   * (#revocationsBehind, cleared by #loadRevocations only once subscribed) and says why in an error
   * line, and each tick tries again.
   */
  async #subscribeControl (): Promise<void> {
    if (this.#controlSubscribed) return
    this.#controlSubscribed = true
    try {
      await this.#sub.subscribe(CONTROL, this.#onControl)
    } catch (err) {
      this.#controlSubscribed = false
      // a read of the revocations that ended while this was under way took it for subscribed
      if (this.#core.revocations !== null) this.#revocationsBehind = true
      const m = errorText(err)
      const log = this.#log
      if (!/\bNOPERM\b/.test(m) || this.#core.revocations === null || this.#stopped || log === null || !this.#refusalDue('control')) return
      ;(log.error ?? log.warn).call(log, { node: this.nodeId, mode: this.mode, redisError: m }, 'the Redis user may not subscribe to the revocation channel pk:ctl: revocations made on other nodes would not be heard, so this node stays down (503) until it may. Allow the channels &pk:* (docs/redis.md, Access)')
    }
  }

  async #subUp (): Promise<void> {
    this.#subReady = true
    await this.#subscribeControl()
    // revocations broadcast while this connection was down
    if (this.#cmdReady) await this.#loadRevocations().catch(() => {})
    this.#syncAll()
    this.#checkUp()
  }

  // ---- revocations ------------------------------------------------------------------------------

  /**
   * Revoke on every node: applied here first, remembered in Redis (a node that missed the
   * broadcast or starts later applies it when it connects), broadcast on the control channel; each
   * other node ends its own subscribers and adds its count to a reply list. PUBLISH says how many
   * heard it; the answer is complete once they and every live node answered.
   */
  async revoke (kind: 'sub' | 'jti', value: string, at: number, until: number): Promise<{ ended: number, complete: boolean }> {
    if (!this.#cmdReady) throw new StoreUnavailableError()
    const local = this.#core.revokeLocal(kind, value, at, until)
    const id = `${this.nodeId}:${++this.#revSeq}`
    const reply = 'pk:rv:' + id
    try {
      // with redisReplicaAck, written on the publishes' connection and answered only once that many
      // replicas have it (the WAIT below), as a publish is: a failover right after cannot lose it
      const acked = this.#core.opts.redisReplicaAck > 0 ? this.#ack : null
      await this.#storeRevocation(kind, value, this.#core.revocations?.held(kind, value) ?? (kind === 'sub' ? at : until), acked ?? this.#cmd)
      // rows are added only here: each revocation also drops the jti rows that have lapsed
      await this.#send(REVOKED_JTI_KEY, ['ZREMRANGEBYSCORE', REVOKED_JTI_KEY, '-inf', String(at - MAX_LEEWAY)])
      const heard = Number(await this.#send(CONTROL, ['PUBLISH', CONTROL, JSON.stringify([id, this.nodeId, kind, value, at, until])]))
      // a cluster's PUBLISH counts the receivers on the node it ran on only: wait for every live node
      const others = this.mode === 'cluster' ? 0 : heard - (this.#controlSubscribed && this.#subReady ? 1 : 0)
      const alive = Number(await this.#send(NODES_KEY, ['ZCOUNT', NODES_KEY, String(Date.now() + this.#clockOffset), '+inf'])) - 1
      const want = Math.max(others, alive)
      const deadline = Date.now() + REVOKE_WAIT_MS
      let counts: string[] = []
      for (;;) {
        counts = (await this.#send(reply, ['LRANGE', reply, '0', '-1'])) as string[]
        if (counts.length >= want || Date.now() >= deadline) break
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      await this.#send(reply, ['DEL', reply])
      if (acked !== null) {
        // fewer replicas in time: 503 (every node heard it; the request may be sent again)
        const need = this.#core.opts.redisReplicaAck
        const n = num(await this.#send(REVOKED_JTI_KEY, ['WAIT', String(need), String(Math.max(1, this.#timeout - 250))], acked, false, this.#timeout))
        if (n < need) throw new Error(`${n} of ${need} replicas acknowledged the revocation`)
      }
      return { ended: local + counts.reduce((a, c) => a + Number(c), 0), complete: counts.length >= want }
    } catch (err) {
      throw new StoreUnavailableError(err)
    }
  }

  /**
   * The store lost everything (a restart without persistence, FLUSHALL: its epoch changed): the
   * revocations this node holds are written to it again, so that a node that starts later refuses
   * them too, and every node is told to read them again (one that started on the emptied store
   * admitted their tokens meanwhile; reading them ends those streams). Each node that holds them
   * does this, so the store gets them back while any node that knew them runs.
   */
  /** A read of the revocations asked for by other nodes' `reread`s, due shortly. */
  #rereadTimer: NodeJS.Timeout | null = null
  /** The store's epoch changed, or it forgot this node, and #restoreRevocations has not yet succeeded since. */
  #restoreDue = false
  /** Which: 'forgotten' writes only where the store holds fewer revocations than this node. */
  #restoreWhy: 'epoch' | 'forgotten' = 'epoch'
  #restoring = false

  /** #restoreRevocations, one at a time, while one is due (from the heartbeat and each tick). */
  #restore (): void {
    if (!this.#restoreDue || this.#restoring || !this.#cmdReady) return
    this.#restoring = true
    this.#restoreDue = false
    // one that fails is tried again in full (its rows merge with what is there)
    this.#restoreRevocations().catch(() => { this.#restoreDue = true; this.#restoreWhy = 'epoch' }).finally(() => { this.#restoring = false })
  }

  async #restoreRevocations (): Promise<void> {
    const revs = this.#core.revocations
    if (revs === null || revs.size === 0) return
    const now = Math.floor(Date.now() / 1000)
    const rows = [...revs.inForce(now)]
    // the store forgot this node, its epoch unchanged (a stall past the heartbeat, a store back
    // from an older snapshot, one wiped within its epoch's second): written again only where the
    // store holds fewer revocations than this node
    if (this.#restoreWhy === 'forgotten') {
      const held = Number(await this.#send(REVOKED_JTI_KEY, ['ZCARD', REVOKED_JTI_KEY])) + Number(await this.#send(REVOKED_SUB_KEY, ['HLEN', REVOKED_SUB_KEY]))
      if (held >= rows.length) return
    }
    // merged with what is there (a row another node wrote since is never weakened)
    for (let i = 0; i < rows.length; i += 100) {
      await Promise.all(rows.slice(i, i + 100).map(async ([kind, value, at]) => await this.#storeRevocation(kind, value, at)))
    }
    if (rows.length > 0) {
      await this.#send(CONTROL, ['PUBLISH', CONTROL, JSON.stringify(['reread', this.nodeId])])
      this.#log?.warn({ node: this.nodeId, revocations: rows.length }, 'the redis store lost its data: the revocations this node holds were written to it again')
    }
  }

  /**
   * One revocation's row as this node holds it now (`held`: a jti's exp, 0 for good; a user's
   * second), merged with the row there (lib/redis-lua.ts REVOKE): two nodes revoking the same
   * token or user at once leave the stronger.
   */
  async #storeRevocation (kind: 'sub' | 'jti', value: string, held: number, conn: Conn = this.#cmd): Promise<void> {
    await this.#call(conn, 'REVOKE', [REVOKED_JTI_KEY, REVOKED_SUB_KEY], [kind, value, String(held)])
  }

  async #control (msg: string): Promise<void> {
    let e: unknown
    try { e = JSON.parse(msg) } catch { return }
    if (Array.isArray(e) && e.length === 2 && e[0] === 'reread') {
      // every node that held revocations says so: one read for the lot (250 ms)
      if (e[1] !== this.nodeId && this.#rereadTimer === null) {
        this.#rereadTimer = setTimeout(() => {
          this.#rereadTimer = null
          this.#loadRevocations().catch(() => {})
        }, 250)
        this.#rereadTimer.unref()
      }
      return
    }
    if (!Array.isArray(e) || e.length !== 6) return
    const [id, origin, kind, value, at, until] = e as [string, string, 'sub' | 'jti', string, number, number]
    if (origin === this.nodeId || (kind !== 'sub' && kind !== 'jti')) return
    const n = this.#core.revokeLocal(kind, String(value), Number(at), Number(until))
    const reply = 'pk:rv:' + String(id)
    await this.#send(reply, ['RPUSH', reply, String(n)]).catch(() => {})
    await this.#send(reply, ['EXPIRE', reply, '30']).catch(() => {})
  }

  /**
   * The revocations still in force, applied here: recorded, and the live subscribers they cover
   * ended. Run at every (re)connect, so a node that missed a broadcast, or starts later, catches up.
   */
  async #loadRevocations (): Promise<void> {
    const now = Math.floor(Date.now() / 1000)
    // a jti row lapses MAX_LEEWAY seconds past its exp (its token is accepted until exp plus the
    // leeway: the most any node may have)
    const lapsed = String(now - MAX_LEEWAY)
    await this.#send(REVOKED_JTI_KEY, ['ZREMRANGEBYSCORE', REVOKED_JTI_KEY, '-inf', lapsed])
    const read: Array<['sub' | 'jti', string, number, number]> = []
    for (const [jti, exp] of scored(await this.#send(REVOKED_JTI_KEY, ['ZRANGEBYSCORE', REVOKED_JTI_KEY, '(' + lapsed, '+inf', 'WITHSCORES']))) {
      read.push(['jti', jti, 0, exp === Infinity ? 0 : Math.max(1, Math.floor(exp))])
    }
    // (HKEYS and HMGET: a map reply would be a plain object, where a user named __proto__ is lost)
    const users = ((await this.#send(REVOKED_SUB_KEY, ['HKEYS', REVOKED_SUB_KEY])) as unknown[]).map(str)
    for (let i = 0; i < users.length; i += 1000) {
      const batch = users.slice(i, i + 1000)
      const ats = (await this.#send(REVOKED_SUB_KEY, ['HMGET', REVOKED_SUB_KEY, ...batch])) as unknown[]
      batch.forEach((sub, j) => { if (ats[j] !== null && ats[j] !== undefined) read.push(['sub', sub, Number(str(ats[j])), 0]) })
    }
    // rows of earlier builds ([kind, value, at, until] in pk:revoked, a user's scored 30 days past
    // its revocation there): read whatever their score, and moved into the rows above, merged
    const legacy: Array<['sub' | 'jti', string, number, number]> = []
    for (const row of (await this.#send(LEGACY_REVOKED_KEY, ['ZRANGE', LEGACY_REVOKED_KEY, '0', '-1'])) as unknown[]) {
      let r: unknown
      try { r = JSON.parse(str(row)) } catch { continue }
      if (!Array.isArray(r) || r.length !== 4) continue
      const [kind, value, at, until] = r as ['sub' | 'jti', string, number, number]
      if (typeof value !== 'string') continue
      if (kind === 'sub') legacy.push([kind, value, Number(at), 0])
      else if (kind === 'jti' && Number(until) + MAX_LEEWAY > now) legacy.push([kind, value, Number(at), Number(until)])
    }
    for (const [kind, value, at, until] of legacy) await this.#storeRevocation(kind, value, kind === 'sub' ? at : until)
    read.push(...legacy)
    // recorded, and the subscribers they cover ended, in one pass over the table
    this.#core.revokeAll(read)
    // (a broadcast between a read and the control channel's subscription is read again by
    // #subUp, which reads once subscribed. Until then, where tokens are checked, the node is
    // behind: a user whose ACL refuses that channel would hear no revocation, #subscribeControl)
    this.#revocationsBehind = this.#core.revocations !== null && !this.#controlSubscribed
  }

  async #loadScripts (): Promise<void> {
    const info = String(await this.#send(undefined, ['INFO', 'server']))
    const m = /redis_version:(\d+)/.exec(info)
    this.#sharded = m !== null && Number(m[1]) >= 7
    // known before the node is up: at each (re)connect
    this.#evictionCheckedAt = -Infinity
    await this.#checkEviction()
    this.#scriptsReady = true
  }

  /**
   * EVALSHA routed by the first key; EVAL (which also caches it there) where that Redis does not
   * know the script yet: a cluster's every master, a restarted or promoted Redis.
   */
  async #call (conn: Conn, script: keyof typeof SHAS & keyof typeof LUA, keys: string[], args: Array<string | Buffer>): Promise<unknown> {
    this.#inflight++
    try {
      try {
        return await this.#send(keys[0], ['EVALSHA', SHAS[script]!, String(keys.length), ...keys, ...args], conn)
      } catch (err) {
        if (!String((err as Error).message).startsWith('NOSCRIPT')) throw err
        return await this.#send(keys[0], ['EVAL', LUA[script], String(keys.length), ...keys, ...args], conn)
      }
    } catch (err) {
      if (isFault(err)) this.#fault(`a command failed: ${errorText(err)}`)
      throw err
    } finally {
      this.#inflight--
    }
  }

  /** Reads the eviction policy of the Redis that holds the revocations (#evictable), where tokens are checked. */
  async #checkEviction (): Promise<void> {
    if (this.#core.revocations === null) return
    const now = performance.now()
    if (now - this.#evictionCheckedAt < EVICTION_CHECK_MS) return
    this.#evictionCheckedAt = now
    // (routed by the key: on a cluster, the master of the revocations' slot)
    const info = str(await this.#send(REVOKED_JTI_KEY, ['INFO', 'memory']))
    const policy = /maxmemory_policy:(\S+)/.exec(info)?.[1] ?? 'noeviction'
    const was = this.#evictable
    this.#evictable = policy.startsWith('allkeys')
    if (this.#evictable) {
      const log = this.#log
      if (log !== null && this.#refusalDue('eviction')) (log.error ?? log.warn).call(log, { node: this.nodeId, mode: this.mode, maxmemoryPolicy: policy }, `the Redis that holds the revocations evicts any key (maxmemory-policy ${policy}): a revocation could vanish and a revoked token be admitted, so this node stays down (503) until the policy spares keys without a TTL (noeviction, volatile-*; docs/redis.md)`)
    }
    if (was !== this.#evictable) this.#checkUp()
  }

  async #heartbeat (): Promise<void> {
    // (a read that fails is tried again at the next heartbeat; the heartbeat itself goes on)
    await this.#checkEviction().catch(() => { this.#evictionCheckedAt = -Infinity })
    const sent = Date.now()
    const r = await this.#call(this.#cmd, 'HEARTBEAT', [NODES_KEY, EPOCH_KEY], [this.nodeId, String(NODE_LIFE_MS)]) as unknown[]
    const since = num(r[3]) || 0
    // the store lost everything: its revocations are written again, apart from the heartbeat (a
    // write that fails is tried again at each tick, and the rest of the heartbeat still runs).
    // Seen by the epoch, or by the store having forgotten this node since its last heartbeat: a
    // store wiped within the second its epoch was made makes the same epoch again. Then written
    // only where the store holds fewer than this node (#restoreRevocations): a node swept after a
    // stall finds them there and writes nothing; a store back from an older snapshot gets them
    if (this.#epochRead && since !== this.#storeSince) {
      this.#restoreDue = true
      this.#restoreWhy = 'epoch'
    } else if (this.#epochRead && num(r[0]) === 0 && !this.#restoreDue) {
      this.#restoreDue = true
      this.#restoreWhy = 'forgotten'
    }
    this.#storeSince = since
    this.#epochRead = true
    this.#restore()
    this.#clockOffset = num(r[1]) - Math.round((sent + Date.now()) / 2)
    if (num(r[0]) === 0) {
      for (const key of this.#counts.keys()) this.#dirty.add(key)
      for (const [user] of this.#core.usersHeld()) this.#usersRejoin.add(user)
      this.#scheduleFlush()
    }
    const dead = (r[2] as unknown[]).map(String).filter((d) => d !== this.nodeId)
    for (const d of dead) this.#dead.add(d)
    if (dead.length > 0 && !this.#sweeping) {
      this.#sweeping = true
      try {
        await this.#sweep(dead)
        // kept (a count the sweep missed must not count again), but bounded: the oldest go first
        for (const d of this.#dead) {
          if (this.#dead.size <= MAX_DEAD) break
          this.#dead.delete(d)
        }
      } finally {
        this.#sweeping = false
      }
    }
    // the deployment's figures for /status: each node's subscriber total, summed over live nodes
    await this.#send(NODE_TOTALS, ['HSET', NODE_TOTALS, this.nodeId, String(this.#core.table.size)])
    const nodes = (await this.#send(NODES_KEY, ['ZRANGEBYSCORE', NODES_KEY, String(Date.now() + this.#clockOffset), '+inf'])) as string[]
    const totals = nodes.length === 0 ? [] : (await this.#send(NODE_TOTALS, ['HMGET', NODE_TOTALS, ...nodes])) as Array<string | null>
    this.#deployment = { nodes: nodes.length, subscribers: totals.reduce((a, v) => a + Number(v ?? 0), 0) }
    for (const n of nodes) this.#dead.delete(n)
    if (Math.random() < 0.05) {
      // forget the totals of nodes gone for good
      const all = (await this.#send(NODE_TOTALS, ['HKEYS', NODE_TOTALS])) as string[]
      const gone = all.filter((id) => !nodes.includes(id))
      if (gone.length > 0) await this.#send(NODE_TOTALS, ['HDEL', NODE_TOTALS, ...gone])
    }
  }

  /** COUNT's keys: the counts, the record, the buffer (one slot). */
  #countKeys (key: string): string[] {
    return [channelKey(key, 's'), channelKey(key, 'm'), channelKey(key, 'b')]
  }

  #ttlArg (): string {
    return String(this.#core.opts.messageTimeout * 1000)
  }

  /** Remove dead nodes' counts from every channel they counted in (one key per command per channel). */
  async #sweep (dead: string[]): Promise<void> {
    for (const d of dead) {
      const set = 'pk:n:' + d
      const channels = (await this.#send(set, ['SMEMBERS', set])) as string[]
      for (let i = 0; i < channels.length; i += 256) {
        // (as the node would have, had it left: the record lives as its messages once nobody subscribes)
        await Promise.all(channels.slice(i, i + 256).map(async (c) => {
          await this.#call(this.#cmd, 'COUNT', this.#countKeys(c), [d, '0', '0', String(LINGER_MS), this.#ttlArg()])
        }))
      }
      await this.#send(set, ['DEL', set])
      // its users' counts (maxSubscribersPerUser)
      const userSet = 'pk:nu:' + d
      const users = (await this.#send(userSet, ['SMEMBERS', userSet])) as string[]
      for (let i = 0; i < users.length; i += 256) {
        await Promise.all(users.slice(i, i + 256).map(async (u) => { await this.#send(userKey(u), ['HDEL', userKey(u), d]) }))
      }
      await this.#send(userSet, ['DEL', userSet])
      await this.#send(NODES_KEY, ['ZREM', NODES_KEY, d])
    }
  }

  /** Leaving for good: this node's counts leave every channel, and the node leaves the set. */
  async #leave (): Promise<void> {
    await this.#sweep([this.nodeId])
  }

  /** Subscribers and live nodes of the whole deployment, as of the last heartbeat (/status). */
  deployment (): { nodes: number, subscribers: number } | null {
    return this.#deployment
  }

  tick (): void {
    if (this.#cmdReady && !this.#faulty) this.#heartbeat().catch(() => {})
    this.#restore()
    // the revocation channel refused before (#subscribeControl): tried again, then read
    if (!this.#controlSubscribed && this.#subReady && this.#cmdReady && this.#core.revocations !== null) {
      void this.#subscribeControl().then(async () => { if (this.#controlSubscribed) await this.#loadRevocations() }).catch(() => {})
    }
    this.#watchPubSub()
    if (this.#warned.size > 0) {
      const now = Date.now()
      for (const [msg, w] of this.#warned) {
        if (now - w.since < CHANNEL_WARN_MS) continue
        this.#warned.delete(msg)
        if (w.left > 0) this.#log?.warn({ node: this.nodeId, channels: w.left }, `${msg}: ${w.left} more channels in ${CHANNEL_WARN_MS / 1000} s, not logged one by one`)
      }
    }
    this.#checkUp()
    // replicas nobody here needs any more: unsubscribe, drop the copy
    const now = Date.now()
    const up = this.#cmdReady && this.#subReady && this.#scriptsReady && !this.#faulty && !this.#syncPending
    for (const r of this.#replicas.values()) {
      if (r.idleSince > 0 && now - r.idleSince > LINGER_MS && !r.busy && r.waiters.length === 0 &&
        !this.#counts.has(r.key) && this.#core.localSubscribers(r.key) === 0) this.#detach(r)
      // a live replica whose read Redis answered with an error (a key of the wrong type; a script's
      // write refused under maxmemory) holds what arrives for its subscribers: read it again, once a tick
      else if (up && r.state === LIVE && r.stale && !r.busy) this.#sync(r)
    }
  }

  /**
   * A subscriber still waiting for the store past twice redisCommandTimeout (a count write and a
   * replica load, each with its own deadline) gets 503: a bounded answer. In registration order, so
   * the first one still in time ends the sweep.
   */
  #expirePending (now: number): void {
    for (const [sub, since] of this.#pending) {
      if (now - since < 2 * this.#timeout) break
      this.#pending.delete(sub)
      if ((sub.flags & F_CLOSED) !== 0) continue
      sub.transport.end(sub, 503)
    }
  }

  /** Sum of the counts of the nodes not known dead (a node that just started counts at once). */
  #sum (h: unknown): { subscribers: number } {
    const list = h as unknown[]
    let n = 0
    for (let i = 0; i + 1 < list.length; i += 2) {
      const node = str(list[i])
      if (node === '~r' || this.#dead.has(node)) continue
      n += num(list[i + 1])
    }
    return { subscribers: n }
  }

  // ---- the Engine interface ---------------------------------------------------------------------

  async publish (key: string, data: Buffer, contentType: string | null, event: string | null, idempotencyKey: string | null = null, requestFingerprint?: string): Promise<PublishResult> {
    return (await this.#publish(key, data, contentType, event, idempotencyKey, requestFingerprint, false))!
  }

  async replay (key: string, idempotencyKey: string, requestFingerprint: string): Promise<PublishResult | null> {
    return await this.#publish(key, EMPTY, null, null, idempotencyKey, requestFingerprint, true)
  }

  /** PUBLISH, or with `replayOnly` only its Idempotency-Key check (null: not seen, nothing published). */
  async #publish (key: string, data: Buffer, contentType: string | null, event: string | null, idempotencyKey: string | null, requestFingerprint: string | undefined, replayOnly: boolean): Promise<PublishResult | null> {
    if (!this.up) throw new StoreUnavailableError()
    // elapsed time from the monotonic clock: a wall clock stepped back must not lengthen the WAIT
    const started = performance.now()
    const o = this.#core.opts
    const m = channelKey(key, 'm')
    // a publish Redis only gets to past this (its clock) is refused there: the node answered 503
    // by then, so it must not be published later behind the publisher's back
    const deadline = Date.now() + this.#clockOffset + this.#timeout - Math.min(200, this.#timeout >> 2)
    const ack = o.redisReplicaAck > 0 && this.#ack !== null
    const conn = ack ? this.#ack! : this.#cmd
    let r: unknown[]
    try {
      r = await this.#call(conn, 'PUBLISH', [m, channelKey(key, 'b'), channelKey(key, 's'), idempotencyKey === null ? m : `${channelKey(key, 'i')}:${idempotencyKey}`, channelKey(key, 'd'),
        idempotencyKey === null ? m : `${channelKey(key, 'f')}:${idempotencyKey}`], [
        data, contentType ?? '', contentType === null ? '0' : '1', event ?? '', event === null ? '0' : '1',
        String(o.bufferLength), String(o.messageTimeout * 1000), channelKey(key, 'c'), this.#sharded ? '1' : '0',
        String(deadline), String(o.idempotencyWindow * 1000), ack ? '1' : '0',
        idempotencyKey === null ? '' : requestFingerprint ?? fingerprint(data, contentType, event), replayOnly ? '1' : '0'
      ]) as unknown[]
    } catch (err) {
      throw new StoreUnavailableError(err)
    }
    if (str(r[0]) === 'late') throw new StoreUnavailableError()
    if (str(r[0]) === 'new') return null
    const conflict = str(r[0]) === 'conflict'
    const dup = conflict || str(r[0]) === 'dup'
    if (ack) {
      // acknowledged only once N replicas have it (a replayed answer too: the script wrote after
      // the original, and replication keeps order), so a failover cannot lose it
      // The WAIT gets what is left of the publish's redisCommandTimeout, not a whole one more: a
      // script answered late (a master resumed after a stop) followed by a full WAIT while the
      // replicas catch up would answer the publisher after nearly twice the timeout.
      const left = Math.min(this.#timeout, Math.ceil(this.#timeout - (performance.now() - started)))
      let acked = 0
      try {
        // (a WAIT past its deadline means replicas lag, not that the store is away: no fault)
        acked = num(await this.#send(m, ['WAIT', String(o.redisReplicaAck), String(Math.max(1, left - 250))], conn, false, Math.max(1, left)))
      } catch (err) {
        throw new StoreUnavailableError(err)
      }
      if (acked < o.redisReplicaAck) throw new StoreUnavailableError(new Error(`${acked} of ${o.redisReplicaAck} replicas acknowledged`))
    }
    if (dup) {
      const info = { ...this.#sum(r[2]), messages: num(r[3]), requested: num(r[4]), lastMessageId: str(r[1]) }
      if (conflict) return { status: info.subscribers > 0 ? 201 : 202, info, conflict: true }
      return { status: info.subscribers > 0 ? 201 : 202, info, replayed: true }
    }
    const info = this.#toInfo(r)
    this.#core.stats.published++
    return { status: info.subscribers > 0 ? 201 : 202, info }
  }

  async info (key: string): Promise<ChannelInfo | null> {
    if (!this.up) throw new StoreUnavailableError()
    try {
      const r = await this.#call(this.#cmd, 'INFO', this.#keys(key), [String(this.#core.opts.messageTimeout * 1000)])
      if (r === null) return null
      const info = this.#toInfo(r as unknown[])
      return info.subscribers === 0 && info.messages === 0 ? null : info
    } catch (err) {
      throw new StoreUnavailableError(err)
    }
  }

  async delete (key: string): Promise<ChannelInfo | null> {
    if (!this.up) throw new StoreUnavailableError()
    try {
      const r = await this.#call(this.#cmd, 'DELETE', [...this.#keys(key), channelKey(key, 'x'), channelKey(key, 'd')],
        [String(this.#core.opts.messageTimeout * 1000), channelKey(key, 'c'), this.#sharded ? '1' : '0'])
      return r === null ? null : this.#toInfo(r as unknown[])
    } catch (err) {
      throw new StoreUnavailableError(err)
    }
  }

  #toInfo (r: unknown[]): ChannelInfo {
    const t = num(r[3])
    return { ...this.#sum(r[0]), messages: num(r[1]), requested: num(r[2]), lastMessageId: t === 0 ? '0:0' : formatId(t, num(r[4])) }
  }

  /**
   * A multiplexed long-poll with a channel whose replica here is not loaded (or is being read
   * again) is not answered before it is counted: that channel's messages in the store are not
   * here yet, and a message of another channel answered first would put the cursor past them.
   * It is answered once the replicas are filled (registered).
   */
  answersEarly (sub: Subscriber): boolean {
    const chans = sub.channels
    if (chans.length === 1) return true
    for (let k = 0; k < chans.length; k++) {
      const r = this.#replicas.get(chans[k]!.key)
      if (r === undefined || r.state !== LIVE || r.busy || r.stale) return false
    }
    return true
  }

  reclaim (n: number): number {
    let freed = 0
    for (const r of this.#replicas.values()) {
      if (freed >= n) break
      if (r.idleSince === 0 || r.busy || r.waiters.length > 0 || this.#core.localSubscribers(r.key) > 0) continue
      const had = this.#core.registry.get(r.key) !== undefined
      this.#detach(r)
      if (had && this.#core.registry.get(r.key) === undefined) freed++
    }
    return freed
  }

  registered (sub: Subscriber): boolean {
    let loading = false
    for (let k = 0; k < sub.channels.length; k++) {
      const r = this.#replicas.get(sub.channels[k]!.key)
      if (r === undefined || r.state !== LIVE || r.busy || r.stale) loading = true
    }
    // a long-poll that the loaded replica may answer at once is counted only if it parks: no
    // deployment-wide count flickers up for a poll that was never waiting
    const defer = loading && sub.transport.answersAtOnce === true
    for (let k = 0; k < sub.channels.length; k++) {
      const key = sub.channels[k]!.key
      if (!defer) this.#counts.set(key, (this.#counts.get(key) ?? 0) + 1)
      this.#dirty.add(key)
      this.#arrived.add(key)
      let r = this.#replicas.get(key)
      if (r === undefined) {
        r = new Replica(key)
        this.#replicas.set(key, r)
      }
      r.idleSince = 0
      if (r.state !== LIVE || r.busy || r.stale) {
        if (!r.waiters.includes(sub)) r.waiters.push(sub)
        this.#sync(r)
      }
    }
    // the replica is filled before the subscriber is served: live fan-out skips it meanwhile
    if (loading && this.#core.pauseLive(sub)) this.#flagged.add(sub)
    this.#pending.set(sub, Date.now())
    if (defer) {
      this.#deferred.add(sub)
    } else {
      this.#waiting.push(sub)
      this.#uncounted.add(sub)
    }
    this.#scheduleFlush()
    return false
  }

  /** A deferred subscriber's replicas are loaded and it found nothing: count it now. */
  #countLate (sub: Subscriber): void {
    this.#deferred.delete(sub)
    for (let k = 0; k < sub.channels.length; k++) {
      const key = sub.channels[k]!.key
      this.#counts.set(key, (this.#counts.get(key) ?? 0) + 1)
      this.#dirty.add(key)
      // a poll answered at once may have marked the replica idle meanwhile: this one needs it
      const r = this.#replicas.get(key)
      if (r !== undefined) r.idleSince = 0
    }
    this.#waiting.push(sub)
    this.#uncounted.add(sub)
    this.#scheduleFlush()
  }

  unregistered (sub: Subscriber): void {
    const now = Date.now()
    this.#pending.delete(sub)
    const counted = !this.#deferred.has(sub)
    this.#deferred.delete(sub)
    for (let k = 0; k < sub.channels.length; k++) {
      const key = sub.channels[k]!.key
      const n = (this.#counts.get(key) ?? 0) - (counted ? 1 : 0)
      if (n > 0) {
        this.#counts.set(key, n)
      } else {
        this.#counts.delete(key)
        const r = this.#replicas.get(key)
        if (r !== undefined) r.idleSince = now
      }
      if (counted) this.#dirty.add(key)
    }
    this.#scheduleFlush()
  }

  totals (): null {
    return null
  }

  // ---- counts -------------------------------------------------------------------------------------

  #scheduleFlush (): void {
    if (this.#flushScheduled) return
    this.#flushScheduled = true
    setImmediate(flushCounts, this)
  }

  /**
   * One write per changed channel per event-loop turn, with the absolute count; the subscribers
   * registered in that turn count once it is acknowledged. While Redis is away they wait; the
   * reconnect flushes again.
   */
  async flush (): Promise<void> {
    this.#flushScheduled = false
    if (!this.#cmdReady || !this.#scriptsReady || this.#flushing) return
    if (this.#dirty.size === 0 && this.#waiting.length === 0 && this.#usersDirty.size === 0 && this.#usersRejoin.size === 0) return
    this.#flushing = true
    const keys = [...this.#dirty]
    const arrived = this.#arrived
    const subs = this.#waiting
    const usersDirty = this.#usersDirty
    const rejoin = this.#usersRejoin
    this.#dirty = new Set()
    this.#arrived = new Set()
    this.#waiting = []
    this.#usersDirty = new Set()
    this.#usersRejoin = new Set()
    const nodeSet = 'pk:n:' + this.nodeId
    const counted: string[] = []
    const gone: string[] = []
    for (const key of keys) ((this.#counts.get(key) ?? 0) > 0 ? counted : gone).push(key)
    const users = this.#userAsks(subs, usersDirty, rejoin)
    const userSet = 'pk:nu:' + this.nodeId
    const usersHeld: string[] = []
    const usersGone: string[] = []
    for (const [user, ask] of users) (ask.n > 0 ? usersHeld : usersGone).push(user)
    const limit = String(this.#core.opts.maxSubscribersPerUser)
    let granted: unknown[]
    try {
      // the channels (and users) this node counts in, for sweeping its counts if it dies (keys of
      // its own): sent before the counts, so that no count of this node is in Redis without them
      // (a node that died between the two left a count no sweep found: its channel's record held
      // a day, its user's slots held while any node writes there); taken out only once the counts
      // are 0. One connection runs them in the order sent; on a cluster a set's shard is not the
      // counts', so the sets are awaited first there.
      const named = counted.length > 0 ? this.#send(nodeSet, ['SADD', nodeSet, ...counted]) : null
      const namedUsers = usersHeld.length > 0 ? this.#send(userSet, ['SADD', userSet, ...usersHeld]) : null
      if (this.mode === 'cluster') await Promise.all([named, namedUsers])
      const asked = Promise.all([...users].map(async ([user, ask]) => await this.#call(this.#cmd, 'USER', [userKey(user)],
        [this.nodeId, String(ask.n), String(ask.subs.length), limit])))
      await Promise.all([named, namedUsers, asked, ...keys.map(async (key) => await this.#call(this.#cmd, 'COUNT', this.#countKeys(key),
        [this.nodeId, String(this.#counts.get(key) ?? 0), arrived.has(key) ? '1' : '0', String(LINGER_MS), this.#ttlArg()]))])
      granted = await asked
      if (gone.length > 0) await this.#send(nodeSet, ['SREM', nodeSet, ...gone])
      if (usersGone.length > 0) await this.#send(userSet, ['SREM', userSet, ...usersGone])
    } catch {
      // not written: again after the reconnect (counts are absolute, so a repeat is harmless)
      for (const key of keys) this.#dirty.add(key)
      for (const key of arrived) this.#arrived.add(key)
      for (const user of users.keys()) this.#usersDirty.add(user)
      for (const user of rejoin) this.#usersRejoin.add(user)
      this.#waiting = subs.concat(this.#waiting)
      this.#flushing = false
      return
    }
    this.#flushing = false
    // maxSubscribersPerUser: past the user's room on every node, the last of this flush's are refused
    let refused: Set<Subscriber> | null = null
    let i = 0
    for (const ask of users.values()) {
      const g = num(granted[i++])
      for (let j = Math.max(0, g); j < ask.subs.length; j++) {
        const sub = ask.subs[j]!
        // one asked for again (rejoin), served already: ended here, not in the loop over `subs`
        if (ask.served > 0 && j < ask.served) {
          if ((sub.flags & F_CLOSED) === 0) this.#core.endOverUserLimit(sub)
        } else (refused ??= new Set()).add(sub)
      }
    }
    for (const sub of subs) {
      this.#uncounted.delete(sub)
      if (refused !== null && refused.has(sub)) {
        if ((sub.flags & F_CLOSED) !== 0) continue
        this.#pending.delete(sub)
        this.#flagged.delete(sub)
        this.#core.endOverUserLimit(sub)
      } else this.#release(sub)
    }
    if (this.#dirty.size > 0 || this.#waiting.length > 0 || this.#usersDirty.size > 0 || this.#usersRejoin.size > 0) this.#scheduleFlush()
  }

  /**
   * maxSubscribersPerUser, for a flush: per user whose count here changed or who has subscribers in
   * it, this node's count now and those subscribers (in the order they came).
   */
  #userAsks (subs: Subscriber[], dirty: Set<string>, rejoin: Set<string>): Map<string, { n: number, subs: Subscriber[], served: number }> {
    const asks = new Map<string, { n: number, subs: Subscriber[], served: number }>()
    if (this.#core.opts.maxSubscribersPerUser <= 0) return asks
    for (const user of dirty) asks.set(user, { n: this.#core.heldBy(user), subs: [], served: 0 })
    if (rejoin.size > 0) {
      // the users' subscribers served here, asked for again as new (first: the ones this flush
      // admits come after them, and the last asked for are the first refused). One scan of the
      // table, only when the store forgot this node.
      for (const user of rejoin) if (!asks.has(user)) asks.set(user, { n: this.#core.heldBy(user), subs: [], served: 0 })
      for (const sub of this.#core.table.subs) {
        if ((sub.flags & F_CLOSED) !== 0 || this.#uncounted.has(sub)) continue
        const user = this.#core.userOf(sub.grant)
        if (user === null || !rejoin.has(user)) continue
        const ask = asks.get(user)!
        ask.subs.push(sub)
        ask.served++
      }
    }
    for (const sub of subs) {
      // (one gone already is no longer in the count: asked for, it could take a grant from one
      // that is still here)
      if ((sub.flags & F_CLOSED) !== 0) continue
      const user = this.#core.userOf(sub.grant)
      if (user === null) continue
      let ask = asks.get(user)
      if (ask === undefined) asks.set(user, ask = { n: this.#core.heldBy(user), subs: [], served: 0 })
      ask.subs.push(sub)
    }
    return asks
  }

  /** maxSubscribersPerUser: the user's subscribers here changed; written at the next flush (USER). */
  usersChanged (user: string): void {
    this.#usersDirty.add(user)
    this.#scheduleFlush()
  }

  /** Counted; serve it once every channel it names has a current replica. */
  #release (sub: Subscriber): void {
    if ((sub.flags & F_CLOSED) !== 0 || this.#uncounted.has(sub)) return
    for (const ch of sub.channels) {
      const r = this.#replicas.get(ch.key)
      if (r !== undefined && r.waiters.includes(sub)) return
    }
    if (this.#deferred.has(sub) && !this.#core.hasNext(sub)) {
      // parks: counted first, served (ready) once Redis acknowledged the count
      this.#countLate(sub)
      return
    }
    this.#pending.delete(sub)
    if (this.#flagged.has(sub)) {
      this.#flagged.delete(sub)
      this.#core.resumeLive(sub)
    }
    sub.transport.ready(sub)
  }

  // ---- replicas -------------------------------------------------------------------------------------

  /**
   * Core.fence: while the node catches up after a fault (not up: the pub/sub connection lost
   * messages, its replicas are being read again), a multiplexed subscriber takes no message from
   * `pos` while the replica of another of its channels is still stale or being read. That
   * channel's messages that arrived meanwhile are not applied yet, and one of a later second
   * served first would put the subscriber's id past them: a long-poll's next poll would skip them,
   * unsignalled. Held (F_HELD) until the node is up again (#checkUp calls fenceMoved), then served
   * from the buffers in id order. Single-channel subscribers are never held, and nothing is while
   * the node is up (one lookup of `up` per multiplexed delivery).
   */
  #fence (sub: Subscriber, pos: number): number {
    if (this.up) return Infinity
    const chans = sub.channels
    for (let k = 0; k < chans.length; k++) {
      if (k === pos) continue
      const r = this.#replicas.get(chans[k]!.key)
      if (r !== undefined && r.state === LIVE && (r.stale || r.busy)) return -Infinity
    }
    return Infinity
  }

  #syncAll (): void {
    // (every replica's re-sync starts, or waits in the load queue, counted in #recovering)
    if (!this.#cmdReady || !this.#subReady || !this.#scriptsReady) return
    this.#syncPending = false
    for (const r of this.#replicas.values()) this.#sync(r)
  }

  /**
   * Bring a replica up to date: subscribe first, then read the buffer (all of it, or after the last
   * id applied), then apply what arrived meanwhile if newer. Safe to call at any time.
   */
  #sync (r: Replica): void {
    if (r.busy || !this.#cmdReady || !this.#subReady || !this.#scriptsReady) return
    if (r.state === LIVE && !r.stale && r.subscribed) return
    r.busy = true
    // a re-read of the record (#reread) is no recovery: the node stays up while it runs
    r.counted = r.state === LIVE && !r.reread
    r.reread = false
    if (r.counted) this.#recovering++
    if (r.state === NEW) r.state = LOADING
    if (this.#loading >= MAX_LOADS) {
      this.#loadQueue.push(r)
      return
    }
    this.#startLoad(r)
  }

  #startLoad (r: Replica): void {
    this.#loading++
    const epoch = this.#epoch
    const done = (): void => {
      r.busy = false
      // (a fault while it ran may have counted it since: #countBusy)
      if (r.counted) {
        r.counted = false
        // the last recovery load ended: the node serves from now, and says so now (not at the
        // next tick), so that an outage that follows at once is one of its own (#lost)
        if (--this.#recovering === 0) this.#checkUp()
      }
      this.#loading--
      const next = this.#loadQueue.shift()
      if (next !== undefined) this.#startLoad(next)
    }
    this.#load(r).then(() => {
      done()
      if (epoch !== this.#epoch || r.again) {
        // a fault (or a flood of held messages, or a record that changed) came while it loaded:
        // what it read may miss some; after a fault the next load is a recovery, whatever asked
        if (epoch !== this.#epoch) r.reread = false
        r.again = false
        if (r.state === LIVE) r.stale = true
        if (this.#replicas.get(r.key) === r) this.#sync(r)
        return
      }
      const waiters = r.waiters
      r.waiters = []
      for (const sub of waiters) this.#release(sub)
    }, (err: unknown) => {
      done()
      // the connection went away mid-way, or the subscribe went unanswered: the probe (or the
      // reconnect) syncs again. Redis answering with an error is no fault: a live replica is read
      // again on the next tick (it stays stale), a new one when a subscriber asks for it again.
      if (isFault(err)) this.#fault(`a command failed: ${errorText(err)}`)
    })
  }

  /**
   * A first load's count of keys its Redis has evicted (INFO stats, since that Redis started; -1:
   * not read) at Redis' second `sec`: returns the latest second by which an eviction seen may have
   * happened, 0 for none. A count that is not the last one read (more evictions, or another master
   * of a cluster) was reached by `sec`; a first count above 0 says nothing of when, so `sec` too.
   */
  #evictionsSeen (count: number, sec: number): number {
    if (count >= 0 && count !== this.#evictedCount) {
      if (count > 0) this.#evictedAt = sec
      this.#evictedCount = count
    }
    return this.#evictedAt
  }

  /** The evicted-key count the last first load read (-1: none yet), and #evictionsSeen's second. */
  #evictedCount = -1
  #evictedAt = 0

  async #load (r: Replica): Promise<void> {
    const key = r.key
    if (!r.subscribed) {
      // bounded like every command: a hung server must not hold the recovery forever
      await this.#subscribe(channelKey(key, 'c'))
      r.subscribed = true
      this.#watchPubSub()
    }
    const live = r.state === LIVE
    // the entries after the last one applied, from the next id that could follow it: an exclusive
    // `(` start would need Redis 6.2, where docs/redis.md promises 6
    const start = live ? `${r.lastTime}-${r.lastTag + 1}` : '-'
    const last = live && r.lastTime > 0 ? `${r.lastTime}-${r.lastTag}` : ''
    const ttl = String(this.#core.opts.messageTimeout * 1000)
    // (a first load asks how many keys that Redis has evicted: see the horizon below)
    const res = await this.#call(this.#bin, 'LOAD', [channelKey(key, 'm'), channelKey(key, 'b'), channelKey(key, 'x'), channelKey(key, 'd')], [ttl, start, last, live ? '' : '1']) as unknown[]
    if (this.#replicas.get(key) !== r) return
    const exists = num(res[0]) === 1
    const lt = num(res[1])
    const lg = num(res[2])
    const gen = str(res[5])
    const tomb = str(res[6])
    const entries = res[7] as Array<[Buffer, Buffer[]]>
    const core = this.#core
    if (live) {
      if (r.gen !== '' && tomb === r.gen) {
        // deleted while we were away
        this.#dropLocal(r, true)
        return
      }
      const genBefore = r.gen
      if ((!exists || gen !== genBefore) && r.pending.length > 0) {
        // the record this node knew is gone: what it holds of it is all it will ever get of it,
        // so that is applied first (and ids go on above it)
        this.#applyHeld(r, genBefore)
        if (this.#replicas.get(key) !== r) return
      }
      const behind = lt < r.lastTime || (lt === r.lastTime && lg < r.lastTag)
      if (!exists) {
        // Redis lost the record (restart without persistence): give it back our last id
        if (r.lastTime > 0) {
          const seeded = await this.#call(this.#cmd, 'SEED', [channelKey(key, 'm'), channelKey(key, 's')], [String(r.lastTime), String(r.lastTag), ttl]) as unknown[]
          if (this.#replicas.get(key) !== r) return
          if (num(seeded[1]) !== 1) {
            // another node's publish (or seed) made a record since LOAD read none: read that one
            r.again = true
            return
          }
          r.gen = str(seeded[0])
        }
      } else if (gen !== r.gen && r.gen !== '' && r.lastTime > 0) {
        // a new record (Redis lost ours): its messages have ids after its base. A base behind the
        // last id applied here means ids this node already applied may be taken again.
        const bt = str(res[8])
        const baseTime = bt === '' ? num(res[3]) : num(bt)
        const baseTag = bt === '' ? num(res[4]) : num(res[9])
        const baseBehind = baseTime < r.lastTime || (baseTime === r.lastTime && baseTag < r.lastTag)
        if (baseBehind && lt === baseTime && lg === baseTag) {
          // none taken yet (a node that was behind us seeded it): ids go on above ours
          if (!await this.#forward(r, lt, lg)) return
        } else if (baseBehind) {
          // a message of the new record may have an id at or below one applied here, so it would
          // be taken for one the subscribers have
          await this.#reused(r, gen, { base: formatId(baseTime, baseTag), store: formatId(lt, lg) },
            'redis lost a channel and another node published first, reusing ids applied here')
          return
        }
        r.gen = gen
      } else if (gen !== r.gen) {
        r.gen = gen
      } else if (this.#retaken(r, res[10])) {
        // the same record, but a message under an id applied here is not the one applied: a
        // failover lost that id and another node's publish took it again
        await this.#reused(r, gen, { store: formatId(lt, lg) }, 'redis lost the tail of a channel (failover) and another node published first, reusing ids applied here')
        return
      } else if (behind) {
        // the same record without the last messages this node applied: a failover promoted a
        // replica that had not received them. Ids go on above ours (never below what subscribers
        // have), and the floor moves there: a cursor in the lost range gets the gap signal.
        if (!await this.#forward(r, lt, lg)) return
      }
      if (exists) core.raiseFloor(key, num(res[3]), num(res[4]))
    } else {
      r.gen = gen
      // held messages of a record Redis lost between the SUBSCRIBE and the LOAD are not this one's
      if (gen !== '' && r.pending.length > 0) r.pending = r.pending.filter((b) => genOf(b) === gen)
      // a record lives as long as its newest message (PUBLISH's PEXPIRE): none in the store, or
      // one made again (its floor is its creation), means nothing was published on the channel
      // for a message timeout before, and what came earlier may have expired unseen here
      // (Channel.horizonTime: a multiplexed cursor below it gets the gap signal): such a message
      // was published a timeout or more before `since` (Redis' seconds, as ids are). A DELETE in
      // the last hour (or timeout) left its last id: a cursor up to it may have lost what it
      // removed.
      const timeout = Math.floor(core.opts.messageTimeout)
      const since = !exists ? num(res[11]) : num(res[4]) < 0 ? num(res[3]) : 0
      let hTime = timeout > 0 && since > timeout ? since - timeout : 0
      // nor of what the store held before it lost everything (its epoch, made again by the next
      // heartbeat: a record made before that was made after the loss, and its own second bounds it)
      const epoch = exists ? Math.min(this.#storeSince, since) : this.#storeSince
      if (since > 0 && epoch - 1 > hTime) hTime = epoch - 1
      // A Redis that evicts keys (maxmemory under a volatile-* or allkeys-* policy) may drop a
      // record before its time, messages and all: the record missing, or made again, then says
      // nothing of what came before the eviction. Messages up to when it was seen may be lost
      // (#evictedAt): a multiplexed cursor there gets the gap signal, as a one-channel one does
      // from the record's creation floor. Only while an eviction seen could have taken a message
      // the timeout has not (an eviction before the window took only what had expired by now).
      const lossAt = this.#evictionsSeen(num(res[13]), num(res[11]))
      if (since > 0 && lossAt > 0 && lossAt >= (timeout > 0 ? since - timeout : 0)) {
        const lost = Math.min(since - 1, lossAt)
        if (lost > hTime) hTime = lost
        const log = this.#log
        if (log !== null && this.#refusalDue('evicted')) log.warn({ node: this.nodeId, mode: this.mode, evictedKeys: this.#evictedCount }, 'redis has evicted keys (maxmemory): a channel whose record is missing or made again may have lost messages, so a multiplexed resume from before the eviction gets the gap signal; give Redis the memory its channels need (docs/redis.md)')
      }
      let hTag = hTime > 0 ? HORIZON_ALL : -1
      const deleted = since > 0 ? /^(\d+) (\d+)$/.exec(str(res[12])) : null
      if (deleted !== null) {
        const dt = Number(deleted[1])
        const dg = Number(deleted[2])
        if (dt > hTime || (dt === hTime && dg > hTag)) [hTime, hTag] = [dt, dg]
        // the store was not wiped since that DELETE (its key would be gone with the rest): what
        // the channel lost is all at or below the horizon, which is then its floor, known, for
        // every subscriber (not the creation floor, which would signal a loss to one that had
        // read everything before the DELETE)
        core.loadChannel(key, exists ? lt : 0, exists ? lg : 0, hTime, hTag)
      } else if (exists) core.loadChannel(key, lt, lg, num(res[3]), num(res[4]), hTime, hTag)
      else core.setHorizon(key, hTime, hTag)
      r.lastTime = 0
      r.lastTag = 0
    }
    for (const e of entries) {
      const id = e[0].toString('latin1')
      const dash = id.indexOf('-')
      const time = Number(id.slice(0, dash))
      const tag = Number(id.slice(dash + 1))
      const f = e[1]
      let p = 0
      let d: Buffer = Buffer.alloc(0)
      let c: string | null = null
      let ev: string | null = null
      for (let i = 0; i < f.length; i += 2) {
        switch (f[i]!.toString('latin1')) {
          case 'p': p = Number(f[i + 1]!.toString('latin1')); break
          case 'd': d = f[i + 1]!; break
          case 'c': c = f[i + 1]!.toString('utf8'); break
          case 'e': ev = f[i + 1]!.toString('utf8'); break
        }
      }
      this.#applyOne(r, time, tag, d, c, ev, p)
    }
    r.state = LIVE
    r.stale = false
    const pending = r.pending
    r.pending = []
    for (const buf of pending) {
      // a held delete may have dropped the replica; one may ask for the record to be read again
      // (#reread): the rest wait for that
      if (this.#replicas.get(key) !== r) break
      if (r.stale) r.pending.push(buf)
      else this.#apply(r, buf)
    }
  }

  /**
   * Ids applied here may have been taken again by other messages. First the record's ids and floor
   * move past ours (REUSED), so a cursor in that range gets the gap signal on every node instead of
   * the messages after it; then the subscribers here are ended (410) to come back with one.
   */
  async #reused (r: Replica, gen: string, where: Record<string, string>, what: string): Promise<void> {
    const key = r.key
    let moved: unknown
    try {
      moved = await this.#call(this.#cmd, 'REUSED', [channelKey(key, 'm'), channelKey(key, 'b')],
        [gen, String(r.lastTime), String(r.lastTag), channelKey(key, 'c'), this.#sharded ? '1' : '0'])
    } catch (err) {
      if (isFault(err)) throw err
      // Redis answered with an error (OOM under maxmemory): the subscribers here are still told
      if (this.#replicas.get(key) !== r) return
      this.#log?.warn({ node: this.nodeId, channel: key, ...where, applied: formatId(r.lastTime, r.lastTag), err: String((err as Error).message) }, what + '; moving its ids past them failed: its subscribers here are ended (410) to start over')
      this.#dropLocal(r, true)
      return
    }
    if (this.#replicas.get(key) !== r) return
    if (!Array.isArray(moved)) {
      // the record changed again since LOAD read it: read that one
      r.again = true
      return
    }
    this.#log?.warn({ node: this.nodeId, channel: key, ...where, applied: formatId(r.lastTime, r.lastTag), floor: formatId(num(moved[0]), num(moved[1])) }, what + ': ids and floor moved past them (older cursors get the gap signal); its subscribers here are ended (410) to start over')
    this.#dropLocal(r, true)
  }

  /**
   * LOAD's `prev` (the store's newest message at or below the last id applied here) is not the
   * message this node holds under that id: another published ms or body length.
   */
  #retaken (r: Replica, prev: unknown): boolean {
    if (!Array.isArray(prev) || prev.length !== 3 || str(prev[1]) === '') return false
    const id = str(prev[0])
    const dash = id.indexOf('-')
    return this.#notMine(r, Number(id.slice(0, dash)), Number(id.slice(dash + 1)), Number(str(prev[1])), num(prev[2]))
  }

  /** This node holds a message under that id, and it is another one (published ms or body length differ). */
  #notMine (r: Replica, time: number, tag: number, publishedAt: number, length: number): boolean {
    const mine = this.#core.heldMessage(r.key, time, tag)
    return mine !== null && (mine[0] !== publishedAt || mine[1] !== length)
  }

  /** Apply, in order, the held pub/sub messages of generation `gen` (a delete drops the replica); keep the others. */
  #applyHeld (r: Replica, gen: string): void {
    const held = r.pending
    r.pending = []
    const rest: Buffer[] = []
    for (const b of held) {
      if (this.#replicas.get(r.key) !== r) return
      if (genOf(b) === gen) this.#apply(r, b)
      else rest.push(b)
    }
    r.pending = rest
  }

  /**
   * Move the record's ids on past the last id applied here (FORWARD), if it still ends at lt:lg.
   * False when a publish got in since it was read: the replica is read again (r.again).
   */
  async #forward (r: Replica, lt: number, lg: number): Promise<boolean> {
    const key = r.key
    const moved = num(await this.#call(this.#cmd, 'FORWARD', [channelKey(key, 'm'), channelKey(key, 'b')],
      [String(r.lastTime), String(r.lastTag), String(lt), String(lg)]))
    if (this.#replicas.get(key) !== r) return false
    if (moved === -1) {
      r.again = true
      return false
    }
    if (moved === 1) {
      this.#channelWarn({ node: this.nodeId, channel: key, store: formatId(lt, lg), applied: formatId(r.lastTime, r.lastTag) }, 'redis lost the tail of a channel (failover, or a seed from a node that was behind): ids continue after the last applied; older cursors get the gap signal')
      this.#core.raiseFloor(key, r.lastTime, r.lastTag)
    }
    return true
  }

  /** Unsubscribe and drop the local copy (no local subscriber is left, or the channel is gone). */
  #detach (r: Replica): void {
    this.#replicas.delete(r.key)
    if (r.subscribed && this.#subReady) {
      const p = this.#sharded ? this.#sub.sUnsubscribe(channelKey(r.key, 'c'), this.#onMessage, true) : this.#sub.unsubscribe(channelKey(r.key, 'c'), this.#onMessage, true)
      p.catch(() => {})
    }
    if (this.#core.localSubscribers(r.key) === 0) this.#core.deleteLocal(r.key)
  }

  /** The channel was deleted: end local subscribers (410), drop the replica. */
  #dropLocal (r: Replica, detach: boolean): void {
    this.#core.deleteLocal(r.key)
    r.pending = []
    r.lastTime = 0
    r.lastTag = 0
    if (detach) this.#detach(r)
  }

  #message (msg: Buffer, channel: Buffer): void {
    // pk:{T}:c
    const name = channel.toString('utf8')
    const key = unTag(name.slice(4, -3))
    const r = this.#replicas.get(key)
    if (r === undefined) return
    if (r.state !== LIVE || r.busy || r.stale) {
      if (r.pending.length >= MAX_PENDING) {
        // the buffer in Redis has them: drop what is held and read again after this load
        r.pending = []
        r.again = true
      }
      r.pending.push(msg)
      return
    }
    this.#apply(r, msg)
  }

  #apply (r: Replica, buf: Buffer): void {
    if (buf[0] === 0x64) { // 'd': deleted
      this.#dropLocal(r, true)
      return
    }
    if (buf[0] === 0x66) { // 'f': the floor rose past reused ids (REUSED): read the record again
      this.#reread(r)
      return
    }
    const nl = buf.indexOf(10)
    const head = buf.toString('latin1', 1, nl).split(' ')
    const ctLen = Number(head[3])
    const evLen = Number(head[4])
    let o = nl + 1
    const ct = ctLen < 0 ? null : buf.toString('utf8', o, o + ctLen)
    if (ctLen > 0) o += ctLen
    const ev = evLen < 0 ? null : buf.toString('utf8', o, o + evLen)
    if (evLen > 0) o += evLen
    const time = Number(head[0])
    const tag = Number(head[1])
    if (head[5] !== undefined && head[5] !== r.gen) {
      if (r.gen !== '' && r.lastTime > 0 && applied(r, time, tag)) {
        // a new record's first message (Redis lost ours: evicted, flushed) reuses an id applied
        // here: it would be skipped as a duplicate. Held, and the record read again: the load
        // finds the base behind what was applied and moves ids and floor past it (REUSED), then
        // ends the subscribers here (410) to start over. Once per generation: if that read found
        // another record (lost again, deleted), the held message is of none and they start over now
        if (r.reusedGen !== head[5]) {
          r.reusedGen = head[5]
          r.pending.push(buf)
          this.#reread(r)
          return
        }
        this.#log?.warn({ node: this.nodeId, channel: r.key, message: formatId(time, tag), applied: formatId(r.lastTime, r.lastTag) }, 'redis lost a channel and a publish reused an id applied here: its subscribers here are ended (410) to start over')
        this.#dropLocal(r, true)
        return
      }
      r.gen = head[5]
    } else if (r.lastTime > 0 && applied(r, time, tag)) {
      // an id applied here, in the same record: a duplicate of what a load read, or another
      // message (a failover lost that id and another node's publish took it again, and this
      // connection did not drop). The second: the record is read again, which finds it (#retaken)
      if (this.#notMine(r, time, tag, Number(head[2]), buf.length - o)) {
        this.#reread(r)
        return
      }
    }
    this.#applyOne(r, time, tag, buf.subarray(o), ct, ev, Number(head[2]))
  }

  /**
   * A fault: what a replica's next load does is a recovery. One already running (or queued) as a
   * mere re-read (#reread) counts in #recovering from now on, so the node is not up before it ends.
   */
  #countBusy (r: Replica): void {
    r.reread = false
    if (r.busy && r.state === LIVE && !r.counted) {
      r.counted = true
      this.#recovering++
    }
  }

  /** Read a live replica's record again (what arrives meanwhile is held), e.g. for its floor. */
  #reread (r: Replica): void {
    if (!r.stale) r.reread = true
    r.stale = true
    // inside a load (its held messages being applied): that load runs again when it ends
    if (r.busy) r.again = true
    else this.#sync(r)
  }

  /** Apply once: a message at or below the last id applied is a duplicate of the load/catch-up. */
  #applyOne (r: Replica, time: number, tag: number, data: Buffer, ct: string | null, ev: string | null, publishedAt: number): void {
    if (applied(r, time, tag)) return
    r.lastTime = time
    r.lastTag = tag
    const ttl = this.#core.opts.messageTimeout * 1000
    if (ttl > 0 && publishedAt + ttl <= Date.now()) {
      // expired on the way: it only moves the floor
      this.#core.raiseFloor(r.key, time, tag)
      return
    }
    this.#core.applyMessage(r.key, time, tag, data, ct, ev, publishedAt)
  }

  #keys (key: string): string[] {
    return [channelKey(key, 'm'), channelKey(key, 'b'), channelKey(key, 's')]
  }

  /** Last id applied on this node for a channel (tests, /status). */
  lastApplied (key: string): string | null {
    const r = this.#replicas.get(key)
    return r === undefined ? null : formatId(r.lastTime, r.lastTag)
  }
}

/** Is (time, tag) at or below the last id applied on this replica? */
function applied (r: Replica, time: number, tag: number): boolean {
  return time < r.lastTime || (time === r.lastTime && tag <= r.lastTag)
}

/** The generation a pub/sub message carries (`m… <g>\n…`, `d<g>` or `f<g>`; '' if none). */
function genOf (buf: Buffer): string {
  if (buf[0] === 0x64 || buf[0] === 0x66) return buf.toString('latin1', 1)
  const head = buf.toString('latin1', 1, buf.indexOf(10)).split(' ')
  return head[5] ?? ''
}

/** `p`, or a rejection after `ms` (the timer is cleared either way). */
async function within<T> (ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<never>((resolve, reject) => { timer = setTimeout(reject, ms, new Error('timed out')) })])
  } finally {
    clearTimeout(timer)
  }
}

function onTick (engine: RedisEngine): void {
  engine.tick()
}

function onDeadlines (engine: RedisEngine): void {
  engine.expire()
}

function onProbe (engine: RedisEngine): void {
  void engine.probe()
}

function flushCounts (engine: RedisEngine): void {
  void engine.flush()
}
