// The `parkline` command (bin/parkline.ts loads it once lib/gc-threads-start.ts has run):
// parkline serve [--config FILE] [--port N] [--<option> VALUE]…
// parkline doctor [--workers N] [--require N] [--json]: capacity of this host (lib/doctor.ts).
// parkline token --sub ID --subscribe PATTERNS [--publish PATTERNS] [--admin] [--ttl S]: an HS256
//   token signed with the configured jwtSecret (lib/token-cli.ts).
// Options: defaults < conf/parkline.json (or --config) < PARKLINE_* environment < flags.
import { gcStart } from './gc-threads-start.ts'
import { availableParallelism } from 'node:os'
import net from 'node:net'
import pino from 'pino'
import { Primary, WorkerLink } from './cluster.ts'
import { OPTIONS, flagName, parseCliArgs, resolveOptions, workerCount, type ParklineOptions } from './config.ts'
// the accept queue asked of the kernel (capped by net.core.somaxconn): a reconnect storm or a load
// generator's ramp must not overflow Node's default of 511 and wait out SYN retries
import { LISTEN_BACKLOG, runDoctor } from './doctor.ts'
import { ParklineError } from './errors.ts'
import { shippedConfig } from './paths.ts'
import { accessConfigured } from './access.ts'
import { isLoopback } from './http.ts'
import { buildServer, installShutdown } from './server.ts'
import { coreOf } from './plugin.ts'
import { applyHeapGrowth, heapGrowthState } from './heap-growth.ts'
import { startIdleTrim } from './heap-trim.ts'
import { gcThreads, workerExecArgv } from './gc-threads.ts'


function usage (): string {
  let s = 'usage: parkline serve [--config FILE] [options]\n' +
    '       parkline doctor [--workers N] [--require N] [--json] [--status-url URL]   capacity of this host (doctor --help)\n' +
    '       parkline token --sub ID --subscribe PATTERNS [--publish PATTERNS] [--admin] [--ttl S]   a token signed with jwtSecret\n' +
    '\noptions (flag, env, default):\n'
  for (const o of OPTIONS) s += `  ${flagName(o.name).padEnd(32)} ${JSON.stringify(o.default).padEnd(12)} ${o.doc}\n`
  return s
}

/** The `parkline` command; `entry` is the script (bin/parkline) the primary forks its workers with. */
export async function main (entry: string): Promise<void> {
  if (process.argv[2] === 'doctor') {
    process.exitCode = await runDoctor(process.argv.slice(3), shippedConfig())
    return
  }
  if (process.argv[2] === 'token') {
    // loaded only here: jose stays out of a server that checks no tokens
    const { mintToken } = await import('./token-cli.ts')
    process.stdout.write(await mintToken(process.argv.slice(3), shippedConfig()) + '\n')
    return
  }
  const { command, config, flags } = parseCliArgs(process.argv.slice(2))
  if (command === 'help') { process.stdout.write(usage()); return }
  if (command !== 'serve' && command !== 'worker') throw new ParklineError('PKL_ERR_CONFIG', `unknown command "${command}"\n${usage()}`, 2)
  const file = config ?? shippedConfig()
  // a worker takes its primary's options as the primary resolved them at start: one forked again
  // later must not read a config file edited (or broken, or removed) since
  const resolved = command === 'worker' ? process.env[RESOLVED_ENV] : undefined
  const opts = resolved !== undefined ? resolveOptions(JSON.parse(resolved) as Record<string, unknown>) : resolveOptions(flags, { file, env: process.env })
  const cores = availableParallelism()
  const workers = workerCount(opts, cores)
  const growth = applyHeapGrowth(opts.heapGrowth)
  if (command === 'serve' && workers > 1) {
    await holdPort(opts)
    return primary(opts, workers, gcThreads(opts, cores, workers), entry)
  }
  // a worker of N on a shared port (SO_REUSEPORT): its link to the primary carries ids and counts
  // (or, with redisUrl, only the node-wide metrics: each worker is then a Redis node of its own)
  const link = command === 'worker' ? new WorkerLink() : undefined
  const app = await buildServer(opts, link)
  installShutdown(app, opts, command === 'worker')
  if (link !== undefined) {
    await app.listen({ port: opts.port, host: opts.host, backlog: LISTEN_BACKLOG, reusePort: true } as { port: number, host: string })
    link.out.push(['listening'])
    startIdleTrim()
    return
  }
  const address = await app.listen({ port: opts.port, host: opts.host, backlog: LISTEN_BACKLOG })
  startIdleTrim()
  warnIfOpen(app.log, opts)
  app.log.info({ address, publisher: opts.pubPrefix, subscriber: opts.subPrefix, workers: 1, maxSubscribers: coreOf(app).maxSubscribers, v8PoolSize: gcStart.threads, v8PoolSizeKept: gcStart.skipped, heapGrowingPercent: growth.percent, heapGrowingPercentKept: growth.kept }, `parkline listening on ${address}`)
}

