// Transport registry, in negotiation order (PROTOCOL.md §4.1): WebSocket, EventSource, chunked,
// multipart, then long-poll, which accepts every GET. Every transport is instantiated (counters and
// /metrics keep their places); the `transports` option decides which ones may claim a request.
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import type { Core } from '../lib/core.ts'
import type { Transport, TransportFactory } from '../lib/subscriber.ts'
import { ChunkedTransport, wantsChunked } from './chunked.ts'
import { LongpollTransport } from './longpoll.ts'
import { MultipartTransport, acceptsMultipart } from './multipart.ts'
import { SseTransport, acceptsEventStream } from './sse.ts'
import { WebSocketTransport, wantsWebSocket } from './websocket.ts'

export const TRANSPORTS: readonly TransportFactory[] = [WebSocketTransport, SseTransport, ChunkedTransport, MultipartTransport, LongpollTransport]

/** Each transport's claim on a request, by its name, in the order of TRANSPORTS. */
const CLAIMS: ReadonlyArray<readonly [string, (headers: IncomingHttpHeaders, httpVersionMinor: number) => boolean]> = [
  ['websocket', wantsWebSocket], ['eventsource', acceptsEventStream], ['chunked', wantsChunked], ['multipart', acceptsMultipart], ['longpoll', () => true]
]

/**
 * The name of the first transport among `names` (the `transports` option) that claims a request
 * with these headers, or null: the negotiation on the headers alone, for requests read without an
 * IncomingMessage (lib/raw-publish.ts) as for the others (detect).
 */
export function claimedBy (names: readonly string[], headers: IncomingHttpHeaders, httpVersionMinor: number): string | null {
  for (const [name, claims] of CLAIMS) if (names.includes(name) && claims(headers, httpVersionMinor)) return name
  return null
}

const enabledCache = new WeakMap<Core, readonly Transport[]>()

/** The transports the `transports` option leaves switched on, in negotiation order. */
export function enabledTransports (core: Core): readonly Transport[] {
  let ts = enabledCache.get(core)
  if (ts === undefined) {
    const names: readonly string[] = core.opts.transports
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
  const name = claimedBy(core.opts.transports, req.headers, req.httpVersionMinor)
  return name === null ? null : transportNamed(core, name)
}

/** The enabled transport called `name` (a name claimedBy gave). */
export function transportNamed (core: Core, name: string): Transport {
  return enabledTransports(core).find((t) => t.name === name)!
}
