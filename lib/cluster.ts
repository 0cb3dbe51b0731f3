// Worker processes on one host (`parkline serve --workers N`).
//
// The primary process is the one sequencer: it assigns every id, keeps the authoritative channel
// buffers and the exact subscriber counts (summed over workers). Workers accept connections on the
// shared port (SO_REUSEPORT), send publishes and count changes to the primary, and receive one
// ordered stream per worker of what the sequencer decided for them: a channel's buffer ('load')
// with the worker's first subscriber on it, then its messages while it has subscribers there
// (applied to the worker's replica and fanned out, framed once per worker), deletes, count
// acknowledgements and answers. Entries are batched: one IPC write per event-loop turn.
//
//   worker A ──pub──▶ primary (ids, buffers, counts) ──batch [load, m, a, r…]──▶ interested workers
//
// A worker that dies is forked again, empty; its subscribers' counts are withdrawn, its clients
// reconnect (SSE retry:) to any worker and resume from the primary's buffers.
import { fork, type ChildProcess } from 'node:child_process'
import type { ChannelInfo } from './channel-info.ts'
import { channelInfo } from './channel-info.ts'
import type { ParklineOptions } from './config.ts'
import { Core } from './core.ts'
import type { Engine, PublishResult } from './engine.ts'
import { F_CLOSED, type Subscriber } from './subscriber.ts'
import { Counter, Registry, collectDefaultMetrics } from 'prom-client'
import type { Metrics, MetricsJson } from './metrics.ts'
import type { Logger } from 'pino'

// ---- wire format (structured clone, `serialization: 'advanced'`) ------------------------------

/** Worker → primary entries. */
type Up =
  | ['pub', number, string, Uint8Array, string | null, string | null, string | null]
  | ['info', number, string]
  | ['del', number, string]
  | ['sub', string[], 1 | -1]
  | ['stats', number, number]
  | ['rev', number, 'sub' | 'jti', string, number, number]
  | ['revd', number, number]
  | ['touch', string[]]
  | ['mq', number]
  | ['mj', number, MetricsJson]

/** A buffered message in a snapshot: time, tag, data, content type, event, published at. */
type SnapMessage = [number, number, Uint8Array, string | null, string | null, number]
/** A channel in a snapshot: key, last id, floor, messages. */
type SnapChannel = [string, number, number, number, number, SnapMessage[]]

/** Primary → worker entries, applied in order. */
type Down =
  | ['m', string, number, number, Uint8Array, string | null, string | null, number]
  | ['d', string]
  | ['a', number]
  | ['r', number, PublishResult | ChannelInfo | [number, boolean] | MetricsJson[] | null]
  | ['hello']
  | ['load', SnapChannel]
  | ['totals', number, number, number, number]
  | ['rev', number, 'sub' | 'jti', string, number, number]
  | ['mq', number]

function toBuffer (u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength)
}

/** Batches entries into one `send` per event-loop turn. */
class Outbox<T> {
  #entries: T[] = []
  #scheduled = false
  readonly #send: (batch: T[]) => void

  constructor (send: (batch: T[]) => void) {
    this.#send = send
  }

  push (entry: T): void {
    this.#entries.push(entry)
    if (!this.#scheduled) {
      this.#scheduled = true
      setImmediate(flush, this)
    }
  }

  flush (): void {
    this.#scheduled = false
    const batch = this.#entries
    if (batch.length === 0) return
    this.#entries = []
    this.#send(batch)
  }
}

function flush (box: { flush (): void }): void {
  box.flush()
}

function onChildError (): void {
  // a send to a worker that just died; its 'exit' handles the rest
}

// ---- primary: the sequencer -------------------------------------------------------------------

interface WorkerSlot {
  id: number
  child: ChildProcess | null
  out: Outbox<Down>
  /** Subscriptions this worker holds, per channel, so its death withdraws them. */
  counts: Map<string, number>
  /**
   * Per channel, subscriptions a DELETE already took off the counts: the worker's `sub -1` for
   * them (sent once it has ended them) must not be subtracted again.
   */
  deleted: Map<string, number>
  subscribers: number
  delivered: number
  restarts: number
}

