// The `parkline` command (bin/parkline.ts loads it once lib/gc-threads-start.ts has run):
// parkline serve [--config FILE] [--port N] [--<option> VALUE]…
// parkline doctor [--workers N] [--require N] [--json]: capacity of this host (lib/doctor.ts).
// parkline token --sub ID [--subscribe PATTERNS] [--publish PATTERNS] [--admin] [--ttl S]: an HS256
//   token signed with the configured jwtSecret (lib/token-cli.ts).
// Options: defaults < conf/parkline.json (or --config) < PARKLINE_* environment < flags.
import { gcStart } from './gc-threads-start.ts'
import { availableParallelism, hostname } from 'node:os'
import net, { type AddressInfo } from 'node:net'
import { readFileSync } from 'node:fs'
import pino from 'pino'
import { Primary, WorkerLink, type CredentialsTaken } from './cluster.ts'
import { takeEarlyHangups } from './early-signals.ts'
import { OPTIONS, envName, flagName, parseCliArgs, resolveOptions, workerCount, type Credentials, type ParklineOptions } from './config.ts'
// the accept queue asked of the kernel (capped by net.core.somaxconn): a reconnect storm or a load
// generator's ramp must not overflow Node's default of 511 and wait out SYN retries
import { LISTEN_BACKLOG, runDoctor } from './doctor.ts'
import { ParklineError } from './errors.ts'
import { shippedConfig } from './paths.ts'
import { isLoopback } from './http.ts'
import { checkReload, openAccess, pickCredentials, publicKeyText } from './access.ts'
import { buildServer, installShutdown } from './server.ts'
import { coreOf } from './plugin.ts'
import { pastUsedSecond } from './engines.ts'
import { applyHeapGrowth, heapGrowthState } from './heap-growth.ts'
import { startIdleTrim } from './heap-trim.ts'
import { gcThreads, workerExecArgv } from './gc-threads.ts'


function usage (): string {
  let s = 'usage: parkline serve [--config FILE] [options]\n' +
    '       parkline doctor [--workers N] [--require N] [--json] [--status-url URL]   capacity of this host (doctor --help)\n' +
    '       parkline token --sub ID [--subscribe PATTERNS] [--publish PATTERNS] [--admin] [--ttl S] [--jti ID]   a token signed with jwtSecret (token --help)\n' +
    '\noptions (flag, environment variable, default):\n'
  for (const o of OPTIONS) s += `  ${flagName(o.name).padEnd(32)} ${envName(o.name).padEnd(36)} ${JSON.stringify(o.default).padEnd(12)} ${o.doc}\n`
  return s
}

/**
 * The exit status for an error that ends the command (docs/api.md, "Exit status"): 2 when the
 * configuration or the command line is wrong (starting again fails the same way, so the systemd
 * unit does not: RestartPreventExitStatus=2), 1 for anything else (the port held, a store or a
 * worker that failed), which a later start may not meet.
 */
export function exitStatusOf (err: unknown): 1 | 2 {
  return err instanceof ParklineError && err.code === 'PKL_ERR_CONFIG' ? 2 : 1
}

