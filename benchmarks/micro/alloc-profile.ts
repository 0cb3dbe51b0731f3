// Where a server's JS allocations come from, garbage included: V8's sampling heap profiler (one
// sample per ALLOC_INTERVAL bytes, 4096 by default), collected objects kept, from ALLOC_FROM to
// ALLOC_TO ms after start (ALLOC_LIVE=1: only what is still alive at ALLOC_TO). Two uses:
//
//   loaded into a server:  PARKLINE_NODE_ARGS="--import ./benchmarks/micro/alloc-profile.ts" \
//                          ALLOC_FILE=/tmp/alloc.json ALLOC_FROM=8000 ALLOC_TO=13000 \
//                          SUBSCRIBERS=200 SCENARIOS=longpoll SERVERS=parkline ONE2ONE_RATES=8000 node benchmarks/run.ts
//   summed per function:   node benchmarks/micro/alloc-profile.ts /tmp/alloc.json
//
// The profile holds the bytes sampled in the window: divided by the messages of the window, the
// bytes each message allocates. One server process (`--workers 1`, the suite's default on 2 cores):
// with workers every process would write the same ALLOC_FILE, and the last one would win.
import { writeFileSync, readFileSync } from 'node:fs'
import { Session } from 'node:inspector'
import { fileURLToPath } from 'node:url'

interface Node { callFrame: { functionName: string, url: string, lineNumber: number }, selfSize: number, children: Node[] }

function record (file: string): void {
  const session = new Session()
  session.connect()
  const from = Number(process.env.ALLOC_FROM ?? 8000)
  const to = Number(process.env.ALLOC_TO ?? 14000)
  const samplingInterval = Number(process.env.ALLOC_INTERVAL ?? 4096)
  // ALLOC_LIVE=1: only what was allocated in the window and is still alive at its end, the kind of
  // object the young generation's collections copy (buffered messages, parked polls)
  const garbage = process.env.ALLOC_LIVE !== '1'
  setTimeout(() => {
    session.post('HeapProfiler.startSampling', { samplingInterval, includeObjectsCollectedByMajorGC: garbage, includeObjectsCollectedByMinorGC: garbage })
    setTimeout(() => {
      const stop = (): void => {
        session.post('HeapProfiler.stopSampling', (err, r) => {
          if (err === null) writeFileSync(file, JSON.stringify(r.profile))
        })
      }
      // a sample leaves the profile when a collection frees its object: collect first, so the
      // garbage of the last moments is not counted as alive
      if (garbage) stop()
      else session.post('HeapProfiler.collectGarbage', stop)
    }, Math.max(1, to - from)).unref()
  }, from).unref()
}

function summarize (file: string): void {
  const head = (JSON.parse(readFileSync(file, 'utf8')) as { head: Node }).head
  const self = new Map<string, number>()
  const inclusive = new Map<string, number>()
  let total = 0
  const walk = (n: Node, above: Set<string>): number => {
    const f = n.callFrame
    const key = `${f.functionName === '' ? '(anonymous)' : f.functionName} ${f.url.split('/').slice(-2).join('/')}:${f.lineNumber + 1}`
    total += n.selfSize
    self.set(key, (self.get(key) ?? 0) + n.selfSize)
    const inner = new Set(above).add(key)
    let sub = n.selfSize
    for (const c of n.children) sub += walk(c, inner)
    // a recursive frame counts once
    if (!above.has(key)) inclusive.set(key, (inclusive.get(key) ?? 0) + sub)
    return sub
  }
  walk(head, new Set())
  const top = (m: Map<string, number>, n: number): string => [...m].sort((a, b) => b[1] - a[1]).slice(0, n)
    .map(([k, v]) => `${(v / total * 100).toFixed(1).padStart(5)}%  ${k}`).join('\n')
  console.log(`sampled ${(total / 1e6).toFixed(1)} MB\n\nself:\n${top(self, 30)}\n\ninclusive:\n${top(inclusive, 40)}`)
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  if (process.argv[2] === undefined) throw new Error('usage: node benchmarks/micro/alloc-profile.ts <profile.json>')
  summarize(process.argv[2])
} else if (process.env.ALLOC_FILE !== undefined && process.env.ALLOC_FILE !== '') {
  record(process.env.ALLOC_FILE)
}
