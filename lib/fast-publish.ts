// The standalone server's publish fast path. A POST or PUT on the publisher location is taken from
// Node's 'request' event before Fastify: no routing, hooks, request and reply objects, content-type
// parser or async hook chain per publish. The decisions are the same code as through Fastify
// (lib/publisher.ts: access control, limits, idempotency, upstream, engine); only the envelope is
// Node's own response, through RawReply. Anything unusual (a path that needs normalising, a §10
// limit, an origin not allowed) goes through Fastify, which answers it as always.
//
// Only `parkline serve` (lib/server.ts) installs it: embedded in a host app, every request passes
// the host's hooks. Measured in benchmarks/results/publish-fast-path-*.md.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Core } from './core.ts'
import type { ParklineOptions } from './config.ts'
import { normalizePath, originAllowed, requestOrigin } from './http.ts'
import { checkLimits } from './plugin.ts'
import { handlePublisher, type PublisherRequest } from './publisher.ts'
import { RawReply } from './reply.ts'

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

export function fastPublisher (core: Core, opts: ParklineOptions): FastPath {
  const pubPath = opts.pubPrefix
  const access = core.access!
  return (req, res) => {
    const method = req.method
    if (method !== 'POST' && method !== 'PUT') return false
    const url = req.url!
    if (!url.startsWith(pubPath)) return false
    const q = url.indexOf('?')
    const path = q === -1 ? url : url.slice(0, q)
    if (normalizePath(path) !== path || checkLimits(req) !== null) return false
    const origin = requestOrigin(req.headers)
    if (!originAllowed(origin, opts.corsOrigins)) return false
    // Pipelined behind a request Fastify is still handling (a subscriber being admitted, a parked
    // long-poll): through Fastify too, whose handler sees that request's state (lib/publisher.ts).
    // Behind fast publishes only, it may go fast: they are applied in order (kPublishing).
    const socket = req.socket as FastSocket
    const current = socket._httpMessage
    if (current !== res && current !== null && current !== undefined && !(current[kFast] === true && socket[kLastFast] === true)) {
      socket[kLastFast] = false
      return false
    }
    socket[kLastFast] = true
    ;(res as FastResponse)[kFast] = true
    const request: PublisherRequest = { headers: req.headers, method, originalUrl: url, socket: req.socket, raw: req }
    const reply = new RawReply(res)
    handlePublisher(core, access, request, reply, path.slice(pubPath.length), origin).catch((err: unknown) => { failed(core, reply, err) })
    return true
  }
}

/** What Fastify does with an error a handler throws: logged, 500 if nothing was sent yet. */
function failed (core: Core, reply: RawReply, err: unknown): void {
  core.log?.error?.({ err }, 'publish failed')
  if (reply.sent) {
    reply.res.destroy()
    return
  }
  reply.code(500).header('Content-Type', 'text/plain').send(Buffer.from('Internal Server Error'))
}
