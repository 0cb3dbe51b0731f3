import fs from 'node:fs'
const by = new Map()
for (const l of fs.readFileSync(process.argv[2], 'utf8').split('\n')) {
  const m = /^\[(\d+):\S+\]\s+(\d+) ms: pause=([\d.]+) .*gc=(\w+)/.exec(l); if (!m) continue
  const g = (k) => Number((new RegExp(' ' + k + '=([\\d.]+)')).exec(l)?.[1] ?? 0)
  const a = by.get(m[1]) ?? { n: 0, s: 0, mc: 0, pause: 0, prom: 0, surv: 0, maxp: 0 }
  a.n++; if (m[4] === 's') a.s++; else a.mc++
  a.pause += +m[3]; a.maxp = Math.max(a.maxp, +m[3]); a.prom += g('promoted'); a.surv += g('new_space_survived')
  by.set(m[1], a)
}
for (const [pid, a] of by) if (a.n > 20) console.log(pid, 'gcs', a.n, 'scav', a.s, 'mc', a.mc, 'pause total ms', a.pause.toFixed(0), 'max', a.maxp, 'promoted MB', (a.prom / 1e6).toFixed(1), 'survived MB', (a.surv / 1e6).toFixed(1))
