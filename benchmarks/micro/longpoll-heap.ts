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
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { newObjects, snapshot, table } from './heap-diff.ts'

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

  const first = await snapshot(server, dir, 'before')
  const parked = answers
  for (let i = 0; i < N; i++) await (await fetch(`http://127.0.0.1:${port}/pub/c${i}`, { method: 'POST', body: 'y'.repeat(512) })).arrayBuffer()
  for (let i = 0; i < 200 && answers < parked + N; i++) await sleep(50)
  if (answers < parked + N) throw new Error(`only ${answers - parked} of ${N} re-polls answered`)
  await sleep(1000)
  const second = await snapshot(server, dir, 'after')

  const objects = newObjects(first, second)
  console.log(`N=${N}: JS heap bytes new since the first snapshot and still reachable, per re-poll: ${(objects.total / N).toFixed(0)}`)
  console.log('')
  process.stdout.write(table(objects, N, 're-poll', TOP))
} finally {
  for (const s of sockets) s.destroy()
  server.kill('SIGKILL')
  rmSync(dir, { recursive: true, force: true })
}
