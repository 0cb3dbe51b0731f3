// What a subscriber that never reads can pin, with the kernel's default TCP buffers and with the
// tuned ones of conf/sysctl.d (net.ipv4.tcp_wmem max 64 KiB): N SSE clients connect and stop
// reading, messages are published until each one is cut at its queue cap, and the server's kernel
// send queue (ss Send-Q) is summed at its peak. User space holds at most queueCap on top.
//
//   sudo node benchmarks/slow-subscribers.ts      N=200 SIZE=4096 (needs root: it sets
//                                                  net.ipv4.tcp_wmem and puts the original back)
import { execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort } from './suite/servers.ts'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const N = Number(process.env.N ?? 200)
const SIZE = Number(process.env.SIZE ?? 4096)
const WMEM = '/proc/sys/net/ipv4/tcp_wmem'
const TUNED = '4096 4096 65536'


/** Sum of Send-Q over the server's established sockets on `port`. */
function sendQueue (port: number): number {
  const out = execFileSync('ss', ['-tnH', 'state', 'established', `( sport = :${port} )`], { encoding: 'utf8' })
  let sum = 0
  for (const line of out.split('\n')) {
    const f = line.trim().split(/\s+/)
    if (f.length >= 2) sum += Number(f[1])
  }
  return sum
}

async function run (label: string, wmem: string): Promise<{ label: string, wmem: string, peak: number, perSub: number, cut: number }> {
  writeFileSync(WMEM, wmem)
  const port = await freePort()
  const proc = spawn(process.execPath, ['bin/parkline.ts', 'serve', '--workers', '1', '--port', String(port), '--host', '127.0.0.1', '--log-level', 'error', '--max-subscribers', String(N + 100)], { cwd: ROOT, stdio: 'ignore' })
  try {
    for (let i = 0; i < 100; i++) {
      try { if ((await fetch(`http://127.0.0.1:${port}/health`)).ok) break } catch {}
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    const clients: net.Socket[] = []
    for (let i = 0; i < N; i++) {
      const s = net.connect(port, '127.0.0.1')
      s.on('error', () => {})
      await once(s, 'connect')
      s.write('GET /sub/slow HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n')
      clients.push(s)
    }
    await new Promise((resolve) => setTimeout(resolve, 500))
    for (const s of clients) s.pause()
    const body = 'x'.repeat(SIZE)
    let peak = 0
    let cut = 0
    // bounded: at most 2,000 publishes, or until every client was cut at its cap
    for (let i = 0; i < 2000; i++) {
      await fetch(`http://127.0.0.1:${port}/pub/slow`, { method: 'POST', body })
      if (i % 10 === 0) {
        peak = Math.max(peak, sendQueue(port))
        const info = await (await fetch(`http://127.0.0.1:${port}/pub/slow`, { headers: { accept: 'text/json' } })).json() as { subscribers: number }
        cut = N - info.subscribers
        if (info.subscribers === 0) break
      }
    }
    for (const s of clients) s.destroy()
    return { label, wmem, peak, perSub: Math.round(peak / N), cut }
  } finally {
    proc.kill('SIGKILL')
  }
}

const original = readFileSync(WMEM, 'utf8').trim().replace(/\s+/g, ' ')
const rows = []
try {
  rows.push(await run('kernel default (this host)', original))
  rows.push(await run('tuned (conf/sysctl.d)', TUNED))
} finally {
  writeFileSync(WMEM, original)
}
const day = new Date().toISOString().slice(0, 10)
let md = `# What a never-reading subscriber pins — ${day}\n\n` +
  `Command: \`sudo N=${N} SIZE=${SIZE} node benchmarks/slow-subscribers.ts\`, ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ` +
  `kernel ${os.release()}, Node ${process.version}. ${N} SSE subscribers stop reading; ${SIZE}-byte messages are published until each is cut ` +
  'at its queue cap (64 KiB, policy disconnect); the server\'s kernel send queue (ss Send-Q, summed) is sampled every 10 publishes.\n\n' +
  '| net.ipv4.tcp_wmem | peak server Send-Q | per stalled subscriber (kernel) | + user space (queueCap) | subscribers cut |\n|---|--:|--:|--:|--:|\n'
for (const r of rows) md += `| ${r.label}: \`${r.wmem}\` | ${r.peak.toLocaleString('en')} B | ${r.perSub.toLocaleString('en')} B | ${(r.perSub + 65536).toLocaleString('en')} B | ${r.cut} of ${N} |\n`
process.stdout.write(md)
const file = path.join(ROOT, 'benchmarks', 'results', `slow-subscribers-${day}.md`)
writeFileSync(file, md)
process.stdout.write(`\nwrote ${path.relative(ROOT, file)}\n`)
