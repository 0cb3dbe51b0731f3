// The Fastify plugin: `app.register(parkline, options)` adds the publisher and subscriber locations,
// /status and /metrics to any Fastify 5 app. The standalone server (server.ts) is this plugin plus
// the HTTP-level limits only a server owner can set.
import { readFileSync } from 'node:fs'
import { METHODS, type IncomingMessage, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { resolveOptions, type ParklineOptions } from './config.ts'
import { Core } from './core.ts'
import { registerDemo } from './demo.ts'
import { ERRORS } from './errors.ts'
import { originAllowed, requestOrigin, splitUrl } from './http.ts'
import { handlePublisher } from './publisher.ts'
import { sendError, withCors } from './reply.ts'
import { renderMetrics, renderStatus } from './status.ts'
import { handleSubscriber, handleUpgrade } from './subscribe.ts'
import { TRANSPORTS } from '../transports/index.ts'
import { rejectUpgrade } from '../transports/websocket.ts'

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
  if (opts.redisUrl !== '') {
    // several nodes share channels, buffers and ids through Redis; loaded only when asked for
    const { RedisEngine } = await import('./redis-engine.ts')
    const engine = new RedisEngine(core, opts.redisUrl)
    core.engine = engine
    await engine.start()
    fastify.addHook('onClose', async () => { await engine.stop() })
  }

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

  // health check for load balancers: 503 while the engine's store (Redis) is unreachable
  fastify.get('/health', { exposeHeadRoute: false }, async (_request, reply) => {
    const up = core.engine.health?.().up ?? true
    return reply.code(up ? 200 : 503).header('Content-Type', 'text/plain').send(up ? 'ok\n' : 'store unavailable\n')
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
  if (opts.demo) registerDemo(fastify)

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

  // WebSocket (§7): Node emits 'upgrade', never 'request', for `Connection: upgrade` requests, so
  // Fastify's routes never see a handshake. Only WebSocket GETs under the subscriber prefix are
  // claimed (Node ≥ 24.9 asks shouldUpgradeCallback); other upgrades stay requests, or belong to
  // another 'upgrade' listener of the host app.
  const websocket = opts.transports.includes('websocket') ? core.transports.find((t) => t.name === 'websocket') : undefined
  const isSubscriberUpgrade = (req: IncomingMessage): boolean => {
    if (websocket === undefined || req.method !== 'GET' || !websocket.detect(req)) return false
    const { path } = splitUrl(req.url ?? '/')
    return path !== null && path.startsWith(opts.subPrefix)
  }
  const srv = server as typeof server & { shouldUpgradeCallback?: (this: typeof server, req: IncomingMessage) => boolean }
  const prevShouldUpgrade = srv.shouldUpgradeCallback
  if (typeof prevShouldUpgrade === 'function') {
    srv.shouldUpgradeCallback = function (req) {
      return isSubscriberUpgrade(req) || (this.listenerCount('upgrade') > 1 && prevShouldUpgrade.call(this, req))
    }
  }
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const origin = requestOrigin(req.headers)
    if (!isSubscriberUpgrade(req)) {
      if (server.listenerCount('upgrade') === 1) rejectUpgrade(socket, ERRORS.BAD_REQUEST, origin)
      return
    }
    const limited = checkLimits(req)
    if (limited !== null) return rejectUpgrade(socket, limited, origin)
    if (!originAllowed(origin, opts.corsOrigins)) return rejectUpgrade(socket, ERRORS.ORIGIN_NOT_ALLOWED, origin)
    const { path, query } = splitUrl(req.url ?? '/')
    handleUpgrade(core, req, socket, head, path!.slice(opts.subPrefix.length), query, origin)
  })

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
