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
// spent handing frames to the sockets, "end to end" runs until the clients hold every frame.
// `parkline-deflate` is Parkline with option websocketDeflate, its clients offering
// permessage-deflate: each message compressed once for all of them. `nchan` and `nchan-deflate`
// are Nchan as the suite runs it (benchmarks/suite/servers.ts, 2 nginx workers), the latter with
// `nchan_deflate_message_for_websocket on` (a deflated copy stored with each message); their
// messages are published over HTTP, so a run with them takes PUBLISH=http. `parkline-nagle` and
// `parkline-deflate-nagle` are those two with option tcpNoDelay false: nginx sets TCP_NODELAY on
// none of Nchan's subscriber connections, so their small writes are left to Nagle's algorithm.
// PUBLISH: `ipc` (the default: the server process publishes, one message per event-loop turn,
// and times its own fan-out) or `http` (the orchestrator POSTs each message to /pub/bench and
// waits for its answer before the next, for every kind: the same publisher for all; no fan-out
// figure, and memory only for the Node kinds). The clients count whole data frames, so a
// compressed frame of any size counts as one delivery.
// Knobs (env): SUBSCRIBERS (5000; at most ~18,000 per process), MESSAGES (200), SIZE (64),
// BODY (`x`: SIZE bytes of 'x'; `json`: SIZE bytes of JSON-like text, which compresses as real
// payloads do), KINDS (parkline,ws; add parkline-deflate, nchan, nchan-deflate, parkline-nagle,
// parkline-deflate-nagle), PUBLISH (ipc), RUNS (3; the median is reported), BENCH_OUT (results
// file; "-" = none); PARKLINE_* variables configure the Parkline kinds as they do `parkline serve`.
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { coreOf } from '../lib/plugin.ts'
import { killAllStarted, nginxVersion, startNchan, type ServerHandle } from './suite/servers.ts'
import { cpuSeconds } from './suite/proc.ts'