/** The `parkline` command; `entry` is the script (bin/parkline) the primary forks its workers with. */
export async function main (entry: string): Promise<void> {
  // (the commands that serve nothing end on a SIGHUP, as any program: Node's default)
  if (process.argv[2] === 'doctor' || process.argv[2] === 'token') takeEarlyHangups()
  if (process.argv[2] === 'doctor') {
    process.exitCode = await runDoctor(process.argv.slice(3), shippedConfig())
    return
  }
  if (process.argv[2] === 'token') {
    // loaded only here: jose stays out of a server that checks no tokens
    const { mintToken, TOKEN_USAGE } = await import('./token-cli.ts')
    const token = await mintToken(process.argv.slice(3), shippedConfig())
    process.stdout.write(token === null ? TOKEN_USAGE : token + '\n')
    return
  }
  const { command, config, flags } = parseCliArgs(process.argv.slice(2))
  if (command === 'help') { process.stdout.write(usage()); return }
  if (command !== 'serve' && command !== 'worker') throw new ParklineError('PKL_ERR_CONFIG', `unknown command "${command}"\n${usage()}`, 2)
  // a worker runs only under its primary, which gives it its options over their IPC channel
  if (command === 'worker' && process.send === undefined) throw new ParklineError('PKL_ERR_CONFIG', 'parkline worker: run by `parkline serve --workers N`, not by hand', 2)
  const file = config ?? shippedConfig()
  // a worker of N on a shared port (SO_REUSEPORT): its link to the primary carries ids and counts
  // (or, with redisUrl, only the node-wide metrics: each worker is then a Redis node of its own)
  const link = command === 'worker' ? new WorkerLink() : undefined
  // a worker takes its primary's options as the primary resolved them at start, over that link (not
  // in its environment: no limit on their size there, no secrets in anything it starts): one forked
  // again later must not read a config file edited (or broken, or removed) since
  const resolved = link !== undefined ? await link.options : undefined
  // the configuration as the command line, the file and the environment say now (read again at a SIGHUP)
  const read = (): ParklineOptions => resolveOptions(flags, { file, env: process.env, explicitFrom: 'command line' })
  const opts = resolved !== undefined ? resolveOptions(JSON.parse(resolved) as Record<string, unknown>) : read()
  const cores = availableParallelism()
  const workers = workerCount(opts, cores)
  const growth = applyHeapGrowth(opts.heapGrowth)
  if (command === 'serve' && workers > 1) {
    if (opts.port === 0) throw new ParklineError('PKL_ERR_CONFIG', `port 0 (a port of the kernel's choosing) with ${workers} worker processes: each would be given a port of its own. Give a port, or --workers 1`, 2)
    await holdPort(opts)
    // channels' owner workers assign ids: none in the second the primary started in (a deployment
    // killed and started again within it, lib/engines.ts); a re-forked worker starts in a later
    // second than its predecessor died (lib/cluster.ts restartDelay)
    if (!onRedis(opts)) await pastUsedSecond()
    // a key file is read once, here, as at a SIGHUP: every worker, one forked again later included,
    // takes the key it held at start (until a SIGHUP reads it again), not what the file holds then
    opts.jwtPublicKey = publicKeyText(opts.jwtPublicKey)
    return primary(opts, workers, gcThreads(opts, cores, workers), entry, read)
  }
  const app = await buildServer(opts, link)
  link?.built()
  // an in-memory deployment's workers end a drain together, when the primary says (lib/cluster.ts stop)
  installShutdown(app, opts, command === 'worker', link !== undefined && !onRedis(opts) ? link : null)
  const access = coreOf(app).access
  if (link !== undefined) {
    // a SIGHUP is the primary's (it may reach the whole process group; lib/early-signals.ts keeps
    // it from ending this worker): the primary reads the configuration, checks it and sends each
    // worker its credentials, which it answers with what changed for it, or why not
    link.onCredentials = (creds) => {
      try {
        const changed = access?.reload(creds) ?? []
        if (changed.length > 0) app.log.info({ parkline: 'reload', changed }, `credentials reloaded: ${changed.join(', ')}`)
        return changed
      } catch (err) {
        app.log.error({ parkline: 'reload', error: (err as Error).message }, `reload refused: ${(err as Error).message}; the running credentials stay`)
        throw err
      }
    }
    await app.listen({ port: opts.port, host: opts.host, backlog: LISTEN_BACKLOG, reusePort: true } as { port: number, host: string })
    link.out.push(['listening'])
    startIdleTrim()
    return
  }
  onReload(app.log, opts, read, async (creds) => [{ worker: 0, changed: access?.reload(creds) ?? [], error: null }])
  await app.listen({ port: opts.port, host: opts.host, backlog: LISTEN_BACKLOG })
  // the address bound (0.0.0.0 where that is the host), not the one Fastify picks to show
  const bound = app.server.address() as AddressInfo
  const address = `http://${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`
  startIdleTrim()
  warnIfOpen(app.log, opts)
  app.log.info({ address, publisher: opts.pubPrefix, subscriber: opts.subPrefix, workers: 1, maxSubscribers: coreOf(app).maxSubscribers, v8PoolSize: gcStart.threads, v8PoolSizeKept: gcStart.skipped, heapGrowingPercent: growth.percent, heapGrowingPercentKept: growth.kept }, `parkline listening on ${address}`)
}

/** Listening beyond loopback with subscribers or publishers open to anyone: said once at start (the secure default still holds). */
function warnIfOpen (log: { warn: (obj: object, msg: string) => void }, opts: ParklineOptions): void {
  const h = opts.host
  if (h === 'localhost' || isLoopback(h)) return
  const open = openAccess(opts)
  if (!open.subscribers && !open.publishers) return
  const who = open.subscribers
    ? 'anyone who can reach this port may subscribe to any channel; ' + (open.publishers ? 'publisherOpen lets anyone publish and delete' : 'only loopback clients may publish')
    : 'publisherOpen lets anyone who can reach this port publish and delete (authorizeUrl is asked about subscribers only; authorizePublish sends publishers there too)'
  log.warn({ host: h }, `${open.subscribers ? 'no access control configured' : 'the publisher is open'} while listening on ${h}: ${who}. Set apiKey or jwtSecret/jwtPublicKey/jwksUrl${open.subscribers ? ', or authorizeUrl for subscribers' : ', or authorizePublish'} (docs/api.md, Access control)`)
}

