// The Redis engine (option `redisUrl`): several Parkline nodes share channels, buffers and ids.
//
//   node A ──EVALSHA publish──▶ Redis (ids, buffer stream, counts) ──SPUBLISH pk:c:<c>──▶ nodes
//                                                                    with local subscribers
//
// * Ids: one Lua script per publish assigns `time:tag` from Redis' TIME, appends to the channel's
//   stream (MAXLEN = bufferLength), sets the expiry, reads the exact count and publishes the message
//   on the channel's pub/sub channel: one id authority for the deployment (§2.1). Scripts and key
//   layout: lib/redis-lua.ts.
// * Fan-out stays local: a node subscribes to a channel while it has local subscribers (and for a
//   linger after the last one left, so long-poll clients between polls do not reload it), keeps a
//   replica in the core and applies each message once (framed once per node).
// * Replay: a channel without a replica is subscribed first, then loaded (the buffer after '-'),
//   then the messages that arrived meanwhile are applied if newer than the last loaded one. The
//   subscriber's head waits for that and for its count (§3.2), via registered() → ready().
// * Counts: each node writes its absolute count per channel (pk:s:<c> node -> n). A node is alive
//   while its heartbeat (every 2 s) keeps its score in pk:nodes in the future (6 s); only live
//   nodes are summed, and any node's heartbeat sweeps the counts of dead ones.
// * Faults: publishes, info and deletes answer 503 (STORE_UNAVAILABLE) while either connection is
//   down. Both reconnect with backoff; then the node rewrites its counts and re-reads every
//   replica's buffer after the last id it applied, so subscribers get what they missed (or the gap
//   signal when it left the buffer). A record Redis lost (restart without persistence) is seeded
//   back with the last id, so ids keep increasing.
import { hostname } from 'node:os'
import { createClient, RESP_TYPES } from '@redis/client'
import type { ChannelInfo } from './channel-info.ts'
import type { Core, ParklineLog } from './core.ts'
import type { Engine, PublishResult } from './engine.ts'
import { ERRORS, ParklineError } from './errors.ts'
import { formatId } from './message-id.ts'
import { F_CLOSED, type Subscriber } from './subscriber.ts'
import * as LUA from './redis-lua.ts'

const HEARTBEAT_MS = 2000
const NODE_LIFE_MS = 6000
/** A replica with no local subscriber is kept (and kept current) this long before it is dropped. */
const LINGER_MS = 30000
const NODES_KEY = 'pk:nodes'
/** Each node's subscriber total (hash node id -> n), for the deployment's figure in /status. */
const NODE_TOTALS = 'pk:nt'
/** Control channel (plain pub/sub, every node): revocations. */
const CONTROL = 'pk:ctl'
/** Revocations (member: JSON [kind, value, at, until]; score: when it may be forgotten), for nodes that start later. */
const REVOKED_KEY = 'pk:revoked'
/** A revoked user's tokens are refused this long (a token's own exp bounds a revoked jti). */
const REVOKED_SUB_TTL = 30 * 86400
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
  }
}

type Client = ReturnType<typeof createClient>

export interface RedisEngineOptions {
  /** First connect: how long start() waits before it goes on without Redis (ms). */
  connectWait?: number
  /** Lifecycle lines: connected, lost, recovered. */
  log?: ParklineLog
}

function backoff (retries: number): number {
  return Math.min(2000, 50 * 2 ** Math.min(retries, 6)) + Math.floor(Math.random() * 100)
}

function num (v: unknown): number {
  return typeof v === 'number' ? v : Number(String(v))
}

function str (v: unknown): string {
  return Buffer.isBuffer(v) ? v.toString('utf8') : String(v)
}

