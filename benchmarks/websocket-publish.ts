// Publishing over a WebSocket (docs/api.md 5.2) against publishing with HTTP POSTs, Parkline beside
// Nchan, the same client for both: CONNECTIONS publisher connections, each keeping WINDOW messages
// of SIZE bytes unanswered (it sends its next message as each one is answered), against
// CONNECTIONS × WINDOW POSTs in flight, one per keep-alive connection, for
// DURATION seconds, on one channel with no subscriber. Reported per server and way: publishes answered per
// second, and the server's CPU (utime + stime of all its processes, /proc) per publish.
//
//   node benchmarks/websocket-publish.ts
//   SERVERS=parkline,nchan CONNECTIONS=4 WINDOW=8 SIZE=512 DURATION=10 ROUNDS=3 BENCH_OUT=file.md
//
// Parkline runs as one process (the default topology on a 2-core host, docs/configuration.md
// `workers`); Nchan as the suite runs it (2 nginx workers). The client is this process.
import os from 'node:os'
import path from 'node:path'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Pool } from 'undici'
import WebSocket from 'ws'
import { killAllStarted, nginxVersion, startServer, type ServerHandle } from './suite/servers.ts'
import { cpuSeconds } from './suite/proc.ts'

const env = process.env
const SERVERS = (env.SERVERS ?? 'parkline,nchan').split(',')
const CONNECTIONS = Number(env.CONNECTIONS ?? 4)
const WINDOW = Number(env.WINDOW ?? 8)
const SIZE = Number(env.SIZE ?? 512)
const SECONDS = Number(env.DURATION ?? 10)
const ROUNDS = Number(env.ROUNDS ?? 3)
const BODY = Buffer.alloc(SIZE, 'x')
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

interface Result { publishes: number, perSecond: number, cpuUsPerPublish: number }

function serverCpu (h: ServerHandle): number {
  let s = 0
  for (const p of h.procs()) s += cpuSeconds(p.pid) ?? 0
  return s
}

/** WebSocket publishers: each sends WINDOW messages, then one more per answer, until the time is up. */
async function overWebSocket (port: number, channel: string): Promise<number> {
  const sockets = await Promise.all(Array.from({ length: CONNECTIONS }, async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/pub/${channel}`)
    await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject) })
    return ws
  }))
  let answered = 0
  let open = true
  const done = sockets.map(async (ws) => {
    let outstanding = 0
    await new Promise<void>((resolve) => {
      ws.on('message', () => {
        answered++
        outstanding--
        if (open) { ws.send(BODY); outstanding++ } else if (outstanding === 0) resolve()
      })
      ws.once('close', () => resolve())
      for (let i = 0; i < WINDOW; i++) { ws.send(BODY); outstanding++ }
    })
    ws.close()
  })
  await new Promise((resolve) => setTimeout(resolve, SECONDS * 1000))
  const at = answered
  open = false
  await Promise.race([Promise.all(done), new Promise((resolve) => setTimeout(resolve, 5000))])
  for (const ws of sockets) ws.terminate()
  return at
}

/** HTTP publishers: CONNECTIONS × WINDOW POSTs in flight on as many keep-alive connections. */
async function overHttp (port: number, channel: string): Promise<number> {
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: CONNECTIONS * WINDOW, pipelining: 1 })
  let answered = 0
  let open = true
  const loop = async (): Promise<void> => {
    while (open) {
      const r = await pool.request({ method: 'POST', path: `/pub/${channel}`, body: BODY })
      await r.body.dump()
      if (r.statusCode !== 201 && r.statusCode !== 202) throw new Error(`publish answered ${r.statusCode}`)
      answered++
    }
  }
  const loops = Array.from({ length: CONNECTIONS * WINDOW }, loop)
  await new Promise((resolve) => setTimeout(resolve, SECONDS * 1000))
  const at = answered
  open = false
  await Promise.all(loops)
  await pool.close()
  return at
}

async function measure (h: ServerHandle, way: 'websocket' | 'http', round: number): Promise<Result> {
  const channel = `wspb-${way}-${round}`
  const cpu0 = serverCpu(h)
  const n = way === 'websocket' ? await overWebSocket(h.port, channel) : await overHttp(h.port, channel)
  const cpu = serverCpu(h) - cpu0
  return { publishes: n, perSecond: n / SECONDS, cpuUsPerPublish: cpu * 1e6 / n }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!

const tmp = mkdtempSync(path.join(os.tmpdir(), 'parkline-wspub-'))
const rows: Record<string, Record<string, Result[]>> = {}
try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const name of SERVERS) {
      const h = await startServer(name === 'parkline' ? 'parkline1' : name, { workers: 1, tmp })
      try {
        for (const way of ['websocket', 'http'] as const) {
          const r = await measure(h, way, round)
          ;((rows[name] ??= {})[way] ??= []).push(r)
          process.stderr.write(`round ${round + 1}: ${name} ${way}: ${Math.round(r.perSecond)} publishes/s, ${r.cpuUsPerPublish.toFixed(1)} µs server CPU each\n`)
        }
      } finally {
        await h.stop()
      }
    }
  }
} finally {
  killAllStarted()
  rmSync(tmp, { recursive: true, force: true })
}

const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT }).toString().trim()
const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: ROOT }).toString().trim() === '' ? '' : ' (with uncommitted changes)'
let out = `# Publishing over a WebSocket and with POSTs, Parkline beside Nchan (${new Date().toISOString().slice(0, 10)})\n\n` +
  `- command: \`SERVERS=${SERVERS.join(',')} CONNECTIONS=${CONNECTIONS} WINDOW=${WINDOW} SIZE=${SIZE} DURATION=${SECONDS} ROUNDS=${ROUNDS} node benchmarks/websocket-publish.ts\`\n` +
  `- commit: ${commit}${dirty}; Node ${process.version}; ${nginxVersion()}; the client (ws, undici) in one process\n` +
  `- machine: ${os.availableParallelism()} cores (${os.cpus()[0]?.model.trim() ?? 'cpu'}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB; server and client share the cores\n` +
  `- ${CONNECTIONS} publisher connections × ${WINDOW} messages in flight (WebSocket), or ${CONNECTIONS * WINDOW} POSTs in flight on as many connections; ${SIZE}-byte messages on one channel without subscribers; ${SECONDS} s per measure, a fresh server per round; median of ${ROUNDS} rounds\n\n`
out += '| server | way | publishes/s | server CPU per publish (µs) |\n|---|---|--:|--:|\n'
for (const name of SERVERS) {
  for (const way of ['websocket', 'http']) {
    const rs = rows[name]?.[way] ?? []
    out += `| ${name} | ${way} | ${Math.round(median(rs.map((r) => r.perSecond)))} | ${median(rs.map((r) => r.cpuUsPerPublish)).toFixed(1)} |\n`
  }
}
if (SERVERS.includes('parkline') && SERVERS.includes('nchan')) {
  out += '\n| way | Parkline / Nchan publishes/s |\n|---|--:|\n'
  for (const way of ['websocket', 'http']) {
    const p = median((rows.parkline?.[way] ?? []).map((r) => r.perSecond))
    const n = median((rows.nchan?.[way] ?? []).map((r) => r.perSecond))
    out += `| ${way} | ${(p / n).toFixed(2)}× |\n`
  }
}
process.stdout.write(out)
if (env.BENCH_OUT !== undefined && env.BENCH_OUT !== '-') writeFileSync(env.BENCH_OUT, out)
