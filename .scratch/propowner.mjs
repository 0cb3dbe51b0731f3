import fs from 'node:fs'
const b = JSON.parse(fs.readFileSync(process.argv[2], 'utf8')); const j = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'))
const m = j.snapshot.meta; const nf = m.node_fields.length; const ef = m.edge_fields.length
const idi = m.node_fields.indexOf('id'), ti = m.node_fields.indexOf('type'), ni = m.node_fields.indexOf('name'), eci = m.node_fields.indexOf('edge_count'), si = m.node_fields.indexOf('self_size')
const ety = m.edge_fields.indexOf('type'), eni = m.edge_fields.indexOf('name_or_index'), eto = m.edge_fields.indexOf('to_node')
const old = new Set(); for (let i = 0; i < b.nodes.length; i += b.snapshot.meta.node_fields.length) old.add(b.nodes[i + idi])
const types = m.node_types[0]; const etypes = m.edge_types[0]
const target = process.argv[4] ?? 'PropertyArray'
const owners = new Map(); let e = 0
for (let i = 0; i < j.nodes.length; i += nf) {
  const ec = j.nodes[i + eci]
  const ownerName = types[j.nodes[i + ti]] + ' ' + j.strings[j.nodes[i + ni]]
  for (let k = 0; k < ec; k++, e += ef) {
    const to = j.edges[e + eto]
    const tname = j.strings[j.nodes[to + ni]]
    if (!tname.includes(target)) continue
    if (old.has(j.nodes[to + idi])) continue
    const et = etypes[j.edges[e + ety]]
    const en = et === 'element' || et === 'hidden' ? j.edges[e + eni] : j.strings[j.edges[e + eni]]
    const key = ownerName.slice(0, 60) + ' --' + et + ':' + en + '--> ' + tname
    owners.set(key, (owners.get(key) ?? 0) + 1)
  }
}
for (const [k, v] of [...owners].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(v, k)
