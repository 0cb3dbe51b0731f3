// What access control costs, side by side in one run: publishes/s and SSE subscribes/s with a JWT
// vs none, and long-poll polls/s with Nchan's authorize request, its cache on and off.
//
//   npm run bench:auth                       DURATION=5 (seconds per row) CONNECTIONS=50
//
// Each row starts a fresh `parkline serve --workers 1` (its own process); the load (autocannon for
// publishes and polls, a connect-head-close loop for SSE subscribes) and the authorize upstream
// (a node:http server answering 204) run in this process. Results: stdout and
// benchmarks/results/auth-<date>.md (or BENCH_OUT).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { SignJWT } from 'jose'
import { freePort } from './suite/servers.ts'
import { autocannon } from './suite/autocannon.ts'
import { reportFile } from './suite/out.ts'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const DURATION = Number(process.env.DURATION ?? 5)
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 50)
const SECRET = 'bench-secret-that-is-at-least-32-bytes'
const KEY = 'bench-publisher-key'

async function startParkline (args: string[]): Promise<{ port: number, proc: ChildProcess }> {
  const port = await freePort()
  const proc = spawn(process.execPath, ['bin/parkline.ts', 'serve', '--workers', '1', '--port', String(port), '--host', '127.0.0.1', '--log-level', 'error', ...args], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] })
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/health`)).status === 200) return { port, proc }
    } catch {}
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  proc.kill('SIGKILL')
  throw new Error('parkline did not start')
}

async function stop (proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null) return
  proc.kill('SIGKILL')
  await once(proc, 'exit')
}

async function cannon (url: string, opts: Record<string, unknown>): Promise<{ rps: number, p99: number, bad: number }> {
  const r = await autocannon({ url, connections: CONNECTIONS, duration: DURATION, ...opts })
  return { rps: r['2xx'] / r.duration, p99: r.latency.p99, bad: r.non2xx + r.errors }
}

/** SSE subscribes per second: CONNECTIONS loops of connect, read the 200 head, close. */
async function sseSubscribes (port: number, headers: string): Promise<{ rps: number, p99: number, bad: number }> {
  const deadline = Date.now() + DURATION * 1000
  let ok = 0
  let bad = 0
  const lat: number[] = []
  const one = async (): Promise<void> => {
    const t0 = performance.now()
    const s = net.connect(port, '127.0.0.1')
    s.on('error', () => {})
    await once(s, 'connect')
    s.write(`GET /sub/bench HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n${headers}\r\n`)
    const [d] = await once(s, 'data') as [Buffer]
    if (d.toString('latin1', 0, 12) === 'HTTP/1.1 200') ok++
    else bad++
    lat.push(performance.now() - t0)
    s.destroy()
  }
  await Promise.all(Array.from({ length: CONNECTIONS }, async () => { while (Date.now() < deadline) await one() }))
  lat.sort((a, b) => a - b)
  return { rps: ok / DURATION, p99: lat[Math.floor(lat.length * 0.99)] ?? 0, bad }
}

interface Row { measure: string, config: string, rps: number, p99: number, bad: number }

async function main (): Promise<void> {
  const token = await new SignJWT({ sub: 'bench', parkline: { subscribe: ['*'], publish: ['*'] } })
    .setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setExpirationTime('1h').sign(new TextEncoder().encode(SECRET))
  let upstreamHits = 0
  const upstream = http.createServer((_req, res) => { upstreamHits++; res.writeHead(204).end() })
  upstream.listen(0, '127.0.0.1')
  await once(upstream, 'listening')
  const authorizeUrl = `http://127.0.0.1:${(upstream.address() as net.AddressInfo).port}/auth`
  const rows: Row[] = []
  const run = async (config: string, args: string[], body: (port: number) => Promise<Row[]>): Promise<void> => {
    const { port, proc } = await startParkline(args)
    try {
      rows.push(...await body(port))
    } finally {
      await stop(proc)
    }
    process.stdout.write(`${config}: done\n`)
  }
  const publishAndSubscribe = (config: string, auth: Record<string, string>, sseHeader: string) => async (port: number): Promise<Row[]> => {
    const pub = await cannon(`http://127.0.0.1:${port}/pub/bench`, { method: 'POST', body: 'hello', headers: { 'content-type': 'text/plain', ...auth }, pipelining: 1 })
    const sub = await sseSubscribes(port, sseHeader)
    return [{ measure: 'publishes/s', config, ...pub }, { measure: 'SSE subscribes/s', config, ...sub }]
  }
  await run('none', [], publishAndSubscribe('no auth', {}, ''))
  await run('jwt', ['--jwt-secret', SECRET], publishAndSubscribe('JWT (HS256)', { authorization: 'Bearer ' + token }, `Authorization: Bearer ${token}\r\n`))
  const polls = (config: string) => async (port: number): Promise<Row[]> => {
    // one buffered message: every poll without a cursor is answered from the buffer at once
    await fetch(`http://127.0.0.1:${port}/pub/lp`, { method: 'POST', body: 'x', headers: { authorization: 'Bearer ' + KEY } })
    upstreamHits = 0
    const r = await cannon(`http://127.0.0.1:${port}/sub/lp`, { headers: { cookie: 'session=abc' } })
    return [{ measure: `long-poll polls/s (authorize upstream hits: ${upstreamHits})`, config, ...r }]
  }
  await run('lp-none', [], polls('no auth'))
  await run('lp-cache', ['--api-key', KEY, '--authorize-url', authorizeUrl, '--authorize-cache-ttl', '5'], polls('authorizeUrl, cache 5 s'))
  await run('lp-nocache', ['--api-key', KEY, '--authorize-url', authorizeUrl, '--authorize-cache-ttl', '0'], polls('authorizeUrl, cache off'))
  upstream.close()

  const commit = spawnText('git', ['rev-parse', '--short', 'HEAD'])
  let md = `# Access control cost — ${new Date().toISOString().slice(0, 10)}\n\n` +
    `Command: \`npm run bench:auth\` (DURATION=${DURATION}, CONNECTIONS=${CONNECTIONS}), commit ${commit}, ` +
    `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}. One \`parkline serve --workers 1\` per row; ` +
    'load generator (autocannon, or a connect-head-close loop for SSE) and the authorize upstream in the bench process, same host.\n\n' +
    '| measure | config | per second | ratio to no auth | p99 ms | errors/non-2xx |\n|---|---|--:|--:|--:|--:|\n'
  const base = new Map<string, number>()
  for (const r of rows) if (r.config === 'no auth') base.set(r.measure.replace(/ \(.*/, ''), r.rps)
  for (const r of rows) {
    const b = base.get(r.measure.replace(/ \(.*/, '')) ?? 0
    md += `| ${r.measure} | ${r.config} | ${Math.round(r.rps).toLocaleString('en')} | ${b > 0 ? (r.rps / b).toFixed(2) + '×' : ''} | ${r.p99.toFixed(1)} | ${r.bad} |\n`
  }
  md += '\nNotes: the JWT rows re-send one token, so after the first request its verification comes from the ' +
    'verified-token cache (lib/auth.ts; revocation is still checked each time). With the authorize cache off, ' +
    'identical polls in flight at the same moment still share one upstream call, hence fewer upstream hits than polls. ' +
    'Rows are single runs of a few seconds on a shared 2-core box: differences of ±15% are noise.\n'
  process.stdout.write('\n' + md)
  const file = reportFile('auth')
  writeFileSync(file, md)
  process.stdout.write(`\nwrote ${path.relative(ROOT, file)}\n`)
}

function spawnText (cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { cwd: ROOT, encoding: 'utf8' }).trim()
  } catch {
    return 'unknown'
  }
}

await main()
