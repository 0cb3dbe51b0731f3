// Servers under test, each a child process on a loopback port: Parkline (`bin/parkline.ts serve`,
// N workers or a single process), Nchan (nginx + libnginx-mod-nchan, config generated in a temp
// dir) and the floor (suite/floor-server.ts). Every process started here is recorded by PID and
// killed by PID in stop() or, at the latest, by killAllStarted() from the orchestrator's exit hooks.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { childrenOf } from './proc.ts'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const NODE = process.execPath

export const APT_LINE = 'apt-get install -y nginx libnginx-mod-nchan'

export interface ServerKind { name: string, label: string }

export const SERVER_KINDS: readonly ServerKind[] = [
  { name: 'parkline', label: 'Parkline' },
  { name: 'parkline1', label: 'Parkline --workers 1' },
  // the default topology with option tcpNoDelay false (Nagle on stream subscribers, as Nchan runs them)
  { name: 'parkline-nagle', label: 'Parkline --tcp-no-delay false' },
  { name: 'nchan', label: 'Nchan (nginx)' },
  { name: 'floor', label: 'floor (bare node:net)' },
  // two floor processes sharing the port, each publish also sent to the other (floor-server.ts)
  { name: 'floor2', label: 'floor, 2 processes' },
  // the same traffic served by epoll and write(2) in C (suite/floor.c): what the host and the load
  // generator leave to any server
  { name: 'floorc', label: 'floor (bare C, epoll)' },
  // a second, fresh Nchan later in the same run: how far one run of each resolves (run.ts targets)
  { name: 'nchan2', label: 'Nchan (nginx), 2nd run' }
]

export interface ServerHandle {
  kind: ServerKind
  port: number
  /** What exactly runs (command line / config summary), for the report. */
  describe: string
  /** The server's processes now, labelled (workers are looked up again on every call). */
  procs (): Array<{ pid: number, label: string }>
  stop (): Promise<void>
}

/** PIDs of every process this module started (and their recorded children), for exit hooks. */
const startedPids = new Set<number>()

export function killAllStarted (): void {
  for (const pid of startedPids) {
    try { process.kill(pid, 'SIGKILL') } catch {}
  }
  startedPids.clear()
}

export async function freePort (): Promise<number> {
  const srv = net.createServer()
  srv.listen(0, '127.0.0.1')
  await once(srv, 'listening')
  const port = (srv.address() as net.AddressInfo).port
  await new Promise((resolve) => srv.close(resolve))
  return port
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** One HTTP request on a fresh connection; resolves with the status code, or null. */
function probe (port: number, ms: number): Promise<number | null> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' })
    let buf = ''
    const done = (v: number | null): void => { clearTimeout(t); s.destroy(); resolve(v) }
    const t = setTimeout(() => done(null), ms)
    s.on('connect', () => s.write('GET /pub/bench-ready-probe HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'))
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1')
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(buf)
      if (m !== null) done(Number(m[1]))
    })
    s.on('error', () => done(null))
  })
}

/** Wait until `count` probes in a row get an HTTP answer (with SO_REUSEPORT they land on random workers). */
export async function waitReady (port: number, child: ChildProcess, ms: number, log: () => string): Promise<void> {
  const deadline = Date.now() + ms
  let ok = 0
  while (ok < 8) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`server exited (${child.exitCode ?? child.signalCode}): ${log()}`)
    if (Date.now() > deadline) throw new Error(`server on port ${port} not ready after ${ms} ms: ${log()}`)
    if (await probe(port, 1000) !== null) ok++
    else { ok = 0; await sleep(100) }
  }
}

function capture (child: ChildProcess): () => string {
  let tail = ''
  // BENCH_SERVER_LOG=<file>: append every server's output there too (e.g. with PARKLINE_NODE_ARGS=--trace-gc)
  const file = process.env.BENCH_SERVER_LOG
  const add = (d: Buffer): void => {
    tail = (tail + d.toString()).slice(-4000)
    if (file !== undefined && file !== '') appendFileSync(file, d)
  }
  child.stdout?.on('data', add)
  child.stderr?.on('data', add)
  return () => tail.trim()
}

