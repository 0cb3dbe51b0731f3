// WebSocket: Parkline's own push-only framing (transports/websocket.ts + websocket-frame.ts) against
// the `ws` library, on two numbers: user-space bytes per idle WebSocket subscriber, and broadcast
// deliveries per second. Server and clients are separate processes (STYLE.md §4). One file, roles:
//
//   node benchmarks/websocket.ts                            orchestrator
//   node --expose-gc benchmarks/websocket.ts server <kind>  server under test (IPC: ready, mem, publish)
//   node benchmarks/websocket.ts clients <port> <n>         idle clients over raw sockets (IPC: open, wait)
//
// Kinds: `parkline` is the whole Parkline server (Fastify, the plugin, the WebSocket transport, one
// channel); `ws` is a bare node:http server with ws's WebSocketServer({ noServer: true }) that keeps
// its clients in a Set and broadcasts with ws.send(): the least a ws-based transport would hold.
// Broadcast: M messages of SIZE bytes, one per event-loop turn; "fan-out" is the synchronous time
// spent handing frames to the sockets, "end to end" runs until the clients hold every byte.
// `parkline-deflate` is Parkline with option websocketDeflate, its clients offering
// permessage-deflate: each message compressed once for all of them.
// Knobs (env): SUBSCRIBERS (5000; at most ~18,000 per process), MESSAGES (200), SIZE (64),
// BODY (`x`: SIZE bytes of 'x'; `json`: SIZE bytes of JSON-like text, which compresses as real
// payloads do), KINDS (parkline,ws; add parkline-deflate), RUNS (3; the median is reported),
// BENCH_OUT (results file; "-" = none).
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { coreOf } from '../lib/plugin.ts'

const SELF = fileURLToPath(import.meta.url)
const ROOT = path.resolve(path.dirname(SELF), '..')
const N = Math.min(Number(process.env.SUBSCRIBERS ?? 5000), 18000)
const M = Number(process.env.MESSAGES ?? 200)
const SIZE = Number(process.env.SIZE ?? 64)
const RUNS = Number(process.env.RUNS ?? 3)
const BODY = process.env.BODY ?? 'x'
const ALL_KINDS = ['parkline', 'ws', 'parkline-deflate'] as const
type Kind = typeof ALL_KINDS[number]
const KINDS = (process.env.KINDS ?? 'parkline,ws').split(',').map((k) => {
  if (!(ALL_KINDS as readonly string[]).includes(k)) throw new Error(`KINDS: unknown ${k} (of ${ALL_KINDS.join(', ')})`)
  return k as Kind
})

function makeBody (): Buffer {
  if (BODY === 'x') return Buffer.alloc(SIZE, 'x')
  if (BODY !== 'json') throw new Error(`BODY must be x or json, got ${BODY}`)
  const s = JSON.stringify(Array.from({ length: Math.ceil(SIZE / 30) + 1 }, (_, i) => ({ id: i, user: `u${(i * 7919) % 1000}`, ok: i % 3 === 0 })))
  return Buffer.from(s.slice(0, SIZE))
}

interface Mem { rss: number, heapUsed: number, external: number }
interface Msg { type: string, [k: string]: unknown }

function gcMem (): Mem {
  const g = (globalThis as { gc?: () => void }).gc
  if (g !== undefined) { g(); g() }
  const m = process.memoryUsage()
  return { rss: m.rss, heapUsed: m.heapUsed, external: m.external }
}

// ---- servers ---------------------------------------------------------------------------------------