export class RedisEngine implements Engine {
  readonly name = 'redis'
  readonly nodeId: string
  readonly #core: Core
  readonly #cmd: Client
  readonly #sub: Client
  /** The command connection with bulk strings as Buffers (message bodies stay binary). */
  readonly #bin: Client
  readonly #replicas = new Map<string, Replica>()
  /** Local subscriber count per channel: what this node has (or will have) written to Redis. */
  readonly #counts = new Map<string, number>()
  #dirty = new Set<string>()
  #arrived = new Set<string>()
  #waiting: Subscriber[] = []
  #flushScheduled = false
  #flushing = false
  /** Subscribers whose F_CATCHING_UP flag the engine set (long-poll), cleared before ready(). */
  readonly #flagged = new WeakSet<Subscriber>()
  /** Registered, count not yet acknowledged by Redis. */
  readonly #uncounted = new WeakSet<Subscriber>()
  /** Registered, not counted until its replicas are loaded and it parks (Transport.answersAtOnce). */
  readonly #deferred = new WeakSet<Subscriber>()
  #shas: Record<string, string> | null = null
  #sharded = false
  #cmdReady = false
  #subReady = false
  #recovering = 0
  #inflight = 0
  #timer: NodeJS.Timeout | null = null
  #stopped = false
  readonly #onMessage: (msg: Buffer, channel: Buffer) => void
  readonly #onControl: (msg: string) => void
  #controlSubscribed = false
  #revSeq = 0
  #deployment: { nodes: number, subscribers: number } | null = null
  readonly #connectWait: number
  readonly #log: ParklineLog | null
  /** 'never' until the first connect; 'up'; 'down' since a connection was lost (logged once). */
  #state: 'never' | 'up' | 'down' = 'never'

  constructor (core: Core, url: string, opts: RedisEngineOptions = {}) {
    this.#core = core
    this.#connectWait = opts.connectWait ?? 3000
    this.#log = opts.log ?? null
    this.nodeId = `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`
    const options = {
      url,
      disableOfflineQueue: true,
      socket: { reconnectStrategy: backoff, connectTimeout: 2000 }
    }
    this.#cmd = createClient(options)
    this.#sub = createClient(options)
    this.#bin = this.#cmd.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer }) as unknown as Client
    this.#onMessage = (msg, channel) => this.#message(msg, channel)
    this.#onControl = (msg) => { void this.#control(msg) }
    // a dropped connection is never fatal: listen to errors, reconnect with backoff
    this.#cmd.on('error', () => this.#cmdDown())
    this.#cmd.on('end', () => this.#cmdDown())
    this.#cmd.on('ready', () => { void this.#cmdUp() })
    this.#sub.on('error', () => this.#subDown())
    this.#sub.on('end', () => this.#subDown())
    this.#sub.on('ready', () => { void this.#subUp() })
  }

