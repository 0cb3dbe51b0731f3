// What a publish flood does to everybody else: CONNS keep-alive publisher connections, each with
// INFLIGHT pipelined publishes always outstanding, saturate one server process for DURATION s.
// Meanwhile the orchestrator opens a new connection every PROBE_MS and asks `/health` on it (what a
// load balancer's health check does), and asks `/health` on a kept-alive connection too; an SSE
// subscriber on another channel gets a message every PROBE_MS from its own publisher connection.
// Reported: how long each probe waited, how long the SSE messages took, and the flood's rate.
//
//   node benchmarks/publish-flood.ts        CONNS=1000 INFLIGHT=16 DURATION=10 GENERATORS=2 WORKERS=1
import { fork, spawn, type ChildProcess } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { once } from 'node:events'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort } from './suite/servers.ts'
import { reportFile } from './suite/out.ts'
import { openFlood } from './suite/flood.ts'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const CONNS = Number(process.env.CONNS ?? 1000)
const INFLIGHT = Number(process.env.INFLIGHT ?? 16)
const DURATION = Number(process.env.DURATION ?? 10)
const GENERATORS = Number(process.env.GENERATORS ?? 2)
const PROBE_MS = Number(process.env.PROBE_MS ?? 250)
const WORKERS = process.env.WORKERS ?? '1'
const BODY = 'x'.repeat(Number(process.env.BODY ?? 64))

/** A generator: `n` connections, each keeping `INFLIGHT` publishes outstanding until told to stop. */
async function generator (port: number, n: number, id: number): Promise<void> {
  const flood = await openFlood(port, n, INFLIGHT, (i) => `POST /pub/flood${id}-${i % 1000} HTTP/1.1\r\nHost: x\r\nContent-Length: ${BODY.length}\r\n\r\n${BODY}`)
  process.send!({ ready: true })
  process.on('message', (m: { stop?: boolean, count?: boolean }) => {
    if (m.count === true) process.send!({ answered: flood.answered() })
    if (m.stop === true) {
      flood.stop()
      process.send!({ answered: flood.answered() })
      setTimeout(() => process.exit(0), 100)
    }
  })
}

