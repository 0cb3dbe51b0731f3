// The request paths, side by side in one run: Parkline as it runs by default (publisher
// connections read by lib/raw-publish.ts, the fast path for the rest), with the fast path only
// (PARKLINE_NO_RAW_PUBLISH=1), through Fastify (PARKLINE_NO_FAST_PATH=1), Nchan, a bare node:http
// handler (benchmarks/suite/http-floor.ts) and the node:net floor. One process each (Parkline
// --workers 1); the same autocannon client (in its own process) for all; a fresh server per row.
//   publish:   POST of a 512-byte body to one channel without subscribers
//   long-poll: GET of a channel holding one message, answered at once from the buffer (the request
//              a long-poll client makes after every answer); the node:net floor answers no GET
//
//   npm run bench:request-path      knobs: DURATION (8 s per row), PIPELINING (10,1), CONNECTIONS (100)
//
// Writes benchmarks/results/request-path-YYYY-MM-DD.md (BENCH_OUT to change), prints it too.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { PublisherProcess, type PublishResult } from './publisher.ts'
import { CpuMeter } from './suite/proc.ts'
import { killAllStarted, nchanModule, nginxVersion, startHttpFloor, startServer, type ServerHandle } from './suite/servers.ts'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const env = process.env
const DURATION = Number(env.DURATION ?? 8)
const PIPELINING = (env.PIPELINING ?? '10,1').split(',').map(Number).filter((n) => n > 0)
const CONNECTIONS = Number(env.CONNECTIONS ?? 100)
const SIZE = 512

interface Row { label: string, start: () => Promise<ServerHandle>, get?: boolean }

const tmp = mkdtempSync(path.join(os.tmpdir(), 'parkline-pubpath-'))
/** Parkline (one process) started with `flag` set in its environment (the child inherits it). */
async function parklineWith (flag: string | null): Promise<ServerHandle> {
  if (flag !== null) process.env[flag] = '1'
  try {
    return await startServer('parkline1', { workers: 1, tmp })
  } finally {
    if (flag !== null) delete process.env[flag]
  }
}

const ROWS: Row[] = [
  { label: 'Parkline (default: raw publisher connections, fast path)', start: async () => await parklineWith(null) },
  { label: 'Parkline, fast path only', start: async () => await parklineWith('PARKLINE_NO_RAW_PUBLISH') },
  { label: 'Parkline through Fastify', start: async () => await parklineWith('PARKLINE_NO_FAST_PATH') },
  { label: 'floor (bare node:http)', start: startHttpFloor },
  { label: 'floor (bare node:net)', start: async () => await startServer('floor', { workers: 1, tmp }), get: false }
]
if (nchanModule() !== null) ROWS.splice(3, 0, { label: 'Nchan (nginx, 2 workers)', start: async () => await startServer('nchan', { workers: 1, tmp }) })

interface Measured { rps: number, p99: number, failed: number, serverCpu: number, clientCpu: number }

type Kind = 'publish' | 'long-poll'
const KINDS: Kind[] = ['publish', 'long-poll']

async function measure (row: Row, kind: Kind, pipelining: number): Promise<Measured> {
  const server = await row.start()
  const pub = new PublisherProcess()
  try {
    if (kind === 'long-poll') {
      const r = await fetch(`http://127.0.0.1:${server.port}/pub/lp`, { method: 'POST', body: 'x'.repeat(SIZE) })
      await r.body?.cancel()
    }
    const meter = new CpuMeter()
    meter.start([...server.procs(), { pid: pub.pid, label: 'client' }])
    const r: PublishResult = await pub.run({
      mode: 'autocannon', port: server.port, prefix: 'pp', count: 1, size: SIZE, seconds: DURATION, concurrency: CONNECTIONS, pipelining,
      ...(kind === 'long-poll' ? { method: 'GET' as const, path: '/sub/lp' } : {})
    })
    const cpu = meter.stop()
    return {
      rps: r.rps ?? 0,
      p99: r.p99 ?? 0,
      failed: r.failed,
      serverCpu: cpu.filter((c) => c.label !== 'client').reduce((a, c) => a + c.pct, 0),
      clientCpu: cpu.find((c) => c.label === 'client')?.pct ?? 0
    }
  } finally {
    await pub.stop()
    await server.stop()
  }
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US')

async function main (): Promise<void> {
  const results = new Map<string, Measured>()
  for (const kind of KINDS) {
    for (const p of PIPELINING) {
      for (const row of ROWS) {
        if (kind === 'long-poll' && row.get === false) continue
        const m = await measure(row, kind, p)
        results.set(`${kind} ${p} ${row.label}`, m)
        console.error(`${kind} ${row.label} -p ${p}: ${fmt(m.rps)} req/s, p99 ${m.p99} ms, server CPU ${Math.round(m.serverCpu)}%, client ${Math.round(m.clientCpu)}%, ${m.failed} failed`)
      }
    }
  }
  const day = new Date().toISOString().slice(0, 10)
  const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT }).toString().trim()
  const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: ROOT }).toString().trim() === '' ? '' : ' (with uncommitted changes)'
  const L: string[] = [`# Request paths: publish and long-poll (${day})`, '',
    `- command: \`DURATION=${DURATION} PIPELINING=${PIPELINING.join(',')} CONNECTIONS=${CONNECTIONS} npm run bench:request-path\``,
    `- commit: ${commit}${dirty}; Node ${process.version}; ${nginxVersion()}; autocannon from node_modules, in its own process`,
    `- machine: ${os.availableParallelism()} cores (${os.cpus()[0]?.model ?? 'cpu'}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB; server and client share the cores; load average before the run ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`,
    `- each row: a fresh server (one process; Nchan: nginx with 2 workers), autocannon -c ${CONNECTIONS} -p N for ${DURATION} s; publish: POST ${SIZE} B to one channel without subscribers; long-poll: GET of a channel holding one ${SIZE} B message, answered at once`,
    '']
  const first = ROWS[0]!.label
  for (const kind of KINDS) for (const p of PIPELINING) {
    L.push(`## ${kind}, pipelining ${p}`, '', '| server | requests/s | vs Parkline default | p99 (ms) | server CPU (% of a core) | requests per server core-second | failed |', '|---|--:|--:|--:|--:|--:|--:|')
    const base = results.get(`${kind} ${p} ${first}`)!
    for (const row of ROWS) {
      const m = results.get(`${kind} ${p} ${row.label}`)
      if (m === undefined) continue
      const perCore = m.serverCpu > 0 ? m.rps / (m.serverCpu / 100) : 0
      L.push(`| ${row.label} | ${fmt(m.rps)} | ${(m.rps / base.rps).toFixed(2)} | ${m.p99} | ${Math.round(m.serverCpu)} | ${fmt(perCore)} | ${m.failed} |`)
    }
    L.push('')
  }
  L.push('"vs Parkline default" divides each row\'s requests/s by the first row\'s. Requests per server core-second',
    'divides requests/s by the server\'s CPU (all its processes): the cost of one publish, whoever is bound.', '')
  const doc = L.join('\n')
  const out = env.BENCH_OUT !== undefined && env.BENCH_OUT !== '' ? path.resolve(env.BENCH_OUT) : path.join(ROOT, 'benchmarks', 'results', `request-path-${day}.md`)
  writeFileSync(out, doc)
  console.log(doc)
}

process.on('exit', killAllStarted)
main().catch((err: unknown) => {
  console.error(err)
  process.exitCode = 1
}).finally(() => rmSync(tmp, { recursive: true, force: true }))
