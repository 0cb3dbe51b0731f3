import fs from 'node:fs'
function load (f) { return JSON.parse(fs.readFileSync(f, 'utf8')) }
const b = load(process.argv[2]); const N = Number(process.argv[4])
const m = b.snapshot.meta; const nf = m.node_fields.length; const idi = m.node_fields.indexOf('id')
const ids = new Set(); for (let i = 0; i < b.nodes.length; i += nf) ids.add(b.nodes[i + idi])
const j = load(process.argv[3]); const ti = m.node_fields.indexOf('type'), ni = m.node_fields.indexOf('name'), si = m.node_fields.indexOf('self_size')
const types = m.node_types[0]; const agg = new Map(); let tot = 0
for (let i = 0; i < j.nodes.length; i += nf) {
  if (ids.has(j.nodes[i + idi])) continue
  const t = types[j.nodes[i + ti]]; let name = j.strings[j.nodes[i + ni]]
  if (t === 'string' || t === 'concatenated string' || t === 'sliced string') name = t + ':' + name.slice(0, 40)
  const key = t + ' ' + name.slice(0, 70)
  const a = agg.get(key) ?? [0, 0]; a[0]++; a[1] += j.nodes[i + si]; agg.set(key, a); tot += j.nodes[i + si]
}
console.log('new bytes per poll', (tot / N).toFixed(0))
const rows = [...agg].sort((x, y) => y[1][1] - x[1][1]).slice(0, 40)
for (const [k, v] of rows) console.log((v[0] / N).toFixed(2).padStart(7), (v[1] / N).toFixed(1).padStart(8), k)