async function stopProcessTree (child: ChildProcess, extra: () => number[], signal: NodeJS.Signals, ms: number): Promise<void> {
  const kids = extra()
  if (child.exitCode === null && child.signalCode === null) {
    const exited = once(child, 'exit')
    child.kill(signal)
    const timer = sleep(ms).then(() => 'timeout')
    if (await Promise.race([exited.then(() => 'exit'), timer]) === 'timeout') {
      child.kill('SIGKILL')
      await exited
    }
  }
  // children that outlived their parent (they were started on our behalf): by PID
  for (const pid of kids) {
    try { process.kill(pid, 'SIGKILL') } catch {}
    startedPids.delete(pid)
  }
  if (child.pid !== undefined) startedPids.delete(child.pid)
}

async function startParkline (kind: ServerKind, workers: number, extra: string[] = []): Promise<ServerHandle> {
  const port = await freePort()
  // PARKLINE_NODE_ARGS: Node/V8 flags for the server only (not the load generator), e.g. heap sizing
  const nodeArgs = (process.env.PARKLINE_NODE_ARGS ?? '').split(' ').filter((a) => a.length > 0)
  const args = [...nodeArgs, 'bin/parkline.ts', 'serve', '--port', String(port), '--host', '127.0.0.1', '--workers', String(workers),
    '--drain-window', '0', '--log-level', 'warn', ...extra]
  const child = spawn(NODE, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  startedPids.add(child.pid!)
  const log = capture(child)
  const workerPids = (): number[] => workers > 1 ? childrenOf(child.pid!) : []
  try {
    if (workers > 1) {
      const deadline = Date.now() + 20000
      while (workerPids().length < workers) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`parkline workers did not start: ${log()}`)
        await sleep(100)
      }
    }
    await waitReady(port, child, 20000, log)
  } catch (err) {
    await stopProcessTree(child, workerPids, 'SIGKILL', 1000)
    throw err
  }
  for (const pid of workerPids()) startedPids.add(pid)
  return {
    kind,
    port,
    describe: `node ${args.join(' ')} (conf/parkline.json defaults otherwise)`,
    procs: () => workers > 1
      ? [{ pid: child.pid!, label: 'parkline primary' }, ...workerPids().map((pid) => ({ pid, label: 'parkline worker' }))]
      : [{ pid: child.pid!, label: 'parkline' }],
    stop: () => stopProcessTree(child, workerPids, 'SIGTERM', 5000)
  }
}

/** The nchan module's .so, or null when nginx or the module is not installed. */
export function nchanModule (): string | null {
  const nginx = ['/usr/sbin/nginx', '/usr/local/sbin/nginx'].find((p) => existsSync(p))
  if (nginx === undefined) return null
  for (const dir of ['/usr/lib/nginx/modules', '/usr/share/nginx/modules']) {
    const so = path.join(dir, 'ngx_nchan_module.so')
    if (existsSync(so)) return so
  }
  // modules-available/mod-nchan.conf names the module relative to nginx's prefix
  for (const conf of ['/usr/share/nginx/modules-available/mod-nchan.conf', '/etc/nginx/modules-enabled/50-mod-nchan.conf']) {
    if (!existsSync(conf)) continue
    const m = /load_module\s+([^;]+);/.exec(readFileSync(conf, 'utf8'))
    if (m !== null) {
      const so = path.isAbsolute(m[1]!) ? m[1]! : path.join('/usr/share/nginx', m[1]!)
      if (existsSync(so)) return so
    }
  }
  return null
}

export function nginxBinary (): string | null {
  return ['/usr/sbin/nginx', '/usr/local/sbin/nginx'].find((p) => existsSync(p)) ?? null
}

export function nginxVersion (): string {
  const bin = nginxBinary()
  if (bin === null) return 'not installed'
  try {
    const dpkg = readFileSync('/var/lib/dpkg/status', 'utf8')
    const v = (pkg: string): string => new RegExp(`Package: ${pkg}\\n(?:.+\\n)*?Version: (.+)`).exec(dpkg)?.[1] ?? '?'
    return `nginx ${v('nginx')}, libnginx-mod-nchan ${v('libnginx-mod-nchan')}`
  } catch {
    return 'nginx (version unknown)'
  }
}

