// Transport registry, in negotiation order (PROTOCOL.md §4.1): WebSocket, EventSource, chunked,
// multipart, then long-poll, which accepts every GET. Every transport is instantiated (counters and
// /metrics keep their places); the `transports` option decides which ones may claim a request.
import type { IncomingMessage } from 'node:http'
import type { Core } from '../lib/core.ts'
import type { Transport, TransportFactory } from '../lib/subscriber.ts'
import { ChunkedTransport } from './chunked.ts'
import { LongpollTransport } from './longpoll.ts'
import { MultipartTransport } from './multipart.ts'
import { SseTransport } from './sse.ts'
import { WebSocketTransport } from './websocket.ts'

export const TRANSPORTS: readonly TransportFactory[] = [WebSocketTransport, SseTransport, ChunkedTransport, MultipartTransport, LongpollTransport]

const enabledCache = new WeakMap<Core, readonly Transport[]>()

/** The transports the `transports` option leaves switched on, in negotiation order. */
export function enabledTransports (core: Core): readonly Transport[] {
  let ts = enabledCache.get(core)
  if (ts === undefined) {
    const names = core.opts.transports
    ts = core.transports.filter((t) => names.includes(t.name))
    enabledCache.set(core, ts)
  }
  return ts
}

/**
 * The first enabled transport that claims the request. Long-poll claims every GET, so null (answered
 * 406 Not Acceptable) only happens when long-poll is switched off and no other transport matched.
 */
export function detect (core: Core, req: IncomingMessage): Transport | null {
  const ts = enabledTransports(core)
  for (let i = 0; i < ts.length; i++) if (ts[i]!.detect(req)) return ts[i]!
  return null
}
