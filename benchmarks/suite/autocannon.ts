// autocannon, typed, for every benchmark that loads it (the suite's publisher, auth.ts,
// redis-cluster.ts, the micro benchmarks): it ships no types, and its programmatic API returns a
// promise when given no callback.
import { createRequire } from 'node:module'

/** What the benchmarks read of an autocannon run. */
export interface AutocannonResult {
  duration: number
  errors: number
  timeouts: number
  non2xx: number
  '2xx': number
  requests: { average: number, total: number }
  latency: { p50: number, p99: number }
}

export const autocannon = createRequire(import.meta.url)('autocannon') as (opts: Record<string, unknown>) => Promise<AutocannonResult>
