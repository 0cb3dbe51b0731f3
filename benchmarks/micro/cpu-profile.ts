// Sums a V8 CPU profile (`node --cpu-prof`) per function over a window: how busy the main thread
// was each second, then the functions by self time and by inclusive time (a recursive frame counts
// once), as a share of the busy time in the window. For a server the suite runs:
//
//   PARKLINE_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" SUBSCRIBERS=200 SCENARIOS=longpoll \
//     SERVERS=parkline ONE2ONE_RATES=8000 node benchmarks/run.ts
//   node benchmarks/micro/cpu-profile.ts /tmp/prof/<file>.cpuprofile 9:12
//
// The window is in seconds from the profile's start (the per-second line shows where the load was).
import { readFileSync } from 'node:fs'

interface ProfileNode { id: number, callFrame: { functionName: string, url: string, lineNumber: number }, children?: number[] }
interface Profile { nodes: ProfileNode[], startTime: number, endTime: number, samples: number[], timeDeltas: number[] }

const file = process.argv[2]
if (file === undefined) throw new Error('usage: node benchmarks/micro/cpu-profile.ts <file.cpuprofile> [from:to seconds] [top]')
const p = JSON.parse(readFileSync(file, 'utf8')) as Profile
const [from, to] = (process.argv[3] ?? '0:1e9').split(':').map(Number) as [number, number]
const top = Number(process.argv[4] ?? 30)

const byId = new Map(p.nodes.map((n) => [n.id, n]))
const parent = new Map<number, number>()
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
const key = (n: ProfileNode): string =>
  `${n.callFrame.functionName === '' ? '(anonymous)' : n.callFrame.functionName} ${n.callFrame.url.split('/').slice(-2).join('/')}:${n.callFrame.lineNumber + 1}`

// sample i lasted until the next sample (timeDeltas[i + 1])
const perSecond: Array<{ busy: number, all: number }> = []
const self = new Map<number, number>()
let t = p.startTime
for (let i = 0; i < p.samples.length; i++) {
  t += p.timeDeltas[i]!
  const dt = p.timeDeltas[i + 1] ?? 0
  const s = Math.floor((t - p.startTime) / 1e6)
  const idle = byId.get(p.samples[i]!)!.callFrame.functionName === '(idle)'
  const row = perSecond[s] ??= { busy: 0, all: 0 }
  row.all += dt
  if (!idle) row.busy += dt
  if (!idle && s >= from && s < to) self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + dt)
}
console.log(`profile ${((p.endTime - p.startTime) / 1e6).toFixed(1)} s; main thread busy per second: ` +
  perSecond.map((r, s) => `${s}:${r.all > 0 ? Math.round(r.busy / r.all * 100) : 0}%`).join(' '))

const selfBy = new Map<string, number>()
const inclusive = new Map<string, number>()
let busy = 0
for (const [id, us] of self) {
  busy += us
  const n = byId.get(id)!
  selfBy.set(key(n), (selfBy.get(key(n)) ?? 0) + us)
  const seen = new Set<string>()
  for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
    const k = key(byId.get(at)!)
    if (seen.has(k)) continue
    seen.add(k)
    inclusive.set(k, (inclusive.get(k) ?? 0) + us)
  }
}
const list = (m: Map<string, number>): string => [...m].sort((a, b) => b[1] - a[1]).slice(0, top)
  .map(([k, us]) => `${(us / busy * 100).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(6)} ms  ${k}`).join('\n')
console.log(`window ${from}-${Math.min(to, perSecond.length)} s: ${(busy / 1000).toFixed(0)} ms busy\n\nself:\n${list(selfBy)}\n\ninclusive:\n${list(inclusive)}`)