async function server (kind: Kind): Promise<void> {
  const body = makeBody()
  let port: number
  let broadcast: () => void
  let count: () => number
  // the bytes of one message's frame on the wire, as its clients get it
  let frameBytes = (SIZE < 126 ? 2 : SIZE < 65536 ? 4 : 10) + SIZE
  if (kind !== 'ws') {
    const { buildServer } = await import('../lib/server.ts')
    const { resolveOptions } = await import('../lib/config.ts')
    const websocketDeflate = kind === 'parkline-deflate'
    if (websocketDeflate) frameBytes = new (await import('../lib/message.ts')).Message(1, 0, body, null, null, 0).wsDeflateFrame().length
    const app = await buildServer(resolveOptions({ port: 0, host: '127.0.0.1', logLevel: 'silent', keepalive: 0, maxSubscribers: 100000, websocketDeflate }))
    await app.listen({ port: 0, host: '127.0.0.1' })
    port = (app.server.address() as net.AddressInfo).port
    const core = coreOf(app)
    broadcast = () => { core.publish('bench', body, null, null) }
    count = () => core.table.size
  } else {
    const { WebSocketServer } = await import('ws')
    const wss = new WebSocketServer({ noServer: true, clientTracking: false, perMessageDeflate: false })
    const clients = new Set<import('ws').WebSocket>()
    const srv = http.createServer((_req, res) => { res.end() })
    srv.on('upgrade', (req, socket, head) => {
      wss.handleUpgrade(req, socket, head, (ws) => {
        clients.add(ws)
        ws.on('close', () => clients.delete(ws))
      })
    })
    srv.listen(0, '127.0.0.1')
    await once(srv, 'listening')
    port = (srv.address() as net.AddressInfo).port
    broadcast = () => { for (const ws of clients) ws.send(body) }
    count = () => clients.size
  }
  process.on('message', (m: Msg) => {
    if (m.type === 'mem') process.send!({ type: 'mem', mem: gcMem(), count: count() })
    else if (m.type === 'publish') {
      let i = 0
      let busy = 0
      const step = (): void => {
        const t0 = process.hrtime.bigint()
        broadcast()
        busy += Number(process.hrtime.bigint() - t0)
        if (++i < M) setImmediate(step)
        else process.send!({ type: 'published', busyNs: busy })
      }
      step()
    }
  })
  process.send!({ type: 'ready', port, mem: gcMem(), frameBytes })
}

// ---- clients -------------------------------------------------------------------------------------

function clients (port: number, n: number, deflate: boolean): void {
  const sockets: net.Socket[] = []
  let received = 0
  let upgraded = 0
  let want = 0
  let onDone: (() => void) | null = null
  const handshake = 'GET /sub/bench HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n' +
    (deflate ? 'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n' : '') + '\r\n'
  const open = async (): Promise<void> => {
    let next = 0
    const one = async (): Promise<void> => {
      while (next < n) {
        next++
        const s = net.connect(port, '127.0.0.1')
        sockets.push(s)
        let headDone = false
        let headBuf = ''
        await new Promise<void>((resolve, reject) => {
          s.on('error', reject)
          s.on('data', (d: Buffer) => {
            if (headDone) {
              received += d.length
              if (onDone !== null && received >= want) onDone()
              return
            }
            headBuf += d.toString('latin1')
            const end = headBuf.indexOf('\r\n\r\n')
            if (end === -1) return
            headDone = true
            upgraded++
            received += headBuf.length - end - 4
            resolve()
          })
          s.write(handshake)
        })
      }
    }
    await Promise.all(Array.from({ length: 200 }, one))
  }
  process.on('message', (m: Msg) => {
    if (m.type === 'open') {
      open().then(() => process.send!({ type: 'opened', upgraded }), (err: Error) => process.send!({ type: 'error', message: err.message }))
    } else if (m.type === 'wait') {
      // each message is one frame (the server says how many bytes: compressed or not)
      want = received + Number(m.bytes)
      const t0 = process.hrtime.bigint()
      const finish = (): void => { onDone = null; process.send!({ type: 'received', ns: Number(process.hrtime.bigint() - t0) }) }
      if (received >= want) finish()
      else onDone = finish
      process.send!({ type: 'waiting' })
    } else if (m.type === 'exit') {
      for (const s of sockets) s.destroy()
      process.exit(0)
    }
  })
  process.send!({ type: 'up' })
}

// ---- orchestrator ------------------------------------------------------------------------------------

function next (child: ChildProcess, type: string): Promise<Msg> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timed out waiting for ' + type)), 120000)
    const on = (m: Msg): void => {
      if (m.type === 'error') { clearTimeout(timer); child.off('message', on); reject(new Error(String(m.message))) }
      if (m.type !== type) return
      clearTimeout(timer)
      child.off('message', on)
      resolve(m)
    }
    child.on('message', on)
  })
}

interface Result { heapPerSub: number, extPerSub: number, rssPerSub: number, fanoutPerSec: number, e2ePerSec: number, frameBytes: number }

