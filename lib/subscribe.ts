// The subscriber location (PROTOCOL.md §4): validate, parse the cursor, pick the transport, hand
// over. From here on Fastify is out of the picture: the reply is hijacked and the transport owns
// the connection.
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Core } from './core.ts'
import { ERRORS } from './errors.ts'
import { SUB_ALLOW, SUB_ALLOW_HEADERS, parseChannelIds, queryParam, requestCursor } from './http.ts'
import { INVALID } from './message-id.ts'
import { sendError, withCors } from './reply.ts'
import { F_GAP_EVENT } from './subscriber.ts'
import { detect } from '../transports/index.ts'
import { rejectIfParked } from '../transports/longpoll.ts'

export async function handleSubscriber (core: Core, request: FastifyRequest, reply: FastifyReply, rawIds: string, query: string, origin: string | null): Promise<FastifyReply | undefined> {
  const req = request.raw
  rejectIfParked(req.socket)
  const method = request.method
  if (method === 'OPTIONS') {
    reply.code(200).header('Allow', SUB_ALLOW).header('Content-Length', '0')
    if (origin !== null) {
      withCors(reply, origin)
        .header('Access-Control-Allow-Methods', SUB_ALLOW)
        .header('Access-Control-Allow-Headers', SUB_ALLOW_HEADERS)
    }
    return reply.send()
  }
  if (method === 'POST' || method === 'PUT' || method === 'DELETE') {
    // The unread body must not be read as the next request (§4.1): close after answering.
    return withCors(reply.code(403), origin).header('Connection', 'close').header('Content-Length', '0').send()
  }
  if (method !== 'GET') {
    return sendError(reply.header('Allow', SUB_ALLOW), ERRORS.METHOD_NOT_ALLOWED, origin)
  }
  const opts = core.opts
  const ids = parseChannelIds(rawIds, opts.multiplexDelimiter, opts.maxChannelIdLength, opts.maxChannelsPerSubscription)
  if (!Array.isArray(ids)) return sendError(reply, ids, origin)
  const cursor = requestCursor(req.headers, query, ids.length)
  if (cursor === INVALID) return sendError(reply, ERRORS.BAD_MESSAGE_ID, origin)
  const transport = detect(core, req)
  const flags = queryParam(query, 'parkline_gap') === 'event' ? F_GAP_EVENT : 0
  reply.hijack()
  transport.serve({ req, res: reply.raw, channels: core.channelsFor(ids), cursor, origin, flags })
  return undefined
}
