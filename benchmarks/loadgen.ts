// Subscriber load generator (after MigratoryData's Client Benchmark tool): N SSE or long-poll
// subscribers, one channel each or all on one, spread over child processes (at most 18,000 sockets
// each: the open-file cap is 20,000 per process) and over loopback source addresses (127.0.0.2,
// 127.0.0.3, …, ADDR_CONNS each) so ephemeral ports never run out.
//
// Latency = receive time - publish time. The publisher (benchmarks/publisher.ts) starts every body
// with its send time on CLOCK_MONOTONIC (monoMs: `process.hrtime`, in ms, 3 decimals): one clock
// for every process on this host, with sub-ms precision. Not `performance.timeOrigin +
// performance.now()`: timeOrigin is the wall clock read once at process start beside the monotonic
// one, and a process preempted between the two reads keeps that error for life (8 of 200 processes
// started on this box under load were 17-77 ms off: benchmarks/results/clock-offset-2026-12-02.md).
// Each child records EVERY message into an HDR histogram (µs, 3 significant digits); the parent
// pulls the children's histograms (encoded), merges them, and every REPORT_MS prints connections,
// messages/s and min/mean/stddev/max, p50/p99/p99.9 of that interval.
//
//   node benchmarks/loadgen.ts            stand-alone: TARGET=127.0.0.1:8080 SUBSCRIBERS=1000 MODE=sse
//                                         CHANNELS=one|each CHANNEL=b DURATION=30 (seconds), then
//                                         publish with benchmarks/publisher.ts
//   node benchmarks/loadgen.ts child      a load-generator child (IPC only; started by the parent)
//
// The suite (benchmarks/run.ts) uses the LoadGenerator class.
//
// LAT_TRACE=<file> (any of the above): every message slower than LAT_TRACE_MS (1) is also
// appended to the file as `<send time ms> <latency ms>`, to line the slow ones up with a server's
// own stalls (benchmarks/micro/loop-lag.ts writes the same clock in its third column).
import { fork, type ChildProcess } from 'node:child_process'
import { appendFileSync } from 'node:fs'
import net from 'node:net'
import { fileURLToPath } from 'node:url'
import { build, decodeFromCompressedBase64, encodeIntoCompressedBase64, type Histogram } from 'hdr-histogram-js'

const SELF = fileURLToPath(import.meta.url)

export type Mode = 'sse' | 'longpoll'

/** Sockets per child process: below the 20,000 open-file cap, with room for the IPC channel etc. */
export const MAX_PER_CHILD = 18000

/** Latency histogram in µs: 1 µs .. 1 h, 3 significant digits, pure JS. */
export function newHistogram (): Histogram {
  return build({ useWebAssembly: false, lowestDiscernibleValue: 1, highestTrackableValue: 3600e6, numberOfSignificantValueDigits: 3, autoResize: true })
}

export function decodeHistogram (s: string): Histogram {
  return decodeFromCompressedBase64(s, 32, false)
}

export function encodeHistogram (h: Histogram): string {
  return encodeIntoCompressedBase64(h)
}

/** Now on CLOCK_MONOTONIC, in ms: the same clock in every process on this host (see the top). */
export function monoMs (): number {
  return Number(process.hrtime.bigint()) / 1e6
}

/** The body the publisher sends: its send time (monoMs, 3 decimals), a space, padding to `size`. */
export function stampedBody (size: number, pad: string): string {
  const ts = monoMs().toFixed(3)
  return ts.length >= size ? ts : ts + pad.slice(ts.length, size)
}

export function padding (size: number): string {
  return ' ' + 'x'.repeat(Math.max(0, size - 1))
}

// ---- child ---------------------------------------------------------------------------------------

interface OpenJob {
  type: 'open'
  id: number
  port: number
  mode: Mode
  /** Global index of this child's first subscriber (its channel is `channel + index` in 'each'). */
  first: number
  n: number
  channel: string
  each: boolean
  addrs: string[]
  perAddr: number
  concurrency: number
}

const HEAD_END = Buffer.from('\r\n\r\n', 'latin1')
const EOM = Buffer.from('\n\n', 'latin1')
const DATA = Buffer.from('data: ', 'latin1')

const S_CONNECTING = 0
const S_OPEN = 1
const S_DONE = 2

