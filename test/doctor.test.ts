// `parkline doctor`: capacity on synthetic hosts, parsing of this machine's /proc, the shipped conf/
// files, and the CLI's exit codes.
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import test from 'ava'
import {
  FD_RESERVE, IDLE_WORKER_BYTES, STALLED_SLAB, LIMITS_FILE, RECOMMENDATIONS, SUBSCRIBER_BYTES, SYSCTL_FILE, computeCapacity,
  formatReport, parseLimits, parseMeminfo, parseSockstat, parseStatus, readHostLimits, type HostLimits
} from '../lib/doctor.ts'
import { startServer } from './helpers/server.ts'
import { serve } from './helpers/node.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const NODE = fileURLToPath(new URL('../node_modules/.bin/node', import.meta.url))
const GiB = 1024 * 1024 * 1024

/** A host already at the shipped conf/ values, with plenty of memory. */
function host (over: Partial<HostLimits> = {}): HostLimits {
  return {
    nofileSoft: 1048576,
    nofileHard: 1048576,
    fileMax: 2097152 * 8,
    fileNr: 1000,
    nrOpen: 1048576,
    tcpMem: [786432, 1048576, 1572864],
    tcpRmem: [4096, 4096, 65536],
    tcpWmem: [4096, 4096, 65536],
    portRange: [1024, 65535],
    somaxconn: 65535,
    tcpMaxSynBacklog: 65535,
    tcpMaxOrphans: 524288,
    conntrackMax: null,
    memTotal: 256 * GiB,
    memAvailable: 250 * GiB,
    cgroupMemLimit: null,
    pageSize: 4096,
    cores: 4,
    sockstat: null,
    ...over
  }
}

const run = (args: string[]): Promise<{ code: number, stdout: string, stderr: string }> => new Promise((resolve) => {
  execFile(NODE, ['bin/parkline.ts', 'doctor', ...args], { cwd: ROOT }, (err, stdout, stderr) => {
    resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr })
  })
})

test('fd-bound: a low ulimit -n binds, (hard - reserve) x workers', (t) => {
  const r = computeCapacity(host({ nofileSoft: 20000, nofileHard: 20000 }), { workers: 4, transport: 'eventsource', maxSubscribers: 1e9 })
  t.is(r.binding, 'nofile')
  t.is(r.capacity, (20000 - FD_RESERVE) * 4)
  t.is(r.rows.filter((x) => x.binding).length, 1)
  t.true(r.raise.limits.includes('* hard nofile 1048576'))
  t.true(r.raise.limits.includes('* soft nofile 1048576'))
})

test('with maxSubscribers 0 Parkline\'s own cap (90% of nofile) binds before the fd limit', (t) => {
  const r = computeCapacity(host({ nofileSoft: 20000, nofileHard: 20000 }), { workers: 2, transport: 'eventsource', maxSubscribers: 0 })
  t.is(r.binding, 'maxSubscribers')
  t.is(r.capacity, 18000 * 2)
})

test('memory-bound: MemAvailable minus idle workers over bytes per subscriber', (t) => {
  const h = host({ memAvailable: 2 * GiB })
  const r = computeCapacity(h, { workers: 2, transport: 'eventsource', maxSubscribers: 0 })
  t.is(r.binding, 'memory')
  const per = SUBSCRIBER_BYTES.eventsource + 4096 + 4096
  t.is(r.perSubscriber.totalBytes, per)
  t.is(r.capacity, Math.floor((2 * GiB - 2 * IDLE_WORKER_BYTES) / per))
  // long-poll subscribers cost more user space, so fewer fit
  const lp = computeCapacity(h, { workers: 2, transport: 'longpoll', maxSubscribers: 0 })
  t.true(lp.capacity < r.capacity)
  t.true(formatReport(h, r, null).includes('no sysctl raises it'))
})

test('more workers than the memory holds idle: capacity 0, bound by memory (not left unknown)', (t) => {
  const r = computeCapacity(host({ memAvailable: 2 * GiB }), { workers: 1000, transport: 'eventsource', maxSubscribers: 0 })
  t.is(r.binding, 'memory')
  t.is(r.capacity, 0)
  t.is(r.rows.find((x) => x.key === 'memory')!.allows, 0)
})

test('a cgroup limit below MemAvailable is the memory budget', (t) => {
  const r = computeCapacity(host({ cgroupMemLimit: 1 * GiB }), { workers: 1, transport: 'eventsource', maxSubscribers: 0 })
  t.is(r.binding, 'memory')
  t.regex(r.rows.find((x) => x.key === 'memory')!.name, /cgroup/)
})

