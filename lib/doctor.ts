// `parkline doctor`: how many subscribers this host can hold, which limit binds first, and the exact
// sysctl / limits lines that raise it (the same lines conf/sysctl.d/ and conf/limits.d/ ship).
//
// readHostLimits() reads every number once (/proc/sys, /proc/self/limits, /proc/meminfo,
// /proc/net/sockstat); everything after it is a pure function of that snapshot, so tests feed
// synthetic hosts. Live sockets come from /proc/net/sockstat and Parkline's own /status, never netstat.
import { readFileSync } from 'node:fs'
import { request } from 'node:http'
import { availableParallelism } from 'node:os'
import { FD_RESERVE, OPTIONS, defaultSubscriberCap, flagName, resolveOptions, workerCount, type ParklineOptions } from './config.ts'
import { ParklineError } from './errors.ts'
import { FRAME_SLAB } from './message.ts'

// ---------------------------------------------------------------------------------------------
// Per-subscriber and per-worker figures
// ---------------------------------------------------------------------------------------------

export type DoctorTransport = 'eventsource' | 'longpoll'

/**
 * User-space bytes one idle subscriber costs a worker (JS heap + Node's socket objects), by transport.
 * SSE: the server's PSS per subscriber over its idle baselines with 1,000,000 idle SSE subscribers on
 * 56 workers, 2,386 B (benchmarks/results/hold-1000000-2026-11-30.md, the compiled build), rounded
 * up. Long-poll: the RSS delta per parked long-poll after a plain gc() at 15,000
 * (benchmarks/results/memory-2026-11-22.md), measured before the idle heap trim, so it overstates.
 */
export const SUBSCRIBER_BYTES: Readonly<Record<DoctorTransport, number>> = {
  eventsource: 2500,
  longpoll: 5432
}

/**
 * Memory of one idle worker: the server's PSS (shared pages such as the node binary split between the
 * processes sharing them) before the first subscriber, over its 57 processes, in the same 1,000,000
 * run: 2.00 GiB, 36.8 MB each, rounded up. Its RSS, which counts the shared pages in every process,
 * is 85 MB.
 */
export const IDLE_WORKER_BYTES = 38 * 1048576

export { FD_RESERVE }

/**
 * Kernel slab memory of one TCP socket, outside tcp_mem: struct tcp_sock (TCP slab, 2368 B on a
 * 6.x x86-64 kernel), socket + inode (sock_inode_cache, 832 B), struct file (filp, 192 B), dentry
 * (192 B), epoll item (eventpoll_epi, 128 B), plus hash and bind buckets: about 4 KiB
 * (object sizes from /proc/slabinfo).
 */
export const KERNEL_SOCKET_SLAB_BYTES = 4096

/**
 * TCP buffer memory (charged to tcp_mem) a subscriber is counted for: one page. An idle socket's
 * queues are empty and hold none (measured: 1,000,000 loopback sockets of 500,000 idle subscribers
 * held 0 pages, benchmarks/results/hold-2026-11-22.md); a broadcast queues one small message on every
 * socket at once until it is acknowledged, and the kernel charges a queued message in whole pages
 * (SK_MEM_QUANTUM). That run's final broadcast reached all 500,000 under a tcp_mem high of 575,796
 * pages. Messages larger than a page, or clients that stop reading, cost more: the queue cap
 * (queueCap) bounds Parkline's side of that.
 */
export const TCP_PAGES_PER_SUBSCRIBER = 1

/** The shared slab a stalled subscriber's one unfinished write may keep (stalledSubscriber). */
export const STALLED_SLAB = Math.max(FRAME_SLAB, Buffer.poolSize)

/** The accept backlog `parkline serve` asks for (lib/cli.ts); the kernel caps it at somaxconn. */
export const LISTEN_BACKLOG = 65535

/** Subscriber count the shipped conf/ files are sized for. */
export const SIZED_FOR = 500000

// ---------------------------------------------------------------------------------------------
// The snapshot
// ---------------------------------------------------------------------------------------------

/** /proc/net/sockstat TCP line: sockets in use, orphaned, TIME-WAIT, allocated, and buffer pages. */
export interface Sockstat { inuse: number, orphan: number, tw: number, alloc: number, mem: number }

