// Server CPU time per one-to-one message, for comparing trees of Parkline (and the floor) on a
// noisy shared machine: SUBSCRIBERS SSE subscribers on a channel each, then MESSAGES publishes of a
// 512 B body at RATE a second (open loop, paced every millisecond, round-robin over 32 publisher
// connections, pipelined), each to the next channel; the server's utime+stime over them
// (/proc/<pid>/stat) per message, user and system apart, with its minor page faults and its main
// thread's context switches (/proc/<pid>/status) per message. Every message must reach its
// subscriber and every publish be answered 2xx, or the run throws. Subscribers and publishers are
// raw sockets in this process, which only counts what it reads. Trees (and the floor, FLOOR=1:
// benchmarks/suite/floor-server.ts of the first tree) alternate round by round, a fresh server
// each; MESSAGES/5 more publishes before the measured ones warm it up (the measured ones start
// once all of those are answered and delivered, paced from then).
//
//   ROOTS=/path/to/base,/path/to/new ROUNDS=5 node benchmarks/micro/one2one-cpu.ts
import { openSync, readFileSync } from 'node:fs'
import net from 'node:net'
import { startFloor, startTree, treeRoots } from './tree-server.ts'

const env = process.env
const ROOTS = treeRoots()
const ROUNDS = Number(env.ROUNDS ?? 5)
const SUBSCRIBERS = Number(env.SUBSCRIBERS ?? 2000)
const MESSAGES = Number(env.MESSAGES ?? 100_000)
const RATE = Number(env.RATE ?? 10_000)
const PUBLISHERS = 32
/** NODE_ARGS: flags for Parkline's node (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`); the server then ends with SIGTERM, so a profile is written */
const NODE_ARGS = env.NODE_ARGS === undefined || env.NODE_ARGS === '' ? [] : env.NODE_ARGS.split(' ')
/** SPLIT=1: each publish's head and body in two writes (two segments), as some clients send them */
const SPLIT = env.SPLIT === '1'
const BODY = Buffer.alloc(512, 120)
const DATA = Buffer.from('data: ')
const ANSWER = Buffer.from('HTTP/1.1 2')

/** The server's counters: user and system CPU (s), minor page faults, context switches (voluntary, involuntary; main thread). */
interface Counters { user: number, sys: number, faults: number, vol: number, invol: number }

function counters (pid: number): Counters {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN)
  return { user: Number(f[11]) / 100, sys: Number(f[12]) / 100, faults: Number(f[7]), vol: field('voluntary_ctxt_switches'), invol: field('nonvoluntary_ctxt_switches') }
}

/** A counter of `needle` in a stream of chunks: one cut between two chunks is counted too. */
function counter (needle: Buffer): (chunk: Buffer) => number {
  let tail = Buffer.alloc(0)
  return (chunk) => {
    const buf = tail.length === 0 ? chunk : Buffer.concat([tail, chunk])
    tail = Buffer.from(buf.subarray(Math.max(0, buf.length - needle.length + 1)))
    return count(buf, needle)
  }
}

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

