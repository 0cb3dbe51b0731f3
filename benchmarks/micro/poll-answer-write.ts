// A long-poll answer's write, two ways: the head string and the message's Buffer through
// cork/write/write/uncork (Node's writev of two chunks), or both copied into one Buffer and
// written once. The writer's own CPU (user and system) per answer, over CONNS loopback
// connections read by a child process, N answers per round, the two alternated for ROUNDS.
//
//   node benchmarks/micro/poll-answer-write.ts            (N=40000 CONNS=500 ROUNDS=5 BODY=512)
import { fork } from 'node:child_process'
import { once } from 'node:events'
import net from 'node:net'
import { fileURLToPath } from 'node:url'

const N = Number(process.env.N ?? 40000)
const CONNS = Number(process.env.CONNS ?? 500)
const ROUNDS = Number(process.env.ROUNDS ?? 5)
const BODY = Number(process.env.BODY ?? 512)

if (process.argv[2] === 'reader') {
  // the client side: connects, reads and drops every byte
  const port = Number(process.argv[3])
  let open = 0
  for (let i = 0; i < CONNS; i++) {
    const s = net.connect(port, '127.0.0.1', () => { if (++open === CONNS) process.send!('ready') })
    s.on('data', () => {})
    s.on('error', () => {})
  }
  process.on('disconnect', () => process.exit(0))
} else {
  const sockets: net.Socket[] = []
  const server = net.createServer((s) => { s.setNoDelay(true); sockets.push(s) })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const reader = fork(fileURLToPath(import.meta.url), ['reader', String((server.address() as net.AddressInfo).port)])
  await once(reader, 'message')
  while (sockets.length < CONNS) await new Promise((resolve) => setTimeout(resolve, 10))
  const head = 'HTTP/1.1 200 OK\r\nLast-Modified: Fri, 04 Dec 2026 17:50:00 GMT\r\nEtag: 0\r\nContent-Type: text/plain\r\n' +
    `Content-Length: ${BODY}\r\nVary: If-None-Match, If-Modified-Since\r\nCache-Control: no-cache\r\n` +
    'Date: Fri, 04 Dec 2026 17:50:01 GMT\r\nConnection: keep-alive\r\nKeep-Alive: timeout=72\r\n\r\n'
  const body = Buffer.alloc(BODY, 97)
  const ways: Record<string, (s: net.Socket) => void> = {
    writev: (s) => { s.cork(); s.write(head, 'latin1'); s.write(body); s.uncork() },
    'one write': (s) => {
      const out = Buffer.allocUnsafe(head.length + body.length)
      out.write(head, 0, 'latin1')
      body.copy(out, head.length)
      s.write(out)
    }
  }
  const sums: Record<string, number[]> = { writev: [], 'one write': [] }
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, write] of Object.entries(ways)) {
      const t0 = process.cpuUsage()
      for (let i = 0; i < N; i++) {
        write(sockets[i % CONNS]!)
        // a turn ends now and then, as a server's does: the writes complete, the reader keeps up
        if (i % CONNS === CONNS - 1) await new Promise((resolve) => setImmediate(resolve))
      }
      const c = process.cpuUsage(t0)
      sums[name]!.push((c.user + c.system) / N)
    }
  }
  const median = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!
  console.log(`${N} answers of ${head.length} + ${BODY} bytes per round over ${CONNS} connections, ${ROUNDS} rounds alternated; writer CPU per answer (µs)`)
  for (const [name, v] of Object.entries(sums)) console.log(`${name.padEnd(10)} median ${median(v).toFixed(2)}  [${v.map((x) => x.toFixed(2)).join(', ')}]`)
  reader.disconnect()
  server.close()
  for (const s of sockets) s.destroy()
}
