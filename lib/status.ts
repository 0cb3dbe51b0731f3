// GET /status (nchan_stub_status style) — EXTENSION f. Prometheus metrics: lib/metrics.ts.
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
  // with worker processes, the primary's totals (summed over the owners) cover the whole host
  const t = core.engine.totals()
  const h = core.engine.health?.()
  let out = `total published messages: ${t?.published ?? s.published}\n` +
    `stored messages: ${t?.stored ?? storedMessages(core)}\n` +
    `channels: ${t?.channels ?? core.registry.size}\n` +
    `subscribers: ${t?.subscribers ?? core.table.size}\n`
  if (t !== null) out += `subscribers this worker: ${core.table.size}\nchannels this worker: ${core.registry.size}\n`
  // the cap of the process that answers (maxSubscribers, or 90% of its own open-file limit)
  out += `max subscribers: ${core.maxSubscribers}\n`
  const worker = process.env.PARKLINE_WORKER_ID
  if (worker !== undefined) out += `worker: ${worker}\nworkers: ${process.env.PARKLINE_WORKER_COUNT ?? '?'}\n`
  // per transport: the host's with worker processes (summed as `subscribers` is), else this process's
  for (let i = 0; i < core.transports.length; i++) out += `subscribers ${core.transports[i]!.name}: ${t?.transports[i] ?? core.table.counts[i]}\n`
  const d = core.engine.deployment?.()
  if (d !== undefined && d !== null) out += `deployment subscribers: ${d.subscribers}\ndeployment nodes: ${d.nodes}\n`
  out += `overflows disconnect: ${s.overflowDisconnect}\n` +
    `gaps: ${s.gapsEvicted + s.gapsExpired + s.gapsDropped}\n` +
    `raw publisher connections: ${s.rawConnections}\n` +
    `raw publisher requests: ${s.rawRequests}\n` +
    `raw long-poll requests: ${s.rawPolls}\n` +
    `raw stream requests: ${s.rawStreams}\n` +
    tcpLines() +
    `redis pending commands: ${h?.pendingCommands ?? 0}\n` +
    `redis connected servers: ${h?.connectedServers ?? 0}\n`
  if (h !== undefined) {
    out += `redis mode: ${h.mode ?? 'standalone'}\nredis up: ${h.up ? 1 : 0}\nredis faults: ${h.faults ?? 0}\nredis failovers: ${h.failovers ?? 0}\n`
    if (h.cluster !== null && h.cluster !== undefined) {
      out += `redis masters: ${h.cluster.masters}\nredis masters reachable: ${h.cluster.reachable}\nredis slots covered: ${h.cluster.slots}\n`
    }
  }
  out += `parkline version: ${VERSION}\n`
  return out
}
