// Running a benchmark script from a test: a child Node process in the repository root, its report
// (BENCH_OUT) in a temp dir the test removes, killed after a bound so a hung run fails the test.
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ExecutionContext } from 'ava'
import { APT_LINE, nchanModule, nginxBinary } from '../../benchmarks/suite/servers.ts'
import { exitedWithOutput } from './server.ts'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

export interface BenchRun {
  code: number | null
  /** the last 8,000 characters of each stream when `tail` was asked for, else all of it */
  stdout: string
  stderr: string
  /** the report (BENCH_OUT), '' when none was written */
  doc: string
  /** BENCH_OUT's path, and the temp dir it is in (for files written beside it) */
  out: string
  dir: string
}

/**
 * Run `script` with `env` over this process's, BENCH_OUT set to `<temp dir>/<outName>`; SIGKILL
 * after `limitMs`. `env` may be made from the temp dir, for other paths to put in it. `tail`: keep
 * only the end of stdout and stderr (long runs print much).
 */
export async function runBench (t: ExecutionContext, script: string, env: Record<string, string> | ((dir: string) => Record<string, string>), limitMs: number,
  { outName = 'out.md', tail = false }: { outName?: string, tail?: boolean } = {}): Promise<BenchRun> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'parkline-bench-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const out = path.join(dir, outName)
  const child = spawn(process.execPath, [script], { cwd: ROOT, env: { ...process.env, ...(typeof env === 'function' ? env(dir) : env), BENCH_OUT: out }, stdio: ['ignore', 'pipe', 'pipe'] })
  const killer = setTimeout(() => child.kill('SIGKILL'), limitMs)
  let stdout = ''
  let stderr = ''
  const keep = (s: string, d: Buffer): string => tail ? (s + d.toString()).slice(-8000) : s + d.toString()
  child.stdout.on('data', (d: Buffer) => { stdout = keep(stdout, d) })
  child.stderr.on('data', (d: Buffer) => { stderr = keep(stderr, d) })
  const code = await exitedWithOutput(child)
  clearTimeout(killer)
  let doc = ''
  try { doc = readFileSync(out, 'utf8') } catch {}
  return { code, stdout, stderr, doc, out, dir }
}

/** Fails the test, saying how to install them, when nginx or its nchan module is missing; true when both are there. `who`: 'the suite needs', … */
export function haveNchan (t: ExecutionContext, who: string): boolean {
  if (nginxBinary() !== null && nchanModule() !== null) return true
  t.fail(`${who} nginx with the nchan module (nginx: ${nginxBinary() ?? 'missing'}, nchan module: ${nchanModule() ?? 'missing'}); install them with: ${APT_LINE}`)
  return false
}
