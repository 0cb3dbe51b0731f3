// What the kernel says of another process's time (Linux /proc/<pid>/task/<tid>/stat and schedstat):
// whether it is stopped, runnable, how long its threads have been on a core, and how long its main
// thread has been runnable but waiting for one. The primary reads it before ending a worker that
// went silent: on a host with more busy processes than cores (a broadcast to a million
// subscribers over 56 workers on 2 cores), a worker in the middle of a long turn waits for a core
// most of the time, and its silence says the host is overloaded, not that the worker is stuck.
import { readFileSync, readdirSync } from 'node:fs'

export interface Sched {
  /** When it was read (performance.now() ms). */
  at: number
  /** Stopped (SIGSTOP, a debugger): its main thread's state is T or t. */
  stopped: boolean
  /**
   * One of its threads is runnable (state R): on a core, or waiting for one. Its threads, not its
   * main thread alone: a main thread that waits for V8's helper threads (a collection's parallel
   * work) sleeps while they wait for a core.
   */
  runnable: boolean
  /** Time on a core since it began, its threads' together (ms). */
  runMs: number
  /**
   * Time its main thread (the event loop) spent runnable on a run queue, waiting for a core, since
   * it began (ms). The kernel adds a wait when it ends (the thread gets a core): one still going is
   * not in it yet.
   */
  waitMs: number
}

/** The process's scheduling state, or null where /proc or schedstat is not there or says nothing (not Linux, a kernel without CONFIG_SCHED_INFO or keeping no times, a pid gone). */
export function readSched (pid: number, now: number): Sched | null {
  let tids: string[]
  try {
    tids = readdirSync(`/proc/${pid}/task`)
  } catch {
    return null
  }
  const out: Sched = { at: now, stopped: false, runnable: false, runMs: 0, waitMs: 0 }
  let main = false
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'latin1')
      // "<on a core ns> <waiting on a run queue ns> <timeslices>"
      const f = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'latin1').split(' ')
      const runNs = Number(f[0])
      const waitNs = Number(f[1])
      if (!Number.isFinite(runNs) || !Number.isFinite(waitNs)) return null
      const state = stat.charAt(stat.lastIndexOf(')') + 2)
      if (tid === String(pid)) {
        // a kernel that keeps no such times writes zeros (sched_info off: no schedstats and no
        // delay accounting, on some versions and configurations); a worker that has run for
        // seconds has been on a core
        if (runNs === 0) return null
        main = true
        out.stopped = state === 'T' || state === 't'
        out.waitMs = waitNs / 1e6
      }
      if (state === 'R') out.runnable = true
      out.runMs += runNs / 1e6
    } catch {
      // a thread that ended meanwhile
    }
  }
  return main ? out : null
}

/**
 * Starved between readings `from` and `to`: not stopped, and waiting for a core at least `share`
 * of the time between them: its main thread's waits the kernel has counted come to that much, or
 * it was runnable at every reading (`runnableThroughout`, the caller's: readings a second apart)
 * and its threads were on a core for no more than the rest of the time together, so waiting for
 * one meanwhile (a wait that has not ended yet is not counted by the kernel: a process that gets
 * no core at all shows none).
 */
export function starved (from: Sched | null, to: Sched | null, runnableThroughout: boolean, share = 0.5): boolean {
  if (from === null || to === null || to.stopped) return false
  const elapsed = to.at - from.at
  if (elapsed <= 0) return false
  if (to.waitMs - from.waitMs >= elapsed * share) return true
  return runnableThroughout && to.runnable && to.runMs - from.runMs <= elapsed * (1 - share)
}
