// A fan-out to subscribers whose clients stopped reading (lib/message.ts writeShared): N loopback
// sockets each hold queued bytes their client has not read; K messages, each a frame of SIZE bytes
// from the shared slab (frameAlloc, as the standalone server builds them), are written to every
// socket in turn, as a broadcast does. Per tree in ROOTS, each in a fresh process, alternating over
// ROUNDS rounds: CPU ns per socket write, and what each queued write keeps after GC (V8 heap +
// ArrayBuffers, and RSS) in bytes.
//
//   ROOTS=/path/to/base,/path/to/new node benchmarks/micro/queued-fanout.ts
//   N=1000 K=200 SIZE=120 ROUNDS=3 (defaults)
import { execFileSync } from 'node:child_process'
import { once } from 'node:events'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const SELF = fileURLToPath(import.meta.url)
const N = Number(process.env.N ?? 1000)
const K = Number(process.env.K ?? 200)
const SIZE = Number(process.env.SIZE ?? 120)
const ROUNDS = Number(process.env.ROUNDS ?? 3)

interface Result { nsPerWrite: number, heapPerWrite: number, rssPerWrite: number }

async function child (root: string): Promise<void> {
  const mod = await import(pathToFileURL(path.join(root, 'lib/message.ts')).href) as {
    writeShared: (s: net.Socket, b: Buffer) => void, frameAlloc: (n: number) => Buffer
  }
  const gc = (globalThis as { gc?: () => void }).gc!
  const accepted: net.Socket[] = []
  const server = net.createServer((s) => { accepted.push(s) })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as net.AddressInfo
  const clients: net.Socket[] = []
  for (let i = 0; i < N; i++) {
    const c = net.connect({ port, host: '127.0.0.1', localAddress: `127.0.${2 + (i >> 12)}.${1 + (i & 4095) % 250}` })
    c.on('error', () => {})
    c.pause()
    clients.push(c)
  }
  await Promise.all(clients.map(async (c) => await once(c, 'connect')))
  while (accepted.length < N) await new Promise((resolve) => setImmediate(resolve))
  // one shared filler, more than a loopback socket's kernel buffers take from a client that does
  // not read: the rest stays queued on every socket (a reference each, not a copy)
  const filler = Buffer.alloc(16 * 1024 * 1024, 0x2e)
  for (const s of accepted) s.write(filler)
  await new Promise((resolve) => setTimeout(resolve, 500))
  const queued = accepted.filter((s) => s.writableLength > 0).length
  if (queued !== N) throw new Error(`only ${queued} of ${N} sockets hold queued bytes`)
  gc()
  const before = process.memoryUsage()
  const cpu0 = process.cpuUsage()
  for (let k = 0; k < K; k++) {
    const frame = mod.frameAlloc(SIZE).fill(0x41 + (k % 26))
    for (const s of accepted) mod.writeShared(s, frame)
  }
  const cpu = process.cpuUsage(cpu0)
  gc()
  const after = process.memoryUsage()
  const writes = N * K
  const result: Result = {
    nsPerWrite: (cpu.user + cpu.system) * 1000 / writes,
    heapPerWrite: (after.heapUsed + after.arrayBuffers - before.heapUsed - before.arrayBuffers) / writes,
    rssPerWrite: (after.rss - before.rss) / writes
  }
  process.stdout.write(JSON.stringify(result) + '\n')
  for (const c of clients) c.destroy()
  for (const s of accepted) s.destroy()
  server.close()
}

if (process.argv[2] === 'child') {
  await child(process.argv[3]!)
} else {
  const roots = (process.env.ROOTS ?? path.resolve(path.dirname(SELF), '../..')).split(',')
  const runs: Result[][] = roots.map(() => [])
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < roots.length; i++) {
      const out = execFileSync(process.execPath, ['--expose-gc', SELF, 'child', roots[i]!], { encoding: 'utf8', env: process.env })
      runs[i]!.push(JSON.parse(out.trim().split('\n').at(-1)!) as Result)
    }
  }
  const median = (xs: number[]): number => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  console.log(`N=${N} sockets with queued bytes, K=${K} frames of ${SIZE} B each written to all; median of ${ROUNDS} rounds [each round's]\n`)
  console.log('| tree | CPU ns per socket write | bytes kept per queued write (heap + ArrayBuffers) | RSS bytes per queued write |')
  console.log('|---|--:|--:|--:|')
  const fmt = (xs: number[]): string => `${median(xs).toFixed(0)} [${xs.map((x) => x.toFixed(0)).join(', ')}]`
  for (let i = 0; i < roots.length; i++) {
    const r = runs[i]!
    console.log(`| ${roots[i]} | ${fmt(r.map((x) => x.nsPerWrite))} | ${fmt(r.map((x) => x.heapPerWrite))} | ${fmt(r.map((x) => x.rssPerWrite))} |`)
  }
}
