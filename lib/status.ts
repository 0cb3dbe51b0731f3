// GET /status (nchan_stub_status style) and GET /metrics (Prometheus text) — EXTENSION f.
import type { Core } from './core.ts'
import { readSockstat } from './doctor.ts'

export const VERSION = '0.1.0'

function storedMessages (core: Core): number {
  let n = 0
  for (const ch of core.registry.values()) n += ch.buffer.size
  return n
}

/** This host's TCP sockets from /proc/net/sockstat (no netstat); nothing off Linux. */
function tcpLines (): string {
  const k = readSockstat()
  return k === null ? '' : `tcp sockets in use: ${k.inuse}\ntcp memory pages: ${k.mem}\n`
}

export function renderStatus (core: Core): string {
  const s = core.stats
  // with worker processes, the sequencer's totals cover the whole host
  const t = core.engine.totals()
  const h = core.engine.health?.()
  let out = `total published messages: ${t?.published ?? s.published}\n` +
    `stored messages: ${t?.stored ?? storedMessages(core)}\n` +
    `channels: ${t?.channels ?? core.registry.size}\n` +
    `subscribers: ${t?.subscribers ?? core.table.size}\n`
  if (t !== null) out += `subscribers this worker: ${core.table.size}\n`
  for (let i = 0; i < core.transports.length; i++) out += `subscribers ${core.transports[i]!.name}: ${core.table.counts[i]}\n`
  out += `overflows disconnect: ${s.overflowDisconnect}\n` +
    `gaps: ${s.gapsEvicted + s.gapsExpired + s.gapsDropped}\n` +
    tcpLines() +
    `redis pending commands: ${h?.pendingCommands ?? 0}\n` +
    `redis connected servers: ${h?.connectedServers ?? 0}\n` +
    `parkline version: ${VERSION}\n`
  return out
}

export function renderMetrics (core: Core): string {
  const s = core.stats
  let out = '# TYPE parkline_subscribers gauge\n'
  for (let i = 0; i < core.transports.length; i++) out += `parkline_subscribers{transport="${core.transports[i]!.name}"} ${core.table.counts[i]}\n`
  out += `# TYPE parkline_channels gauge\nparkline_channels ${core.registry.size}\n`
  out += `# TYPE parkline_messages_stored gauge\nparkline_messages_stored ${storedMessages(core)}\n`
  out += `# TYPE parkline_messages_published_total counter\nparkline_messages_published_total ${s.published}\n`
  out += '# TYPE parkline_messages_delivered_total counter\n'
  for (let i = 0; i < core.transports.length; i++) out += `parkline_messages_delivered_total{transport="${core.transports[i]!.name}"} ${s.delivered[i]}\n`
  out += '# TYPE parkline_gaps_total counter\n' +
    `parkline_gaps_total{cause="evicted"} ${s.gapsEvicted}\n` +
    `parkline_gaps_total{cause="expired"} ${s.gapsExpired}\n` +
    `parkline_gaps_total{cause="dropped"} ${s.gapsDropped}\n`
  out += '# TYPE parkline_overflows_total counter\n' +
    `parkline_overflows_total{policy="disconnect"} ${s.overflowDisconnect}\n` +
    `parkline_overflows_total{policy="drop-oldest"} ${s.overflowDropOldest}\n`
  out += `# TYPE parkline_connections_refused_total counter\nparkline_connections_refused_total ${s.refused}\n`
  const access = core.access
  if (access !== null) {
    // access control: refusals by status (a handful of codes: bounded), the authorize request
    out += '# HELP parkline_auth_refusals_total Requests refused by access control, by status.\n# TYPE parkline_auth_refusals_total counter\n'
    for (const [status, n] of Object.entries(access.refusals)) out += `parkline_auth_refusals_total{status="${status}"} ${n}\n`
    const a = access.auth?.stats
    if (a !== undefined) {
      out += '# HELP parkline_authorize_requests_total Authorize requests sent to the application.\n# TYPE parkline_authorize_requests_total counter\n' +
        `parkline_authorize_requests_total ${a.authorizeCalls}\n` +
        '# HELP parkline_authorize_cache_hits_total Authorize decisions answered from the cache.\n# TYPE parkline_authorize_cache_hits_total counter\n' +
        `parkline_authorize_cache_hits_total ${a.authorizeCacheHits}\n`
    }
  }
  out += s.histogramLines('parkline_publish_delivery_seconds')
  return out
}