const kConn = Symbol('conn')

type LgSocket = net.Socket & { [kConn]: Conn }

/** One subscriber. Listeners are module-level functions that find it via a Symbol. */
class Conn {
  socket: LgSocket
  state: number
  carry: Buffer | null
  request: string
  path: string
  constructor (socket: LgSocket, path: string) {
    this.socket = socket
    this.state = S_CONNECTING
    this.carry = null
    this.path = path
    this.request = ''
  }
}

class ChildState {
  hist: Histogram = newHistogram()
  messages = 0
  /** bytes read from subscriber sockets (heads included) */
  bytes = 0
  established = 0
  failed = 0
  closed = 0
  statuses: Record<string, number> = {}
  lastError = ''
  conns: Conn[] = []
  closing = false
  job: OpenJob | null = null
  started = 0
  inflight = 0
}

const st = new ChildState()

// LAT_TRACE (see the top): a diagnostic, off unless set; lines are appended in batches, and at
// every report the parent asks for and at the end, so the file is complete when a window ends.
const TRACE = process.env.LAT_TRACE ?? ''
const TRACE_US = Number(process.env.LAT_TRACE_MS ?? 1) * 1000
let traced: string[] = []

function flushTrace (): void {
  if (traced.length === 0) return
  appendFileSync(TRACE, traced.join(''))
  traced = []
}

/** Parse the ms timestamp at buf[i..] (digits and one dot) and record now - it, in µs. */
function record (buf: Buffer, i: number, now: number): void {
  let int = 0
  let frac = 0
  let scale = 1
  let dot = false
  for (; i < buf.length; i++) {
    const c = buf[i]!
    if (c === 46) { dot = true; continue }
    if (c < 48 || c > 57) break
    if (dot) { frac = frac * 10 + (c - 48); scale *= 10 } else int = int * 10 + (c - 48)
  }
  st.messages++
  if (int === 0) return // not a stamped body (counted, not timed)
  const sent = int + frac / scale
  const us = Math.round((now - sent) * 1000)
  st.hist.recordValue(us > 0 ? us : 0)
  if (TRACE !== '' && us > TRACE_US && traced.push(`${sent.toFixed(3)} ${(us / 1000).toFixed(2)}\n`) >= 1024) flushTrace()
}

function settle (c: Conn, ok: boolean): void {
  if (c.state !== S_CONNECTING) return
  st.inflight--
  if (ok) {
    c.state = S_OPEN
    st.established++
  } else {
    c.state = S_DONE
    st.failed++
  }
  pump()
}

function statusOf (buf: Buffer): number {
  return buf.length >= 12 ? Number(buf.toString('latin1', 9, 12)) : 0
}

/** One read buffer per process (net.connect `onread`): no allocation and no stream machinery per read. */
const READ_BUF = Buffer.allocUnsafe(256 * 1024)

function onSseRead (this: LgSocket, n: number, b: Buffer): boolean {
  st.bytes += n
  onSseData.call(this, b.subarray(0, n))
  return true
}

function onPollRead (this: LgSocket, n: number, b: Buffer): boolean {
  st.bytes += n
  onPollData.call(this, b.subarray(0, n))
  return true
}

/** `chunk` may be the shared read buffer: whatever is kept past this call is copied. */
function onSseData (this: LgSocket, chunk: Buffer): void {
  const c = this[kConn]
  const now = monoMs()
  const buf = c.carry === null ? chunk : Buffer.concat([c.carry, chunk])
  c.carry = null
  let pos = 0
  if (c.state === S_CONNECTING) {
    const he = buf.indexOf(HEAD_END)
    if (he === -1) {
      if (buf.length > 16384) { st.lastError = 'SSE head too long'; settle(c, false); this.destroy(); return }
      c.carry = Buffer.from(buf)
      return
    }
    const status = statusOf(buf)
    st.statuses[status] = (st.statuses[status] ?? 0) + 1
    if (status !== 200) {
      st.lastError = `SSE answered ${status}`
      settle(c, false)
      this.destroy()
      return
    }
    settle(c, true)
    pos = he + 4
  }
  const last = buf.lastIndexOf(EOM)
  if (last < pos) {
    if (pos < buf.length) c.carry = Buffer.from(buf.subarray(pos))
    return
  }
  const end = last + 2
  for (let d = buf.indexOf(DATA, pos); d !== -1 && d < end; d = buf.indexOf(DATA, d + 6)) record(buf, d + 6, now)
  if (end < buf.length) c.carry = Buffer.from(buf.subarray(end))
}

