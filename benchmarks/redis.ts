// Redis engine vs in-memory: deliveries/s and publish-to-delivery latency (p50/p99/max) for
//   broadcast   SUBS SSE subscribers on one channel
//   one-to-one  SUBS SSE subscribers, each on a channel of its own, publishes spread over them
// with 1 node in memory, then 2 nodes sharing a redis-server (subscribers and publishes split
// round-robin over the nodes). Servers are separate processes; this process is the load
// generator (subscribers + a closed-loop publisher with K requests in flight). Loopback only;
// every process it starts is killed by PID at the end.
//
//   node benchmarks/redis.ts            (env: SUBS=2000 D=10 K=4 SIZE=64 MODES=broadcast,one-to-one)
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import net from 'node:net'
import { performance } from 'node:perf_hooks'
import { Agent, request } from 'undici'
import { freePort } from './suite/servers.ts'

const SUBS = Number(process.env.SUBS ?? 2000)
const D = Number(process.env.D ?? 10)
const K = Number(process.env.K ?? 4)
const SIZE = Number(process.env.SIZE ?? 64)
const MODES = (process.env.MODES ?? 'broadcast,one-to-one').split(',')
const children: ChildProcess[] = []


async function until (pred: () => Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await pred().catch(() => false))) {
    if (Date.now() > deadline) throw new Error('timed out')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

function kill (c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve()
  process.kill(c.pid!, 'SIGKILL')
  return once(c, 'exit').then(() => {})
}

async function startRedis (): Promise<{ port: number, proc: ChildProcess }> {
  if (spawnSync('redis-server', ['--version']).status !== 0) throw new Error('redis-server not installed (apt-get install -y redis-server)')
  const port = await freePort()
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
  children.push(proc)
  await until(() => new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true) })
    s.on('error', () => resolve(false))
  }), 10000)
  return { port, proc }
}

async function startNode (redisUrl: string): Promise<{ port: number, proc: ChildProcess }> {
  const port = await freePort()
  const args = ['bin/parkline.ts', 'serve', '--workers', '1', '--port', String(port), '--host', '127.0.0.1', '--log-level', 'error', '--drain-window', '0', '--keepalive', '0']
  if (redisUrl !== '') args.push('--redis-url', redisUrl)
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'] })
  children.push(proc)
  await until(async () => (await fetch(`http://127.0.0.1:${port}/health`)).status === 200, 20000)
  return { port, proc }
}

/** Latency histogram: 0.1 ms bins up to 10 s. */
class Histogram {
  readonly bins = new Uint32Array(100001)
  n = 0
  max = 0
  add (ms: number): void {
    this.bins[Math.min(100000, Math.max(0, Math.round(ms * 10)))]!++
    this.n++
    if (ms > this.max) this.max = ms
  }

  pct (p: number): number {
    const target = Math.ceil(this.n * p)
    let seen = 0
    for (let i = 0; i < this.bins.length; i++) {
      seen += this.bins[i]!
      if (seen >= target) return i / 10
    }
    return this.max
  }
}

interface Run { delivered: number, published: number, failed: number, hist: Histogram, ready: number }

async function connectSubs (ports: number[], channels: (i: number) => string, hist: Histogram, counter: { n: number }): Promise<{ sockets: net.Socket[], ready: number }> {
  const sockets: net.Socket[] = []
  const t0 = performance.now()
  let heads = 0
  const batch = 200
  for (let i = 0; i < SUBS; i += batch) {
    const wave: Array<Promise<void>> = []
    for (let j = i; j < Math.min(SUBS, i + batch); j++) {
      wave.push(new Promise((resolve, reject) => {
        const s = net.connect(ports[j % ports.length]!, '127.0.0.1')
        sockets.push(s)
        let buf = ''
        let head = false
        s.setEncoding('latin1')
        s.on('error', reject)
        s.on('connect', () => s.write(`GET /sub/${channels(j)} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`))
        s.on('data', (d: string) => {
          buf += d
          if (!head) {
            const e = buf.indexOf('\r\n\r\n')
            if (e === -1) return
            head = true
            heads++
            buf = buf.slice(e + 4)
            resolve()
          }
          const now = performance.now()
          let nl: number
          while ((nl = buf.indexOf('\n')) !== -1) {
            const line = buf.slice(0, nl)
            buf = buf.slice(nl + 1)
            if (line.startsWith('data: ')) {
              hist.add(now - Number.parseFloat(line.slice(6)))
              counter.n++
            }
          }
        })
      }))
    }
    await Promise.all(wave)
  }
  if (heads !== SUBS) throw new Error('not every subscriber connected')
  return { sockets, ready: performance.now() - t0 }
}

