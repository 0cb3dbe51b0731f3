import fs from 'node:fs'
const b = JSON.parse(fs.readFileSync(process.argv[2], 'utf8')); const j = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'))
const m = j.snapshot.meta; const nf = m.node_fields.length; const ef = m.edge_fields.length
const idi = m.node_fields.indexOf('id'), ti = m.node_fields.indexOf('type'), ni = m.node_fields.indexOf('name'), eci = m.node_fields.indexOf('edge_count')
const ety = m.edge_fields.indexOf('type'), eni = m.edge_fields.indexOf('name_or_index'), eto = m.edge_fields.indexOf('to_node')
const old = new Set(); for (let i = 0; i < b.nodes.length; i += nf) old.add(b.nodes[i + idi])
const types = m.node_types[0]; const etypes = m.edge_types[0]
// first edge index per node
const firstEdge = new Int32Array(j.nodes.length / nf + 1); { let e = 0; for (let i = 0, n = 0; i < j.nodes.length; i += nf, n++) { firstEdge[n] = e; e += j.nodes[i + eci] * ef } }
const retainers = new Map()
{ let e = 0; for (let i = 0; i < j.nodes.length; i += nf) { const ec = j.nodes[i + eci]; for (let k = 0; k < ec; k++, e += ef) { const to = j.edges[e + eto]; if (!retainers.has(to)) retainers.set(to, []); if (retainers.get(to).length < 3) retainers.get(to).push([i, e]) } } }
const sig = new Map(); let shown = 0
for (let i = 0, n = 0; i < j.nodes.length; i += nf, n++) {
  if (types[j.nodes[i + ti]] !== 'object' || j.strings[j.nodes[i + ni]] !== 'Array' || old.has(j.nodes[i + idi])) continue
  const names = []; let hasProps = false
  for (let k = 0, e = firstEdge[n]; k < j.nodes[i + eci]; k++, e += ef) {
    const et = etypes[j.edges[e + ety]]
    if (et === 'property') names.push(j.strings[j.edges[e + eni]])
    if (et === 'internal' && j.strings[j.edges[e + eni]] === 'properties') hasProps = true
  }
  if (!hasProps) continue
  const r = (retainers.get(i) ?? []).map(([ri, re]) => types[j.nodes[ri + ti]] + ' ' + j.strings[j.nodes[ri + ni]].slice(0, 30) + '.' + (etypes[j.edges[re + ety]] === 'element' ? j.edges[re + eni] : j.strings[j.edges[re + eni]]))
  const key = names.join(',') + ' <= ' + r.join(' | ')
  sig.set(key, (sig.get(key) ?? 0) + 1)
}
for (const [k, v] of [...sig].sort((a, b) => b[1] - a[1]).slice(0, 10)) console.log(v, k)