async function runOnce (kind: Kind): Promise<Result> {
  // no bytecode flushing: code dropped between the two samples would read as less heap per subscriber
  const srv = fork(SELF, ['server', kind], { execArgv: ['--expose-gc', '--no-flush-bytecode'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  let cli: ChildProcess | null = null
  try {
    const ready = await next(srv, 'ready')
    const before = ready.mem as Mem
    cli = fork(SELF, ['clients', String(ready.port), String(N), String(kind === 'parkline-deflate')], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    await next(cli, 'up')
    cli.send({ type: 'open' })
    const opened = await next(cli, 'opened')
    if (opened.upgraded !== N) throw new Error(`only ${String(opened.upgraded)} of ${N} upgraded`)
    srv.send({ type: 'mem' })
    const after = await next(srv, 'mem')
    if (after.count !== N) throw new Error(`server holds ${String(after.count)} of ${N}`)
    const a = after.mem as Mem
    cli.send({ type: 'wait', bytes: N * M * Number(ready.frameBytes) })
    await next(cli, 'waiting')
    const received = next(cli, 'received')
    srv.send({ type: 'publish' })
    const published = await next(srv, 'published')
    const got = await received
    return {
      heapPerSub: (a.heapUsed - before.heapUsed) / N,
      extPerSub: (a.external - before.external) / N,
      rssPerSub: (a.rss - before.rss) / N,
      fanoutPerSec: (N * M) / (Number(published.busyNs) / 1e9),
      e2ePerSec: (N * M) / (Number(got.ns) / 1e9),
      frameBytes: Number(ready.frameBytes)
    }
  } finally {
    cli?.send({ type: 'exit' })
    if (cli !== null) await Promise.race([once(cli, 'exit'), new Promise((resolve) => setTimeout(resolve, 5000))])
    srv.kill('SIGKILL')
    await once(srv, 'exit').catch(() => {})
  }
}

function median (xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

async function orchestrate (): Promise<void> {
  const rows: string[] = []
  const results: Record<string, Result> = {}
  for (const kind of KINDS) {
    const runs: Result[] = []
    for (let r = 0; r < RUNS; r++) runs.push(await runOnce(kind))
    const res: Result = {
      heapPerSub: median(runs.map((x) => x.heapPerSub)),
      extPerSub: median(runs.map((x) => x.extPerSub)),
      rssPerSub: median(runs.map((x) => x.rssPerSub)),
      fanoutPerSec: median(runs.map((x) => x.fanoutPerSec)),
      e2ePerSec: median(runs.map((x) => x.e2ePerSec)),
      frameBytes: runs[0]!.frameBytes
    }
    results[kind] = res
    const row = `| ${kind} | ${Math.round(res.heapPerSub)} | ${Math.round(res.extPerSub)} | ${Math.round(res.heapPerSub + res.extPerSub)} | ${Math.round(res.rssPerSub)} | ${Math.round(res.fanoutPerSec).toLocaleString('en-US')} | ${Math.round(res.e2ePerSec).toLocaleString('en-US')} | ${res.frameBytes.toLocaleString('en-US')} |`
    rows.push(row)
    console.log(row, JSON.stringify(runs.map((x) => Math.round(x.fanoutPerSec))))
  }
  const date = new Date().toISOString().slice(0, 10)
  const table = '| server | heap B/sub | external B/sub | heap+external B/sub | RSS B/sub | fan-out deliveries/s | end-to-end deliveries/s | frame bytes |\n|---|---|---|---|---|---|---|---|\n' + rows.join('\n')
  const out = process.env.BENCH_OUT ?? path.join(ROOT, 'benchmarks', 'results', `websocket-${date}.md`)
  const text = `# WebSocket: own framing vs ws (${date})\n\n` +
    `Command: \`SUBSCRIBERS=${N} MESSAGES=${M} SIZE=${SIZE} BODY=${BODY} KINDS=${KINDS.join(',')} RUNS=${RUNS} node benchmarks/websocket.ts\`\n\n` +
    `Machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, loopback; median of ${RUNS} runs.\n\n` +
    table + '\n'
  console.log('\n' + table)
  if (out !== '-') {
    mkdirSync(path.dirname(out), { recursive: true })
    writeFileSync(out, text)
    console.log('wrote ' + out)
  }
}

const role = process.argv[2]
if (role === 'server') await server(process.argv[3] as Kind)
else if (role === 'clients') clients(Number(process.argv[3]), Number(process.argv[4]), process.argv[5] === 'true')
else await orchestrate()
