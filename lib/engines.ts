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
