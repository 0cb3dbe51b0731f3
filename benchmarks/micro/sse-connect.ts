// What an EventSource subscriber costs the server to take on, for comparing two trees of
// Parkline on a noisy shared machine: a standalone server (one process) gets N fresh connections,
// each an SSE request on a channel of its own, at most 256 connecting at once; each counts once
// the stream's head came back. Reported per subscriber: the server's CPU (utime+stime,
// /proc/<pid>/stat), and with HEAP=1 the JS heap the N subscribers hold (objects new between a
// heap snapshot before them and one after, benchmarks/micro/heap-diff.ts). CPU per connect moves
// far less with the neighbours' load than connects per second do. Trees alternate round by
// round; a fresh server per run, warmed by N/5 subscribers that come and go first. EXTRA=<env>
// (e.g. PARKLINE_NO_FAST_PATH=1) runs each tree a second time with that variable set.
// TRANSPORT=chunked, multipart or websocket asks for that transport instead of EventSource.
// FLOOR=1 (EventSource only) adds the floor of the first tree (benchmarks/suite/floor-server.ts: a
// bare node:net server that answers the head and `: hi`, nothing else): what a connect costs a
// Node process that does nothing but the socket's work.
//
//   ROOTS=/path/to/base,/path/to/new ROUNDS=5 N=10000 [TRANSPORT=eventsource|chunked|multipart|websocket] [FLOOR=1] node benchmarks/micro/sse-connect.ts
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { cpuSeconds } from '../suite/proc.ts'
import { newObjects, snapshot, table } from './heap-diff.ts'
import { startFloor, startTree, treeRoots } from './tree-server.ts'

const env = process.env
const ROOTS = treeRoots()
const ROUNDS = Number(env.ROUNDS ?? 5)
const N = Number(env.N ?? 10000)
const HEAP = env.HEAP === '1'
const EXTRA = env.EXTRA ?? ''
const IN_FLIGHT = 256
const ASK: Record<string, string> = {
  eventsource: 'Accept: text/event-stream\r\n',
  chunked: 'TE: chunked\r\n',
  multipart: 'Accept: multipart/mixed\r\n',
  websocket: 'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'
}
const TRANSPORT = env.TRANSPORT ?? 'eventsource'
if (ASK[TRANSPORT] === undefined) throw new Error(`TRANSPORT must be one of ${Object.keys(ASK).join(', ')}, got ${TRANSPORT}`)
const FLOOR = env.FLOOR === '1'
if (FLOOR && (TRANSPORT !== 'eventsource' || HEAP)) throw new Error('FLOOR=1 measures EventSource connects only, without HEAP')
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

async function start (root: string, extra: Record<string, string>, dir: string): Promise<{ child: ChildProcess, port: number }> {
  // --v8-pool-size given: the server does not restart itself (lib/gc-threads-start.ts), so a signal reaches it
  const nodeFlags = HEAP ? ['--v8-pool-size=1', '--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${dir}`] : []
  return await startTree(root, { nodeFlags, env: { ...env, ...extra }, stdio: ['ignore', 'ignore', 'inherit'] })
}

/** `count` stream subscribers (TRANSPORT) on channels `<prefix><i>`, each resolved once its head came back. */
async function subscribe (port: number, prefix: string, count: number): Promise<net.Socket[]> {
  const sockets: net.Socket[] = []
  const one = (i: number): Promise<void> => new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1')
    sockets.push(s)
    s.on('error', reject)
    s.once('data', (d: Buffer) => {
      if (!/^HTTP\/1\.1 (200|101) /.test(d.toString('latin1', 0, 13))) reject(new Error(`not a stream: ${d.toString('latin1', 0, 40)}`))
      else resolve()
    })
    s.write(`GET /sub/${prefix}${i} HTTP/1.1\r\nHost: 127.0.0.1\r\n${ASK[TRANSPORT]}\r\n`)
  })
  for (let i = 0; i < count; i += IN_FLIGHT) await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, count - i) }, (_, k) => one(i + k)))
  return sockets
}

const runs: Array<{ label: string, root: string, extra: Record<string, string>, floor?: boolean }> = []
for (const root of ROOTS) {
  runs.push({ label: root, root, extra: {} })
  if (EXTRA !== '') {
    const [k, v] = EXTRA.split('=')
    runs.push({ label: `${root} ${EXTRA}`, root, extra: { [k!]: v ?? '' } })
  }
}
if (FLOOR) runs.push({ label: `floor (${ROOTS[0]!})`, root: ROOTS[0]!, extra: {}, floor: true })
const cpu = new Map<string, number[]>(runs.map((r) => [r.label, []]))
const rate = new Map<string, number[]>(runs.map((r) => [r.label, []]))
const heaps: string[] = []
for (let round = 0; round < ROUNDS; round++) {
  for (const run of runs) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'parkline-sse-connect-'))
    const { child, port } = run.floor === true ? await startFloor(run.root) : await start(run.root, run.extra, dir)
    let held: net.Socket[] = []
    try {
      for (const s of await subscribe(port, 'warm', Math.floor(N / 5))) s.destroy()
      await sleep(1000)
      const first = HEAP ? await snapshot(child, dir, 'before') : ''
      const before = cpuSeconds(child.pid!)!
      const t0 = performance.now()
      held = await subscribe(port, 'c', N)
      const seconds = (performance.now() - t0) / 1000
      const used = cpuSeconds(child.pid!)! - before
      cpu.get(run.label)!.push(used / N * 1e6)
      rate.get(run.label)!.push(N / seconds)
      process.stderr.write(`round ${round + 1} ${run.label}: ${(used / N * 1e6).toFixed(1)} µs CPU per subscriber, ${Math.round(N / seconds)} connected/s\n`)
      if (HEAP && round === 0) {
        await sleep(1000)
        const objects = newObjects(first, await snapshot(child, dir, 'after'))
        heaps.push(`### ${run.label}\n\nJS heap new since the first snapshot and still reachable, per subscriber: ${(objects.total / N).toFixed(0)} B\n\n${table(objects, N, 'subscriber', 12)}`)
      }
    } finally {
      for (const s of held) s.destroy()
      child.kill('SIGKILL')
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]! }
console.log(`N=${N} ${TRANSPORT} subscribers per run, ${ROUNDS} rounds`)
console.log('')
console.log('| tree | µs of server CPU per subscriber, each round | median | connected/s, median |')
console.log('|---|---|--:|--:|')
for (const run of runs) {
  const xs = cpu.get(run.label)!
  console.log(`| ${run.label} | ${xs.map((x) => x.toFixed(1)).join(' / ')} | ${median(xs).toFixed(1)} | ${Math.round(median(rate.get(run.label)!))} |`)
}
for (const h of heaps) console.log('\n' + h)
