// Building a published message (lib/message.ts Message: its SSE frame, which holds the body) for a
// 512 B body without LF, as every publish does: ns per message, best of ROUNDS rounds, for each
// tree in ROOTS (default: this one), alternating. ALLOC=pool: the frame in a shared slab (the
// tree's frameAlloc, as the standalone server's Core with its arena; Buffer.allocUnsafe in a tree
// without one), else a store of its own.
//
//   ROOTS=/path/to/base,/path/to/new node benchmarks/micro/message-frame.ts
//   ALLOC=pool node benchmarks/micro/message-frame.ts
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const ROOTS = (process.env.ROOTS ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')).split(',')
const N = Number(process.env.N ?? 200000)
const ROUNDS = Number(process.env.ROUNDS ?? 7)
const body = Buffer.alloc(512, 97)
type MessageCtor = new (time: number, tag: number, data: Buffer, contentType: string | null, event: string | null, publishedAt: number, framedLength?: number, alloc?: (size: number) => Buffer) => { time: number }
const mods = await Promise.all(ROOTS.map(async (r) => await import(pathToFileURL(path.join(r, 'lib/message.ts')).href) as { Message: MessageCtor, frameAlloc?: (size: number) => Buffer }))
const ctors = mods.map((m) => m.Message)
const allocs = mods.map((m) => process.env.ALLOC === 'pool' ? m.frameAlloc ?? Buffer.allocUnsafe : Buffer.allocUnsafeSlow)
const best = ROOTS.map(() => Infinity)
for (let round = 0; round < ROUNDS; round++) {
  for (let k = 0; k < ROOTS.length; k++) {
    const Message = ctors[k]!
    const alloc = allocs[k]!
    const t0 = process.hrtime.bigint()
    let sink = 0
    for (let i = 0; i < N; i++) sink += new Message(1796000000 + (i >> 10), i & 1023, body, null, null, 0, -1, alloc).time
    best[k] = Math.min(best[k]!, Number(process.hrtime.bigint() - t0) / N)
    if (sink === 0) throw new Error('unreachable')
  }
}
for (let k = 0; k < ROOTS.length; k++) console.log(`| ${ROOTS[k]} | ${process.env.ALLOC === 'pool' ? 'pool' : 'own store'} | ${best[k]!.toFixed(0)} ns per message |`)