test('tcp_mem-bound: its high value in pages, one page per subscriber (a broadcast queues one message on each)', (t) => {
  const h = host({ tcpMem: [20000, 30000, 40000] })
  const r = computeCapacity(h, { workers: 4, transport: 'eventsource', maxSubscribers: 0 })
  t.is(r.binding, 'tcp_mem')
  t.is(r.perSubscriber.tcpPages, 1)
  t.is(r.capacity, 40000)
  t.true(r.raise.sysctl.includes('net.ipv4.tcp_mem = 786432 1048576 1572864'))
  // larger minimum buffers are still brought back to 4 KiB by the shipped lines
  const big = computeCapacity(host({ tcpMem: [20000, 30000, 40000], tcpRmem: [8192, 87380, 6291456] }), { workers: 4, transport: 'eventsource', maxSubscribers: 0 })
  t.true(big.raise.sysctl.includes('net.ipv4.tcp_rmem = 4096 4096 65536'))
})

test('conntrack binds only while it tracks connections', (t) => {
  const idle = computeCapacity(host({ conntrackMax: 65536, conntrackCount: 0 }), { workers: 4, transport: 'eventsource', maxSubscribers: 0 })
  t.not(idle.binding, 'conntrack')
  t.is(idle.rows.find((x) => x.key === 'conntrack')!.allows, null)
  const busy = computeCapacity(host({ conntrackMax: 65536, conntrackCount: 12 }), { workers: 4, transport: 'eventsource', maxSubscribers: 0 })
  t.is(busy.binding, 'conntrack')
})

test('file-max and conntrack can bind; unknown values never do', (t) => {
  const fm = computeCapacity(host({ fileMax: 30000, fileNr: 1000 }), { workers: 1, transport: 'eventsource', maxSubscribers: 0 })
  t.is(fm.binding, 'file-max')
  t.is(fm.capacity, 30000 - 1000 - FD_RESERVE)
  const ct = computeCapacity(host({ conntrackMax: 65536 }), { workers: 4, transport: 'eventsource', maxSubscribers: 0 })
  t.is(ct.binding, 'conntrack')
  t.true(ct.raise.sysctl.includes('net.netfilter.nf_conntrack_max = 1048576'))
  const unknown = computeCapacity(host({ tcpMem: [], memAvailable: NaN }), { workers: 1, transport: 'eventsource', maxSubscribers: 0 })
  t.is(unknown.rows.find((x) => x.key === 'tcp_mem')!.allows, null)
  t.is(unknown.rows.find((x) => x.key === 'memory')!.allows, null)
  t.is(unknown.binding, 'maxSubscribers')
})

test('somaxconn is a warning about the accept burst, ephemeral ports a per-source-address client limit', (t) => {
  const r = computeCapacity(host({ somaxconn: 4096, portRange: [32768, 60999], tcpMaxOrphans: 1000 }), { workers: 1, transport: 'eventsource', maxSubscribers: 0 })
  t.false(r.rows.some((x) => x.key.includes('somaxconn')))
  t.true(r.warnings.some((w) => w.includes('somaxconn 4096') && w.includes('65535') && w.includes('queue 4096')))
  t.true(r.warnings.some((w) => w.includes('tcp_max_orphans 1000')))
  t.is(r.clientPortsPerSourceAddress, 60999 - 32768 + 1)
  t.true(r.raise.sysctl.includes('net.core.somaxconn = 65535'))
  t.true(r.raise.sysctl.includes('net.ipv4.ip_local_port_range = 1024 65535'))
})

test('a host at the shipped values needs no lines', (t) => {
  const r = computeCapacity(host(), { workers: 4, transport: 'eventsource', maxSubscribers: 0 })
  t.deepEqual(r.raise, { sysctl: [], limits: [] })
  t.true(r.capacity >= 500000)
})

test('parsers: /proc/self/limits, meminfo, sockstat, /status', (t) => {
  t.deepEqual(parseLimits('Limit  Soft Limit  Hard Limit  Units\nMax open files            1024                 524288               files     \n'), { soft: 1024, hard: 524288 })
  t.deepEqual(parseLimits('Max open files  unlimited  unlimited  files\n'), { soft: Number.MAX_SAFE_INTEGER, hard: Number.MAX_SAFE_INTEGER })
  const mem = parseMeminfo('MemTotal:       24683656 kB\nMemAvailable:   24282004 kB\nHugePages_Total:       0\n')
  t.is(mem.MemAvailable, 24282004 * 1024)
  t.is(mem.HugePages_Total, 0)
  t.deepEqual(parseSockstat('sockets: used 16\nTCP: inuse 5 orphan 1 tw 46 alloc 7 mem 234\nUDP: inuse 0 mem 0\n'), { inuse: 5, orphan: 1, tw: 46, alloc: 7, mem: 234 })
  t.is(parseSockstat('sockets: used 16\n'), null)
  const s = parseStatus('total published messages: 3\nsubscribers: 2\nsubscribers eventsource: 1\nparkline version: 0.1.0\n')
  t.is(s.subscribers, 2)
  t.is(s['subscribers eventsource'], 1)
})

