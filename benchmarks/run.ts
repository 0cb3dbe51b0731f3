// The benchmark suite (`npm run bench`): the same subscriber load generator (loadgen.ts) and
// publisher (publisher.ts) against Parkline (N workers and a single process), Nchan (nginx +
// libnginx-mod-nchan) and the floor (a bare node:net SSE and long-poll server), one server after another, each a
// child process on a loopback port. Scenarios (SCENARIOS, in this order per server):
//   memory     N idle SSE subscribers on one channel: server PSS summed over its processes, kernel
//              slab and TCP pages (machine wide), per subscriber
//   rate       the same subscribers, 3 messages/s (100 B) for RATE_DURATION s: p99 latency; then
//              10 messages/s for RATE_DURATION s (100,000 deliveries/s at 10,000 subscribers)
//   broadcast  N subscribers on one fresh channel, 100 B messages from a closed-loop publisher
//              (next POST when the previous answered, BROADCAST_CONCURRENCY loops) for DURATION s:
//              deliveries/s and latency percentiles
//   one2one    N subscribers each on its own channel, 512 B messages round-robin, open-loop publisher
//              at ONE2ONE_RATES (msgs/s, STEP_DURATION s each) until a step is not clean (every
//              message delivered, no late sends, p99 <= P99_BOUND_MS): highest clean rate, ceiling.
//              From 8,000 up each step is 1.3x the one before, so that the issue-13 target (a clean
//              rate 1.3x Nchan's) is judged at the step above Nchan's, not at twice its rate.
//              Each ladder starts with a warm-up at its first rate, reported and not judged, for
//              every server alike: WARMUP s, and at least two messages on every channel (the first
//              message on each subscriber's socket costs every server more, Nchan included:
//              benchmarks/results/first-pass-2026-12-01.md; so does the second, the first step
//              after a one-pass warm-up: second-pass-2026-12-02.md), so the steady state is
//              measured, not a JIT compiling or the first passes over the sockets
//   longpoll   one2one with long-poll subscribers (the legacy clients' transport): each re-polls
//              with its cursor after every answer; same rates and clean rule
//   publish    autocannon against /pub/<channel> with no subscribers (-c 100 -p 10, DURATION s)
// For every measurement window: loopback bandwidth (/proc/net/dev), per-process CPU (utime+stime
// from /proc/<pid>/stat) of the server, load-generator children and publisher, machine busy time.
//
// Knobs (env): SUBSCRIBERS (10000), DURATION (10), RATE_DURATION (20), STEP_DURATION (5), WARMUP (5, and one message per channel; 0 = none),
// ONE2ONE_RATES (1000,2000,4000,8000,10400,13520,17576,22849,29704), P99_BOUND_MS (100), WORKERS (the default
// topology's: lib/config.ts defaultWorkers, 1 on a 2-core host),
// SCENARIOS (memory,rate,broadcast,one2one,longpoll,publish), SERVERS (parkline,parkline1,nchan,floor,floor2,nchan2: floor2 is two floor processes on one port, each publish sent to the other; also floorc: the floor in C, epoll and write(2), built with the machine's cc; parkline1 only where the default topology is not one process; also parkline-nagle: option tcpNoDelay false),
// BROADCAST_CONCURRENCY (1), LOADGEN_PROCS (2), CONCURRENCY (connects in flight per child, 256),
// ADDR_CONNS (sockets per source address, 5000), REPORT_MS (5000), BENCH_OUT (report path),
// BENCH_SMOKE=1 (200 subscribers, 2 s per scenario, parkline,nchan,floor; the other knobs still win),
// PARKLINE_NODE_ARGS (Node/V8 flags for the Parkline server process only, e.g. --max-semi-space-size=4).
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Histogram } from 'hdr-histogram-js'
import { LoadGenerator, decodeHistogram, formatSummary, summarize, type Measurement, type Summary } from './loadgen.ts'
import { PublisherProcess, type PublishJob, type PublishResult } from './publisher.ts'
import { CpuMeter, kernelMem, loBytes, machineCpu, pssBytes, type KernelMem } from './suite/proc.ts'
import { APT_LINE, SERVER_KINDS, hasCompiler, killAllStarted, nchanConfig, nginxVersion, startServer, type ServerHandle } from './suite/servers.ts'
import { PERCENTILE_TICKS, lineChart, percentileCurve } from './suite/svg.ts'
import { defaultWorkers } from '../lib/config.ts'

const SELF = fileURLToPath(import.meta.url)
const ROOT = path.resolve(path.dirname(SELF), '..')
const env = process.env
const SMOKE = env.BENCH_SMOKE === '1'
const ALL_SCENARIOS = ['memory', 'rate', 'broadcast', 'one2one', 'longpoll', 'publish'] as const
type Scenario = typeof ALL_SCENARIOS[number]

