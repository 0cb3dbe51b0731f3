// Counters for /status and /metrics (EXTENSION f). Plain integers on the hot path; text is built
// only when someone asks.

const BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]

export class Stats {
  readonly transportNames: readonly string[]
  published = 0
  readonly delivered: number[]
  gapsEvicted = 0
  gapsExpired = 0
  gapsDropped = 0
  overflowDisconnect = 0
  overflowDropOldest = 0
  refused = 0
  readonly #buckets: number[]
  #latencyCount = 0
  #latencySum = 0

  constructor (transportNames: readonly string[]) {
    this.transportNames = transportNames
    this.delivered = new Array<number>(transportNames.length).fill(0)
    this.#buckets = new Array<number>(BUCKETS.length).fill(0)
  }

  gap (cause: 'evicted' | 'expired' | 'dropped'): void {
    if (cause === 'evicted') this.gapsEvicted++
    else if (cause === 'expired') this.gapsExpired++
    else this.gapsDropped++
  }

  /** Publish-to-last-write latency of one fan-out, in ms. */
  observeDelivery (ms: number): void {
    const s = ms / 1000
    this.#latencyCount++
    this.#latencySum += s
    for (let i = 0; i < BUCKETS.length; i++) if (s <= BUCKETS[i]!) this.#buckets[i]!++
  }

  histogramLines (name: string): string {
    let out = `# TYPE ${name} histogram\n`
    for (let i = 0; i < BUCKETS.length; i++) out += `${name}_bucket{le="${BUCKETS[i]}"} ${this.#buckets[i]}\n`
    out += `${name}_bucket{le="+Inf"} ${this.#latencyCount}\n${name}_sum ${this.#latencySum}\n${name}_count ${this.#latencyCount}\n`
    return out
  }
}
