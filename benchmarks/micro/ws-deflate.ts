// What option `websocketDeflate` costs and saves per message: Message.wsDeflateFrame (one raw
// deflate, no context takeover, built once per message for every subscriber that negotiated
// permessage-deflate) for JSON-like bodies of a few sizes, against the plain frame. CPU per message
// (median of ROUNDS rounds of N messages each, fresh Message objects so nothing is cached) and
// bytes on the wire.
//
//   node benchmarks/micro/ws-deflate.ts                 (N=2000 ROUNDS=5)
import { Message } from '../../lib/message.ts'

const N = Number(process.env.N ?? 2000)
const ROUNDS = Number(process.env.ROUNDS ?? 5)

function json (size: number): Buffer {
  const s = JSON.stringify(Array.from({ length: Math.ceil(size / 30) }, (_, i) => ({ id: i, user: `u${(i * 7919) % 1000}`, ok: i % 3 === 0 })))
  return Buffer.from(s.slice(0, size))
}

console.log(`JSON-like bodies, ${N} messages per round, ${ROUNDS} rounds; µs per message (median) to build the frame, and its size`)
console.log('| body bytes | plain frame: µs, bytes | deflated frame: µs, bytes | bytes saved |')
console.log('|--:|--:|--:|--:|')
for (const size of [128, 512, 4096, 16384, 65536]) {
  const body = json(size)
  const plain: number[] = []
  const deflated: number[] = []
  let plainBytes = 0
  let deflatedBytes = 0
  for (let r = 0; r < ROUNDS + 1; r++) {
    let t = performance.now()
    for (let i = 0; i < N; i++) plainBytes = new Message(1, i, body, 'application/json', null, 0).wsFrame().length
    const p = (performance.now() - t) * 1000 / N
    t = performance.now()
    for (let i = 0; i < N; i++) deflatedBytes = new Message(1, i, body, 'application/json', null, 0).wsDeflateFrame().length
    const d = (performance.now() - t) * 1000 / N
    // the first round warms the JIT and zlib up
    if (r > 0) { plain.push(p); deflated.push(d) }
  }
  const med = (a: number[]): string => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!.toFixed(1)
  console.log(`| ${size.toLocaleString('en-US')} | ${med(plain)}, ${plainBytes.toLocaleString('en-US')} | ${med(deflated)}, ${deflatedBytes.toLocaleString('en-US')} | ${(100 - 100 * deflatedBytes / plainBytes).toFixed(0)}% |`)
}
