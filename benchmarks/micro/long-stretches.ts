// The main thread's long busy stretches in a V8 CPU profile (`node --cpu-prof`): runs of samples
// that are not idle (idle gaps of 1 ms or less are bridged) lasting at least BOUND ms, each with
// the functions that held it (inclusive). A sample's time runs until the next sample, so a thread
// the kernel took off its core inside a call is charged to that call: a `writeBuffer` or an
// `indexOf` of tens of milliseconds is the thread waiting for a core, not work.
//
//   PARKLINE_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" SERVERS=parkline SCENARIOS=one2one \
//     ONE2ONE_RATES=8000 STEP_DURATION=10 node benchmarks/run.ts
//   node benchmarks/micro/long-stretches.ts /tmp/prof/<file>.cpuprofile [BOUND ms (10)] [show (20)] [from s (0)]
//
// The first line lists every stretch from `from` seconds into the profile as start:length (ms).
import { readFileSync } from 'node:fs'
interface N { id: number, callFrame: { functionName: string, url: string, lineNumber: number }, children?: number[] }
const p = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as { nodes: N[], startTime: number, samples: number[], timeDeltas: number[] }
const bound = Number(process.argv[3] ?? 10) * 1000
const byId = new Map(p.nodes.map((n) => [n.id, n]))
const parent = new Map<number, number>()
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
const name = (n: N): string => `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url.split('/').slice(-1)[0]}:${n.callFrame.lineNumber + 1}`
let t = p.startTime
let runStart = -1; let runEnd = -1; let idleGap = 0
let runSamples: Array<[number, number]> = []
const runs: Array<{ at: number, len: number, samples: Array<[number, number]> }> = []
const flush = (): void => { if (runStart >= 0 && runEnd - runStart >= bound) runs.push({ at: (runStart - p.startTime) / 1e6, len: (runEnd - runStart) / 1000, samples: runSamples }); runStart = -1; runSamples = [] }
for (let i = 0; i < p.samples.length; i++) {
  t += p.timeDeltas[i]!
  const dt = p.timeDeltas[i + 1] ?? 0
  const n = byId.get(p.samples[i]!)!
  const idle = n.callFrame.functionName === '(idle)'
  if (idle) { idleGap += dt; if (idleGap > 1000) flush(); continue }
  idleGap = 0
  if (runStart < 0) runStart = t
  runEnd = t + dt
  runSamples.push([p.samples[i]!, dt])
}
flush()
console.log(`${runs.length} busy stretches >= ${bound / 1000} ms`)
const from = Number(process.argv[5] ?? 0)
console.log(runs.filter((r) => r.at >= from).map((r) => `${r.at.toFixed(1)}:${r.len.toFixed(0)}`).join(" "))
for (const r of runs.filter((r) => r.at >= from).slice(0, Number(process.argv[4] ?? 20))) {
  const incl = new Map<string, number>()
  for (const [id, dt] of r.samples) {
    const seen = new Set<string>()
    for (let x: number | undefined = id; x !== undefined; x = parent.get(x)) { const k = name(byId.get(x)!); if (!seen.has(k)) { seen.add(k); incl.set(k, (incl.get(k) ?? 0) + dt) } }
  }
  const topk = [...incl].filter(([k]) => !k.startsWith('(root)')).sort((a, b) => b[1] - a[1]).slice(0, 8).map(([k, v]) => `${k} ${(v / 1000).toFixed(1)}`)
  console.log(`t=${r.at.toFixed(2)} s: ${r.len.toFixed(1)} ms | ${topk.join(' | ')}`)
}