  /** Connect (in the background after `connectWait` ms) and start the heartbeat. */
  async start (): Promise<void> {
    this.#cmd.connect().catch(() => {})
    this.#sub.connect().catch(() => {})
    this.#timer = setInterval(onTick, HEARTBEAT_MS, this)
    this.#timer.unref()
    const deadline = Date.now() + this.#connectWait
    while (!this.up && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
  }

  async stop (): Promise<void> {
    if (this.#stopped) return
    this.#stopped = true
    if (this.#timer !== null) clearInterval(this.#timer)
    if (this.#cmdReady && this.#shas !== null) {
      await this.#call(this.#cmd, 'LEAVE', [NODES_KEY, 'pk:n:' + this.nodeId], [this.nodeId]).catch(() => {})
    }
    this.#cmd.destroy()
    this.#sub.destroy()
  }

  /** Both connections ready, scripts loaded, no catch-up running: publishes are accepted. */
  get up (): boolean {
    return this.#cmdReady && this.#subReady && this.#shas !== null && this.#recovering === 0
  }

  /** /status and /health (EXTENSION f). */
  health (): { up: boolean, pendingCommands: number, connectedServers: number } {
    return {
      up: this.up,
      pendingCommands: this.#inflight + this.#dirty.size + this.#waiting.length,
      connectedServers: this.#cmdReady && this.#subReady ? 1 : 0
    }
  }

  // ---- connection state ---------------------------------------------------------------------

  #cmdDown (): void {
    if (!this.#cmd.isReady) this.#cmdReady = false
    this.#lost()
  }

  /** One line per outage, however many errors the clients emit while reconnecting. */
  #lost (): void {
    if (this.#state !== 'up' || this.#stopped) return
    this.#state = 'down'
    this.#log?.warn({ node: this.nodeId }, 'redis connection lost: publishes answer 503 until it is back')
  }

  #checkUp (): void {
    if (!this.up || this.#state === 'up') return
    this.#log?.info({ node: this.nodeId, sharded: this.#sharded }, this.#state === 'never' ? 'redis connected' : 'redis recovered')
    this.#state = 'up'
  }

  #subDown (): void {
    if (this.#sub.isReady) return
    this.#subReady = false
    this.#lost()
    // messages are being lost from now on: hold what arrives until the catch-up read
    for (const r of this.#replicas.values()) {
      if (r.state === LIVE) r.stale = true
      r.subscribed = false
    }
  }

  async #cmdUp (): Promise<void> {
    try {
      if (this.#shas === null) await this.#loadScripts()
      this.#cmdReady = true
      await this.#heartbeat()
      await this.#loadRevocations()
      // the store may have lost our counts (restart, sweep): write them all again
      for (const key of this.#counts.keys()) this.#dirty.add(key)
      this.#scheduleFlush()
      this.#syncAll()
      this.#checkUp()
    } catch {
      // a reconnect will try again
    }
  }

  async #subUp (): Promise<void> {
    this.#subReady = true
    // node-redis subscribes it again itself after a reconnect
    if (!this.#controlSubscribed) {
      this.#controlSubscribed = true
      await this.#sub.subscribe(CONTROL, this.#onControl).catch(() => { this.#controlSubscribed = false })
    }
    // revocations broadcast while this connection was down
    if (this.#cmdReady) await this.#loadRevocations().catch(() => {})
    this.#syncAll()
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
      const forget = kind === 'sub' ? at + REVOKED_SUB_TTL : until
      await this.#cmd.sendCommand(['ZADD', REVOKED_KEY, String(forget), JSON.stringify([kind, value, at, until])])
      const heard = Number(await this.#cmd.sendCommand(['PUBLISH', CONTROL, JSON.stringify([id, this.nodeId, kind, value, at, until])]))
      const others = heard - (this.#controlSubscribed && this.#subReady ? 1 : 0)
      const alive = Number(await this.#cmd.sendCommand(['ZCOUNT', NODES_KEY, String(Date.now()), '+inf'])) - 1
      const deadline = Date.now() + REVOKE_WAIT_MS
      let counts: string[] = []
      for (;;) {
        counts = (await this.#cmd.sendCommand(['LRANGE', reply, '0', '-1'])) as string[]
        if (counts.length >= others || Date.now() >= deadline) break
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      await this.#cmd.sendCommand(['DEL', reply])
      return { ended: local + counts.reduce((a, c) => a + Number(c), 0), complete: counts.length >= Math.max(others, alive) }
    } catch (err) {
      throw new StoreUnavailableError(err)
    }
  }

  async #control (msg: string): Promise<void> {
    let e: unknown
    try { e = JSON.parse(msg) } catch { return }
    if (!Array.isArray(e) || e.length !== 6) return
    const [id, origin, kind, value, at, until] = e as [string, string, 'sub' | 'jti', string, number, number]
    if (origin === this.nodeId || (kind !== 'sub' && kind !== 'jti')) return
    const n = this.#core.revokeLocal(kind, String(value), Number(at), Number(until))
    const reply = 'pk:rv:' + String(id)
    await this.#cmd.sendCommand(['RPUSH', reply, String(n)]).catch(() => {})
    await this.#cmd.sendCommand(['EXPIRE', reply, '30']).catch(() => {})
  }

  /**
   * The revocations still in force, applied here: recorded, and the live subscribers they cover
   * ended. Run at every (re)connect, so a node that missed a broadcast, or starts later, catches up.
   */
  async #loadRevocations (): Promise<void> {
    const now = Math.floor(Date.now() / 1000)
    await this.#cmd.sendCommand(['ZREMRANGEBYSCORE', REVOKED_KEY, '-inf', String(now)])
    const rows = (await this.#cmd.sendCommand(['ZRANGEBYSCORE', REVOKED_KEY, String(now), '+inf'])) as string[]
    for (const row of rows) {
      let r: unknown
      try { r = JSON.parse(row) } catch { continue }
      if (!Array.isArray(r) || r.length !== 4) continue
      const [kind, value, at, until] = r as ['sub' | 'jti', string, number, number]
      if ((kind === 'sub' || kind === 'jti') && typeof value === 'string') this.#core.revokeLocal(kind, value, Number(at), Number(until))
    }
  }

  async #loadScripts (): Promise<void> {
    const info = String(await this.#cmd.sendCommand(['INFO', 'server']))
    const m = /redis_version:(\d+)/.exec(info)
    this.#sharded = m !== null && Number(m[1]) >= 7
    const shas: Record<string, string> = {}
    for (const name of ['PUBLISH', 'INFO', 'DELETE', 'LOAD', 'SEED', 'COUNT', 'HEARTBEAT', 'LEAVE'] as const) {
      shas[name] = String(await this.#cmd.sendCommand(['SCRIPT', 'LOAD', LUA[name]]))
    }
    this.#shas = shas
  }

  /** EVALSHA, loading the script again if Redis restarted and forgot it. */
  async #call (client: Client, script: string, keys: string[], args: Array<string | Buffer>): Promise<unknown> {
    this.#inflight++
    try {
      try {
        return await client.sendCommand(['EVALSHA', this.#shas![script]!, String(keys.length), ...keys, ...args])
      } catch (err) {
        if (!String((err as Error).message).startsWith('NOSCRIPT')) throw err
        const sha = String(await this.#cmd.sendCommand(['SCRIPT', 'LOAD', LUA[script as keyof typeof LUA]]))
        this.#shas![script] = sha
        return await client.sendCommand(['EVALSHA', sha, String(keys.length), ...keys, ...args])
      }
    } finally {
      this.#inflight--
    }
  }

  async #heartbeat (): Promise<void> {
    const alive = await this.#call(this.#cmd, 'HEARTBEAT', [NODES_KEY], [this.nodeId, String(NODE_LIFE_MS)])
    if (num(alive) === 0) {
      for (const key of this.#counts.keys()) this.#dirty.add(key)
      this.#scheduleFlush()
    }
    // the deployment's figures for /status: each node's subscriber total, summed over live nodes
    await this.#cmd.sendCommand(['HSET', NODE_TOTALS, this.nodeId, String(this.#core.table.size)])
    const nodes = (await this.#cmd.sendCommand(['ZRANGEBYSCORE', NODES_KEY, String(Date.now()), '+inf'])) as string[]
    const totals = nodes.length === 0 ? [] : (await this.#cmd.sendCommand(['HMGET', NODE_TOTALS, ...nodes])) as Array<string | null>
    this.#deployment = { nodes: nodes.length, subscribers: totals.reduce((a, v) => a + Number(v ?? 0), 0) }
    if (Math.random() < 0.05) {
      // forget the totals of nodes gone for good
      const all = (await this.#cmd.sendCommand(['HKEYS', NODE_TOTALS])) as string[]
      const gone = all.filter((id) => !nodes.includes(id))
      if (gone.length > 0) await this.#cmd.sendCommand(['HDEL', NODE_TOTALS, ...gone])
    }
  }

  /** Subscribers and live nodes of the whole deployment, as of the last heartbeat (/status). */
  deployment (): { nodes: number, subscribers: number } | null {
    return this.#deployment
  }

  tick (): void {
    if (this.#cmdReady) this.#heartbeat().catch(() => {})
    this.#checkUp()
    // replicas nobody here needs any more: unsubscribe, drop the copy
    const now = Date.now()
    for (const r of this.#replicas.values()) {
      if (r.idleSince > 0 && now - r.idleSince > LINGER_MS && !r.busy && r.waiters.length === 0) this.#detach(r)
    }
  }

  // ---- the Engine interface ---------------------------------------------------------------------

  async publish (key: string, data: Buffer, contentType: string | null, event: string | null): Promise<PublishResult> {
    if (!this.up) throw new StoreUnavailableError()
    const o = this.#core.opts
    let r: unknown[]
    try {
      r = await this.#call(this.#cmd, 'PUBLISH', this.#keys(key), [
        data, contentType ?? '', contentType === null ? '0' : '1', event ?? '', event === null ? '0' : '1',
        String(o.bufferLength), String(o.messageTimeout * 1000), 'pk:c:' + key, this.#sharded ? '1' : '0'
      ]) as unknown[]
    } catch (err) {
      throw new StoreUnavailableError(err)
    }
    const info = toInfo(r)
    this.#core.stats.published++
    return { status: info.subscribers > 0 ? 201 : 202, info }
  }

  async info (key: string): Promise<ChannelInfo | null> {
    if (!this.up) throw new StoreUnavailableError()
    try {
      const r = await this.#call(this.#cmd, 'INFO', this.#keys(key), [String(this.#core.opts.messageTimeout * 1000)])
      return r === null ? null : toInfo(r as unknown[])
    } catch (err) {
      throw new StoreUnavailableError(err)
    }
  }

  async delete (key: string): Promise<ChannelInfo | null> {
    if (!this.up) throw new StoreUnavailableError()
    try {
      const r = await this.#call(this.#cmd, 'DELETE', [...this.#keys(key), 'pk:x:' + key],
        [String(this.#core.opts.messageTimeout * 1000), 'pk:c:' + key, this.#sharded ? '1' : '0'])
      return r === null ? null : toInfo(r as unknown[])
    } catch (err) {
      throw new StoreUnavailableError(err)
    }
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
    }
    this.#waiting.push(sub)
    this.#uncounted.add(sub)
    this.#scheduleFlush()
  }

  unregistered (sub: Subscriber): void {
    const now = Date.now()
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
    if (!this.#cmdReady || this.#shas === null || this.#flushing) return
    if (this.#dirty.size === 0 && this.#waiting.length === 0) return
    this.#flushing = true
    const keys = [...this.#dirty]
    const arrived = this.#arrived
    const subs = this.#waiting
    this.#dirty = new Set()
    this.#arrived = new Set()
    this.#waiting = []
    const nodeSet = 'pk:n:' + this.nodeId
    try {
      await Promise.all(keys.map((key) => this.#call(this.#cmd, 'COUNT', ['pk:s:' + key, nodeSet],
        [this.nodeId, String(this.#counts.get(key) ?? 0), key, arrived.has(key) ? '1' : '0', String(LINGER_MS)])))
    } catch {
      // not written: again after the reconnect (counts are absolute, so a repeat is harmless)
      for (const key of keys) this.#dirty.add(key)
      for (const key of arrived) this.#arrived.add(key)
      this.#waiting = subs.concat(this.#waiting)
      this.#flushing = false
      return
    }
    this.#flushing = false
    for (const sub of subs) {
      this.#uncounted.delete(sub)
      this.#release(sub)
    }
    if (this.#dirty.size > 0 || this.#waiting.length > 0) this.#scheduleFlush()
  }

  /** Counted; serve it once every channel it names has a current replica. */
  #release (sub: Subscriber): void {
    if ((sub.flags & F_CLOSED) !== 0 || this.#uncounted.has(sub)) return
    for (const ch of sub.channels) {
      const r = this.#replicas.get(ch.key)
      if (r !== undefined && r.waiters.includes(sub)) return
    }
    if (this.#deferred.has(sub) && this.#core.nextMessage(sub) === null) {
      // parks: counted first, served (ready) once Redis acknowledged the count
      this.#countLate(sub)
      return
    }
    if (this.#flagged.has(sub)) {
      this.#flagged.delete(sub)
      this.#core.resumeLive(sub)
    }
    sub.transport.ready(sub)
  }

  // ---- replicas -------------------------------------------------------------------------------------

  #syncAll (): void {
    for (const r of this.#replicas.values()) this.#sync(r)
  }

  /**
   * Bring a replica up to date: subscribe first, then read the buffer (all of it, or after the last
   * id applied), then apply what arrived meanwhile if newer. Safe to call at any time.
   */
  #sync (r: Replica): void {
    if (r.busy || !this.#cmdReady || !this.#subReady || this.#shas === null) return
    if (r.state === LIVE && !r.stale && r.subscribed) return
    r.busy = true
    if (r.state === LIVE) this.#recovering++
    const recovering = r.state === LIVE
    if (r.state === NEW) r.state = LOADING
    this.#load(r).then(() => {
      r.busy = false
      if (recovering) this.#recovering--
      const waiters = r.waiters
      r.waiters = []
      for (const sub of waiters) this.#release(sub)
    }, () => {
      r.busy = false
      if (recovering) this.#recovering--
      // the connection went away mid-way: the reconnect syncs again
    })
  }

  async #load (r: Replica): Promise<void> {
    const key = r.key
    if (!r.subscribed) {
      if (this.#sharded) await this.#sub.sSubscribe('pk:c:' + key, this.#onMessage, true)
      else await this.#sub.subscribe('pk:c:' + key, this.#onMessage, true)
      r.subscribed = true
    }
    const live = r.state === LIVE
    const start = live ? `(${r.lastTime}-${r.lastTag}` : '-'
    const ttl = String(this.#core.opts.messageTimeout * 1000)
    const res = await this.#call(this.#bin, 'LOAD', ['pk:m:' + key, 'pk:b:' + key, 'pk:x:' + key], [ttl, start]) as unknown[]
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
      if (!exists) {
        // Redis lost the record (restart without persistence): give it back our last id
        if (r.lastTime > 0) {
          const g = await this.#call(this.#cmd, 'SEED', ['pk:m:' + key], [String(r.lastTime), String(r.lastTag), ttl])
          r.gen = str(g)
        }
      } else if (gen !== r.gen) {
        if (r.gen !== '' && (lt < r.lastTime || (lt === r.lastTime && lg < r.lastTag))) {
          // a new record whose ids fall behind ours: its subscribers start over (410)
          this.#dropLocal(r, true)
          return
        }
        r.gen = gen
      }
      if (exists) core.raiseFloor(key, num(res[3]), num(res[4]))
    } else {
      r.gen = gen
      if (exists) core.loadChannel(key, lt, lg, num(res[3]), num(res[4]))
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
    for (const buf of pending) this.#apply(r, buf)
  }

  /** Unsubscribe and drop the local copy (no local subscriber is left, or the channel is gone). */
  #detach (r: Replica): void {
    this.#replicas.delete(r.key)
    if (r.subscribed && this.#subReady) {
      const p = this.#sharded ? this.#sub.sUnsubscribe('pk:c:' + r.key, this.#onMessage, true) : this.#sub.unsubscribe('pk:c:' + r.key, this.#onMessage, true)
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
    const key = channel.toString('utf8').slice(5)
    const r = this.#replicas.get(key)
    if (r === undefined) return
    if (r.state !== LIVE || r.busy || r.stale) {
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
    const nl = buf.indexOf(10)
    const head = buf.toString('latin1', 1, nl).split(' ')
    const ctLen = Number(head[3])
    const evLen = Number(head[4])
    let o = nl + 1
    const ct = ctLen < 0 ? null : buf.toString('utf8', o, o + ctLen)
    if (ctLen > 0) o += ctLen
    const ev = evLen < 0 ? null : buf.toString('utf8', o, o + evLen)
    if (evLen > 0) o += evLen
    if (head[5] !== undefined && head[5] !== r.gen) r.gen = head[5]
    this.#applyOne(r, Number(head[0]), Number(head[1]), buf.subarray(o), ct, ev, Number(head[2]))
  }

  /** Apply once: a message at or below the last id applied is a duplicate of the load/catch-up. */
  #applyOne (r: Replica, time: number, tag: number, data: Buffer, ct: string | null, ev: string | null, publishedAt: number): void {
    if (time < r.lastTime || (time === r.lastTime && tag <= r.lastTag)) return
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
    return ['pk:m:' + key, 'pk:b:' + key, 'pk:s:' + key, NODES_KEY]
  }

  /** Last id applied on this node for a channel (tests, /status). */
  lastApplied (key: string): string | null {
    const r = this.#replicas.get(key)
    return r === undefined ? null : formatId(r.lastTime, r.lastTag)
  }
}

function toInfo (r: unknown[]): ChannelInfo {
  const t = num(r[3])
  return { subscribers: num(r[0]), messages: num(r[1]), requested: num(r[2]), lastMessageId: t === 0 ? '0:0' : formatId(t, num(r[4])) }
}

function onTick (engine: RedisEngine): void {
  engine.tick()
}

function flushCounts (engine: RedisEngine): void {
  void engine.flush()
}