async function run (mode: string, ports: number[]): Promise<Run> {
  const hist = new Histogram()
  const counter = { n: 0 }
  const chan = mode === 'broadcast' ? () => 'b' : (i: number) => 'o' + i
  const { sockets, ready } = await connectSubs(ports, chan, hist, counter)
  const agent = new Agent({ connections: K, pipelining: 1 })
  const pad = 'x'.repeat(Math.max(0, SIZE - 20))
  let published = 0
  let failed = 0
  let seq = 0
  const end = performance.now() + D * 1000
  const lane = async (lane: number): Promise<void> => {
    while (performance.now() < end) {
      const i = seq++
      const port = ports[(lane + i) % ports.length]!
      const body = performance.now().toFixed(3) + ' ' + pad
      try {
        const r = await request(`http://127.0.0.1:${port}/pub/${chan(i % SUBS)}`, { method: 'POST', body, dispatcher: agent })
        await r.body.dump()
        if (r.statusCode === 201 || r.statusCode === 202) published++
        else failed++
      } catch { failed++ }
    }
  }
  await Promise.all(Array.from({ length: K }, (_, l) => lane(l)))
  // let in-flight deliveries land
  const expected = mode === 'broadcast' ? published * SUBS : published
  const drainEnd = Date.now() + 5000
  while (counter.n < expected && Date.now() < drainEnd) await new Promise((resolve) => setTimeout(resolve, 50))
  for (const s of sockets) s.destroy()
  await agent.close()
  return { delivered: counter.n, published, failed, hist, ready }
}

async function main (): Promise<void> {
  const rows: string[] = []
  const setups: Array<[string, () => Promise<number[]>]> = [
    ['memory, 1 node', async () => [(await startNode('')).port]],
    ['redis, 2 nodes', async () => {
      const redis = await startRedis()
      const url = `redis://127.0.0.1:${redis.port}`
      const [a, b] = await Promise.all([startNode(url), startNode(url)])
      return [a!.port, b!.port]
    }]
  ]
  for (const mode of MODES) {
    for (const [name, setup] of setups) {
      const started = children.length
      const ports = await setup()
      const r = await run(mode, ports)
      await Promise.all(children.splice(started).map(kill))
      const expected = mode === 'broadcast' ? r.published * SUBS : r.published
      const row = `| ${mode} | ${name} | ${Math.round(r.published / D).toLocaleString('en')} | ${Math.round(r.delivered / D).toLocaleString('en')} | ${r.hist.pct(0.5).toFixed(1)} | ${r.hist.pct(0.99).toFixed(1)} | ${r.hist.max.toFixed(1)} | ${r.delivered.toLocaleString('en')} / ${expected.toLocaleString('en')} | ${r.failed} | ${Math.round(r.ready)} |`
      process.stdout.write(row + '\n')
      rows.push(row)
    }
  }
  process.stdout.write('\n| mode | engine | published/s | deliveries/s | p50 ms | p99 ms | max ms | delivered / expected | failed | subscribers ready ms |\n|---|---|--:|--:|--:|--:|--:|---|--:|--:|\n' + rows.join('\n') + '\n')
}

main().catch(async (err: unknown) => {
  process.stderr.write(String(err instanceof Error ? err.stack : err) + '\n')
  process.exitCode = 1
}).finally(async () => {
  await Promise.all(children.map(kill))
})
