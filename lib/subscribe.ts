// The subscriber location (PROTOCOL.md §4): validate, parse the cursor, pick the transport, hand
// over. From here on Fastify is out of the picture: the reply is hijacked and the transport owns
// the connection.
import type { IncomingHttpHeaders, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { isRefusal, sendRefusal, type Access, type Grant, type RequestLike } from './access.ts'
import { droppedBehindSubscriber } from './pipelined.ts'
import { kAdmitting } from './symbols.ts'

type AdmittingSocket = Socket & { [kAdmitting]?: number }
import type { Core } from './core.ts'
import { ERRORS, type ErrorSpec } from './errors.ts'
import { hostHeaderBlock } from './host-headers.ts'
import { SUB_ALLOW, SUB_ALLOW_HEADERS, parseChannelIds, queryParam, randomBetween, requestCursor } from './http.ts'
import { INVALID, type Cursor } from './message-id.ts'
import { closeIfBodyUnread, sendError, withCors, type Reply } from './reply.ts'
import { F_GAP_EVENT } from './subscriber.ts'
import { detect, transportNamed } from '../transports/index.ts'
import type { HttpStreamTransport } from '../transports/http-stream.ts'
import type { LongpollTransport } from '../transports/longpoll.ts'
import type { WebSocketTransport } from '../transports/websocket.ts'

/** Channel ids and starting cursor of a subscribe request (§1, §4.2), or the error to answer. */
export function resolveSubscription (core: Core, headers: IncomingHttpHeaders, rawIds: string, query: string): { ids: string[], cursor: Cursor } | ErrorSpec {
  const opts = core.opts
  const ids = parseChannelIds(rawIds, opts.multiplexDelimiter, opts.maxChannelIdLength, opts.maxChannelsPerSubscription)
  if (!Array.isArray(ids)) return ids
  const cursor = requestCursor(headers, query, ids.length)
  if (cursor === INVALID) return ERRORS.BAD_MESSAGE_ID
  return { ids, cursor }
}

/**
 * A subscriber's GET read off a raw connection (lib/raw-publish.ts, the standalone server): the
 * checks of handleSubscriber, in its order, for a GET that lib/raw-publish.ts parseRequest found
 * to be claimed by `transport` (a plain long-poll, or an EventSource, chunked or multipart
 * stream, or a WebSocket handshake), then LongpollTransport.serveRaw, HttpStreamTransport.serveSocket
 * or WebSocketTransport.serveSocket. An error or
 * refusal is answered through `reply`; a served request hijacks it. Synchronous unless access
 * control has to wait.
 */
export function subscribeRaw (core: Core, access: Access, request: RawRequestLike, reply: Reply, rawIds: string, query: string, origin: string | null, close: boolean, transport: string): void | Promise<void> {
  const r = resolveSubscription(core, request.headers, rawIds, query)
  if (!('ids' in r)) {
    sendError(reply, r, origin)
    return
  }
  if (access.auth === null) {
    admitRaw(core, access, request, reply, r.ids, r.cursor, query, origin, close, transport, null)
    return
  }
  return access.subscriber(request, transport, r.ids, query).then((grant) => {
    admitRaw(core, access, request, reply, r.ids, r.cursor, query, origin, close, transport, grant)
  })
}

/** A subscriber's request read raw: for a WebSocket handshake, the bytes read after it so far. */
export type RawRequestLike = RequestLike & { upgradeHead?: () => Buffer }

function admitRaw (core: Core, access: Access, request: RawRequestLike, reply: Reply, ids: string[], cursor: Cursor, query: string, origin: string | null, close: boolean, transport: string,
  grant: Awaited<ReturnType<Access['subscriber']>>): void {
  const flags = admitted(core, access, request.socket, reply, ids, query, origin, grant)
  if (flags === null) return
  const t = transportNamed(core, transport)
  const channels = core.channelsFor(ids)
  if (transport === 'longpoll') (t as LongpollTransport).serveRaw(request.socket, channels, cursor, origin, flags, grant as Grant | null, close)
  else if (transport === 'websocket') (t as WebSocketTransport).serveSocket(request.socket, request.headers, request.upgradeHead?.() ?? EMPTY, channels, cursor, origin, flags, grant as Grant | null)
  else (t as HttpStreamTransport).serveSocket(request.socket, channels, cursor, origin, flags, grant as Grant | null)
}

const EMPTY = Buffer.alloc(0)

/**
 * After access control, on every path: a refusal, a client gone meanwhile or the channel cap is
 * answered (null); otherwise the reply is hijacked for the transport and the subscription's flags
 * are returned.
 */
function admitted (core: Core, access: Access, socket: Socket, reply: Reply, ids: string[], query: string, origin: string | null, grant: Awaited<ReturnType<Access['subscriber']>>): number | null {
  // a token revoked while the admission waited is refused here: the revocation found no
  // subscriber of it to end yet
  const refusal = isRefusal(grant) ? grant : access.revoked(grant)
  if (refusal !== null) {
    sendRefusal(reply, refusal, origin)
    return null
  }
  if (socket.destroyed) {
    // the client left while it was being admitted
    reply.hijack()
    return null
  }
  // bounded: the channel records one process may hold (a multiplexed subscription creates up to 255)
  if (core.overChannelCap(ids)) {
    sendError(reply.header('Retry-After', String(randomBetween(1, 10))), ERRORS.OVER_CAPACITY, origin)
    return null
  }
  reply.hijack()
  return queryParam(query, 'parkline_gap') === 'event' ? F_GAP_EVENT : 0
}

export async function handleSubscriber (core: Core, access: Access, request: RequestLike, reply: Reply & { raw: ServerResponse }, rawIds: string, query: string, origin: string | null): Promise<Reply | undefined> {
  const req = request.raw
  // behind a subscriber's request on this connection: not applied, not answered (lib/pipelined.ts)
  if (droppedBehindSubscriber(req.socket, reply.raw)) {
    reply.hijack()
    return reply
  }
  const method = request.method
  if (method === 'OPTIONS') {
    closeIfBodyUnread(reply.code(200).header('Allow', SUB_ALLOW).header('Content-Length', '0'), request)
    if (origin !== null) {
      withCors(reply, origin)
        .header('Access-Control-Allow-Methods', SUB_ALLOW)
        .header('Access-Control-Allow-Headers', SUB_ALLOW_HEADERS)
    }
    return reply.send()
  }
  if (method === 'POST' || method === 'PUT' || method === 'DELETE') {
    // The unread body must not be read as the next request (§4.1): close after answering.
    return sendError(reply.header('Connection', 'close'), ERRORS.SUBSCRIBER_READ_ONLY, origin)
  }
  if (method !== 'GET') {
    return sendError(closeIfBodyUnread(reply.header('Allow', SUB_ALLOW), request), ERRORS.METHOD_NOT_ALLOWED, origin)
  }
  const r = resolveSubscription(core, req.headers, rawIds, query)
  if (!('ids' in r)) return sendError(reply, r, origin)
  const { ids, cursor } = r
  const transport = detect(core, req)
  // only when the `transports` option switched long-poll off and nothing else claimed the GET
  if (transport === null) return sendError(reply, ERRORS.NOT_ACCEPTABLE, origin)
  // access control before anything of the subscription exists (channels, counts)
  // (no await without access control: the subscription starts in this turn, so a request
  // pipelined behind a long-poll finds it parked)
  let grant: Awaited<ReturnType<Access['subscriber']>> = null
  if (access.auth !== null) {
    // while it is admitted, a request pipelined behind it must not run (lib/publisher.ts)
    const socket = req.socket as AdmittingSocket
    socket[kAdmitting] = (socket[kAdmitting] ?? 0) + 1
    try {
      grant = await access.subscriber(request, transport.name, ids, query)
    } finally {
      socket[kAdmitting]!--
    }
  }
  // Pipelined behind a request whose answer is still being written on this connection: Node has
  // queued this response, and the connection is not this subscription's to take before that
  // answer is out. It waits for its turn (counted as being admitted, as above), or its client.
  const socket = req.socket as AdmittingSocket & { _httpMessage?: unknown }
  const current = socket._httpMessage
  if (current !== undefined && current !== null && current !== reply.raw && !isRefusal(grant)) {
    socket[kAdmitting] = (socket[kAdmitting] ?? 0) + 1
    let turn: boolean
    try {
      turn = await turnOf(reply.raw, socket)
    } finally {
      socket[kAdmitting]!--
    }
    if (!turn) {
      reply.hijack()
      return reply
    }
  }
  const flags = admitted(core, access, req.socket, reply, ids, query, origin, grant)
  if (flags === null) return reply
  // (admitted: not a refusal)
  const host = reply.getHeaders === undefined ? '' : hostHeaderBlock(reply.getHeaders())
  transport.serve({ req, res: reply.raw, channels: core.channelsFor(ids), cursor, origin, flags, grant: grant as Grant | null, host })
  return undefined
}

/** Node gives `res` the connection (the answers before it are out): true; the connection closed first: false. */
function turnOf (res: ServerResponse, socket: Socket): Promise<boolean> {
  return new Promise((resolve) => {
    const onSocket = (): void => {
      socket.removeListener('close', onClose)
      resolve(true)
    }
    const onClose = (): void => {
      res.removeListener('socket', onSocket)
      resolve(false)
    }
    res.once('socket', onSocket)
    socket.once('close', onClose)
  })
}
