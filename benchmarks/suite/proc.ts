// /proc readers for the benchmark suite: per-process CPU time and memory, machine-wide kernel
// memory (meminfo, sockstat) and loopback bytes (net/dev). Linux only.
import { readdirSync, readFileSync } from 'node:fs'

const TICKS = 100 // USER_HZ on Linux

function read (file: string): string | null {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return null
  }
}

/** Fields of /proc/<pid>/stat after the command name (index 0 = state, field 3 of proc(5)). */
function statFields (pid: number): string[] | null {
  const s = read(`/proc/${pid}/stat`)
  if (s === null) return null
  return s.slice(s.lastIndexOf(')') + 2).split(' ')
}

/** utime + stime of a process in seconds, or null once it is gone. */
export function cpuSeconds (pid: number): number | null {
  const f = statFields(pid)
  if (f === null) return null
  return (Number(f[11]) + Number(f[12])) / TICKS
}

/** Direct children of a process (scans /proc: works on any kernel). */
export function childrenOf (pid: number): number[] {
  const out: number[] = []
  for (const name of readdirSync('/proc')) {
    if (name.charCodeAt(0) < 48 || name.charCodeAt(0) > 57) continue
    const f = statFields(Number(name))
    if (f !== null && Number(f[1]) === pid) out.push(Number(name))
  }
  return out
}

/** Proportional set size (shared pages split between their users), falling back to RSS; bytes. */
export function pssBytes (pid: number): number {
  const roll = read(`/proc/${pid}/smaps_rollup`)
  const m = roll === null ? null : /^Pss:\s+(\d+) kB/m.exec(roll)
  if (m !== null) return Number(m[1]) * 1024
  return rssBytes(pid)
}

export function rssBytes (pid: number): number {
  const s = read(`/proc/${pid}/status`)
  const m = s === null ? null : /^VmRSS:\s+(\d+) kB/m.exec(s)
  return m === null ? 0 : Number(m[1]) * 1024
}

/** Kernel-side memory, machine wide: slab (socket structures live there) and TCP buffer pages. */
export interface KernelMem { slab: number, tcpMem: number, memAvailable: number }

export function kernelMem (): KernelMem {
  const mi = read('/proc/meminfo') ?? ''
  const kb = (key: string): number => {
    const m = new RegExp('^' + key + ':\\s+(\\d+) kB', 'm').exec(mi)
    return m === null ? 0 : Number(m[1]) * 1024
  }
  const ss = /TCP:.* mem (\d+)/.exec(read('/proc/net/sockstat') ?? '')
  return { slab: kb('Slab'), tcpMem: ss === null ? 0 : Number(ss[1]) * 4096, memAvailable: kb('MemAvailable') }
}

/** Bytes received on lo so far (on loopback every byte sent is also received once). */
export function loBytes (): number {
  const m = /^\s*lo:\s*(\d+)/m.exec(read('/proc/net/dev') ?? '')
  return m === null ? 0 : Number(m[1])
}

/** CPU-time meter over a set of labelled processes. */
export class CpuMeter {
  readonly #start = new Map<number, number>()
  readonly #labels = new Map<number, string>()
  #t0 = 0

  start (procs: Array<{ pid: number, label: string }>): void {
    this.#start.clear()
    this.#labels.clear()
    for (const p of procs) {
      const c = cpuSeconds(p.pid)
      if (c === null) continue
      this.#start.set(p.pid, c)
      this.#labels.set(p.pid, p.label)
    }
    this.#t0 = performance.now()
  }

  /** Per process: percent of one core since start(). */
  stop (): Array<{ pid: number, label: string, pct: number }> {
    const wall = (performance.now() - this.#t0) / 1000
    const out: Array<{ pid: number, label: string, pct: number }> = []
    for (const [pid, c0] of this.#start) {
      const c = cpuSeconds(pid)
      if (c === null) continue
      out.push({ pid, label: this.#labels.get(pid)!, pct: wall > 0 ? (c - c0) / wall * 100 : 0 })
    }
    return out
  }
}

/** Machine-wide CPU jiffies from /proc/stat: busy (all but idle and iowait) and total. */
export function machineCpu (): { busy: number, total: number } {
  const line = (read('/proc/stat') ?? '').split('\n')[0] ?? ''
  const f = line.trim().split(/\s+/).slice(1).map(Number)
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0)
  return { busy: total - (f[3] ?? 0) - (f[4] ?? 0), total }
}
