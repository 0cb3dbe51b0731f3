// The standalone server's fast path. An ordinary POST or PUT on the publisher location, and an
// ordinary GET on the subscriber location (a long-poll, an SSE, chunked or multipart stream), are
// taken from Node's 'request' event before Fastify: no routing, hooks, request and reply objects,
// content-type parser or async hook chain per request. The decisions are the same code as through
// Fastify (lib/publisher.ts, lib/subscribe.ts: access control, limits, idempotency, upstream,
// transports); only the envelope is Node's own response, through RawReply. Anything unusual (a
// path that needs normalising, a §10 limit, an origin not allowed, an Upgrade header, another
// method) goes through Fastify, which answers it as always.
//
// Only `parkline serve` (lib/server.ts) installs it: embedded in a host app, every request passes
// the host's hooks. Measured in benchmarks/results/request-path-*.md.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { RequestLike } from './access.ts'
import type { Core } from './core.ts'
import type { ParklineOptions } from './config.ts'
import { normalizePath, originAllowed, requestOrigin } from './http.ts'
import { checkLimits } from './plugin.ts'
import { handlePublisher } from './publisher.ts'
import { RawReply } from './reply.ts'
import { handleSubscriber } from './subscribe.ts'

export type FastPath = (req: IncomingMessage, res: ServerResponse) => boolean

const kFast = Symbol('parkline.fastPublish')
const kLastFast = Symbol('parkline.lastRequestFast')
type FastResponse = ServerResponse & { [kFast]?: boolean }
/** Node's response being written on the socket (the first one not finished), and our mark. */
type FastSocket = Socket & { _httpMessage?: FastResponse | null, [kLastFast]?: boolean }

/** A request the fast path did not take: later pipelined publishes on its socket go through Fastify. */
export function notFast (req: IncomingMessage): void {
  const socket = req.socket as FastSocket
  // (written only where a publish set it: subscriber sockets keep their shape)
  if (socket[kLastFast] === true) socket[kLastFast] = false
}

export function fastPath (core: Core, opts: ParklineOptions): FastPath {
  const pubPath = opts.pubPrefix
  const subPath = opts.subPrefix
  const access = core.access!
  return (req, res) => {
    const method = req.method
    const publish = method === 'POST' || method === 'PUT'
    if (!publish && method !== 'GET') return false
    // a WebSocket handshake Node did not hand to 'upgrade' is answered by Fastify's route
    if (!publish && req.headers.upgrade !== undefined) return false
    const url = req.url!
    if (!url.startsWith(publish ? pubPath : subPath)) return false
    const q = url.indexOf('?')
    const path = q === -1 ? url : url.slice(0, q)
    if (normalizePath(path) !== path || checkLimits(req) !== null) return false
    const origin = requestOrigin(req.headers)
    if (!originAllowed(origin, opts.corsOrigins)) return false
    // Pipelined behind a request Fastify is still handling (a subscriber being admitted, a parked
    // long-poll): through Fastify too, whose handler sees that request's state (lib/publisher.ts).
    // A publish behind fast publishes only may go fast: they are applied in order (kPublishing).
    const socket = req.socket as FastSocket
    const current = socket._httpMessage
    // (lib/server.ts calls notFast for every request this returns false for)
    if (current !== res && current !== null && current !== undefined && !(publish && current[kFast] === true && socket[kLastFast] === true)) return false
    const request: RequestLike = { headers: req.headers, method, originalUrl: url, socket, raw: req }
    const reply = new RawReply(res)
    if (publish) {
      socket[kLastFast] = true
      ;(res as FastResponse)[kFast] = true
      handlePublisher(core, access, request, reply, path.slice(pubPath.length), origin).catch((err: unknown) => { failed(core, reply, err) })
    } else {
      handleSubscriber(core, access, request, reply, path.slice(subPath.length), q === -1 ? '' : url.slice(q + 1), origin).catch((err: unknown) => { failed(core, reply, err) })
    }
    return true
  }
}

/** An error a handler throws: logged, and a plain-text 500 if nothing was sent yet (as Fastify answers, less its JSON body). */
function failed (core: Core, reply: RawReply, err: unknown): void {
  core.log?.error?.({ err }, 'request failed')
  if (reply.sent) {
    reply.raw.destroy()
    return
  }
  reply.code(500).header('Content-Type', 'text/plain').send(Buffer.from('Internal Server Error'))
}
