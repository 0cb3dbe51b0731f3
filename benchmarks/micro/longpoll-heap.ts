// What a long-poll re-poll leaves reachable in the server's heap: a standalone server (this tree,
// one process), N channels with one message each, N raw long-poll connections parked with their
// cursor; a heap snapshot; one publish per channel, every client re-polls with the new cursor
// and parks again; a second snapshot. Objects in the second that were not in the first (V8 keeps
// an object's snapshot id), grouped by type and name, per re-poll: the message and poll state a
// young collection has to copy and promote for each answer.
//
//   N=5000 node benchmarks/micro/longpoll-heap.ts
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const N = Number(process.env.N ?? 5000)
const TOP = Number(process.env.TOP ?? 16)
const dir = mkdtempSync(path.join(os.tmpdir(), 'parkline-lpheap-'))
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

const probe = net.createServer().listen(0, '127.0.0.1')
await once(probe, 'listening')
const port = (probe.address() as net.AddressInfo).port
probe.close()
// --v8-pool-size given: the server does not restart itself (lib/gc-threads-start.ts), so the signal reaches it
const server = spawn(process.execPath, ['--v8-pool-size=1', '--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${dir}`, 'bin/parkline.ts', 'serve', '--port', String(port), '--host', '127.0.0.1', '--workers', '1'],
  { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] })
const sockets: net.Socket[] = []
try {
  for (let i = 0; ; i++) {
    if (i === 200) throw new Error('the server did not start')
    await sleep(100)
    if (await fetch(`http://127.0.0.1:${port}/status`).then(() => true, () => false)) break
  }
  for (let i = 0; i < N; i++) await (await fetch(`http://127.0.0.1:${port}/pub/c${i}`, { method: 'POST', body: 'x'.repeat(512) })).arrayBuffer()

  // each client: the oldest message at once, then re-poll with the answer's cursor after every answer
  let answers = 0
  function client (i: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1')
      sockets.push(s)
      s.setEncoding('latin1')
      let buf = ''
      s.on('error', reject)
      s.on('data', (d: string) => {
        buf += d
        const end = buf.indexOf('\r\n\r\n')
        if (end === -1) return
        const length = Number(/content-length: (\d+)/i.exec(buf)?.[1] ?? 0)
        if (buf.length < end + 4 + length) return
        const lm = /last-modified: (.*)\r\n/i.exec(buf)![1]
        const etag = /etag: (.*)\r\n/i.exec(buf)![1]
        buf = ''
        answers++
        s.write(`GET /sub/c${i} HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-Modified-Since: ${lm}\r\nIf-None-Match: ${etag}\r\n\r\n`)
        resolve()
      })
      s.write(`GET /sub/c${i}?last_id=oldest HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)
    })
  }
  for (let i = 0; i < N; i += 200) await Promise.all(Array.from({ length: Math.min(200, N - i) }, (_, k) => client(i + k)))
  await sleep(1000)

  async function snapshot (name: string): Promise<string> {
    const before = new Set(readdirSync(dir))
    server.kill('SIGUSR2')
    for (let i = 0; i < 600; i++) {
      await sleep(200)
      const f = readdirSync(dir).filter((x) => !before.has(x) && x.endsWith('.heapsnapshot'))
      if (f.length === 0) continue
      // written once its size stops changing
      let size = -1
      for (;;) {
        await sleep(500)
        const now = statSync(path.join(dir, f[0]!)).size
        if (now === size) break
        size = now
      }
      const file = path.join(dir, name + '.heapsnapshot')
      renameSync(path.join(dir, f[0]!), file)
      return file
    }
    throw new Error('no heap snapshot')
  }
  const first = await snapshot('before')
  const parked = answers
  for (let i = 0; i < N; i++) await (await fetch(`http://127.0.0.1:${port}/pub/c${i}`, { method: 'POST', body: 'y'.repeat(512) })).arrayBuffer()
  for (let i = 0; i < 200 && answers < parked + N; i++) await sleep(50)
  if (answers < parked + N) throw new Error(`only ${answers - parked} of ${N} re-polls answered`)
  await sleep(1000)
  const second = await snapshot('after')

  interface Snapshot { snapshot: { meta: { node_fields: string[], node_types: [string[]] } }, nodes: number[], strings: string[] }
  const read = (f: string): Snapshot => JSON.parse(readFileSync(f, 'utf8')) as Snapshot
  const a = read(first)
  const fields = a.snapshot.meta.node_fields
  const nf = fields.length
  const ID = fields.indexOf('id')
  const seen = new Set<number>()
  for (let i = 0; i < a.nodes.length; i += nf) seen.add(a.nodes[i + ID]!)
  const b = read(second)
  const TYPE = fields.indexOf('type')
  const NAME = fields.indexOf('name')
  const SIZE = fields.indexOf('self_size')
  const types = b.snapshot.meta.node_types[0]
  const groups = new Map<string, [count: number, bytes: number]>()
  let total = 0
  for (let i = 0; i < b.nodes.length; i += nf) {
    if (seen.has(b.nodes[i + ID]!)) continue
    const type = types[b.nodes[i + TYPE]!]!
    // native objects get new ids in every snapshot: not new objects, left out
    if (type === 'native' || type === 'code' || type === 'synthetic') continue
    const name = type.endsWith('string') ? '' : b.strings[b.nodes[i + NAME]!]!.slice(0, 60)
    const g = groups.get(`${type} ${name}`) ?? [0, 0]
    g[0]++
    g[1] += b.nodes[i + SIZE]!
    groups.set(`${type} ${name}`, g)
    total += b.nodes[i + SIZE]!
  }
  console.log(`N=${N}: JS heap bytes new since the first snapshot and still reachable, per re-poll: ${(total / N).toFixed(0)}`)
  console.log('')
  console.log('| objects per re-poll | bytes per re-poll | type and name |')
  console.log('|--:|--:|---|')
  for (const [k, [count, bytes]] of [...groups].sort((x, y) => y[1][1] - x[1][1]).slice(0, TOP)) {
    console.log(`| ${(count / N).toFixed(2)} | ${(bytes / N).toFixed(1)} | ${k} |`)
  }
} finally {
  for (const s of sockets) s.destroy()
  server.kill('SIGKILL')
  rmSync(dir, { recursive: true, force: true })
}
