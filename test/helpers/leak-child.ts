// Run by test/leak.test.ts as `node --expose-gc`: a real server in this process, subscribers of
// every transport come and go, channels are deleted or expire; then, after gc, how many of their
// Subscriber and Channel objects are still reachable. Prints one JSON line.
import net from 'node:net'
import { once } from 'node:events'
import { resolveOptions } from '../../lib/config.ts'
import { buildServer } from '../../lib/server.ts'
import { coreOf } from '../../lib/plugin.ts'

const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error('run with --expose-gc')

const app = await buildServer(resolveOptions({ port: 0, host: '127.0.0.1', logLevel: 'silent', messageTimeout: 1, keepalive: 0 }))
await app.listen({ port: 0, host: '127.0.0.1' })
const port = (app.server.address() as net.AddressInfo).port
const core = coreOf(app)
const base = `http://127.0.0.1:${port}`

const KINDS = [
  'Accept: text/event-stream\r\n',
  'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n',
  'TE: chunked\r\n',
  'Accept: multipart/mixed\r\n',
  ''
]
const N = 400
const sockets: net.Socket[] = []
for (let i = 0; i < N; i++) {
  const s = net.connect(port, '127.0.0.1')
  s.on('error', () => {})
  s.on('data', () => {})
  await once(s, 'connect')
  const path = i % 7 === 0 ? `/sub/c${i % 50},c${(i + 1) % 50}` : `/sub/c${i % 50}`
  s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n${KINDS[i % KINDS.length]}\r\n`)
  sockets.push(s)
}
const until = async (pred: () => boolean, ms: number): Promise<boolean> => {
  const end = Date.now() + ms
  while (!pred() && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 20))
  return pred()
}
await until(() => core.table.size === N, 10000)
const counted = core.table.size
const subs = core.table.subs.map((s) => new WeakRef(s))
// every channel gets a message; the long-polls are answered, the streams get it
for (let c = 0; c < 50; c++) await fetch(`${base}/pub/c${c}`, { method: 'POST', body: 'x'.repeat(1000) })
const channels = [...core.registry.values()].map((c) => new WeakRef(c))
for (const s of sockets) s.destroy()
await until(() => core.table.size === 0, 10000)
// half the channels are deleted, the others expire (messageTimeout 1 s) and are released
for (let c = 0; c < 50; c += 2) await fetch(`${base}/pub/c${c}`, { method: 'DELETE' })
await until(() => core.registry.size === 0, 5000)
for (let i = 0; i < 10; i++) {
  gc()
  await new Promise((resolve) => setImmediate(resolve))
}
process.stdout.write(JSON.stringify({
  counted,
  subscribers: subs.length,
  subscribersAlive: subs.filter((r) => r.deref() !== undefined).length,
  channels: channels.length,
  channelsAlive: channels.filter((r) => r.deref() !== undefined).length,
  registry: core.registry.size,
  table: core.table.size
}) + '\n')
await app.close()
