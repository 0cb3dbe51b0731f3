// scratch: what a parked raw long-poll retains. Start server with --heapsnapshot-signal, park N polls, snapshot.
import net from 'node:net'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
const N = Number(process.env.N ?? 5000)
const port = 18000 + Math.floor(Math.random() * 1000)
const dir = '/tmp/lpheap'; fs.rmSync(dir, { recursive: true, force: true }); fs.mkdirSync(dir)
const srv = spawn(process.execPath, ['--heapsnapshot-signal=SIGUSR2', '--diagnostic-dir=' + dir, 'bin/parkline.ts', 'serve', '--port', String(port), '--workers', '1'], { stdio: ['ignore', 'ignore', 'inherit'], cwd: '/work/main' })
const sleep = (ms) => new Promise(r => setTimeout(r, ms))
for (let i = 0; i < 100; i++) { await sleep(100); try { const r = await fetch(`http://127.0.0.1:${port}/pub/x`); break } catch {} }
// publish one message per channel
const heads = []
for (let i = 0; i < N; i++) {
  const r = await fetch(`http://127.0.0.1:${port}/pub/c${i}`, { method: 'POST', body: 'x'.repeat(512) })
  await r.text()
}
// first poll: answered at once with the message (cursor none = oldest); take Last-Modified/Etag
const socks = []
let parked = 0
let repolled = 0
async function one (i) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    socks.push(s)
    let buf = ''
    let stage = 0
    s.setEncoding('latin1')
    s.on('data', (d) => {
      buf += d
      if (true) {
        const e = buf.indexOf('\r\n\r\n'); if (e < 0) return
        const cl = Number(/content-length: (\d+)/i.exec(buf)[1]); if (buf.length < e + 4 + cl) return
        const lm = /last-modified: (.*)\r\n/i.exec(buf)[1]; const et = /etag: (.*)\r\n/i.exec(buf)[1]
        buf = ''; stage++
        s.write(`GET /sub/c${i} HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-Modified-Since: ${lm}\r\nIf-None-Match: ${et}\r\n\r\n`)
        if (stage === 1) setTimeout(resolve, 0); else repolled++
      }
    })
    s.write(`GET /sub/c${i}?last_id=oldest HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)
  })
}
async function snap (name) {
  const before = new Set(fs.readdirSync(dir))
  srv.kill('SIGUSR2')
  for (let i = 0; i < 600; i++) { await sleep(200); const f = fs.readdirSync(dir).filter(x => !before.has(x) && x.endsWith('.heapsnapshot')); if (f.length) { await sleep(2000); fs.renameSync(dir + '/' + f[0], dir + '/' + name + '.heapsnapshot'); return } }
}
await sleep(1000)
await snap('a')
for (let i = 0; i < N; i += 200) await Promise.all(Array.from({ length: Math.min(200, N - i) }, (_, k) => one(i + k)))
await sleep(1000)
const st = await (await fetch(`http://127.0.0.1:${port}/status`)).text().catch(() => '')
console.log(st.split('\n').filter(l => /subscri|raw/.test(l)).join('\n'))
await snap('b')
for (let i = 0; i < N; i++) { const r = await fetch(`http://127.0.0.1:${port}/pub/c${i}`, { method: 'POST', body: 'y'.repeat(512) }); await r.text() }
for (let i = 0; i < 100 && repolled < N; i++) await sleep(100)
console.log('repolled', repolled)
await sleep(1000)
await snap('c')
for (const s of socks) s.destroy()
srv.kill()