export class Sequencer {
  readonly core: Core
  readonly counts = new Map<string, number>()
  readonly workers: WorkerSlot[] = []
  /** Revocations decided so far (kind, value, at, until): a re-forked worker gets them too. */
  readonly #revoked: Array<['sub' | 'jti', string, number, number]> = []
  /** Revocations broadcast to the workers, waiting for each one's count. */
  readonly #revoking = new Map<number, { slot: WorkerSlot, r: number, waiting: Set<WorkerSlot>, total: number, timer: NodeJS.Timeout }>()
  #revSeq = 0
  /** Node-wide scrapes waiting for every worker's metrics. */
  readonly #scrapes = new Map<number, { slot: WorkerSlot, r: number, waiting: Set<WorkerSlot>, parts: MetricsJson[], timer: NodeJS.Timeout }>()
  #scrapeSeq = 0
  /** The primary's own metrics (process, worker restarts), first in every node-wide scrape. */
  readonly registry = new Registry()
  readonly #log: Logger | null
  #stopping = false
  readonly #script: string
  readonly #args: string[]

  constructor (opts: ParklineOptions, script: string, args: string[], log: Logger | null = null) {
    // the sequencer holds buffers and ids; it has no transports and no sockets
    this.core = new Core(opts, [], 1 << 30)
    this.#script = script
    this.#args = args
    this.#log = log
    collectDefaultMetrics({ register: this.registry })
    const workers = this.workers
    this.registry.registerMetric(new Counter({
      name: 'parkline_worker_restarts_total',
      help: 'Worker processes that died and were forked again.',
      registers: [],
      collect () {
        this.reset()
        const n = workers.reduce((a, w) => a + w.restarts, 0)
        if (n > 0) this.inc(n)
      }
    }))
  }

  start (n: number): void {
    this.core.start()
    // workers' /status shows deployment totals, refreshed once a second
    setInterval(() => this.#broadcast(['totals', ...this.totals()]), 1000).unref()
    for (let i = 0; i < n; i++) {
      const slot: WorkerSlot = { id: i, child: null, out: null as unknown as Outbox<Down>, counts: new Map(), deleted: new Map(), subscribers: 0, delivered: 0, restarts: 0 }
      slot.out = new Outbox<Down>((batch) => { if (slot.child !== null && slot.child.connected) slot.child.send(batch) })
      this.workers.push(slot)
      this.#fork(slot)
    }
  }

  #fork (slot: WorkerSlot): void {
    const child = fork(this.#script, ['worker', ...this.#args], {
      serialization: 'advanced',
      env: { ...process.env, PARKLINE_WORKER_ID: String(slot.id) },
      stdio: 'inherit'
    })
    slot.child = child
    this.#log?.info({ worker: slot.id, workerPid: child.pid, restarts: slot.restarts }, slot.restarts === 0 ? 'worker forked' : 'worker forked again')
    child.on('error', onChildError)
    child.on('message', (batch: Up[]) => this.#onBatch(slot, batch))
    child.on('exit', () => this.#onExit(slot, child))
    // A fresh worker has no subscriber yet, so no replica to fill: it gets a channel's buffer with
    // its first subscriber on it ('load'). 'hello' says the primary is ready for it.
    slot.out.push(['hello'])
    const now = Math.floor(Date.now() / 1000)
    for (const [kind, value, at, until] of this.#revoked) {
      if (kind === 'sub' || until > now) slot.out.push(['rev', 0, kind, value, at, until])
    }
  }

  /** One channel as the authority holds it: ids, floor and buffered messages. */
  #snapshotOf (key: string): SnapChannel {
    const ch = this.core.registry.get(key)
    if (ch === undefined) return [key, 0, 0, 0, -1, []]
    const msgs: SnapMessage[] = []
    for (let i = 0; i < ch.buffer.size; i++) {
      const m = ch.buffer.at(i)
      msgs.push([m.time, m.tag, m.data, m.contentType, m.event, m.publishedAt])
    }
    return [ch.key, ch.lastTime, ch.lastTag, ch.floorTime, ch.floorTag, msgs]
  }