/** Every number the doctor needs. NaN (or null) marks what this host would not tell. */
export interface HostLimits {
  nofileSoft: number
  nofileHard: number
  fileMax: number
  /** Allocated file handles now (first field of fs.file-nr). */
  fileNr: number
  nrOpen: number
  /** Pages: low, pressure, high (the hard limit). */
  tcpMem: number[]
  /** Bytes: min, default, max. */
  tcpRmem: number[]
  tcpWmem: number[]
  /** First and last ephemeral port. */
  portRange: number[]
  somaxconn: number
  tcpMaxSynBacklog: number
  tcpMaxOrphans: number
  /** nf_conntrack_max when the conntrack module is loaded, else null. */
  conntrackMax: number | null
  /** nf_conntrack_count: connections tracked now (null when unreadable). */
  conntrackCount?: number | null
  memTotal: number
  memAvailable: number
  /** A cgroup memory limit below MemTotal, else null. */
  cgroupMemLimit: number | null
  pageSize: number
  cores: number
  sockstat: Sockstat | null
}

function readText (path: string): string | null {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    return null
  }
}

/** Whitespace-separated numbers of a /proc/sys file; [] when unreadable. */
export function parseNumbers (text: string | null): number[] {
  if (text === null) return []
  return text.trim().split(/\s+/).filter((s) => s.length > 0).map(Number)
}

function first (text: string | null): number {
  const n = parseNumbers(text)[0]
  return n === undefined ? NaN : n
}

/** `Max open files  <soft>  <hard>  files` of /proc/<pid>/limits. */
export function parseLimits (text: string): { soft: number, hard: number } {
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(text)
  const num = (s: string | undefined): number => s === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(s ?? NaN)
  return { soft: num(m?.[1]), hard: num(m?.[2]) }
}

/** /proc/meminfo as bytes by key. */
export function parseMeminfo (text: string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const m of text.matchAll(/^(\S+):\s+(\d+)(?:\s+kB)?$/gm)) {
    out[m[1]!] = Number(m[2]) * (m[0].endsWith('kB') ? 1024 : 1)
  }
  return out
}

/** The `TCP:` line of /proc/net/sockstat, or null. */
export function parseSockstat (text: string | null): Sockstat | null {
  if (text === null) return null
  const line = /^TCP:(.*)$/m.exec(text)
  if (line === null) return null
  const f: Record<string, number> = {}
  const parts = line[1]!.trim().split(/\s+/)
  for (let i = 0; i + 1 < parts.length; i += 2) f[parts[i]!] = Number(parts[i + 1])
  return { inuse: f.inuse ?? NaN, orphan: f.orphan ?? NaN, tw: f.tw ?? NaN, alloc: f.alloc ?? NaN, mem: f.mem ?? NaN }
}

/** TCP sockets of this host right now, from /proc/net/sockstat (null off Linux). */
export function readSockstat (): Sockstat | null {
  return parseSockstat(readText('/proc/net/sockstat'))
}

function readCgroupMemLimit (memTotal: number): number | null {
  const candidates = ['/sys/fs/cgroup/memory/memory.limit_in_bytes'] // cgroup v1
  const self = readText('/proc/self/cgroup')
  const v2 = self === null ? null : /^0::(.*)$/m.exec(self)
  if (v2 !== null) candidates.unshift(`/sys/fs/cgroup${v2[1]!.trim() === '/' ? '' : v2[1]!.trim()}/memory.max`)
  for (const path of candidates) {
    const n = first(readText(path))
    if (Number.isFinite(n) && n > 0 && (!(memTotal > 0) || n < memTotal)) return n
  }
  return null
}

