// Where a conformance case runs (test/transports/conformance.test.ts): one in-process server per
// case, one `parkline serve --workers 2` process, two `parkline serve` nodes on one redis-server, or
// two nodes on a Redis Cluster of 3 masters + 3 replicas (subscribers on node B; publishers,
// channel info and DELETE on node A). Spawned deployments are
// started once per option set and per test file, and shared by the cases, each on its own channel
// ids (`dep.ch(name)`); `closeAll()` (from test.after.always) kills what was spawned.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import type { ExecutionContext } from 'ava'
import type { FastifyInstance } from 'fastify'
import { flagName, type ParklineOptions } from '../../lib/config.ts'
import { serve } from './node.ts'
import { redisCommand, redisInstalled } from './redis.ts'
import { startCluster } from './redis-cluster.ts'
import { eventually, freePort, startServer } from './server.ts'

/** What a case passes to startServer; a spawned topology gets each one as its CLI flag. */
export type ServerOptions = Partial<Record<keyof ParklineOptions, unknown>>

export type TopologyName = 'in-process' | 'workers-2' | 'redis-2-nodes' | 'redis-cluster-2-nodes'

export interface Deployment {
  topology: TopologyName
  /** Subscribers connect to this port (the drivers read `port`). */
  port: number
  subBase: string
  /** Publishers, channel info and DELETE go here. */
  pubBase: string
  options: ServerOptions
  /** The in-process server, for checks that read its internals; null when spawned. */
  app: FastifyInstance | null
  /** A channel id no other case on this deployment uses. */
  ch (name: string): string
  /** Spawned: which of its processes exited, with the end of its output; null while all run. */
  down (): string | null
}

export interface Topology {
  name: TopologyName
  /** Separate processes: only what goes over HTTP can be observed. */
  spawned: boolean
  start (t: ExecutionContext, options?: ServerOptions): Promise<Deployment>
}

/** `--buffer-length=5` etc.: the CLI form of startServer options. */
export function optionFlags (options: ServerOptions): string[] {
  return Object.entries(options).map(([k, v]) => `${flagName(k)}=${Array.isArray(v) ? v.join(',') : String(v)}`)
}

let seq = 0
function prefixer (): (name: string) => string {
  const p = `c${++seq}-`
  return (name) => p + name
}

// ---- no process outlives the test file ---------------------------------------------------------------

/**
 * A detached watchdog that reads the pids of spawned processes on its stdin and SIGKILLs those still
 * listed when that pipe closes: the test process ended without its after hook (ava's timeout kills
 * it). Worker processes exit by themselves once their primary is gone.
 */
const WATCHDOG = `
const pids = new Set(); let buf = ''
const reap = () => { for (const p of pids) { try { process.kill(p, 'SIGKILL') } catch {} } process.exit(0) }
process.stdin.setEncoding('utf8')
process.stdin.on('data', (d) => {
  buf += d
  for (let i = buf.indexOf('\\n'); i !== -1; i = buf.indexOf('\\n')) {
    const l = buf.slice(0, i); buf = buf.slice(i + 1)
    if (l.startsWith('-')) pids.delete(Number(l.slice(1))); else pids.add(Number(l))
  }
})
process.stdin.on('end', reap)
process.stdin.on('error', reap)
`

let watchdog: ChildProcess | null = null
const children = new Set<ChildProcess>()

function guard (proc: ChildProcess): void {
  if (proc.pid === undefined) return
  if (watchdog === null) {
    watchdog = spawn(process.execPath, ['-e', WATCHDOG], { stdio: ['pipe', 'ignore', 'ignore'], detached: true })
    watchdog.unref()
    const stdin = watchdog.stdin as unknown as { unref?: () => void, on: (e: string, f: () => void) => void }
    stdin.on('error', () => {})
    stdin.unref?.()
  }
  children.add(proc)
  watchdog.stdin!.write(`${proc.pid}\n`)
  proc.once('exit', () => {
    children.delete(proc)
    if (watchdog?.stdin?.writable === true) watchdog.stdin.write(`-${proc.pid}\n`)
  })
}

// backstop: never leave a process behind, even if the after hook does not run
process.once('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
})

// ---- spawned deployments, shared for the whole file ------------------------------------------------

interface Shared { subPort: number, subBase: string, pubBase: string, down: () => string | null }

/** A process of a deployment, to say so when it died under a case. */
interface Watched { name: string, proc: ChildProcess, log: () => string }

function downOf (ps: Watched[]): () => string | null {
  return () => {
    const dead = ps.filter((p) => p.proc.exitCode !== null || p.proc.signalCode !== null)
    if (dead.length === 0) return null
    return dead.map((p) => `${p.name} exited (${p.proc.exitCode ?? p.proc.signalCode}): ${p.log().slice(-2000)}`).join('\n')
  }
}

const teardowns: Array<() => unknown> = []
const started = new Map<string, Promise<Shared>>()

/** A stand-in ExecutionContext whose teardowns run in closeAll(): serve() only calls teardown. */
const fileScope = {
  teardown (fn: () => unknown): void { teardowns.push(fn) }
} as unknown as ExecutionContext