test('readHostLimits reads this machine\'s /proc: values are positive', (t) => {
  const h = readHostLimits()
  for (const key of ['nofileSoft', 'nofileHard', 'fileMax', 'nrOpen', 'somaxconn', 'tcpMaxSynBacklog', 'tcpMaxOrphans', 'memTotal', 'memAvailable', 'pageSize', 'cores'] as const) {
    t.true(h[key] > 0, `${key} = ${h[key]}`)
  }
  for (const key of ['tcpMem', 'tcpRmem', 'tcpWmem'] as const) {
    t.is(h[key].length, 3, key)
    t.true(h[key].every((n) => n > 0), key)
  }
  t.is(h.portRange.length, 2)
  t.true(h.portRange[0]! > 0 && h.portRange[1]! >= h.portRange[0]!)
  t.true(h.nofileSoft <= h.nofileHard)
  t.not(h.sockstat, null)
  t.true(h.sockstat!.inuse >= 0 && h.sockstat!.mem >= 0)
  const r = computeCapacity(h, { workers: h.cores, transport: 'eventsource', maxSubscribers: 0 })
  t.true(r.capacity > 0)
})

test('the shipped conf files hold every line the doctor can print, as a whole line', (t) => {
  const files = {
    sysctl: readFileSync(new URL('../' + SYSCTL_FILE, import.meta.url), 'utf8').split('\n'),
    limits: readFileSync(new URL('../' + LIMITS_FILE, import.meta.url), 'utf8').split('\n')
  }
  for (const r of RECOMMENDATIONS) t.true(files[r.file].includes(r.line), `${r.line} missing from ${r.file}`)
  // and nothing else is set there: every setting line is one the doctor knows
  const known = new Set(RECOMMENDATIONS.map((r) => r.line))
  for (const lines of Object.values(files)) {
    for (const l of lines) if (l.trim() !== '' && !l.startsWith('#')) t.true(known.has(l), `unknown line ${l}`)
  }
  // sized for 500,000: the shipped values pass the doctor with room to spare
  const atShipped = computeCapacity(host({ memAvailable: 64 * GiB }), { workers: 1, transport: 'eventsource', maxSubscribers: 0 })
  t.true(atShipped.capacity >= 500000, String(atShipped.capacity))
})

test('CLI: --require exits 0 when the host holds N, 1 with a one-line reason when it cannot', async (t) => {
  const okRun = await run(['--require', '1', '--status-url', 'off'])
  t.is(okRun.code, 0, okRun.stderr)
  t.regex(okRun.stdout, /<- binds first/)
  t.regex(okRun.stdout, /tcp sockets \(\/proc\/net\/sockstat\): inuse \d+/)
  t.is(okRun.stderr, '')
  const failRun = await run(['--require', '10000000000', '--status-url', 'off'])
  t.is(failRun.code, 1)
  t.regex(failRun.stderr, /^parkline doctor: this host holds [\d,]+ subscribers, fewer than the 10,000,000,000 required \(bound by [\w_-]+\)\n$/)
  const bad = await run(['--require', 'many'])
  t.is(bad.code, 2)
})

test('CLI: --json --workers, printed lines match the shipped files, live counts from a running /status', async (t) => {
  const { base } = await startServer(t)
  const status = await (await fetch(`${base}/status`)).text()
  t.regex(status, /^tcp sockets in use: \d+$/m)
  t.regex(status, /^tcp memory pages: \d+$/m)
  const r = await run(['--json', '--workers', '3', '--status-url', `${base}/status`])
  t.is(r.code, 0, r.stderr)
  const j = JSON.parse(r.stdout)
  t.is(j.workers, 3)
  t.is(j.rows.filter((x: { binding: boolean }) => x.binding).length, 1)
  t.is(j.live.parkline.status.subscribers, 0)
  t.is(typeof j.live.sockstat.inuse, 'number')
  const sysctl = readFileSync(new URL('../' + SYSCTL_FILE, import.meta.url), 'utf8').split('\n')
  const limits = readFileSync(new URL('../' + LIMITS_FILE, import.meta.url), 'utf8').split('\n')
  for (const l of j.raise.sysctl) t.true(sysctl.includes(l), l)
  for (const l of j.raise.limits) t.true(limits.includes(l), l)
  const text = await run(['--workers', '3', '--status-url', `${base}/status`])
  t.regex(text.stdout, /parkline http:\/\/127\.0\.0\.1:\d+\/status: 0 subscribers/)
  for (const l of [...j.raise.sysctl, ...j.raise.limits]) t.true(text.stdout.includes(`    ${l}\n`), l)
})

