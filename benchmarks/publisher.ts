// Publisher load (after MigratoryData's Publisher Benchmark tool), over a keep-alive undici Pool:
//   open loop   `rate` messages/s whatever the answers do (at most `maxInflight` outstanding)
//   closed loop `concurrency` loops, each POSTs the next message when the previous one answered
//   autocannon  raw throughput of the publish endpoint (no subscribers; pipelined)
// Every body starts with its send time (loadgen.ts stampedBody), padded to `size` bytes; channels
// are `prefix` (count 1) or prefix0 … prefix<count-1>, taken round-robin.
//
//   node benchmarks/publisher.ts            stand-alone: TARGET=127.0.0.1:8080 MODE=open|closed|autocannon
//                                           RATE=100 SIZE=100 CHANNEL=b CHANNEL_COUNT=1 CONCURRENCY=1 DURATION=10
//   node benchmarks/publisher.ts child      IPC: {type:'run', job} -> {type:'result', result}
// The suite (benchmarks/run.ts) runs it as a child so its CPU time is measured apart.
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Pool } from 'undici'
import { encodeHistogram, newHistogram, padding, stampedBody } from './loadgen.ts'
import { autocannon } from './suite/autocannon.ts'

const SELF = fileURLToPath(import.meta.url)

export interface PublishJob {
  mode: 'open' | 'closed' | 'autocannon'
  port: number
  prefix: string
  count: number
  size: number
  seconds: number
  /** open loop: messages per second */
  rate?: number
  /** closed loop: concurrent loops; autocannon: connections */
  concurrency?: number
  /** open loop: keep-alive connections in the pool */
  connections?: number
  /** open loop: outstanding requests at most (beyond it the publisher falls behind, counted as `late`) */
  maxInflight?: number
  /** autocannon: requests pipelined per connection */
  pipelining?: number
  /** autocannon: GET this path instead of publishing (benchmarks/request-path.ts) */
  method?: 'GET'
  path?: string
}

export interface PublishResult {
  sent: number
  /** 2xx answers, and of them 201 (the channel had a subscriber) */
  ok: number
  created: number
  failed: number
  statuses: Record<string, number>
  lastError: string
  seconds: number
  /** Sends the open loop could not start on time because maxInflight requests were outstanding. */
  late: number
  /** Publish round trip (µs), HDR encoded. */
  hist: string
  /** autocannon: requests/s and latency (ms) */
  rps?: number
  p50?: number
  p99?: number
}

function channelOf (job: PublishJob, seq: number): string {
  return job.count <= 1 ? job.prefix : job.prefix + (seq % job.count)
}

export async function publish (job: PublishJob): Promise<PublishResult> {
  if (job.mode === 'autocannon') return runAutocannon(job)
  const hist = newHistogram()
  const pad = padding(job.size)
  const connections = job.mode === 'closed' ? Math.max(1, job.concurrency ?? 1) : Math.max(1, job.connections ?? 32)
  const pool = new Pool(`http://127.0.0.1:${job.port}`, { connections, pipelining: 1, keepAliveTimeout: 60000 })
  const r: PublishResult = { sent: 0, ok: 0, created: 0, failed: 0, statuses: {}, lastError: '', seconds: 0, late: 0, hist: '' }
  let seq = 0
  let inflight = 0
  const one = async (): Promise<void> => {
    const path = '/pub/' + channelOf(job, seq++)
    const body = stampedBody(job.size, pad)
    const t0 = performance.now()
    r.sent++
    inflight++
    try {
      const res = await pool.request({ path, method: 'POST', body, headers: { 'content-type': 'text/plain' } })
      await res.body.dump()
      r.statuses[res.statusCode] = (r.statuses[res.statusCode] ?? 0) + 1
      if (res.statusCode >= 200 && res.statusCode < 300) {
        r.ok++
        if (res.statusCode === 201) r.created++
        hist.recordValue(Math.round((performance.now() - t0) * 1000))
      } else {
        r.failed++
      }
    } catch (err) {
      r.failed++
      r.lastError = (err as Error).message
    } finally {
      inflight--
    }
  }
  const t0 = performance.now()
  const deadline = t0 + job.seconds * 1000
  if (job.mode === 'closed') {
    const loop = async (): Promise<void> => {
      while (performance.now() < deadline) {
        await one()
        // a failing server answers at once: do not spin on it
        if (r.failed > 0 && r.ok === 0) await new Promise((resolve) => setTimeout(resolve, 10))
      }
    }
    await Promise.all(Array.from({ length: connections }, loop))
  } else {
    const rate = Math.max(0.001, job.rate ?? 1)
    const maxInflight = Math.max(1, job.maxInflight ?? connections * 8)
    await new Promise<void>((resolve) => {
      // the schedule is rate x seconds sends; a publisher descheduled near the end still sends
      // what was due (or counts it late), instead of stopping short at the deadline
      const total = Math.max(1, Math.floor(job.seconds * rate))
      // Sends run in the check phase (setImmediate), after this turn's poll phase has read the
      // answers that arrived. After a pause of the publisher's own (its GC, or the host not running
      // it), a timer runs before the answers that came meanwhile are read, so `inflight` would
      // count them as outstanding and the server would be charged with late sends it did not cause.
      let queued = false
      const send = (): void => {
        queued = false
        const now = performance.now()
        const due = Math.min(total, Math.floor(Math.min(now - t0, job.seconds * 1000) / 1000 * rate) + 1)
        while (seq < due) {
          if (inflight >= maxInflight) { r.late += due - seq; seq = due; break }
          one().catch(() => {})
        }
        if (now >= deadline && seq >= total) { clearInterval(timer); resolve() }
      }
      const tick = (): void => {
        if (!queued) { queued = true; setImmediate(send) }
      }
      const timer = setInterval(tick, 1)
      tick()
    })
  }
  r.seconds = (performance.now() - t0) / 1000
  // answers still outstanding: wait (bounded), then give up on them
  const wait = performance.now() + 10000
  while (inflight > 0 && performance.now() < wait) await new Promise((resolve) => setTimeout(resolve, 10))
  await pool.destroy()
  r.hist = encodeHistogram(hist)
  return r
}

