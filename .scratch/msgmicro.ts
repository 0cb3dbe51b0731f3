const root = process.argv[2]
const { Message } = await import(root + '/lib/message.ts')
const body = Buffer.alloc(512, 97)
const N = 200000
let best = Infinity
for (let r = 0; r < 7; r++) {
  const t0 = process.hrtime.bigint()
  let sink = 0
  for (let i = 0; i < N; i++) { const m = new Message(1796000000 + (i >> 10), i & 1023, body, null, null, 0); sink += m.time }
  best = Math.min(best, Number(process.hrtime.bigint() - t0) / N)
}
console.log(root, 'Message ns', best.toFixed(0))
