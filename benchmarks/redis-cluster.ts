// Publish throughput and latency against one standalone Redis vs a Redis Cluster of 3 masters
// (+ 3 replicas), side by side in one run, and what each Redis did: publish scripts per master and
// Redis CPU per publish (INFO commandstats usec_per_call), the input of docs/redis.md's capacity
// model. Two Parkline nodes (`serve --workers 1`) per store; autocannon publishes to both at once,
// 64-byte bodies spread over CHANNELS channels, no subscribers (the publish path only).
//
// A third row repeats the cluster with `redisReplicaAck 1` (a WAIT per publish).
//
//   npm run bench:redis-cluster            DURATION=10 (s per row) CONNECTIONS=16 (per node) CHANNELS=1000
//
// Loopback only; every process it starts is killed by PID at the end. Results: stdout and
// benchmarks/results/redis-cluster-<date>.md (or BENCH_OUT).
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { redisCall, startCluster } from '../test/helpers/redis-cluster.ts'
import { freePort } from './suite/servers.ts'
import { autocannon } from './suite/autocannon.ts'
import { reportFile } from './suite/out.ts'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const DURATION = Number(process.env.DURATION ?? 10)
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 16)
const CHANNELS = Number(process.env.CHANNELS ?? 1000)


const teardowns: Array<() => unknown> = []
/** The test helper's topologies register their teardown here (they only call `teardown`). */
const scope = { teardown (fn: () => unknown) { teardowns.push(fn) } } as unknown as Parameters<typeof startCluster>[0]

async function startParkline (store: string[]): Promise<{ port: number, proc: ChildProcess }> {
  const port = await freePort()
  const proc = spawn(process.execPath, ['bin/parkline.ts', 'serve', '--workers', '1', '--port', String(port), '--host', '127.0.0.1', '--log-level', 'error', ...store], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] })
  teardowns.push(async () => { if (proc.exitCode === null && proc.signalCode === null) { proc.kill('SIGKILL'); await once(proc, 'exit') } })
  for (let i = 0; i < 200; i++) {
    try { if ((await fetch(`http://127.0.0.1:${port}/health`)).status === 200) return { port, proc } } catch {}
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error('parkline did not start')
}

