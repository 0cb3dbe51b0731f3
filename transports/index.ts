// Transport registry, in negotiation order (PROTOCOL.md §4.1). WebSocket, chunked and multipart
// slot in here, before long-poll, which accepts every GET.
import type { IncomingMessage } from 'node:http'
import type { Core } from '../lib/core.ts'
import type { Transport, TransportFactory } from '../lib/subscriber.ts'
import { LongpollTransport } from './longpoll.ts'
import { SseTransport } from './sse.ts'

export const TRANSPORTS: readonly TransportFactory[] = [SseTransport, LongpollTransport]

/** The first transport that claims the request. */
export function detect (core: Core, req: IncomingMessage): Transport {
  const ts = core.transports
  for (let i = 0; i < ts.length - 1; i++) if (ts[i]!.detect(req)) return ts[i]!
  return ts[ts.length - 1]!
}
