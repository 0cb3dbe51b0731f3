// A real `parkline serve` process (bin/parkline.ts) on a free loopback port, killed by the test's
// teardown: for worker, Redis and CLI tests. Its stdout and stderr (pino JSON) are kept.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync, readdirSync } from 'node:fs'
import type { ExecutionContext } from 'ava'
import { eventually, freePort } from './server.ts'

/**
 * The bound on a server's start-up in tests (not a timing): a file's tests start their nodes at
 * once (one with --workers 2 is three processes), beside the other files', on two cores; a start
 * took 4-7 s with two busy processes beside it, and once in CI more than 20 s.
 */
export const START_MS = 60_000

export interface Node { base: string, port: number, proc: ChildProcess, log: () => string }

export async function serve (t: ExecutionContext, args: string[], logLevel = 'error', env: NodeJS.ProcessEnv = process.env): Promise<Node> {
  const port = await freePort()
  const proc = spawn(process.execPath, ['bin/parkline.ts', 'serve', '--port', String(port), '--host', '127.0.0.1', '--log-level', logLevel, '--drain-window', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env })
  let out = ''
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  proc.stderr!.on('data', (d: Buffer) => { out += d.toString() })
  // a server that dies before its teardown says why (its log), beside the failures it causes
  let tornDown = false
  proc.once('exit', (code, signal) => {
    if (!tornDown) process.stderr.write(`parkline serve ${args.join(' ')} (port ${port}) exited before its teardown: code ${code}, signal ${signal}\n${out.slice(-8000)}\n`)
  })
  t.teardown(async () => {
    tornDown = true
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL')
      await once(proc, 'exit')
    }
  })
  const base = `http://127.0.0.1:${port}`
  const started = Date.now()
  const up = await eventually(async () => {
    try { return (await fetch(`${base}/health`)).status === 200 } catch { return false }
  }, START_MS)
  if (!up) throw new Error(`parkline serve ${args.join(' ')} did not start in ${Date.now() - started} ms (no 200 from /health); its processes:\n${processTree(proc.pid!)}\nits output: ${out === '' ? '(none)' : out}`)
  return { base, port, proc, log: () => out }
}

/** A process's tree as the kernel sees it: for a server that did not start, whether each process is running, sleeping (on what) or stopped, and its CPU time, one line each. */
export function processTree (root: number): string {
  const rows = new Map<number, { ppid: number, line: string }>()
  let names: string[] = []
  try { names = readdirSync('/proc').filter((n) => /^\d+$/.test(n)) } catch { return '(no /proc)' }
  for (const n of names) {
    try {
      const stat = readFileSync(`/proc/${n}/stat`, 'utf8')
      // pid (comm) state ppid … utime(14) stime(15) … num_threads(20)
      const close = stat.lastIndexOf(')')
      const f = stat.slice(close + 2).split(' ')
      let wchan = ''
      try { wchan = readFileSync(`/proc/${n}/wchan`, 'utf8') } catch {}
      rows.set(Number(n), { ppid: Number(f[1]), line: `pid ${n} ${stat.slice(stat.indexOf('('), close + 1)} state ${f[0]} wchan ${wchan || '-'} cpu ${Number(f[11]) + Number(f[12])} ticks threads ${f[17]}` })
    } catch {}
  }
  const out: string[] = []
  const walk = (pid: number, depth: number): void => {
    const r = rows.get(pid)
    if (r === undefined) { out.push(`pid ${pid}: gone`); return }
    out.push('  '.repeat(depth) + r.line)
    for (const [child, c] of rows) if (c.ppid === pid) walk(child, depth + 1)
  }
  walk(root, 0)
  return out.join('\n')
}