const SELF = fileURLToPath(import.meta.url)
const ROOT = path.resolve(path.dirname(SELF), '..')
const N = Math.min(Number(process.env.SUBSCRIBERS ?? 5000), 18000)
const M = Number(process.env.MESSAGES ?? 200)
const SIZE = Number(process.env.SIZE ?? 64)
const RUNS = Number(process.env.RUNS ?? 3)
const BODY = process.env.BODY ?? 'x'
const ALL_KINDS = ['parkline', 'ws', 'parkline-deflate', 'nchan', 'nchan-deflate', 'parkline-nagle', 'parkline-deflate-nagle'] as const
type Kind = typeof ALL_KINDS[number]
const KINDS = (process.env.KINDS ?? 'parkline,ws').split(',').map((k) => {
  if (!(ALL_KINDS as readonly string[]).includes(k)) throw new Error(`KINDS: unknown ${k} (of ${ALL_KINDS.join(', ')})`)
  return k as Kind
})
const PUBLISH = process.env.PUBLISH ?? 'ipc'
if (PUBLISH !== 'ipc' && PUBLISH !== 'http') throw new Error(`PUBLISH must be ipc or http, got ${PUBLISH}`)
const isNchan = (k: Kind): boolean => k === 'nchan' || k === 'nchan-deflate'
const offersDeflate = (k: Kind): boolean => k === 'parkline-deflate' || k === 'nchan-deflate' || k === 'parkline-deflate-nagle'
if (PUBLISH === 'ipc' && KINDS.some(isNchan)) throw new Error('KINDS nchan and nchan-deflate are published over HTTP: run with PUBLISH=http')

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
    const websocketDeflate = offersDeflate(kind)
    // `-nagle`: option tcpNoDelay false (small writes left to Nagle, as Nchan leaves them)
    const nagle = kind.endsWith('-nagle') ? { tcpNoDelay: false } : {}
    if (websocketDeflate) frameBytes = new (await import('../lib/message.ts')).Message(1, 0, body, null, null, 0).wsDeflateFrame().length
    // PARKLINE_* variables apply as to `parkline serve` (PARKLINE_TCP_NO_DELAY=false, ...)
    const app = await buildServer(resolveOptions({ port: 0, host: '127.0.0.1', logLevel: 'silent', keepalive: 0, maxSubscribers: 100000, websocketDeflate, ...nagle }, { env: process.env }))
    await app.listen({ port: 0, host: '127.0.0.1' })
    port = (app.server.address() as net.AddressInfo).port
    const core = coreOf(app)
    broadcast = () => { core.publish('bench', body, null, null) }
    count = () => core.table.size
  } else {
    const { WebSocketServer } = await import('ws')
    const wss = new WebSocketServer({ noServer: true, clientTracking: false, perMessageDeflate: false })
    const clients = new Set<import('ws').WebSocket>()
    const srv = http.createServer((req, res) => {
      // PUBLISH=http: the body to every client, answered once handed to their sockets
      if (req.method !== 'POST') { res.end(); return }
      const parts: Buffer[] = []
      req.on('data', (d: Buffer) => parts.push(d))
      req.on('end', () => {
        const b = Buffer.concat(parts)
        for (const ws of clients) ws.send(b)
        res.statusCode = 201
        res.end()
      })
    })
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
    // (an exit of its own, so that NODE_OPTIONS=--cpu-prof writes the server's profile too)
    if (m.type === 'exit') process.exit(0)
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

/**
 * A client socket's place in the server's frames: payload bytes left of the current frame, whether
 * that frame counts (a whole data frame), a header cut short.
 */
interface FrameState { rem: number, counts: boolean, part: Buffer | null }

/** Data frames (FIN set; not close, ping or pong) whose last byte is in `d`, carrying `st` over. */
function countFrames (st: FrameState, d: Buffer): number {
  let n = 0
  let i = 0
  if (st.part !== null) { d = Buffer.concat([st.part, d]); st.part = null }
  while (i < d.length) {
    if (st.rem > 0) {
      const take = Math.min(st.rem, d.length - i)
      st.rem -= take
      i += take
      if (st.rem === 0 && st.counts) n++
      continue
    }
    const left = d.length - i
    if (left < 2) { st.part = Buffer.from(d.subarray(i)); break }
    const b0 = d[i]!
    const b1 = d[i + 1]! & 0x7f
    let hl = 2
    let len = b1
    if (b1 === 126) {
      if (left < 4) { st.part = Buffer.from(d.subarray(i)); break }
      len = d.readUInt16BE(i + 2)
      hl = 4
    } else if (b1 === 127) {
      if (left < 10) { st.part = Buffer.from(d.subarray(i)); break }
      len = Number(d.readBigUInt64BE(i + 2))
      hl = 10
    }
    i += hl
    const op = b0 & 0x0f
    st.counts = (b0 & 0x80) !== 0 && op !== 8 && op !== 9 && op !== 10
    st.rem = len
    if (len === 0 && st.counts) n++
  }
  return n
}

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
        const st: FrameState = { rem: 0, counts: false, part: null }
        await new Promise<void>((resolve, reject) => {
          s.on('error', reject)
          s.on('data', (d: Buffer) => {
            if (headDone) {
              received += countFrames(st, d)
              if (onDone !== null && received >= want) onDone()
              return
            }
            headBuf += d.toString('latin1')
            const end = headBuf.indexOf('\r\n\r\n')
            if (end === -1) return
            headDone = true
            upgraded++
            // the extension answered as asked: a server that declined it would send plain frames
            if (deflate !== /^sec-websocket-extensions: *permessage-deflate/im.test(headBuf.slice(0, end))) {
              reject(new Error(`permessage-deflate ${deflate ? 'not accepted' : 'answered unasked'}: ${headBuf.slice(0, end)}`))
              return
            }
            received += countFrames(st, Buffer.from(headBuf.slice(end + 4), 'latin1'))
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
      // each message is one data frame to each client, compressed or not
      want = received + Number(m.frames)
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

interface Result { heapPerSub: number | null, extPerSub: number | null, rssPerSub: number | null, fanoutPerSec: number | null, e2ePerSec: number, cpuPerDeliveryUs: number, writesPerDelivery: number, frameBytes: number | null }

/** Write system calls (write, writev, sendmsg...) of every process of the server (/proc/<pid>/io syscw). */
function serverWrites (pids: number[]): number {
  let sum = 0
  for (const pid of pids) {
    try { sum += Number(/^syscw: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1] ?? 0) } catch {}
  }
  return sum
}

/** utime + stime of every process of the server, seconds (one gone meanwhile counts nothing). */
function serverCpu (pids: number[]): number {
  let sum = 0
  for (const pid of pids) sum += cpuSeconds(pid) ?? 0
  return sum
}

/** PUBLISH=http: `m` messages POSTed one after another on one keep-alive connection, each answered before the next. */
async function publishOverHttp (port: number, body: Buffer, m = M): Promise<void> {
  const { Pool } = await import('undici')
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 1, pipelining: 1 })
  try {
    for (let i = 0; i < m; i++) {
      const r = await pool.request({ method: 'POST', path: '/pub/bench', body, headers: { 'content-type': BODY === 'json' ? 'application/json' : 'text/plain' } })
      await r.body.dump()
      if (r.statusCode !== 201) throw new Error(`publish ${i}: ${r.statusCode}`)
    }
  } finally {
    await pool.close()
  }
}

async function runOnce (kind: Kind): Promise<Result> {
  let srv: ChildProcess | null = null
  let nchan: ServerHandle | null = null
  let tmp: string | null = null
  let cli: ChildProcess | null = null
  try {
    let port: number
    let before: Mem | null = null
    let frameBytes: number | null = null
    if (isNchan(kind)) {
      tmp = mkdtempSync(path.join(os.tmpdir(), 'parkline-ws-nchan-'))
      nchan = await startNchan({ name: kind, label: kind }, tmp, kind === 'nchan-deflate' ? 'nchan_deflate_message_for_websocket on;' : '')
      port = nchan.port
    } else {
      // no bytecode flushing: code dropped between the two samples would read as less heap per subscriber
      srv = fork(SELF, ['server', kind], { execArgv: ['--expose-gc', '--no-flush-bytecode'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
      const ready = await next(srv, 'ready')
      port = Number(ready.port)
      before = ready.mem as Mem
      frameBytes = Number(ready.frameBytes)
    }
    cli = fork(SELF, ['clients', String(port), String(N), String(offersDeflate(kind))], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    await next(cli, 'up')
    cli.send({ type: 'open' })
    const opened = await next(cli, 'opened')
    if (opened.upgraded !== N) throw new Error(`only ${String(opened.upgraded)} of ${N} upgraded`)
    let a: Mem | null = null
    if (srv !== null) {
      srv.send({ type: 'mem' })
      const after = await next(srv, 'mem')
      if (after.count !== N) throw new Error(`server holds ${String(after.count)} of ${N}`)
      a = after.mem as Mem
    }
    if (PUBLISH === 'http') {
      // one message first, received by every client: each subscription is live before the timed
      // ones (Nchan's channel info counts its other worker's subscribers only later)
      cli.send({ type: 'wait', frames: N })
      await next(cli, 'waiting')
      const warm = next(cli, 'received')
      await publishOverHttp(port, makeBody(), 1)
      await warm
    }
    cli.send({ type: 'wait', frames: N * M })
    await next(cli, 'waiting')
    const received = next(cli, 'received')
    const pids = srv !== null ? [srv.pid!] : nchan!.procs().map((p) => p.pid)
    const cpu0 = serverCpu(pids)
    const writes0 = serverWrites(pids)
    let busyNs: number | null = null
    if (PUBLISH === 'http') {
      await publishOverHttp(port, makeBody())
    } else {
      srv!.send({ type: 'publish' })
      busyNs = Number((await next(srv!, 'published')).busyNs)
    }
    const got = await received
    const cpu = serverCpu(pids) - cpu0
    const writes = serverWrites(pids) - writes0
    return {
      heapPerSub: a === null ? null : (a.heapUsed - before!.heapUsed) / N,
      extPerSub: a === null ? null : (a.external - before!.external) / N,
      rssPerSub: a === null ? null : (a.rss - before!.rss) / N,
      fanoutPerSec: busyNs === null ? null : (N * M) / (busyNs / 1e9),
      e2ePerSec: (N * M) / (Number(got.ns) / 1e9),
      cpuPerDeliveryUs: cpu * 1e6 / (N * M),
      writesPerDelivery: writes / (N * M),
      frameBytes
    }
  } finally {
    cli?.send({ type: 'exit' })
    if (cli !== null) await Promise.race([once(cli, 'exit'), new Promise((resolve) => setTimeout(resolve, 5000))])
    if (srv !== null) {
      const exited = once(srv, 'exit')
      srv.send({ type: 'exit' })
      if (await Promise.race([exited.then(() => true), new Promise((resolve) => setTimeout(resolve, 5000, false))]) !== true) {
        srv.kill('SIGKILL')
        await exited
      }
    }
    if (nchan !== null) await nchan.stop()
    if (tmp !== null) rmSync(tmp, { recursive: true, force: true })
  }
}

function median (xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

function medianOrNull (xs: Array<number | null>): number | null {
  return xs.some((x) => x === null) ? null : median(xs as number[])
}

async function orchestrate (): Promise<void> {
  const rows: string[] = []
  const fmt = (x: number | null): string => x === null ? 'n/a' : Math.round(x).toLocaleString('en-US')
  try {
    for (const kind of KINDS) {
      const runs: Result[] = []
      for (let r = 0; r < RUNS; r++) runs.push(await runOnce(kind))
      const res: Result = {
        heapPerSub: medianOrNull(runs.map((x) => x.heapPerSub)),
        extPerSub: medianOrNull(runs.map((x) => x.extPerSub)),
        rssPerSub: medianOrNull(runs.map((x) => x.rssPerSub)),
        fanoutPerSec: medianOrNull(runs.map((x) => x.fanoutPerSec)),
        e2ePerSec: median(runs.map((x) => x.e2ePerSec)),
        cpuPerDeliveryUs: median(runs.map((x) => x.cpuPerDeliveryUs)),
        writesPerDelivery: median(runs.map((x) => x.writesPerDelivery)),
        frameBytes: runs[0]!.frameBytes
      }
      const both = res.heapPerSub === null ? null : res.heapPerSub + res.extPerSub!
      const row = `| ${kind} | ${fmt(res.heapPerSub)} | ${fmt(res.extPerSub)} | ${fmt(both)} | ${fmt(res.rssPerSub)} | ${fmt(res.fanoutPerSec)} | ${fmt(res.e2ePerSec)} [${runs.map((x) => fmt(x.e2ePerSec)).join(', ')}] | ${res.cpuPerDeliveryUs.toFixed(2)} [${runs.map((x) => x.cpuPerDeliveryUs.toFixed(2)).join(', ')}] | ${res.writesPerDelivery.toFixed(2)} | ${fmt(res.frameBytes)} |`
      rows.push(row)
      console.log(row)
    }
  } finally {
    killAllStarted()
  }
  const date = new Date().toISOString().slice(0, 10)
  const table = '| server | heap B/sub | external B/sub | heap+external B/sub | RSS B/sub | fan-out deliveries/s | end-to-end deliveries/s, median [each run] | server CPU µs per delivery (all its processes) | server write calls per delivery | frame bytes |\n|---|---|---|---|---|---|---|---|---|---|\n' + rows.join('\n')
  const out = process.env.BENCH_OUT ?? path.join(ROOT, 'benchmarks', 'results', `websocket-${date}.md`)
  const text = `# WebSocket: own framing vs ws${KINDS.some(isNchan) ? ' and Nchan' : ''} (${date})\n\n` +
    `Command: \`SUBSCRIBERS=${N} MESSAGES=${M} SIZE=${SIZE} BODY=${BODY} KINDS=${KINDS.join(',')} PUBLISH=${PUBLISH} RUNS=${RUNS} node benchmarks/websocket.ts\`\n\n` +
    `Machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}${KINDS.some(isNchan) ? ', ' + nginxVersion() : ''}, loopback; median of ${RUNS} runs.\n\n` +
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