function knob (name: string, def: number, smoke: number): number {
  const v = env[name]
  const n = v === undefined || v === '' ? (SMOKE ? smoke : def) : Number(v)
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number, got ${v}`)
  return n
}

const K = {
  subscribers: Math.floor(knob('SUBSCRIBERS', 10000, 200)),
  duration: knob('DURATION', 10, 2),
  rateDuration: knob('RATE_DURATION', 20, 2),
  stepDuration: knob('STEP_DURATION', 5, 2),
  // seconds at the ladder's first rate before its judged steps, for every server alike (0 = none):
  // a long-running server is measured, not the first seconds of its JIT (Node) compiling the path
  warmup: knob('WARMUP', 5, 0),
  p99Bound: knob('P99_BOUND_MS', 100, 100),
  // the default topology: what `workers: 0` picks on this host (lib/config.ts defaultWorkers)
  workers: Math.max(1, Math.floor(knob('WORKERS', defaultWorkers(os.availableParallelism()), 2))),
  broadcastConcurrency: Math.max(1, Math.floor(knob('BROADCAST_CONCURRENCY', 1, 1))),
  loadgenProcs: Math.max(1, Math.floor(knob('LOADGEN_PROCS', 2, 2))),
  concurrency: Math.max(1, Math.floor(knob('CONCURRENCY', 256, 100))),
  addrConns: Math.max(1, Math.floor(knob('ADDR_CONNS', 5000, 5000))),
  reportMs: Math.max(200, knob('REPORT_MS', 5000, 1000)),
  rates: (env.ONE2ONE_RATES ?? (SMOKE ? '100' : '1000,2000,4000,8000,10400,13520,17576,22849,29704')).split(',').map(Number).filter((x) => x > 0),
  scenarios: (env.SCENARIOS ?? ALL_SCENARIOS.join(',')).split(',').map((s) => s.trim()).filter((s) => s.length > 0),
  // `parkline` is the default topology; `parkline1` (a single process) only where that differs
  // (a full run has the floors, one Node process, two, and the C floor where the machine has a C
  // compiler, and ends with a second Nchan: the targets table judges each of them by the same
  // targets, Nchan against itself too)
  servers: (env.SERVERS ?? (SMOKE ? 'parkline,nchan,floor' : `${defaultWorkers(os.availableParallelism()) === 1 && env.WORKERS === undefined ? 'parkline' : 'parkline,parkline1'},nchan,floor,${hasCompiler() ? 'floorc,' : ''}floor2,nchan2`)).split(',').map((s) => s.trim()).filter((s) => s.length > 0),
  broadcastSize: 100,
  one2oneSize: 512,
  settleMs: SMOKE ? 300 : 2000,
  // memory is sampled idle: this long after the server (and its load generator) started, and this
  // long after the ramp, the same for every server (a Parkline process trims its heap once idle
  // for 2 s, lib/heap-trim.ts)
  idleMs: SMOKE ? 300 : 5000,
  drainMs: SMOKE ? 2000 : 20000,
  maxSeconds: knob('BENCH_MAX_SECONDS', 3600, 160)
}
for (const s of K.scenarios) if (!(ALL_SCENARIOS as readonly string[]).includes(s)) throw new Error(`unknown scenario "${s}" (known: ${ALL_SCENARIOS.join(', ')})`)
for (const s of K.servers) if (SERVER_KINDS.find((k) => k.name === s) === undefined) throw new Error(`unknown server "${s}"`)
if (K.subscribers < 1) throw new Error('SUBSCRIBERS must be >= 1')
const has = (s: Scenario): boolean => K.scenarios.includes(s)

const log = (line: string): void => { process.stderr.write(line + '\n') }
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

// ---- process bookkeeping: everything started is killed by PID on the way out ---------------------

const livePublishers = new Set<PublisherProcess>()
const liveLoadgens = new Set<LoadGenerator>()
const tmp = mkdtempSync(path.join(os.tmpdir(), 'parkline-suite-'))

function killEverything (): void {
  for (const p of livePublishers) { try { process.kill(p.pid, 'SIGKILL') } catch {} }
  for (const lg of liveLoadgens) for (const pid of lg.pids()) { try { process.kill(pid, 'SIGKILL') } catch {} }
  killAllStarted()
  try { rmSync(tmp, { recursive: true, force: true }) } catch {}
}
process.on('exit', killEverything)
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => { log(`${sig}: stopping`); killEverything(); process.exit(130) })
const watchdog = setTimeout(() => { log(`suite exceeded BENCH_MAX_SECONDS=${K.maxSeconds}: stopping`); killEverything(); process.exit(1) }, K.maxSeconds * 1000)
watchdog.unref()

// ---- measurement helpers -------------------------------------------------------------------------

interface CpuRow { label: string, pct: number }

interface Window {
  seconds: number
  loBytesPerSec: number
  cpu: CpuRow[]
  machineBusyPct: number
}

/** CPU, bandwidth and machine load over one measurement window. */
class WindowMeter {
  #cpu = new CpuMeter()
  #lo = 0
  #m = { busy: 0, total: 0 }
  #t0 = 0

  start (procs: Array<{ pid: number, label: string }>): void {
    this.#cpu.start(procs)
    this.#lo = loBytes()
    this.#m = machineCpu()
    this.#t0 = performance.now()
  }

  stop (): Window {
    const seconds = (performance.now() - this.#t0) / 1000
    const m = machineCpu()
    const cores = os.availableParallelism()
    return {
      seconds,
      loBytesPerSec: (loBytes() - this.#lo) / seconds,
      cpu: this.#cpu.stop().map((r) => ({ label: r.label, pct: r.pct })),
      machineBusyPct: m.total > this.#m.total ? (m.busy - this.#m.busy) / (m.total - this.#m.total) * 100 * cores : 0
    }
  }
}

function procsOf (server: ServerHandle, lg: LoadGenerator | null, pub: PublisherProcess | null): Array<{ pid: number, label: string }> {
  const out = [...server.procs()]
  if (lg !== null) for (const pid of lg.pids()) out.push({ pid, label: 'loadgen child' })
  if (pub !== null) out.push({ pid: pub.pid, label: 'publisher' })
  out.push({ pid: process.pid, label: 'orchestrator' })
  return out
}

function serverMemory (server: ServerHandle): number {
  return server.procs().reduce((sum, p) => sum + pssBytes(p.pid), 0)
}

/** Which process (or the machine) bound the window. */
function boundBy (w: Window): string {
  const hot = w.cpu.filter((r) => r.pct >= 85).sort((a, b) => b.pct - a.pct)
  const cores = os.availableParallelism()
  const parts: string[] = []
  if (hot.length > 0) parts.push(hot.map((r) => `${r.label} ${Math.round(r.pct)}%`).join(', '))
  if (w.machineBusyPct >= cores * 100 * 0.9) parts.push(`machine CPU saturated (${Math.round(w.machineBusyPct)}% of ${cores * 100}%)`)
  return parts.length > 0 ? parts.join('; ') : 'no process CPU-bound'
}

const isServerProc = (label: string): boolean => label.startsWith('parkline') || label.startsWith('nginx') || label === 'floor' || label.startsWith('floor ')

/** CPU seconds the server's processes (all of them) used in the window. */
function serverCpuSeconds (w: Window): number {
  return w.cpu.filter((r) => isServerProc(r.label)).reduce((a, r) => a + r.pct, 0) / 100 * w.seconds
}

/**
 * The server's CPU per message published in a flow (µs): all its work for the message (the
 * publish request, the deliveries, a long-poll's re-poll). It moves far less than a clean rate
 * with whether the publisher and load generator were scheduled on time.
 */
function cpuPerMessageUs (f: FlowResult): number | null {
  return f.published.ok > 0 ? serverCpuSeconds(f.window) / f.published.ok * 1e6 : null
}

function cpuSummary (w: Window): Record<string, string> {
  const group = (pred: (l: string) => boolean): string => {
    const rows = w.cpu.filter((r) => pred(r.label))
    if (rows.length === 0) return '-'
    const sum = rows.reduce((a, r) => a + r.pct, 0)
    return rows.length === 1 ? `${Math.round(sum)}` : `${Math.round(sum)} (${rows.map((r) => Math.round(r.pct)).join('+')})`
  }
  return {
    server: group(isServerProc),
    loadgen: group((l) => l === 'loadgen child'),
    publisher: group((l) => l === 'publisher'),
    orchestrator: group((l) => l === 'orchestrator')
  }
}

/** Wait until `target` messages arrived or the count stops moving for 1 s (bounded by maxMs). */
async function drain (lg: LoadGenerator, target: number, maxMs: number): Promise<void> {
  const deadline = performance.now() + maxMs
  let last = -1
  let still = performance.now()
  while (performance.now() < deadline) {
    const n = await lg.messages()
    if (n >= target) return
    if (n !== last) { last = n; still = performance.now() } else if (performance.now() - still > 1000) return
    await sleep(100)
  }
}

// ---- results -------------------------------------------------------------------------------------

interface LatencyResult { summary: Summary, curve: Array<[number, number]> }

function latency (h: Histogram): LatencyResult {
  return { summary: summarize(h), curve: percentileCurve((p) => h.getValueAtPercentile(p) / 1000) }
}

interface MemoryResult {
  subscribers: number
  serverBytes: number
  serverPerSub: number
  slabPerConn: number
  tcpMemPerConn: number
  rampSeconds: number
  timeline: Array<[number, number]>
}

interface FlowResult {
  /** bytes the subscribers read per second (exact, ours; lo counts the whole machine) */
  subscriberBytesPerSec: number
  delivered: number
  expected: number
  seconds: number
  deliveriesPerSec: number
  published: PublishResult
  publishedPerSec: number
  closedByServer: number
  latency: LatencyResult
  pubLatency: Summary
  window: Window
}

interface StepResult extends FlowResult { rate: number, clean: boolean, why: string }
interface Ladder { warmup: StepResult | null, steps: StepResult[], cleanRate: number, ceiling: number, rampSeconds: number, timeline: Array<[number, number]> }

interface ServerResult {
  name: string
  label: string
  describe: string
  error: string | null
  memory: MemoryResult | null
  rate: FlowResult | null
  /** open loop at 10 msgs/s on the same subscribers */
  rate10: FlowResult | null
  broadcast: FlowResult | null
  one2one: Ladder | null
  /** one2one with long-poll subscribers */
  longpoll: Ladder | null
  publish: { result: PublishResult, window: Window } | null
  nginxConf: string | null
}

async function flow (label: string, server: ServerHandle, lg: LoadGenerator, pub: PublisherProcess, job: PublishJob, perMessage: number): Promise<FlowResult> {
  const meter = new WindowMeter()
  const before = await lg.messages()
  await lg.begin(label)
  meter.start(procsOf(server, lg, pub))
  const published = await pub.run(job)
  await drain(lg, before + published.ok * perMessage, K.drainMs)
  const window = meter.stop()
  const m: Measurement = await lg.end()
  const pubHist = decodeHistogram(published.hist)
  const r: FlowResult = {
    subscriberBytesPerSec: m.bytes / m.seconds,
    delivered: m.messages,
    expected: published.ok * perMessage,
    seconds: m.seconds,
    deliveriesPerSec: m.messages / m.seconds,
    published,
    publishedPerSec: published.ok / published.seconds,
    closedByServer: m.closed,
    latency: latency(m.hist),
    pubLatency: summarize(pubHist),
    window
  }
  log(`${label}: ${r.delivered}/${r.expected} delivered, ${Math.round(r.deliveriesPerSec)}/s, ${Math.round(r.publishedPerSec)} publishes/s, ` +
    `${r.closedByServer} closed | ${formatSummary(r.latency.summary)} | bound: ${boundBy(window)}`)
  return r
}

async function rampFresh (lg: LoadGenerator, channel: string, each: boolean): Promise<void> {
  const c = await lg.ramp(60000 + K.subscribers * 5, { channel, each, mode: 'sse' })
  if (c.established < K.subscribers) throw new Error(`only ${c.established}/${K.subscribers} subscribers connected (${c.lastError}; ${JSON.stringify(c.statuses)})`)
}

async function benchServer (name: string): Promise<ServerResult> {
  const res: ServerResult = {
    name, label: SERVER_KINDS.find((k) => k.name === name)!.label, describe: '', error: null,
    memory: null, rate: null, rate10: null, broadcast: null, one2one: null, longpoll: null, publish: null, nginxConf: null
  }
  log(`== ${name}`)
  const server = await startServer(name, { workers: K.workers, tmp })
  res.label = server.kind.label
  res.describe = server.describe
  if (name === 'nchan' || name === 'nchan2') res.nginxConf = nchanConfig(tmp, server.port)
  const pub = new PublisherProcess()
  livePublishers.add(pub)
  // one load generator (its children stay) for every phase; each phase ramps onto fresh channels,
  // so no subscriber is replayed messages of an earlier phase
  const lg = new LoadGenerator({
    port: server.port, n: K.subscribers, mode: 'sse', channel: 'idle', each: false, procs: K.loadgenProcs,
    concurrency: K.concurrency, perAddr: K.addrConns, reportMs: K.reportMs, log
  })
  liveLoadgens.add(lg)
  const n = K.subscribers
  const pause = SMOKE ? 100 : 1000
  try {
    await lg.start()
    if (has('memory') || has('rate')) {
      // idle subscribers on one channel: memory, then the 3 msg/s run on the same sockets
      await sleep(K.idleMs)
      const mem0 = serverMemory(server)
      const k0: KernelMem = kernelMem()
      await rampFresh(lg, 'idle', false)
      await sleep(K.idleMs)
      const mem1 = serverMemory(server)
      const k1 = kernelMem()
      res.memory = {
        subscribers: n,
        serverBytes: mem1,
        serverPerSub: (mem1 - mem0) / n,
        slabPerConn: (k1.slab - k0.slab) / n,
        tcpMemPerConn: (k1.tcpMem - k0.tcpMem) / n,
        rampSeconds: lg.rampSeconds,
        timeline: lg.timeline
      }
      log(`${name} memory: ${Math.round(res.memory.serverPerSub)} B/subscriber (server PSS ${(mem1 / 1048576).toFixed(1)} MiB), ` +
        `slab ${Math.round(res.memory.slabPerConn)} B/connection, ramp ${lg.rampSeconds.toFixed(1)} s`)
      if (has('rate')) {
        res.rate = await flow(`${name} rate`, server, lg, pub, {
          mode: 'open', port: server.port, prefix: 'idle', count: 1, size: K.broadcastSize, seconds: K.rateDuration, rate: 3, connections: 1
        }, n)
        res.rate10 = await flow(`${name} rate 10/s`, server, lg, pub, {
          mode: 'open', port: server.port, prefix: 'idle', count: 1, size: K.broadcastSize, seconds: K.rateDuration, rate: 10, connections: 1
        }, n)
      }
      await lg.closeAll()
      await sleep(pause)
    }
    if (has('broadcast')) {
      await rampFresh(lg, 'bcast', false)
      await sleep(K.settleMs / 2)
      res.broadcast = await flow(`${name} broadcast`, server, lg, pub, {
        mode: 'closed', port: server.port, prefix: 'bcast', count: 1, size: K.broadcastSize, seconds: K.duration, concurrency: K.broadcastConcurrency
      }, n)
      await lg.closeAll()
      await sleep(pause)
    }
    /** Open-loop rates up the ladder until a step is not clean; one subscriber per channel. */
    const ladder = async (scenario: string, prefix: string, mode: 'sse' | 'longpoll'): Promise<Ladder> => {
      await lg.ramp(60000 + K.subscribers * 5, { channel: prefix, each: true, mode }).then((c) => {
        if (c.established < K.subscribers) throw new Error(`only ${c.established}/${K.subscribers} subscribers connected (${c.lastError}; ${JSON.stringify(c.statuses)})`)
      })
      const timeline = lg.timeline
      const rampSeconds = lg.rampSeconds
      await sleep(K.settleMs / 2)
      const steps: StepResult[] = []
      const step = (rate: number, seconds: number, label: string): Promise<FlowResult> => flow(`${name} ${scenario} ${label}`, server, lg, pub, {
        mode: 'open', port: server.port, prefix, count: n, size: K.one2oneSize, seconds, rate,
        connections: 32, maxInflight: 256
      }, 1)
      // reported, not judged
      let warmup: StepResult | null = null
      if (K.warmup > 0 && K.rates.length > 0) {
        const rate = K.rates[0]!
        // every step starts at channel 0: the warm-up reaches each channel twice
        const seconds = Math.max(K.warmup, Math.ceil(2 * n / rate))
        warmup = { ...await step(rate, seconds, `${rate}/s warm-up`), rate, clean: false, why: `warm-up (${seconds} s, every channel twice), not judged` }
        await sleep(pause)
      }
      for (const rate of K.rates) {
        const f = await step(rate, K.stepDuration, `${rate}/s`)
        const why: string[] = []
        if (f.published.failed > 0) why.push(`${f.published.failed} publishes failed`)
        if (f.published.late > 0) why.push(`${f.published.late} sends late`)
        if (f.published.ok < rate * K.stepDuration * 0.98) why.push(`published ${Math.round(f.publishedPerSec)}/s`)
        if (f.delivered < f.expected) why.push(`${f.expected - f.delivered} not delivered`)
        if (f.closedByServer > 0) why.push(`${f.closedByServer} subscribers closed`)
        if (f.latency.summary.p99 > K.p99Bound) why.push(`p99 ${f.latency.summary.p99.toFixed(0)} ms`)
        steps.push({ ...f, rate, clean: why.length === 0, why: why.join(', ') })
        if (why.length > 0) break
        await sleep(pause)
      }
      let cleanRate = 0
      for (const s of steps) {
        if (!s.clean) break
        cleanRate = s.rate
      }
      await lg.closeAll()
      await sleep(pause)
      return { warmup, steps, cleanRate, ceiling: Math.max(0, ...steps.map((s) => s.deliveriesPerSec)), rampSeconds, timeline }
    }
    if (has('one2one')) res.one2one = await ladder('one2one', 'o', 'sse')
    if (has('longpoll')) res.longpoll = await ladder('longpoll', 'l', 'longpoll')
    if (has('publish')) {
      const meter = new WindowMeter()
      meter.start(procsOf(server, null, pub))
      const result = await pub.run({ mode: 'autocannon', port: server.port, prefix: 'ac', count: 1, size: K.broadcastSize, seconds: Math.max(1, Math.round(K.duration)), concurrency: 100, pipelining: 10 })
      const window = meter.stop()
      res.publish = { result, window }
      log(`${name} publish (autocannon): ${Math.round(result.rps ?? 0)} req/s, p99 ${result.p99} ms, ${result.failed} failed | bound: ${boundBy(window)}`)
    }
  } finally {
    await lg.stop()
    liveLoadgens.delete(lg)
    await pub.stop()
    livePublishers.delete(pub)
    await server.stop()
  }
  return res
}

// ---- report --------------------------------------------------------------------------------------

function shell (cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
  } catch {
    return 'unknown'
  }
}

function fmt (x: number | null | undefined, digits = 0): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return 'n/a'
  return x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

function ms (x: number | null | undefined): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return 'n/a'
  return x < 10 ? fmt(x, 2) : x < 100 ? fmt(x, 1) : fmt(x, 0)
}

interface Row { label: string, better: 'higher' | 'lower', get: (r: ServerResult) => number | null | undefined, show?: (x: number | null | undefined) => string }

const ROWS: Row[] = [
  { label: 'memory: server PSS with N idle SSE subscribers (MiB)', better: 'lower', get: (r) => r.memory === null ? null : r.memory.serverBytes / 1048576, show: (x) => fmt(x, 1) },
  { label: 'memory: server bytes per idle SSE subscriber', better: 'lower', get: (r) => r.memory?.serverPerSub },
  { label: 'memory: kernel slab bytes per connection (both ends)', better: 'lower', get: (r) => r.memory?.slabPerConn },
  { label: 'ramp: SSE subscribers connected per second', better: 'higher', get: (r) => r.memory === null ? null : r.memory.subscribers / r.memory.rampSeconds },
  { label: 'rate 3 msg/s: latency p50 (ms)', better: 'lower', get: (r) => r.rate?.latency.summary.p50, show: ms },
  { label: 'rate 3 msg/s: latency p99 (ms)', better: 'lower', get: (r) => r.rate?.latency.summary.p99, show: ms },
  { label: 'rate 3 msg/s: latency max (ms)', better: 'lower', get: (r) => r.rate?.latency.summary.max, show: ms },
  { label: 'rate 10 msg/s: deliveries/s', better: 'higher', get: (r) => r.rate10?.deliveriesPerSec },
  { label: 'rate 10 msg/s: latency p99 (ms)', better: 'lower', get: (r) => r.rate10?.latency.summary.p99, show: ms },
  { label: 'rate 10 msg/s: latency max (ms)', better: 'lower', get: (r) => r.rate10?.latency.summary.max, show: ms },
  { label: 'broadcast: deliveries/s', better: 'higher', get: (r) => r.broadcast?.deliveriesPerSec },
  { label: 'broadcast: publishes/s (closed loop)', better: 'higher', get: (r) => r.broadcast?.publishedPerSec },
  { label: 'broadcast: latency p50 (ms)', better: 'lower', get: (r) => r.broadcast?.latency.summary.p50, show: ms },
  { label: 'broadcast: latency p99 (ms)', better: 'lower', get: (r) => r.broadcast?.latency.summary.p99, show: ms },
  { label: 'broadcast: latency p99.9 (ms)', better: 'lower', get: (r) => r.broadcast?.latency.summary.p999, show: ms },
  { label: 'broadcast: deliveries per server CPU-second', better: 'higher', get: (r) => r.broadcast === null ? null : r.broadcast.delivered / serverCpuSeconds(r.broadcast.window) },
  { label: 'broadcast: delivered / expected (%)', better: 'higher', get: (r) => r.broadcast === null ? null : r.broadcast.delivered / Math.max(1, r.broadcast.expected) * 100, show: (x) => fmt(x, 1) },
  { label: 'broadcast: subscribers closed by the server', better: 'lower', get: (r) => r.broadcast?.closedByServer },
  { label: 'broadcast: MB/s read by the subscribers', better: 'higher', get: (r) => r.broadcast?.subscriberBytesPerSec == null ? null : r.broadcast.subscriberBytesPerSec / 1e6, show: (x) => fmt(x, 1) },
  { label: 'broadcast: loopback MB/s (whole machine, /proc/net/dev)', better: 'higher', get: (r) => r.broadcast === null ? null : r.broadcast.window.loBytesPerSec / 1e6, show: (x) => fmt(x, 1) },
  { label: 'one2one: highest clean rate (msgs/s)', better: 'higher', get: (r) => r.one2one?.cleanRate },
  { label: 'one2one: ceiling (deliveries/s)', better: 'higher', get: (r) => r.one2one?.ceiling },
  { label: 'one2one: p99 at the highest clean rate (ms)', better: 'lower', get: (r) => r.one2one?.steps.find((s) => s.rate === r.one2one!.cleanRate)?.latency.summary.p99, show: ms },
  { label: 'long-poll one2one: highest clean rate (msgs/s)', better: 'higher', get: (r) => r.longpoll?.cleanRate },
  { label: 'long-poll one2one: ceiling (deliveries/s)', better: 'higher', get: (r) => r.longpoll?.ceiling },
  { label: 'long-poll one2one: p99 at the highest clean rate (ms)', better: 'lower', get: (r) => r.longpoll?.steps.find((s) => s.rate === r.longpoll!.cleanRate)?.latency.summary.p99, show: ms },
  { label: 'publish (autocannon): requests/s', better: 'higher', get: (r) => r.publish?.result.rps },
  { label: 'publish (autocannon): latency p99 (ms)', better: 'lower', get: (r) => r.publish?.result.p99, show: ms }
]

/** The headline figure of each scenario (what the smoke test checks is positive). */
const HEADLINES: Record<Scenario, string> = {
  memory: 'memory: server PSS with N idle SSE subscribers (MiB)',
  rate: 'rate 3 msg/s: latency p99 (ms)',
  broadcast: 'broadcast: deliveries/s',
  one2one: 'one2one: ceiling (deliveries/s)',
  longpoll: 'long-poll one2one: ceiling (deliveries/s)',
  publish: 'publish (autocannon): requests/s'
}

function ratio (a: number | null | undefined, b: number | null | undefined): string {
  if (a === null || a === undefined || b === null || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return 'n/a'
  return (a / b).toFixed(2)
}

/**
 * Issue 13's targets, each judged from this run: Parkline (the default topology) against Nchan,
 * with two references judged by the same target beside it. The bare node:net floor: a throughput
 * or latency target the floor misses too is one no Node process reached on this machine as run
 * (the floor does no work but the sockets'). A second Nchan run (`nchan2`): a target that Nchan
 * misses against itself is finer than this machine resolves from one run of each.
 */
function targets (by: Map<string, ServerResult>): string[] {
  const p = by.get('parkline')
  const n = by.get('nchan')
  if (p === undefined || n === undefined || p.error !== null || n.error !== null) return []
  const refs = (['floor', 'floorc', 'floor2', 'nchan2'] as const).map((name) => by.get(name)).filter((r): r is ServerResult => r !== undefined && r.error === null)
  const one = K.workers === 1 ? p : by.get('parkline1')
  // every judged server: Parkline first, then the references
  const judged = [p, ...refs]
  type T = [measure: string, target: string, nchan: string, cells: string[], met: Array<boolean | null>]
  const rows: T[] = []
  const top = Math.max(...K.rates)
  // capped: Nchan was clean at the ladder's top rate, so its ceiling (and the ratio) is unknown
  const atLeast = (label: string, get: (r: ServerResult) => number | null | undefined, factor: number, capped = false): void => {
    const b = get(n)
    const cells: string[] = []
    const met: Array<boolean | null> = []
    for (const r of judged) {
      const x = get(r)
      const q = ratio(x, b)
      cells.push(x == null ? 'n/a' : q === 'n/a' ? fmt(x) : `${fmt(x)} (${q}×)`)
      // (Nchan at 0: clean at no step of its ladder, so this run resolves nothing of the ratio)
      met.push(x == null || b == null || b === 0 || capped ? null : x >= factor * b)
    }
    rows.push([label, `≥ ${factor === 1 ? '' : `${factor}× `}Nchan's`, b == null ? 'n/a' : fmt(b), cells, met])
  }
  // p99 no higher than Nchan's at every step Nchan delivered clean
  const p99Steps = (label: string, get: (r: ServerResult) => Ladder | null): void => {
    const ln = get(n)
    if (ln === null) return
    // Nchan clean at no step: no rate to judge the others at
    if (!ln.steps.some((s) => s.clean)) {
      rows.push([label, 'p99 ≤ Nchan\'s at every rate Nchan delivers clean', 'clean at no rate', judged.map(() => 'n/a'), judged.map(() => null)])
      return
    }
    const worst = (r: ServerResult): [number, number] | null => {
      const l = get(r)
      if (l === null) return null
      let w: [number, number] = [0, 0]
      for (const s of ln.steps) {
        if (!s.clean) continue
        const mine = l.steps.find((x) => x.rate === s.rate)
        const q = mine === undefined ? Infinity : mine.latency.summary.p99 / s.latency.summary.p99
        if (q > w[1]) w = [s.rate, q]
      }
      return w
    }
    const show = (w: [number, number] | null): string => w === null ? 'n/a' : !Number.isFinite(w[1]) ? `no step at ${fmt(w[0])}/s` : `worst ${w[1].toFixed(2)}× (at ${fmt(w[0])}/s)`
    const ws = judged.map(worst)
    rows.push([label, 'p99 ≤ Nchan\'s at every rate Nchan delivers clean', `clean to ${fmt(ln.cleanRate)}/s`, ws.map(show), ws.map((w) => w === null ? null : w[1] <= 1)])
  }
  // a latency no higher than `factor` × Nchan's
  const atMostNchan = (label: string, get: (r: ServerResult) => number | null | undefined, factor: number): void => {
    const b = get(n)
    const xs = judged.map(get)
    rows.push([label, `p99 ≤ ${factor === 1 ? '' : `${factor}× `}Nchan's`, ms(b), xs.map((x) => x == null ? 'n/a' : `${ms(x)} (${ratio(x, b)}×)`),
      xs.map((x) => x == null || b == null ? null : x <= factor * b)])
  }
  const atMost = (label: string, target: string, a: number | null | undefined, bound: number, show: (x: number) => string): void => {
    rows.push([label, target, '', [a == null ? 'n/a' : show(a), ...refs.map(() => '')], [a == null ? null : a <= bound, ...refs.map(() => null)]])
  }
  atLeast('one-to-one SSE: highest clean rate (msgs/s)', (r) => r.one2one?.cleanRate, 1.3, n.one2one?.cleanRate === top)
  p99Steps('one-to-one SSE: p99', (r) => r.one2one)
  atLeast('broadcast, closed loop: deliveries/s', (r) => r.broadcast?.deliveriesPerSec, 1.3)
  atMostNchan('broadcast, closed loop: p99 (ms)', (r) => r.broadcast?.latency.summary.p99, 1)
  atMostNchan(`broadcast, open loop 10 msgs/s (${fmt(10 * K.subscribers)} deliveries/s): p99 (ms)`, (r) => r.rate10?.latency.summary.p99, 0.8)
  atLeast('long-poll one-to-one: highest clean rate (msgs/s)', (r) => r.longpoll?.cleanRate, 1, n.longpoll?.cleanRate === top)
  p99Steps('long-poll one-to-one: p99', (r) => r.longpoll)
  atLeast('publish (autocannon): requests/s', (r) => r.publish?.result.rps, 1)
  const perSub = (x: number): string => `${fmt(x)} B`
  atMost(`memory, default topology (${K.workers === 1 ? 'one process here' : `${K.workers} workers`}): bytes per idle SSE subscriber`, '≤ 5,000 B', p.memory?.serverPerSub, 5000, perSub)
  if (one !== undefined && one.error === null) atMost('memory, one process: bytes per idle SSE subscriber', '≤ 4,000 B', one.memory?.serverPerSub, 4000, perSub)
  if (rows.length === 0) return []
  const yn = (x: boolean | null): string => x === null ? 'n/a' : x ? 'met' : '**not met**'
  const names = judged.map((r) => r === p ? 'Parkline' : r.name === 'floor' ? 'floor' : r.name === 'floorc' ? 'C floor' : r.name === 'floor2' ? 'floor ×2' : 'Nchan, 2nd run')
  const L = ['## Targets (issue 13), judged from this run', '',
    `| measure | target | Nchan | ${judged.map((r) => r === p ? 'Parkline (default topology)' : r.label).join(' | ')} | ${names.join(' | ')} |`,
    `|---|---|--:|${judged.map(() => '--:').join('|')}|${judged.map(() => '---').join('|')}|`]
  for (const r of rows) L.push(`| ${r[0]} | ${r[1]} | ${r[2]} | ${r[3].join(' | ')} | ${r[4].map(yn).join(' | ')} |`)
  L.push('')
  if (refs.some((r) => r.name === 'floor')) {
    L.push('The floor column applies the same target to the bare node:net server (no HTTP parser, no channels, no ids): ' +
      'where the floor misses it too, no Node process reached it on this machine in this run.')
  }
  if (refs.some((r) => r.name === 'floorc')) {
    L.push('The C floor column applies it to the same traffic served by epoll and one write(2) per delivery in C (benchmarks/suite/floor.c): ' +
      'where the C floor misses it too, no server of any language reached it beside this load generator on this machine in this run.')
  }
  if (refs.some((r) => r.name === 'floor2')) {
    L.push('The floor ×2 column applies it to two such processes sharing the port, each publish also sent to the other (the least a ' +
      'multi-process Node server pays): where it misses too, no Node topology of one or two processes reached it on this machine in this run.')
  }
  if (refs.some((r) => r.name === 'nchan2')) {
    L.push('"Nchan, 2nd run" applies the same target to a second, fresh Nchan measured later in the same suite: ' +
      'where Nchan misses it against itself, the target is finer than one run of each resolves on this machine.')
  }
  L.push('"n/a" on a clean-rate row: Nchan was clean at the ladder\'s top rate (ONE2ONE_RATES), so its ceiling is unknown. ' +
    `Memory is measured at ${fmt(K.subscribers)} subscribers (the issue states 15,000). The issue's 1,000,000-subscriber hold is not part of this suite (benchmarks/hold.ts).`, '')
  return L
}