/** Listening beyond loopback with no access control: say so once at start (the secure default still holds). */
function warnIfOpen (log: { warn: (obj: object, msg: string) => void }, opts: ParklineOptions): void {
  if (accessConfigured(opts)) return
  const h = opts.host
  if (h === 'localhost' || isLoopback(h)) return
  log.warn({ host: h }, `no access control configured while listening on ${h}: anyone who can reach this port may subscribe to any channel; ` +
    (opts.publisherOpen ? 'publisherOpen lets anyone publish and delete' : 'only loopback clients may publish') +
    '. Set apiKey, jwtSecret/jwtPublicKey/jwksUrl or authorizeUrl (docs/api.md, Access control)')
}

/** The primary's resolved options, in its workers' environment (read by the server's own user only, like the mesh key). */
const RESOLVED_ENV = 'PARKLINE_RESOLVED_OPTIONS'

/**
 * The workers of one deployment share its port (SO_REUSEPORT), which would let a second `parkline
 * serve --workers N` on the same host and port join them silently: two servers with separate
 * channels taking turns at the connections. The primary holds a Linux abstract socket named after
 * the address for its life (the kernel frees it when the process goes, however it goes); a second
 * primary finds it taken and stops before it forks. (A single process binds without SO_REUSEPORT:
 * the kernel refuses a second one itself. Elsewhere than Linux there is no abstract namespace and
 * no guard: docs/api.md 14.3.) With Redis every worker is a node of the same store, and a second
 * deployment joining is a rolling restart: no guard.
 */
async function holdPort (opts: ParklineOptions): Promise<void> {
  if (process.platform !== 'linux' || opts.port === 0) return
  if (opts.redisUrl !== '' || opts.redisCluster.length > 0 || opts.redisSentinel.length > 0) return
  const guard = net.createServer()
  try {
    await new Promise<void>((resolve, reject) => {
      guard.once('error', reject)
      guard.listen({ path: `\0parkline:${opts.host}:${opts.port}` }, resolve)
    })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err
    throw new ParklineError('PKL_ERR_CONFIG', `another parkline with workers already serves ${opts.host}:${opts.port} on this host: stop it first, or choose another port`, 2)
  }
  guard.unref()
}

/** The primary: forks N workers (channel owners, lib/cluster.ts); SIGTERM drains them all, then exits. */
function primary (opts: ParklineOptions, workers: number, threads: number, entry: string): void {
  process.env[RESOLVED_ENV] = JSON.stringify(opts)
  const log = pino({ level: opts.logLevel, base: { pid: process.pid, role: 'primary' } })
  const seq = new Primary(entry, process.argv.slice(2).filter((a) => a !== 'serve'), log, workerExecArgv(threads))
  seq.start(workers)
  startIdleTrim()
  const address = `http://${opts.host}:${opts.port}`
  warnIfOpen(log, opts)
  // once every worker listens: a port another program holds fails every worker, and says so below
  seq.onListening = () => {
    log.info({ address, publisher: opts.pubPrefix, subscriber: opts.subPrefix, workers, heapGrowingPercent: heapGrowthState.percent, heapGrowingPercentKept: heapGrowthState.kept }, `parkline listening on ${address} with ${workers} worker processes`)
  }
  let stopping = false
  seq.onGiveUp = () => {
    if (stopping) return
    stopping = true
    process.stderr.write('parkline: a worker process exited before it could listen (its error is above): stopping\n')
    seq.stop('SIGTERM', 5000).then(() => process.exit(2), () => process.exit(2))
  }
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return
    stopping = true
    log.info({ signal, drainWindow: opts.drainWindow }, 'drain begun')
    seq.stop(signal, opts.drainWindow * 1000 + 5000).then(() => {
      log.info('drain finished')
      process.exit(0)
    }, () => process.exit(1))
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  process.on('SIGHUP', () => { log.info({ signal: 'SIGHUP' }, 'SIGHUP ignored: stop with SIGTERM') })
}
