// Prometheus metrics with prom-client, in a registry of Parkline's own (never prom-client's global
// one, which a host app may use). The hot path keeps plain integers (lib/stats.ts); the families
// read them when scraped. With worker processes a scrape on any worker returns the sum over the
// node: each process's registry as JSON, merged by prom-client's AggregatorRegistry.aggregate
// (summed unless a family says otherwise: its `aggregator`; process metrics merged as prom-client
// defines), gathered over IPC; a dead worker's counters as last scraped stay in the sum (lib/cluster.ts).
// No label takes a value from users: transports, causes, policies and HTTP statuses only.
import { heapTrims } from './heap-trim.ts'
import { REFUSAL_REASONS } from './stats.ts'
import { AggregatorRegistry, Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type MetricObjectWithValues, type MetricValue } from 'prom-client'
import type { Core } from './core.ts'
import { publisherSocketStats } from '../transports/websocket-publisher.ts'

/** Publish-to-write latency buckets, in seconds, from 100 µs. */
const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]

export type MetricsJson = Array<MetricObjectWithValues<MetricValue<string>>>

/**
 * prom-client's process families merged over a node's processes as an operator reads them: the
 * worst process's event-loop lag (prom-client averages it, so one stalled worker hides among idle
 * ones) and open file descriptors, the lowest limit (which caps that process's subscribers), the
 * earliest start (prom-client omits it). CPU, memory and the rest stay summed.
 */
const NODE_AGGREGATORS: Record<string, string> = {
  nodejs_eventloop_lag_seconds: 'max',
  nodejs_eventloop_lag_mean_seconds: 'max',
  nodejs_eventloop_lag_p50_seconds: 'max',
  nodejs_eventloop_lag_p90_seconds: 'max',
  nodejs_eventloop_lag_p99_seconds: 'max',
  process_open_fds: 'max',
  process_max_fds: 'min',
  process_start_time_seconds: 'min'
}

/**
 * A counter whose value is read from a plain integer at scrape time. One whose read sets nothing
 * (a store's counters without a store) has no sample, as in gaugeFrom. `aggregator`: how a node's
 * workers' values merge; 'max' where each counts the same event (a Redis outage each worker's
 * client sees).
 */
function counterFrom (registry: Registry, name: string, help: string, labelNames: string[], read: (set: (labels: Record<string, string>, v: number) => void) => void, aggregator: 'sum' | 'max' = 'sum'): void {
  registry.registerMetric(new Counter({
    name,
    help,
    labelNames,
    registers: [],
    aggregator,
    collect () {
      this.reset()
      let any = false
      // (each series read is there, at 0 too: increase() then sees its first step)
      read((labels, v) => { any = true; this.inc(labels, v) })
      if (!any) (this as unknown as { hashMap: Record<string, unknown> }).hashMap = {}
    }
  }))
}

function gaugeFrom (registry: Registry, name: string, help: string, labelNames: string[], read: (set: (labels: Record<string, string>, v: number) => void) => void, aggregator: 'sum' | 'max' | 'min' = 'sum'): void {
  registry.registerMetric(new Gauge({
    name,
    help,
    labelNames,
    registers: [],
    aggregator,
    collect () {
      this.reset()
      let any = false
      read((labels, v) => { any = true; this.set(labels, v) })
      // prom-client starts a family without labels at 0: one that set nothing (parkline_store_up
      // without Redis, parkline_jwks_up without jwksUrl) is absent, not a 0 an alert would take
      // for "down" (test/metrics.test.ts checks this against prom-client)
      if (!any) (this as unknown as { hashMap: Record<string, unknown> }).hashMap = {}
    }
  }))
}

/**
 * Node's process metrics (CPU, memory, GC, event-loop delay), once per process for every Parkline
 * instance in it: prom-client's collectors (a GC observer, an event-loop-delay monitor) cannot be
 * stopped, so one made per instance would stay behind each app that closed.
 */
let processMetrics: Registry | null = null

function processRegistry (): Registry {
  if (processMetrics === null) {
    processMetrics = new Registry()
    collectDefaultMetrics({ register: processMetrics })
  }
  return processMetrics
}

export class Metrics {
  readonly registry = new Registry()
  /** Observed once per message fan-out, when its bytes were handed to the sockets. */
  readonly delivery: Histogram
  /** With workers: gathers every process's JSON for a node-wide scrape. */
  nodeScrape: (() => Promise<MetricsJson[]>) | null = null