/** Read this host's limits once. */
export function readHostLimits (): HostLimits {
  const sys = (key: string): string | null => readText('/proc/sys/' + key)
  const limits = parseLimits(readText('/proc/self/limits') ?? '')
  const mem = parseMeminfo(readText('/proc/meminfo') ?? '')
  const memTotal = mem.MemTotal ?? NaN
  const smaps = readText('/proc/self/smaps')
  const page = smaps === null ? null : /^KernelPageSize:\s+(\d+) kB$/m.exec(smaps)
  const conntrack = sys('net/netfilter/nf_conntrack_max')
  return {
    nofileSoft: limits.soft,
    nofileHard: limits.hard,
    fileMax: first(sys('fs/file-max')),
    fileNr: first(sys('fs/file-nr')),
    nrOpen: first(sys('fs/nr_open')),
    tcpMem: parseNumbers(sys('net/ipv4/tcp_mem')),
    tcpRmem: parseNumbers(sys('net/ipv4/tcp_rmem')),
    tcpWmem: parseNumbers(sys('net/ipv4/tcp_wmem')),
    portRange: parseNumbers(sys('net/ipv4/ip_local_port_range')),
    somaxconn: first(sys('net/core/somaxconn')),
    tcpMaxSynBacklog: first(sys('net/ipv4/tcp_max_syn_backlog')),
    tcpMaxOrphans: first(sys('net/ipv4/tcp_max_orphans')),
    conntrackMax: conntrack === null ? null : first(conntrack),
    conntrackCount: conntrack === null ? null : first(sys('net/netfilter/nf_conntrack_count')),
    memTotal,
    memAvailable: mem.MemAvailable ?? NaN,
    cgroupMemLimit: readCgroupMemLimit(memTotal),
    pageSize: page === null ? 4096 : Number(page[1]) * 1024,
    cores: availableParallelism(),
    sockstat: readSockstat()
  }
}

// ---------------------------------------------------------------------------------------------
// Capacity
// ---------------------------------------------------------------------------------------------

export interface DoctorInput {
  workers: number
  transport: DoctorTransport
  /** Parkline's maxSubscribers option (0 = defaultSubscriberCap of the open-file limit, as lib/core.ts does). */
  maxSubscribers: number
  /** Parkline's queueCap option (bytes a stalled subscriber may queue in user space). */
  queueCap?: number
}

export interface LimitRow {
  /** Stable id: nofile, maxSubscribers, file-max, nr_open, memory, tcp_mem, conntrack. */
  key: string
  name: string
  value: string
  /** Subscribers this limit allows on the whole host; null when the host would not say. */
  allows: number | null
  binding: boolean
  note: string
}

export interface PerSubscriber {
  userBytes: number
  kernelSlabBytes: number
  tcpBufferBytes: number
  totalBytes: number
  tcpPages: number
}

export interface Report {
  workers: number
  transport: DoctorTransport
  perSubscriber: PerSubscriber
  idleWorkerBytes: number
  fdReserve: number
  rows: LimitRow[]
  /** Subscribers this host can hold: the smallest `allows`. */
  capacity: number
  binding: string
  warnings: string[]
  /** Ephemeral ports: connections one client source address can open to one server address:port. */
  clientPortsPerSourceAddress: number | null
  raise: { sysctl: string[], limits: string[] }
  /**
   * What a subscriber that never reads pins before it is cut: the kernel send queue (it grows to
   * tcp_wmem's max), queueCap, and the shared slab its one unfinished write is a view of
   * (lib/message.ts writeShared): a frame's (FRAME_SLAB) or a batch's from Node's pool
   * (Buffer.poolSize, as in this process: a host application may set another), the larger.
   */
  stalledSubscriber: { kernelBytes: number | null, queueCapBytes: number, slabBytes: number, totalBytes: number | null }
}

const ok = (n: number): boolean => Number.isFinite(n) && n >= 0
const floorOrNull = (n: number): number | null => ok(n) ? Math.max(0, Math.floor(n)) : null
const fmt = (n: number): string => n.toLocaleString('en-US')

