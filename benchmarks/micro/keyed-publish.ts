// Server CPU per publish with and without an Idempotency-Key, with worker processes whose
// subscribers make each worker hold a replica of the channel: what carrying the keys to the
// replicas costs (each replica records the key of every message that has one). Trees alternate
// round by round; a fresh `parkline serve --workers 2` per run; CPU is the primary's and the
// workers' utime+stime over the publishes (/proc); the first REQUESTS/5 publishes warm it up.
//
//   ROOTS=/path/to/base,/path/to/new ROUNDS=3 REQUESTS=100000 node benchmarks/micro/keyed-publish.ts
import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import net from 'node:net'
import { childrenOf, cpuSeconds } from '../suite/proc.ts'
import { autocannon, startTree, treeRoots, type AutocannonResult } from './tree-server.ts'


const env = process.env
const ROOTS = treeRoots()
const ROUNDS = Number(env.ROUNDS ?? 3)
const REQUESTS = Number(env.REQUESTS ?? 100000)
const SUBSCRIBERS = Number(env.SUBSCRIBERS ?? 8)
const BODY = Buffer.alloc(512, 120)

async function start (root: string): Promise<{ child: ChildProcess, port: number }> {
  const started = await startTree(root, { workers: 2 })
  // both workers serving, or the subscribers would all land on the first one up
  for (let i = 0; i < 200; i++) {
    try {
      if (childrenOf(started.child.pid!).length === 2 && (await fetch(`http://127.0.0.1:${started.port}/health`)).status === 200) return started
    } catch {}
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  started.child.kill('SIGKILL')
  throw new Error(`no workers from ${root}`)
}

/** SSE subscribers of `kp` that read and drop what they get, spread over the workers by the kernel. */
async function subscribe (port: number): Promise<net.Socket[]> {
  const socks: net.Socket[] = []
  for (let i = 0; i < SUBSCRIBERS; i++) {
    const s = net.connect(port, '127.0.0.1')
    s.on('error', () => {})
    s.on('data', () => {})
    await once(s, 'connect')
    s.write('GET /sub/kp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n')
    socks.push(s)
  }
  for (let i = 0; i < 100; i++) {
    const r = await fetch(`http://127.0.0.1:${port}/pub/kp`, { headers: { Accept: 'text/json' } })
    if (r.status === 200 && (await r.json() as { subscribers: number }).subscribers === SUBSCRIBERS) return socks
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error('subscribers not counted')
}

let next = 0
function load (port: number, amount: number, keyed: boolean): Promise<AutocannonResult> {
  const request: Record<string, unknown> = { method: 'POST', path: '/pub/kp', body: BODY }
  if (keyed) request.setupRequest = (req: { headers?: Record<string, string> }) => ({ ...req, headers: { ...req.headers, 'idempotency-key': `k${next++}` } })
  return autocannon({ url: `http://127.0.0.1:${port}`, requests: [request], connections: 20, pipelining: 1, amount })
}

const serverCpu = (pid: number): number => [pid, ...childrenOf(pid)].reduce((sum, p) => sum + (cpuSeconds(p) ?? 0), 0)

const results = new Map<string, number[]>()
for (let round = 0; round < ROUNDS; round++) {
  for (const root of ROOTS) {
    for (const keyed of [false, true]) {
      const { child, port } = await start(root)
      const socks = await subscribe(port)
      try {
        await load(port, Math.floor(REQUESTS / 5), keyed)
        const before = serverCpu(child.pid!)
        const r = await load(port, REQUESTS, keyed)
        const used = serverCpu(child.pid!) - before
        if (r.non2xx > 0 || r.errors > 0) throw new Error(`${root}: ${r.non2xx} non-2xx, ${r.errors} errors`)
        const us = used / r.requests.total * 1e6
        const name = `${root} ${keyed ? 'with' : 'without'} keys`
        results.set(name, [...(results.get(name) ?? []), us])
        process.stderr.write(`round ${round + 1} ${name}: ${r.requests.total} publishes, ${us.toFixed(1)} µs CPU each (all processes), ${Math.round(r.requests.average)} req/s\n`)
      } finally {
        for (const s of socks) s.destroy()
        child.kill('SIGKILL')
        await once(child, 'exit')
      }
    }
  }
}
const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]! }
console.log(`| tree, publishes | µs of server CPU per publish (primary and 2 workers, ${SUBSCRIBERS} SSE subscribers), each round | median |`)
console.log('|---|---|--:|')
for (const [name, xs] of results) console.log(`| ${name} | ${xs.map((x) => x.toFixed(1)).join(' / ')} | ${median(xs).toFixed(1)} |`)