function report (results: ServerResult[], started: Date, wall: number, loadBefore: number[], loadAfter: number[]): { md: string, svgs: Record<string, string> } {
  const date = started.toISOString().slice(0, 10)
  const knobs = ['BENCH_SMOKE', 'SUBSCRIBERS', 'DURATION', 'RATE_DURATION', 'STEP_DURATION', 'WARMUP', 'ONE2ONE_RATES', 'P99_BOUND_MS', 'WORKERS', 'SCENARIOS', 'SERVERS',
    'BROADCAST_CONCURRENCY', 'LOADGEN_PROCS', 'CONCURRENCY', 'ADDR_CONNS', 'REPORT_MS']
  const set = knobs.filter((k) => env[k] !== undefined).map((k) => `${k}=${env[k]}`)
  const dirty = shell('git', ['status', '--porcelain', '--untracked-files=no']).length > 0 ? ' (+ uncommitted changes)' : ''
  const memTotal = /MemTotal:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'))
  const cpuModel = os.cpus()[0]?.model ?? '?'
  const by = new Map(results.map((r) => [r.name, r]))
  const cols = results.map((r) => r.name)
  const ratioCols: Array<[string, string, string]> = []
  for (const p of ['parkline', 'parkline1', 'parkline-nagle']) {
    if (!by.has(p)) continue
    const pl = p === 'parkline' ? `Parkline${K.workers === 1 ? '' : ` ×${K.workers}`}` : p === 'parkline1' ? 'Parkline ×1' : 'Parkline Nagle'
    if (by.has('nchan')) ratioCols.push([`${pl} / Nchan`, p, 'nchan'])
    if (by.has('floor')) ratioCols.push([`${pl} / floor`, p, 'floor'])
  }
  // the same server twice: how much of any ratio one run of each can resolve
  if (by.has('nchan') && by.has('nchan2')) ratioCols.push(['Nchan 2nd run / Nchan', 'nchan2', 'nchan'])
  if (by.has('nchan') && by.has('floorc')) ratioCols.push(['C floor / Nchan', 'floorc', 'nchan'])
  const L: string[] = []
  L.push(`# Parkline benchmark suite (${date})`, '')
  L.push(`- command: \`${[...set, 'npm run bench'].join(' ')}\` (= \`${[...set, 'node benchmarks/run.ts'].join(' ')}\`)`)
  L.push(`- commit: ${shell('git', ['rev-parse', '--short', 'HEAD'])}${dirty}; Node ${process.version}; ${nginxVersion()}; autocannon, undici, hdr-histogram-js (pure JS) from node_modules`)
  L.push(`- machine: ${os.availableParallelism()} cores (${cpuModel}), MemTotal ${memTotal === null ? '?' : (Number(memTotal[1]) / 1048576).toFixed(1) + ' GiB'}, Linux ${os.release()}; ` +
    `open files capped at 20,000 per process`)
  L.push(`- **shared machine**: other agents ran on it too; load average ${loadBefore.map((x) => x.toFixed(2)).join(' ')} before, ${loadAfter.map((x) => x.toFixed(2)).join(' ')} after; ` +
    'server, load generator and publisher all share its cores (see "machine busy" below)')
  L.push(`- knobs: ${K.subscribers} subscribers, DURATION ${K.duration} s, RATE_DURATION ${K.rateDuration} s, STEP_DURATION ${K.stepDuration} s, WARMUP ${K.warmup} s, one2one rates ${K.rates.join(', ')} msgs/s, ` +
    `p99 bound ${K.p99Bound} ms, WORKERS ${K.workers}, scenarios ${K.scenarios.join(',')}, servers ${K.servers.join(',')}, broadcast closed-loop concurrency ${K.broadcastConcurrency}, ` +
    `${K.loadgenProcs}+ load-generator processes, ${K.concurrency} connects in flight per process, ${K.addrConns} sockets per source address (127.0.x.y); total wall time ${wall.toFixed(0)} s`)
  L.push('')
  L.push('## Results', '')
  L.push(`| measure | better | ${cols.map((c) => by.get(c)!.label).join(' | ')} | ${ratioCols.map((c) => c[0]).join(' | ')} |`)
  L.push(`|---|---|${cols.map(() => '--:').join('|')}|${ratioCols.map(() => '--:').join('|')}|`)
  for (const row of ROWS) {
    const show = row.show ?? ((x: number | null | undefined) => fmt(x))
    const vals = cols.map((c) => { const r = by.get(c)!; return r.error !== null ? 'failed' : show(row.get(r)) })
    const ratios = ratioCols.map(([, a, b]) => ratio(row.get(by.get(a)!), row.get(by.get(b)!)))
    L.push(`| ${row.label} | ${row.better} | ${vals.join(' | ')} | ${ratios.join(' | ')} |`)
  }
  L.push('')
  const failed = results.filter((r) => r.error !== null)
  if (failed.length > 0) {
    L.push('**Failed runs**', '')
    for (const r of failed) L.push(`- ${r.label}: ${r.error}`)
    L.push('')
  }
  L.push('Ratios divide the Parkline figure by the other server\'s; whether > 1 is good depends on the "better" column.' +
    (by.has('nchan') && by.has('nchan2') ? ' "Nchan 2nd run / Nchan" divides one fresh Nchan by another, measured minutes apart: how far any ratio of one run each can be trusted.' : ''), '')

  L.push(...targets(by))
  L.push('## What bound each run (CPU % of one core per process, over the measurement window)', '')
  L.push('| server | scenario | server processes | load generator | publisher | orchestrator | machine busy (of ' + os.availableParallelism() * 100 + ') | of which not ours | subscribers MB/s | loopback MB/s (machine) | bound by |')
  L.push('|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|')
  for (const r of results) {
    const windows: Array<[string, Window | undefined, number | undefined]> = [
      ['rate', r.rate?.window, r.rate?.subscriberBytesPerSec], ['rate 10/s', r.rate10?.window, r.rate10?.subscriberBytesPerSec], ['broadcast', r.broadcast?.window, r.broadcast?.subscriberBytesPerSec],
      ...(r.one2one?.steps ?? []).map((s): [string, Window, number] => [`one2one ${s.rate}/s`, s.window, s.subscriberBytesPerSec]),
      ...(r.longpoll?.steps ?? []).map((s): [string, Window, number] => [`long-poll ${s.rate}/s`, s.window, s.subscriberBytesPerSec]),
      ['publish', r.publish?.window, undefined]
    ]
    for (const [name, w, subBytes] of windows) {
      if (w === undefined) continue
      const c = cpuSummary(w)
      const ours = w.cpu.reduce((a, x) => a + x.pct, 0)
      L.push(`| ${r.label} | ${name} | ${c.server} | ${c.loadgen} | ${c.publisher} | ${c.orchestrator} | ${Math.round(w.machineBusyPct)} | ${Math.max(0, Math.round(w.machineBusyPct - ours))} | ` +
        `${subBytes === undefined ? '-' : fmt(subBytes / 1e6, 1)} | ${fmt(w.loBytesPerSec / 1e6, 1)} | ${boundBy(w)} |`)
    }
  }
  L.push('', 'A process at >= 85% of a core is CPU-bound (Node and nginx workers are single-threaded); "machine CPU saturated" means all cores were busy, whoever used them. ' +
    '"Not ours" = machine busy (/proc/stat) minus the processes listed: other tenants of this shared machine, and the kernel\'s softirq work for loopback. ' +
    '"Subscribers MB/s" is what the load generator read (exact); "loopback" is every byte on lo, other tenants included.', '')

  L.push('## Latency detail (ms)', '')
  L.push('| server | scenario | messages | min | mean | stddev | max | p50 | p99 | p99.9 | publish RTT p50 | publish RTT p99 |')
  L.push('|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|')
  for (const r of results) {
    const flows: Array<[string, FlowResult | null | undefined]> = [['rate 3/s', r.rate], ['rate 10/s', r.rate10], ['broadcast', r.broadcast], ...(r.one2one?.steps ?? []).map((s): [string, FlowResult] => [`one2one ${s.rate}/s`, s]),
      ...(r.longpoll?.steps ?? []).map((s): [string, FlowResult] => [`long-poll ${s.rate}/s`, s])]
    for (const [name, f] of flows) {
      if (f === null || f === undefined) continue
      const s = f.latency.summary
      L.push(`| ${r.label} | ${name} | ${fmt(s.count)} | ${ms(s.min)} | ${ms(s.mean)} | ${ms(s.stddev)} | ${ms(s.max)} | ${ms(s.p50)} | ${ms(s.p99)} | ${ms(s.p999)} | ${ms(f.pubLatency.p50)} | ${ms(f.pubLatency.p99)} |`)
    }
  }
  L.push('')
  L.push('## one2one steps (SSE and long-poll)', '')
  L.push('| server | subscribers | target msgs/s | published/s | delivered / expected | deliveries/s | p99 (ms) | clean | why not | server CPU per message (µs) |')
  L.push('|---|---|--:|--:|--:|--:|--:|---|---|--:|')
  for (const r of results) {
    for (const [kind, ladder] of [['SSE', r.one2one], ['long-poll', r.longpoll]] as const) {
      for (const s of ladder === null ? [] : ladder.warmup === null ? ladder.steps : [ladder.warmup, ...ladder.steps]) {
        L.push(`| ${r.label} | ${kind} | ${fmt(s.rate)} | ${fmt(s.publishedPerSec)} | ${fmt(s.delivered)} / ${fmt(s.expected)} | ${fmt(s.deliveriesPerSec)} | ${ms(s.latency.summary.p99)} | ${s.clean ? 'yes' : 'no'} | ${s.why} | ${fmt(cpuPerMessageUs(s), 1)} |`)
      }
    }
  }
  L.push('')
  const svgs: Record<string, string> = {}
  const curves = (pick: (r: ServerResult) => FlowResult | null | undefined): Array<{ name: string, points: Array<[number, number]> }> =>
    results.filter((r) => pick(r) != null).map((r) => ({ name: r.label, points: pick(r)!.latency.curve }))
  if (results.some((r) => r.broadcast !== null)) {
    svgs.broadcast = lineChart(curves((r) => r.broadcast), { title: `Broadcast latency by percentile (${K.subscribers} SSE subscribers, 1 channel)`, xLabel: 'percentile', yLabel: 'latency (ms, log)', yLog: true, xTicks: PERCENTILE_TICKS })
  }
  if (results.some((r) => r.rate !== null)) {
    svgs.rate = lineChart(curves((r) => r.rate), { title: `Latency by percentile at 3 msg/s (${K.subscribers} SSE subscribers)`, xLabel: 'percentile', yLabel: 'latency (ms, log)', yLog: true, xTicks: PERCENTILE_TICKS })
  }
  const ramps = results.filter((r) => r.memory !== null || r.one2one !== null)
    .map((r) => ({ name: r.label, points: r.memory?.timeline ?? r.one2one!.timeline }))
  if (ramps.length > 0) {
    svgs.ramp = lineChart(ramps, { title: `Connections over time during the ramp (${K.subscribers} SSE subscribers)`, xLabel: 'seconds', yLabel: 'connected subscribers' })
  }
  L.push('## Plots', '')
  for (const name of Object.keys(svgs)) L.push(`![${name}](SVG:${name})`, '')
  L.push('## Method', '')
  L.push('- Servers under test, one after another, each a child process on a loopback port:')
  for (const r of results) L.push(`  - ${r.label}: \`${r.describe}\``)
  L.push('  - the floor answers a GET with `Accept: text/event-stream` with an SSE head and any other GET as a long-poll (cursor = `If-None-Match`, 8 answers kept per channel, each built once); ' +
    'it fans each POSTed body out as `data: <body>\\n\\n` to SSE sockets and as its answer to parked polls, one write per socket, no real ids/expiry/backpressure (benchmarks/suite/floor-server.ts).')
  L.push('- Load generator (benchmarks/loadgen.ts): raw node:net SSE clients with a shared `onread` buffer, spread over child processes (<= 18,000 sockets each) and source addresses 127.0.x.y. ' +
    'Latency = receive time - the publisher\'s send time embedded in the body (CLOCK_MONOTONIC via `process.hrtime`, shared by every process on the host), recorded for EVERY message in an HDR histogram per child ' +
    '(µs, 3 significant digits), pulled encoded and merged by the parent.')
  L.push('- Publisher (benchmarks/publisher.ts, its own process): undici Pool with keep-alive. rate: open loop, 3 msgs/s, then 10 msgs/s. broadcast: closed loop (next POST when the previous answered). ' +
    'one2one: open loop at each rate over N channels round-robin (32 connections, <= 256 outstanding, counted once the publisher has read the answers that came; more is counted "late"), after a warm-up at the first rate of WARMUP s and at least one message per channel (every server alike; listed in the steps table, not judged). publish: autocannon -c 100 -p 10 on a channel without subscribers.')
  L.push(`- Memory: PSS (shared pages split, so nginx's shared memory counts once) summed over the server's processes, sampled ${K.idleMs} ms idle before and ` +
    `${K.idleMs} ms idle after the ramp, the same for every server; no GC is forced (a Parkline process trims its heap itself once idle for 2 s, lib/heap-trim.ts; ` +
    'benchmarks/connections.ts measures Parkline after forced GCs); kernel slab from /proc/meminfo, machine wide, so it includes the load generator\'s end of each connection.')
  L.push(`- Drain: after the publisher stops, the window stays open until every expected message arrived or none arrived for 1 s (at most ${K.drainMs / 1000} s); deliveries/s = messages received / window.`)
  L.push('- Bandwidth: bytes received on `lo` (/proc/net/dev) over the window. CPU: utime+stime deltas from /proc/<pid>/stat; machine busy from /proc/stat. ' +
    'Server CPU per message (one2one steps) and deliveries per server CPU-second (broadcast): the CPU time of all the server\'s processes in the window over the messages published (deliveries) in it.')
  if (results.some((r) => r.nginxConf !== null)) {
    L.push('', '<details><summary>generated nginx.conf</summary>', '', '```nginx', results.find((r) => r.nginxConf !== null)!.nginxConf!.trim(), '```', '', '</details>')
  }
  L.push('')
  return { md: L.join('\n'), svgs }
}