test('CLI: --require judges a running server by its own cap (its /status), not by the limits of the doctor\'s shell', async (t) => {
  // a server whose cap is below what this host could hold: as one started under a lower ulimit -n
  const { base } = await startServer(t, { maxSubscribers: 50 })
  t.regex(await (await fetch(`${base}/status`)).text(), /^max subscribers: 50$/m)
  const r = await run(['--require', '100', '--status-url', `${base}/status`])
  t.is(r.code, 1)
  t.regex(r.stderr, /^parkline doctor: the running server holds 50 subscribers, fewer than the 100 required \(bound by its own cap: max subscribers 50 per process in its \/status, from its open-file limit or maxSubscribers\)\n$/)
  t.regex(r.stdout, /at most 50 per process/)
  t.is((await run(['--require', '40', '--status-url', `${base}/status`])).code, 0)
})

test('CLI: --require judges a running server with workers by its own count of them (its /status), not the doctor\'s --workers', async (t) => {
  const node = await serve(t, ['--workers', '2', '--max-subscribers', '50'])
  const status = await (await fetch(`${node.base}/status`)).text()
  t.regex(status, /^workers: 2$/m)
  // the doctor's own count on this host would be another (1 on 2 cores): the server's 2 count
  for (const workers of [[], ['--workers', '1'], ['--workers', '3']]) {
    t.is((await run(['--require', '90', '--status-url', `${node.base}/status`, ...workers])).code, 0, workers.join(' '))
    const over = await run(['--require', '120', '--status-url', `${node.base}/status`, ...workers])
    t.is(over.code, 1)
    t.regex(over.stderr, /the running server holds 100 subscribers/)
  }
})

test('CLI: --require judges a running server with workers by the host\'s estimate for its count of them too, not one process\'s', async (t) => {
  // the server's cap per worker is its open-file limit's (no maxSubscribers): the host's estimate
  // for one process is about that, and it must not bind a server of two
  const one = JSON.parse((await run(['--json', '--workers', '1', '--status-url', 'off'])).stdout) as { capacity: number }
  const two = JSON.parse((await run(['--json', '--workers', '2', '--status-url', 'off'])).stdout) as { capacity: number }
  t.true(two.capacity > one.capacity, `one process ${one.capacity}, two ${two.capacity}`)
  const node = await serve(t, ['--workers', '2'])
  const status = await (await fetch(`${node.base}/status`)).text()
  t.regex(status, /^workers: 2$/m)
  const perWorker = Number(/^max subscribers: (\d+)$/m.exec(status)![1])
  const need = Math.min(two.capacity, perWorker * 2)
  t.true(need > one.capacity, `need ${need}, one process ${one.capacity}`)
  const r = await run(['--json', '--require', String(need), '--status-url', `${node.base}/status`])
  t.is(r.code, 0, r.stderr)
  t.is((JSON.parse(r.stdout) as { workers: number }).workers, 2)
  // --workers still asks of another count
  t.is((await run(['--require', String(need), '--status-url', `${node.base}/status`, '--workers', '1'])).code, 1)
})

test('what a subscriber that never reads can pin: the kernel send buffer max plus queueCap plus the slab of its unfinished write', (t) => {
  const wide = computeCapacity(host({ tcpWmem: [4096, 16384, 4194304] }), { workers: 1, transport: 'eventsource', maxSubscribers: 0, queueCap: 65536 })
  t.is(STALLED_SLAB, Math.max(8192, Buffer.poolSize))
  t.deepEqual(wide.stalledSubscriber, { kernelBytes: 4194304, queueCapBytes: 65536, slabBytes: STALLED_SLAB, totalBytes: 4194304 + 65536 + STALLED_SLAB })
  t.true(wide.raise.sysctl.includes('net.ipv4.tcp_wmem = 4096 4096 65536'))
  const tuned = computeCapacity(host({ tcpWmem: [4096, 4096, 65536] }), { workers: 1, transport: 'eventsource', maxSubscribers: 0, queueCap: 65536 })
  t.is(tuned.stalledSubscriber.totalBytes, 131072 + STALLED_SLAB)
  t.false(tuned.raise.sysctl.some((l) => l.startsWith('net.ipv4.tcp_wmem')))
})
