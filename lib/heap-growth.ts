// How far V8 lets a standalone server process's old generation grow past what survived the last
// major collection before it starts the next one (V8's `--heap-growing-percent`).
//
// V8 sets that limit from the heap's live size and its own estimate of the collector's speed, and
// starts marking ahead of it while the room left is less than its young generation may need. Under
// a steady publish load V8 grows the young generation to its largest (64 MB on this 24 GiB host), so
// a server process whose live heap is a few tens of MB (10,000 subscribers) is never out of that
// zone: a mark-compact every 1-6 s, each one's marking taking most of the main thread for ~100 ms
// while publishes queue behind it. With the limit at (1 + heapGrowth/100) × the live size, the
// room stays above the young generation's and the old generation grows only by what is promoted:
// mark-compacts in a one-to-one run at 4,000 and 8,000 msgs/s went from 6-17 to 4, and the p99 at
// 4,000/s from 3.6-5.0 to 1.7-3.8 ms in the runs the host was quiet
// (benchmarks/results/heap-growth-2026-12-02.md).
//
// The cost is memory held between collections: garbage promoted to the old generation stays until
// the next one, at most heapGrowth% of the live heap. An idle process gives it back: the idle trim
// (lib/heap-trim.ts) runs a memory-reducing collection once the process goes quiet.
//
// V8 reads the flag each time it sets the limit, so it is set at start, in place, in every process
// of the standalone server (single, primary, workers). A `--heap-growing-percent` given to Node
// itself wins. The embedded plugin never sets it: the host application owns its heap (docs/configuration.md).
import { setFlagsFromString } from 'node:v8'

const FLAG = /(^|\s)--heap[-_]growing[-_]percent(=|\s|$)/

/** Node was started with a heap growing percent of its own (Node refuses it in NODE_OPTIONS). */
export function heapGrowthGiven (execArgv: readonly string[] = process.execArgv): boolean {
  return execArgv.some((a) => FLAG.test(a))
}

/**
 * V8 has a heap growing percent in this process: set here, or given to Node. Channel buffers then
 * keep their bytes in an arena (lib/core.ts, lib/byte-arena.ts): the smaller heap that leaves is
 * only safe from back-to-back collections with the growth set.
 */
export function heapGrowthSet (): boolean {
  return heapGrowthState.percent !== null || heapGrowthGiven()
}

/** What this process's heap growth was set to at start (null: V8's own), and why not if not. */
export const heapGrowthState: { percent: number | null, kept: string | null } = { percent: null, kept: null }

/** Set V8's heap growing percent unless `percent` is 0 or Node was given one; returns the state. */
export function applyHeapGrowth (percent: number, execArgv: readonly string[] = process.execArgv): typeof heapGrowthState {
  if (percent <= 0) {
    heapGrowthState.percent = null
    heapGrowthState.kept = 'heapGrowth is 0'
  } else if (heapGrowthGiven(execArgv)) {
    heapGrowthState.percent = null
    heapGrowthState.kept = 'a --heap-growing-percent was given to Node'
  } else {
    setFlagsFromString('--heap-growing-percent=' + percent)
    heapGrowthState.percent = percent
    heapGrowthState.kept = null
  }
  return heapGrowthState
}
