// Worker processes on one host (`parkline serve --workers N`).
//
// Every channel has an owner: worker hash(channel) mod N. The owner assigns the channel's ids,
// keeps its authoritative buffer, its Idempotency-Keys and its exact subscriber count (its own
// subscribers plus those each other worker reports), and sends each message only to the workers
// with subscribers there. Workers talk to each other directly over a mesh of Unix sockets
// (lib/mesh.ts), in batches: one write per peer per event-loop turn. A publish that lands on the
// channel's owner is handled in place, as in one process; one that lands elsewhere costs one hop
// to the owner and the answer back. The primary is on no publish's path: it forks and restarts the
// workers, and gathers what is node-wide (revocations, metrics, /status totals).
//
//   worker A ──pub──▶ owner of ch (ids, buffer, counts) ──batch [load, m, a, r…]──▶ workers with subscribers on ch
//
// A worker's first subscriber on a channel it does not own gets the owner's buffer ('load') before
// it is counted; from then on the worker's replica gets every message (applied and fanned out,
// framed once per worker) until its last subscriber there leaves, and for REPLICA_LINGER_MS after
// (kept, uncounted): a long-poll that comes back for the next message finds the replica current,
// not a buffer to load again for every poll.
//
// A worker that dies is forked again, in a later second than its death (so every id it issues is
// above the ids it issued before). While it is away, new subscribers get 503 with Retry-After and
// requests for its channels wait for it (5 s at most, then 503). When it is back, every other
// worker first sends it what it holds of the channels it owns — its subscriber count and its
// replica of the buffer — and the new owner takes the newest replica before it serves anything:
// a channel with subscribers on another worker keeps its buffer. A channel held by its owner only
// loses its buffer with it; a client resuming there gets the gap signal (§11a), as after a restart
// of one process.
import { fork, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, lstatSync, mkdtempSync, readdirSync, rmSync, stat } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { ChannelInfo } from './channel-info.ts'
import { channelInfo } from './channel-info.ts'
import type { Core } from './core.ts'
import { DRAIN_QUIET_MS, OPTIONS, envName, type Credentials } from './config.ts'
import type { Channel } from './channel-registry.ts'
import type { Message } from './message.ts'
import type { Engine, PublishResult, Totals } from './engine.ts'
import { ERRORS, ParklineError } from './errors.ts'
import { IdempotencyKeys, fingerprint, type HeldKey } from './idempotency.ts'
import { formatId } from './message-id.ts'
import { Mesh } from './mesh.ts'
import { readSched, starved, type Sched } from './proc-sched.ts'
import { F_CLOSED, type Subscriber } from './subscriber.ts'
import { whenQuiet } from './stats.ts'
import { appendRevocation, loadRevocations, mergeRevocation, revocationLapsed, type RevocationRow } from './revocation-file.ts'
import { Counter, Registry, collectDefaultMetrics } from 'prom-client'
import type { Metrics, MetricsJson } from './metrics.ts'
import type { Logger } from 'pino'

// ---- wire format ------------------------------------------------------------------------------

/** A worker's answer to new credentials (Primary.reloadCredentials). */
export interface CredentialsTaken { worker: number, changed: string[], error: string | null, unanswered?: true }

/** Worker → primary entries (structured clone, `serialization: 'advanced'`). */
type Up =
  /** subscribers, delivered, published, stored, channels (owned), subscribers per transport (the options' order) */
  | ['stats', number, number, number, number, number, number[]]
  /** Alive: a worker with no counts to report (Redis) says so each STATS_MS, and every worker once as it starts. */
  | ['alive']
  | ['rev', number, 'sub' | 'jti', string, number, number]
  | ['revd', number, number]
  | ['mq', number]
  | ['mj', number, MetricsJson]
  /**
   * A peer (id, pid) took none of what this worker writes to it over a whole check (lib/mesh.ts
   * onStuck): judged by the primary; `full` (true): its queue here is full, end it.
   */
  | ['stuck', number, number, boolean]
  /** This worker listens on the shared port. */
  | ['listening']
  /** Credentials 'creds' number N taken: the names that changed, or why they were refused. */
  | ['credsd', number, string[], string | null]

/** Primary → worker entries. */
type Down =
  | ['r', number, [number, boolean, boolean] | MetricsJson[]]
  // the options as the primary resolved them (JSON, lib/cli.ts): a worker's first entry, before 'hello'
  | ['opts', string]
  | ['hello']
  /** published, stored, channels, subscribers, subscribers per transport: summed over the workers */
  | ['totals', number, number, number, number, number[]]
  | ['rev', number, 'sub' | 'jti', string, number, number]
  | ['mq', number]
  // a drain is over for the whole deployment (no subscriber on any worker, no publish for DRAIN_QUIET_MS)
  | ['finish']
  // the configuration's credentials, read again by the primary (SIGHUP) and checked (lib/access.ts
  // checkReload); answered 'credsd'
  | ['creds', number, Credentials]

/** A buffered message in a snapshot: time, tag, data, content type, event, published at. */
type SnapMessage = [number, number, Uint8Array, string | null, string | null, number]
/** A channel in a snapshot: key, last id, floor, messages. */
/** [key, last time, last tag, floor time, floor tag, messages, the floor is known (Channel.floorKnown)] */
type SnapChannel = [string, number, number, number, number, SnapMessage[], boolean]

/** Worker ↔ worker entries (lib/mesh.ts), applied in the order sent. */
type Peer =
  // to a channel's owner
  | ['pub', number, string, Uint8Array, string | null, string | null, string | null, string?]
  | ['rep', number, string, string, string]
  | ['info', number, string]
  | ['del', number, string]
  /**
   * Subscriptions added or ended. The first `kept` channels (none if absent): with -1, the sender
   * keeps its replica current though its count there may fall to 0 ('unkeep' ends that); with 1,
   * it still holds a current replica, so no 'load' is owed.
   */
  | ['sub', string[], 1 | -1, number?]
  /** Replicas the sender kept with no subscriber (see 'sub') are gone: no more messages for them. */
  | ['unkeep', string[]]
  | ['touch', string[]]
  /**
   * To an owner forked again: this worker's subscribers on one of its channels (0: a replica it
   * keeps with none, #linger), its replica, and the Idempotency-Keys it saw come with messages there.
   */
  | ['own', SnapChannel, number, HeldKey[]?]
  /** Everything this worker holds of the peer's channels was sent (the first thing on a link). */
  | ['synced']
  /**
   * The sender's clock reached second S: everything it published before was sent, and every id it
   * assigns from now on is of second S or later (the fence, Core.fence). At each second, and first
   * on a link.
   */
  | ['t', number]
  // from a channel's owner
  /** A message; with the Idempotency-Key and fingerprint it was published with, if any. */
  | ['m', string, number, number, Uint8Array, string | null, string | null, number, string?, string?]
  | ['d', string]
  | ['a', number]
  | ['r', number, PublishResult | ChannelInfo | null]
  /** A channel's buffer for a new replica, with the Idempotency-Keys of its messages. */
  | ['load', SnapChannel, HeldKey[]?]
  // maxSubscribersPerUser, to the user's owner (#userOwner)
  /**
   * The sender's subscribers now, per token `sub` the receiver owns whose count changed since it
   * last said (0: none left); first on a link, every such user it holds.
   */
  | ['uc', Array<[string, number]>]
  /**
   * Room for one more subscriber of this user? The sender's subscribers of it now, this one (just
   * registered there) included, as in a 'uc'. Answered in turn with the 'sub' acks: an 'a', or a 'un'.
   */
  | ['ur', string, number]
  // from a user's owner
  /** The 'ur' answered at this place in the acks is refused: 429 (the limit), 503 (a peer's count unknown). */
  | ['un', number]

/** The ids a snapshot buffers: the keys handed on with it are those of its messages. */
function buffered (snap: SnapChannel): string[] {
  return snap[5].map((m) => formatId(m[0], m[1]))
}

/**
 * Message data as a Buffer of its own: a deserialized view into a 64 KiB read would keep that
 * whole read alive for as long as the message stays buffered.
 */
function toBuffer (u: Uint8Array): Buffer {
  if (u.byteLength * 2 < u.buffer.byteLength) return Buffer.from(u)
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength)
}

/** Put before a user's name to hash it for its owner (maxSubscribersPerUser): a user and a channel of one name may have different owners. */
const USER_KEY = '\u0000user\u0000'

/** The worker that counts a user's subscribers on every worker (maxSubscribersPerUser), among n. */
export function userOwnerOf (user: string, n: number): number {
  return ownerOf(USER_KEY + user, n)
}

/** The owner of a channel among n workers: FNV-1a of its id bytes, mod n. */
export function ownerOf (key: string, n: number): number {
  let h = 0x811c9dc5
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return (h >>> 0) % n
}

/** Batches entries into one `send` per event-loop turn. */
class Outbox<T> {
  #entries: T[] = []
  #scheduled = false
  readonly #send: (batch: T[]) => void

  constructor (send: (batch: T[]) => void) {
    this.#send = send
  }