if (process.env.FLOOD_ROLE === 'generator') {
  await generator(Number(process.env.FLOOD_PORT), Number(process.env.FLOOD_N), Number(process.env.FLOOD_ID))
} else {
  const pct = (xs: number[], p: number): number => {
    if (xs.length === 0) return NaN
    const s = [...xs].sort((a, b) => a - b)
    return s[Math.min(s.length - 1, Math.floor(p * s.length))]
  }
  const round = (x: number): string => Number.isNaN(x) ? 'n/a' : x < 10 ? x.toFixed(2) : x.toFixed(0)

  const port = await freePort()
  const server = spawn(process.execPath, ['bin/parkline.ts', 'serve', '--workers', WORKERS, '--port', String(port), '--host', '127.0.0.1', '--log-level', 'error'], { cwd: ROOT, stdio: 'ignore' })
  const gens: ChildProcess[] = []
  try {
    for (let i = 0; i < 100; i++) {
      try { if ((await fetch(`http://127.0.0.1:${port}/health`)).ok) break } catch {}
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    // the SSE watcher and its publisher, and the kept-alive health connection, before the flood
    const sent = new Map<number, number>()
    const sseLat: number[] = []
    const watcher = net.connect(port, '127.0.0.1')
    watcher.on('error', () => {})
    await once(watcher, 'connect')
    watcher.write('GET /sub/watch HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n')
    watcher.on('data', (d: Buffer) => {
      for (const m of d.toString('latin1').matchAll(/data: w(\d+)/g)) {
        const t = sent.get(Number(m[1]))
        if (t !== undefined) sseLat.push(performance.now() - t)
      }
    })
    const pub = net.connect(port, '127.0.0.1')
    pub.on('error', () => {})
    await once(pub, 'connect')
    pub.on('data', () => {})
    const kept = net.connect(port, '127.0.0.1')
    kept.on('error', () => {})
    await once(kept, 'connect')
    await new Promise((resolve) => setTimeout(resolve, 200))

    for (let g = 0; g < GENERATORS; g++) {
      const child = fork(fileURLToPath(import.meta.url), [], { cwd: ROOT, env: { ...process.env, FLOOD_ROLE: 'generator', FLOOD_PORT: String(port), FLOOD_N: String(Math.ceil(CONNS / GENERATORS)), FLOOD_ID: String(g) }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
      gens.push(child)
    }
    await Promise.all(gens.map(async (g) => await new Promise((resolve) => g.once('message', resolve))))
    const counts = async (): Promise<number> => {
      const got = gens.map(async (g) => await new Promise<number>((resolve) => {
        g.once('message', (m: { answered: number }) => resolve(m.answered))
        g.send({ count: true })
      }))
      return (await Promise.all(got)).reduce((a, b) => a + b, 0)
    }
    await new Promise((resolve) => setTimeout(resolve, 1000))
    const a0 = await counts()
    const t0 = performance.now()

    const fresh: number[] = []
    let freshUnanswered = 0
    const keptLat: number[] = []
    const connectLat: number[] = []
    const probes: Array<Promise<void>> = []
    let seq = 0
    const end = t0 + DURATION * 1000
    while (performance.now() < end) {
      const id = ++seq
      sent.set(id, performance.now())
      pub.write(`POST /pub/watch HTTP/1.1\r\nHost: x\r\nContent-Length: ${String(id).length + 1}\r\n\r\nw${id}`)
      probes.push(new Promise<void>((resolve) => {
        const start = performance.now()
        const s = net.connect(port, '127.0.0.1')
        const timer = setTimeout(() => { freshUnanswered++; s.destroy(); resolve() }, 30000)
        s.on('error', () => { clearTimeout(timer); freshUnanswered++; resolve() })
        s.on('connect', () => { connectLat.push(performance.now() - start); s.write('GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n') })
        s.once('data', () => { fresh.push(performance.now() - start); clearTimeout(timer); s.destroy(); resolve() })
      }))
      const k0 = performance.now()
      kept.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n')
      await Promise.race([once(kept, 'data'), new Promise((resolve) => setTimeout(resolve, 30000))])
      keptLat.push(performance.now() - k0)
      const left = PROBE_MS - (performance.now() - k0)
      if (left > 0) await new Promise((resolve) => setTimeout(resolve, left))
    }
    const a1 = await counts()
    // how many of the flood's connections the server had taken by then (the rest still queued)
    let statusText = ''
    const onStatus = (d: Buffer): void => { statusText += d.toString('latin1') }
    kept.on('data', onStatus)
    kept.write('GET /status HTTP/1.1\r\nHost: x\r\n\r\n')
    for (let i = 0; i < 300 && !/raw publisher connections: \d+/.test(statusText); i++) await new Promise((resolve) => setTimeout(resolve, 100))
    kept.off('data', onStatus)
    const taken = Number(/raw publisher connections: (\d+)/.exec(statusText)?.[1] ?? NaN) - 1
    const seconds = (performance.now() - t0) / 1000
    for (const g of gens) g.send({ stop: true })
    await Promise.all(probes)
    await new Promise((resolve) => setTimeout(resolve, 500))
    const sseMissing = seq - sseLat.length

    const lines = [
      `# Publish flood against everybody else (${new Date().toISOString().slice(0, 10)})`,
      '',
      `- command: \`CONNS=${CONNS} INFLIGHT=${INFLIGHT} DURATION=${DURATION} GENERATORS=${GENERATORS} PROBE_MS=${PROBE_MS} WORKERS=${WORKERS} BODY=${BODY.length} node benchmarks/publish-flood.ts\``,
      `- machine: ${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}), Node ${process.version}, load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} at the end`,
      '',
      '| measure | value |',
      '|---|--:|',
      `| flood connections the server had taken at the end (of ${CONNS}) | ${taken} |`,
      `| flood: publishes answered per second | ${Math.round((a1 - a0) / seconds).toLocaleString('en-US')} |`,
      `| new connection, \`/health\` answered: p50 / p90 / max ms (${fresh.length} probes) | ${round(pct(fresh, 0.5))} / ${round(pct(fresh, 0.9))} / ${round(Math.max(...fresh))} |`,
      `| new connection, TCP connect: p50 / p90 / max ms | ${round(pct(connectLat, 0.5))} / ${round(pct(connectLat, 0.9))} / ${round(Math.max(...connectLat))} |`,
      `| new connection, \`/health\` not answered within 30 s | ${freshUnanswered} |`,
      `| kept-alive connection, \`/health\`: p50 / p90 / max ms | ${round(pct(keptLat, 0.5))} / ${round(pct(keptLat, 0.9))} / ${round(Math.max(...keptLat))} |`,
      `| SSE watcher on another channel, publish to delivery: p50 / p90 / max ms (${sseLat.length} messages) | ${round(pct(sseLat, 0.5))} / ${round(pct(sseLat, 0.9))} / ${round(Math.max(...sseLat))} |`,
      `| SSE messages not delivered by the end | ${sseMissing} |`,
      ''
    ]
    const text = lines.join('\n')
    process.stdout.write(text + '\n')
    writeFileSync(reportFile('publish-flood'), text)
    watcher.destroy(); pub.destroy(); kept.destroy()
  } finally {
    for (const g of gens) if (g.exitCode === null) g.kill()
    server.kill()
  }
}