/** One run against a server: messages delivered and answered; its counters per message after the warm-up. */
async function run (pid: number, port: number): Promise<Counters> {
  let delivered = 0
  const subs: net.Socket[] = []
  for (let i = 0; i < SUBSCRIBERS; i++) {
    const s = await connect(port)
    const data = counter(DATA)
    s.on('data', (d: Buffer) => { delivered += data(d) })
    s.write(`GET /sub/o${i} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`)
    subs.push(s)
  }
  await new Promise((resolve) => setTimeout(resolve, 500))
  let answered = 0
  let refused = ''
  const pubs: net.Socket[] = []
  for (let i = 0; i < PUBLISHERS; i++) {
    const s = await connect(port)
    const ok = counter(ANSWER)
    const bad = [counter(Buffer.from('HTTP/1.1 4')), counter(Buffer.from('HTTP/1.1 5'))]
    s.on('data', (d: Buffer) => {
      answered += ok(d)
      if (bad[0]!(d) + bad[1]!(d) > 0 && refused === '') refused = d.toString('latin1', 0, 60)
    })
    pubs.push(s)
  }
  const heads = Array.from({ length: SUBSCRIBERS }, (_, i) =>
    Buffer.from(`POST /pub/o${i} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: ${BODY.length}\r\n\r\n`))
  const warm = Math.floor(MESSAGES / 5)
  const total = warm + MESSAGES
  let sent = 0
  let before: Counters | null = null
  const t0 = performance.now()
  // the schedule: `from` sends at `since`, then RATE a second (restarted after the warm-up)
  let since = t0
  let from = 0
  await new Promise<void>((resolve, reject) => {
    const timer = setInterval(() => {
      const due = Math.min(total, from + Math.floor((performance.now() - since) / 1000 * RATE))
      while (sent < due) {
        if (sent === warm && before === null) {
          if (answered < warm || delivered < warm) break // the warm-up's last answers first
          before = counters(pid)
          since = performance.now()
          from = warm
          break
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
  const after = counters(pid)
  for (const s of [...subs, ...pubs]) s.destroy()
  const per = (k: keyof Counters, scale: number): number => (after[k] - before![k]) / MESSAGES * scale
  return { user: per('user', 1e6), sys: per('sys', 1e6), faults: per('faults', 1), vol: per('vol', 1), invol: per('invol', 1) }
}

const servers = [...ROOTS.map((r) => ({ name: r, floor: false })), ...(env.FLOOR === '1' ? [{ name: `floor (${ROOTS[0]})`, floor: true }] : [])]
const serverLog = env.SERVER_LOG === undefined ? null : openSync(env.SERVER_LOG, 'a')
const results = new Map<string, Counters[]>(servers.map((s) => [s.name, []]))
for (let round = 0; round < ROUNDS; round++) {
  for (const s of servers) {
    // SERVER_LOG: Parkline's stdout and stderr appended to that file (e.g. with NODE_ARGS=--trace-gc)
    const log = s.floor || serverLog === null ? 'ignore' : serverLog
    const { child, port } = s.floor ? await startFloor(ROOTS[0]!) : await startTree(s.name, { nodeFlags: NODE_ARGS, stdio: ['ignore', log, log] })
    try {
      const c = await run(child.pid!, port)
      results.get(s.name)!.push(c)
      // how many requests Parkline read on its own path (the rest went to Node's HTTP server)
      const raw = s.floor ? '' : (/raw publisher requests: (\d+)/.exec(await (await fetch(`http://127.0.0.1:${port}/status`)).text())?.[1] ?? '?')
      process.stderr.write(`round ${round + 1} ${s.name}: ${(c.user + c.sys).toFixed(2)} µs CPU a message (user ${c.user.toFixed(2)}, system ${c.sys.toFixed(2)}), ${c.faults.toFixed(3)} page faults, ${c.vol.toFixed(3)} / ${c.invol.toFixed(3)} context switches${raw === '' ? '' : `; ${raw} requests on the raw path`}\n`)
    } finally {
      if (NODE_ARGS.length > 0 && !s.floor) {
        const exited = new Promise((resolve) => child.once('exit', resolve))
        child.kill('SIGTERM')
        await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 20_000))])
      }
      child.kill('SIGKILL')
    }
  }
}
const median = (xs: number[]): number => { const v = [...xs].sort((a, b) => a - b); return v[Math.floor(v.length / 2)]! }
console.log(`| server | µs CPU a message, median of ${ROUNDS} [each run] | user µs | system µs | minor page faults | main thread's context switches, voluntary / involuntary |\n|---|--:|--:|--:|--:|--:|`)
for (const [name, cs] of results) {
  const all = cs.map((c) => c.user + c.sys)
  const m = (k: keyof Counters, digits: number): string => median(cs.map((c) => c[k])).toFixed(digits)
  console.log(`| ${name} | ${median(all).toFixed(2)} [${all.map((x) => x.toFixed(2)).join(', ')}] | ${m('user', 2)} | ${m('sys', 2)} | ${m('faults', 3)} | ${m('vol', 3)} / ${m('invol', 3)} |`)
}
console.log('\n(per message; each column the median of its own)')
console.log(`\n${SUBSCRIBERS} SSE subscribers, ${MESSAGES} messages at ${RATE}/s (after ${Math.floor(MESSAGES / 5)} to warm up), 512 B, ${PUBLISHERS} publisher connections`)