  /** What waits to be sent is dropped (it was for a process that is gone). */
  drop (): void {
    this.#entries = []
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

function noop (): void {}

/**
 * Socket directories of primaries that no longer run (killed with their workers at once: nobody
 * was left to remove them), of this user only.
 */
function removeStaleMeshDirs (tmp: string): void {
  let names: string[]
  try { names = readdirSync(tmp) } catch { return }
  for (const name of names) {
    const m = /^parkline-(\d+)-[A-Za-z0-9]{6}$/.exec(name)
    if (m === null) continue
    try { process.kill(Number(m[1]), 0); continue } catch (err) { if ((err as NodeJS.ErrnoException).code !== 'ESRCH') continue }
    const dir = path.join(tmp, name)
    try {
      const st = lstatSync(dir)
      if (st.isDirectory() && (process.getuid === undefined || st.uid === process.getuid())) rmSync(dir, { recursive: true, force: true })
    } catch {}
  }
}

/**
 * The environment a worker is forked with: the primary's, less its options' variables
 * (PARKLINE_API_KEY, PARKLINE_REDIS_URL...). A worker takes the options as the primary resolved
 * them, over IPC; those variables would only repeat them, secrets included, in its
 * /proc/<pid>/environ.
 */
function workerEnv (): NodeJS.ProcessEnv {
  const env = { ...process.env }
  for (const o of OPTIONS) delete env[envName(o.name)]
  return env
}

/**
 * A worker runs only under its primary, with the socket directory and key it was given: a
 * directory of this user, mode 0700, not a link. Anything else ends it (a hand-run
 * `parkline worker` must not listen or dial where others could).
 */
function checkMeshDir (link: WorkerLink): void {
  let why = ''
  // (run by hand, with no IPC channel: refused before, lib/cli.ts)
  if (link.meshKey.length !== 32 || link.mesh === '') why = 'no mesh directory or key from the primary'
  else {
    try {
      const st = lstatSync(link.mesh)
      if (!st.isDirectory() || (st.mode & 0o777) !== 0o700 || (process.getuid !== undefined && st.uid !== process.getuid())) why = `${link.mesh} is not a 0700 directory of this user`
    } catch {
      why = `${link.mesh} is missing`
    }
  }
  // under a primary, not the configuration (the primary makes that directory): a fresh start
  // makes a new one (exit 1)
  if (why !== '') throw new ParklineError('PKL_ERR_WORKER_ENV', `parkline worker: ${why}`, 500)
}

/**
 * The counters and histograms of a scrape's part (what only grows), for the sum of dead workers;
 * parts given together (`flat()` of several) are merged family by family, values with the same
 * labels added, or the larger kept where the family's aggregator is 'max' (prom-client's JSON:
 * counters `value`, histograms a `_bucket`/`_sum`/`_count` each).
 */
function monotonic (json: MetricsJson): MetricsJson {
  const families = new Map<string, MetricsJson[number]>()
  for (const m of json) {
    const type = String(m.type)
    if (type !== 'counter' && type !== 'histogram') continue
    const f = families.get(m.name)
    if (f === undefined) {
      families.set(m.name, { ...m, values: m.values.map((v) => ({ ...v })) })
      continue
    }
    for (const v of m.values) {
      const key = (v as { metricName?: string }).metricName + JSON.stringify(v.labels)
      const same = f.values.find((x) => (x as { metricName?: string }).metricName + JSON.stringify(x.labels) === key)
      if (same === undefined) f.values.push({ ...v })
      // a family every worker counts alike (the store's faults) merges as its scrape does: the most
      else same.value = f.aggregator === 'max' ? Math.max(same.value, v.value) : same.value + v.value
    }
  }
  return [...families.values()]
}

function endUnavailable (sub: Subscriber): void {
  if ((sub.flags & F_CLOSED) === 0) sub.transport.end(sub, 503)
}

function unavailable (): ParklineError {
  return new ParklineError(ERRORS.STORE_UNAVAILABLE.code, ERRORS.STORE_UNAVAILABLE.message, ERRORS.STORE_UNAVAILABLE.statusCode)
}

// ---- primary: forks the workers, gathers what is node-wide -------------------------------------

interface WorkerSlot {
  id: number
  child: ChildProcess | null
  out: Outbox<Down>
  subscribers: number
  /** Its subscribers per transport, in the options' order (every worker has the same transports). */
  transports: number[]
  delivered: number
  /** Of the channels this worker owns: messages published, stored, channels. */
  published: number
  stored: number
  channels: number
  restarts: number
  /** Deaths in a row of incarnations that lived less than STABLE_MS: the crash-loop backoff's step. */
  quickDeaths: number
  /** When this incarnation was forked (performance.now()). */
  forkedAt: number
  /** This incarnation said it listens. */
  listening: boolean
  /** When this incarnation last said it is alive ('stats' or 'alive'; performance.now(), 0 before the first). */
  statsAt: number
  /** While it has said nothing yet (statsAt 0): when its silence started, its fork or the end of the primary's own stall. */
  silentFrom: number
  /** Its scheduling state when its silence first passed 2 reports (lib/proc-sched.ts), null while it reports. */
  silentSched: Sched | null
  /** Runnable at every reading of its present silence (one a second). */
  silentRunnable: boolean
  /** Its present silence was let pass once already (a starved worker, logged once). */
  spared: boolean
  /** A peer's report that it reads no mesh link was logged in its present silence. */
  meshReported: boolean
  /** Incarnations in a row that died before they listened. */
  failedStarts: number
  /** This incarnation's part of the last node-wide scrape (null before its first). */
  metrics: MetricsJson | null
}

/**
 * Incarnations of one worker in a row that die before they listen, past which the primary gives
 * up (a port taken by another program, a setting a worker refuses): a crash loop that can never
 * serve is an error for the operator, not something to retry every 5 s for ever.
 */
const FAILED_STARTS = 5

/** How often a worker says it is alive to the primary: its counts ('stats'), or with Redis 'alive'. */
const STATS_MS = 1000
/**
 * A worker that said it is alive (its counts, or 'alive') and then sends nothing this long (its
 * event loop stuck, the process stopped) is ended and forked again: with nothing waiting for it
 * in user space the mesh's progress check (lib/mesh.ts) would not see it, and the multiplexed
 * subscribers of its channels on the other workers would wait for it as long as it stays so.
 */
export const SILENT_MS = 10_000

/**
 * A silent worker that spent at least half of its silence waiting for a core (lib/proc-sched.ts,
 * read each second from its second silent second on) is not stuck but starved, the host having
 * more busy processes than cores (a broadcast to a million subscribers over 56 workers on 2 cores
 * takes each worker's turn 10 s or more of wall time): it is judged again each second and ended
 * once it no longer waited most of its silence, or once silent this long. A stopped one (SIGSTOP)
 * waits for nothing and is ended at SILENT_MS.
 */
export const SILENT_MAX_MS = 60_000

/**
 * A worker that has sent the primary nothing since it was forked is ended this long after its fork,
 * unless it waited for a core most of that time (judged as SILENT_MAX_MS says). Its first word
 * leaves from bin/parkline.ts as its Node starts, before the rest of its modules load; a start on a
 * host busy with many starting workers, or reading from a slow disk, can still take tens of seconds
 * (56 workers from source on 2 cores: 49 s until the last listened).
 */
export const SILENT_START_MS = 60_000
/** A starting worker spared as starved of a core (as SILENT_MAX_MS for a silence later in its life) is ended once silent this long since its fork. */
export const SILENT_START_MAX_MS = 300_000

/** A worker that lived this long before it died was not crash-looping: its next restart waits no backoff. */
export const STABLE_MS = 30_000

/**
 * How long after a worker's death (at `now`, ms) the primary forks it again, `quickDeaths` being
 * the deaths in a row of incarnations that lived less than STABLE_MS (this one included): a crash
 * loop backs off 100 ms a death, up to 5 s, and a worker that lived STABLE_MS or more (quickDeaths
 * 0) pays none, however often it died over the process's life. Either way the new incarnation
 * starts in a later second than the old one died, so its ids (seconds:tag) are above every id the
 * old one issued.
 */
export function restartDelay (quickDeaths: number, now: number): number {
  return Math.max(Math.min(5000, 100 * quickDeaths), 1001 - (now % 1000))
}

/** A worker's quickDeaths once an incarnation that lived `livedMs` died: one more, or 0 for one that lived STABLE_MS. */
export function quickDeathsAfter (quickDeaths: number, livedMs: number): number {
  return livedMs < STABLE_MS ? quickDeaths + 1 : 0
}

export class Primary {
  readonly workers: WorkerSlot[] = []
  /** Revocations decided so far (kind, value, at, until): a re-forked worker gets them too. */
  readonly #revoked = new Map<string, RevocationRow>()
  /** Revocations broadcast to the workers, waiting for each one's count; `saved`: written to revocationsFile (or none is set). */
  readonly #revoking = new Map<number, { slot: WorkerSlot, r: number, waiting: Set<WorkerSlot>, total: number, timer: NodeJS.Timeout, saved: boolean }>()
  /** revocationsFile ('' = none): each revocation appended before it is answered. */
  readonly #revocationsFile: string
  #revSeq = 0
  /** Node-wide scrapes waiting for every worker's metrics. */
  readonly #scrapes = new Map<number, { slot: WorkerSlot, r: number, waiting: Set<WorkerSlot>, parts: Map<WorkerSlot, MetricsJson>, timer: NodeJS.Timeout }>()
  #scrapeSeq = 0
  /** The primary's own metrics (process, worker restarts), first in every node-wide scrape. */
  readonly registry = new Registry()
  readonly #log: Logger | null
  #stopping = false
  readonly #script: string
  /**
   * The options as resolved (JSON, lib/cli.ts), each worker's first entry over IPC. Not in its
   * environment: one string there is at most 128 KiB (Linux MAX_ARG_STRLEN), which a long apiKey
   * list passes, and a fork past it fails (E2BIG).
   */
  #options: string
  /** Node flags of the workers (the primary's, with V8's thread count for the host: lib/gc-threads.ts). */
  readonly #execArgv: string[] | undefined
  /** What proves a mesh peer is one of these workers (lib/mesh.ts), given to each in its environment. */
  readonly #meshKey = randomBytes(32).toString('hex')
  /** The workers' socket directory (mode 0700), removed when the primary exits. */
  readonly #meshDir: string
  /** Totals published in the last 'totals': published only grows, even past a worker's death. */
  #publishedGone = 0

  constructor (script: string, log: Logger | null = null, execArgv?: string[], options = '{}') {
    this.#script = script
    this.#options = options
    // the revocations kept across restarts: every worker it forks gets them (a file that holds
    // anything else stops the start, lib/revocation-file.ts)
    const file = (JSON.parse(options) as { revocationsFile?: string }).revocationsFile ?? ''
    this.#revocationsFile = file
    if (file !== '') for (const row of loadRevocations(file, Math.floor(Date.now() / 1000))) mergeRevocation(this.#revoked, row)
    this.#execArgv = execArgv
    this.#log = log
    // a socket path is at most 107 bytes: a long TMPDIR would leave no worker able to listen
    const tmp = os.tmpdir().length <= 64 ? os.tmpdir() : '/tmp'
    removeStaleMeshDirs(tmp)
    const dir = mkdtempSync(path.join(tmp, `parkline-${process.pid}-`))
    chmodSync(dir, 0o700) // whatever the umask: the workers check it

    this.#meshDir = dir
    process.on('exit', () => { try { rmSync(dir, { recursive: true, force: true }) } catch {} })
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
    // libuv's thread pool now, while threads can be made: it starts at its first use, and a thread
    // it cannot make then aborts the process (at the user's process limit, the first use came as a
    // worker died, and took the primary and the deployment down with it)
    stat(this.#meshDir, noop)
    // workers' /status shows deployment totals, refreshed once a second
    setInterval(() => this.#broadcast(['totals', ...this.totals()]), 1000).unref()
    setInterval(() => { this.#endSilent() }, STATS_MS).unref()
    for (let i = 0; i < n; i++) {
      const slot: WorkerSlot = { id: i, child: null, out: null as unknown as Outbox<Down>, subscribers: 0, transports: [], delivered: 0, published: 0, stored: 0, channels: 0, restarts: 0, quickDeaths: 0, forkedAt: 0, listening: false, statsAt: 0, silentFrom: 0, silentSched: null, silentRunnable: false, spared: false, meshReported: false, failedStarts: 0, metrics: null }
      slot.out = new Outbox<Down>((batch) => { if (slot.child !== null && slot.child.connected) slot.child.send(batch) })
      this.workers.push(slot)
    }
    // one a turn: a stop signal, or a message from the first ones, is handled meanwhile (a stop
    // forks no more)
    const forkFrom = (i: number): void => {
      if (this.#stopping || i >= this.workers.length) return
      this.#fork(this.workers[i]!)
      setImmediate(forkFrom, i + 1)
    }
    forkFrom(0)
  }

  #silentCheckedAt = 0

  /** Workers silent past SILENT_MS are ended (forked again by #onExit, as after any death). */
  #endSilent (): void {
    if (this.#stopping) return
    const now = performance.now()
    const late = this.#silentCheckedAt > 0 && now - this.#silentCheckedAt > 3 * STATS_MS
    this.#silentCheckedAt = now
    if (late) {
      // this process was the one that stood still (stopped, a stalled loop, the host suspended):
      // what the workers sent meanwhile is not read yet; they are judged from now on
      for (const w of this.workers) {
        if (w.statsAt > 0) w.statsAt = now
        w.silentFrom = now
        w.silentSched = null
        w.spared = false
        w.meshReported = false
      }
      return
    }
    for (const w of this.workers) {
      const child = w.child
      if (child === null || child.exitCode !== null || child.signalCode !== null || child.killed) continue
      // one that never said a word is starting (loading its modules, maybe from a slow disk or on
      // a host busy with many starting workers): its silence counts from its fork, and is judged
      // the same way past SILENT_START_MS
      const starting = w.statsAt === 0
      const silent = now - (starting ? w.silentFrom : w.statsAt)
      if (silent < 2 * STATS_MS) continue
      // the baseline its silence is judged from, once it is late, then a reading a second
      const sched = readSched(child.pid!, now)
      if (w.silentSched === null) {
        w.silentSched = sched
        w.silentRunnable = sched?.runnable === true
      } else w.silentRunnable &&= sched?.runnable === true
      if (silent < (starting ? SILENT_START_MS : SILENT_MS)) continue
      if (silent < (starting ? SILENT_START_MAX_MS : SILENT_MAX_MS) && starved(w.silentSched, sched, w.silentRunnable)) {
        if (!w.spared) {
          w.spared = true
          const from = w.silentSched!
          this.#log?.warn({ worker: w.id, workerPid: child.pid, silentMs: Math.round(silent), judgedMs: Math.round(sched!.at - from.at), onCoreMs: Math.round(sched!.runMs - from.runMs), waitedForCoreMs: Math.round(sched!.waitMs - from.waitMs), runnableThroughout: w.silentRunnable },
            starting
              ? 'worker sent nothing in the 60 s since it was forked, waiting for a core most of that time (the host has more busy processes than cores): judged again each second, ended once it no longer waits for a core most of its silence, or at 300 s'
              : 'worker sent nothing for 10 s, waiting for a core most of that time (the host has more busy processes than cores): judged again each second, ended once it no longer waits for a core most of its silence, or at 60 s')
        }
        continue
      }
      if (starting) this.#log?.warn({ worker: w.id, workerPid: child.pid, silentMs: Math.round(silent) }, 'worker sent nothing in the 60 s since it was forked (stuck or stopped while starting): ending it')
      else this.#log?.warn({ worker: w.id, workerPid: child.pid, silentMs: Math.round(silent) }, 'worker sent nothing for 10 s (its event loop stuck, or the process stopped): ending it')
      w.statsAt = 0
      w.silentSched = null
      child.kill('SIGKILL')
    }
  }

  /**
   * Worker `w` took none of what `by` wrote to it over a whole mesh check (lib/mesh.ts STUCK_MS),
   * said again at each check it still takes none. A report about a worker that still reports its
   * counts (within 2 s) is let go: its reports leave after the turn's reads, so it reads its
   * links (what the report saw had passed). One that sends the primary nothing either is judged
   * by its silence (#endSilent: ended at SILENT_MS unless starved of a core; one that has said
   * nothing since its fork, by the start rule). `full`: `by` can queue no more for it, so it is
   * ended whatever it is doing (its replicas would miss what could not be queued). Its death heals every link to it
   * (each side sees it go, then come back).
   */
  #meshStuck (w: WorkerSlot, child: ChildProcess, by: WorkerSlot, full: boolean): void {
    if (this.#stopping) return
    const now = performance.now()
    if (!full) {
      // one that never said a word is starting, judged by #endSilent's start rule (SILENT_START_MS)
      if (w.statsAt === 0 || now - w.statsAt < 2 * STATS_MS) return
      if (!w.meshReported) {
        w.meshReported = true
        this.#log?.warn({ worker: w.id, workerPid: child.pid, reportedBy: by.id }, 'worker took nothing from a mesh link over a check and sends nothing either: judged by its silence')
      }
      return
    }
    this.#log?.warn({ worker: w.id, workerPid: child.pid, reportedBy: by.id }, 'worker took nothing from a mesh link until its queue there was full; ending it')
    w.statsAt = 0
    w.silentSched = null
    child.kill('SIGKILL')
  }

  #fork (slot: WorkerSlot): void {
    let child: ChildProcess
    try {
      child = fork(this.#script, ['worker'], {
        serialization: 'advanced',
        execArgv: this.#execArgv ?? process.execArgv,
        env: { ...workerEnv(), PARKLINE_WORKER_ID: String(slot.id), PARKLINE_WORKER_COUNT: String(this.workers.length), PARKLINE_MESH: this.#meshDir, PARKLINE_MESH_KEY: this.#meshKey },
        stdio: 'inherit'
      })
    } catch (err) {
      // Node throws at once, instead of emitting 'error' (below), for a spawn error other than
      // EACCES, EAGAIN, EMFILE, ENFILE and ENOENT (E2BIG, ENOMEM, ETXTBSY): uncaught, it ended the
      // primary, and with it every worker. No process: a failed start, as below
      slot.forkedAt = performance.now()
      slot.listening = false
      this.#log?.error({ worker: slot.id, error: (err as Error).message }, 'worker could not be forked')
      this.#ended(slot, undefined, null, null)
      return
    }
    slot.child = child
    slot.forkedAt = performance.now()
    slot.listening = false
    slot.statsAt = 0
    slot.silentFrom = slot.forkedAt
    slot.silentSched = null
    slot.spared = false
    slot.meshReported = false
    this.#log?.info({ worker: slot.id, workerPid: child.pid, restarts: slot.restarts }, slot.restarts === 0 ? 'worker forked' : 'worker forked again')
    child.on('error', (err) => {
      // no process at all (EAGAIN at the user's process limit, EMFILE): no 'exit' follows, so its
      // slot would never be forked again, and a deployment still starting would never serve.
      // (Otherwise: a send to a worker that just died, whose 'exit' handles the rest.)
      if (child.pid !== undefined) return
      this.#log?.error({ worker: slot.id, error: err.message }, 'worker could not be forked')
      this.#onExit(slot, child)
    })
    child.on('message', (batch: Up[]) => this.#onBatch(slot, batch))
    child.on('exit', () => this.#onExit(slot, child))
    // what was queued for the process before it (a reply, totals, credentials) is not this one's:
    // its options are its first entry, then 'hello'
    slot.out.drop()
    slot.out.push(['opts', this.#options])
    slot.out.push(['hello'])
    const now = Math.floor(Date.now() / 1000)
    this.#pruneRevoked(now)
    for (const [kind, value, at, until] of this.#revoked.values()) slot.out.push(['rev', 0, kind, value, at, until])
  }

  /**
   * Drops the jti revocations whose tokens can no longer be accepted (exp plus the most jwtLeeway
   * passed); a user's, and a jti's held for good (until 0), stay.
   */
  #pruneRevoked (now: number): void {
    for (const [key, row] of this.#revoked) if (revocationLapsed(row, now)) this.#revoked.delete(key)
    this.#revokedPruneAt = Math.max(1024, this.#revoked.size * 2)
  }

  /** The size of #revoked at which a 'rev' prunes it next. */
  #revokedPruneAt = 1024

  #onExit (slot: WorkerSlot, child: ChildProcess): void {
    if (slot.child !== child) return
    slot.child = null
    // its counters as last scraped stay in every later scrape: a node-wide sum that went down when
    // a worker died would read as a counter reset, and rate() would count the survivors' whole
    // totals again (what it counted since that scrape is lost, never counted twice)
    if (slot.metrics !== null) this.#gone.push(monotonic(slot.metrics))
    slot.metrics = null
    // a scrape it answered that is still waiting for others: its part is in #gone now, not twice
    for (const p of this.#scrapes.values()) p.parts.delete(slot)
    slot.subscribers = 0
    slot.transports = []
    this.#publishedGone += slot.published
    slot.published = 0
    slot.stored = 0
    slot.channels = 0
    // a revocation waiting for this worker's count gets none: it had no subscribers left
    for (const id of [...this.#revoking.keys()]) this.#revoked1(id, slot, 0)
    for (const id of [...this.#scrapes.keys()]) this.#scraped(id, slot, [])
    this.#ended(slot, child.pid, child.exitCode, child.signalCode)
  }

  /** A worker's process is gone (or was never made: no pid): forked again, or the deployment given up on. */
  #ended (slot: WorkerSlot, pid: number | undefined, exitCode: number | null, signal: NodeJS.Signals | null): void {
    if (this.#stopping) return
    // a SIGHUP to the process group in a worker's first milliseconds, before it could take one
    // (lib/early-signals.ts): not the worker's failure, nor a crash; it is forked again at once
    if (signal === 'SIGHUP' && !slot.listening) {
      this.#log?.warn({ worker: slot.id, workerPid: pid, signal }, 'a SIGHUP ended a worker still starting; forking it again')
      setTimeout(() => { if (!this.#stopping) this.#fork(slot) }, 100)
      return
    }
    if (!slot.listening) {
      slot.failedStarts++
      // at start-up every worker must come up; later, a worker that keeps failing to is given up on
      if (!this.#allListened || slot.failedStarts >= FAILED_STARTS) {
        this.#log?.error({ worker: slot.id, workerPid: pid, exitCode, signal, failedStarts: slot.failedStarts }, this.#allListened ? `worker exited ${slot.failedStarts} times in a row before it listened: stopping` : 'worker exited before it listened: stopping')
        this.onGiveUp?.(exitCode)
        return
      }
    }
    slot.restarts++
    const now = Date.now()
    // lived: on the monotonic clock (a wall-clock step must not make a stable worker a quick death)
    slot.quickDeaths = quickDeathsAfter(slot.quickDeaths, performance.now() - slot.forkedAt)
    const delay = restartDelay(slot.quickDeaths, now)
    this.#log?.warn({ worker: slot.id, workerPid: pid, exitCode, signal, restarts: slot.restarts, quickDeaths: slot.quickDeaths, delayMs: delay }, 'worker died; forking it again')
    // (not unref'd: with every worker gone, this timer is what keeps the primary alive)
    setTimeout(() => { if (!this.#stopping) this.#fork(slot) }, delay)
  }

  #broadcast (entry: Down): void {
    for (const w of this.workers) w.out.push(entry)
  }

  /**
   * New credentials for every worker (SIGHUP): sent to the running ones, and in `options` (the
   * resolved options with them, JSON) to any forked again later. Resolves, once each running
   * worker answered (5 s at most), to what each said: the names that changed for it, or why it
   * refused them (`unanswered` past the wait: a stopped worker takes them when it reads again, and
   * its answer is logged then; one that died meanwhile is forked again with the new options).
   */
  reloadCredentials (creds: Credentials, options: string): Promise<CredentialsTaken[]> {
    this.#options = options
    const id = ++this.#credsSeq
    const waiting = this.workers.filter((w) => w.child !== null)
    return new Promise((resolve) => {
      const answers = new Map<number, CredentialsTaken>()
      const finish = (): void => {
        clearTimeout(timer)
        this.#credsWaits.delete(id)
        resolve(waiting.map((w) => answers.get(w.id) ?? { worker: w.id, changed: [], error: null, unanswered: true }))
      }
      const timer = setTimeout(finish, 5000)
      timer.unref()
      this.#credsWaits.set(id, (slot, changed, error) => {
        answers.set(slot.id, { worker: slot.id, changed, error })
        if (waiting.every((w) => answers.has(w.id))) finish()
      })
      for (const w of waiting) w.out.push(['creds', id, creds])
      if (waiting.length === 0) finish()
    })
  }

  #credsSeq = 0
  readonly #credsWaits = new Map<number, (slot: WorkerSlot, changed: string[], error: string | null) => void>()

  /** Every worker listened once (the deployment serves): called once. */
  onListening: (() => void) | null = null
  /** A worker cannot start (FAILED_STARTS): the caller stops the workers and exits non-zero (the last one's exit status given). */
  onGiveUp: ((workerStatus: number | null) => void) | null = null
  #allListened = false

  /** `slot`'s worker said it is alive: its silence, if any, is over. */
  #heard (slot: WorkerSlot): void {
    slot.statsAt = performance.now()
    slot.silentSched = null
    slot.spared = false
    slot.meshReported = false
  }

  #onBatch (slot: WorkerSlot, batch: Up[]): void {
    for (const e of batch) {
      switch (e[0]) {
        case 'listening':
          slot.listening = true
          slot.failedStarts = 0
          if (!this.#allListened && this.workers.every((w) => w.listening)) {
            this.#allListened = true
            this.onListening?.()
          }
          break
        case 'alive':
          this.#heard(slot)
          break
        case 'stats':
          this.#heard(slot)
          slot.subscribers = e[1]
          slot.transports = e[6]
          slot.delivered = e[2]
          slot.published = e[3]
          slot.stored = e[4]
          slot.channels = e[5]
          break
        case 'rev': {
          // every live worker ends its subscribers of that user or token and says how many
          const [, r, kind, value, at, until] = e
          // one row per user or token, as a worker's own list merges them; none dropped to make
          // room (the worker that took the request refused it past maxRevocations)
          mergeRevocation(this.#revoked, [kind, value, at, until])
          if (this.#revoked.size >= this.#revokedPruneAt) this.#pruneRevoked(Math.floor(Date.now() / 1000))
          let saved = true
          if (this.#revocationsFile !== '') {
            try {
              appendRevocation(this.#revocationsFile, [kind, value, at, until])
            } catch (err) {
              // in force on every worker all the same; the answer says it was not kept
              saved = false
              this.#log?.error({ revoked: { [kind]: value }, error: (err as Error).message }, 'revocation in force but not saved: revocationsFile could not be written, so a restart would forget it')
            }
          }
          const id = ++this.#revSeq
          const waiting = new Set(this.workers.filter((w) => w.child !== null))
          const timer = setTimeout(() => { this.#finishRevoke(id) }, 5000)
          timer.unref()
          this.#revoking.set(id, { slot, r, waiting, total: 0, timer, saved })
          for (const w of waiting) w.out.push(['rev', id, kind, value, at, until])
          if (waiting.size === 0) this.#finishRevoke(id)
          break
        }
        case 'revd':
          this.#revoked1(e[1], slot, e[2])
          break
        case 'credsd': {
          const wait = this.#credsWaits.get(e[1])
          if (wait !== undefined) wait(slot, e[2], e[3])
          // past the wait (a worker stopped, or busy): said when it comes
          else if (e[3] !== null) this.#log?.error({ worker: slot.id, error: e[3] }, `reload refused by worker ${slot.id}, late: ${e[3]}`)
          else this.#log?.info({ worker: slot.id, changed: e[2] }, `worker ${slot.id} took the credentials, late`)
          break
        }
        case 'mq': {
          // a node-wide scrape: every live worker's metrics, then the answer to the asking one
          const id = ++this.#scrapeSeq
          const waiting = new Set(this.workers.filter((w) => w.child !== null))
          const timer = setTimeout(() => { this.#finishScrape(id) }, 2000)
          timer.unref()
          this.#scrapes.set(id, { slot, r: e[1], waiting, parts: new Map(), timer })
          for (const w of waiting) w.out.push(['mq', id])
          if (waiting.size === 0) this.#finishScrape(id)
          break
        }
        case 'mj':
          this.#scraped(e[1], slot, e[2])
          break
        case 'stuck': {
          const w = this.workers[e[1]]
          // only the incarnation reported (a worker forked again since is not stuck)
          if (w?.child == null || w.child.exitCode !== null || w.child.signalCode !== null || w.child.killed || w.child.pid !== e[2]) break
          this.#meshStuck(w, w.child, slot, e[3] === true)
          break
        }
      }
    }
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
    p.slot.out.push(['r', p.r, [p.total, p.waiting.size === 0, p.saved]])
  }

  #scraped (id: number, slot: WorkerSlot, json: MetricsJson): void {
    const p = this.#scrapes.get(id)
    if (p === undefined || !p.waiting.delete(slot)) return
    if (json.length > 0) {
      p.parts.set(slot, json)
      slot.metrics = json
    }
    if (p.waiting.size === 0) this.#finishScrape(id)
  }

  #finishScrape (id: number): void {
    const p = this.#scrapes.get(id)
    if (p === undefined) return
    this.#scrapes.delete(id)
    clearTimeout(p.timer)
    // a worker that did not answer in time (busy, stopped) counts with its last part: leaving it
    // out would take its counters out of the sum, and back in at the next scrape
    for (const w of p.waiting) if (w.metrics !== null) p.parts.set(w, w.metrics)
    // the dead incarnations' counters, merged into one part now and then (bounded however many die)
    if (this.#gone.length > 8) this.#gone = [monotonic(this.#gone.flat())]
    const parts = [...p.parts.values(), ...this.#gone]
    this.registry.getMetricsAsJSON().then((own) => {
      p.slot.out.push(['r', p.r, [own, ...parts]])
    }, () => {
      p.slot.out.push(['r', p.r, parts])
    })
  }

  /** Counters and histograms of worker incarnations that died, as last scraped (#onExit). */
  #gone: MetricsJson[] = []

  /** Totals for a worker's /status: published, stored, channels, subscribers, subscribers per transport (summed over workers). */
  totals (): [number, number, number, number, number[]] {
    let published = this.#publishedGone
    let stored = 0
    let channels = 0
    let subscribers = 0
    const transports: number[] = []
    for (const w of this.workers) {
      published += w.published
      stored += w.stored
      channels += w.channels
      subscribers += w.subscribers
      for (let i = 0; i < w.transports.length; i++) transports[i] = (transports[i] ?? 0) + w.transports[i]!
    }
    return [published, stored, channels, subscribers, transports]
  }

  /** SIGKILL to every worker still running (a second stop signal: no drain waited for). */
  killAll (): void {
    this.#stopping = true
    for (const w of this.workers) {
      const child = w.child
      if (child !== null && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    }
  }

  /**
   * Signal every worker and wait for them to exit (SIGKILL past graceMs); true when each ended its
   * drain itself (exit 0). An in-memory deployment
   * (`coordinate`) ends its drain early here, for all workers at once: once no worker reports a
   * subscriber and no publish came for DRAIN_QUIET_MS (their 'stats', each second). A worker that left
   * early on its own would take its channels from the subscribers still draining on the others.
   */
  async stop (signal: NodeJS.Signals, graceMs: number, coordinate = false): Promise<boolean> {
    this.#stopping = true
    const exits: Array<Promise<boolean>> = []
    const killed = new Set<unknown>()
    for (const w of this.workers) {
      const child = w.child
      if (child === null || child.exitCode !== null) continue
      // clean unless it had to cut requests (exit 1, lib/server.ts) or was killed past the window
      // (a worker the signal itself ended, one still starting, is clean)
      exits.push(new Promise((resolve) => child.once('exit', (code) => { resolve(code !== 1 && !killed.has(child)) })))
      child.kill(signal)
    }
    const timer = setTimeout(() => {
      for (const w of this.workers) {
        const child = w.child
        if (child === null || child.exitCode !== null || child.signalCode !== null) continue
        this.#log?.warn({ worker: w.id, workerPid: child.pid, graceMs }, 'worker still running past the drain: killed')
        killed.add(child)
        child.kill('SIGKILL')
      }
    }, graceMs)
    let idle: NodeJS.Timeout | null = null
    if (coordinate) {
      // a publish anywhere counts at its channel's owner; 'stats' arrive each second
      const live = (): WorkerSlot[] => this.workers.filter((w) => w.child !== null && w.child.exitCode === null)
      idle = whenQuiet(() => live().reduce((a, w) => a + w.subscribers, 0), () => this.#publishedGone + live().reduce((a, w) => a + w.published, 0),
        DRAIN_QUIET_MS + STATS_MS, () => { this.#broadcast(['finish']) })
    }
    const clean = await Promise.all(exits)
    clearTimeout(timer)
    if (idle !== null) clearInterval(idle)
    return clean.every((c) => c)
  }
}

// ---- worker: its end of the IPC channel, whatever the engine ----------------------------------

/**
 * A worker's link to the primary: one batched send per turn out, entries dispatched in order in.
 * Answers ('r') and node-wide metrics ('mq') are handled here for every engine; the rest goes to
 * the worker engine. With Redis the link carries only metrics and the worker's word that it is alive.
 */
export class WorkerLink {
  readonly out: Outbox<Up>
  /** This worker's place among the workers (its mesh address) and how many there are. */
  readonly id: number
  readonly workers: number
  /** The primary's socket directory for its workers (lib/mesh.ts). */
  readonly mesh: string
  /** The mesh key (32 bytes): only the workers of this primary have it. */
  readonly meshKey: Buffer
  /**
   * The worker engine's entries (hello, totals, rev). Those that come before it is set (the
   * options are awaited, the server is being built) wait for it, in order, until built() says the
   * server is built: a server without the worker engine (with Redis) takes none.
   */
  set onEntry (take: (e: Down) => void) {
    this.#onEntry = take
    const queued = this.#entries ?? []
    this.#entries = null
    for (const e of queued) take(e)
  }

  #onEntry: ((e: Down) => void) | null = null
  #entries: Down[] | null = []

  /** The server is built: entries that nothing takes are dropped from now on, not kept. */
  built (): void {
    this.#entries = null
  }

  /** The options as the primary resolved them (JSON): its first entry. */
  readonly options: Promise<string>
  #takeOptions: ((json: string) => void) | null = null
  /** This worker's metrics, for the primary's node-wide scrape. */
  metrics: Metrics | null = null
  /** The primary ends the deployment's drain early (lib/server.ts installShutdown, in-memory deployments). */
  onFinish: (() => void) | null = null
  /**
   * What takes the credentials the primary sends (SIGHUP; lib/cli.ts): the names that changed, or
   * it throws. Those that come before it is set (the server still being built) wait for it.
   */
  set onCredentials (take: (creds: Credentials) => string[]) {
    this.#takeCredentials = take
    const queued = this.#credentials
    this.#credentials = []
    for (const [id, creds] of queued) this.#credentialsIn(id, creds)
  }

  #takeCredentials: ((creds: Credentials) => string[]) | null = null
  #credentials: Array<[number, Credentials]> = []

  #credentialsIn (id: number, creds: Credentials): void {
    const take = this.#takeCredentials
    if (take === null) {
      this.#credentials.push([id, creds])
      return
    }
    try {
      this.out.push(['credsd', id, take(creds), null])
    } catch (err) {
      this.out.push(['credsd', id, [], (err as Error).message])
    }
  }
  /** Called when the primary is gone, just before this worker exits. */
  onPrimaryGone: (() => void) | null = null
  /** The worker engine's report to the primary, each STATS_MS ('stats'); null: 'alive' is sent instead. */
  report: (() => void) | null = null
  readonly #pending = new Map<number, (v: unknown) => void>()
  #seq = 0

  constructor () {
    this.id = Number(process.env.PARKLINE_WORKER_ID ?? 0)
    this.workers = Number(process.env.PARKLINE_WORKER_COUNT ?? 1)
    this.mesh = process.env.PARKLINE_MESH ?? ''
    const key = process.env.PARKLINE_MESH_KEY ?? ''
    this.meshKey = /^[0-9a-f]{64}$/.test(key) ? Buffer.from(key, 'hex') : Buffer.alloc(0)
    // nothing this worker starts, nor anything that reads its environment later, gets it
    delete process.env.PARKLINE_MESH_KEY
    this.options = new Promise((resolve) => { this.#takeOptions = resolve })
    this.out = new Outbox<Up>((batch) => { if (process.connected) process.send!(batch) })
    process.on('message', (batch: Down[]) => {
      for (const e of batch) this.#dispatch(e)
    })
    // the primary going away ends this worker
    process.on('disconnect', () => {
      this.onPrimaryGone?.()
      process.exit(0)
    })
  }

  /**
   * Ask the primary; rejects after `ms` without its answer (a primary stopped or stalled: the
   * request that waits on it gets a bounded answer, and a late answer is dropped).
   */
  request<T> (entry: (r: number) => Up, ms: number): Promise<T> {
    const r = ++this.#seq
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(r)
        const e = ERRORS.PRIMARY_UNAVAILABLE
        reject(new ParklineError(e.code, `${e.message} within ${ms} ms`, e.statusCode))
      }, ms)
      timer.unref()
      this.#pending.set(r, (v: unknown) => {
        clearTimeout(timer)
        resolve(v as T)
      })
      this.out.push(entry(r))
    })
  }

  /** Every process's metrics as JSON (the primary's first), for Metrics.render. */
  nodeMetrics (): Promise<MetricsJson[]> {
    // (the primary waits 2 s for the workers' parts)
    return this.request<MetricsJson[]>((r) => ['mq', r], PRIMARY_ANSWER_MS)
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
      case 'finish':
        this.onFinish?.()
        return
      case 'creds':
        this.#credentialsIn(e[1], e[2])
        return
      case 'opts':
        if (this.#takeOptions === null) return
        this.#takeOptions(e[1])
        this.#takeOptions = null
        // one word each STATS_MS from now on (its first left from bin/parkline.ts, before its
        // modules loaded): the worker engine's counts, or with Redis a plain 'alive'. Not before:
        // a worker that never gets its options is silent, and the primary ends it as stuck
        setInterval(() => { if (this.report === null) this.out.push(['alive']); else this.report() }, STATS_MS).unref()
        return
      default:
        if (this.#onEntry !== null) this.#onEntry(e)
        else this.#entries?.push(e)
    }
  }
}

// ---- worker: owner of some channels, replica of others -----------------------------------------

/** What this worker, as owner, knows of one peer; and what it awaits from that peer as owner. */
interface PeerState {
  /** Subscriptions the peer holds on channels this worker owns, per channel. */
  counts: Map<string, number>
  /**
   * Per channel, subscriptions a DELETE already took off the counts: the peer's `sub -1` for them
   * (sent once it has ended them) must not be subtracted again.
   */
  deleted: Map<string, number>
  /** Subscribers here waiting for the peer (their channel's owner) to count them, in send order. */
  awaiting: Subscriber[]
  awaitHead: number
  /** After an 'own' from the peer: the newest id of its replica, per channel (catch-up after sync). */
  replicaLast: Map<string, [number, number]> | null
  /** Channels whose replica the peer keeps current with no subscriber there (REPLICA_LINGER_MS). */
  kept: Set<string>
  /** maxSubscribersPerUser: the peer's subscribers per user this worker owns, as it last said ('uc'), and those granted since ('ur'). */
  users: Map<string, number>
  /** The peer's counts arrived since its link (came back) up: its 'synced' was read. */
  usersSynced: boolean
}

/** `bytes`: a publish's body, counted in the peer's publishes in flight until it is answered. */
interface Pending { resolve: (v: unknown) => void, reject: (e: Error) => void, peer: number, at: number, bytes: number }

/**
 * Publish bodies sent to one owner and not answered yet, at most (bytes); past it a publish for
 * that owner gets 503 with Retry-After. Below the mesh's backlog cap (lib/mesh.ts): an owner that
 * is busy (a large fan-out) but reading pushes back on publishers instead of being taken for
 * stuck and ended. One body of any size still goes when none is in flight.
 */
export const PUB_IN_FLIGHT_CAP = 16 * 1024 * 1024

function overCapacity (): ParklineError {
  return new ParklineError(ERRORS.OVER_CAPACITY.code, ERRORS.OVER_CAPACITY.message, ERRORS.OVER_CAPACITY.statusCode)
}

function throwOverCapacity (): never {
  throw overCapacity()
}

/** An owner's answer to a publish: null when it refused it over maxChannels. */
function overCapacityIfNull (r: PublishResult | null): PublishResult {
  return r ?? throwOverCapacity()
}

/** Local subscribers on a channel from which a message to other workers is written before the fan-out, not batched. */
const EARLY_FLUSH = 32
/** How long requests wait for a channel owner that is away (being forked again). */
const AWAY_MS = 5000
/** How long a starting worker waits for the others' resync before it serves anyway. */
const SYNC_MS = 3000
/** A request to a peer that is up but has not answered in this long fails (a backstop). */
const REQUEST_MS = 30_000
/** How long a worker waits for the primary's answer to a node-wide request (a scrape; a revoke waits 5 s more). */
const PRIMARY_ANSWER_MS = 5000
/**
 * How long a worker keeps a replica current after its last subscriber there left (give or take the
 * 1 s sweep): a long-poll's next poll, or a client reconnecting, finds it without a 'load'.
 */
export const REPLICA_LINGER_MS = 2000

export class WorkerEngine implements Engine {
  readonly name = 'workers'
  readonly #core: Core
  readonly #link: WorkerLink
  readonly #me: number
  readonly #n: number
  readonly #mesh: Mesh<Peer>
  readonly #peers: PeerState[] = []
  /** Remote subscriptions per channel this worker owns (summed over peers). */
  readonly #remote = new Map<string, number>()
  /** maxSubscribersPerUser: the other workers' subscribers per user this worker owns (summed over peers). */
  readonly #usersElsewhere = new Map<string, number>()
  /** Users whose count here changed in this turn, with their count now: told to their owners at its end. */
  #usersChanged: Map<string, number> | null = null
  /** Subscribers whose live fan-out this engine paused until they are counted (long-poll). */
  readonly #paused = new WeakSet<Subscriber>()
  /** Multiplexed subscribers waiting for more than one owner: acks still due. */
  readonly #acksDue = new Map<Subscriber, number>()
  /** Subscribers refused after admission (their owner went away): never counted. */
  readonly #refused = new WeakSet<Subscriber>()
  /**
   * Channels owned elsewhere whose replica here was filled ('load') and is kept current. Until
   * then a message for it is dropped (the load will hold it), so a replica is never a fragment.
   */
  readonly #loaded = new Set<string>()
  /** Loaded replicas with no subscriber here, kept current until their deadline (REPLICA_LINGER_MS). */
  readonly #lingering = new Map<string, number>()
  /** Channels this worker owns: how many peers keep a replica of each with no subscriber there. */
  readonly #keptBy = new Map<string, number>()
  /** Replicas loaded from their owners (parkline_replica_loads_total). */
  #loads = 0
  readonly #pending = new Map<number, Pending>()
  /** Per peer: bytes of publishes sent to it not answered yet (PUB_IN_FLIGHT_CAP). */
  readonly #pubInFlight: number[] = []
  /**
   * The peers the publish or DELETE being handled as owner sent its message or `d` to
   * (beforeFanout, #deleteOwned): its answer waits until those are in their kernel queues
   * (#afterPeers).
   */
  readonly #sentTo: number[] = []
  /** The Idempotency-Key (and fingerprint) of the publish #publishOwned is making, for beforeFanout. */
  #publishingKey: string | null = null
  #publishingFp = ''
  /**
   * The keys that came with the messages of channels other workers own ('m', 'load'), to hand to
   * their owner should it start again ('own'): apart from this worker's own channels' keys
   * (Core.idempotency), which they would otherwise push out of its bound.
   */
  readonly #replicaKeys: IdempotencyKeys
  #seq = 0
  /** Peers whose resync this starting worker still waits for; null once it serves. */
  #syncWaiting: Set<number> | null
  /** Entries that arrived before the resync was complete, applied in arrival order after it. */
  #held: Array<[number, Peer]> = []
  /** Per peer: away (died, not back yet); while away, requests to it wait until its timer fires. */
  readonly #away: boolean[] = []
  readonly #awayTimers: Array<NodeJS.Timeout | null> = []
  #down = 0
  #totals: [number, number, number, number, number[]] | null = null
  #primaryReady = false
  #synced = false
  #ready: (() => void) | null = null
  readonly ready: Promise<void>

  constructor (core: Core, link: WorkerLink) {
    this.#core = core
    this.#replicaKeys = new IdempotencyKeys(core.opts.idempotencyWindow)
    core.keyStores.push(this.#replicaKeys)
    this.#link = link
    this.#me = link.id
    this.#n = link.workers
    for (let i = 0; i < this.#n; i++) {
      this.#peers.push({ counts: new Map(), deleted: new Map(), awaiting: [], awaitHead: 0, replicaLast: null, kept: new Set(), users: new Map(), usersSynced: false })
      this.#away.push(false)
      this.#awayTimers.push(null)
      this.#pubInFlight.push(0)
    }
    this.#syncWaiting = new Set([...Array(this.#n).keys()].filter((i) => i !== this.#me))
    this.ready = new Promise((resolve) => { this.#ready = resolve })
    checkMeshDir(link)
    this.#mesh = new Mesh<Peer>(this.#me, this.#n, link.mesh, link.meshKey, {
      onBatch: (from, batch) => { this.#onPeerBatch(from, batch) },
      onUp: (peer) => this.#onUp(peer),
      onDown: (peer) => { this.#onDown(peer) },
      onStuck: (peer, pid, full) => { link.out.push(['stuck', peer, pid, full]) }
    })
    this.#mesh.start().then(() => {
      const t = setTimeout(() => { this.#endSync() }, SYNC_MS)
      t.unref()
      this.#maybeEndSync()
    }, (err: unknown) => {
      process.stderr.write(`parkline worker ${this.#me}: mesh socket: ${err instanceof Error ? err.message : String(err)}\n`)
      process.exit(1)
    })
    link.report = () => { this.#report() }
    link.onPrimaryGone = () => { this.#mesh.primaryGone() }
    for (let i = 0; i < this.#n; i++) this.#fenceAt.push(i === this.#me ? Infinity : 0)
    core.fence = (sub, pos) => this.#fence(sub, pos)
    // a channel this worker owns stays while other workers have subscribers there, or keep its
    // replica (its ids, its age and its info hold, as in one process), even with no message left;
    // so does a replica kept here (its floor, for a gap signal)
    core.registry.heldElsewhere = (key) => this.#remote.has(key) || this.#keptBy.has(key) || this.#lingering.has(key)
    // this worker issues the ids of the channels it owns from this second on (forked in a later
    // second than any incarnation before it): their records keep floors as one process's do
    // (lib/channel-registry.ts knownSince); the others' floors are their owners' to say
    core.registry.knownSince = core.nowSec
    core.registry.owns = (key) => this.#owner(key) === this.#me
    this.#sendSecond()
    // last: the primary's entries that came while the server was built are taken now, in order
    link.onEntry = (e) => { this.#onPrimary(e) }
  }

  /**
   * Per peer: the second its last ['t'] named (Infinity for this worker, and for a peer that died:
   * nothing more comes from it until it is back, and its first entry then is a ['t']).
   */
  readonly #fenceAt: number[] = []

  /**
   * The fence of a multiplexed subscriber's message from `pos` (Core.fence): the least second the
   * owners of its other channels have reached, leaving out this worker and the sender's owner (its
   * own messages arrive in order on one link).
   */
  #fence (sub: Subscriber, pos: number): number {
    const chans = sub.channels
    const from = this.#owner(chans[pos]!.key)
    let f = Infinity
    for (let k = 0; k < chans.length; k++) {
      if (k === pos) continue
      const o = this.#owner(chans[k]!.key)
      if (o === from) continue
      const at = this.#fenceAt[o]!
      if (at < f) f = at
    }
    return f
  }

  /** ['t', S] to every peer at each second (just past it), so their fences move even when idle. */
  #sendSecond (): void {
    const now = Date.now()
    const sec = Math.floor(now / 1000)
    for (let p = 0; p < this.#n; p++) if (p !== this.#me && this.#mesh.isUp(p)) this.#mesh.send(p, ['t', sec])
    if (this.#lingering.size > 0) this.#endLinger(now)
    const t = setTimeout(() => { this.#sendSecond() }, 1000 - (now % 1000) + 1)
    t.unref()
  }

  /** New subscribers are refused (503) while a channel owner is away. */
  get up (): boolean {
    return this.#down === 0
  }

  #owner (key: string): number {
    return ownerOf(key, this.#n)
  }

  owned (): { channels: number, stored: number } {
    return this.#owned
  }

  /** What #report last counted of the channels this worker owns (the metrics read it too). */
  #owned = { channels: 0, stored: 0 }

  // ---- Engine ---------------------------------------------------------------------------------

  publish (key: string, data: Buffer, contentType: string | null, event: string | null, idempotencyKey: string | null = null, requestFingerprint?: string): PublishResult | Promise<PublishResult> {
    const o = this.#owner(key)
    const fp = idempotencyKey === null ? '' : requestFingerprint ?? fingerprint(data, contentType, event)
    if (o === this.#me) return this.#afterPeers(this.#publishOwned(key, data, contentType, event, idempotencyKey, fp) ?? throwOverCapacity(), -1)
    return this.#request<PublishResult | null>(o, (r) => ['pub', r, key, data, contentType, event, idempotencyKey, fp]).then(overCapacityIfNull)
  }

  replay (key: string, idempotencyKey: string, requestFingerprint: string): PublishResult | null | Promise<PublishResult | null> {
    const o = this.#owner(key)
    if (o === this.#me) return this.#replayOwned(key, idempotencyKey, requestFingerprint, -1)
    return this.#request<PublishResult | null>(o, (r) => ['rep', r, key, idempotencyKey, requestFingerprint])
  }

  /** A publish to a channel another worker owns makes its record there; maxChannels is checked there. */
  recordsElsewhere (key: string): boolean {
    return this.#owner(key) !== this.#me
  }

  info (key: string): ChannelInfo | null | Promise<ChannelInfo | null> {
    const o = this.#owner(key)
    if (o === this.#me) return this.#infoOwned(key, true)
    return this.#request<ChannelInfo | null>(o, (r) => ['info', r, key])
  }

  delete (key: string): ChannelInfo | null | Promise<ChannelInfo | null> {
    const o = this.#owner(key)
    if (o === this.#me) return this.#afterPeers(this.#deleteOwned(key), -1)
    return this.#request<ChannelInfo | null>(o, (r) => ['del', r, key])
  }

  registered (sub: Subscriber): boolean {
    const chans = sub.channels
    // maxSubscribersPerUser: the user's owner counts it against every worker's subscribers of that
    // user, and answers with the channels' owners (its 'a' or 'un'); here Core.overUserLimit
    // checked this worker's own. An owner that cannot count them all now refuses (503).
    const user = this.#core.userOf(sub.grant)
    let uo = -1
    if (user !== null) {
      uo = this.#userOwner(user)
      if (uo === this.#me) {
        if (!this.#usersSynced()) return this.#refuseSoon(sub)
        uo = -1
      } else if (!this.#mesh.isUp(uo)) return this.#refuseSoon(sub)
    }
    let due = 0
    if (chans.length === 1) {
      const o = this.#owner(chans[0]!.key)
      if (o !== this.#me) {
        if (!this.#mesh.isUp(o)) return this.#refuseSoon(sub)
        const key = chans[0]!.key
        this.#mesh.send(o, this.#lingering.delete(key) ? ['sub', [key], 1, 1] : ['sub', [key], 1])
        this.#peers[o]!.awaiting.push(sub)
        due = 1
      }
    } else {
      const byOwner = this.#remoteByOwner(chans)
      for (const o of byOwner.keys()) if (!this.#mesh.isUp(o)) return this.#refuseSoon(sub)
      for (const [o, keys] of byOwner) {
        this.#mesh.send(o, this.#lingering.size === 0 ? ['sub', keys, 1] : this.#keptFirst(keys, 1))
        this.#peers[o]!.awaiting.push(sub)
      }
      due = byOwner.size
    }
    if (uo >= 0) {
      // with this worker's count now: one that fell earlier in this turn is not told yet ('uc')
      this.#mesh.send(uo, ['ur', user!, this.#core.heldBy(user!)])
      this.#peers[uo]!.awaiting.push(sub)
      due++
    }
    if (due === 0) return true
    if (due > 1) this.#acksDue.set(sub, due)
    // Until it is counted its replica may still be filled ('load'), and live messages after the
    // load may arrive before the ack: a parked long-poll must not take one of those before the
    // loaded buffer (it would skip a message). Live fan-out skips it until ready().
    if (this.#core.pauseLive(sub)) this.#paused.add(sub)
    return false
  }

  /** A multiplexed subscription's channels owned elsewhere, by owner. */
  #remoteByOwner (chans: Subscriber['channels']): Map<number, string[]> {
    const byOwner = new Map<number, string[]>()
    for (const ch of chans) {
      const o = this.#owner(ch.key)
      if (o === this.#me) continue
      const keys = byOwner.get(o)
      if (keys === undefined) byOwner.set(o, [ch.key])
      else keys.push(ch.key)
    }
    return byOwner
  }

  /**
   * A subscriber admitted just as the owner of one of its channels went away: nobody can count it,
   * so it ends (503), out of the caller's turn.
   */
  #refuseSoon (sub: Subscriber): false {
    this.#refused.add(sub)
    setImmediate(endUnavailable, sub)
    return false
  }

  /**
   * A long-poll with a channel owned elsewhere whose replica here is not loaded is not answered
   * before it is counted: that replica is empty until then, and a message of another channel
   * answered first would skip an earlier one of that channel.
   */
  answersEarly (sub: Subscriber): boolean {
    const chans = sub.channels
    for (let k = 0; k < chans.length; k++) {
      const key = chans[k]!.key
      if (this.#owner(key) !== this.#me && !this.#loaded.has(key)) return false
    }
    return true
  }

  /**
   * The last subscriber here on a channel owned elsewhere left: its replica is no longer kept. One
   * kept with no subscriber (#linger) is no longer either: its owner stops sending its messages,
   * or a later subscriber's 'sub' would say it kept a replica it no longer has.
   */
  #dropReplica (key: string): void {
    if (this.#core.localSubscribers(key) > 0) return
    this.#unlinger(key)
    this.#loaded.delete(key)
    this.#core.dropReplica(key)
  }

  /** `key` lingers no more; its owner is told (unless it is away: it forgets its own then). */
  #unlinger (key: string): void {
    if (!this.#lingering.delete(key)) return
    const o = this.#owner(key)
    if (this.#mesh.isUp(o)) this.#mesh.send(o, ['unkeep', [key]])
  }

  unregistered (sub: Subscriber): void {
    const chans = sub.channels
    // never counted anywhere: nothing to take back (its replicas may still go; not one kept for
    // an owner that is away)
    if (this.#refused.delete(sub)) {
      for (const keys of this.#remoteByOwner(chans).values()) for (const key of keys) if (!this.#lingering.has(key)) this.#dropReplica(key)
      return
    }
    if (chans.length === 1) {
      const key = chans[0]!.key
      const o = this.#owner(key)
      if (o === this.#me) return
      // an owner that is away counts from the resync when it is back, and is offered the replica
      // then if it is kept
      if (this.#mesh.isUp(o)) this.#mesh.send(o, this.#linger(key) ? ['sub', [key], -1, 1] : ['sub', [key], -1])
      else this.#linger(key)
      return
    }
    for (const [o, keys] of this.#remoteByOwner(chans)) {
      if (this.#mesh.isUp(o)) this.#mesh.send(o, this.#keptFirst(keys, -1))
      else for (const key of keys) this.#linger(key)
    }
  }

  // ---- maxSubscribersPerUser across the workers ----------------------------------------------
  // Each user has an owner, a worker chosen by hash as a channel's is (#userOwner). Every worker
  // counts its own subscribers per user (Core) and tells each user's owner, at the end of the turn
  // the count changed in ('uc'). A subscriber admitted on another worker (its own count under the
  // limit) is registered, then waits, as for its channels' owners, for the user's owner to say
  // whether every worker's subscribers of that user leave room for it ('ur': an 'a' or a 'un' in
  // the acks' order); the owner counts it at once, so a burst spread over the workers is granted
  // only up to the limit. The owner's own subscribers are checked against the same counts in the
  // turn that admits them. A peer whose counts have not arrived since its link came up leaves the
  // owner unable to count: 503 then, as for a channel whose owner is away.

  #userOwner (user: string): number {
    return userOwnerOf(user, this.#n)
  }

  /** Every peer's counts of the users this worker owns are here (each sent them since its link came up). */
  #usersSynced (): boolean {
    for (let i = 0; i < this.#n; i++) if (i !== this.#me && !this.#peers[i]!.usersSynced) return false
    return true
  }

  /**
   * As a user's owner, a peer's 'ur': may the subscriber of `user` it registered be admitted, the
   * peer now holding `count` of them with it? 0 (yes), 429 (the limit), 503 (a peer's count is
   * not known yet). The peer's count is taken as said, without it when refused (its next 'uc'
   * says so too); a 503 leaves the peer's count as it was (nothing was added).
   */
  #userRoom (from: number, user: unknown, count: unknown): number {
    // (what an authenticated peer sends is trusted, but no shape of it ends this process)
    if (typeof user !== 'string' || !Number.isSafeInteger(count) || (count as number) < 1 || (count as number) > 0x7fffffff) return 503
    if (!this.#usersSynced()) return 503
    const limit = this.#core.opts.maxSubscribersPerUser
    const p = this.#peers[from]!
    const before = p.users.get(user) ?? 0
    const others = this.#core.heldBy(user) + (this.#usersElsewhere.get(user) ?? 0) - before
    const room = limit <= 0 || others + (count as number) <= limit
    const n = room ? count as number : (count as number) - 1
    if (n > 0) p.users.set(user, n)
    else p.users.delete(user)
    this.#userElsewhere(user, n - before)
    return room ? 0 : 429
  }

  /** The user's subscribers here are now `count` (Core): told to its owner at the end of the turn. */
  usersChanged (user: string, count: number): void {
    if (this.#usersChanged === null) {
      this.#usersChanged = new Map()
      setImmediate(() => { this.#tellUsers() })
    }
    this.#usersChanged.set(user, count)
  }

  /** The user's subscribers on the other workers, as they last said. */
  usersElsewhere (user: string): number {
    return this.#usersElsewhere.get(user) ?? 0
  }

  #tellUsers (): void {
    const changed = this.#usersChanged
    this.#usersChanged = null
    if (changed === null || changed.size === 0) return
    const byOwner = new Map<number, Array<[string, number]>>()
    for (const c of changed) {
      const o = this.#userOwner(c[0])
      if (o === this.#me) continue
      const list = byOwner.get(o)
      if (list === undefined) byOwner.set(o, [c])
      else list.push(c)
    }
    // (an owner that is away hears every count when its link is back: #onUp)
    for (const [o, list] of byOwner) if (this.#mesh.isUp(o)) this.#mesh.send(o, ['uc', list])
  }

  #usersCounted (from: number, counts: unknown): void {
    const p = this.#peers[from]!
    if (!Array.isArray(counts)) return
    for (const c of counts as unknown[]) {
      // (what an authenticated peer sends is trusted, but no shape of it ends this process)
      if (!Array.isArray(c) || typeof c[0] !== 'string' || !Number.isSafeInteger(c[1]) || c[1] < 0 || c[1] > 0x7fffffff) continue
      const user = c[0]
      const n = c[1] as number
      const before = p.users.get(user) ?? 0
      if (n > 0) p.users.set(user, n)
      else p.users.delete(user)
      this.#userElsewhere(user, n - before)
    }
  }

  #userElsewhere (user: string, delta: number): void {
    const n = (this.#usersElsewhere.get(user) ?? 0) + delta
    if (n > 0) this.#usersElsewhere.set(user, n)
    else this.#usersElsewhere.delete(user)
  }

  /**
   * A subscriber here left `key` (owned elsewhere): if it was the last, the replica is kept current
   * for REPLICA_LINGER_MS (true: the owner is to keep sending its messages) where it was loaded and
   * its record stands; else it goes.
   */
  #linger (key: string): boolean {
    const core = this.#core
    if (core.localSubscribers(key) > 0) return false
    if (this.#loaded.has(key) && core.registry.get(key) !== undefined) {
      this.#lingering.set(key, Date.now() + REPLICA_LINGER_MS)
      return true
    }
    this.#dropReplica(key)
    return false
  }

  /**
   * A 'sub' entry for `keys`, those whose replica is kept first: for 1, the lingering ones (taken off
   * the list: a subscriber holds them now); for -1, those #linger keeps.
   */
  #keptFirst (keys: string[], delta: 1 | -1): Peer {
    const kept: string[] = []
    const rest: string[] = []
    for (const key of keys) {
      if (delta === 1 ? this.#lingering.delete(key) : this.#linger(key)) kept.push(key)
      else rest.push(key)
    }
    return kept.length === 0 ? ['sub', keys, delta] : ['sub', kept.concat(rest), delta, kept.length]
  }

  /** Kept replicas past their deadline go, and their owners stop sending their messages. */
  #endLinger (now: number): void {
    let gone: Map<number, string[]> | null = null
    for (const [key, until] of this.#lingering) {
      if (until > now) continue
      const o = this.#owner(key)
      // its owner is away: the replica may be the newest copy of the channel's buffer, offered
      // to the owner when it is back (#onUp)
      if (!this.#mesh.isUp(o)) continue
      this.#lingering.delete(key)
      this.#dropReplica(key)
      gone ??= new Map()
      const keys = gone.get(o)
      if (keys === undefined) gone.set(o, [key])
      else keys.push(key)
    }
    if (gone !== null) for (const [o, keys] of gone) this.#mesh.send(o, ['unkeep', keys])
  }

  /** Replicas loaded from their owners since this worker started (a kept one is not loaded again). */
  replicaLoads (): number {
    return this.#loads
  }

  /**
   * Applied here first, then through the primary to every worker (this one again, ending none).
   * A primary that does not answer in time (stopped, stalled) leaves the others to it: this
   * worker's own are ended, and the answer says the revocation is not complete.
   */
  async revoke (kind: 'sub' | 'jti', value: string, at: number, until: number): Promise<{ ended: number, complete: boolean }> {
    const local = this.#core.revokeLocal(kind, value, at, until)
    let answer: [number, boolean, boolean]
    try {
      answer = await this.#link.request<[number, boolean, boolean]>((r) => ['rev', r, kind, value, at, until], PRIMARY_ANSWER_MS + 5000)
    } catch {
      // the primary keeps revocationsFile: without its answer the revocation is not known to be
      // on disk (in force here all the same, and everywhere once the primary has it)
      if (this.#core.opts.revocationsFile !== '') throw new ParklineError(ERRORS.REVOCATION_NOT_SAVED.code, 'revocationsFile: the primary did not answer', ERRORS.REVOCATION_NOT_SAVED.statusCode)
      return { ended: local, complete: false }
    }
    // the primary could not write revocationsFile (it logged why)
    if (!answer[2]) throw new ParklineError(ERRORS.REVOCATION_NOT_SAVED.code, 'revocationsFile: not written by the primary', ERRORS.REVOCATION_NOT_SAVED.statusCode)
    return { ended: local + answer[0], complete: answer[1] }
  }

  touched (keys: readonly string[]): void {
    const now = Date.now()
    for (const key of keys) {
      const o = this.#owner(key)
      if (o === this.#me) {
        const ch = this.#core.registry.get(key)
        if (ch !== undefined) ch.lastRequested = now
      } else if (this.#mesh.isUp(o)) {
        this.#mesh.send(o, ['touch', [key]])
      }
    }
  }

  totals (): Totals | null {
    const t = this.#totals
    return t === null ? null : { published: t[0], stored: t[1], channels: t[2], subscribers: t[3], transports: t[4] }
  }

  // ---- requests to other owners ---------------------------------------------------------------

  #request<T> (peer: number, entry: (r: number) => Peer): Promise<T> {
    const r = ++this.#seq
    return new Promise<T>((resolve, reject) => {
      if (this.#away[peer]! && this.#awayTimers[peer] === null) {
        // away for longer than requests wait
        reject(unavailable())
        return
      }
      const e = entry(r)
      const bytes = e[0] === 'pub' ? (e[3] as Uint8Array).byteLength : 0
      const inFlight = this.#pubInFlight[peer]!
      if (bytes > 0 && inFlight > 0 && inFlight + bytes > PUB_IN_FLIGHT_CAP) {
        reject(overCapacity())
        return
      }
      if (!this.#mesh.send(peer, e, bytes)) {
        reject(unavailable())
        return
      }
      this.#pubInFlight[peer] = inFlight + bytes
      this.#pending.set(r, { resolve: resolve as (v: unknown) => void, reject, peer, at: Date.now(), bytes })
    })
  }

  /** Request `r` is answered or failed: no longer pending. */
  #settle (r: number, p: Pending): void {
    this.#pending.delete(r)
    this.#pubInFlight[p.peer]! -= p.bytes
  }

  /** Fail every request to `peer` not answered yet, and drop what still waits to be sent to it. */
  #failRequests (peer: number): void {
    this.#mesh.clearQueue(peer)
    for (const [r, p] of this.#pending) {
      if (p.peer !== peer) continue
      this.#settle(r, p)
      p.reject(unavailable())
    }
  }

  // ---- as a channel's owner -------------------------------------------------------------------

  #subscribersOf (key: string): number {
    return this.#core.localSubscribers(key) + (this.#remote.get(key) ?? 0)
  }

  /**
   * `value` (the answer to a publish or DELETE this worker just handled as owner) once what that
   * sent to other workers' replicas is in their kernel queues (Mesh.written), so an answered
   * message or DELETE outlives this worker dying right after: the peers read it, and offer it
   * to the next owner. `except`: the peer the answer itself goes to (it follows on the same
   * connection). At once when nothing was sent, or all of it is written already.
   */
  #afterPeers<T> (value: T, except: number): T | Promise<T> {
    const sent = this.#sentTo
    let waits: Array<Promise<void>> | null = null
    for (let i = 0; i < sent.length; i++) {
      if (sent[i] === except) continue
      const w = this.#mesh.written(sent[i]!)
      if (w !== null) (waits ??= []).push(w)
    }
    sent.length = 0
    if (waits === null) return value
    return (waits.length === 1 ? waits[0]! : Promise.all(waits)).then(() => value)
  }

  /**
   * A retry's answer (an Idempotency-Key this owner saw) is the original's: it waits as that one
   * does (#afterPeers), or it could arrive first and be all the client gets of a message still in
   * this worker's memory. Which peers the original went to is not kept: every peer, whose
   * pending writes include it (a peer with nothing pending costs nothing).
   */
  #replayOwned (key: string, idempotencyKey: string, fp: string, except: number): PublishResult | null | Promise<PublishResult | null> {
    const replay = this.#core.replayed(key, idempotencyKey, this.#subscribersOf(key), fp)
    if (replay === null) return null
    this.#afterAllPeers()
    return this.#afterPeers(replay, except)
  }

  /** #afterPeers waits for every peer. */
  #afterAllPeers (): void {
    this.#sentTo.length = 0
    for (let i = 0; i < this.#n; i++) if (i !== this.#me) this.#sentTo.push(i)
  }

  /** Null: the channel would be a new record past maxChannels here, where its records are (503). */
  #publishOwned (key: string, data: Buffer, contentType: string | null, event: string | null, idempotencyKey: string | null, fp: string): PublishResult | null {
    const core = this.#core
    this.#sentTo.length = 0
    if (core.overChannelCap([key])) return null
    const subscribers = this.#subscribersOf(key)
    if (idempotencyKey !== null) {
      const replay = core.replayed(key, idempotencyKey, subscribers, fp)
      if (replay !== null) {
        this.#afterAllPeers()
        return replay
      }
    }
    this.#publishingKey = idempotencyKey
    this.#publishingFp = fp
    let published
    try {
      published = core.publish(key, data, contentType, event, this.#remote.has(key) || this.#keptBy.has(key) ? this : null)
    } finally {
      this.#publishingKey = null
    }
    const { msg, channel } = published
    if (idempotencyKey !== null) core.idempotency.set(key, idempotencyKey, msg.id, fp)
    const info = channelInfo(channel, Date.now())
    info.subscribers = subscribers
    return { status: subscribers > 0 ? 201 : 202, info }
  }

  /**
   * (Core.publish, for a channel with subscribers on other workers.) The message goes to them
   * before this worker's own fan-out; behind a fan-out of many subscribers it leaves at once, so
   * their fan-outs run alongside this one instead of after it.
   */
  beforeFanout (ch: Channel, msg: Message): void {
    const key = ch.key
    // the key goes with the message: a replica offered to this channel's next owner carries it,
    // so a publisher's retry after this worker's death is not published twice
    const ik = this.#publishingKey
    const entry: Peer = ik === null
      ? ['m', key, msg.time, msg.tag, msg.data, msg.contentType, msg.event, msg.publishedAt]
      : ['m', key, msg.time, msg.tag, msg.data, msg.contentType, msg.event, msg.publishedAt, ik, this.#publishingFp]
    const now = ch.subs.length >= EARLY_FLUSH
    for (let i = 0; i < this.#n; i++) {
      if (i === this.#me) continue
      const p = this.#peers[i]!
      if ((p.counts.get(key) ?? 0) === 0 && !p.kept.has(key)) continue
      this.#mesh.send(i, entry, msg.data.length)
      this.#sentTo.push(i)
      if (now) this.#mesh.flushNow(i)
    }
  }

  /** (Engine.subscribedElsewhere) Subscribers on other workers hold this owned channel. */
  subscribedElsewhere (key: string): boolean {
    return this.#remote.has(key)
  }

  /**
   * The owner's info. `gone`: null for a record with no message and no subscriber left (its last
   * messages expired, the tick has not released it yet: §5.4).
   */
  #infoOwned (key: string, gone = false): ChannelInfo | null {
    const ch = this.#core.registry.get(key)
    const subscribers = this.#subscribersOf(key)
    if (ch === undefined) {
      return subscribers === 0 ? null : { messages: 0, requested: 0, subscribers, lastMessageId: '0:0' }
    }
    this.#core.expireDue(ch)
    if (gone && ch.buffer.size === 0 && subscribers === 0) return null
    const info = channelInfo(ch, Date.now())
    info.subscribers = subscribers
    return info
  }

  #deleteOwned (key: string): ChannelInfo | null {
    this.#sentTo.length = 0
    // (its last messages expired, nobody subscribes: gone already, a 404 as its info, §5.4; what
    // other workers keep of it still goes)
    const held = this.#core.registry.get(key) !== undefined || this.#subscribersOf(key) > 0
    const info = this.#infoOwned(key, true)
    // Remote subscribers are ended by their workers as the `d` reaches them: they count no more
    // from now on (a publish right after the DELETE answers 202, as with one process).
    this.#remote.delete(key)
    this.#keptBy.delete(key)
    for (let i = 0; i < this.#n; i++) {
      const p = this.#peers[i]!
      p.kept.delete(key)
      const n = p.counts.get(key)
      if (n === undefined) continue
      p.counts.delete(key)
      p.deleted.set(key, (p.deleted.get(key) ?? 0) + n)
    }
    const ch = this.#core.registry.get(key)
    if (ch !== undefined) this.#core.deleteChannel(ch)
    if (held) {
      for (let i = 0; i < this.#n; i++) {
        if (i === this.#me) continue
        this.#mesh.send(i, ['d', key])
        this.#sentTo.push(i)
      }
    }
    return info
  }

  #snapshotOf (key: string): SnapChannel {
    const ch = this.#core.registry.get(key)
    if (ch === undefined) return [key, 0, 0, 0, -1, [], false]
    const msgs: SnapMessage[] = []
    for (let i = 0; i < ch.buffer.size; i++) {
      const m = ch.buffer.at(i)
      msgs.push([m.time, m.tag, m.data, m.contentType, m.event, m.publishedAt])
    }
    return [ch.key, ch.lastTime, ch.lastTag, ch.floorTime, ch.floorTag, msgs, ch.floorKnown]
  }

  #count (from: number, key: string, delta: number): number {
    const p = this.#peers[from]!
    const had = p.counts.get(key) ?? 0
    // a peer never takes back more than it gave
    if (delta < -had) delta = -had
    if (delta === 0) return had
    const n = had + delta
    if (n <= 0) p.counts.delete(key)
    else p.counts.set(key, n)
    const total = (this.#remote.get(key) ?? 0) + delta
    if (total > 0) {
      this.#remote.set(key, total)
    } else {
      this.#remote.delete(key)
      // its last remote subscriber left: a channel with no message and nobody here is freed, as
      // in one process (a subscriber that only names a channel must not leave a record behind)
      const ch = this.#core.registry.get(key)
      if (ch !== undefined) this.#core.registry.release(ch)
    }
    return had
  }

  /** Peer `p` keeps its replica of `key` (owned here) current with no subscriber there. */
  #keep (p: PeerState, key: string): void {
    if (p.kept.has(key)) return
    p.kept.add(key)
    this.#keptBy.set(key, (this.#keptBy.get(key) ?? 0) + 1)
  }

  /** Peer `p` keeps its replica of `key` no more (true if it did); the record may go, as in #count. */
  #unkeep (p: PeerState, key: string): boolean {
    if (!p.kept.delete(key)) return false
    const n = this.#keptBy.get(key)! - 1
    if (n > 0) {
      this.#keptBy.set(key, n)
      return true
    }
    this.#keptBy.delete(key)
    const ch = this.#core.registry.get(key)
    if (ch !== undefined && !this.#remote.has(key)) this.#core.registry.release(ch)
    return true
  }

  /** `key`'s buffer for a new replica, with the Idempotency-Keys of its messages ('load'). */
  #loadOf (key: string): Peer {
    const snap = this.#snapshotOf(key)
    const keys = this.#core.idempotency.of(key, buffered(snap))
    return keys.length > 0 ? ['load', snap, keys] : ['load', snap]
  }

  /** An owner that starts again takes the newest replica any other worker holds. */
  #own (from: number, snap: SnapChannel, n: number, keys?: HeldKey[]): void {
    const [key, lastTime, lastTag] = snap
    if (this.#owner(key) !== this.#me) return
    // every replica's keys (each a message some replica holds): a retry of any is answered as one
    if (keys !== undefined) {
      const idem = this.#core.idempotency
      for (const [k, id, fp, left] of keys) if (!idem.holds(key, k)) idem.set(key, k, id, fp, left)
    }
    // the peer's whole count there (not a delta): a repeated resync cannot add it twice
    this.#count(from, key, n - (this.#peers[from]!.counts.get(key) ?? 0))
    const ch = this.#core.registry.get(key)
    if (ch === undefined || lastTime > ch.lastTime || (lastTime === ch.lastTime && lastTag > ch.lastTag)) {
      this.#restore(snap)
    }
    // subscribers there: it was requested now, as far as anyone can tell
    this.#core.registry.get(key)!.lastRequested = Date.now()
    const p = this.#peers[from]!
    // none: a replica the peer keeps (#linger), sent what it misses until it says 'unkeep'
    if (n === 0) this.#keep(p, key)
    if (p.replicaLast === null) p.replicaLast = new Map()
    p.replicaLast.set(key, [lastTime, lastTag])
    if (this.#syncWaiting === null) this.#catchUp(from)
  }

  /** A channel as a snapshot (an owner's 'load', a replica's 'own') holds it. */
  #restore (snap: SnapChannel): void {
    const [key, lastTime, lastTag, floorTime, floorTag, msgs, known] = snap
    this.#core.restoreChannel(key, lastTime, lastTag, floorTime, floorTag, msgs.map((m) => [m[0], m[1], toBuffer(m[2]), m[3], m[4], m[5]] as const), known)
  }

  /** Send a resynced peer what its replicas miss (published while it had not sent its 'own'). */
  #catchUp (peer: number): void {
    const p = this.#peers[peer]!
    const last = p.replicaLast
    if (last === null) return
    p.replicaLast = null
    for (const [key, [time, tag]] of last) {
      const ch = this.#core.registry.get(key)
      if (ch === undefined) continue
      // only the messages sent are made again from the buffer
      for (let i = ch.buffer.indexAfter(time, tag); i < ch.buffer.size; i++) {
        const m = ch.buffer.at(i)
        this.#mesh.send(peer, ['m', key, m.time, m.tag, m.data, m.contentType, m.event, m.publishedAt], m.data.length)
      }
    }
  }

  // ---- the mesh -------------------------------------------------------------------------------

  /** A peer (first time, or forked again) is reachable: first what this worker holds of its channels. */
  #onUp (peer: number): Peer[] {
    if (this.#away[peer]!) {
      this.#away[peer] = false
      this.#down--
      const t = this.#awayTimers[peer]
      if (t !== null) clearTimeout(t)
      this.#awayTimers[peer] = null
    }
    // first: the fence of this worker's ids (sent once a second after this)
    const out: Peer[] = [['t', Math.floor(Date.now() / 1000)]]
    // the subscribers here of every user the peer owns (maxSubscribersPerUser): it forgot them
    // when the link went
    const users: Array<[string, number]> = []
    for (const c of this.#core.usersHeld()) if (this.#userOwner(c[0]) === peer) users.push([c[0], c[1]])
    if (users.length > 0) out.push(['uc', users])
    const offered: Array<['own', SnapChannel, number, HeldKey[]?]> = []
    for (const ch of this.#core.registry.values()) {
      if (ch.subs.length === 0 || this.#owner(ch.key) !== peer) continue
      let n = 0
      for (const s of ch.subs) if (!this.#refused.has(s)) n++
      if (n > 0) offered.push(['own', this.#snapshotOf(ch.key), n])
    }
    // replicas kept here with no subscriber (#linger), waiting for their owner: offered as those
    // with subscribers are (a restarted owner takes the newest), and kept for a linger more
    const until = Date.now() + REPLICA_LINGER_MS
    for (const key of this.#lingering.keys()) {
      if (this.#owner(key) !== peer || this.#core.localSubscribers(key) > 0) continue
      this.#lingering.set(key, until)
      offered.push(['own', this.#snapshotOf(key), 0])
    }
    // with the Idempotency-Keys of the messages they hold
    for (const o of offered) {
      const keys = this.#replicaKeys.of(o[1][0], buffered(o[1]))
      if (keys.length > 0) o.push(keys)
      out.push(o)
    }
    out.push(['synced'])
    // a starting worker may now reach every peer (after this turn: once its first entries left)
    if (this.#syncWaiting !== null) setImmediate(() => { this.#maybeEndSync() })
    return out
  }

  /** A peer died: its subscribers count no more, what was asked of it fails, what awaited it ends. */
  #onDown (peer: number): void {
    const p = this.#peers[peer]!
    for (const key of [...p.kept]) this.#unkeep(p, key)
    for (const [key, n] of [...p.counts]) this.#count(peer, key, -n)
    p.counts.clear()
    // its users' subscribers count no more (told again when the link is back)
    for (const [user, n] of p.users) this.#userElsewhere(user, -n)
    p.users.clear()
    p.usersSynced = false
    // (its replicas kept here with no subscriber wait for it: #onUp offers them, and the owner
    // sends what they miss)
    p.deleted.clear()
    p.replicaLast = null
    this.#failRequests(peer)
    const waiting = p.awaiting.slice(p.awaitHead)
    p.awaiting = []
    p.awaitHead = 0
    for (const sub of waiting) {
      this.#acksDue.delete(sub)
      // not counted by an owner that is gone: it ends, and its client comes back when the owner is
      if ((sub.flags & F_CLOSED) === 0) sub.transport.end(sub, 503)
    }
    // (nothing more arrives from its side of the link: lib/mesh.ts closed it with this one)
    // what it sent while this worker was starting is of a worker that is gone
    if (this.#held.length > 0) this.#held = this.#held.filter((h) => h[0] !== peer)
    // Multiplexed subscribers here with a channel of the dead worker's and one of another owner's:
    // what it published last may not have reached this worker yet (this worker behind: a stalled
    // loop, a full link), and its next incarnation sends that here from a replica, in seconds older
    // than the other channels' messages the fence lets by from now on. A vector id (§3.2) could no
    // longer say where such a subscriber is, and a resume from it would skip those in silence:
    // they end (503, before anything more is delivered), and resume exactly once it is back
    const ended: Subscriber[] = []
    for (const sub of this.#core.table.subs) {
      if ((sub.flags & F_CLOSED) !== 0 || sub.channels.length < 2) continue
      let dead = false
      let other = false
      for (const ch of sub.channels) {
        if (this.#owner(ch.key) === peer) dead = true
        else other = true
      }
      if (dead && other) ended.push(sub)
    }
    for (const sub of ended) if ((sub.flags & F_CLOSED) === 0) sub.transport.end(sub, 503)
    // nothing more comes from the worker that died: no fence waits for it (its next incarnation's
    // first entry is its own ['t'])
    this.#fenceAt[peer] = Infinity
    this.#core.fenceMoved()
    this.#markAway(peer)
  }

  /** Requests to an away peer wait a while (it is forked again at once), then fail at once. */
  #markAway (peer: number): void {
    if (this.#away[peer]!) return
    this.#away[peer] = true
    this.#down++
    const timer = setTimeout(() => {
      this.#awayTimers[peer] = null
      this.#failRequests(peer)
    }, AWAY_MS)
    timer.unref()
    this.#awayTimers[peer] = timer
  }

  #onPeerBatch (from: number, batch: Peer[]): void {
    let i = 0
    for (; i < batch.length && this.#syncWaiting !== null; i++) {
      const e = batch[i]!
      if (e[0] === 'own') this.#own(from, e[1], e[2], e[3])
      else if (e[0] === 'synced') {
        // (held too, to say the peer's counts are in where they are among every peer's held
        // entries: a room asked before them, by another peer, is not granted)
        this.#held.push([from, e])
        this.#syncWaiting.delete(from)
        this.#maybeEndSync()
      } else this.#held.push([from, e])
    }
    if (i < batch.length) this.#apply(from, i === 0 ? batch : batch.slice(i))
  }

  /** Serve once every peer said what it holds and this worker reaches every peer. */
  #maybeEndSync (): void {
    const waiting = this.#syncWaiting
    if (waiting === null || waiting.size > 0) return
    for (let i = 0; i < this.#n; i++) if (i !== this.#me && !this.#mesh.isUp(i)) return
    this.#endSync()
  }

  /** Every peer said what it holds (or the wait is over): catch them up, then serve. */
  #endSync (): void {
    if (this.#syncWaiting === null) return
    this.#syncWaiting = null
    for (let i = 0; i < this.#n; i++) {
      if (i === this.#me) continue
      // a peer that did not come up in time is treated as one that died
      if (!this.#mesh.isUp(i)) this.#markAway(i)
      this.#catchUp(i)
    }
    const held = this.#held
    this.#held = []
    for (const [from, e] of held) this.#apply(from, [e])
    this.#synced = true
    this.#maybeReady()
  }

  #maybeReady (): void {
    if (this.#synced && this.#primaryReady && this.#ready !== null) {
      this.#ready()
      this.#ready = null
    }
  }

  /**
   * Request `r` of `peer` answered with `value`, now or once it settles (#afterPeers); not when
   * the link to `peer` went meanwhile: that peer failed the request then (#failRequests), and a
   * new process there numbers its requests from 1 again.
   */
  #answer (peer: number, r: number, value: PublishResult | ChannelInfo | null | Promise<PublishResult | ChannelInfo | null>): void {
    if (!(value instanceof Promise)) {
      this.#mesh.send(peer, ['r', r, value])
      return
    }
    const epoch = this.#mesh.epoch(peer)
    value.then((v) => { if (this.#mesh.epoch(peer) === epoch) this.#mesh.send(peer, ['r', r, v]) }, noop)
  }

  #apply (from: number, batch: Peer[]): void {
    const core = this.#core
    let acks = 0
    let fenced = false
    for (const e of batch) {
      switch (e[0]) {
        // ---- as owner
        case 'pub':
          this.#answer(from, e[1], this.#afterPeers(this.#publishOwned(e[2], toBuffer(e[3]), e[4], e[5], e[6], e[7] ?? (e[6] === null ? '' : fingerprint(toBuffer(e[3]), e[4], e[5]))), from))
          break
        case 'rep':
          this.#answer(from, e[1], this.#replayOwned(e[2], e[3], e[4], from))
          break
        case 'info':
          this.#mesh.send(from, ['r', e[1], this.#infoOwned(e[2], true)])
          break
        case 'del':
          this.#answer(from, e[1], this.#afterPeers(this.#deleteOwned(e[2]), from))
          break
        case 'sub': {
          const p = this.#peers[from]!
          const kept = e[3] ?? 0
          for (let k = 0; k < e[1].length; k++) {
            const key = e[1][k]!
            if (e[2] < 0) {
              // the end of a subscription the DELETE already uncounted
              const gone = p.deleted.get(key)
              if (gone !== undefined) {
                if (gone <= 1) p.deleted.delete(key)
                else p.deleted.set(key, gone - 1)
                continue
              }
            }
            // (kept before the count falls: the record stays for it)
            if (e[2] < 0 && k < kept) this.#keep(p, key)
            const had = this.#count(from, key, e[2])
            if (e[2] > 0) {
              const ch = core.registry.getOrCreate(key, core.nowSec)
              ch.lastRequested = Date.now()
              // the peer's first subscriber there: its replica, before the ack and every later
              // message, unless it kept one current
              if (this.#unkeep(p, key) && k < kept) continue
              if (had === 0) this.#mesh.send(from, this.#loadOf(key))
            }
          }
          if (e[2] > 0) acks++
          break
        }
        case 'unkeep': {
          const p = this.#peers[from]!
          for (const key of e[1]) this.#unkeep(p, key)
          break
        }
        case 'touch': {
          const now = Date.now()
          for (const key of e[1]) {
            const ch = core.registry.get(key)
            if (ch !== undefined) ch.lastRequested = now
          }
          break
        }
        case 'own':
          this.#own(from, e[1], e[2], e[3])
          break
        case 'synced':
          this.#peers[from]!.usersSynced = true
          break
        case 't': {
          // only forward (a clock stepped back does not take a fence back), except from Infinity:
          // the first mark of a worker forked again after its predecessor died
          const at = this.#fenceAt[from]!
          if (e[1] > at || at === Infinity) {
            this.#fenceAt[from] = e[1]
            fenced = true
          }
          break
        }
        // ---- as replica
        case 'm':
          // sent while this worker had subscribers there; one that left since drops it
          // (before its replica is loaded, the load holds it)
          if (this.#loaded.has(e[1])) {
            const m = core.applyMessage(e[1], e[2], e[3], toBuffer(e[4]), e[5], e[6], e[7])
            if (e[8] !== undefined) this.#replicaKeys.set(e[1], e[8], m.id, e[9] ?? '')
          }
          break
        case 'uc':
          this.#usersCounted(from, e[1])
          break
        case 'ur': {
          // (counted now: the sender's next 'uc' says it, or that it left meanwhile)
          const status = this.#userRoom(from, e[1], e[2])
          if (status === 0) {
            acks++
            break
          }
          // (the acks before it go first: the peer takes answers in the order it asked)
          if (acks > 0) this.#mesh.send(from, ['a', acks])
          acks = 0
          this.#mesh.send(from, ['un', status])
          break
        }
        case 'un':
          this.#userRefused(from, e[1] === 429 ? 429 : 503)
          break
        case 'load': {
          const key = e[1][0]
          // the subscriber that asked for it may have left already: then its -1 follows
          if (core.localSubscribers(key) > 0) {
            this.#restore(e[1])
            // the owner's word on each key (one held here from an earlier replica may be older)
            for (const [k, id, fp, left] of e[2] ?? []) this.#replicaKeys.set(key, k, id, fp, left)
            this.#loaded.add(key)
            this.#loads++
          }
          break
        }
        case 'd':
          // (first: the subscribers it ends keep no replica of it). A replica kept here is told
          // back: the owner may have been told to keep sending it after the DELETE cleared that
          // (a subscriber here that came and went before this 'd')
          this.#loaded.delete(e[1])
          this.#unlinger(e[1])
          core.deleteLocal(e[1])
          break
        case 'a':
          this.#acked(from, e[1])
          break
        case 'r': {
          const p = this.#pending.get(e[1])
          // (an answer is its asker's: from the worker the request went to)
          if (p === undefined || p.peer !== from) break
          this.#settle(e[1], p)
          p.resolve(e[2])
          break
        }
      }
    }
    if (acks > 0) this.#mesh.send(from, ['a', acks])
    if (fenced) core.fenceMoved()
  }

  /** The subscriber next in line for the peer's answers ('a', 'un'), taken off the line. */
  #nextAwaiting (p: PeerState): Subscriber | undefined {
    const sub = p.awaiting[p.awaitHead]
    if (sub === undefined) return undefined
    p.awaiting[p.awaitHead++] = undefined as unknown as Subscriber
    if (p.awaitHead > 1024 && p.awaitHead * 2 > p.awaiting.length) {
      p.awaiting = p.awaiting.slice(p.awaitHead)
      p.awaitHead = 0
    }
    return sub
  }

  #acked (from: number, n: number): void {
    const p = this.#peers[from]!
    for (let i = 0; i < n; i++) {
      const sub = this.#nextAwaiting(p)
      if (sub === undefined) break
      const due = this.#acksDue.get(sub)
      if (due !== undefined) {
        if (due > 1) { this.#acksDue.set(sub, due - 1); continue }
        this.#acksDue.delete(sub)
      }
      if (this.#paused.delete(sub)) this.#core.resumeLive(sub)
      if ((sub.flags & F_CLOSED) === 0) sub.transport.ready(sub)
    }
  }

  /** The user's owner refused the subscriber next in line for its answers ('un'). */
  #userRefused (from: number, status: number): void {
    const sub = this.#nextAwaiting(this.#peers[from]!)
    if (sub === undefined) return
    // (its channels' owners counted it: their acks find it ended, and unregistered() uncounts it)
    this.#acksDue.delete(sub)
    this.#paused.delete(sub)
    if ((sub.flags & F_CLOSED) !== 0) return
    if (status === 429) this.#core.endOverUserLimit(sub)
    else sub.transport.end(sub, 503)
  }

  // ---- the primary ----------------------------------------------------------------------------

  #report (): void {
    const core = this.#core
    if (this.#pending.size > 0) {
      const old = Date.now() - REQUEST_MS
      for (const [r, p] of this.#pending) {
        if (p.at > old) continue
        this.#settle(r, p)
        p.reject(unavailable())
      }
    }
    let stored = 0
    let channels = 0
    for (const ch of core.registry.values()) {
      if (this.#owner(ch.key) !== this.#me) continue
      channels++
      stored += ch.buffer.size
    }
    this.#owned = { channels, stored }
    this.#link.out.push(['stats', core.table.size, core.stats.delivered.reduce((a, b) => a + b, 0), core.stats.published, stored, channels, [...core.table.counts]])
  }

  #onPrimary (e: Down): void {
    switch (e[0]) {
      case 'hello':
        this.#primaryReady = true
        this.#maybeReady()
        break
      case 'totals':
        this.#totals = [e[1], e[2], e[3], e[4], e[5]]
        break
      case 'rev': {
        const n = this.#core.revokeLocal(e[2], e[3], e[4], e[5])
        // id 0: a past revocation replayed to a re-forked worker, nobody waits for a count
        if (e[1] !== 0) this.#link.out.push(['revd', e[1], n])
        break
      }
    }
  }
}
