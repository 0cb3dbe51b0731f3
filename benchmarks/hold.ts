// Hold N idle SSE subscribers on this host for HOLD seconds (issue: 500,000 for 10 minutes on one
// 2-core box, server and load generator together), then prove every one is alive by publishing
// one message that all must receive.
//
//   SUBSCRIBERS=500000 HOLD=600 node benchmarks/hold.ts
//   SUBSCRIBERS=1000000 HOLD=300 node benchmarks/hold.ts   (with somaxconn and tcp_max_syn_backlog at
//                                                          65535, as conf/sysctl.d sets them)
//
// Knobs (env): SUBSCRIBERS (500000), HOLD (600 s), WORKERS (enough for ≤ 18,000 subscribers each),
// PORT (18900), REPORT (10 s), OUT (results file; `-` = none), LOG_LEVEL (the server's, `error`), ENTRY (`build`: the compiled
// dist/bin/parkline.js an installed package runs, built first; `source`: bin/parkline.ts).
// The server is `parkline serve --workers W`; the load generator is benchmarks/loadgen.ts (child
// processes of ≤ 18,000 sockets over many 127.x.y.z source addresses). Every 10 s it prints
// subscribers seen by the load generator and by the server's /status, closes, and memory: server
// PSS and RSS (primary + workers; PSS shares the pages the processes share, RSS counts them in every
// process), load generator PSS, MemAvailable, kernel TCP memory from
// /proc/net/sockstat. Loopback only; it stops by itself; it kills only what it started.
import { spawn, execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { LoadGenerator, MAX_PER_CHILD } from './loadgen.ts'

const env = process.env
const N = Number(env.SUBSCRIBERS ?? 500000)
const HOLD = Math.min(3600, Number(env.HOLD ?? 600))
const WORKERS = Number(env.WORKERS ?? Math.ceil(N / 18000))
const PORT = Number(env.PORT ?? 18900)
const REPORT = Number(env.REPORT ?? 10) * 1000
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const date = new Date().toISOString().slice(0, 10)
const OUT = env.OUT ?? `${ROOT}benchmarks/results/hold-${date}.md`
const ENTRY = env.ENTRY ?? 'build'

function log (line: string): void {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${line}\n`)
}

function rssOf (pids: number[]): number {
  let kb = 0
  for (const pid of pids) {
    try {
      const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
      if (m !== null) kb += Number(m[1])
    } catch {}
  }
  return kb * 1024
}

/** Proportional set size: each shared page counted once across the processes sharing it. */
function pssOf (pids: number[]): number {
  let kb = 0
  for (const pid of pids) {
    try {
      const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))
      if (m !== null) kb += Number(m[1])
    } catch {}
  }
  return kb * 1024
}

function childrenOf (pid: number): number[] {
  try {
    return execFileSync('ps', ['--ppid', String(pid), '-o', 'pid='], { encoding: 'utf8' }).trim().split(/\s+/).filter(Boolean).map(Number)
  } catch {
    return []
  }
}

function meminfo (key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/meminfo', 'utf8'))
  return m === null ? 0 : Number(m[1]) * 1024
}

function sockstat (): { inuse: number, memPages: number } {
  const m = /TCP: inuse (\d+) orphan \d+ tw \d+ alloc \d+ mem (\d+)/.exec(readFileSync('/proc/net/sockstat', 'utf8'))
  return m === null ? { inuse: 0, memPages: 0 } : { inuse: Number(m[1]), memPages: Number(m[2]) }
}

async function serverSubscribers (): Promise<number> {
  try {
    const r = await fetch(`http://127.0.0.1:${PORT}/status`, { signal: AbortSignal.timeout(5000) })
    const m = /^subscribers: (\d+)$/m.exec(await r.text())
    return m === null ? -1 : Number(m[1])
  } catch {
    return -1
  }
}

/** The kernel settings a ramp of this size depends on (conf/sysctl.d/90-parkline.conf sets them). */
function sysctls (): string {
  const read = (k: string): string => {
    try { return readFileSync(`/proc/sys/${k.replaceAll('.', '/')}`, 'utf8').trim().replace(/\s+/g, ' ') } catch { return '?' }
  }
  return ['net.core.somaxconn', 'net.ipv4.tcp_max_syn_backlog', 'net.ipv4.ip_local_port_range'].map((k) => `${k} = ${read(k)}`).join(', ')
}