/** A Redis store is configured: every worker is then a node of it (no channel owners among the workers). */
function onRedis (opts: ParklineOptions): boolean {
  return opts.redisUrl !== '' || opts.redisCluster.length > 0 || opts.redisSentinel.length > 0
}

/**
 * The workers of one deployment share its port (SO_REUSEPORT), which would let a second `parkline
 * serve --workers N` on the same host and port join them silently: two servers with separate
 * channels taking turns at the connections. The primary marks the port with a Linux abstract
 * socket for its life (the kernel frees it when the process goes, however it goes), named after
 * the port alone (SO_REUSEPORT lets 0.0.0.0:P and 127.0.0.1:P share too):
 * - an in-memory deployment holds `@parkline-port:P` itself, which a second one cannot bind, and
 *   refuses a port a Redis deployment marks;
 * - with Redis every worker is a node of the same store, and a second Redis deployment joining is
 *   a rolling restart: each holds `@parkline-port:P:redis:<pid>` and refuses only a port an
 *   in-memory deployment holds.
 * A single process binds without SO_REUSEPORT: the kernel refuses a second one itself. Elsewhere
 * than Linux there is no abstract namespace and no guard (docs/api.md 14.3). The guard accepts
 * no connection: one that comes is closed at once.
 */
async function holdPort (opts: ParklineOptions): Promise<void> {
  if (process.platform !== 'linux' || opts.port === 0) return
  const name = `\0parkline-port:${opts.port}`
  const port = `${opts.host}:${opts.port}`
  const redis = onRedis(opts)
  if (redis && await listening(name)) {
    throw new ParklineError('PKL_ERR_PORT_HELD', `a parkline deployment without Redis serves port ${opts.port} on this host: a deployment on Redis there would take turns with it on separate channels. Stop it first, or choose another port`, 500)
  }
  if (!redis && redisMarked(opts.port)) {
    throw new ParklineError('PKL_ERR_PORT_HELD', `a parkline deployment on Redis serves port ${opts.port} on this host: one without Redis there would take turns with it on separate channels. Stop it first, or choose another port`, 500)
  }
  const guard = net.createServer((socket) => { socket.destroy() })
  try {
    await new Promise<void>((resolve, reject) => {
      guard.once('error', reject)
      guard.listen({ path: redis ? `${name}:redis:${process.pid}` : name }, resolve)
    })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err
    throw new ParklineError('PKL_ERR_PORT_HELD', `another parkline with workers already serves ${port} on this host: stop it first, or choose another port`, 500)
  }
  guard.unref()
}

/** Something listens on the abstract socket `name`. */
async function listening (name: string): Promise<boolean> {
  return await new Promise((resolve) => {
    const s = net.connect({ path: name })
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => { resolve(false) })
  })
}

/** A Redis deployment's primary marks `port` (its `@parkline-port:P:redis:<pid>` is listed in /proc/net/unix). */
function redisMarked (port: number): boolean {
  let table: string
  try { table = readFileSync('/proc/net/unix', 'latin1') } catch { return false }
  return table.includes(` @parkline-port:${port}:redis:`)
}

