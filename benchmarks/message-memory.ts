// What a buffered message costs the process that holds it: RSS, V8 heap and ArrayBuffer (off-heap)
// bytes per message, after GC, once every message was published through the standalone server's
// publisher path and delivered live to one SSE subscriber per channel (so its frames were built).
// Sizes message buffers (bufferLength x channels x message size) and shows what a message keeps
// beyond its body.
//
//   node benchmarks/message-memory.ts            orchestrator: prints a table, writes BENCH_OUT
//   node --expose-gc benchmarks/message-memory.ts server   (forked by the orchestrator)
//
// Knobs (env): MESSAGES (100000), CHANNELS (10000), SIZE (512 bytes), TRANSPORT (eventsource, or
// websocket: subscribers through the `ws` client, so the message's WebSocket frame is built instead),
// BENCH_OUT (results file; "-" = none); PARKLINE_* options too (PARKLINE_HEAP_GROWTH=0: buffers as the
// embedded plugin keeps them, without the arena).
import { fork } from 'node:child_process'
import { once } from 'node:events'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import { Pool } from 'undici'
import WebSocket from 'ws'

const SELF = fileURLToPath(import.meta.url)

interface Mem { rss: number, heapUsed: number, arrayBuffers: number, external: number, messages: number }

async function runServer (): Promise<void> {
  const { resolveOptions } = await import('../lib/config.ts')
  const { buildServer } = await import('../lib/server.ts')
  const { coreOf } = await import('../lib/plugin.ts')
  const { applyHeapGrowth } = await import('../lib/heap-growth.ts')
  // PARKLINE_* from the environment as the standalone server reads them (PARKLINE_HEAP_GROWTH=0: the
  // embedded plugin's buffers, one store per message)
  const opts = resolveOptions({ port: 0, host: '127.0.0.1', logLevel: 'silent', maxSubscribers: 100000, coalesce: true }, { env: process.env })
  // as the standalone server does at start (lib/cli.ts): with it, buffers keep their bytes in an arena
  applyHeapGrowth(opts.heapGrowth)
  const app = await buildServer(opts)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const core = coreOf(app)
  const gc = (globalThis as { gc?: (o?: { type: string, flavor: string }) => void }).gc!
  process.on('message', (msg: { type: string }) => {
    if (msg.type !== 'mem') return
    void (async () => {
      for (let i = 0; i < 3; i++) {
        gc({ type: 'major', flavor: 'last-resort' })
        await new Promise((resolve) => setImmediate(resolve))
      }
      const m = process.memoryUsage()
      let messages = 0
      for (const ch of core.registry.values()) messages += ch.buffer.size
      process.send!({ type: 'mem', mem: { rss: m.rss, heapUsed: m.heapUsed, arrayBuffers: m.arrayBuffers, external: m.external, messages } })
    })()
  })
  process.on('disconnect', () => process.exit(0))
  process.send!({ type: 'ready', port: (app.server.address() as net.AddressInfo).port })
}

async function main (): Promise<void> {
  const N = Number(process.env.MESSAGES ?? 100000)
  const C = Number(process.env.CHANNELS ?? 10000)
  const SIZE = Number(process.env.SIZE ?? 512)
  const TRANSPORT = process.env.TRANSPORT === 'websocket' ? 'websocket' : 'eventsource'
  const server = fork(SELF, ['server'], { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const [ready] = await once(server, 'message') as [{ port: number }]
  const port = ready.port
  const mem = async (): Promise<Mem> => {
    server.send({ type: 'mem' })
    for (;;) {
      const [m] = await once(server, 'message') as [{ type: string, mem: Mem }]
      if (m.type === 'mem') return m.mem
    }
  }
  // one subscriber per channel, counting the messages it reads
  const ws = TRANSPORT === 'websocket'
  let events = 0
  const subs: Array<{ destroy: () => void }> = []
  for (let i = 0; i < C; i++) {
    if (ws) {
      const w = new WebSocket(`ws://127.0.0.1:${port}/sub/m${i}`)
      w.on('message', () => { events++ })
      w.on('error', () => {})
      subs.push({ destroy: () => { w.terminate() } })
    } else {
      const s = net.connect(port, '127.0.0.1')
      // one `data: ` line per event (the bodies have no LF); a line cut by a read is counted with its last byte
      s.on('data', (d: Buffer) => { for (let j = d.indexOf('a: x'); j !== -1; j = d.indexOf('a: x', j + 4)) events++ })
      s.on('error', () => {})
      s.write(`GET /sub/m${i} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`)
      subs.push(s)
    }
    if (i % 500 === 499) await new Promise((resolve) => setTimeout(resolve, 20))
  }
  await new Promise((resolve) => setTimeout(resolve, 1000))
  const heads = events
  const before = await mem()
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 16, pipelining: 1 })
  const body = 'x'.repeat(SIZE)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < N) {
      const i = next++
      const r = await pool.request({ path: `/pub/m${i % C}`, method: 'POST', body, headers: { 'content-type': 'text/plain' } })
      await r.body.dump()
    }
  }
  const t0 = Date.now()
  await Promise.all(Array.from({ length: 16 }, worker))
  const deadline = Date.now() + 30000
  while (events - heads < N && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
  const seconds = (Date.now() - t0) / 1000
  await new Promise((resolve) => setTimeout(resolve, 500))
  const after = await mem()
  await pool.close()
  for (const s of subs) s.destroy()
  server.disconnect()
  const held = after.messages - before.messages
  const per = (f: (m: Mem) => number): number => Math.round((f(after) - f(before)) / held)
  const row = `| ${TRANSPORT} | ${N.toLocaleString('en-US')} | ${C.toLocaleString('en-US')} | ${SIZE} | ${held.toLocaleString('en-US')} | ${(events - heads).toLocaleString('en-US')} | ` +
    `${per((m) => m.rss).toLocaleString('en-US')} | ${per((m) => m.heapUsed).toLocaleString('en-US')} | ${per((m) => m.arrayBuffers).toLocaleString('en-US')} | ${seconds.toFixed(1)} |`
  const out = [
    `# Memory per buffered message — ${new Date().toISOString().slice(0, 10)}`,
    '',
    `Command: \`MESSAGES=${N} CHANNELS=${C} SIZE=${SIZE} TRANSPORT=${TRANSPORT} node benchmarks/message-memory.ts\`; Node ${process.version}, ${os.cpus()[0]?.model ?? ''}.`,
    `The server (standalone, one process, defaults: bufferLength 100, messageTimeout 1 h) holds one ${TRANSPORT} subscriber per channel;`,
    'messages are POSTed over 16 keep-alive connections and each is delivered live. Memory after V8\'s memory-reducing GC, before and after, divided by the messages held.',
    '',
    '| subscribers | messages | channels | body bytes | held | delivered | RSS per message | V8 heap per message | ArrayBuffer bytes per message | seconds |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
    row
  ]
  process.stdout.write(out.join('\n') + '\n')
  const file = process.env.BENCH_OUT ?? `benchmarks/results/message-memory-${new Date().toISOString().slice(0, 10)}.md`
  if (file !== '-') fs.writeFileSync(file, out.join('\n') + '\n')
}

if (process.argv[2] === 'server') await runServer()
else await main()