  /** A message goes to the workers with subscribers on its channel only. */
  #toInterested (key: string, entry: Down): void {
    for (const w of this.workers) if ((w.counts.get(key) ?? 0) > 0) w.out.push(entry)
  }

  #onExit (slot: WorkerSlot, child: ChildProcess): void {
    if (slot.child !== child) return
    slot.child = null
    for (const [key, n] of slot.counts) this.#count(key, -n)
    slot.counts.clear()
    slot.deleted.clear()
    slot.subscribers = 0
    // a revocation waiting for this worker's count gets none: it had no subscribers left
    for (const id of [...this.#revoking.keys()]) this.#revoked1(id, slot, 0)
    for (const id of [...this.#scrapes.keys()]) this.#scraped(id, slot, [])
    if (this.#stopping) return
    this.#log?.warn({ worker: slot.id, workerPid: child.pid, exitCode: child.exitCode, signal: child.signalCode }, 'worker died; forking it again')
    slot.restarts++
    // a crash loop backs off, up to 5 s
    // (not unref'd: with every worker gone, this timer is what keeps the primary alive)
    setTimeout(() => { if (!this.#stopping) this.#fork(slot) }, Math.min(5000, 100 * slot.restarts))
  }

  #count (key: string, delta: number): void {
    const n = (this.counts.get(key) ?? 0) + delta
    if (n > 0) {
      this.counts.set(key, n)
      return
    }
    this.counts.delete(key)
    // its last subscriber left: a channel with no message is freed, as in one process (a
    // subscriber that only names a channel must not leave a record behind)
    const ch = this.core.registry.get(key)
    if (ch !== undefined) this.core.registry.release(ch)
  }

  #info (key: string): ChannelInfo | null {
    const ch = this.core.registry.get(key)
    const subscribers = this.counts.get(key) ?? 0
    if (ch === undefined) {
      return subscribers === 0 ? null : { messages: 0, requested: 0, subscribers, lastMessageId: '0:0' }
    }
    const info = channelInfo(ch, Date.now())
    info.subscribers = subscribers
    return info
  }

  #broadcast (entry: Down): void {
    for (const w of this.workers) w.out.push(entry)
  }

  #onBatch (slot: WorkerSlot, batch: Up[]): void {
    let acks = 0
    for (const e of batch) {
      switch (e[0]) {
        case 'pub': {
          const subscribers = this.counts.get(e[2]) ?? 0
          const replay = e[6] === null ? null : this.core.replayed(e[2], e[6], subscribers)
          if (replay !== null) {
            slot.out.push(['r', e[1], replay])
            break
          }
          const data = toBuffer(e[3])
          const { msg, channel } = this.core.publish(e[2], data, e[4], e[5])
          if (e[6] !== null) this.core.idempotency.set(e[2], e[6], msg.id)
          const info = channelInfo(channel, Date.now())
          info.subscribers = subscribers
          this.#toInterested(e[2], ['m', e[2], msg.time, msg.tag, data, msg.contentType, msg.event, msg.publishedAt])
          slot.out.push(['r', e[1], { status: subscribers > 0 ? 201 : 202, info }])
          break
        }
        case 'info':
          slot.out.push(['r', e[1], this.#info(e[2])])
          break
        case 'del': {
          const info = this.#info(e[2])
          const ch = this.core.registry.get(e[2])
          if (ch !== undefined) this.core.deleteChannel(ch)
          // Its subscribers are ended by the workers as the `d` reaches them: they count no more
          // from now on (a publish right after the DELETE answers 202, as with one process).
          this.counts.delete(e[2])
          for (const w of this.workers) {
            const n = w.counts.get(e[2])
            if (n === undefined) continue
            w.counts.delete(e[2])
            w.deleted.set(e[2], (w.deleted.get(e[2]) ?? 0) + n)
          }
          if (info !== null) this.#broadcast(['d', e[2]])
          slot.out.push(['r', e[1], info])
          break
        }
        case 'sub': {
          for (const key of e[1]) {
            if (e[2] < 0) {
              // the end of a subscription the DELETE already uncounted
              const gone = slot.deleted.get(key)
              if (gone !== undefined) {
                if (gone <= 1) slot.deleted.delete(key)
                else slot.deleted.set(key, gone - 1)
                continue
              }
            }
            this.#count(key, e[2])
            const had = slot.counts.get(key) ?? 0
            const n = had + e[2]
            if (n <= 0) slot.counts.delete(key)
            else slot.counts.set(key, n)
            if (e[2] > 0) {
              const ch = this.core.registry.getOrCreate(key, this.core.nowSec)
              ch.lastRequested = Date.now()
              // the worker's first subscriber there: its replica, before the ack and every later message
              if (had === 0) slot.out.push(['load', this.#snapshotOf(key)])
            }
          }
          if (e[2] > 0) acks++
          break
        }
        case 'stats':
          slot.subscribers = e[1]
          slot.delivered = e[2]
          break
        case 'rev': {
          // every live worker ends its subscribers of that user or token and says how many
          const [, r, kind, value, at, until] = e
          this.#revoked.push([kind, value, at, until])
          // as many as a process's own revocation list keeps (lib/auth.ts Revocations)
          if (this.#revoked.length > 100_000) this.#revoked.shift()
          const id = ++this.#revSeq
          const waiting = new Set(this.workers.filter((w) => w.child !== null))
          const timer = setTimeout(() => { this.#finishRevoke(id) }, 5000)
          timer.unref()
          this.#revoking.set(id, { slot, r, waiting, total: 0, timer })
          for (const w of waiting) w.out.push(['rev', id, kind, value, at, until])
          if (waiting.size === 0) this.#finishRevoke(id)
          break
        }
        case 'revd':
          this.#revoked1(e[1], slot, e[2])
          break
        case 'mq': {
          // a node-wide scrape: every live worker's metrics, then the answer to the asking one
          const id = ++this.#scrapeSeq
          const waiting = new Set(this.workers.filter((w) => w.child !== null))
          const timer = setTimeout(() => { this.#finishScrape(id) }, 2000)
          timer.unref()
          this.#scrapes.set(id, { slot, r: e[1], waiting, parts: [], timer })
          for (const w of waiting) w.out.push(['mq', id])
          if (waiting.size === 0) this.#finishScrape(id)
          break
        }
        case 'mj':
          this.#scraped(e[1], slot, e[2])
          break
        case 'touch': {
          // a long-poll answered from a worker's replica: "last requested" is now
          const now = Date.now()
          for (const key of e[1]) {
            const ch = this.core.registry.get(key)
            if (ch !== undefined) ch.lastRequested = now
          }
          break
        }
      }
    }
    if (acks > 0) slot.out.push(['a', acks])
  }

  #revoked1 (id: number, slot: WorkerSlot, n: number): void {
    const p = this.#revoking.get(id)
    if (p === undefined || !p.waiting.delete(slot)) return
    p.total += n
    if (p.waiting.size === 0) this.#finishRevoke(id)
  }

  #finishRevoke (id: number): void {
    const p = this.#revoking.get(id)
    if (p === undefined) return
    this.#revoking.delete(id)
    clearTimeout(p.timer)
    // workers that did not answer in time are waited for no longer: the count is then partial
    p.slot.out.push(['r', p.r, [p.total, p.waiting.size === 0]])
  }

  #scraped (id: number, slot: WorkerSlot, json: MetricsJson): void {
    const p = this.#scrapes.get(id)
    if (p === undefined || !p.waiting.delete(slot)) return
    if (json.length > 0) p.parts.push(json)
    if (p.waiting.size === 0) this.#finishScrape(id)
  }

  #finishScrape (id: number): void {
    const p = this.#scrapes.get(id)
    if (p === undefined) return
    this.#scrapes.delete(id)
    clearTimeout(p.timer)
    this.registry.getMetricsAsJSON().then((own) => {
      p.slot.out.push(['r', p.r, [own, ...p.parts]])
    }, () => {
      p.slot.out.push(['r', p.r, p.parts])
    })
  }

  /** Totals for a worker's /status. */
  totals (): [number, number, number, number] {
    let stored = 0
    for (const ch of this.core.registry.values()) stored += ch.buffer.size
    let subscribers = 0
    for (const w of this.workers) subscribers += w.subscribers
    return [this.core.stats.published, stored, this.core.registry.size, subscribers]
  }

  async stop (signal: NodeJS.Signals, graceMs: number): Promise<void> {
    this.#stopping = true
    this.core.stop()
    const exits: Array<Promise<void>> = []
    for (const w of this.workers) {
      const child = w.child
      if (child === null || child.exitCode !== null) continue
      exits.push(new Promise((resolve) => child.once('exit', () => resolve())))
      child.kill(signal)
    }
    const timer = setTimeout(() => { for (const w of this.workers) w.child?.kill('SIGKILL') }, graceMs)
    await Promise.all(exits)
    clearTimeout(timer)
  }
}

// ---- worker: its end of the IPC channel, whatever the engine ----------------------------------

/**
 * A worker's link to the primary: one batched send per turn out, entries dispatched in order in.
 * Answers ('r') and node-wide metrics ('mq') are handled here for every engine; the rest goes to
 * the worker engine (sequencer mode). With Redis the link carries only metrics.
 */
export class WorkerLink {
  readonly out: Outbox<Up>
  /** The worker engine's entries (m, d, a, snap, totals, rev). */
  onEntry: ((e: Down) => void) | null = null
  /** This worker's metrics, for the primary's node-wide scrape. */
  metrics: Metrics | null = null
  readonly #pending = new Map<number, (v: unknown) => void>()
  #seq = 0

  constructor () {
    this.out = new Outbox<Up>((batch) => { if (process.connected) process.send!(batch) })
    process.on('message', (batch: Down[]) => {
      for (const e of batch) this.#dispatch(e)
    })
    // the primary going away ends this worker
    process.on('disconnect', () => process.exit(0))
  }

  request<T> (entry: (r: number) => Up): Promise<T> {
    const r = ++this.#seq
    return new Promise<T>((resolve) => {
      this.#pending.set(r, resolve as (v: unknown) => void)
      this.out.push(entry(r))
    })
  }

  /** Every process's metrics as JSON (the primary's first), for Metrics.render. */
  nodeMetrics (): Promise<MetricsJson[]> {
    return this.request<MetricsJson[]>((r) => ['mq', r])
  }

  #dispatch (e: Down): void {
    switch (e[0]) {
      case 'r': {
        const resolve = this.#pending.get(e[1])
        this.#pending.delete(e[1])
        resolve?.(e[2])
        return
      }
      case 'mq': {
        const id = e[1]
        const m = this.metrics
        if (m === null) this.out.push(['mj', id, []])
        else m.json().then((json) => { this.out.push(['mj', id, json]) }, () => { this.out.push(['mj', id, []]) })
        return
      }
      default:
        this.onEntry?.(e)
    }
  }
}

// ---- worker: the engine that asks the sequencer -----------------------------------------------

export class WorkerEngine implements Engine {
  readonly name = 'workers'
  readonly #core: Core
  readonly #link: WorkerLink
  /** Subscribers whose live fan-out this engine paused until they are counted (long-poll). */
  readonly #paused = new WeakSet<Subscriber>()
  /** Subscribers waiting for the sequencer to count them, in the order they were sent. */
  #awaiting: Subscriber[] = []
  #awaitHead = 0
  #totals: [number, number, number, number] | null = null
  #primaryReady: (() => void) | null = null
  readonly ready: Promise<void>

  constructor (core: Core, link: WorkerLink) {
    this.#core = core
    this.#link = link
    this.ready = new Promise((resolve) => { this.#primaryReady = resolve })
    link.onEntry = (e) => { this.#onEntry(e) }
    setInterval(() => {
      link.out.push(['stats', core.table.size, core.stats.delivered.reduce((a, b) => a + b, 0)])
    }, 1000).unref()
  }

  #request<T> (entry: (r: number) => Up): Promise<T> {
    return this.#link.request<T>(entry)
  }

  async publish (key: string, data: Buffer, contentType: string | null, event: string | null, idempotencyKey: string | null = null): Promise<PublishResult> {
    const r = await this.#request<PublishResult>((r) => ['pub', r, key, data, contentType, event, idempotencyKey])
    if (r.replayed !== true) this.#core.stats.published++
    return r
  }

  info (key: string): Promise<ChannelInfo | null> {
    return this.#request<ChannelInfo | null>((r) => ['info', r, key])
  }

  delete (key: string): Promise<ChannelInfo | null> {
    return this.#request<ChannelInfo | null>((r) => ['del', r, key])
  }

  registered (sub: Subscriber): boolean {
    this.#link.out.push(['sub', sub.channels.map((c) => c.key), 1])
    this.#awaiting.push(sub)
    // Until it is counted its replica may still be filled ('load'), and live messages after the
    // load may arrive before the ack: a parked long-poll must not take one of those before the
    // loaded buffer (it would skip a message). Live fan-out skips it until ready().
    if (this.#core.pauseLive(sub)) this.#paused.add(sub)
    return false
  }

  unregistered (sub: Subscriber): void {
    this.#link.out.push(['sub', sub.channels.map((c) => c.key), -1])
    // its last subscriber here left: the replica is no longer kept current, so it goes
    for (const ch of sub.channels) if (this.#core.localSubscribers(ch.key) === 0) this.#core.dropReplica(ch.key)
  }

  async revoke (kind: 'sub' | 'jti', value: string, at: number, until: number): Promise<{ ended: number, complete: boolean }> {
    const [ended, complete] = await this.#request<[number, boolean]>((r) => ['rev', r, kind, value, at, until])
    return { ended, complete }
  }

  touched (keys: readonly string[]): void {
    this.#link.out.push(['touch', keys.slice()])
  }

  totals (): { published: number, stored: number, channels: number, subscribers: number } | null {
    const t = this.#totals
    return t === null ? null : { published: t[0], stored: t[1], channels: t[2], subscribers: t[3] }
  }

  #onEntry (e: Down): void {
    const core = this.#core
    {
      switch (e[0]) {
        case 'm': {
          // sent while this worker had subscribers there; one that left since drops it
          if (core.localSubscribers(e[1]) > 0) core.applyMessage(e[1], e[2], e[3], toBuffer(e[4]), e[5], e[6], e[7])
          break
        }
        case 'load': {
          const [key, lastTime, lastTag, floorTime, floorTag, msgs] = e[1]
          // the subscriber that asked for it may have left already: then its -1 follows
          if (core.localSubscribers(key) > 0) core.restoreChannel(key, lastTime, lastTag, floorTime, floorTag, msgs.map((m) => [m[0], m[1], toBuffer(m[2]), m[3], m[4], m[5]] as const))
          break
        }
        case 'd':
          core.deleteLocal(e[1])
          break
        case 'a':
          for (let i = 0; i < e[1]; i++) {
            const sub = this.#awaiting[this.#awaitHead]!
            this.#awaiting[this.#awaitHead++] = undefined as unknown as Subscriber
            if (this.#paused.delete(sub)) this.#core.resumeLive(sub)
            if ((sub.flags & F_CLOSED) === 0) sub.transport.ready(sub)
          }
          if (this.#awaitHead > 1024 && this.#awaitHead * 2 > this.#awaiting.length) {
            this.#awaiting = this.#awaiting.slice(this.#awaitHead)
            this.#awaitHead = 0
          }
          break
        case 'hello':
          this.#primaryReady?.()
          this.#primaryReady = null
          break
        case 'totals':
          this.#totals = [e[1], e[2], e[3], e[4]]
          break
        case 'rev': {
          const n = core.revokeLocal(e[2], e[3], e[4], e[5])
          // id 0: a past revocation replayed to a re-forked worker, nobody waits for a count
          if (e[1] !== 0) this.#link.out.push(['revd', e[1], n])
          break
        }
      }
    }
  }
}
