// Memory per idle connection: user-space bytes per idle SSE subscriber and per parked long-poll,
// for Parkline and for reference servers, each in its own child process (STYLE.md §4: server and
// load generator are separate processes). One file, three roles:
//
//   node benchmarks/connections.ts                 orchestrator (what `npm run bench:memory` runs)
//   node --expose-gc benchmarks/connections.ts server <kind>   a server under test (IPC: ready, mem, count)
//   node benchmarks/connections.ts client          the load generator (IPC: open, stats)
//
// Per server and mode: start it, warm the path up with a few connections, sample memory after gc,
// open N connections (an SSE one counts once `: hi` arrived; a long-poll once the server holds it),
// sample again after gc; (after - before) / N. Kernel socket memory is /proc/net/sockstat "TCP mem"
// (pages, whole machine, both ends of every loopback connection).
//
// Knobs (env): SUBSCRIBERS (15000), RUNS (2; the median is reported), SERVERS (comma list of
// kinds), MODES (sse,longpoll), CHANNELS (1: subscriber i is on channel i % CHANNELS),
// CONCURRENCY (connects in flight, 500), BENCH_OUT (results file; "-" = none).
import { execFileSync, fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import type { ServerResponse } from 'node:http'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import v8 from 'node:v8'
import { coreOf } from '../lib/plugin.ts'

const SELF = fileURLToPath(import.meta.url)
const ROOT = path.resolve(path.dirname(SELF), '..')

type Mode = 'sse' | 'longpoll'

interface ServerKind { name: string, label: string, env?: Record<string, string> }

const KINDS: readonly ServerKind[] = [
  { name: 'parkline', label: 'Parkline' },
  { name: 'bare', label: 'bare node:net (floor)' },
  { name: 'fastify', label: 'Fastify 5, reply.raw kept open' },
  { name: 'hijack', label: 'Fastify 5, reply.hijack()' },
  { name: 'parkline-nodetach', label: 'Parkline, PARKLINE_NO_DETACH=1', env: { PARKLINE_NO_DETACH: '1' } }
]

/** rssGc after a plain gc(); the rest after V8's memory-reducing gc. */
interface Mem { rssGc: number, rss: number, heapUsed: number, active: number, spaces: Record<string, number> }

// ---- servers under test ---------------------------------------------------------------------------

const SSE_HEAD = 'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n' +
  'Connection: close\r\n\r\n'
const HI = ': hi\n\n'
const SSE_HEADERS = { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache', Connection: 'close' }

function wantsSse (accept: string | undefined): boolean {
  return accept !== undefined && accept.includes('text/event-stream')
}

const held = new Set<object>()

function onHeldClose (this: object): void {
  held.delete(this)
}

function bareData (this: net.Socket, chunk: Buffer): void {
  if (held.has(this)) return
  held.add(this)
  // the floor parses nothing: an SSE request gets a fixed head, any other is held unanswered
  if (chunk.includes('text/event-stream')) this.write(SSE_HEAD + HI)
}

function bareConnection (socket: net.Socket): void {
  socket.on('data', bareData)
  socket.on('error', noop)
  socket.on('close', onHeldClose)
}

function noop (): void {}

/** Start one server; returns its port and a live count of held subscribers. */
async function startServer (kind: string, n: number): Promise<{ port: number, active: () => number }> {
  if (kind === 'bare') {
    const server = net.createServer({ noDelay: true }, bareConnection)
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    return { port: (server.address() as net.AddressInfo).port, active: () => held.size }
  }
  if (kind === 'parkline' || kind === 'parkline-nodetach') {
    const { resolveOptions } = await import('../lib/config.ts')
    const { buildServer } = await import('../lib/server.ts')
    const opts = resolveOptions({ port: 0, host: '127.0.0.1', logLevel: 'silent', maxSubscribers: n + 1000 })
    const app = await buildServer(opts)
    await app.listen({ port: 0, host: '127.0.0.1' })
    return { port: (app.server.address() as net.AddressInfo).port, active: () => coreOf(app).table.size }
  }
  const { default: Fastify } = await import('fastify')
  const app = Fastify({ logger: false })
  const hijack = kind === 'hijack'
  app.get('/sub/:ch', (request, reply) => {
    if (hijack) reply.hijack()
    const res: ServerResponse = reply.raw
    held.add(res)
    res.on('close', onHeldClose)
    if (wantsSse(request.headers.accept)) {
      res.writeHead(200, SSE_HEADERS)
      res.write(HI)
    }
    // no send(): the response stays open (SSE) or parked (long-poll)
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { port: (app.server.address() as net.AddressInfo).port, active: () => held.size }
}

async function sampleMemory (active: number): Promise<Mem> {
  const gc = (globalThis as { gc?: (o?: { type: string, flavor: string }) => void }).gc
  for (let i = 0; i < 3; i++) {
    gc?.()
    await new Promise((resolve) => setImmediate(resolve))
  }
  const rssGc = process.memoryUsage.rss()
  // 'last-resort' is V8's memory-reducing full GC (what its memory reducer runs once a process
  // goes idle): it also shrinks the young generation, which grew while connections poured in and
  // would otherwise add a fixed ~40 MB that has nothing to do with N
  for (let i = 0; i < 3; i++) {
    gc?.({ type: 'major', flavor: 'last-resort' })
    await new Promise((resolve) => setImmediate(resolve))
  }
  const m = process.memoryUsage()
  // committed bytes per V8 space, so VERBOSE=1 can split an RSS change into V8 heap and the rest
  const spaces: Record<string, number> = { heapTotal: m.heapTotal, malloced: v8.getHeapStatistics().malloced_memory }
  // "V8 heap used": the spaces objects live in. Not code and trusted spaces (compiled code, its
  // deoptimization data, bytecode): optimized code V8 discards between "before" and "after" (a
  // deoptimization) once read as -31 B per connection at 200 in CI, where ~1,900 B is the rule
  let heapUsed = 0
  for (const sp of v8.getHeapSpaceStatistics()) {
    spaces[sp.space_name] = sp.physical_space_size
    if (!/^(code|trusted|shared_trusted)/.test(sp.space_name)) heapUsed += sp.space_used_size
  }
  return { rssGc, rss: m.rss, heapUsed, active, spaces }
}

async function runServer (kind: string): Promise<void> {
  const n = Number(process.env.SUBSCRIBERS ?? 15000)
  const { port, active } = await startServer(kind, n)
  process.on('message', (msg: { type: string, id: number }) => {
    if (msg.type === 'mem') {
      sampleMemory(active()).then((mem) => process.send!({ type: 'mem', id: msg.id, mem }), noop)
    } else if (msg.type === 'count') {
      process.send!({ type: 'count', id: msg.id, active: active() })
    }
  })
  process.on('disconnect', () => process.exit(0))
  process.send!({ type: 'ready', port })
}

// ---- load generator -------------------------------------------------------------------------------

interface OpenJob { type: 'open', id: number, port: number, n: number, mode: Mode, addrs: string[], channels: number, concurrency: number }

function runClient (): void {
  const sockets: net.Socket[] = []
  let established = 0
  let failed = 0
  let closed = 0
  let lastError = ''

  function open (job: OpenJob): void {
    const perAddr = Math.ceil(job.n / job.addrs.length)
    let started = 0
    let inflight = 0
    const pump = (): void => {
      while (inflight < job.concurrency && started < job.n) connect(started++)
    }
    const connect = (i: number): void => {
      inflight++
      let done = false
      let seen = ''
      const socket = net.connect({ port: job.port, host: '127.0.0.1', localAddress: job.addrs[Math.floor(i / perAddr)] })
      sockets.push(socket)
      const accept = job.mode === 'sse' ? 'Accept: text/event-stream\r\n' : ''
      const settle = (ok: boolean): void => {
        if (done) return
        done = true
        inflight--
        if (ok) established++
        else failed++
        pump()
      }
      socket.on('connect', () => {
        socket.write(`GET /sub/b${i % job.channels} HTTP/1.1\r\nHost: 127.0.0.1\r\n${accept}\r\n`)
        if (job.mode === 'longpoll') settle(true)
      })
      socket.on('data', (chunk: Buffer) => {
        if (done) return
        seen += chunk.toString('latin1')
        if (seen.includes(': hi\n')) settle(true)
        else if (seen.length > 4096) settle(false)
      })
      socket.on('error', (err) => { lastError = err.message })
      socket.on('close', () => {
        if (done) closed++
        settle(false)
      })
    }
    pump()
  }

  process.on('message', (msg: { type: string, id: number }) => {
    if (msg.type === 'open') {
      open(msg as OpenJob)
      process.send!({ type: 'open', id: msg.id })
    } else if (msg.type === 'stats') {
      process.send!({ type: 'stats', id: msg.id, established, failed, closed, lastError })
    } else if (msg.type === 'close') {
      for (const s of sockets) s.destroy()
      sockets.length = 0
      established = failed = closed = 0
      process.send!({ type: 'close', id: msg.id })
    }
  })
  process.on('disconnect', () => process.exit(0))
}

// ---- orchestrator ---------------------------------------------------------------------------------

let nextId = 1

/** One IPC round trip: send `msg` and wait for the answer with the same id. */
function ask<T> (child: ChildProcess, msg: Record<string, unknown>, ms = 30000): Promise<T> {
  const id = nextId++
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => { cleanup(); reject(new Error(`no answer to ${String(msg.type)}`)) }, ms)
    const onMessage = (m: { id?: number }): void => {
      if (m.id === id) { cleanup(); resolve(m as T) }
    }
    const onExit = (): void => { cleanup(); reject(new Error(`child exited during ${String(msg.type)}`)) }
    const cleanup = (): void => {
      clearTimeout(timer)
      child.off('message', onMessage)
      child.off('exit', onExit)
    }
    child.on('message', onMessage)
    child.on('exit', onExit)
    child.send({ ...msg, id })
  })
}

async function stop (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGKILL')
  await exited
}

function sockstatPages (): number {
  const m = /TCP:.* mem (\d+)/.exec(readFileSync('/proc/net/sockstat', 'utf8'))
  return m === null ? 0 : Number(m[1])
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

// Fresh source addresses for every batch, so no run meets a previous run's ports (TIME_WAIT).
let addrSeq = Math.floor(Math.random() * 200) * 254
function freshAddrs (count: number): string[] {
  const out: string[] = []
  for (let i = 0; i < count; i++) {
    const k = addrSeq++ % (254 * 254 * 200)
    out.push(`127.${1 + Math.floor(k / (254 * 254))}.${Math.floor(k / 254) % 254 + 1}.${k % 254 + 1}`)
  }
  return out
}

interface Sample { rssGc: number, rss: number, heap: number, kernel: number, baseRss: number }

interface Knobs { n: number, channels: number, concurrency: number }

async function waitFor (what: string, ms: number, pred: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(100)
  }
}

/** Open `n` connections from the client and wait until both ends count them. */
async function openBatch (server: ChildProcess, client: ChildProcess, port: number, mode: Mode, n: number, expectActive: number, k: Knobs): Promise<void> {
  await ask(client, { type: 'open', port, n, mode, addrs: freshAddrs(Math.ceil(n / 4000)), channels: k.channels, concurrency: k.concurrency })
  await waitFor(`${n} ${mode} connections`, 30000 + n * 4, async () => {
    const s = await ask<{ established: number, failed: number, lastError: string }>(client, { type: 'stats' })
    if (s.failed > 0) throw new Error(`${s.failed} connections failed (${s.lastError})`)
    if (s.established < n) return false
    const c = await ask<{ active: number }>(server, { type: 'count' })
    return c.active >= expectActive
  })
}

async function measure (kind: ServerKind, mode: Mode, k: Knobs): Promise<Sample> {
  const env = { ...process.env, ...kind.env, SUBSCRIBERS: String(k.n) }
  const stdio: ['ignore', 'inherit', 'inherit', 'ipc'] = ['ignore', 'inherit', 'inherit', 'ipc']
  // no bytecode flushing: V8 drops the bytecode of code not run lately (module bodies, startup) at
  // some major GC, which can fall between "before" and "after" and read as negative heap per connection
  const server = fork(SELF, ['server', kind.name], { execArgv: ['--expose-gc', '--no-flush-bytecode'], env, stdio })
  const client = fork(SELF, ['client'], { execArgv: [], env: process.env, stdio })
  try {
    const [ready] = await once(server, 'message') as [{ type: string, port: number }]
    if (ready.type !== 'ready') throw new Error('server did not start')
    const port = ready.port
    // warm-up: load and compile the whole path once, then let it go
    const warm = Math.min(50, k.n)
    await openBatch(server, client, port, mode, warm, warm, k)
    await ask(client, { type: 'close' })
    await waitFor('warm-up connections to close', 10000, async () => (await ask<{ active: number }>(server, { type: 'count' })).active === 0)
    await sleep(200)
    const before = (await ask<{ mem: Mem }>(server, { type: 'mem' })).mem
    const kBefore = sockstatPages()
    await openBatch(server, client, port, mode, k.n, k.n, k)
    await sleep(500) // detach releases parsers on setImmediate; let every write settle
    const after = (await ask<{ mem: Mem }>(server, { type: 'mem' }, 60000)).mem
    const kAfter = sockstatPages()
    if (after.active !== k.n) throw new Error(`server holds ${after.active} of ${k.n}`)
    if (process.env.VERBOSE === '1') {
      const diff: string[] = []
      for (const [name, v] of Object.entries(after.spaces)) diff.push(`${name} ${Math.round((v - (before.spaces[name] ?? 0)) / k.n)}`)
      console.error(`  ${kind.name} ${mode} per connection, committed: ${diff.join(', ')}`)
    }
    return {
      rssGc: (after.rssGc - before.rss) / k.n,
      rss: (after.rss - before.rss) / k.n,
      heap: (after.heapUsed - before.heapUsed) / k.n,
      kernel: (kAfter - kBefore) * 4096 / k.n,
      baseRss: before.rss
    }
  } finally {
    await stop(server)
    await stop(client)
  }
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

function fmt (x: number | undefined): string {
  return x === undefined ? 'n/a' : Math.round(x).toLocaleString('en-US')
}

function shell (cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
  } catch {
    return 'unknown'
  }
}

async function main (): Promise<void> {
  const env = process.env
  const k: Knobs = {
    n: Number(env.SUBSCRIBERS ?? 15000),
    channels: Math.max(1, Number(env.CHANNELS ?? 1)),
    concurrency: Math.max(1, Number(env.CONCURRENCY ?? 500))
  }
  const runs = Math.max(1, Number(env.RUNS ?? 2))
  const wanted = (env.SERVERS ?? '').split(',').filter((s) => s.length > 0)
  const kinds = wanted.length === 0 ? KINDS : KINDS.filter((x) => wanted.includes(x.name))
  const modes = (env.MODES ?? 'sse,longpoll').split(',').filter((m): m is Mode => m === 'sse' || m === 'longpoll')
  if (!Number.isInteger(k.n) || k.n < 1 || k.n > 18000) throw new Error('SUBSCRIBERS must be 1..18000 (20,000 open files per process)')

  const results = new Map<string, Sample[]>()
  for (let run = 0; run < runs; run++) {
    for (const kind of kinds) {
      for (const mode of modes) {
        const s = await measure(kind, mode, k)
        const key = `${kind.name}/${mode}`
        const all = results.get(key) ?? []
        all.push(s)
        results.set(key, all)
        console.error(`run ${run + 1}/${runs} ${kind.name} ${mode}: rss ${fmt(s.rssGc)} / ${fmt(s.rss)} B, heap ${fmt(s.heap)} B, kernel ${fmt(s.kernel)} B per connection`)
      }
    }
  }
  const med = (kind: string, mode: Mode, f: (s: Sample) => number): number | undefined => {
    const all = results.get(`${kind}/${mode}`)
    return all === undefined ? undefined : median(all.map(f))
  }

  const lines: string[] = []
  for (const mode of modes) {
    lines.push('', `**${mode === 'sse' ? 'Idle SSE subscribers' : 'Parked long-polls'}** (bytes per connection)`, '',
      '| server | RSS, gc() | RSS, reducing gc | V8 heap used | kernel TCP | baseline RSS MiB |', '|---|--:|--:|--:|--:|--:|')
    for (const kind of kinds) {
      const m = (f: (s: Sample) => number): string => fmt(med(kind.name, mode, f))
      const base = med(kind.name, mode, (s) => s.baseRss)
      lines.push(`| ${kind.label} | ${m((s) => s.rssGc)} | ${m((s) => s.rss)} | ${m((s) => s.heap)} | ${m((s) => s.kernel)} | ` +
        `${base === undefined ? 'n/a' : (base / 1048576).toFixed(1)} |`)
    }
  }
  const table = lines.join('\n').trimStart()
  console.log(table)

  const out = env.BENCH_OUT ?? ''
  if (out === '-') return
  const date = new Date().toISOString().slice(0, 10)
  const file = out.length > 0 ? out : path.join(ROOT, 'benchmarks', 'results', `memory-${date}.md`)
  const knobs = ['SUBSCRIBERS', 'RUNS', 'SERVERS', 'MODES', 'CHANNELS', 'CONCURRENCY']
    .filter((name) => env[name] !== undefined).map((name) => `${name}=${env[name]}`)
  const dirty = shell('git', ['status', '--porcelain', '--untracked-files=no']).length > 0 ? ' (+ uncommitted changes)' : ''
  const memTotal = /MemTotal:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'))
  const doc = [
    `# Memory per idle connection (${date})`,
    '',
    `- command: \`${[...knobs, 'node', 'benchmarks/connections.ts'].join(' ')}\``,
    `- commit: ${shell('git', ['rev-parse', '--short', 'HEAD'])}${dirty}; Node ${process.version}`,
    `- machine: ${os.availableParallelism()} cores, MemTotal ${memTotal === null ? '?' : (Number(memTotal[1]) / 1048576).toFixed(1) + ' GiB'}, ${os.release()}`,
    `- ${k.n} connections per server and mode, ${k.channels} channel(s), median of ${runs} run(s), each in a fresh server process`,
    '',
    table,
    '',
    'Each figure is (after - before) / N in the server process; "before" is sampled after',
    '`gc({type: \'major\', flavor: \'last-resort\'})`, the memory-reducing GC V8 runs on an idle process.',
    '"RSS, gc()": after a plain `gc()`, so it includes the young generation V8 grew while the',
    'connections came in (a fixed ~10-45 MB, not per connection). "RSS, reducing gc" and "V8 heap',
    'used": after the memory-reducing GC again; the heap counts the spaces objects live in, not compiled',
    'code, its metadata or bytecode (code and trusted spaces). Kernel: change in /proc/net/sockstat TCP mem',
    'pages x 4096 / N, machine-wide (both ends of each loopback connection; 0 = idle sockets hold no',
    'buffers). An SSE subscriber counts once `: hi` arrived; a long-poll once the server holds it.',
    'The servers run with `--no-flush-bytecode`, so code V8 would drop for not running lately (module',
    'bodies, startup) is not counted against the connections.',
    ''
  ].join('\n')
  mkdirSync(path.dirname(file), { recursive: true })
  writeFileSync(file, doc)
  console.error(`wrote ${path.relative(process.cwd(), file)}`)
}

const role = process.argv[2]
if (role === 'server') await runServer(process.argv[3] ?? 'parkline')
else if (role === 'client') runClient()
else await main()