  constructor (core: Core) {
    const r = this.registry
    this.#process = processRegistry()
    const s = core.stats
    const names = core.transports.map((t) => t.name)
    gaugeFrom(r, 'parkline_subscribers', 'Subscribers connected, by transport.', ['transport'], (set) => {
      for (let i = 0; i < names.length; i++) set({ transport: names[i]! }, core.table.counts[i]!)
    })
    gaugeFrom(r, 'parkline_raw_publisher_connections', 'Publisher, long-poll and stream connections the standalone server reads itself, past Node\'s HTTP parser (a stream\'s until its stream starts).', [], (set) => { set({}, s.rawConnections) })
    gaugeFrom(r, 'parkline_websocket_publishers', 'WebSocket publisher connections open (on the publisher location, option websocketPublish).', [], (set) => { set({}, publisherSocketStats(core).open) })
    gaugeFrom(r, 'parkline_websocket_publish_waiting', 'Messages WebSocket publisher connections sent that wait their turn to be published (at most 16 a connection; past it the connection is not read).', [], (set) => { set({}, publisherSocketStats(core).waiting) })
    counterFrom(r, 'parkline_websocket_published_total', 'Messages published by WebSocket publisher connections (also in parkline_messages_published_total).', [], (set) => { set({}, publisherSocketStats(core).published) })
    counterFrom(r, 'parkline_heap_trims_total', 'Memory-reducing garbage collections the standalone server ran when idle after being busy (lib/heap-trim.ts).', [], (set) => { set({}, heapTrims.count) })
    counterFrom(r, 'parkline_heap_trim_seconds_total', 'Seconds those collections paused the process.', [], (set) => { set({}, heapTrims.seconds) })
    counterFrom(r, 'parkline_replica_loads_total', 'With in-memory workers: channel buffers a worker loaded from their owner for a first subscriber there (a replica kept after its last one left is not loaded again).', [], (set) => {
      const n = core.engine.replicaLoads?.()
      if (n !== undefined) set({}, n)
    })
    counterFrom(r, 'parkline_raw_publisher_requests_total', 'Requests read on those connections: publishes, long-polls and streams\' requests.', [], (set) => { set({}, s.rawRequests) })
    counterFrom(r, 'parkline_raw_longpoll_requests_total', 'Of those, long-polls.', [], (set) => { set({}, s.rawPolls) })
    counterFrom(r, 'parkline_raw_stream_requests_total', 'Of those, EventSource, chunked and multipart streams\' requests and WebSocket handshakes (the stream then owns the connection).', [], (set) => { set({}, s.rawStreams) })
    // in-memory workers: each channel counted once, at its owner (a worker with subscribers on a
    // channel it does not own holds a replica: its memory is in the bytes below, not a channel more)
    gaugeFrom(r, 'parkline_channels', 'Channels held (with in-memory workers: each once, at its owner, as counted each second; with Redis: those each process of this node holds, summed).', [], (set) => {
      set({}, core.engine.owned?.().channels ?? core.registry.size)
    })
    gaugeFrom(r, 'parkline_messages_stored', 'Messages held in channel buffers (with in-memory workers: the owners\' buffers, as counted each second; with Redis: those each process of this node holds, summed).', [], (set) => {
      const owned = core.engine.owned?.()
      if (owned !== undefined) { set({}, owned.stored); return }
      let n = 0
      for (const ch of core.registry.values()) n += ch.buffer.size
      set({}, n)
    })
    gaugeFrom(r, 'parkline_message_bytes_stored', 'Body bytes of the messages held in channel buffers by every process of the node (replicas included: what they take in memory); each also holds ~0.15-0.55 KB of frame and record (docs/configuration.md, bufferLength).', [], (set) => {
      let n = 0
      for (const ch of core.registry.values()) n += ch.buffer.bytes
      set({}, n)
    })
    gaugeFrom(r, 'parkline_buffer_arena_bytes', 'Bytes of the slabs that hold buffered messages\' bytes in the standalone server (lib/byte-arena.ts), summed over the node\'s workers; 0 where messages keep their own stores (the embedded plugin, unless Node was given --heap-growing-percent).', [], (set) => {
      set({}, core.registry.arena?.bytes ?? 0)
    })
    counterFrom(r, 'parkline_messages_published_total', 'Messages published through this process.', [], (set) => { set({}, s.published) })
    counterFrom(r, 'parkline_messages_delivered_total', 'Messages written to subscribers, by transport.', ['transport'], (set) => {
      for (let i = 0; i < names.length; i++) set({ transport: names[i]! }, s.delivered[i]!)
    })
    counterFrom(r, 'parkline_messages_dropped_total', 'Messages dropped for slow subscribers under queuePolicy drop-oldest.', [], (set) => { set({}, s.messagesDropped) })
    counterFrom(r, 'parkline_queue_cap_total', 'Subscribers that reached their queue cap, by what followed (disconnect, drop-oldest); disconnect also counts streams dropped for taking no byte for a keepalive interval.', ['policy'], (set) => {
      set({ policy: 'disconnect' }, s.overflowDisconnect)
      set({ policy: 'drop-oldest' }, s.overflowDropOldest)
    })
    counterFrom(r, 'parkline_gaps_total', 'Gap signals sent, by cause.', ['cause'], (set) => {
      set({ cause: 'evicted' }, s.gapsEvicted)
      set({ cause: 'expired' }, s.gapsExpired)
      set({ cause: 'dropped' }, s.gapsDropped)
    })
    counterFrom(r, 'parkline_connections_refused_total', 'New subscribers refused, by reason: draining, capacity (the connection limit), unavailable (the store, or with workers a channel\'s owner, away), all 503; user_limit (429: the token\'s sub holds maxSubscribersPerUser).', ['reason'], (set) => {
      for (let i = 0; i < REFUSAL_REASONS.length; i++) set({ reason: REFUSAL_REASONS[i]! }, s.refusedBy[i]!)
    })
    counterFrom(r, 'parkline_auth_refusals_total', 'Requests refused by access control, by status.', ['status'], (set) => {
      for (const [status, n] of Object.entries(core.access?.refusals ?? {})) set({ status }, n)
    })
    counterFrom(r, 'parkline_authorize_requests_total', 'Authorize requests sent to the application.', [], (set) => { set({}, core.access?.auth?.stats.authorizeCalls ?? 0) })
    counterFrom(r, 'parkline_authorize_cache_hits_total', 'Authorize decisions answered from the cache.', [], (set) => { set({}, core.access?.auth?.stats.authorizeCacheHits ?? 0) })
    counterFrom(r, 'parkline_authorize_errors_total', 'Authorize requests that got no usable answer (timeout, connection error): each answered 503.', [], (set) => { set({}, core.access?.auth?.stats.authorizeErrors ?? 0) })
    counterFrom(r, 'parkline_jwks_fetches_total', 'JWKS fetches (successful or not).', [], (set) => { set({}, core.access?.auth?.stats.jwksFetches ?? 0) })
    gaugeFrom(r, 'parkline_jwks_up', 'The JWKS (jwksUrl): 1 while keys are held and the last fetch got them, 0 once a fetch failed or none ever succeeded; absent without jwksUrl.', [], (set) => {
      const up = core.access?.auth?.jwksUp ?? null
      if (up !== null) set({}, up ? 1 : 0)
    }, 'min') // with workers: 0 if any of them has no keys
    counterFrom(r, 'parkline_publish_upstream_requests_total', 'Messages sent to publishUpstreamUrl.', [], (set) => { set({}, core.access?.auth?.stats.upstreamPublishCalls ?? 0) })
    counterFrom(r, 'parkline_publish_upstream_errors_total', 'publishUpstreamUrl requests that got no answer (each answered 503).', [], (set) => { set({}, core.access?.auth?.stats.upstreamPublishErrors ?? 0) })
    // (with workers, each a node of the store: the merge keeps the least, not the sum)
    gaugeFrom(r, 'parkline_store_up', 'The shared store (Redis) takes publishes (reachable and, after an outage, caught up): 1, or 0 (with workers: 0 if any worker\'s is not); absent without one.', [], (set) => {
      const h = core.engine.health?.()
      if (h !== undefined) set({}, h.up ? 1 : 0)
    }, 'min')
    // each worker on Redis is a node of its own that sees the same outage: the most any saw
    counterFrom(r, 'parkline_store_faults_total', 'Times the shared store stopped answering, once per outage (a connection to it lost, a command past redisCommandTimeout, a node failing); with workers, the most any worker saw.', [], (set) => {
      const h = core.engine.health?.()
      if (h !== undefined) set({}, h.faults ?? 0)
    }, 'max')
    counterFrom(r, 'parkline_store_failovers_total', 'Redis master changes this node saw (Cluster or Sentinel); with workers, the most any worker saw.', [], (set) => {
      const h = core.engine.health?.()
      if (h !== undefined) set({}, h.failovers ?? 0)
    }, 'max')
    gaugeFrom(r, 'parkline_store_masters', 'Redis Cluster masters by state (known, reachable); absent without a cluster.', ['state'], (set) => {
      const c = core.engine.health?.().cluster
      if (c === null || c === undefined) return
      set({ state: 'known' }, c.masters)
      set({ state: 'reachable' }, c.reachable)
    }, 'min')
    gaugeFrom(r, 'parkline_store_slots_covered', 'Redis Cluster slots served by a healthy master (16384 when whole).', [], (set) => {
      const c = core.engine.health?.().cluster
      if (c !== null && c !== undefined) set({}, c.slots)
    }, 'min')
    this.delivery = new Histogram({
      name: 'parkline_publish_delivery_seconds',
      help: 'Seconds from a publish to its bytes handed to the subscribers\' sockets (once per message and process).',
      buckets: LATENCY_BUCKETS,
      registers: [r]
    })
  }

  readonly #process: Registry

  /** The text of a scrape: this process, or the whole node with workers. */
  async render (): Promise<{ contentType: string, text: string }> {
    if (this.nodeScrape === null) return { contentType: this.registry.contentType, text: await this.#process.metrics() + '\n' + await this.registry.metrics() }
    const all = await this.nodeScrape()
    for (const part of all) {
      for (const m of part) {
        const a = NODE_AGGREGATORS[m.name]
        if (a !== undefined) (m as { aggregator: string }).aggregator = a
      }
    }
    const merged = AggregatorRegistry.aggregate(all)
    return { contentType: merged.contentType, text: await merged.metrics() }
  }

  async json (): Promise<MetricsJson> {
    return [...await this.#process.getMetricsAsJSON(), ...await this.registry.getMetricsAsJSON()]
  }
}
