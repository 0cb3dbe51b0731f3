// Memory-reducing garbage collections in the standalone server (primary, each worker, or the
// single process), when it goes idle after being busy. Loading the code, and any burst of work (a
// connection ramp, a publish storm), leaves V8's young generation grown (16 MB and more committed)
// along with the burst's garbage. V8's own memory reducer gives that back only after a major
// collection has happened: a process that has had none (after start-up, or after a burst the old
// generation absorbed without one) keeps it, in every one of a host's dozens of workers. Measured:
// private dirty 37 → 28 MB per worker idle after start-up; the suite's memory scenario with and
// without the trim is in benchmarks/results/memory-idle-2026-11-30.md.
//
// One interval timer per process (unref'd), not per connection. Each tick reads the event loop's
// utilization since the last one: above BUSY marks the process busy; once busy, IDLE_TICKS ticks in
// a row below IDLE with a young generation above YOUNG_MIN run one collection. Start-up counts as
// busy. The collection is V8's 'last-resort' flavour (several full, compacting collections): a sync
// pause that grows with the heap (74 ms measured with 18,000 subscribers and 40 MB of heap), so
// the trims may take at most MAX_SHARE of the process's time: after a pause of p ms the next waits
// p / MAX_SHARE ms. A publish that arrives during the pause waits for it; nothing is lost.
// `/metrics`: parkline_heap_trims_total, parkline_heap_trim_seconds_total.
// PARKLINE_NO_HEAP_TRIM=1 turns it off. The embedded plugin never does this: the host application
// owns its heap.
//
import { performance } from 'node:perf_hooks'
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

type Gc = (options?: { type?: string, execution?: string, flavor?: string }) => void

/** Trims so far in this process, and the seconds they paused it (read by lib/metrics.ts). */
export const heapTrims = { count: 0, seconds: 0 }

let unavailable = false

/** V8's gc function, made for this call only (its vm context is then garbage): null if unavailable. */
function gcFunction (): Gc | null {
  const own = (globalThis as { gc?: unknown }).gc
  if (typeof own === 'function') return own as Gc
  // started with --expose-gc-as=NAME (or --expose-gc in a way that did not reach globalThis): the
  // process's own flag is left as it is, and nothing is trimmed
  if (/--expose[-_]gc/.test(process.execArgv.join(' ') + ' ' + (process.env.NODE_OPTIONS ?? ''))) return null
  try {
    setFlagsFromString('--expose-gc')
    const fn: unknown = runInNewContext('gc')
    return typeof fn === 'function' ? fn as Gc : null
  } catch {
    return null
  } finally {
    setFlagsFromString('--no-expose-gc')
  }
}

/** Runs the collection now (synchronous); false when V8's gc is not available here. */
export function trimHeap (): boolean {
  if (unavailable) return false
  const gc = gcFunction()
  if (gc === null) {
    unavailable = true
    return false
  }
  const t0 = performance.now()
  // 'last-resort' is V8's memory-reducing flavour: it shrinks the young generation and releases
  // the pages, where a 'regular' major collection keeps them committed
  gc({ type: 'major', execution: 'sync', flavor: 'last-resort' })
  heapTrims.count++
  heapTrims.seconds += (performance.now() - t0) / 1000
  return true
}

const TICK_MS = 1000
const BUSY = 0.05
const IDLE = 0.02
const IDLE_TICKS = 2
const YOUNG_MIN = 4 * 1048576
const MAX_SHARE = 0.01

/** Physical memory V8's young generation holds now. */
export function youngGeneration (): number {
  for (const s of getHeapSpaceStatistics()) if (s.space_name === 'new_space') return s.physical_space_size
  return 0
}

/** Starts the idle trim (unless PARKLINE_NO_HEAP_TRIM=1); returns a stop. */
export function startIdleTrim (opts: { maxShare?: number } = {}): () => void {
  if (process.env.PARKLINE_NO_HEAP_TRIM === '1') return () => {}
  const share = opts.maxShare ?? MAX_SHARE
  let gap = 0
  let last = performance.eventLoopUtilization()
  let busy = true
  let quiet = 0
  let lastTrim = -Infinity
  const timer = setInterval(() => {
    const now = performance.eventLoopUtilization()
    const u = performance.eventLoopUtilization(now, last).utilization
    last = now
    if (u > BUSY) { busy = true; quiet = 0; return }
    if (!busy || u > IDLE) { quiet = 0; return }
    if (++quiet < IDLE_TICKS) return
    if (performance.now() - lastTrim < gap) return
    busy = false
    quiet = 0
    if (youngGeneration() <= YOUNG_MIN) return
    const paused = heapTrims.seconds
    if (trimHeap()) {
      lastTrim = performance.now()
      gap = (heapTrims.seconds - paused) * 1000 / share
      // the pause itself must not read as the next busy spell
      last = performance.eventLoopUtilization()
    } else {
      clearInterval(timer)
    }
  }, TICK_MS)
  timer.unref()
  return () => clearInterval(timer)
}