const gib = (b: number): string => (b / 1073741824).toFixed(2) + ' GiB'

async function main (): Promise<void> {
  // read once, at the start: the results file reports the settings the ramp ran under
  const kernel = sysctls()
  log(`kernel: ${kernel}`)
  if (Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8')) < 65535 && N > 500000) {
    log('warning: somaxconn below 65535: a worker starved of CPU during the ramp can overflow its accept queue and connects then time out (conf/sysctl.d/90-parkline.conf; as root: sysctl -w net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535)')
  }
  const memAvailable0 = meminfo('MemAvailable')
  const sock0 = sockstat()
  let entry = `${ROOT}bin/parkline.ts`
  if (ENTRY === 'build') {
    execFileSync(process.execPath, [`${ROOT}bin/build.ts`], { stdio: ['ignore', 'ignore', 'inherit'] })
    entry = `${ROOT}dist/bin/parkline.js`
  }
  log(`starting ${entry.slice(ROOT.length)} with ${WORKERS} workers on 127.0.0.1:${PORT}`)
  const server = spawn(process.execPath, [entry, 'serve', '--workers', String(WORKERS), '--port', String(PORT),
    '--host', '127.0.0.1', '--log-level', env.LOG_LEVEL ?? 'error', '--drain-window', '0', '--max-subscribers', String(MAX_PER_CHILD + 1000)], { stdio: 'inherit' })
  // few sockets per source address: bind(addr, 0) searches that address's ports, so a full one is slow
  const lg = new LoadGenerator({ port: PORT, n: N, mode: 'sse', channel: 'hold', each: false, procs: Math.ceil(N / MAX_PER_CHILD), perAddr: Number(env.PER_ADDR ?? 1000), log })
  const rows: string[] = []
  let ok = false
  let summary = ''
  try {
    for (let i = 0; i < 600; i++) {
      if (childrenOf(server.pid!).length === (WORKERS === 1 ? 0 : WORKERS) && await serverSubscribers() === 0) break
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    const serverPids = (): number[] => [server.pid!, ...childrenOf(server.pid!)]
    const idlePids = serverPids()
    const base = rssOf(idlePids)
    const basePss = pssOf(idlePids)
    await lg.start()
    const t0 = Date.now()
    const ramped = await lg.ramp(20 * 60 * 1000)
    const rampS = (Date.now() - t0) / 1000
    log(`ramp: ${ramped.established}/${N} in ${rampS.toFixed(0)} s (${ramped.failed} failed)`)
    const sample = async (t: number): Promise<{ closed: number, line: string }> => {
      const c = await lg.counts()
      const srv = await serverSubscribers()
      const pids = serverPids()
      const serverRss = rssOf(pids)
      const serverPss = pssOf(pids)
      const lgPss = pssOf(lg.pids())
      const s = sockstat()
      const line = `| ${t} | ${c.established - c.closed} | ${srv} | ${c.closed} | ${gib(serverPss)} | ${gib(serverRss)} | ${gib(lgPss)} | ${gib(memAvailable0 - meminfo('MemAvailable'))} | ${s.inuse} | ${gib(s.memPages * 4096)} |`
      log(line)
      return { closed: c.closed, line }
    }
    const holdStart = Date.now()
    let closed = 0
    for (;;) {
      const t = Math.round((Date.now() - holdStart) / 1000)
      const s = await sample(t)
      rows.push(s.line)
      closed = s.closed
      if (t >= HOLD) break
      await new Promise((resolve) => setTimeout(resolve, Math.min(REPORT, HOLD * 1000 - (Date.now() - holdStart) + 50)))
    }
    // every subscriber alive: one broadcast, all N must receive it
    const before = (await lg.counts()).messages
    // a failed POST is reported (with its cause), and what arrived is still counted
    const pubT0 = Date.now()
    const pub = await fetch(`http://127.0.0.1:${PORT}/pub/hold`, { method: 'POST', body: Buffer.from('alive?') })
      .then((r) => ({ status: String(r.status), ms: Date.now() - pubT0 }), (err: Error) => ({ status: `no answer after ${Date.now() - pubT0} ms (${String((err.cause as Error | undefined)?.message ?? err.message)})`, ms: NaN }))
    let got = 0
    // every subscriber still connected must receive it (all N when the ramp and the hold lost none)
    const alive = ramped.established - closed
    const deadline = Date.now() + 120_000
    while (Date.now() < deadline && got < alive) {
      await new Promise((resolve) => setTimeout(resolve, 100))
      got = (await lg.counts()).messages - before
    }
    // from the POST to the last subscriber's copy, at the 100 ms the count is polled
    const fanoutS = (Date.now() - pubT0) / 1000
    const pids = serverPids()
    const serverRss = rssOf(pids)
    const serverPss = pssOf(pids)
    const allIn = serverPss / N
    summary = [
      `- subscribers: ${N} SSE on one channel, ${WORKERS} Parkline workers, ${lg.opts.procs} load-generator processes`,
      `- ramp: ${ramped.established} established in ${rampS.toFixed(0)} s, ${ramped.failed} failed`,
      `- held ${HOLD} s: ${closed} closed by the server or the network during the hold`,
      `- final broadcast: POST answered ${pub.status}${Number.isNaN(pub.ms) ? '' : ` in ${(pub.ms / 1000).toFixed(1)} s`}; received by ${got} of ${N} subscribers (${alive} connected)${got >= alive ? `, the last ${fanoutS.toFixed(1)} s after the POST` : ''}`,
      `- server all-in (PSS of the primary and every worker, baselines included): ${gib(serverPss)} held = **${Math.round(allIn)} B per subscriber**`,
      `- server PSS: ${gib(basePss)} idle → ${gib(serverPss)} held: ${Math.round((serverPss - basePss) / N)} B per subscriber, baselines excluded`,
      `- server RSS (shared pages counted in every process): ${gib(base)} idle → ${gib(serverRss)} held`,
      `- load generator PSS, held: ${gib(pssOf(lg.pids()))}`,
      `- host memory used (MemAvailable drop, kernel included): ${gib(memAvailable0 - meminfo('MemAvailable'))}; TCP sockets in use ${sock0.inuse} → ${sockstat().inuse}`
    ].join('\n')
    ok = ramped.failed === 0 && closed === 0 && got === N && pub.status === '201'
    log(summary.replaceAll('\n', '\n  '))
  } finally {
    await lg.stop().catch(() => {})
    server.kill('SIGTERM')
    await new Promise((resolve) => server.once('exit', resolve))
  }
  if (OUT !== '-') {
    let commit = 'unknown'
    try {
      commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim()
      // a tree with changes not committed yet says so: the figures are not that commit's alone
      if (execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: ROOT, encoding: 'utf8' }).trim() !== '') commit += ' with changes not committed'
    } catch {}
    writeFileSync(OUT, `# Holding ${N} SSE subscribers on one host (${date})\n\n` +
      `- command: \`SUBSCRIBERS=${N} HOLD=${HOLD} WORKERS=${WORKERS}${ENTRY === 'build' ? '' : ` ENTRY=${ENTRY}`}${env.LOG_LEVEL === undefined ? '' : ` LOG_LEVEL=${env.LOG_LEVEL}`} node benchmarks/hold.ts\`\n` +
      `- server: ${entry.slice(ROOT.length)}\n` +
      `- commit ${commit}; Node ${process.version}; ${execFileSync('nproc', { encoding: 'utf8' }).trim()} cores, MemTotal ${gib(meminfo('MemTotal'))}; ${kernel} (at the start)\n` +
      `- result: ${ok ? 'PASS' : 'FAIL'}\n${summary}\n\n` +
      '| t (s) | connected (load generator) | subscribers (/status) | closed | server PSS | server RSS | load gen PSS | host memory used | TCP sockets | kernel TCP mem |\n' +
      '|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n' + rows.join('\n') + '\n')
    log(`wrote ${OUT}`)
  }
  process.exit(ok ? 0 : 1)
}

main().catch((err: unknown) => {
  log(`hold failed: ${err instanceof Error ? `${err.stack ?? err.message}${err.cause === undefined ? '' : `\n  cause: ${String((err.cause as Error).stack ?? err.cause)}`}` : String(err)}`)
  process.exit(1)
})
