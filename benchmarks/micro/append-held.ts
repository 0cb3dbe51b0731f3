// What a raw connection (lib/raw-publish.ts) spends holding the bytes that come while a request is
// being handled, up to its 64 KiB bound, when they come CHUNK bytes per read: each read joined anew
// with what came before (Buffer.concat, as before appendHeld) against appendHeld. CPU time of the
// joins alone, median of ROUNDS.
//
//   node benchmarks/micro/append-held.ts            CHUNK=1,16,100,1460 BOUND=65536 ROUNDS=5
import { appendHeld } from '../../lib/raw-publish.ts'

const chunks = (process.env.CHUNK ?? '1,16,100,1460').split(',').map(Number)
const bound = Number(process.env.BOUND ?? 65536)
const rounds = Number(process.env.ROUNDS ?? 5)

const concat = (held: Buffer | null, chunk: Buffer): Buffer => held === null ? chunk : Buffer.concat([held, chunk])

function run (join: (held: Buffer | null, chunk: Buffer) => Buffer, size: number): number {
  const piece = Buffer.alloc(size, 0x61)
  const t0 = process.cpuUsage()
  let held: Buffer | null = null
  while (held === null || held.length < bound) held = join(held, Buffer.from(piece))
  const t = process.cpuUsage(t0)
  return (t.user + t.system) / 1000
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
console.log(`| bytes per read | reads | Buffer.concat per read (ms CPU) | appendHeld (ms CPU) | ratio |`)
console.log('|--:|--:|--:|--:|--:|')
for (const size of chunks) {
  const a: number[] = []
  const b: number[] = []
  for (let r = 0; r < rounds; r++) { a.push(run(concat, size)); b.push(run(appendHeld, size)) }
  console.log(`| ${size} | ${Math.ceil(bound / size)} | ${median(a).toFixed(1)} | ${median(b).toFixed(1)} | ${(median(a) / median(b)).toFixed(0)}× |`)
}
