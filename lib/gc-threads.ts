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
// process) with the flag; the primary of a worker set passes it to the workers it forks. A
// `--v8-pool-size` given to Node (on its command line or in NODE_OPTIONS) wins. The embedded plugin
// never does this: the host application owns its process.
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

/**
 * Re-executes this process in place with `--v8-pool-size=threads`, unless Node already has a pool
 * size or cannot (Windows; Node before 22.15). Returns only when it did not: call it before
 * anything is opened.
 */
export function reexecWithPoolSize (threads: number, warn: (msg: string) => void): void {
  if (poolSizeGiven()) return
  const execve = process.execve
  if (typeof execve !== 'function' || process.platform === 'win32') return
  const args = [process.execPath, '--v8-pool-size=' + threads, ...process.execArgv, ...process.argv.slice(1)]
  try {
    execve.call(process, process.execPath, args, process.env)
  } catch (err) {
    warn(`could not restart with --v8-pool-size=${threads} (${(err as Error).message}); running with Node's default`)
  }
}
