// What stalled publishers can hold: N POSTs declare 1 MiB and send all but a few KiB, then stall.
// The server's RSS is sampled while they hang; each must get 408 within bodyTimeout and be closed,
// and the memory they held must come back. Bound by design: maxPublishing × maxMessageSize.
//
//   node benchmarks/slow-publishers.ts        N=200 BODY_TIMEOUT=5
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort } from './suite/servers.ts'
import { reportFile } from './suite/out.ts'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const N = Number(process.env.N ?? 200)
const BODY_TIMEOUT = Number(process.env.BODY_TIMEOUT ?? 5)
const DECLARED = 1048576
const SENT = 1040000

function rss (pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m === null ? 0 : Number(m[1]) * 1024
}


const port = await freePort()
const proc = spawn(process.execPath, ['bin/parkline.ts', 'serve', '--workers', '1', '--port', String(port), '--host', '127.0.0.1', '--log-level', 'error', '--body-timeout', String(BODY_TIMEOUT)], { cwd: ROOT, stdio: 'ignore' })
try {
  for (let i = 0; i < 100; i++) {
    try { if ((await fetch(`http://127.0.0.1:${port}/health`)).ok) break } catch {}
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  const before = rss(proc.pid!)
  const chunk = Buffer.alloc(SENT, 120)
  const results: Array<Promise<{ status: string, ms: number }>> = []
  const t0 = Date.now()
  for (let i = 0; i < N; i++) {
    const s = net.connect(port, '127.0.0.1')
    s.on('error', () => {})
    await once(s, 'connect')
    s.write(`POST /pub/slow${i} HTTP/1.1\r\nHost: x\r\nContent-Length: ${DECLARED}\r\n\r\n`)
    s.write(chunk)
    results.push(new Promise((resolve) => {
      let got = ''
      s.on('data', (d: Buffer) => { got += d.toString('latin1') })
      s.on('close', () => { resolve({ status: got.slice(9, 12), ms: Date.now() - t0 }) })
      // bounded: a connection still open after twice the deadline is counted as hanging
      setTimeout(() => { s.destroy() }, BODY_TIMEOUT * 2000 + 5000).unref()
    }))
  }
  let peak = 0
  const sampler = setInterval(() => { peak = Math.max(peak, rss(proc.pid!)) }, 100)
  const answers = await Promise.all(results)
  clearInterval(sampler)
  await new Promise((resolve) => setTimeout(resolve, 1000))
  const after = rss(proc.pid!)
  const by: Record<string, number> = {}
  for (const a of answers) by[a.status || 'none'] = (by[a.status || 'none'] ?? 0) + 1
  const last = Math.max(...answers.map((a) => a.ms))
  const day = new Date().toISOString().slice(0, 10)
  const md = `# Stalled publishers — ${day}\n\n` +
    `Command: \`N=${N} BODY_TIMEOUT=${BODY_TIMEOUT} node benchmarks/slow-publishers.ts\`, ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}. ` +
    `${N} POSTs declare ${DECLARED.toLocaleString('en')} B, send ${SENT.toLocaleString('en')} B and stall; \`parkline serve --workers 1 --body-timeout ${BODY_TIMEOUT}\` (maxPublishing 256).\n\n` +
    '| server RSS before | peak while stalled | 1 s after the answers | answers | last answer after |\n|--:|--:|--:|---|--:|\n' +
    `| ${(before / 1048576).toFixed(0)} MiB | ${(peak / 1048576).toFixed(0)} MiB | ${(after / 1048576).toFixed(0)} MiB | ${Object.entries(by).map(([k, v]) => `${v} × ${k}`).join(', ')} | ${(last / 1000).toFixed(1)} s |\n\n` +
    `Bound by design: at most maxPublishing (256) bodies are read at once, each at most maxMessageSize (1 MiB); the 257th is refused with 503.\n`
  process.stdout.write(md)
  const file = reportFile('slow-publishers')
  writeFileSync(file, md)
  process.stdout.write(`\nwrote ${path.relative(ROOT, file)}\n`)
} finally {
  proc.kill('SIGKILL')
}
