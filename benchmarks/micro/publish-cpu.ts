// Server CPU time per publish, for comparing two trees of Parkline on a noisy shared machine:
// a fixed number of pipelined publishes (autocannon -c 100 -p 10 -a N, a 512 B body, one channel
// without subscribers, one process), and the server's utime+stime over them (/proc/<pid>/stat).
// CPU per request moves far less with the neighbours' load than requests/s does. Trees alternate
// round by round; a fresh server per run; the first REQUESTS/5 publishes of each run warm it up.
//
//   ROOTS=/path/to/base,/path/to/new ROUNDS=5 REQUESTS=400000 node benchmarks/micro/publish-cpu.ts
import { cpuSeconds } from '../suite/proc.ts'
import { autocannon, startTree, treeRoots, type AutocannonResult } from './tree-server.ts'


const env = process.env
const ROOTS = treeRoots()
const ROUNDS = Number(env.ROUNDS ?? 5)
const REQUESTS = Number(env.REQUESTS ?? 400000)
const BODY = Buffer.alloc(512, 120)

function load (port: number, amount: number): Promise<AutocannonResult> {
  return autocannon({ url: `http://127.0.0.1:${port}/pub/cpu`, method: 'POST', body: BODY, connections: 100, pipelining: 10, amount })
}

const results = new Map<string, number[]>(ROOTS.map((r) => [r, []]))
for (let round = 0; round < ROUNDS; round++) {
  for (const root of ROOTS) {
    const { child, port } = await startTree(root)
    try {
      await load(port, Math.floor(REQUESTS / 5))
      const before = cpuSeconds(child.pid!)!
      const r = await load(port, REQUESTS)
      const used = cpuSeconds(child.pid!)! - before
      if (r.non2xx > 0 || r.errors > 0) throw new Error(`${root}: ${r.non2xx} non-2xx, ${r.errors} errors`)
      const us = used / r.requests.total * 1e6
      results.get(root)!.push(us)
      process.stderr.write(`round ${round + 1} ${root}: ${r.requests.total} publishes, ${us.toFixed(2)} µs CPU each, ${Math.round(r.requests.average)} req/s\n`)
    } finally {
      child.kill('SIGKILL')
    }
  }
}
const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]! }
console.log('| tree | µs of server CPU per publish, each round | median |')
console.log('|---|---|--:|')
for (const [root, xs] of results) console.log(`| ${root} | ${xs.map((x) => x.toFixed(2)).join(' / ')} | ${median(xs).toFixed(2)} |`)
