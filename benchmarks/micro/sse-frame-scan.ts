// frameSseData (lib/message.ts) on bodies full of line breaks: ms per 1 MiB body, best of 3, for
// each tree in ROOTS (default: this one). Measures that the scan for LF and lone CR stays linear.
//
//   ROOTS=/path/to/base,/path/to/new node benchmarks/micro/sse-frame-scan.ts
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const ROOTS = (process.env.ROOTS ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')).split(',')
const MiB = 1 << 20
const cases: Array<[string, Buffer]> = [
  ['1 MiB of CR', Buffer.alloc(MiB, 13)],
  ['1 MiB of LF', Buffer.alloc(MiB, 10)],
  ['1 MiB of 50-byte LF lines', Buffer.from(('x'.repeat(49) + '\n').repeat(Math.ceil(MiB / 50))).subarray(0, MiB)]
]
console.log('| tree | body | ms |\n|---|---|--:|')
for (const root of ROOTS) {
  const { frameSseData } = await import(pathToFileURL(path.join(root, 'lib/message.ts')).href) as { frameSseData: (b: Buffer) => Buffer }
  for (const [name, body] of cases) {
    let best = Infinity
    for (let r = 0; r < 3; r++) {
      const t0 = performance.now()
      frameSseData(body)
      best = Math.min(best, performance.now() - t0)
    }
    console.log(`| ${root} | ${name} | ${best.toFixed(1)} |`)
  }
}
