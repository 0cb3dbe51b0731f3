import fs from 'node:fs'
const p = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
const target = process.argv[3]
const byId = new Map(p.nodes.map(n => [n.id, n]))
const selfT = new Map()
for (let i = 0; i < p.samples.length; i++) selfT.set(p.samples[i], (selfT.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0))
const parent = new Map(); for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
const key = (n) => `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url.split('/').slice(-2).join('/')}:${n.callFrame.lineNumber + 1}`
// subtree time per node
const sub = new Map()
for (const [id, t] of selfT) for (let x = id; x !== undefined; x = parent.get(x)) sub.set(x, (sub.get(x) ?? 0) + t)
const stacks = new Map()
for (const n of p.nodes) {
  if (!key(n).startsWith(target)) continue
  const chain = []; for (let x = parent.get(n.id), d = 0; x !== undefined && d < 6; x = parent.get(x), d++) chain.push(key(byId.get(x)))
  const k = chain.join(' < '); stacks.set(k, (stacks.get(k) ?? 0) + (sub.get(n.id) ?? 0))
}
for (const [k, t] of [...stacks].sort((a, b) => b[1] - a[1]).slice(0, 8)) console.log((t / 1000).toFixed(0) + 'ms', k)
