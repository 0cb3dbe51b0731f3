// The mesh's frame body (lib/mesh.ts): a batch encoded and decoded with `v8.serialize` /
// `v8.deserialize` (what every batch took before lib/mesh-codec.ts) against lib/mesh-codec.ts,
// for the batches a publish makes between workers: 'pub' (512 B body) to a channel's owner, its
// answer 'r', the message 'm' to a worker holding a subscriber, an 'a'. ns per entry, encode plus
// decode, best of ROUNDS rounds, alternating; BATCH entries per frame (a turn's worth).
//
//   node benchmarks/micro/mesh-codec.ts
//   BATCH=1 SIZE=4096 node benchmarks/micro/mesh-codec.ts
import { deserialize, serialize } from 'node:v8'
import { decodeBatch, encodeBatch } from '../../lib/mesh-codec.ts'

const N = Number(process.env.N ?? 200000)
const ROUNDS = Number(process.env.ROUNDS ?? 7)
const BATCH = Number(process.env.BATCH ?? 4)
const body = Buffer.alloc(Number(process.env.SIZE ?? 512), 97)
const info = { messages: 12, requested: 0, subscribers: 1, lastMessageId: '1796514622:3' }
const kinds: Record<string, (i: number) => unknown> = {
  pub: (i) => ['pub', i, `channel-${i % 10000}`, body, null, null, null, ''],
  r: (i) => ['r', i, { status: 201, info }],
  m: (i) => ['m', `channel-${i % 10000}`, 1796514622, i & 1023, body, null, null, 1796514622123.5],
  a: () => ['a', 1]
}
const ways = {
  v8: (batch: unknown[]) => deserialize(serialize(batch)) as unknown[],
  codec: (batch: unknown[]) => decodeBatch(encodeBatch(batch))
}
const lines: string[] = []
for (const [kind, make] of Object.entries(kinds)) {
  const batches: unknown[][] = []
  for (let i = 0; i < 64; i++) batches.push(Array.from({ length: BATCH }, (_, j) => make(i * BATCH + j)))
  const best: Record<string, number> = { v8: Infinity, codec: Infinity }
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, fn] of Object.entries(ways)) {
      let sink = 0
      const t0 = process.hrtime.bigint()
      for (let i = 0; i < N / BATCH; i++) sink += fn(batches[i & 63]!).length
      best[name] = Math.min(best[name]!, Number(process.hrtime.bigint() - t0) / N)
      if (sink === 0) throw new Error('unreachable')
    }
  }
  lines.push(`| ${kind} | ${best.v8!.toFixed(0)} | ${best.codec!.toFixed(0)} | ${(best.v8! / best.codec!).toFixed(2)} |`)
}
console.log(`ns per entry, encode + decode, ${BATCH} entries a batch, ${body.length} B bodies, best of ${ROUNDS} (Node ${process.version})\n`)
console.log('| entry | v8.serialize + deserialize | lib/mesh-codec.ts | v8 / codec |\n|---|--:|--:|--:|')
console.log(lines.join('\n'))
