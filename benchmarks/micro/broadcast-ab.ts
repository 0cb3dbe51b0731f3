// Broadcast deliveries/s against a running server, SSE or WebSocket, one client process:
// N subscribers on one channel (source addresses 127.0.0.2–5), a closed-loop publisher with K
// requests in flight, D seconds; every delivery is counted (SSE: each `id: ` line; WebSocket: each
// server frame, parsed). SUB is the subscribers' path (default /sub/b; /sub/b,x for a multiplexed
// subscription, published on b all the same); with SERVER_PID, the server's CPU time over the run
// (/proc/<pid>/stat, that process alone) and its µs per delivery.
//
//   PORT=8080 MODE=sse|ws N=5000 K=8 D=5 [SUB=/sub/b,x] [BODY=<bytes, 100>] [SERVER_PID=<pid>] node benchmarks/micro/broadcast-ab.ts
import { readFileSync } from 'node:fs'
import net from 'node:net'
import { Pool } from 'undici'

const port = Number(process.env.PORT)
const N = Number(process.env.N ?? 5000)
const K = Number(process.env.K ?? 8)
const D = Number(process.env.D ?? 5)
const MODE = process.env.MODE === 'ws' ? 'ws' : 'sse'
const SUB = process.env.SUB ?? '/sub/b'
const SERVER_PID = process.env.SERVER_PID
/** The server's user + system CPU seconds (clock ticks of 1/100 s). */
function serverCpu (): number {
  if (SERVER_PID === undefined) return 0
  const stat = readFileSync(`/proc/${SERVER_PID}/stat`, 'utf8')
  // the fields after the command's closing parenthesis: utime and stime are the 12th and 13th
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) / 100
}
const ID = Buffer.from('id: ')
let received = 0
let connected = 0

const request = MODE === 'sse'
  ? Buffer.from(`GET ${SUB} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`)
  : Buffer.from(`GET ${SUB} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')

/** Count complete server frames in a WebSocket byte stream; returns the unparsed tail. */
function countFrames (buf: Buffer): Buffer {
  let o = 0
  for (;;) {
    if (buf.length - o < 2) break
    let len = buf[o + 1]! & 0x7f
    let head = 2
    if (len === 126) {
      if (buf.length - o < 4) break
      len = buf.readUInt16BE(o + 2)
      head = 4
    } else if (len === 127) {
      if (buf.length - o < 10) break
      len = Number(buf.readBigUInt64BE(o + 2))
      head = 10
    }
    if (buf.length - o < head + len) break
    if ((buf[o]! & 0x0f) <= 2) received++ // text or binary, not ping
    o += head + len
  }
  return buf.subarray(o)
}

for (let i = 0; i < N; i++) {
  const s = net.connect({ port, host: '127.0.0.1', localAddress: '127.0.0.' + (2 + (i % 4)) })
  s.on('connect', () => s.write(request))
  let head = true
  let rest: Buffer = Buffer.alloc(0)
  s.on('data', (d: Buffer) => {
    if (head) {
      const end = d.indexOf('\r\n\r\n')
      if (end === -1) return
      head = false
      connected++
      d = d.subarray(end + 4)
    }
    if (MODE === 'sse') {
      for (let j = d.indexOf(ID); j !== -1; j = d.indexOf(ID, j + 4)) received++
    } else {
      rest = countFrames(rest.length === 0 ? d : Buffer.concat([rest, d]))
    }
  })
  s.on('error', () => {})
}
while (connected < N) await new Promise((resolve) => setTimeout(resolve, 100))
const pool = new Pool(`http://127.0.0.1:${port}`, { connections: K })
const body = 'x'.repeat(Number(process.env.BODY ?? 100))
let stop = false
let published = 0
const t0 = Date.now()
const cpu0 = serverCpu()
received = 0
async function loop (): Promise<void> {
  while (!stop) {
    const r = await pool.request({ path: '/pub/b', method: 'POST', body })
    await r.body.dump()
    published++
  }
}
const loops = Array.from({ length: K }, loop)
await new Promise((resolve) => setTimeout(resolve, D * 1000))
stop = true
await Promise.all(loops)
const elapsed = (Date.now() - t0) / 1000
await new Promise((resolve) => setTimeout(resolve, 1000))
const cpu = serverCpu() - cpu0
console.log(JSON.stringify({ mode: MODE, sub: SUB, body: body.length, N, K, published, pubPerSec: Math.round(published / elapsed), deliveriesPerSec: Math.round(received / elapsed), expected: published * N, received, ...(SERVER_PID === undefined ? {} : { serverCpuSec: cpu, serverUsPerDelivery: received === 0 ? null : Math.round(cpu / received * 1e8) / 100 }) }))
process.exit(0)
