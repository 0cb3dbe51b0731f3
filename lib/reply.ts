// Small answers through Fastify's reply: errors as short text/plain, CORS on everything.
import type { FastifyReply } from 'fastify'
import type { ErrorSpec } from './errors.ts'

export function withCors (reply: FastifyReply, origin: string | null): FastifyReply {
  if (origin !== null) {
    reply.header('Access-Control-Allow-Origin', origin)
    reply.header('Access-Control-Allow-Credentials', 'true')
  }
  return reply
}

/** An error answer: its status, `text/plain` short body (or an empty one), CORS when asked. */
export function sendError (reply: FastifyReply, err: ErrorSpec, origin: string | null): FastifyReply {
  withCors(reply.code(err.statusCode), origin)
  if (err.message.length === 0) return reply.header('Content-Length', '0').send()
  return reply.header('Content-Type', 'text/plain').send(Buffer.from(err.message))
}
