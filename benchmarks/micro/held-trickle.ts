// End to end, what a client trickling bytes costs the server: a publisher connection whose publish
// waits on a slow publishUpstreamUrl (it answers 304 after 8 s), while the client sends BYTES
// (65536) more one byte per write (TCP_NODELAY, one write per event-loop turn, at most 6 s). Prints
// the server process's CPU (utime + stime, /proc) over the trickle. ROOT is the tree whose
// bin/parkline.ts serves (a git worktree of another commit compares two; it needs node_modules).
//
//   node benchmarks/micro/held-trickle.ts                    this tree
//   ROOT=<another tree> node benchmarks/micro/held-trickle.ts
import { spawn } from 'node:child_process'
import http from 'node:http'
import net from 'node:net'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'

const root = process.env.ROOT ?? process.cwd()
const total = Number(process.env.BYTES ?? 65536)
const cpu = (pid: number): number => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return (Number(f[11]) + Number(f[12])) * 10 // ms (100 Hz)
}
const upstream = http.createServer((req, res) => { req.resume(); setTimeout(() => res.writeHead(304).end(), 8000) })
upstream.listen(0, '127.0.0.1')
await once(upstream, 'listening')
const up = (upstream.address() as net.AddressInfo).port
const probe = net.createServer().listen(0, '127.0.0.1')
await once(probe, 'listening')
const port = (probe.address() as net.AddressInfo).port
probe.close()
const srv = spawn(process.execPath, ['bin/parkline.ts', 'serve', '--port', String(port), '--host', '127.0.0.1', '--workers', '1', '--log-level', 'warn', '--publish-upstream-url', `http://127.0.0.1:${up}/up`], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] })
try {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => { const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true) }); s.on('error', () => resolve(false)) })
    if (ok) break
    await new Promise((r) => setTimeout(r, 100))
  }
  await new Promise((r) => setTimeout(r, 500))
  const c = net.connect(port, '127.0.0.1')
  c.setNoDelay(true)
  await once(c, 'connect')
  let answer = ''
  c.on('data', (d) => { answer += d.toString('latin1') })
  c.on('error', () => {})
  c.write('POST /pub/t HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\n\r\na')
  await new Promise((r) => setTimeout(r, 300))
  const before = cpu(srv.pid!)
  const t0 = performance.now()
  const one = Buffer.from('x')
  let sent = 0
  while (sent < total && performance.now() - t0 < 6000) {
    c.write(one)
    sent++
    await new Promise((r) => setImmediate(r))
  }
  const secs = (performance.now() - t0) / 1000
  await new Promise((r) => setTimeout(r, 200))
  const used = cpu(srv.pid!) - before
  console.log(JSON.stringify({ root, sent, secs: +secs.toFixed(2), serverCpuMs: used, answered: /^HTTP\/1\.1 /.test(answer) }))
  c.destroy()
} finally {
  srv.kill('SIGKILL')
  upstream.close()
}
