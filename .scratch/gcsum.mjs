import fs from 'node:fs'
const rows = []
for (const l of fs.readFileSync(process.argv[2], 'utf8').split('\n')) {
  const m = /^\[(\d+):\S+\]\s+(\d+) ms: pause=([\d.]+) .*gc=(\w+)/.exec(l); if (!m) continue
  const g = (k) => Number((new RegExp(' ' + k + '=([\\d.]+)')).exec(l)?.[1])
  rows.push({ pid: m[1], t: +m[2], pause: +m[3], gc: m[4], promoted: g('promoted'), survived: g('new_space_survived'), cap: g('new_space_capacity'), alloc: g('allocated') })
}
for (const r of rows) console.log(r.pid, r.t, r.gc, r.pause, 'prom', (r.promoted / 1e6).toFixed(2), 'surv', (r.survived / 1e6).toFixed(2), 'cap', (r.cap / 1e6).toFixed(1))