async function main (): Promise<void> {
  const started = new Date()
  const t0 = performance.now()
  const loadBefore = os.loadavg()
  log(`bench suite: servers ${K.servers.join(',')}; scenarios ${K.scenarios.join(',')}; ${K.subscribers} subscribers${SMOKE ? ' (smoke)' : ''}`)
  const results: ServerResult[] = []
  for (const name of K.servers) {
    try {
      results.push(await benchServer(name))
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err)
      log(`${name} failed: ${msg}`)
      results.push({ name, label: SERVER_KINDS.find((k) => k.name === name)!.label, describe: '', error: msg, memory: null, rate: null, rate10: null, broadcast: null, one2one: null, longpoll: null, publish: null, nginxConf: null })
    }
  }
  const wall = (performance.now() - t0) / 1000
  const { md, svgs } = report(results, started, wall, loadBefore, os.loadavg())
  const out = env.BENCH_OUT !== undefined && env.BENCH_OUT !== ''
    ? path.resolve(env.BENCH_OUT)
    : path.join(ROOT, 'benchmarks', 'results', `suite-${started.toISOString().slice(0, 10)}${SMOKE ? '-smoke' : ''}.md`)
  const base = out.replace(/\.md$/, '')
  let doc = md
  mkdirSync(path.dirname(out), { recursive: true })
  for (const [name, svg] of Object.entries(svgs)) {
    const file = `${base}-${name}.svg`
    writeFileSync(file, svg)
    doc = doc.replace(`(SVG:${name})`, `(${path.basename(file)})`)
  }
  writeFileSync(out, doc)
  const headlines: Record<string, Record<string, number | null>> = {}
  for (const r of results) {
    headlines[r.name] = {}
    for (const s of K.scenarios as Scenario[]) {
      const row = ROWS.find((x) => x.label === HEADLINES[s])!
      const v = r.error === null ? row.get(r) : null
      headlines[r.name]![s] = v === undefined || v === null || !Number.isFinite(v) ? null : v
    }
  }
  writeFileSync(`${base}.json`, JSON.stringify({ knobs: K, headlines, errors: Object.fromEntries(results.map((r) => [r.name, r.error])) }, null, 2) + '\n')
  log(`wrote ${path.relative(process.cwd(), out)} (+ ${Object.keys(svgs).length} SVG, JSON)`)
  if (results.some((r) => r.error !== null)) {
    const nchan = results.find((r) => r.name === 'nchan' && r.error !== null)
    if (nchan !== undefined) log(`Nchan did not run: ${nchan.error}\n  (install: ${APT_LINE})`)
    process.exitCode = 1
  }
}

await main()
clearTimeout(watchdog)
