import fs from 'node:fs'
function load (f) {
  const j = JSON.parse(fs.readFileSync(f, 'utf8'))
  const m = j.snapshot.meta; const nf = m.node_fields.length
  const ti = m.node_fields.indexOf('type'), ni = m.node_fields.indexOf('name'), si = m.node_fields.indexOf('self_size')
  const types = m.node_types[0]
  const agg = new Map()
  const n = j.nodes
  for (let i = 0; i < n.length; i += nf) {
    const t = types[n[i + ti]]; let name = j.strings[n[i + ni]]
    if (t === 'string' || t === 'concatenated string' || t === 'sliced string') name = t
    const key = t + ' ' + (name.length > 60 ? name.slice(0, 60) : name)
    const a = agg.get(key) ?? [0, 0]; a[0]++; a[1] += n[i + si]; agg.set(key, a)
  }
  return agg
}
const a = load(process.argv[2]), b = load(process.argv[3]); const N = Number(process.argv[4])
const rows = []
for (const [k, v] of b) { const u = a.get(k) ?? [0, 0]; const dc = v[0] - u[0], ds = v[1] - u[1]; if (Math.abs(ds) > N * 4) rows.push([k, dc, ds]) }
rows.sort((x, y) => y[2] - x[2])
let tot = 0; for (const r of rows) tot += r[2]
console.log('total delta bytes/poll', (tot / N).toFixed(0))
for (const r of rows.slice(0, 40)) console.log((r[1] / N).toFixed(2).padStart(7), (r[2] / N).toFixed(1).padStart(8), r[0])
