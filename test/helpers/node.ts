// A real `parkline serve` process (bin/parkline.ts) on a free loopback port, killed by the test's
// teardown: for worker, Redis and CLI tests. Its stdout and stderr (pino JSON) are kept.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import type { ExecutionContext } from 'ava'
import { eventually, freePort } from './server.ts'

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
  // a bound on start-up, not a timing: a file's tests start their nodes at once (one with
  // --workers 2 is three processes), beside the other files', on two cores
  const started = Date.now()
  const up = await eventually(async () => {
    try { return (await fetch(`${base}/health`)).status === 200 } catch { return false }
  }, 60000)
  if (!up) throw new Error(`parkline serve ${args.join(' ')} did not start in ${Date.now() - started} ms (no 200 from /health); its output: ${out === '' ? '(none)' : out}`)
  return { base, port, proc, log: () => out }
}
