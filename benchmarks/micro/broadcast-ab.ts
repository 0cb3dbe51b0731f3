// Broadcast deliveries/s against a running server, SSE or WebSocket, one client process:
// N subscribers on one channel (source addresses 127.0.0.2–5), a closed-loop publisher with K
// requests in flight, D seconds; every delivery is counted (SSE: each `id: ` line; WebSocket: each
// server frame, parsed).
//
//   PORT=8080 MODE=sse|ws N=5000 K=8 D=5 node benchmarks/micro/broadcast-ab.ts
import net from 'node:net'
import { Pool } from 'undici'

const port = Number(process.env.PORT)
const N = Number(process.env.N ?? 5000)
const K = Number(process.env.K ?? 8)
const D = Number(process.env.D ?? 5)
const MODE = process.env.MODE === 'ws' ? 'ws' : 'sse'
const ID = Buffer.from('id: ')
let received = 0
let connected = 0

const request = MODE === 'sse'
  ? Buffer.from('GET /sub/b HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n')
  : Buffer.from('GET /sub/b HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
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
const body = 'x'.repeat(100)
let stop = false
let published = 0
const t0 = Date.now()
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
console.log(JSON.stringify({ mode: MODE, N, K, published, pubPerSec: Math.round(published / elapsed), deliveriesPerSec: Math.round(received / elapsed), expected: published * N, received }))
process.exit(0)
