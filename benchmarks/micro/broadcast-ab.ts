// quick A/B: N SSE subs on one channel, closed-loop publisher with K in flight, D seconds
import net from 'node:net'
import { Pool } from 'undici'
const port = Number(process.env.PORT), N = Number(process.env.N ?? 5000), K = Number(process.env.K ?? 8), D = Number(process.env.D ?? 5)
let received = 0, connected = 0
const ID = Buffer.from('id: ')
const req = Buffer.from(`GET /sub/b HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`)
for (let i = 0; i < N; i++) {
  const s = net.connect({ port, host: '127.0.0.1', localAddress: '127.0.0.' + (2 + (i % 4)) })
  s.on('connect', () => s.write(req))
  let first = true
  s.on('data', (d: Buffer) => {
    if (first) { first = false; connected++ }
    for (let j = d.indexOf(ID); j !== -1; j = d.indexOf(ID, j + 4)) received++
  })
  s.on('error', () => {})
}
while (connected < N) await new Promise(r => setTimeout(r, 100))
const pool = new Pool(`http://127.0.0.1:${port}`, { connections: K })
const body = 'x'.repeat(100)
let stop = false, published = 0
const t0 = Date.now(); received = 0
async function loop () { while (!stop) { const r = await pool.request({ path: '/pub/b', method: 'POST', body }); await r.body.dump(); published++ } }
const loops = Array.from({ length: K }, loop)
await new Promise(r => setTimeout(r, D * 1000)); stop = true; await Promise.all(loops)
const el = (Date.now() - t0) / 1000
await new Promise(r => setTimeout(r, 1000))
console.log(JSON.stringify({ N, K, published, pubPerSec: Math.round(published / el), deliveriesPerSec: Math.round(received / el), expected: published * N, received }))
process.exit(0)