/** Deployments boot one after the other: a dozen processes starting at once starve a 2-core box. */
let bootQueue: Promise<unknown> = Promise.resolve()

async function shared (topology: TopologyName, options: ServerOptions, boot: (flags: string[]) => Promise<Shared>): Promise<Shared> {
  const key = topology + ' ' + JSON.stringify(Object.entries(options).sort(([a], [b]) => a.localeCompare(b)))
  let p = started.get(key)
  if (p === undefined) {
    p = bootQueue.then(async () => await boot(optionFlags(options)))
    bootQueue = p.catch(() => {})
    started.set(key, p)
  }
  return await p
}

/**
 * A redis-server on a free port, watched from the moment it is spawned (startRedis registers its
 * teardown only once Redis answers, so a slow start would leave it behind).
 */
async function redisServer (): Promise<Watched & { port: number }> {
  if (!redisInstalled()) throw new Error('redis-server is not installed; these tests need it: apt-get install -y redis-server')
  const port = await freePort()
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] })
  guard(proc)
  let out = ''
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  proc.stderr!.on('data', (d: Buffer) => { out += d.toString() })
  teardowns.push(async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return
    proc.kill('SIGKILL')
    await once(proc, 'exit')
  })
  const up = await eventually(async () => (await redisCommand(port, 'PING')) === '+PONG\r\n', 20000)
  if (!up) throw new Error(`redis-server did not start on port ${port}: ${out.slice(-500)}`)
  return { name: 'redis-server', proc, log: () => out, port }
}

/** At most `n` cases at once on a shared deployment (a 2-core box runs the whole table). */
function limiter (n: number): () => Promise<() => void> {
  let free = n
  const queue: Array<() => void> = []
  return async () => {
    if (free > 0) free--
    else await new Promise<void>((resolve) => queue.push(resolve))
    let released = false
    return () => {
      if (released) return
      released = true
      const next = queue.shift()
      if (next !== undefined) next()
      else free++
    }
  }
}

/** Cases running at once on one spawned topology. */
export const SPAWNED_CONCURRENCY = 16

function view (topology: TopologyName, s: Shared, options: ServerOptions): Deployment {
  return { topology, port: s.subPort, subBase: s.subBase, pubBase: s.pubBase, options, app: null, ch: prefixer(), down: s.down }
}

export const inProcess: Topology = {
  name: 'in-process',
  spawned: false,
  async start (t, options = {}) {
    const srv = await startServer(t, options)
    return { topology: 'in-process', port: srv.port, subBase: srv.base, pubBase: srv.base, options, app: srv.app, ch: prefixer(), down: () => null }
  }
}

const workers2Slot = limiter(SPAWNED_CONCURRENCY)
export const workers2: Topology = {
  name: 'workers-2',
  spawned: true,
  async start (t, options = {}) {
    t.teardown(await workers2Slot())
    const s = await shared('workers-2', options, async (flags) => {
      const node = await serve(fileScope, ['--workers', '2', ...flags])
      guard(node.proc)
      return { subPort: node.port, subBase: node.base, pubBase: node.base, down: downOf([{ name: 'parkline (primary)', ...node }]) }
    })
    return view('workers-2', s, options)
  }
}

/** Two `parkline serve` nodes on one store: subscribers on node B, publishers on node A. */
function twoNodes (name: TopologyName, store: () => Promise<{ flags: string[], watched: Watched[] }>): Topology {
  const slot = limiter(SPAWNED_CONCURRENCY)
  return {
    name,
    spawned: true,
    async start (t, options = {}) {
      t.teardown(await slot())
      const s = await shared(name, options, async (flags) => {
        const st = await store()
        const [a, b] = await Promise.all([
          serve(fileScope, ['--workers', '1', ...st.flags, ...flags]),
          serve(fileScope, ['--workers', '1', ...st.flags, ...flags])
        ])
        guard(a!.proc)
        guard(b!.proc)
        return { subPort: b!.port, subBase: b!.base, pubBase: a!.base, down: downOf([...st.watched, { name: 'node A', ...a! }, { name: 'node B', ...b! }]) }
      })
      return view(name, s, options)
    }
  }
}

export const redis2 = twoNodes('redis-2-nodes', async () => {
  const redis = await redisServer()
  return { flags: ['--redis-url', `redis://127.0.0.1:${redis.port}`], watched: [redis] }
})

/** Two nodes on a Redis Cluster of 3 masters + 3 replicas (test/helpers/redis-cluster.ts). */
export const redisCluster2 = twoNodes('redis-cluster-2-nodes', async () => {
  const cluster = await startCluster(fileScope)
  return { flags: ['--redis-cluster', cluster.seeds.join(',')], watched: [] }
})

export const TOPOLOGIES: readonly Topology[] = [inProcess, workers2, redis2, redisCluster2]

/** Kill every spawned process (nodes first, then Redis); for test.after.always. */
export async function closeAll (): Promise<void> {
  // settle the starts first, so nothing is spawned after this
  await Promise.allSettled(started.values())
  started.clear()
  for (const fn of teardowns.splice(0).reverse()) await fn()
  watchdog?.stdin?.end()
  watchdog = null
}
