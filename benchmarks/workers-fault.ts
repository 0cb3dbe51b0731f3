// A worker killed under load (`parkline serve --workers 2`): SUBSCRIBERS SSE subscribers, one per
// channel, a closed-loop publisher (16 connections) over all channels for DURATION s, and worker
// 0 killed with SIGKILL 3 s in. Afterwards every subscriber that stayed connected (those on the
// other worker) is checked against every publish of its channel answered 201: none may be missing.
// Reported: the publish answers by status (503 or a reset is what raced the death), how many
// subscribers stayed and how many messages they miss, and the node's /status totals.
//
//   npm run bench:workers-fault      knobs: SUBSCRIBERS (1500), DURATION (10)
//
// Results: stdout and benchmarks/results/workers-fault-<date>.md (or BENCH_OUT).
import { spawn, execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Pool } from 'undici'
import { SseClient, eventually, freePort } from '../test/helpers/server.ts'
import { reportFile } from './suite/out.ts'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const N = Number(process.env.SUBSCRIBERS ?? 1500)
const DURATION = Number(process.env.DURATION ?? 10)
const KILL_AT_S = 3

const port = await freePort()
const server = spawn(process.execPath, ['bin/parkline.ts', 'serve', '--workers', '2', '--port', String(port), '--host', '127.0.0.1', '--log-level', 'warn', '--drain-window', '0'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] })
const base = `http://127.0.0.1:${port}`
const workerPid = (id: number): number => {
  const pids = execFileSync('ps', ['--ppid', String(server.pid), '-o', 'pid='], { encoding: 'utf8' }).trim().split(/\s+/).map(Number)
  return pids.find((p) => readFileSync(`/proc/${p}/environ`, 'latin1').split('\0').includes(`PARKLINE_WORKER_ID=${id}`))!
}
const subs: SseClient[] = []
const pool = new Pool(base, { connections: 16 })
try {
  if (!await eventually(async () => { try { return (await fetch(`${base}/health`)).ok } catch { return false } }, 20000)) throw new Error('server did not start')
  // both workers up
  await new Promise((resolve) => setTimeout(resolve, 1000))
  for (let i = 0; i < N; i++) subs.push(await SseClient.connect(port, `/sub/c${i}`))
  const statuses: Record<string, number> = {}
  const answered201 = new Map<number, string[]>()
  let seq = 0
  const start = Date.now()
  const deadline = start + DURATION * 1000
  let killed = 0
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (Date.now() < deadline) {
      const i = seq % N
      const body = `m${seq++}`
      try {
        const r = await pool.request({ path: `/pub/c${i}`, method: 'POST', body })
        await r.body.text()
        statuses[r.statusCode] = (statuses[r.statusCode] ?? 0) + 1
        if (r.statusCode === 201) {
          const l = answered201.get(i)
          if (l === undefined) answered201.set(i, [body])
          else l.push(body)
        }
      } catch {
        statuses.reset = (statuses.reset ?? 0) + 1
      }
      if (killed === 0 && Date.now() - start > KILL_AT_S * 1000) {
        killed = workerPid(0)
        process.kill(killed, 'SIGKILL')
      }
    }
  }))
  await new Promise((resolve) => setTimeout(resolve, 2000))
  let stayed = 0
  let missing = 0
  let checked = 0
  for (let i = 0; i < N; i++) {
    const s = subs[i]!
    if (s.closed) continue
    stayed++
    const got = new Set(s.events.map((e) => e.data))
    for (const b of answered201.get(i) ?? []) {
      checked++
      if (!got.has(b)) missing++
    }
  }
  const status = await (await fetch(`${base}/status`)).text()
  const line = (name: string): string => new RegExp(`^${name}: (\\d+)$`, 'm').exec(status)?.[1] ?? '?'
  const date = new Date().toISOString().slice(0, 10)
  const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim()
  const text = `# A worker killed under load (${date})\n\n` +
    `- command: \`SUBSCRIBERS=${N} DURATION=${DURATION} npm run bench:workers-fault\`; commit ${commit}; Node ${process.version}\n` +
    `- \`parkline serve --workers 2\`; ${N} SSE subscribers, one per channel; closed-loop publisher, 16 connections, round-robin over the channels, ${DURATION} s; worker 0 (pid ${killed}) killed with SIGKILL at ${KILL_AT_S} s\n\n` +
    '| measure | value |\n|---|--:|\n' +
    Object.entries(statuses).sort().map(([k, v]) => `| publish answers ${k} | ${v.toLocaleString('en-US')} |`).join('\n') + '\n' +
    `| subscribers still connected (on worker 1) | ${stayed} of ${N} |\n` +
    `| 201-answered messages of their channels checked | ${checked.toLocaleString('en-US')} |\n` +
    `| of them missing at a connected subscriber | ${missing} |\n` +
    `| /status after: channels, stored messages, subscribers | ${line('channels')}, ${line('stored messages')}, ${line('subscribers')} |\n`
  process.stdout.write(text)
  writeFileSync(reportFile('workers-fault'), text)
  if (missing > 0) process.exitCode = 1
} finally {
  for (const s of subs) s.close()
  await pool.close()
  server.kill('SIGTERM')
}