export function bytes (n: number): string {
  if (!ok(n)) return 'unknown'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++ }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`
}

export function perSubscriber (h: HostLimits, transport: DoctorTransport): PerSubscriber {
  const userBytes = SUBSCRIBER_BYTES[transport]
  const page = h.pageSize > 0 ? h.pageSize : 4096
  const tcpBufferBytes = TCP_PAGES_PER_SUBSCRIBER * page
  return {
    userBytes,
    kernelSlabBytes: KERNEL_SOCKET_SLAB_BYTES,
    tcpBufferBytes,
    totalBytes: userBytes + KERNEL_SOCKET_SLAB_BYTES + tcpBufferBytes,
    tcpPages: TCP_PAGES_PER_SUBSCRIBER
  }
}

/** Subscribers per worker Parkline itself admits (lib/core.ts: maxSubscribers, or defaultSubscriberCap of nofile). */
export function parklineCapPerWorker (h: HostLimits, maxSubscribers: number): number {
  return maxSubscribers > 0 ? maxSubscribers : defaultSubscriberCap(h.nofileHard)
}

/** One recommended setting: the exact line conf/ ships and when this host needs it. */
export interface Recommendation {
  file: 'sysctl' | 'limits'
  line: string
  /** True when this host is below the line (for buffers: above it). */
  needed: (h: HostLimits) => boolean
}

const below = (v: number | undefined, want: number): boolean => v === undefined || !ok(v) || v < want

/** The lines of conf/sysctl.d/90-parkline.conf and conf/limits.d/90-parkline.conf, sized for SIZED_FOR. */
export const RECOMMENDATIONS: readonly Recommendation[] = [
  { file: 'sysctl', line: 'fs.file-max = 2097152', needed: (h) => below(h.fileMax, 2097152) },
  { file: 'sysctl', line: 'fs.nr_open = 1048576', needed: (h) => below(h.nrOpen, 1048576) },
  { file: 'sysctl', line: 'net.core.somaxconn = 65535', needed: (h) => below(h.somaxconn, 65535) },
  { file: 'sysctl', line: 'net.ipv4.tcp_max_syn_backlog = 65535', needed: (h) => below(h.tcpMaxSynBacklog, 65535) },
  { file: 'sysctl', line: 'net.ipv4.ip_local_port_range = 1024 65535', needed: (h) => below((h.portRange[1] ?? NaN) - (h.portRange[0] ?? NaN) + 1, 64512) },
  { file: 'sysctl', line: 'net.ipv4.tcp_mem = 786432 1048576 1572864', needed: (h) => below(h.tcpMem[2], 1572864) },
  { file: 'sysctl', line: 'net.ipv4.tcp_rmem = 4096 4096 65536', needed: (h) => !(h.tcpRmem[0] === 4096 && h.tcpRmem[1] === 4096 && (h.tcpRmem[2] ?? Infinity) <= 65536) },
  { file: 'sysctl', line: 'net.ipv4.tcp_wmem = 4096 4096 65536', needed: (h) => !(h.tcpWmem[0] === 4096 && h.tcpWmem[1] === 4096 && (h.tcpWmem[2] ?? Infinity) <= 65536) },
  { file: 'sysctl', line: 'net.ipv4.tcp_max_orphans = 524288', needed: (h) => below(h.tcpMaxOrphans, 524288) },
  { file: 'sysctl', line: 'net.netfilter.nf_conntrack_max = 1048576', needed: (h) => h.conntrackMax !== null && below(h.conntrackMax, 1048576) },
  { file: 'limits', line: '* soft nofile 1048576', needed: (h) => below(h.nofileSoft, 1048576) },
  { file: 'limits', line: '* hard nofile 1048576', needed: (h) => below(h.nofileHard, 1048576) },
  { file: 'limits', line: 'root soft nofile 1048576', needed: (h) => below(h.nofileSoft, 1048576) },
  { file: 'limits', line: 'root hard nofile 1048576', needed: (h) => below(h.nofileHard, 1048576) }
]

export const SYSCTL_FILE = 'conf/sysctl.d/90-parkline.conf'
export const LIMITS_FILE = 'conf/limits.d/90-parkline.conf'

/** The capacity report of a host snapshot: pure. */
export function computeCapacity (h: HostLimits, input: DoctorInput): Report {
  const w = Math.max(1, Math.floor(input.workers))
  const per = perSubscriber(h, input.transport)
  const rows: LimitRow[] = []
  const fdPerWorker = h.nofileHard - FD_RESERVE
  rows.push({
    key: 'nofile',
    name: 'open files per worker (ulimit -n)',
    value: `${h.nofileSoft} soft / ${h.nofileHard} hard`,
    allows: floorOrNull(fdPerWorker * w),
    binding: false,
    note: `(hard ${h.nofileHard} - ${FD_RESERVE} reserved) x ${w} workers; Node raises soft to hard at start`
  })
  const cap = parklineCapPerWorker(h, input.maxSubscribers)
  rows.push({
    key: 'maxSubscribers',
    name: 'parkline maxSubscribers',
    value: input.maxSubscribers > 0 ? String(input.maxSubscribers) : `0 (90% of nofile, at most nofile - ${FD_RESERVE} = ${cap})`,
    allows: floorOrNull(cap * w),
    binding: false,
    note: `${cap} per worker x ${w}, past it subscribers get 503` +
      (input.maxSubscribers > 0 ? '' : '; it follows ulimit -n, so the nofile lines raise it')
  })
  rows.push({
    key: 'file-max',
    name: 'fs.file-max (whole host)',
    value: `${h.fileMax}${ok(h.fileNr) ? ` (${h.fileNr} in use)` : ''}`,
    allows: floorOrNull(h.fileMax - Math.max(0, h.fileNr) - FD_RESERVE * w),
    binding: false,
    note: 'minus handles in use now and the workers\' reserve'
  })
  rows.push({
    key: 'nr_open',
    name: 'fs.nr_open (ceiling of ulimit -n)',
    value: String(h.nrOpen),
    allows: floorOrNull((h.nrOpen - FD_RESERVE) * w),
    binding: false,
    note: 'the hard nofile limit cannot be raised past it'
  })
  const memBudget = Math.min(h.memAvailable, h.cgroupMemLimit ?? Infinity)
  rows.push({
    key: 'memory',
    name: h.cgroupMemLimit !== null && h.cgroupMemLimit < h.memAvailable ? 'memory (cgroup limit)' : 'memory (MemAvailable)',
    value: bytes(memBudget),
    // (none when the workers' idle memory alone is past the budget)
    allows: floorOrNull(Math.max(0, (memBudget - IDLE_WORKER_BYTES * w) / per.totalBytes)),
    binding: false,
    note: `minus ${bytes(IDLE_WORKER_BYTES)} idle memory (PSS) x ${w} workers, / ${fmt(per.totalBytes)} B per subscriber`
  })
  const tcpHigh = h.tcpMem[2] ?? NaN
  rows.push({
    key: 'tcp_mem',
    name: 'net.ipv4.tcp_mem (high, pages)',
    value: ok(tcpHigh) ? `${tcpHigh} (${bytes(tcpHigh * h.pageSize)})` : 'unknown',
    allows: floorOrNull(tcpHigh / per.tcpPages),
    binding: false,
    note: `${per.tcpPages} page per subscriber: one small message queued on every socket by a broadcast`
  })
  if (h.conntrackMax !== null) {
    // the module can be loaded with no rule tracking anything (then nf_conntrack_count stays 0)
    const tracking = h.conntrackCount === undefined || h.conntrackCount === null || h.conntrackCount > 0
    rows.push({
      key: 'conntrack',
      name: 'net.netfilter.nf_conntrack_max',
      value: String(h.conntrackMax) + (h.conntrackCount !== undefined && h.conntrackCount !== null ? ` (${h.conntrackCount} tracked now)` : ''),
      allows: tracking ? floorOrNull(h.conntrackMax) : null,
      binding: false,
      note: tracking ? 'the firewall tracks connections: every subscriber takes an entry' : 'nothing is tracked now, so it does not bind'
    })
  }
  let best: LimitRow | null = null
  for (const r of rows) if (r.allows !== null && (best === null || r.allows < best.allows!)) best = r
  if (best !== null) best.binding = true
  const capacity = best === null ? 0 : best.allows!

  const warnings: string[] = []
  if (ok(h.somaxconn)) {
    const burst = Math.min(h.somaxconn, LISTEN_BACKLOG)
    warnings.push(`accept burst: net.core.somaxconn ${h.somaxconn} and Parkline's listen backlog ${LISTEN_BACKLOG} queue ${burst} connections ` +
      `per listening socket; a larger reconnect storm is paced by SYN retries (it limits the burst, not the total)`)
  }
  if (ok(h.tcpMaxSynBacklog) && h.tcpMaxSynBacklog < 65535) {
    warnings.push(`net.ipv4.tcp_max_syn_backlog ${h.tcpMaxSynBacklog}: half-open connections beyond it wait for SYN cookies`)
  }
  if (ok(h.tcpMaxOrphans) && h.tcpMaxOrphans < capacity) {
    warnings.push(`net.ipv4.tcp_max_orphans ${h.tcpMaxOrphans} < capacity: closing more subscribers than that at once resets the rest ` +
      '(drainWindow spreads SIGTERM closes in waves)')
  }
  if (ok(h.nofileSoft) && ok(h.nofileHard) && h.nofileSoft < h.nofileHard) {
    warnings.push(`ulimit -n soft ${h.nofileSoft} < hard ${h.nofileHard}: Node raises it at start, other tools on this host do not`)
  }
  const lo = h.portRange[0]
  const hi = h.portRange[1]
  const ports = lo !== undefined && hi !== undefined && ok(lo) && ok(hi) ? hi - lo + 1 : null

  const raise = { sysctl: [] as string[], limits: [] as string[] }
  for (const r of RECOMMENDATIONS) if (r.needed(h)) raise[r.file].push(r.line)
  return {
    workers: w,
    transport: input.transport,
    perSubscriber: per,
    idleWorkerBytes: IDLE_WORKER_BYTES,
    fdReserve: FD_RESERVE,
    rows,
    capacity,
    binding: best === null ? 'unknown' : best.key,
    warnings,
    clientPortsPerSourceAddress: ports,
    raise,
    stalledSubscriber: {
      kernelBytes: h.tcpWmem[2] ?? null,
      queueCapBytes: input.queueCap ?? 65536,
      slabBytes: STALLED_SLAB,
      totalBytes: h.tcpWmem[2] === undefined ? null : h.tcpWmem[2] + (input.queueCap ?? 65536) + STALLED_SLAB
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Live connections and output
// ---------------------------------------------------------------------------------------------

export interface LiveStatus {
  url: string
  /** Parsed `name: value` lines of /status, or null when it did not answer. */
  status: Record<string, number> | null
  error: string | null
}

/** `name: value` lines of Parkline's /status with numeric values. */
export function parseStatus (text: string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const m of text.matchAll(/^([a-z][a-z0-9 _-]*):\s*(-?\d+)\s*$/gm)) out[m[1]!] = Number(m[2])
  return out
}

/** GET a running Parkline's /status with a short timeout; never throws. */
export function fetchStatus (url: string, timeoutMs = 500): Promise<LiveStatus> {
  return new Promise((resolve) => {
    let done = false
    const finish = (status: Record<string, number> | null, error: string | null): void => {
      if (done) return
      done = true
      resolve({ url, status, error })
    }
    let req
    try {
      req = request(url, { agent: false, timeout: timeoutMs }, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (c: string) => { if (body.length < 65536) body += c })
        res.on('end', () => {
          if (res.statusCode !== 200) return finish(null, `HTTP ${res.statusCode}`)
          const s = parseStatus(body)
          if (s.subscribers === undefined) return finish(null, 'not a Parkline status page')
          finish(s, null)
        })
        res.on('error', (err) => finish(null, err.message))
      })
    } catch (err) {
      finish(null, (err as Error).message)
      return
    }
    req.on('timeout', () => { req.destroy(new Error(`no answer in ${timeoutMs} ms`)) })
    req.on('error', (err: NodeJS.ErrnoException) => finish(null, err.code ?? err.message))
    req.end()
  })
}

