import fs from 'node:fs'
const p = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
const byId = new Map(p.nodes.map(n => [n.id, n]))
const selfT = new Map()
for (let i = 0; i < p.samples.length; i++) selfT.set(p.samples[i], (selfT.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0))
const parent = new Map(); for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
const key = (n) => `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url.split('/').slice(-2).join('/')}:${n.callFrame.lineNumber + 1}`
const incl = new Map(); let busy = 0
for (const [id, t] of selfT) {
  const n0 = byId.get(id); if (n0.callFrame.functionName === '(idle)') continue
  busy += t
  const seen = new Set()
  for (let x = id; x !== undefined; x = parent.get(x)) { const k = key(byId.get(x)); if (seen.has(k)) continue; seen.add(k); incl.set(k, (incl.get(k) ?? 0) + t) }
}
const N = Number(process.argv[4] ?? 1)
const rows = [...incl].sort((a, b) => b[1] - a[1]).slice(0, Number(process.argv[3] ?? 50))
for (const [k, t] of rows) console.log((t / busy * 100).toFixed(1).padStart(5) + '%', (t / N * 1000).toFixed(2).padStart(7) + ' µs/req', k)
console.log('busy ms', (busy / 1000).toFixed(0))
