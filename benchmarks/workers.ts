// Do workers add speed? The suite's broadcast scenario (closed-loop publisher, SUBSCRIBERS SSE
// subscribers on one channel) against `parkline serve --workers N` for each N in WORKER_COUNTS, one
// fresh server per run, and what each run cost: deliveries/s, p99, the server's CPU (all of its
// processes, in cores) and deliveries per server core-second — the figure that says what a larger
// host would give, since this box's two cores are shared with the load generator.
//
//   npm run bench:workers            WORKER_COUNTS=1,2,4 SUBSCRIBERS=10000 DURATION=10
//
// Each run is `node benchmarks/run.ts` (SCENARIOS=broadcast SERVERS=parkline WORKERS=N); its report
// is parsed. Then the publish path: for each N a fresh `parkline serve --workers N`, autocannon
// (its own process, -c 100 -p 10, PUB_DURATION s) POSTing 512 B to one channel without
// subscribers — with N workers, 1/N of the publishes land on the channel's owner and the rest take
// one hop to it — publishes/s, p99 and the server's CPU. Results: stdout and
// benchmarks/results/workers-scaling-<date>.md (or BENCH_OUT).
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { PublisherProcess } from './publisher.ts'
import { CpuMeter } from './suite/proc.ts'
import { killAllStarted, startServer } from './suite/servers.ts'
import { reportFile } from './suite/out.ts'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const COUNTS = (process.env.WORKER_COUNTS ?? '1,2,4').split(',').map(Number).filter((n) => n > 0)
const SUBSCRIBERS = process.env.SUBSCRIBERS ?? '10000'
const DURATION = process.env.DURATION ?? '10'
const PUB_DURATION = Number(process.env.PUB_DURATION ?? 8)

interface Row { workers: number, deliveries: number, p99: number, serverCpu: number, machine: number }

function cell (md: string, label: string): string {
  const line = md.split('\n').find((l) => l.startsWith(`| ${label} |`))
  if (line === undefined) throw new Error(`no "${label}" row in the suite's report`)
  return line.split('|')[3]!.trim()
}

const tmp = mkdtempSync(path.join(os.tmpdir(), 'parkline-workers-'))
const rows: Row[] = []
try {
  for (const n of COUNTS) {
    const out = path.join(tmp, `w${n}.md`)
    execFileSync(process.execPath, ['benchmarks/run.ts'], {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, SCENARIOS: 'broadcast', SERVERS: 'parkline', WORKERS: String(n), SUBSCRIBERS, DURATION, BENCH_OUT: out }
    })
    const md = readFileSync(out, 'utf8')
    // "| Parkline --workers N | broadcast | 99 (1+46+52) | … | machine busy | …": server CPU % of one core
    const bound = md.split('\n').find((l) => /^\| Parkline[^|]*\| broadcast \|/.test(l))!.split('|').map((c) => c.trim())
    rows.push({
      workers: n,
      deliveries: Number(cell(md, 'broadcast: deliveries/s').replace(/,/g, '')),
      p99: Number(cell(md, 'broadcast: latency p99 (ms)').replace(/,/g, '')),
      serverCpu: Number(/^\d+/.exec(bound[3]!)![0]) / 100,
      machine: Number(bound[7]) / 100
    })
  }
} catch (err) {
  rmSync(tmp, { recursive: true, force: true })
  throw err
}

interface PubRow { workers: number, rps: number, p99: number, failed: number, serverCpu: number }
const pubRows: PubRow[] = []
try {
  for (const n of COUNTS) {
    const server = await startServer(n === 1 ? 'parkline1' : 'parkline', { workers: n, tmp })
    const pub = new PublisherProcess()
    try {
      const meter = new CpuMeter()
      meter.start(server.procs())
      const r = await pub.run({ mode: 'autocannon', port: server.port, prefix: 'wp', count: 1, size: 512, seconds: PUB_DURATION, concurrency: 100, pipelining: 10 })
      const cpu = meter.stop()
      pubRows.push({ workers: n, rps: r.rps ?? 0, p99: r.p99 ?? 0, failed: r.failed, serverCpu: cpu.reduce((a, c) => a + c.pct, 0) / 100 })
    } finally {
      await pub.stop()
      await server.stop()
    }
  }
} finally {
  killAllStarted()
  rmSync(tmp, { recursive: true, force: true })
}

const date = new Date().toISOString().slice(0, 10)
const fmt = (x: number): string => Math.round(x).toLocaleString('en-US')
const text = `# Workers: broadcast throughput per server core (${date})\n\n` +
  `- command: \`WORKER_COUNTS=${COUNTS.join(',')} SUBSCRIBERS=${SUBSCRIBERS} DURATION=${DURATION} npm run bench:workers\`\n` +
  `- ${SUBSCRIBERS} SSE subscribers on one channel, closed-loop publisher (one in flight), ${DURATION} s; Node ${process.version}; ` +
  `${os.availableParallelism()} cores shared by the server, the load generator and the publisher\n\n` +
  '| workers | deliveries/s | p99 ms | server CPU (cores) | machine busy (cores) | deliveries per server core-second |\n|--:|--:|--:|--:|--:|--:|\n' +
  rows.map((r) => `| ${r.workers} | ${fmt(r.deliveries)} | ${r.p99} | ${r.serverCpu.toFixed(2)} | ${r.machine.toFixed(2)} | ${fmt(r.deliveries / Math.max(0.01, r.serverCpu))} |`).join('\n') + '\n' +
  `\n## Publish path\n\nautocannon -c 100 -p 10 for ${PUB_DURATION} s in its own process, POST 512 B to one channel without subscribers; a fresh server per row\n\n` +
  '| workers | publishes/s | p99 ms | failed | server CPU (cores) | publishes per server core-second |\n|--:|--:|--:|--:|--:|--:|\n' +
  pubRows.map((r) => `| ${r.workers} | ${fmt(r.rps)} | ${r.p99} | ${r.failed} | ${r.serverCpu.toFixed(2)} | ${fmt(r.rps / Math.max(0.01, r.serverCpu))} |`).join('\n') + '\n'
process.stdout.write(text)
writeFileSync(reportFile('workers-scaling'), text)