/** The primary: forks N workers (channel owners, lib/cluster.ts); SIGTERM drains them all, then exits. */
function primary (opts: ParklineOptions, workers: number, threads: number, entry: string, read: () => ParklineOptions): void {
  const log = pino({ level: opts.logLevel, base: { pid: process.pid, hostname: hostname(), role: 'primary' } })
  // the workers get the options as resolved here, over IPC only: no flag (a --redis-password among
  // them) is repeated on their command lines or in their environment
  const seq = new Primary(entry, log, workerExecArgv(threads), JSON.stringify(opts))
  const address = `http://${opts.host}:${opts.port}`
  warnIfOpen(log, opts)
  // once every worker listens: a port another program holds fails every worker, and says so below
  seq.onListening = () => {
    log.info({ address, publisher: opts.pubPrefix, subscriber: opts.subPrefix, workers, heapGrowingPercent: heapGrowthState.percent, heapGrowingPercentKept: heapGrowthState.kept }, `parkline listening on ${address} with ${workers} worker processes`)
  }
  let stopping = false
  // the worker's own status carries over: 2 when its configuration was refused (it resolves the
  // same options, and a key or path is only checked where the server is built), else 1
  seq.onGiveUp = (workerStatus) => {
    if (stopping) return
    stopping = true
    process.stderr.write('parkline: a worker process exited before it could listen (its error is above): stopping\n')
    const status = workerStatus === 2 ? 2 : 1
    seq.stop('SIGTERM', 5000).then(() => process.exit(status), () => process.exit(status))
  }
  let signalled = false
  const stop = (signal: NodeJS.Signals): void => {
    // a second signal (Ctrl-C twice, a second `systemctl kill`): the workers are killed, and the
    // exit is at once (docs/api.md 12.4), as a lone process's
    if (signalled) {
      log.warn({ signal }, 'second signal: workers killed, exiting now')
      seq.killAll()
      process.exit(1)
    }
    signalled = true
    if (stopping) return
    stopping = true
    log.info({ signal, drainWindow: opts.drainWindow }, 'drain begun')
    seq.stop(signal, opts.drainWindow * 1000 + 5000, !onRedis(opts)).then((clean) => {
      // a worker that cut requests still under way, or was killed past the window: exit 1 (docs/api.md 14.1)
      if (!clean) {
        log.warn('drain finished, but not cleanly on every worker')
        process.exit(1)
      }
      log.info('drain finished')
      process.exit(0)
    }, () => process.exit(1))
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  // (forked once a stop signal is handled: one that comes while they are forked drains those
  // forked so far, instead of ending this process and leaving them)
  seq.start(workers)
  startIdleTrim()
  // each worker takes the credentials and says what changed for it (a public key file's contents
  // included); a worker forked again later starts with them
  onReload(log, opts, read, async (creds) => await seq.reloadCredentials(creds, JSON.stringify({ ...opts, ...creds })))
}

/**
 * SIGHUP: the configuration is read again (the same command line, config file and environment)
 * and its credentials (CREDENTIALS: API keys, the JWT secret or public key and its checks) are
 * taken without a restart; the options that take a restart are named, not applied. A
 * configuration the running server cannot take is refused whole and said (docs/api.md 16.9).
 * One reload at a time; the SIGHUPs that come meanwhile make one more after it.
 */
function onReload (log: { info: (o: object, m: string) => void, warn: (o: object, m: string) => void, error: (o: object, m: string) => void }, opts: ParklineOptions, read: () => ParklineOptions, apply: (creds: Credentials) => Promise<CredentialsTaken[]>): void {
  const reload = async (): Promise<void> => {
    let creds: Credentials
    let others: string[]
    try {
      const next = read()
      // a key file is read once, here: what was checked is what every process takes
      creds = { ...pickCredentials(next), jwtPublicKey: publicKeyText(next.jwtPublicKey) }
      others = await checkReload(opts, { ...next, ...creds })
    } catch (err) {
      log.error({ signal: 'SIGHUP', error: (err as Error).message }, `reload refused: ${(err as Error).message}; the running configuration stays`)
      return
    }
    if (others.length > 0) log.warn({ signal: 'SIGHUP', options: others }, `changed in the configuration, taken at the next restart: ${others.join(', ')}`)
    const taken = await apply(creds)
    Object.assign(opts, creds)
    const refused = taken.filter((w) => w.error !== null)
    const unanswered = taken.filter((w) => w.unanswered === true).map((w) => w.worker)
    const changed = [...new Set(taken.flatMap((w) => w.changed))]
    if (refused.length > 0) {
      log.error({ signal: 'SIGHUP', refused }, `reload refused by ${refused.length === 1 ? 'a worker' : `${refused.length} workers`}: ${refused.map((w) => `worker ${w.worker}: ${w.error!}`).join('; ')}`)
    }
    if (unanswered.length > 0) {
      log.warn({ signal: 'SIGHUP', workers: unanswered }, `credentials sent, not yet confirmed by worker ${unanswered.join(', ')} (a worker that is stopped or busy takes them when it reads again; its answer is logged then)`)
    }
    if (refused.length + unanswered.length < taken.length || taken.length === 0) {
      log.info({ signal: 'SIGHUP', changed }, changed.length > 0 ? `credentials reloaded: ${changed.join(', ')}` : 'configuration read again: no credential changed')
    }
  }
  // one at a time; SIGHUPs that come meanwhile make one more, after it
  let running = false
  let again = false
  const run = (): void => {
    if (running) {
      again = true
      return
    }
    running = true
    reload().catch((err: unknown) => {
      log.error({ signal: 'SIGHUP', error: (err as Error).message }, `reload failed: ${(err as Error).message}`)
    }).finally(() => {
      running = false
      if (again) {
        again = false
        run()
      }
    })
  }
  process.on('SIGHUP', run)
  // one that came while the server was being built
  if (takeEarlyHangups() > 0) run()
}