async function runAutocannon (job: PublishJob): Promise<PublishResult> {
  const res = await autocannon({
    url: `http://127.0.0.1:${job.port}${job.path ?? `/pub/${job.prefix}`}`,
    ...(job.method === 'GET' ? { method: 'GET' } : { method: 'POST', body: padding(job.size).replace(' ', '0'), headers: { 'content-type': 'text/plain' } }),
    connections: job.concurrency ?? 100,
    pipelining: job.pipelining ?? 10,
    duration: job.seconds
  })
  const hist = newHistogram()
  return {
    sent: res.requests.total,
    ok: res['2xx'],
    created: 0,
    failed: res.non2xx + res.errors + res.timeouts,
    statuses: {},
    lastError: res.errors > 0 ? `${res.errors} errors` : '',
    seconds: res.duration,
    late: 0,
    hist: encodeHistogram(hist),
    rps: res['2xx'] / res.duration,
    p50: res.latency.p50,
    p99: res.latency.p99
  }
}

/** The publisher as a child process (its CPU time is then its own). */
export class PublisherProcess {
  readonly child: ChildProcess
  constructor () {
    this.child = fork(SELF, ['child'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  }

  get pid (): number { return this.child.pid! }

  run (job: PublishJob): Promise<PublishResult> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { cleanup(); reject(new Error('publisher: no result')) }, job.seconds * 1000 + 60000)
      const onMessage = (m: { type: string, result?: PublishResult, error?: string }): void => {
        if (m.type !== 'result') return
        cleanup()
        if (m.error !== undefined) reject(new Error(m.error))
        else resolve(m.result!)
      }
      const onExit = (): void => { cleanup(); reject(new Error('publisher exited')) }
      const cleanup = (): void => {
        clearTimeout(timer)
        this.child.off('message', onMessage)
        this.child.off('exit', onExit)
      }
      this.child.on('message', onMessage)
      this.child.on('exit', onExit)
      this.child.send({ type: 'run', job })
    })
  }

  async stop (): Promise<void> {
    const c = this.child
    if (c.exitCode !== null || c.signalCode !== null) return
    const exited = new Promise((resolve) => c.once('exit', resolve))
    c.kill('SIGKILL')
    await exited
  }
}

function runChild (): void {
  process.on('message', (m: { type: string, job: PublishJob }) => {
    if (m.type !== 'run') return
    publish(m.job).then(
      (result) => process.send!({ type: 'result', result }),
      (err: unknown) => process.send!({ type: 'result', error: String(err) })
    )
  })
  process.on('disconnect', () => process.exit(0))
}

async function main (): Promise<void> {
  const env = process.env
  const target = env.TARGET ?? '127.0.0.1:8080'
  const mode = env.MODE === 'closed' || env.MODE === 'autocannon' ? env.MODE : 'open'
  const r = await publish({
    mode,
    port: Number(target.slice(target.lastIndexOf(':') + 1)),
    prefix: env.CHANNEL ?? 'b',
    count: Number(env.CHANNEL_COUNT ?? 1),
    size: Number(env.SIZE ?? 100),
    seconds: Math.min(3600, Number(env.DURATION ?? 10)),
    rate: Number(env.RATE ?? 100),
    concurrency: Number(env.CONCURRENCY ?? (mode === 'autocannon' ? 100 : 1))
  })
  const { hist, ...rest } = r
  process.stdout.write(JSON.stringify({ ...rest, perSecond: Math.round(r.ok / r.seconds) }) + '\n')
}

if (process.argv[1] === SELF) {
  if (process.argv[2] === 'child') runChild()
  else await main()
}
