// lib/raw-publish.ts parseRequest on the two requests the raw connections read most: a publish
// (undici's head, 512 B body) and a long-poll re-poll (the cursor in If-Modified-Since and
// If-None-Match). ns per request and V8 heap bytes allocated per request, best of ROUNDS rounds.
//
//   node --expose-gc benchmarks/micro/parse-request.ts
import { resolveOptions } from '../../lib/config.ts'
import { parseRequest } from '../../lib/raw-publish.ts'

const N = Number(process.env.N ?? 200000)
const ROUNDS = Number(process.env.ROUNDS ?? 5)
const opts = resolveOptions({}, { env: {} })
const cases: Record<string, Buffer> = {
  publish: Buffer.concat([Buffer.from('POST /pub/o4711 HTTP/1.1\r\nhost: 127.0.0.1:8080\r\nconnection: keep-alive\r\ncontent-type: text/plain\r\ncontent-length: 512\r\n\r\n', 'latin1'), Buffer.alloc(512, 97)]),
  'long-poll': Buffer.from('GET /sub/l4711 HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-Modified-Since: Tue, 01 Dec 2026 06:00:00 GMT\r\nIf-None-Match: 3\r\n\r\n', 'latin1')
}
const gc = (globalThis as { gc?: () => void }).gc
for (const [name, buf] of Object.entries(cases)) {
  let best = Infinity
  let bytes = Infinity
  for (let r = 0; r < ROUNDS; r++) {
    gc?.()
    const h0 = process.memoryUsage().heapUsed
    const t0 = process.hrtime.bigint()
    let sink = 0
    for (let i = 0; i < N; i++) {
      const x = parseRequest(buf, opts)
      if (typeof x === 'object') sink += x.end
    }
    const ns = Number(process.hrtime.bigint() - t0) / N
    // allocation: heap growth over a run short enough that no scavenge ran (per request)
    gc?.()
    const h1 = process.memoryUsage().heapUsed
    const n2 = 2000
    const a0 = process.memoryUsage().heapUsed
    for (let i = 0; i < n2; i++) { const x = parseRequest(buf, opts); if (typeof x === 'object') sink += x.end }
    const a1 = process.memoryUsage().heapUsed
    if (sink === 0) throw new Error('nothing parsed')
    best = Math.min(best, ns)
    bytes = Math.min(bytes, (a1 - a0) / n2)
    void h0; void h1
  }
  console.log(`${name.padEnd(10)} ${best.toFixed(0).padStart(6)} ns/request  ${bytes.toFixed(0).padStart(6)} B heap/request`)
}
