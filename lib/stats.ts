// Counters for /status and /metrics (EXTENSION f). Plain integers on the hot path; lib/metrics.ts
// reads them when scraped.

/** Why new subscribers were refused (Stats.refusedBy, parkline_connections_refused_total's `reason`). */
export const REFUSAL_REASONS = ['draining', 'capacity', 'unavailable', 'user_limit'] as const

export class Stats {
  readonly transportNames: readonly string[]
  published = 0
  readonly delivered: number[]
  gapsEvicted = 0
  gapsExpired = 0
  gapsDropped = 0
  overflowDisconnect = 0
  overflowDropOldest = 0
  /**
   * New subscribers refused, by why (REFUSAL_REASONS): draining, at the connection limit, the store
   * or an owner away (503); a user at maxSubscribersPerUser (429).
   */
  readonly refusedBy: [number, number, number, number] = [0, 0, 0, 0]
  get refused (): number { return this.refusedBy[0] + this.refusedBy[1] + this.refusedBy[2] + this.refusedBy[3] }
  /** Messages dropped for slow subscribers (queuePolicy drop-oldest). */
  messagesDropped = 0
  /** Publisher, long-poll and stream connections the standalone server reads itself now (lib/raw-publish.ts). */
  rawConnections = 0
  /** Requests read on them (publishes, long-polls, streams' requests). */
  rawRequests = 0
  /** Of those, long-polls (GET on the subscriber location). */
  rawPolls = 0
  /** Of those, EventSource, chunked and multipart streams' requests and WebSocket handshakes (the stream then owns the connection). */
  rawStreams = 0

  constructor (transportNames: readonly string[]) {
    this.transportNames = transportNames
    this.delivered = new Array<number>(transportNames.length).fill(0)
  }

  gap (cause: 'evicted' | 'expired' | 'dropped'): void {
    if (cause === 'evicted') this.gapsEvicted++
    else if (cause === 'expired') this.gapsExpired++
    else this.gapsDropped++
  }
}

/**
 * For a log line said at most once per `ms` per kind (a failure that repeats while it lasts):
 * `due(kind)` is true when that kind's line may be said now, and then counts it as said.
 */
export function oncePer (ms: number): (kind: string) => boolean {
  const last = new Map<string, number>()
  return (kind) => {
    const now = Date.now()
    if (now - (last.get(kind) ?? -Infinity) < ms) return false
    last.set(kind, now)
    return true
  }
}

/**
 * Calls `onQuiet` once when, for `quietMs`, `subscribers()` stayed 0 and `published()` did not
 * change (a drain with nothing left to spread: lib/server.ts, lib/cluster.ts). Looks every 100 ms;
 * the returned timer is cleared once it fired (clear it to give up sooner).
 */
export function whenQuiet (subscribers: () => number, published: () => number, quietMs: number, onQuiet: () => void): NodeJS.Timeout {
  let last = published()
  let quietSince = performance.now()
  const timer = setInterval(() => {
    const now = performance.now()
    const p = published()
    if (p !== last || subscribers() > 0) {
      last = p
      quietSince = now
    } else if (now - quietSince >= quietMs) {
      clearInterval(timer)
      onQuiet()
    }
  }, 100)
  return timer
}
