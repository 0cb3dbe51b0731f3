// The Fastify plugin: `app.register(parkline, options)` adds the publisher and subscriber locations,
// /status and /metrics to any Fastify 5 app. The standalone server (server.ts) is this plugin plus
// the HTTP-level limits only a server owner can set.
import { readFileSync } from 'node:fs'
import { METHODS, type IncomingMessage, type ServerResponse } from 'node:http'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { resolveOptions, type ParklineOptions } from './config.ts'
import { Core } from './core.ts'
import { ERRORS } from './errors.ts'
import { originAllowed, requestOrigin, splitUrl } from './http.ts'
import { handlePublisher } from './publisher.ts'
import { sendError, withCors } from './reply.ts'
import { renderMetrics, renderStatus } from './status.ts'
import { handleSubscriber } from './subscribe.ts'
import { TRANSPORTS } from '../transports/index.ts'

declare module 'fastify' {
  interface FastifyInstance {
    parkline: Core
  }
}

/** Per-line and per-URL limits of §10 (the whole header section is capped by maxHeaderSize). */
export const MAX_LINE = 8192
export const MAX_HEADER_FIELDS = 1000

function fdLimit (): number {
  // Node raises the soft limit to the hard one at start; /proc tells what it is.
  try {
    const m = /Max open files\s+(\d+)/.exec(readFileSync('/proc/self/limits', 'utf8'))
    if (m !== null) return Number(m[1])
  } catch {}
  return 1024
}

function isLoopback (addr: string | undefined): boolean {
  return addr !== undefined && (addr.startsWith('127.') || addr === '::1' || addr.startsWith('::ffff:127.'))
}

/** §10 limits Node's parser does not enforce per line. */
export function checkLimits (req: IncomingMessage): typeof ERRORS[keyof typeof ERRORS] | null {
  if (((req as { originalUrl?: string }).originalUrl ?? req.url ?? '').length > MAX_LINE) return ERRORS.URI_TOO_LONG
  const raw = req.rawHeaders
  if (raw.length > MAX_HEADER_FIELDS * 2) return ERRORS.HEADER_TOO_LARGE
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length + raw[i + 1]!.length + 2 > MAX_LINE) return ERRORS.HEADER_TOO_LARGE
  }
  return null
}

export interface ParklinePluginOptions extends Partial<ParklineOptions> {
  /** Resolved options (the CLI passes these); otherwise the plugin options are resolved here. */
  resolved?: ParklineOptions
}

async function parklinePlugin (fastify: FastifyInstance, pluginOpts: ParklinePluginOptions): Promise<void> {
  const { resolved, ...rest } = pluginOpts
  const opts = resolved ?? resolveOptions(rest as Record<string, unknown>)
  const core = new Core(opts, TRANSPORTS, fdLimit())
  fastify.decorate('parkline', core)
  core.start()

  // Every method Node parses reaches our handlers, so HEAD, PATCH, PROPFIND… get a prompt 405.
  const methods: string[] = []
  for (const m of METHODS) {
    if (m === 'CONNECT') continue
    if (!fastify.supportedMethods.includes(m)) fastify.addHttpMethod(m, { hasBody: true })
    methods.push(m)
  }

  // The publisher needs the raw body (any type, byte for byte): the stream is left unread.
  const route = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    const req = request.raw
    const origin = requestOrigin(req.headers)
    const limited = checkLimits(req)
    if (limited !== null) return sendError(reply.header('Connection', 'close'), limited, origin)
    // the URL as received: a host's rewriteUrl (or server.ts's routing escape) must not change ids
    const { path, query } = splitUrl(request.originalUrl)
    if (path === null) return sendError(reply, ERRORS.BAD_PATH, origin)
    if (!originAllowed(origin, opts.corsOrigins)) return sendError(reply, ERRORS.ORIGIN_NOT_ALLOWED, origin)
    if (path.startsWith(opts.subPrefix)) {
      return handleSubscriber(core, request, reply, path.slice(opts.subPrefix.length), query, origin)
    }
    if (path.startsWith(opts.pubPrefix)) {
      return handlePublisher(core, request, reply, path.slice(opts.pubPrefix.length), origin)
    }
    return withCors(reply.code(404), origin).send()
  }
  // Encapsulated, so the pass-through body parser does not change the host app's parsing.
  await fastify.register(async (child) => {
    child.removeAllContentTypeParsers()
    child.addContentTypeParser('*', passThrough)
    for (const prefix of [opts.pubPrefix, opts.subPrefix]) {
      child.route({ method: methods, url: prefix + '*', exposeHeadRoute: false, handler: route })
    }
  })

  if (opts.statusPath.length > 0) {
    fastify.get(opts.statusPath, { exposeHeadRoute: false }, async (request, reply) => {
      if (opts.statusLoopbackOnly && !isLoopback(request.socket.remoteAddress)) return sendError(reply, ERRORS.NOT_LOOPBACK, null)
      return reply.header('Content-Type', 'text/plain').send(Buffer.from(renderStatus(core)))
    })
  }
  if (opts.metricsPath.length > 0) {
    fastify.get(opts.metricsPath, { exposeHeadRoute: false }, async (request, reply) => {
      if (opts.statusLoopbackOnly && !isLoopback(request.socket.remoteAddress)) return sendError(reply, ERRORS.NOT_LOOPBACK, null)
      return reply.header('Content-Type', 'text/plain; version=0.0.4').send(Buffer.from(renderMetrics(core)))
    })
  }

  // Expect: 100-continue: an immediate 413 when Content-Length is already over the limit (§3.1).
  const server = fastify.server
  if (server.listenerCount('checkContinue') === 0) {
    server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
      const { path } = splitUrl(req.url ?? '/')
      const declared = Number(req.headers['content-length'])
      if (path !== null && path.startsWith(opts.pubPrefix) && declared > opts.maxMessageSize) {
        const origin = requestOrigin(req.headers)
        const headers: Record<string, string> = { 'Content-Type': 'text/plain', Connection: 'close' }
        if (origin !== null) {
          headers['Access-Control-Allow-Origin'] = origin
          headers['Access-Control-Allow-Credentials'] = 'true'
        }
        res.writeHead(413, headers)
        res.end(ERRORS.PAYLOAD_TOO_LARGE.message)
        return
      }
      res.writeContinue()
      server.emit('request', req, res)
    })
  }

  fastify.addHook('preClose', async () => {
    core.stop()
    core.closeAll(503)
  })
}

function passThrough (_req: FastifyRequest, _payload: IncomingMessage, done: (err: Error | null, body?: unknown) => void): void {
  done(null)
}

// Like fastify-plugin: register without encapsulation so `app.parkline` is visible to the app.
;(parklinePlugin as unknown as Record<symbol, unknown>)[Symbol.for('skip-override')] = true
;(parklinePlugin as unknown as Record<symbol, unknown>)[Symbol.for('fastify.display-name')] = 'parkline'

export default parklinePlugin
export { parklinePlugin as parkline }