/** nginx's temporary directories under `dir` (lines for an `http` block): none in the system's paths. */
export function nginxTempPaths (dir: string): string {
  return ['client_body_temp_path', 'proxy_temp_path', 'fastcgi_temp_path', 'uwsgi_temp_path', 'scgi_temp_path']
    .map((d) => `  ${d} ${dir}/${d.slice(0, d.indexOf('_temp'))};\n`).join('')
}

/**
 * Nchan as the suite runs it, with `extra` directives in its server block (benchmarks/websocket.ts:
 * `nchan_deflate_message_for_websocket on;`).
 */
export async function startNchan (kind: ServerKind, tmp: string, extra = ''): Promise<ServerHandle> {
  const so = nchanModule()
  const bin = nginxBinary()
  if (so === null || bin === null) {
    throw new Error(`Nchan is not installed (nginx ${bin ?? 'missing'}, nchan module ${so ?? 'missing'}); install it with: ${APT_LINE}`)
  }
  const port = await freePort()
  const dir = path.join(tmp, `nginx-${port}`)
  mkdirSync(path.join(dir, 'logs'), { recursive: true })
  const conf = `# generated by benchmarks/suite/servers.ts
load_module ${so};
worker_processes 2;
worker_rlimit_nofile 20000;
daemon off;
master_process on;
pid ${dir}/nginx.pid;
error_log ${dir}/logs/error.log warn;
events { worker_connections 20000; }
http {
  access_log off;
${nginxTempPaths(dir)}  client_body_buffer_size 64k;
  keepalive_requests 1000000;
  nchan_shared_memory_size 2048m;
  server {
    listen 127.0.0.1:${port} backlog=4096;${extra === '' ? '' : '\n    ' + extra}
    location ~ ^/pub/(.+)$ {
      nchan_publisher;
      nchan_channel_id $1;
      nchan_message_buffer_length 100;
    }
    location ~ ^/sub/(.+)$ {
      nchan_subscriber;
      nchan_channel_id $1;
      nchan_message_buffer_length 100;
    }
  }
}
`
  const confFile = path.join(dir, 'nginx.conf')
  writeFileSync(confFile, conf)
  const args = ['-p', dir, '-c', confFile, '-e', path.join(dir, 'logs', 'error.log')]
  const child = spawn(bin, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  startedPids.add(child.pid!)
  const log = (): string => {
    try { return readFileSync(path.join(dir, 'logs', 'error.log'), 'utf8').slice(-2000) } catch { return '' }
  }
  const workerPids = (): number[] => childrenOf(child.pid!)
  capture(child)
  try {
    await waitReady(port, child, 15000, log)
  } catch (err) {
    await stopProcessTree(child, workerPids, 'SIGKILL', 1000)
    throw err
  }
  for (const pid of workerPids()) startedPids.add(pid)
  return {
    kind,
    port,
    describe: `${bin} ${args.join(' ')}: worker_processes 2, nchan_message_buffer_length 100, nchan_shared_memory_size 2048m${extra === '' ? '' : ', ' + extra} (config written next to the report)`,
    procs: () => [{ pid: child.pid!, label: 'nginx master' }, ...workerPids().map((pid) => ({ pid, label: 'nginx worker' }))],
    stop: () => stopProcessTree(child, workerPids, 'SIGTERM', 5000)
  }
}

export function nchanConfig (tmp: string, port: number): string | null {
  try { return readFileSync(path.join(tmp, `nginx-${port}`, 'nginx.conf'), 'utf8') } catch { return null }
}

/** The node:http publish floor (benchmarks/publish-path.ts); not one of the suite's servers. */
export async function startHttpFloor (): Promise<ServerHandle> {
  return await startFloor({ name: 'httpfloor', label: 'floor (bare node:http)' }, 'benchmarks/suite/http-floor.ts')
}

async function startFloor (kind: ServerKind, script = 'benchmarks/suite/floor-server.ts', tmp = ''): Promise<ServerHandle> {
  const port = await freePort()
  // FLOOR_NODE_ARGS: Node/V8 flags for the floor, as PARKLINE_NODE_ARGS for Parkline (e.g. --trace-gc)
  const nodeArgs = (process.env.FLOOR_NODE_ARGS ?? '').split(' ').filter((a) => a.length > 0)
  const command = script.endsWith('.c') ? buildC(script, tmp) : NODE
  const args = script.endsWith('.c') ? [String(port), '127.0.0.1'] : [...nodeArgs, script, String(port), '127.0.0.1']
  const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  startedPids.add(child.pid!)
  const log = capture(child)
  try {
    await waitReady(port, child, 15000, log)
  } catch (err) {
    await stopProcessTree(child, () => [], 'SIGKILL', 1000)
    throw err
  }
  return {
    kind,
    port,
    describe: command === NODE ? `node ${args.join(' ')}` : `cc -O2 ${script} && floor-c ${args.join(' ')}`,
    procs: () => [{ pid: child.pid!, label: 'floor' }],
    stop: () => stopProcessTree(child, () => [], 'SIGTERM', 3000)
  }
}

/** Whether the machine has a C compiler (`cc`): the suite's default servers take the C floor then. */
export function hasCompiler (): boolean {
  const r = spawnSync('cc', ['--version'], { stdio: 'ignore' })
  return r.error === undefined && r.status === 0
}

/** Compiles a C floor into `tmp` with the machine's C compiler; its path. */
function buildC (source: string, tmp: string): string {
  const out = path.join(tmp, path.basename(source, '.c') + '-c')
  const r = spawnSync('cc', ['-O2', '-o', out, path.join(ROOT, source)], { encoding: 'utf8' })
  if (r.error !== undefined || r.status !== 0) {
    throw new Error(`the C floor needs a C compiler (apt-get install -y gcc): cc ${r.error?.message ?? r.stderr.trim()}`)
  }
  return out
}

/** `n` floor processes on one port, each publish sent to the others (floor-server.ts). */
async function startFloors (kind: ServerKind, n: number, tmp: string): Promise<ServerHandle> {
  const port = await freePort()
  const dir = mkdtempSync(path.join(tmp, 'floor-'))
  const children: ChildProcess[] = []
  const ready: Array<Promise<void>> = []
  for (let i = 0; i < n; i++) {
    const child = spawn(NODE, ['benchmarks/suite/floor-server.ts', String(port), '127.0.0.1', String(i), String(n), dir], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    startedPids.add(child.pid!)
    children.push(child)
    const log = capture(child)
    ready.push(new Promise((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error(`floor ${i} not listening in 15 s: ${log()}`)) }, 15000)
      child.stdout!.on('data', () => { if (log().includes('floor listening')) { clearTimeout(timer); resolve() } })
      child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`floor ${i} exited ${code}: ${log()}`)) })
    }))
  }
  const stopAll = async (): Promise<void> => { await Promise.all(children.map((c) => stopProcessTree(c, () => [], 'SIGTERM', 3000))) }
  try {
    await Promise.all(ready)
    await waitReady(port, children[0]!, 15000, () => '')
  } catch (err) {
    await Promise.all(children.map((c) => stopProcessTree(c, () => [], 'SIGKILL', 1000)))
    throw err
  }
  return {
    kind,
    port,
    describe: `${n} × node benchmarks/suite/floor-server.ts ${port} 127.0.0.1 <i> ${n} <dir> (reusePort, publishes forwarded over Unix sockets)`,
    procs: () => children.map((c, i) => ({ pid: c.pid!, label: `floor ${i}` })),
    stop: stopAll
  }
}

export async function startServer (name: string, opts: { workers: number, tmp: string }): Promise<ServerHandle> {
  const kind = SERVER_KINDS.find((k) => k.name === name)
  if (kind === undefined) throw new Error(`unknown server "${name}" (known: ${SERVER_KINDS.map((k) => k.name).join(', ')})`)
  switch (name) {
    case 'parkline': return startParkline({ ...kind, label: `Parkline --workers ${opts.workers}` }, opts.workers)
    case 'parkline1': return startParkline(kind, 1)
    case 'parkline-nagle': return startParkline({ ...kind, label: `Parkline --workers ${opts.workers} --tcp-no-delay false` }, opts.workers, ['--tcp-no-delay', 'false'])
    case 'nchan':
    case 'nchan2': return startNchan(kind, opts.tmp)
    case 'floor2': return startFloors(kind, 2, opts.tmp)
    case 'floorc': return startFloor(kind, 'benchmarks/suite/floor.c', opts.tmp)
    default: return startFloor(kind)
  }
}
