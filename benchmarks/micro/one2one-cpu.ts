// Server CPU time per one-to-one message, for comparing trees of Parkline (and the floor) on a
// noisy shared machine: SUBSCRIBERS SSE subscribers on a channel each, then MESSAGES publishes of a
// 512 B body at RATE a second (open loop, paced every millisecond, round-robin over 32 publisher
// connections, pipelined), each to the next channel; the server's utime+stime over them
// (/proc/<pid>/stat) per message. Every message must reach its subscriber and every publish be
// answered 2xx, or the run throws. Subscribers and publishers are raw sockets in this process,
// which only counts what it reads. Trees (and the floor, FLOOR=1: benchmarks/suite/floor-server.ts
// of the first tree) alternate round by round, a fresh server each; the first fifth of the
// messages of a run warms it up and is not counted.
//
//   ROOTS=/path/to/base,/path/to/new ROUNDS=5 node benchmarks/micro/one2one-cpu.ts
import { spawn, type ChildProcess } from 'node:child_process'
import net from 'node:net'
import path from 'node:path'
import { cpuSeconds } from '../suite/proc.ts'
import { startTree, treeRoots } from './tree-server.ts'

const env = process.env
const ROOTS = treeRoots()
const ROUNDS = Number(env.ROUNDS ?? 5)
const SUBSCRIBERS = Number(env.SUBSCRIBERS ?? 2000)
const MESSAGES = Number(env.MESSAGES ?? 100_000)
const RATE = Number(env.RATE ?? 10_000)
const PUBLISHERS = 32
/** SPLIT=1: each publish's head and body in two writes (two segments), as some clients send them */
const SPLIT = env.SPLIT === '1'
const BODY = Buffer.alloc(512, 120)
const DATA = Buffer.from('data: ')
const ANSWER = Buffer.from('HTTP/1.1 2')

function count (buf: Buffer, needle: Buffer): number {
  let n = 0
  for (let i = buf.indexOf(needle); i !== -1; i = buf.indexOf(needle, i + needle.length)) n++
  return n
}

async function connect (port: number): Promise<net.Socket> {
  const s = net.connect(port, '127.0.0.1')
  s.setNoDelay(true)
  await new Promise<void>((resolve, reject) => { s.once('connect', resolve); s.once('error', reject) })
  return s
}

async function startFloor (root: string): Promise<{ child: ChildProcess, port: number }> {
  const child = spawn(process.execPath, [path.join(root, 'benchmarks/suite/floor-server.ts'), '0'], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] })
  const port = await new Promise<number>((resolve, reject) => {
    let out = ''
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      const m = /listening on (\d+)/.exec(out)
      if (m !== null) resolve(Number(m[1]))
    })
    child.once('exit', () => reject(new Error('floor exited')))
  })
  return { child, port }
}

/** One run against a server: messages delivered and answered; CPU µs per message after the warm-up. */
async function run (pid: number, port: number): Promise<number> {
  let delivered = 0
  const subs: net.Socket[] = []
  for (let i = 0; i < SUBSCRIBERS; i++) {
    const s = await connect(port)
    s.on('data', (d: Buffer) => { delivered += count(d, DATA) })
    s.write(`GET /sub/o${i} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`)
    subs.push(s)
  }
  await new Promise((resolve) => setTimeout(resolve, 500))
  let answered = 0
  let refused = ''
  const pubs: net.Socket[] = []
  for (let i = 0; i < PUBLISHERS; i++) {
    const s = await connect(port)
    s.on('data', (d: Buffer) => {
      answered += count(d, ANSWER)
      if (count(d, Buffer.from('HTTP/1.1 ')) !== count(d, ANSWER)) refused = d.toString('latin1', 0, 60)
    })
    pubs.push(s)
  }
  const heads = Array.from({ length: SUBSCRIBERS }, (_, i) =>
    Buffer.from(`POST /pub/o${i} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: ${BODY.length}\r\n\r\n`))
  const warm = Math.floor(MESSAGES / 5)
  const total = warm + MESSAGES
  let sent = 0
  let before = 0
  const t0 = performance.now()
  await new Promise<void>((resolve, reject) => {
    const timer = setInterval(() => {
      const due = Math.min(total, Math.floor((performance.now() - t0) / 1000 * RATE))
      while (sent < due) {
        if (sent === warm) {
          if (answered < warm || delivered < warm) break // the warm-up's last answers first
          before = cpuSeconds(pid)!
        }
        const k = sent % SUBSCRIBERS
        const p = pubs[sent % PUBLISHERS]!
        if (SPLIT) {
          p.write(heads[k]!)
          p.write(BODY)
        } else p.write(Buffer.concat([heads[k]!, BODY]))
        sent++
      }
      if (refused !== '') { clearInterval(timer); reject(new Error(`refused: ${refused}`)) }
      if (sent === total && answered === total && delivered === total) { clearInterval(timer); resolve() }
      if (performance.now() - t0 > (total / RATE) * 1000 * 3 + 10_000) {
        clearInterval(timer)
        reject(new Error(`stuck: sent ${sent}, answered ${answered}, delivered ${delivered} of ${total}`))
      }
    }, 1)
  })
  const used = cpuSeconds(pid)! - before
  for (const s of [...subs, ...pubs]) s.destroy()
  return used / MESSAGES * 1e6
}

const servers = [...ROOTS.map((r) => ({ name: r, floor: false })), ...(env.FLOOR === '1' ? [{ name: `floor (${ROOTS[0]})`, floor: true }] : [])]
const results = new Map<string, number[]>(servers.map((s) => [s.name, []]))
for (let round = 0; round < ROUNDS; round++) {
  for (const s of servers) {
    const { child, port } = s.floor ? await startFloor(ROOTS[0]!) : await startTree(s.name)
    try {
      const us = await run(child.pid!, port)
      results.get(s.name)!.push(us)
      // how many requests Parkline read on its own path (the rest went to Node's HTTP server)
      const raw = s.floor ? '' : (/raw publisher requests: (\d+)/.exec(await (await fetch(`http://127.0.0.1:${port}/status`)).text())?.[1] ?? '?')
      process.stderr.write(`round ${round + 1} ${s.name}: ${us.toFixed(2)} µs CPU a message${raw === '' ? '' : `, ${raw} requests on the raw path`}\n`)
    } finally {
      child.kill('SIGKILL')
    }
  }
}
const median = (xs: number[]): number => { const v = [...xs].sort((a, b) => a - b); return v[Math.floor(v.length / 2)]! }
console.log(`| server | µs CPU a message, median of ${ROUNDS} [each run] |\n|---|--:|`)
for (const [name, xs] of results) console.log(`| ${name} | ${median(xs).toFixed(2)} [${xs.map((x) => x.toFixed(2)).join(', ')}] |`)
console.log(`\n${SUBSCRIBERS} SSE subscribers, ${MESSAGES} messages at ${RATE}/s (after ${Math.floor(MESSAGES / 5)} to warm up), 512 B, ${PUBLISHERS} publisher connections`)
