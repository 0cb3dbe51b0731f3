// Run by test/overflow.test.ts as `node --expose-gc`: a real server in this process holds eight 1 MiB
// messages; N SSE subscribers resume from before it and never read, one kind per run (argv[2]:
// `single` on /sub/big, `multi` on /sub/big,z<i>, `live` multiplexed and then sent a live 1 MiB
// message). Prints one JSON line: the Buffer memory (arrayBuffers) they added, after gc.
import net from 'node:net'
import { once } from 'node:events'
import { resolveOptions } from '../../lib/config.ts'
import { buildServer } from '../../lib/server.ts'
import { coreOf } from '../../lib/plugin.ts'

const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error('run with --expose-gc')
const kind = process.argv[2] ?? 'multi'
const N = 60
const MiB = 1024 * 1024

const app = await buildServer(resolveOptions({ port: 0, host: '127.0.0.1', logLevel: 'silent', keepalive: 0 }))
await app.listen({ port: 0, host: '127.0.0.1' })
const port = (app.server.address() as net.AddressInfo).port
const core = coreOf(app)
const body = Buffer.alloc(MiB, 'x')
// more than the kernel's buffers of a loopback connection take: Node holds the rest
for (let i = 0; i < 8; i++) await app.parkline.publish('big', body)
const measure = (): number => {
  gc()
  gc()
  return process.memoryUsage().arrayBuffers
}
const until = async (pred: () => boolean, ms: number): Promise<boolean> => {
  const end = Date.now() + ms
  while (!pred() && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 20))
  return pred()
}
const before = measure()
const sockets: net.Socket[] = []
for (let i = 0; i < N; i++) {
  const s = net.connect(port, '127.0.0.1')
  s.on('error', () => {})
  await once(s, 'connect')
  // never read: paused before a byte arrives
  s.pause()
  const path = kind === 'single' ? '/sub/big' : `/sub/big,z${i}`
  s.write(`GET ${path}${kind === 'live' ? '' : '?last_event_id=1:0'} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`)
  sockets.push(s)
}
const held = await until(() => core.table.size === N, 20_000)
if (kind === 'live') await app.parkline.publish('big', body)
// every subscriber has been written all it takes: Node holds the rest of each
const written = await until(() => core.stats.delivered.reduce((a, b) => a + b, 0) >= N, 20_000)
await new Promise((resolve) => setTimeout(resolve, 300))
const after = measure()
process.stdout.write(JSON.stringify({ kind, held, written, subscribers: N, addedMiB: (after - before) / MiB }) + '\n')
for (const s of sockets) s.destroy()
await app.close()
process.exit(0)
