// Sums a V8 `--trace-gc-nvp` log per process: young (scavenge) and full collections, bytes that
// survived and were promoted, GC pause in all and the longest. For a server run by the suite with
// PARKLINE_NODE_ARGS=--trace-gc-nvp BENCH_SERVER_LOG=<file>; processes with fewer than MIN_GCS
// collections (helpers, the pre-restart process) are left out.
//
//   node benchmarks/micro/gc-log.ts <file> [<file> ...]
import { readFileSync } from 'node:fs'

const MIN_GCS = Number(process.env.MIN_GCS ?? 20)
const LINE = /^\[(\d+):\S+\]\s+\d+ ms: pause=([\d.]+) .*gc=(\w+)/

interface Totals { young: number, full: number, survived: number, promoted: number, pause: number, longest: number }

function field (line: string, name: string): number {
  const m = new RegExp(` ${name}=([\\d.]+)`).exec(line)
  return m === null ? 0 : Number(m[1])
}

console.log('| log | pid | young collections | full collections | survived (MB) | promoted (MB) | GC pause in all (ms) | longest (ms) |')
console.log('|---|--:|--:|--:|--:|--:|--:|--:|')
for (const file of process.argv.slice(2)) {
  const by = new Map<string, Totals>()
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = LINE.exec(line)
    if (m === null) continue
    const t = by.get(m[1]!) ?? { young: 0, full: 0, survived: 0, promoted: 0, pause: 0, longest: 0 }
    if (m[3] === 's') t.young++
    else t.full++
    const pause = Number(m[2])
    t.pause += pause
    t.longest = Math.max(t.longest, pause)
    t.survived += field(line, 'new_space_survived')
    t.promoted += field(line, 'promoted')
    by.set(m[1]!, t)
  }
  for (const [pid, t] of by) {
    if (t.young + t.full < MIN_GCS) continue
    console.log(`| ${file} | ${pid} | ${t.young} | ${t.full} | ${(t.survived / 1e6).toFixed(1)} | ${(t.promoted / 1e6).toFixed(1)} | ${t.pause.toFixed(0)} | ${t.longest} |`)
  }
}