const CONTENT_LENGTH = /\r\ncontent-length:[ \t]*(\d+)/i
const LAST_MODIFIED = /\r\nlast-modified:[ \t]*([^\r]+)/i
const ETAG = /\r\netag:[ \t]*([^\r]+)/i

function longpollRequest (path: string, lastModified: string | null, etag: string | null): string {
  let r = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n`
  if (lastModified !== null) r += `If-Modified-Since: ${lastModified}\r\n`
  if (etag !== null) r += `If-None-Match: ${etag}\r\n`
  return r + '\r\n'
}

/** Long-poll: one message per response; the next request carries the cursor (PROTOCOL.md §5). */
function onPollData (this: LgSocket, chunk: Buffer): void {
  const c = this[kConn]
  const now = monoMs()
  let buf = c.carry === null ? chunk : Buffer.concat([c.carry, chunk])
  c.carry = null
  for (;;) {
    const he = buf.indexOf(HEAD_END)
    if (he === -1) break
    const head = buf.toString('latin1', 0, he)
    const m = CONTENT_LENGTH.exec(head)
    const len = m === null ? 0 : Number(m[1])
    if (buf.length < he + 4 + len) break
    const status = statusOf(buf)
    if (status === 200) {
      record(buf, he + 4, now)
      c.request = longpollRequest(c.path, LAST_MODIFIED.exec(head)?.[1] ?? null, ETAG.exec(head)?.[1] ?? null)
    } else if (status !== 304 && status !== 408) {
      st.statuses[status] = (st.statuses[status] ?? 0) + 1
      st.lastError = `long-poll answered ${status}`
    }
    buf = buf.subarray(he + 4 + len)
    this.write(c.request)
  }
  if (buf.length > 0) c.carry = Buffer.from(buf)
}

function onConnect (this: LgSocket): void {
  const c = this[kConn]
  this.write(c.request)
  // a parked long-poll answers nothing until a message exists: counted once the request is out
  if (st.job!.mode === 'longpoll') settle(c, true)
}

function onError (this: LgSocket, err: Error): void {
  st.lastError = err.message
}

function onClose (this: LgSocket): void {
  const c = this[kConn]
  if (c.state === S_CONNECTING) settle(c, false)
  else if (c.state === S_OPEN && !st.closing) st.closed++
  c.state = S_DONE
}

function pump (): void {
  const job = st.job
  if (job === null) return
  while (st.inflight < job.concurrency && st.started < job.n) {
    const k = st.started++
    st.inflight++
    const g = job.first + k
    const path = '/sub/' + (job.each ? job.channel + g : job.channel)
    const socket = net.connect({
      port: job.port,
      host: '127.0.0.1',
      localAddress: job.addrs[Math.floor(k / job.perAddr)],
      noDelay: true,
      onread: { buffer: READ_BUF, callback: job.mode === 'sse' ? onSseRead : onPollRead }
    }) as LgSocket
    const c = new Conn(socket, path)
    c.request = job.mode === 'sse'
      ? `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`
      : longpollRequest(path, null, null)
    socket[kConn] = c
    socket.on('connect', onConnect)
    socket.on('error', onError)
    socket.on('close', onClose)
    st.conns.push(c)
  }
}

function counts (): Record<string, unknown> {
  return { established: st.established, failed: st.failed, closed: st.closed, messages: st.messages, bytes: st.bytes, lastError: st.lastError, statuses: st.statuses }
}

function runChild (): void {
  process.on('message', (msg: { type: string, id: number, reset?: boolean }) => {
    switch (msg.type) {
      case 'open':
        st.job = msg as OpenJob
        st.started = 0
        st.inflight = 0
        st.closing = false
        pump()
        process.send!({ type: 'open', id: msg.id })
        break
      case 'stats':
        process.send!({ type: 'stats', id: msg.id, ...counts() })
        break
      case 'report': {
        // interval histogram, then reset: the parent sums intervals, so every message is counted once
        flushTrace()
        const hist = encodeHistogram(st.hist)
        st.hist.reset()
        process.send!({ type: 'report', id: msg.id, hist, ...counts() })
        break
      }
      case 'close': {
        flushTrace()
        st.closing = true
        for (const c of st.conns) c.socket.destroy()
        st.conns = []
        st.job = null
        st.established = st.failed = st.closed = 0
        st.statuses = {}
        process.send!({ type: 'close', id: msg.id })
        break
      }
    }
  })
  process.on('disconnect', () => { flushTrace(); process.exit(0) })
}

// ---- parent --------------------------------------------------------------------------------------

interface ChildCounts { established: number, failed: number, closed: number, messages: number, bytes: number, lastError: string, statuses: Record<string, number> }

function emptyCounts (): ChildCounts {
  return { established: 0, failed: 0, closed: 0, messages: 0, bytes: 0, lastError: '', statuses: {} }
}

function addCounts (out: ChildCounts, c: ChildCounts): void {
  out.established += c.established
  out.failed += c.failed
  out.closed += c.closed
  out.messages += c.messages
  out.bytes += c.bytes
  if (c.lastError !== '') out.lastError = c.lastError
  for (const [k, v] of Object.entries(c.statuses)) out.statuses[k] = (out.statuses[k] ?? 0) + v
}

let nextId = 1

function ask<T> (child: ChildProcess, msg: Record<string, unknown>, ms = 30000): Promise<T> {
  const id = nextId++
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => { cleanup(); reject(new Error(`load generator child: no answer to ${String(msg.type)}`)) }, ms)
    const onMessage = (m: { id?: number }): void => {
      if (m.id === id) { cleanup(); resolve(m as T) }
    }
    const onExit = (): void => { cleanup(); reject(new Error(`load generator child exited during ${String(msg.type)}`)) }
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

/** Source addresses 127.0.x.y, handed out in order and never twice in one process (no TIME_WAIT reuse). */
let addrSeq = 2 + Math.floor(Math.random() * 50) * 250
export function nextAddrs (count: number): string[] {
  const out: string[] = []
  for (let i = 0; i < count; i++) {
    const k = addrSeq++ % 65000
    out.push(`127.0.${Math.floor(k / 254)}.${(k % 254) + 1}`)
  }
  return out
}

export interface Summary {
  count: number
  min: number
  mean: number
  stddev: number
  max: number
  p50: number
  p99: number
  p999: number
}

/** Latency summary in ms. */
export function summarize (h: Histogram): Summary {
  const ms = (us: number): number => us / 1000
  return {
    count: h.totalCount,
    min: h.totalCount === 0 ? 0 : ms(h.minNonZeroValue === Number.MAX_SAFE_INTEGER ? 0 : h.minNonZeroValue),
    mean: ms(h.mean),
    stddev: ms(h.stdDeviation),
    max: ms(h.maxValue),
    p50: ms(h.getValueAtPercentile(50)),
    p99: ms(h.getValueAtPercentile(99)),
    p999: ms(h.getValueAtPercentile(99.9))
  }
}

export function formatSummary (s: Summary): string {
  const f = (x: number): string => x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : x.toFixed(0)
  return `lat ms min ${f(s.min)} mean ${f(s.mean)} sd ${f(s.stddev)} max ${f(s.max)} | p50 ${f(s.p50)} p99 ${f(s.p99)} p99.9 ${f(s.p999)}`
}

export interface LoadGenOptions {
  port: number
  n: number
  mode: Mode
  /** Channel id (all on one) or prefix (`each`: subscriber i on channel + i). */
  channel: string
  each: boolean
  procs?: number
  /** Connects in flight per child. */
  concurrency?: number
  /** Sockets per source address. */
  perAddr?: number
  /** Interval report period while measuring (ms). */
  reportMs?: number
  log?: (line: string) => void
}

export interface Measurement {
  hist: Histogram
  messages: number
  /** bytes the subscribers read in the window */
  bytes: number
  seconds: number
  established: number
  /** Subscribers the server closed (or that failed) during the window. */
  closed: number
  failed: number
  lastError: string
  intervals: Array<{ t: number, connections: number, rate: number, summary: Summary }>
}

export class LoadGenerator {
  readonly opts: Required<Omit<LoadGenOptions, 'log'>> & { log: (line: string) => void }
  readonly children: ChildProcess[] = []
  readonly shares: number[] = []
  /** Connections over time during the last ramp: [seconds, established]. */
  timeline: Array<[number, number]> = []
  rampSeconds = 0
  #timer: NodeJS.Timeout | null = null
  #measure: { hist: Histogram, t0: number, tLast: number, messages0: number, bytes0: number, lastMessages: number, intervals: Measurement['intervals'], busy: boolean } | null = null

  constructor (opts: LoadGenOptions) {
    const procs = Math.max(opts.procs ?? 2, Math.ceil(opts.n / MAX_PER_CHILD))
    this.opts = {
      port: opts.port,
      n: opts.n,
      mode: opts.mode,
      channel: opts.channel,
      each: opts.each,
      procs,
      concurrency: opts.concurrency ?? 256,
      perAddr: opts.perAddr ?? 20000,
      reportMs: opts.reportMs ?? 5000,
      log: opts.log ?? ((line) => process.stderr.write(line + '\n'))
    }
    if (Math.ceil(opts.n / procs) > MAX_PER_CHILD) throw new Error(`at most ${MAX_PER_CHILD} sockets per child`)
  }

  pids (): number[] {
    return this.children.map((c) => c.pid!).filter((p) => p !== undefined)
  }

  async start (): Promise<void> {
    for (let i = 0; i < this.opts.procs; i++) {
      const child = fork(SELF, ['child'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' })
      this.children.push(child)
      const share = Math.floor(this.opts.n / this.opts.procs) + (i < this.opts.n % this.opts.procs ? 1 : 0)
      this.shares.push(share)
    }
  }

  async #all<T> (msg: Record<string, unknown>, ms?: number): Promise<T[]> {
    return Promise.all(this.children.map((c) => ask<T>(c, msg, ms)))
  }

  async counts (): Promise<ChildCounts> {
    const out = emptyCounts()
    for (const c of await this.#all<ChildCounts>({ type: 'stats' })) addCounts(out, c)
    return out
  }

  /** Open every subscriber and wait until all are established (or fail); records the ramp. */
  async ramp (timeoutMs: number, target?: { channel: string, each: boolean, mode?: Mode }): Promise<ChildCounts> {
    if (target !== undefined) {
      this.opts.channel = target.channel
      this.opts.each = target.each
      if (target.mode !== undefined) this.opts.mode = target.mode
    }
    const t0 = performance.now()
    let first = 0
    for (let i = 0; i < this.children.length; i++) {
      const n = this.shares[i]!
      const addrs = nextAddrs(Math.max(1, Math.ceil(n / this.opts.perAddr)))
      await ask(this.children[i]!, {
        type: 'open', port: this.opts.port, mode: this.opts.mode, first, n, channel: this.opts.channel, each: this.opts.each,
        addrs, perAddr: this.opts.perAddr, concurrency: this.opts.concurrency
      })
      first += n
    }
    this.timeline = [[0, 0]]
    const tty = process.stderr.isTTY
    let lastPrint = 0
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, 100))
      const c = await this.counts()
      const t = (performance.now() - t0) / 1000
      this.timeline.push([t, c.established])
      const done = c.established + c.failed >= this.opts.n
      if (tty || t - lastPrint >= 1 || done) {
        lastPrint = t
        const width = 30
        const fill = Math.round(width * c.established / this.opts.n)
        const line = `ramp [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${c.established}/${this.opts.n} connected` +
          `${c.failed > 0 ? `, ${c.failed} failed` : ''}, ${t.toFixed(1)} s`
        if (tty) process.stderr.write('\r' + line + (done ? '\n' : ''))
        else this.opts.log(line)
      }
      if (done) {
        this.rampSeconds = t
        if (c.failed > 0) this.opts.log(`ramp: ${c.failed} subscribers failed (${c.lastError}; statuses ${JSON.stringify(c.statuses)})`)
        return c
      }
      if (t * 1000 > timeoutMs) {
        this.rampSeconds = t
        throw new Error(`ramp timed out: ${c.established}/${this.opts.n} after ${t.toFixed(1)} s (${c.lastError})`)
      }
    }
  }

  async #report (): Promise<{ hist: Histogram, counts: ChildCounts }> {
    const all = await this.#all<ChildCounts & { hist: string }>({ type: 'report' })
    const hist = newHistogram()
    const counts = emptyCounts()
    for (const r of all) {
      hist.add(decodeHistogram(r.hist))
      addCounts(counts, r)
    }
    return { hist, counts }
  }

  /** Start a measurement window: what was received before is dropped; prints every reportMs. */
  async begin (label: string): Promise<void> {
    const { counts } = await this.#report()
    const t0 = performance.now()
    this.#measure = { hist: newHistogram(), t0, tLast: t0, messages0: counts.messages, bytes0: counts.bytes, lastMessages: counts.messages, intervals: [], busy: false }
    this.#timer = setInterval(() => { this.#interval(label).catch((err: unknown) => this.opts.log(`report failed: ${String(err)}`)) }, this.opts.reportMs)
  }

  async #interval (label: string): Promise<void> {
    const m = this.#measure
    if (m === null || m.busy) return
    m.busy = true
    try {
      const { hist, counts } = await this.#report()
      if (this.#measure !== m) return
      const now = performance.now()
      m.hist.add(hist)
      const rate = (counts.messages - m.lastMessages) / ((now - m.tLast) / 1000)
      const s = summarize(hist)
      m.intervals.push({ t: (now - m.t0) / 1000, connections: counts.established, rate, summary: s })
      this.opts.log(`${label} t=${((now - m.t0) / 1000).toFixed(0)}s conns ${counts.established} msgs/s ${Math.round(rate)} | ${formatSummary(s)}`)
      m.tLast = now
      m.lastMessages = counts.messages
    } finally {
      m.busy = false
    }
  }

  /** Total messages received so far (for drain waits). */
  async messages (): Promise<number> {
    return (await this.counts()).messages
  }

  /** End the window: the last interval is merged; every message received in the window is in `hist`. */
  async end (): Promise<Measurement> {
    const m = this.#measure
    if (m === null) throw new Error('end() without begin()')
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
    while (m.busy) await new Promise((resolve) => setTimeout(resolve, 10))
    this.#measure = null
    const { hist, counts } = await this.#report()
    m.hist.add(hist)
    return {
      hist: m.hist,
      messages: counts.messages - m.messages0,
      bytes: counts.bytes - m.bytes0,
      seconds: (performance.now() - m.t0) / 1000,
      established: counts.established,
      closed: counts.closed,
      failed: counts.failed,
      lastError: counts.lastError,
      intervals: m.intervals
    }
  }

  /** Close every subscriber (the children stay). */
  async closeAll (): Promise<void> {
    await this.#all({ type: 'close' })
  }

  async stop (): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
    for (const c of this.children) {
      if (c.exitCode === null && c.signalCode === null) {
        const exited = new Promise((resolve) => c.once('exit', resolve))
        c.kill('SIGKILL')
        await exited
      }
    }
  }
}

// ---- stand-alone ---------------------------------------------------------------------------------

async function main (): Promise<void> {
  const env = process.env
  const target = env.TARGET ?? '127.0.0.1:8080'
  const port = Number(target.slice(target.lastIndexOf(':') + 1))
  const duration = Math.min(3600, Number(env.DURATION ?? 30))
  const lg = new LoadGenerator({
    port,
    n: Number(env.SUBSCRIBERS ?? 1000),
    mode: env.MODE === 'longpoll' ? 'longpoll' : 'sse',
    channel: env.CHANNEL ?? (env.CHANNELS === 'each' ? 'o' : 'b'),
    each: env.CHANNELS === 'each',
    procs: env.PROCS === undefined ? undefined : Number(env.PROCS),
    reportMs: Number(env.REPORT_MS ?? 5000)
  })
  const stop = (): void => { lg.stop().finally(() => process.exit(1)) }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  try {
    await lg.start()
    await lg.ramp(120000)
    await lg.begin('loadgen')
    await new Promise((resolve) => setTimeout(resolve, duration * 1000))
    const m = await lg.end()
    process.stdout.write(`total: ${m.messages} messages in ${m.seconds.toFixed(1)} s (${Math.round(m.messages / m.seconds)}/s), ` +
      `${m.closed} closed by the server | ${formatSummary(summarize(m.hist))}\n`)
  } finally {
    await lg.stop()
  }
}

if (process.argv[1] === SELF) {
  if (process.argv[2] === 'child') runChild()
  else await main()
}
