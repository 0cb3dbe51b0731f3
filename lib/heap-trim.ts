// One memory-reducing garbage collection once the standalone server is up (primary, each worker,
// or the single process). Loading the code leaves V8's young generation grown to its maximum
// (16 MB committed) and the loader's garbage resident; V8 gives that back only from its memory
// reducer, which an idle process never starts. One collection per process gives back ~9 MB of
// private memory per process (measured: private dirty 37 → 28 MB per worker), which is most of the
// difference between a worker and a bare Node process on a host that runs dozens of them
// (benchmarks/hold.ts). The embedded plugin never calls this: the host application owns its heap.
//
// V8's `gc()` is reached without a command-line flag: with --expose-gc set through
// `v8.setFlagsFromString`, a new vm context has `gc`. The flag is cleared again at once, so no other
// context gets it. Where that is not available, nothing happens (tested on Node 22 and 24).
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

type Gc = (options?: { type?: string, execution?: string, flavor?: string }) => void

/** Runs the collection now (synchronous, ~10–20 ms on a fresh process); false when not available. */
export function trimHeap (): boolean {
  let gc: unknown = (globalThis as { gc?: unknown }).gc
  if (typeof gc !== 'function') {
    try {
      setFlagsFromString('--expose-gc')
      gc = runInNewContext('gc')
    } catch {
      return false
    } finally {
      setFlagsFromString('--no-expose-gc')
    }
  }
  if (typeof gc !== 'function') return false
  // 'last-resort' is V8's memory-reducing flavour: it shrinks the young generation and releases
  // the pages, where a 'regular' major collection keeps them committed
  ;(gc as Gc)({ type: 'major', execution: 'sync', flavor: 'last-resort' })
  return true
}

/** Once, a second after start-up, when the process has settled (one timer per process, unref'd). */
export function trimHeapSoon (ms = 1000): void {
  setTimeout(trimHeap, ms).unref()
}
