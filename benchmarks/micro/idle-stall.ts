// How long the server's event loop stops, while it holds idle subscribers, for its once-a-second
// sweep (lib/core.ts tick: keepalives, deadlines, message expiry). A standalone server (one
// process) from each tree in ROOTS gets N idle SSE subscribers, each on a channel of its own, and
// CHANNELS more channels holding one message each; then for SECONDS nothing is published, and
// every event-loop turn longer than 5 ms is recorded inside the server (benchmarks/micro/loop-lag.ts,
// loaded with --import). KEEPALIVE (seconds, default 5) is the server's keepalive, short so that
// a run sees several. The idle heap trim (lib/heap-trim.ts, a collection of its own once the
// server goes idle after the fill) is switched off: it is not the sweep. Trees alternate round by round.
//
//   ROOTS=/path/to/base,/path/to/new ROUNDS=3 N=15000 CHANNELS=100000 SECONDS=20 node benchmarks/micro/idle-stall.ts
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { startTree } from './tree-server.ts'

const env = process.env
const HERE = path.dirname(fileURLToPath(import.meta.url))
const ROOTS = (env.ROOTS ?? path.resolve(HERE, '../..')).split(',')
const ROUNDS = Number(env.ROUNDS ?? 3)
const N = Number(env.N ?? 15000)
const CHANNELS = Number(env.CHANNELS ?? 100000)
const SECONDS = Number(env.SECONDS ?? 20)
const KEEPALIVE = Number(env.KEEPALIVE ?? 5)
const IN_FLIGHT = 256
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

async function subscribe (port: number, count: number): Promise<net.Socket[]> {
  const sockets: net.Socket[] = []
  const one = (i: number): Promise<void> => new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1')
    sockets.push(s)
    s.on('error', reject)
    s.once('data', () => { resolve() })
    s.write(`GET /sub/s${i} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`)
  })
  for (let i = 0; i < count; i += IN_FLIGHT) await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, count - i) }, (_, k) => one(i + k)))
  return sockets
}

/** One message on each of `count` channels, pipelined over 8 keep-alive connections. */
async function fill (port: number, count: number): Promise<void> {
  const per = Math.ceil(count / 8)
  await Promise.all(Array.from({ length: 8 }, async (_, c) => {
    const s = net.connect(port, '127.0.0.1')
    await new Promise((resolve) => s.once('connect', resolve))
    let answers = 0
    const want = Math.max(0, Math.min(per, count - c * per))
    let tail = ''
    const done = new Promise<void>((resolve) => {
      s.on('data', (d: Buffer) => {
        // answers counted by their status lines, one cut by the end of a read included
        const text = tail + d.toString('latin1')
        for (let i = text.indexOf('HTTP/1.1 '); i !== -1; i = text.indexOf('HTTP/1.1 ', i + 1)) answers++
        tail = text.slice(-8)
        if (answers >= want) resolve()
      })
      if (want === 0) resolve()
    })
    for (let i = 0; i < want; i += 1000) {
      let batch = ''
      for (let k = i; k < Math.min(want, i + 1000); k++) batch += `POST /pub/m${c * per + k} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello`
      s.write(batch)
      while (answers < Math.min(want, i + 1000) - 2000) await sleep(5)
    }
    await done
    s.destroy()
  }))
}

const stats = new Map<string, Array<{ max: number, over20: number, over50: number, total: number }>>(ROOTS.map((r) => [r, []]))
for (let round = 0; round < ROUNDS; round++) {
  for (const root of ROOTS) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'parkline-idle-stall-'))
    const file = path.join(dir, 'lag.txt')
    const { child, port } = await startTree(root, {
      nodeFlags: ['--import', path.join(HERE, 'loop-lag.ts')],
      env: { ...env, LAG_FILE: file, PARKLINE_KEEPALIVE: String(KEEPALIVE), PARKLINE_LOG_LEVEL: 'warn', PARKLINE_NO_HEAP_TRIM: '1' },
      stdio: ['ignore', 'ignore', 'inherit']
    })
    let held: net.Socket[] = []
    try {
      held = await subscribe(port, N)
      await fill(port, CHANNELS)
      await sleep(1000)
      const from = Number(readFileSync(file, { encoding: 'utf8', flag: 'a+' }).trim().split('\n').filter((l) => l !== '').length)
      await sleep(SECONDS * 1000)
      const gaps = readFileSync(file, 'utf8').trim().split('\n').filter((l) => l !== '').slice(from).map((l) => Number(l.split(' ')[1]))
      const r = { max: Math.max(0, ...gaps), over20: gaps.filter((g) => g > 20).length, over50: gaps.filter((g) => g > 50).length, total: gaps.reduce((a, b) => a + b, 0) }
      stats.get(root)!.push(r)
      process.stderr.write(`round ${round + 1} ${root}: longest stop ${r.max.toFixed(1)} ms, ${r.over20} over 20 ms, ${r.over50} over 50 ms, ${r.total.toFixed(0)} ms stopped in all (${gaps.length} turns over 5 ms) in ${SECONDS} s\n`)
    } finally {
      for (const s of held) s.destroy()
      child.kill('SIGKILL')
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
console.log(`N=${N} idle SSE subscribers, ${CHANNELS} more channels of one message, keepalive ${KEEPALIVE} s, ${SECONDS} s observed, ${ROUNDS} rounds`)
console.log('')
console.log('| tree | longest stop (ms), each round | turns over 20 ms, each round | ms stopped in turns over 5 ms, each round |')
console.log('|---|---|---|---|')
for (const root of ROOTS) {
  const xs = stats.get(root)!
  console.log(`| ${root} | ${xs.map((x) => x.max.toFixed(1)).join(' / ')} | ${xs.map((x) => x.over20).join(' / ')} | ${xs.map((x) => x.total.toFixed(0)).join(' / ')} |`)
}
