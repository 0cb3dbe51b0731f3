// The one place an engine is chosen, for the plugin and the CLI alike: Redis when `redisUrl`,
// `redisCluster` or `redisSentinel` is set (several nodes; with workers, each worker is a node of
// its own), the worker engine when this process is a worker of `parkline serve --workers N` (it
// holds the link to the primary; channels are owned by workers, lib/cluster.ts), and otherwise the in-memory engine. Redis is loaded only when
// asked for.
import type { WorkerLink } from './cluster.ts'
import { urlCredentials, type ParklineOptions } from './config.ts'
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
  const target = redisTarget(opts)
  if (target !== null) {
    const { RedisEngine } = await import('./redis-engine.ts')
    const engine = new RedisEngine(core, target, { log: ctx.log })
    await engine.start()
    return { engine, stop: async () => { await engine.stop() } }
  }
  if (ctx.link !== undefined) {
    const { WorkerEngine } = await import('./cluster.ts')
    const engine = new WorkerEngine(core, ctx.link)
    await engine.ready
    return { engine, stop: async () => {} }
  }
  return { engine: new MemoryEngine(core), stop: async () => {} }
}

/** The Redis store the options name (one of redisUrl, redisCluster, redisSentinel), or null. */
export function redisTarget (opts: ParklineOptions): RedisTarget | null {
  const given: RedisAuth = {}
  if (opts.redisUsername !== '') given.username = opts.redisUsername
  if (opts.redisPassword !== '') given.password = opts.redisPassword
  if (opts.redisUrl !== '') return { mode: 'standalone', url: opts.redisUrl, auth: given }
  if (opts.redisCluster.length > 0) {
    // a seed's user:password@ is every node's (config.ts refuses seeds that differ, or both ways)
    const seed = opts.redisCluster.map(urlCredentials).find((c) => c !== null)
    return { mode: 'cluster', seeds: opts.redisCluster, auth: seed ?? given }
  }
  if (opts.redisSentinel.length > 0) {
    return {
      mode: 'sentinel',
      auth: given,
      name: opts.redisSentinelName,
      sentinels: opts.redisSentinel.map((s) => {
        const i = s.lastIndexOf(':')
        return { host: s.slice(0, i), port: Number(s.slice(i + 1)) }
      })
    }
  }
  return null
}
