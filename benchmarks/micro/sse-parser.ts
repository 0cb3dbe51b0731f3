// The client's SSE parser (client/wire.ts SseParser) on one long `data:` line arriving in 16 KiB
// chunks, as a fetch body reader yields them: ms per size. ROOTS=a,b runs each tree's parser
// (a checkout of another commit) in turn, for a before/after in one run.
//
//   ROOTS=/tmp/before,$PWD node benchmarks/micro/sse-parser.ts
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const roots = (process.env.ROOTS ?? process.cwd()).split(',')
for (const root of roots) {
  const { SseParser } = await import(pathToFileURL(path.join(root, 'client', 'wire.ts')).href) as typeof import('../../client/wire.ts')
  const cells: string[] = []
  for (const mb of [1, 4, 8, 16]) {
    const line = 'data: ' + 'x'.repeat(mb * 1024 * 1024) + '\n\n'
    let got = 0
    const p = new SseParser((ev) => { got = ev.data.length })
    const t0 = performance.now()
    for (let i = 0; i < line.length; i += 16384) p.feed(line.slice(i, i + 16384))
    if (got !== mb * 1024 * 1024) throw new Error(`${root}: parsed ${got} bytes of ${mb} MiB`)
    cells.push(`${mb} MiB ${Math.round(performance.now() - t0)} ms`)
  }
  console.log(`${root}: ${cells.join(', ')}`)
}