function table (rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  return rows.map((r) => r.map((c, i) => i === 3 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n'
}

/** The human-readable report. */
export function formatReport (h: HostLimits, r: Report, live: LiveStatus | null): string {
  const p = r.perSubscriber
  let s = `parkline doctor: ${r.workers} worker${r.workers === 1 ? '' : 's'} (${h.cores} cores), ${r.transport} subscribers\n\n`
  s += `per subscriber: ${fmt(p.userBytes)} B user space + ${fmt(p.kernelSlabBytes)} B kernel socket + ` +
    `${fmt(p.tcpBufferBytes)} B TCP send queue in a broadcast (one page) = ${fmt(p.totalBytes)} B\n`
  s += `per worker: ${bytes(r.idleWorkerBytes)} idle memory (PSS), ${r.fdReserve} descriptors reserved\n`
  const st = r.stalledSubscriber
  s += `a subscriber that never reads pins up to ${st.kernelBytes === null ? '?' : bytes(st.kernelBytes)} of kernel send queue (tcp_wmem ${h.tcpWmem.join(' ')}) + ` +
    `${bytes(st.queueCapBytes)} queueCap + ${bytes(st.slabBytes)} slab of its unfinished write = ${st.totalBytes === null ? '?' : bytes(st.totalBytes)} before it is cut` +
    `${st.kernelBytes !== null && st.kernelBytes > 65536 ? `; with ${SYSCTL_FILE} (tcp_wmem max 64 KiB) ${bytes(65536 + st.queueCapBytes + st.slabBytes)}` : ''}\n\n`
  const rows = [[' ', 'limit', 'value', 'subscribers', '']]
  for (const row of r.rows) {
    rows.push([row.binding ? '*' : ' ', row.name, row.value, row.allows === null ? 'unknown' : fmt(row.allows), row.binding ? '<- binds first' : ''])
  }
  s += table(rows)
  const bind = r.rows.find((x) => x.binding)
  s += `\ncapacity: ${fmt(r.capacity)} subscribers, bound by ${bind === undefined ? 'unknown' : `${bind.name} (${bind.note})`}\n`
  if (r.warnings.length > 0) s += '\nwarnings:\n' + r.warnings.map((w) => `  - ${w}\n`).join('')
  if (r.clientPortsPerSourceAddress !== null) {
    s += `\nload generator: ip_local_port_range ${h.portRange.join('-')} gives ${fmt(r.clientPortsPerSourceAddress)} connections per ` +
      `client source address to one server address:port; ${fmt(SIZED_FOR)} subscribers need ${Math.ceil(SIZED_FOR / r.clientPortsPerSourceAddress)} ` +
      'source addresses (e.g. 127.0.0.2, 127.0.0.3, ...)\n'
  }
  s += '\nlive:\n'
  const k = h.sockstat
  s += k === null
    ? '  /proc/net/sockstat: unreadable\n'
    : `  tcp sockets (/proc/net/sockstat): inuse ${k.inuse}, orphan ${k.orphan}, time-wait ${k.tw}, alloc ${k.alloc}, ` +
      `memory ${k.mem} pages (${bytes(k.mem * h.pageSize)}) of tcp_mem ${h.tcpMem[2] ?? 'unknown'}\n`
  if (live !== null) {
    if (live.status === null) {
      s += `  parkline ${live.url}: not reachable (${live.error})\n`
    } else {
      const per = Object.entries(live.status).filter(([key]) => key.startsWith('subscribers ')).map(([key, v]) => `${key.slice(12)} ${v}`)
      s += `  parkline ${live.url}: ${live.status.subscribers} subscribers${per.length > 0 ? ` (${per.join(', ')})` : ''}, ` +
        `${live.status.channels ?? '?'} channels` +
        (live.status['max subscribers'] !== undefined ? `, at most ${live.status['max subscribers']} per process (its own open-file limit or maxSubscribers)` : '') + '\n'
    }
  }
  s += `\nto hold ${fmt(SIZED_FOR)} subscribers:\n`
  if (r.raise.sysctl.length === 0 && r.raise.limits.length === 0) s += '  kernel limits already at or above the shipped conf/ files\n'
  if (r.raise.sysctl.length > 0) {
    s += `  ${SYSCTL_FILE} -> /etc/sysctl.d/, then \`sysctl --system\`:\n` + r.raise.sysctl.map((l) => `    ${l}\n`).join('')
  }
  if (r.raise.limits.length > 0) {
    s += `  ${LIMITS_FILE} -> /etc/security/limits.d/, then log in again (systemd units: LimitNOFILE=1048576):\n` +
      r.raise.limits.map((l) => `    ${l}\n`).join('')
  }
  const mem = r.rows.find((x) => x.key === 'memory')
  if (mem !== undefined && mem.allows !== null && mem.allows < SIZED_FOR) {
    s += `  memory: ${bytes(SIZED_FOR * p.totalBytes + r.workers * r.idleWorkerBytes)} available is needed (no sysctl raises it)\n`
  }
  return s
}

// ---------------------------------------------------------------------------------------------
// CLI: parkline doctor [--workers N] [--require N] [--json] [--status-url URL|off] [--transport T]
// ---------------------------------------------------------------------------------------------

export function doctorUsage (): string {
  return 'usage: parkline doctor [--config FILE] [--workers N] [--transport eventsource|longpoll] [--require N] [--json]\n' +
    '                       [--status-url URL|off] [--<option> VALUE]...\n\n' +
    '  Reads this host\'s limits and prints how many subscribers it can hold, which limit binds first and the\n' +
    `  lines that raise it (${SYSCTL_FILE}, ${LIMITS_FILE}).\n` +
    '  --workers N        worker processes (default: the workers option; 0 = chosen for the host)\n' +
    '  --transport T      subscriber kind the memory figure assumes (default eventsource)\n' +
    '  --require N        exit 1 when this host cannot hold N subscribers\n' +
    '  --json             machine-readable output\n' +
    '  --status-url URL   a running Parkline\'s /status (default http://127.0.0.1:<port><statusPath>); off = skip\n'
}

/** Run the doctor; returns the exit code (0, or 1 when --require is not met). */
export async function runDoctor (argv: string[], defaultConfig: string | undefined, out: (s: string) => void = (s) => process.stdout.write(s),
  err: (s: string) => void = (s) => process.stderr.write(s)): Promise<number> {
  const byFlag = new Map(OPTIONS.map((o) => [flagName(o.name), o.name as string]))
  const flags: Record<string, string> = {}
  let config = defaultConfig
  let json = false
  let required: number | null = null
  let statusUrl: string | null = null
  let transport: DoctorTransport = 'eventsource'
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a === '--help' || a === 'help') { out(doctorUsage()); return 0 }
    if (a === '--json') { json = true; continue }
    if (!a.startsWith('--')) throw new ParklineError('PKL_ERR_CONFIG', `unexpected argument "${a}"\n${doctorUsage()}`, 2)
    const eq = a.indexOf('=')
    const name = eq === -1 ? a : a.slice(0, eq)
    const value = eq === -1 ? argv[++i] : a.slice(eq + 1)
    if (value === undefined) throw new ParklineError('PKL_ERR_CONFIG', `${name} needs a value`, 2)
    if (name === '--config') config = value
    else if (name === '--status-url') statusUrl = value
    else if (name === '--require') {
      const n = Number(value)
      if (!Number.isSafeInteger(n) || n < 0) throw new ParklineError('PKL_ERR_CONFIG', `--require must be a non-negative integer, got ${JSON.stringify(value)}`, 2)
      required = n
    } else if (name === '--transport') {
      if (value !== 'eventsource' && value !== 'longpoll') throw new ParklineError('PKL_ERR_CONFIG', '--transport must be eventsource or longpoll', 2)
      transport = value
    } else {
      const key = byFlag.get(name)
      if (key === undefined) throw new ParklineError('PKL_ERR_CONFIG', `unknown flag ${name}\n${doctorUsage()}`, 2)
      flags[key] = value
    }
  }
  const opts: ParklineOptions = resolveOptions(flags, { file: config, env: process.env })
  const host = readHostLimits()
  const workers = workerCount(opts, host.cores)
  let live: LiveStatus | null = null
  if (statusUrl !== 'off' && (statusUrl !== null || opts.statusPath !== '')) {
    live = await fetchStatus(statusUrl ?? `http://127.0.0.1:${opts.port}${opts.statusPath}`)
  }
  // the running server's own cap comes from its own open-file limit, not this shell's
  const liveMax = live?.status?.['max subscribers']
  // with worker processes, each holds its own cap: the running server's count of them (its
  // /status says it), not this shell's --workers; and the host's estimate is of that count too
  // (each process its own open-file limit, each its idle memory), unless --workers asks of another
  const liveWorkers = live?.status?.worker === undefined ? 1 : live.status.workers ?? workers
  const estimated = liveMax === undefined || flags.workers !== undefined ? workers : liveWorkers
  const report = computeCapacity(host, { workers: estimated, transport, maxSubscribers: opts.maxSubscribers, queueCap: opts.queueCap })
  const liveCap = liveMax === undefined ? null : liveMax * liveWorkers
  const capacity = liveCap === null ? report.capacity : Math.min(report.capacity, liveCap)
  const met = required === null || capacity >= required
  if (json) {
    out(JSON.stringify({
      ...report,
      host,
      live: { sockstat: host.sockstat, parkline: live },
      require: required === null ? null : { subscribers: required, ok: met }
    }, null, 2) + '\n')
  } else {
    out(formatReport(host, report, live))
  }
  if (!met) {
    err(capacity < report.capacity
      ? `parkline doctor: the running server holds ${fmt(capacity)} subscribers, fewer than the ${fmt(required!)} required (bound by its own cap: max subscribers ${fmt(liveMax!)} per process in its /status, from its open-file limit or maxSubscribers)\n`
      : `parkline doctor: this host holds ${fmt(report.capacity)} subscribers, fewer than the ${fmt(required!)} required (bound by ${report.binding})\n`)
    return 1
  }
  return 0
}
