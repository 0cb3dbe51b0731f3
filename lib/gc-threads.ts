// V8's background threads per server process: Node's `--v8-pool-size` (4 by default), the threads
// that mark, scavenge and sweep beside the main thread. On a host with few cores per server process
// they run on the core the process's own clients and the rest of the host need: on 2 cores, with one
// server process beside its load, a major collection's concurrent marking took both cores for ~80 ms
// and one-to-one publishes queued behind it (a 2-core measurement with 10,000 subscribers:
// benchmarks/results/gc-threads-2026-12-01.md: clean to 4,000-8,000 msgs/s with 4 threads, 8,000-12,000 with 1).
//
// `gcThreads` (0 = chosen for the host): the cores each server process has, less the one its main
// thread uses, at least 1 and at most Node's 4. The standalone server applies it at start: a
// single process re-executes itself in place (process.execve: same pid, same stdio, no second
// process) with the flag, first thing at start (lib/gc-threads-start.ts); the primary of a worker
// set passes it to the workers it forks. A `--v8-pool-size` given to Node (on its command line or
// in NODE_OPTIONS) wins, and a process started with an IPC channel or a debugger, or where
// execve is unavailable, keeps Node's default (restartBlocked). The embedded plugin never does
// this: the host application owns its process.
import { accessSync, constants } from 'node:fs'
import type { ParklineOptions } from './config.ts'

const NODE_DEFAULT = 4
const FLAG = /(^|\s)--v8-pool-size(=|\s|$)/

/** `gcThreads: 0` for `processes` server processes on `cores` cores. */
export function gcThreadsFor (cores: number, processes: number): number {
  return Math.min(NODE_DEFAULT, Math.max(1, Math.floor(cores / Math.max(1, processes)) - 1))
}

/** The thread count the options ask for (`gcThreads`, or chosen for the host). */
export function gcThreads (opts: Pick<ParklineOptions, 'gcThreads'>, cores: number, processes: number): number {
  return opts.gcThreads > 0 ? opts.gcThreads : gcThreadsFor(cores, processes)
}

/** Node was started with a pool size of its own (command line or NODE_OPTIONS). */
export function poolSizeGiven (execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): boolean {
  return execArgv.some((a) => FLAG.test(a)) || FLAG.test(nodeOptions)
}

/** `execArgv` for a forked worker: the primary's own, with the pool size set unless one was given. */
export function workerExecArgv (threads: number, execArgv: readonly string[] = process.execArgv): string[] {
  if (poolSizeGiven(execArgv)) return [...execArgv]
  return ['--v8-pool-size=' + threads, ...execArgv]
}

/** Set in the restarted process's environment (and removed from it at start): never restart twice. */
export const RESTARTED = 'PARKLINE_GC_RESTARTED'

/**
 * Why this process should not restart itself with a pool size, or null if it may. Node given a
 * pool size already; a process with an IPC channel (child_process.fork, node:cluster, PM2): a
 * restart would lose the channel; one being debugged (--inspect*, on the command line or in
 * NODE_OPTIONS); a platform or Node without
 * process.execve (Windows; Node before 22.15); a Node binary that cannot be executed (a failed
 * execve aborts the process on Node 22 and 24 instead of throwing).
 */
export function restartBlocked (env: NodeJS.ProcessEnv = process.env): string | null {
  if (env[RESTARTED] !== undefined) return 'restarted already'
  if (poolSizeGiven(process.execArgv, env.NODE_OPTIONS ?? '')) return 'a --v8-pool-size was given to Node'
  if (process.execArgv.some((a) => a.startsWith('--inspect')) || /(^|\s)--inspect/.test(env.NODE_OPTIONS ?? '')) return 'being debugged'
  if (process.channel !== undefined || env.NODE_UNIQUE_ID !== undefined) return 'started with an IPC channel'
  if (typeof process.execve !== 'function' || process.platform === 'win32') return 'process.execve is not available'
  try {
    accessSync(process.execPath, constants.X_OK)
  } catch {
    return 'the Node binary cannot be executed'
  }
  return null
}

/**
 * Re-executes this process in place with `--v8-pool-size=threads` unless restartBlocked says no;
 * returns only then (with the reason). Call it before anything is opened or written, stdout and
 * stderr included (lib/gc-threads-start.ts): Node makes a pipe non-blocking when it first writes
 * to it, and the restarted process would take that for the pipe's own state and leave it so.
 */
export function restartWithPoolSize (threads: number): string {
  const blocked = restartBlocked()
  if (blocked !== null) return blocked
  const args = [process.execPath, '--v8-pool-size=' + threads, ...process.execArgv, ...process.argv.slice(1)]
  process.execve!(process.execPath, args, { ...process.env, [RESTARTED]: String(threads) })
  return 'execve returned'
}
