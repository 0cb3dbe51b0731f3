// The one place an engine is chosen, for the plugin and the CLI alike: Redis when `redisUrl`,
// `redisCluster` or `redisSentinel` is set (several nodes; with workers, each worker is a node of
// its own), the worker engine when this process is a worker of `parkline serve --workers N` (it
// holds the link to the primary; channels are owned by workers, lib/cluster.ts), and otherwise the in-memory engine. Redis is loaded only when
// asked for.
import type { WorkerLink } from './cluster.ts'
import { redisCredentials, withoutCredentials, type ParklineOptions } from './config.ts'
import type { Core, ParklineLog } from './core.ts'
import { MemoryEngine, type Engine } from './engine.ts'
import type { RedisAuth, RedisTarget } from './redis-engine.ts'

export interface EngineContext {
  log?: ParklineLog
  /** Set in a worker process of `parkline serve --workers N`. */
  link?: WorkerLink
}

export interface ComposedEngine {
  engine: Engine
  /** Releases connections (Redis); called when the app closes. */
  stop: () => Promise<void>
}

/** Build the engine for `core` and wait until it can serve (Redis connected, worker snapshot loaded). */
export async function createEngine (core: Core, opts: ParklineOptions, ctx: EngineContext = {}): Promise<ComposedEngine> {
  // the records are another authority's replicas until the in-memory or worker engine says otherwise
  core.registry.knownSince = 0
  core.registry.owns = null
  const target = redisTarget(opts)
  if (target !== null) {
    const { RedisEngine } = await import('./redis-engine.ts')
    const engine = new RedisEngine(core, target, { log: ctx.log })
    await engine.start()
    return { engine, stop: async () => { await engine.stop() } }
  }
  if (ctx.link !== undefined) {
    // (forked once the primary's start second was past, lib/cli.ts)
    const { WorkerEngine } = await import('./cluster.ts')
    const engine = new WorkerEngine(core, ctx.link)
    await engine.ready
    return { engine, stop: async () => { stoppedNow() } }
  }
  // ids are assigned in this process: none in its start second, where a process it replaces (a
  // restart within the second) may have issued some
  await pastUsedSecond()
  // the core's second moves on each tick: records made before the next one (a subscriber that
  // resumes at once) must get this second's floor, not the start second's
  core.nowSec = Math.max(core.nowSec, Math.floor(Date.now() / 1000))
  return { engine: new MemoryEngine(core), stop: async () => { stoppedNow() } }
}

/**
 * The latest second in which ids may have been issued for the channels a new engine of this
 * process would serve: the second the process started in (a process that died in it and was
 * restarted at once by a supervisor may have issued some), or that an engine of this process
 * stopped in (an app closed and built again).
 */
let idsUsedUntil = Math.floor(performance.timeOrigin / 1000)

/**
 * Wait until the clock is past idsUsedUntil. Ids are the publish's second and a count within it
 * (PROTOCOL.md §2.1): an engine started in that second would issue the same ids again from 0, and a
 * client resuming from one of them would skip the new messages behind it without a gap signal.
 * From the next second on every id is above the old ones, and a resume from an old one is below
 * each new channel record's floor: the gap signal (docs/api.md 11). Costs up to a second at
 * start-up (a re-forked worker already starts in a later second than its predecessor died,
 * lib/cluster.ts restartDelay).
 */
export async function pastUsedSecond (): Promise<void> {
  // judged on the wall clock again after each wait (a step back meanwhile, NTP at boot); bounded
  for (let i = 0; i < 5; i++) {
    const wait = (idsUsedUntil + 1) * 1000 - Date.now()
    if (wait <= 0) return
    await new Promise((resolve) => setTimeout(resolve, Math.min(wait, 1000) + 1))
  }
}

function stoppedNow (): void {
  idsUsedUntil = Math.max(idsUsedUntil, Math.floor(Date.now() / 1000))
}

/** The Redis store the options name (one of redisUrl, redisCluster, redisSentinel), or null. */
export function redisTarget (opts: ParklineOptions): RedisTarget | null {
  // the credentials go to node-redis as options, for every node, and not in the URLs as well
  const auth: RedisAuth = redisCredentials(opts)
  if (opts.redisUrl !== '') return { mode: 'standalone', url: withoutCredentials(opts.redisUrl), auth }
  if (opts.redisCluster.length > 0) return { mode: 'cluster', seeds: opts.redisCluster.map(withoutCredentials), auth }
  if (opts.redisSentinel.length > 0) {
    return {
      mode: 'sentinel',
      auth,
      name: opts.redisSentinelName,
      // rediss:// (every entry, resolveOptions checks): TLS to the sentinels and the nodes they name
      tls: opts.redisSentinel.every((s) => s.startsWith('rediss:')),
      sentinels: opts.redisSentinel.map((entry) => {
        const s = entry.replace(/^rediss?:\/\//, '')
        const i = s.lastIndexOf(':')
        return { host: s.slice(0, i), port: Number(s.slice(i + 1)) }
      })
    }
  }
  return null
}