async function startStandalone (): Promise<{ port: number, pid: number }> {
  const port = await freePort()
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
  teardowns.push(async () => { if (proc.exitCode === null && proc.signalCode === null) { proc.kill('SIGKILL'); await once(proc, 'exit') } })
  for (let i = 0; i < 200; i++) {
    if (await redisCall(port, ['PING']) === 'PONG') return { port, pid: proc.pid! }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error('redis-server did not start')
}

/** Publish scripts run and Redis CPU µs per script, from INFO commandstats. */
async function scripts (port: number): Promise<{ calls: number, usecPerCall: number }> {
  const text = String(await redisCall(port, ['INFO', 'commandstats']))
  let calls = 0
  let usec = 0
  for (const name of ['evalsha', 'eval']) {
    const m = new RegExp(`cmdstat_${name}:calls=(\\d+),usec=(\\d+)`).exec(text)
    if (m !== null) { calls += Number(m[1]); usec += Number(m[2]) }
  }
  return { calls, usecPerCall: calls === 0 ? 0 : usec / calls }
}

interface Row { store: string, rps: number, p50: number, p99: number, bad: number, perMaster: Array<{ calls: number, usecPerCall: number }>, nodeCpu: number, redisCpu: number }

/** CPU seconds (user + system) a process has used, from /proc (Linux). */
function cpu (pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').slice(readFileSync(`/proc/${pid}/stat`, 'utf8').lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) / 100
}

async function run (store: string, flags: string[], masters: number[], redisPids: number[]): Promise<Row> {
  const nodes = [await startParkline(flags), await startParkline(flags)]
  // warm: every node has loaded the scripts on every master
  for (let i = 0; i < 200; i++) await fetch(`http://127.0.0.1:${nodes[i % 2]!.port}/pub/warm-${i}`, { method: 'POST', body: 'w' })
  for (const m of masters) await redisCall(m, ['CONFIG', 'RESETSTAT'])
  const nodeCpu0 = nodes.reduce((a, n) => a + cpu(n.proc.pid!), 0)
  const redisCpu0 = redisPids.reduce((a, p) => a + cpu(p), 0)
  const body = Buffer.alloc(64, 120)
  const results = await Promise.all(nodes.map(async (n, k) => {
    let i = k
    return await autocannon({
      url: `http://127.0.0.1:${n.port}`,
      connections: CONNECTIONS,
      duration: DURATION,
      requests: [{ method: 'POST', body, setupRequest: (req: Record<string, unknown>) => ({ ...req, path: `/pub/bench-${(i++) % CHANNELS}` }) }]
    })
  }))
  const nodeCpu = nodes.reduce((a, n) => a + cpu(n.proc.pid!), 0) - nodeCpu0
  const redisCpu = redisPids.reduce((a, p) => a + cpu(p), 0) - redisCpu0
  const perMaster = await Promise.all(masters.map(scripts))
  for (const n of nodes) { n.proc.kill('SIGKILL'); await once(n.proc, 'exit') }
  return {
    store,
    rps: results.reduce((a, r) => a + r['2xx'] / r.duration, 0),
    p50: Math.max(...results.map((r) => r.latency.p50)),
    p99: Math.max(...results.map((r) => r.latency.p99)),
    bad: results.reduce((a, r) => a + r.non2xx + r.errors, 0),
    perMaster,
    nodeCpu,
    redisCpu
  }
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US')

try {
  const standalone = await startStandalone()
  const cluster = await startCluster(scope)
  const masters = (await cluster.masters()).map((m) => m.port)
  const rows = [
    await run('standalone Redis', ['--redis-url', `redis://127.0.0.1:${standalone.port}`], [standalone.port], [standalone.pid]),
    await run('Redis Cluster, 3 masters', ['--redis-cluster', cluster.seeds.join(',')], masters, cluster.nodes.map((n) => n.pid)),
    // the price of losing no acknowledged message in a failover: one WAIT per publish
    await run('Redis Cluster, 3 masters, redisReplicaAck 1', ['--redis-cluster', cluster.seeds.join(','), '--redis-replica-ack', '1'], masters, cluster.nodes.map((n) => n.pid))
  ]
  const head = '| store | publishes/s (2 nodes) | p50 ms | p99 ms | non-2xx | scripts per master | Redis µs per publish script (commandstats) | Redis processes CPU µs per publish | Parkline nodes CPU µs per publish |\n|---|--:|--:|--:|--:|---|--:|--:|--:|\n'
  const lines = rows.map((r) => {
    const total = r.rps * DURATION
    return `| ${r.store} | ${fmt(r.rps)} | ${r.p50} | ${r.p99} | ${r.bad} | ${r.perMaster.map((m) => fmt(m.calls)).join(' / ')} | ` +
      `${(r.perMaster.reduce((a, m) => a + m.usecPerCall * m.calls, 0) / Math.max(1, r.perMaster.reduce((a, m) => a + m.calls, 0))).toFixed(1)} | ` +
      `${(r.redisCpu * 1e6 / total).toFixed(1)} | ${(r.nodeCpu * 1e6 / total).toFixed(1)} |`
  }).join('\n')
  const ratio = `\nRatio cluster / standalone: publishes/s ${(rows[1]!.rps / rows[0]!.rps).toFixed(2)}, p99 ${(rows[1]!.p99 / Math.max(1, rows[0]!.p99)).toFixed(2)}×. ` +
    `redisReplicaAck 1 / 0 on the cluster: publishes/s ${(rows[2]!.rps / rows[1]!.rps).toFixed(2)}, p99 ${(rows[2]!.p99 / Math.max(1, rows[1]!.p99)).toFixed(2)}×.\n`
  const date = new Date().toISOString().slice(0, 10)
  const text = `# Publishing through a Redis Cluster vs one Redis (${date})\n\n` +
    `- command: \`DURATION=${DURATION} CONNECTIONS=${CONNECTIONS} CHANNELS=${CHANNELS} npm run bench:redis-cluster\`\n` +
    `- 2 Parkline nodes (\`serve --workers 1\`) per store; autocannon, ${CONNECTIONS} connections per node, 64-byte POSTs over ${CHANNELS} channels, no subscribers; ${DURATION} s per row\n` +
    `- Node ${process.version}; ${os.cpus().length} cores; load generator, nodes and every Redis on this one host\n\n` +
    head + lines + '\n' + ratio
  process.stdout.write(text)
  writeFileSync(reportFile('redis-cluster'), text)
} finally {
  for (const fn of teardowns.reverse()) await fn()
}
