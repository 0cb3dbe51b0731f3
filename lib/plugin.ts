// The Fastify plugin: `app.register(parkline, { prefix, ...options })` adds the publisher and
// subscriber locations and the health, status and metrics paths under `prefix`, and decorates the
// app with `app.parkline` (facade.ts). It follows Fastify's plugin conventions (fastify-plugin,
// name, `fastify: '5.x'`): the decorator is visible to the host, the routes live in an
// encapsulated child with the host's prefix, and every subscriber request, the WebSocket handshake
// included, passes through the host's onRequest/preHandler hooks. The standalone server
// (server.ts) is this plugin plus what only a server owner may set.
import { readFileSync } from 'node:fs'
import { ServerResponse, type IncomingMessage, type Server } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { FD_RESERVE, defaultSubscriberCap, resolveOptions, type ParklineOptions } from './config.ts'
import { ConsumerTransport } from './consumer.ts'
import { Core } from './core.ts'
import { registerDemo } from './demo.ts'
import { ERRORS } from './errors.ts'
import { createFacade, type Parkline } from './facade.ts'
import { allowedOrigin, localClient, originAllowed, parseChannelIds, refuseWithoutHost, requestOrigin, splitUrl } from './http.ts'
import { endUnread, sweepLingering } from './linger.ts'
import { tunnelNotOurs } from './pipelined.ts'
import { handlePublisher, handleRevoke } from './publisher.ts'
import { sendError, withCors } from './reply.ts'
import { renderStatus } from './status.ts'
import { Metrics } from './metrics.ts'
import { createEngine } from './engines.ts'
import type { WorkerLink } from './cluster.ts'
import { handleSubscriber } from './subscribe.ts'
import { loadRevocations } from './revocation-file.ts'
import { Access, ambientCredentials, crossSite } from './access.ts'
import { kContinueOwed, kOwnHostCheck, kRawContentType, kUpgradeHead } from './symbols.ts'
import { TRANSPORTS } from '../transports/index.ts'
import { wantsWebSocket } from '../transports/websocket.ts'
import { closePublisherSockets } from '../transports/websocket-publisher.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** Parkline's API for the host's own code: publish, info, delete, subscribe. */
    parkline: Parkline
  }
  interface FastifyRequest {
    /**
     * For a request to Parkline's subscriber or publisher location, the channels it names, as
     * Parkline will serve them (percent-decoded, a multiplexed list split); null for any other
     * request, or one Parkline will refuse. For the host's hooks that guard channels: a URL
     * prefix cannot (`/sub/public,admin`, `/sub/admin%2Fsecret`).
     */
    readonly parklineChannels: { location: 'subscriber' | 'publisher', channels: string[] } | null
  }
}

/** Per-line and per-URL limits of §10 (the whole header section is capped by maxHeaderSize). */
export const MAX_LINE = 8192
export const MAX_HEADER_FIELDS = 1000

/** Options only the standalone server uses (listening, processes, its own logger). */
type ServerOnly = 'port' | 'host' | 'workers' | 'gcThreads' | 'heapGrowth' | 'logLevel' | 'headersTimeout' | 'keepAliveTimeout' | 'tcpKeepAlive' | 'drainWindow'

/** Options of `app.register(parkline, options)`: Parkline's options, plus Fastify's `prefix`. */
export interface ParklinePluginOptions extends Partial<Omit<ParklineOptions, ServerOnly>> {
  /** Mount point of every Parkline route (`/rt` → `/rt/pub/<channel>`, `/rt/parkline/health`). */
  prefix?: string
}

/** The standalone server hands its already resolved options under this key (not public). */
export const kResolved = Symbol('parkline.resolvedOptions')
/** A worker process of `parkline serve --workers N` hands its link to the primary under this key. */
export const kWorkerLink = Symbol('parkline.workerLink')
const kCore = Symbol('parkline.core')

/** The core behind `app.parkline` (the standalone server, the CLI, tests). Not part of the API. */
export function coreOf (app: FastifyInstance): Core {
  return (app.parkline as Parkline & { [kCore]: Core })[kCore]
}

function fdLimit (): number {
  // Node raises the soft limit to the hard one at start; /proc tells what it is.
  try {
    const m = /Max open files\s+(\d+)/.exec(readFileSync('/proc/self/limits', 'utf8'))
    if (m !== null) return Number(m[1])
  } catch {}
  return 1024
}

/**
 * §10 limits Node's parser does not enforce per line; and a second `Host`, which Node's parser
 * lets through (keeping the first) where RFC 9112 §3.2 has it answered 400: two proxies or
 * checks that read different ones would judge different requests.
 */
export function checkLimits (req: IncomingMessage): typeof ERRORS[keyof typeof ERRORS] | null {
  if (((req as { originalUrl?: string }).originalUrl ?? req.url ?? '').length > MAX_LINE) return ERRORS.URI_TOO_LONG
  const raw = req.rawHeaders
  if (raw.length > MAX_HEADER_FIELDS * 2) return ERRORS.HEADER_TOO_LARGE
  let hosts = 0
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    if (name.length + raw[i + 1]!.length + 2 > MAX_LINE) return ERRORS.HEADER_TOO_LARGE
    if (name.length === 4 && name.toLowerCase() === 'host' && ++hosts > 1) return ERRORS.BAD_REQUEST
  }
  return null
}

async function parklinePlugin (fastify: FastifyInstance, pluginOpts: ParklinePluginOptions): Promise<void> {
  const { prefix, ...rest } = pluginOpts as ParklinePluginOptions & { [kResolved]?: ParklineOptions }
  const resolved = (pluginOpts as { [kResolved]?: ParklineOptions })[kResolved]
  const opts = resolved ?? resolveOptions(rest as Record<string, unknown>, { embedded: true })
  const files = fdLimit()
  const core = new Core(opts, [...TRANSPORTS, ConsumerTransport], files)
  // every subscriber is a socket: an operator learns at start what the open-file limit allows;
  // with workers (each has the same limit, inherited), once, by worker 0, for all of them
  const link = (pluginOpts as { [kWorkerLink]?: WorkerLink })[kWorkerLink]
  const n = link?.workers ?? 1
  const says = link === undefined || link.id === 0
  if (says && opts.maxSubscribers > defaultSubscriberCap(files)) {
    fastify.log.warn({ parkline: 'config', maxSubscribers: opts.maxSubscribers, openFileLimit: files }, `maxSubscribers ${opts.maxSubscribers} is above 90% of ${link === undefined ? "this process's" : "each worker's"} open-file limit (${files}), or leaves fewer than ${FD_RESERVE} descriptors for the rest: past the limit new connections fail at the socket level, publishers' and /health's too. Raise the limit (LimitNOFILE, ulimit -n) or lower maxSubscribers`)
  } else if (says && opts.maxSubscribers === 0 && files < 65536) {
    fastify.log.warn({ parkline: 'config', maxSubscribers: core.maxSubscribers, openFileLimit: files }, `the open-file limit (${files}) caps ${link === undefined ? 'this process' : `each of the ${n} workers`} at ${core.maxSubscribers} subscribers${link === undefined ? '' : ` (${core.maxSubscribers * n} in all)`} (90% of it, leaving at least ${FD_RESERVE} for publishers and /health); raise it (LimitNOFILE, ulimit -n) for more`)
  }
  const access = await Access.create(opts, fastify.log)
  for (const w of access.warnings) fastify.log.warn({ parkline: 'config' }, w)
  core.revocations = access.auth?.revocations ?? null
  // the revocations kept across restarts (a worker gets them from its primary, which read them)
  if (opts.revocationsFile !== '' && link === undefined && core.revocations !== null) {
    for (const [kind, value, at, until] of loadRevocations(opts.revocationsFile, Math.floor(Date.now() / 1000))) {
      if (kind === 'sub') core.revocations.revokeSub(value, at)
      else core.revocations.revokeJti(value, until)
    }
  }
  core.tokenExpiry = access.checksTokens
  core.privateAnswers = access.checksSubscribers
  core.access = access
  access.onKeysChanged = () => { core.endWithdrawn() }
  core.metrics = new Metrics(core)
  core.log = fastify.log
  const facade = createFacade(core, core.transports[core.transports.length - 1] as ConsumerTransport)
  Object.defineProperty(facade, kCore, { value: core, enumerable: false })
  fastify.decorate('parkline', facade)
  core.start()
  fastify.addHook('onClose', async () => { await access.close() })
  // the engine, composed in one place (lib/engines.ts) for the plugin and the CLI alike
  const composed = await createEngine(core, opts, { log: fastify.log, link })
  core.engine = composed.engine
  fastify.addHook('onClose', composed.stop)
  if (link !== undefined) {
    // a /metrics scrape on any worker is the node's sum
    link.metrics = core.metrics
    core.metrics.nodeScrape = () => link.nodeMetrics()
  }
  // the shared timer runs until the server has closed: it destroys ended sockets whose linger is
  // over (lib/linger.ts), and the server's close waits for every connection, one that never
  // reads nor closes included
  fastify.addHook('preClose', async () => {
    // as the standalone server's drain: no new subscriber, app.parkline.subscribe() included
    core.draining = true
    core.closeAll(503)
    closePublisherSockets(core)
    // Fastify's forceCloseConnections: true destroys every connection at close; the streams just
    // ended are Parkline's (Node's server no longer tracks them), lingering for a client that reads
    // slowly or keeps its side open (up to LINGER_MS, which app.close() would wait out): theirs too
    if (fastify.initialConfig.forceCloseConnections === true) sweepLingering(core.lingering, Infinity)
  })
  // (onClose hooks run last-added first: this one before the engine and access control stop)
  fastify.addHook('onClose', async () => {
    core.closed = true
    core.stop()
  })
  // the locations' paths, as the routes below are given them (the host's prefixes included)
  const locations = { pub: '', sub: '' }
  fastify.decorateRequest('parklineChannels', {
    getter (this: FastifyRequest) {
      // only a request routed to one of the two locations' routes: a host route under the same
      // path (`GET /rt/pub/special`) is the host's, and Parkline never serves it
      if ((this.routeOptions.config as { parkline?: boolean } | undefined)?.parkline !== true) return null
      return channelsOf(this.originalUrl, locations, opts, resolved === undefined)
    }
  })
  // fastify-plugin drops `prefix` (the decorator must reach the host): the routes get it here
  await fastify.register(routes, { prefix: prefix ?? '', core, opts, access, embedded: resolved === undefined, locations } as RoutesOptions)
}

/** request.parklineChannels: the channels a request to a location names, as its handler will read them. */
function channelsOf (url: string, locations: { pub: string, sub: string }, opts: ParklineOptions, embedded: boolean): { location: 'subscriber' | 'publisher', channels: string[] } | null {
  const { path } = splitUrl(url)
  if (path === null || locations.sub === '') return null
  // embedded, a path that normalises to another is refused (400, the route below): it names none
  if (embedded && path !== pathOf(url)) return null
  const sub = path.startsWith(locations.sub)
  if (!sub && !path.startsWith(locations.pub)) return null
  const ids = sub
    ? parseChannelIds(path.slice(locations.sub.length), opts.multiplexDelimiter, opts.maxChannelIdLength, opts.maxChannelsPerSubscription)
    : parseChannelIds(path.slice(locations.pub.length), '', opts.maxChannelIdLength, 1)
  if (!Array.isArray(ids)) return null
  // ids are bytes (one char each); a host compares text
  return { location: sub ? 'subscriber' : 'publisher', channels: ids.map((id) => Buffer.from(id, 'latin1').toString('utf8')) }
}

/** `embedded`: in a host's app (its hooks guard the routes), not the standalone server. */
interface RoutesOptions { prefix: string, core: Core, opts: ParklineOptions, access: Access, embedded: boolean, locations: { pub: string, sub: string } }

/** The routes, in an encapsulated child: its content-type parser and prefix stay Parkline's. */
async function routes (child: FastifyInstance, { core, opts, access, embedded, locations }: RoutesOptions): Promise<void> {
  // the whole prefix the child's routes get (the host's own prefixes included), without a trailing
  // `/`: Fastify joins `/rt/` and `/pub/` as `/rt/pub/`, and so must the paths matched here
  const base = child.prefix.replace(/\/+$/, '')
  const pubPath = base + opts.pubPrefix
  const subPath = base + opts.subPrefix
  locations.pub = pubPath
  locations.sub = subPath
  const websocket = opts.transports.includes('websocket') ? core.transports.find((t) => t.name === 'websocket') : undefined

  // The publisher needs the raw body (any type, byte for byte): the stream is left unread.
  child.removeAllContentTypeParsers()
  child.addContentTypeParser('*', passThrough)
  // A message's Content-Type is stored verbatim, whatever it is (`foo`, empty, `/`): Fastify would
  // refuse a value that is no media type with its own JSON 415 before the handler runs. The raw
  // value is kept aside and Fastify is shown a placeholder (the body is read raw anyway).
  child.addHook('onRequest', keepRawContentType)
  // The §10 limits and a second Host on every route of Parkline's (its locations, the health,
  // status, metrics and revoke paths); the standalone server checks them on every path already
  // (lib/server.ts), a host's own routes are the host's.
  if (embedded) {
    child.addHook('onRequest', async (request, reply) => {
      const limited = checkLimits(request.raw)
      if (limited !== null) return sendError(reply.header('Connection', 'close'), limited, allowedOrigin(request.headers, opts.corsOrigins))
    })
  }
  // One handler per location: the location is the route that matched, and the normalised path
  // must stay inside it (`/sub/../pub/x` is no publish that a host hook guarding `/pub/` missed).
  const route = (sub: boolean) => async (request: FastifyRequest, reply: FastifyReply): Promise<unknown> => {
    const req = request.raw
    const origin = requestOrigin(req.headers)
    // (the §10 limits were checked in onRequest: lib/server.ts's hook, or the one above)
    // refused without CORS headers: the page of a site not listed learns nothing, credentials least
    // of all (before any other answer, a bad path's included)
    if (!originAllowed(origin, opts.corsOrigins)) return sendError(reply, ERRORS.ORIGIN_NOT_ALLOWED, null)
    // Embedded, the host's hooks may have admitted this request by the user's cookies (a session):
    // from a page of another site that corsOrigins does not list, which the browser lets read the
    // answer (every origin is echoed with credentials where corsOrigins is empty) or which may
    // publish by a plain form POST, that is the page acting as the user. Refused, as the standalone
    // server refuses such a page the use of its own token cookie (lib/access.ts ambientCredentials).
    if (embedded && req.headers.cookie !== undefined && !ambientCredentials(req.headers, opts.corsOrigins)) return sendError(reply, ERRORS.CROSS_SITE_COOKIES, null)
    // the URL as received: a host's rewriteUrl (or server.ts's routing escape) must not change ids
    const { path, query } = splitUrl(request.originalUrl)
    if (path === null) return sendError(reply, ERRORS.BAD_PATH, origin)
    // Embedded, the host's hooks judged the path as it came (`request.url`): one that normalises to
    // another (`.` or `..` segments, `%2e`, `//`) would be served as a channel they never saw
    // (`/rt/sub/ok/../secret`). Refused; the standalone server, with no hooks of a host, resolves
    // such a path as nginx does.
    if (embedded && path !== pathOf(request.originalUrl)) return sendError(reply, ERRORS.BAD_PATH, origin)
    if (sub && path.startsWith(subPath)) {
      // a refused WebSocket handshake says which version it speaks (§7, RFC 6455 §4.4)
      if (websocket?.detect(req) === true) reply.header('Sec-WebSocket-Version', '13')
      return handleSubscriber(core, access, request, reply, path.slice(subPath.length), query, origin)
    }
    if (!sub && path.startsWith(pubPath)) return handlePublisher(core, access, request, reply, path.slice(pubPath.length), origin)
    // dot segments that leave the location the request was routed to
    if (path.startsWith(subPath) || path.startsWith(pubPath)) return sendError(reply, ERRORS.BAD_PATH, origin)
    // routed here but under neither location (a host's `caseSensitive: false` routes `/RT/SUB/x`
    // here; `/rt/%70ub/x`): not served, and embedded, the host's own 404 answers it
    if (embedded) return reply.callNotFound()
    return withCors(reply.code(404), origin).send()
  }
  // Every method the host's Fastify knows; unknown ones get 405 from the handlers (the standalone
  // server adds every method Node parses, a host app keeps its own list).
  const methods = child.supportedMethods.filter((m) => m !== 'CONNECT')
  // (config.parkline: request.parklineChannels is given for these two routes only)
  child.route({ method: methods, url: opts.pubPrefix + '*', exposeHeadRoute: false, config: { parkline: true }, handler: route(false) })
  child.route({ method: methods, url: opts.subPrefix + '*', exposeHeadRoute: false, config: { parkline: true }, handler: route(true) })

  if (opts.healthPath !== '') {
    // for load balancers: 503 whenever new subscribers would get 503 here: while draining (a
    // shutdown), while the engine's store (Redis) is unreachable, while a channel owner (a worker)
    // is away
    child.get(opts.healthPath, { exposeHeadRoute: false }, async (_request, reply) => {
      const why = core.draining ? 'draining\n' : !(core.engine.health?.().up ?? true) ? 'store unavailable\n' : core.engine.up === false ? 'worker unavailable\n' : null
      return reply.code(why === null ? 200 : 503).header('Content-Type', 'text/plain').send(why ?? 'ok\n')
    })
  }
  // statusLoopbackOnly: the client is the socket's peer, or, behind a trusted proxy, the address
  // it forwarded; a forwarded request through any other proxy (a loopback one included) is refused.
  // A page of another site in a browser on this machine is no local process either (lib/access.ts
  // crossSite): a DNS-rebinding page would otherwise read the status and metrics from 127.0.0.1.
  const operatorOnly = (request: FastifyRequest): boolean => {
    if (!opts.statusLoopbackOnly) return true
    if (crossSite(request, opts.corsOrigins)) return false
    return localClient(request.socket.remoteAddress, request.headers, opts.trustedProxies)
  }
  if (opts.statusPath !== '') {
    child.get(opts.statusPath, { exposeHeadRoute: false }, async (request, reply) => {
      if (!operatorOnly(request)) return sendError(reply, ERRORS.NOT_LOOPBACK, null)
      return reply.header('Content-Type', 'text/plain').send(Buffer.from(renderStatus(core)))
    })
  }
  if (opts.metricsPath !== '') {
    child.get(opts.metricsPath, { exposeHeadRoute: false }, async (request, reply) => {
      if (!operatorOnly(request)) return sendError(reply, ERRORS.NOT_LOOPBACK, null)
      let scrape
      try {
        scrape = await core.metrics!.render()
      } catch (err) {
        // with workers, a primary that did not answer in time (lib/cluster.ts WorkerLink.request)
        if ((err as { code?: string }).code === ERRORS.PRIMARY_UNAVAILABLE.code) return sendError(reply, ERRORS.PRIMARY_UNAVAILABLE, null)
        throw err
      }
      return reply.header('Content-Type', scrape.contentType).send(scrape.text)
    })
  }
  if (opts.revokePath !== '') {
    child.route({ method: ['POST', 'OPTIONS'], url: opts.revokePath, handler: async (request, reply) => await handleRevoke(core, access, request, reply) })
  }
  if (opts.demo) registerDemo(child, { pub: pubPath, sub: subPath })

  const server = child.server
  const revokePath = opts.revokePath === '' ? null : base + opts.revokePath
  // Expect: 100-continue: an immediate 413 when Content-Length is already over the limit (§3.1).
  // Only when the host has no checkContinue handler of its own when the app is ready (one it adds
  // after registering Parkline counts); other paths get Node's default.
  child.addHook('onReady', async () => {
    if (server.listenerCount('checkContinue') > 0) return
    server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
      // no 100 for a request the standalone server refuses for want of a Host (lib/server.ts)
      if ((server as Server & { [kOwnHostCheck]?: true })[kOwnHostCheck] === true && refuseWithoutHost(req, res)) return
      const { path } = splitUrl(req.url ?? '/')
      const declared = Number(req.headers['content-length'])
      if (path !== null && path.startsWith(pubPath) && declared > opts.maxMessageSize) {
        const origin = requestOrigin(req.headers)
        const headers: Record<string, string> = { 'Content-Type': 'text/plain', Connection: 'close' }
        // (an origin corsOrigins does not allow gets no CORS headers, as on every other answer)
        if (origin !== null && originAllowed(origin, opts.corsOrigins)) {
          headers['Access-Control-Allow-Origin'] = origin
          headers['Access-Control-Allow-Credentials'] = 'true'
        }
        res.writeHead(413, headers)
        res.end(ERRORS.PAYLOAD_TOO_LARGE.message)
        return
      }
      // a body Parkline reads is asked for only once the request is admitted (access control,
      // the checks before the body): one refused gets its answer and no `100 Continue`
      if (path !== null && (path.startsWith(pubPath) || (revokePath !== null && path === revokePath))) {
        (req as IncomingMessage & { [kContinueOwed]?: ServerResponse })[kContinueOwed] = res
      } else {
        res.writeContinue()
      }
      server.emit('request', req, res)
    })
  })

  // WebSocket (§7): a handshake under the subscriber prefix (or, option websocketPublish, the
  // publisher's) is routed through Fastify like any request, so the host's hooks (auth) run
  // before the transport takes the socket.
  if (websocket !== undefined || opts.websocketPublish) {
    claimUpgrades(child, (req) => {
      if (req.method !== 'GET' || !wantsWebSocket(req.headers)) return false
      const { path } = splitUrl(req.url ?? '/')
      if (path === null) return false
      return (websocket !== undefined && path.startsWith(subPath)) || (opts.websocketPublish && path.startsWith(pubPath))
    })
  }
}

// ---- WebSocket handshakes through Fastify's router -------------------------------------------
//
// Node emits a request with `Upgrade:` as 'upgrade', never as 'request', so Fastify's hooks would
// not see it. One dispatcher per server listens to 'upgrade': Parkline's handshakes are routed
// into Fastify with a ServerResponse on the socket (as @fastify/websocket does), so the host's
// onRequest/preHandler hooks run, then the WebSocket transport takes the socket (its `serve`). The
// bytes after the handshake travel with the request (kUpgradeHead). Other 'upgrade' listeners
// (@fastify/websocket's, the host's) are moved behind the dispatcher when the app is ready and get
// every upgrade Parkline does not claim: both plugins work in one app, registered in either order.
// Node ≥ 24.9 also asks `shouldUpgradeCallback`; it is told yes for Parkline's handshakes and
// keeps its own answer for the rest.

type Claim = (req: IncomingMessage) => boolean
type UpgradeListener = (req: IncomingMessage, socket: Socket, head: Buffer) => void
type UpgradeServer = Server & { shouldUpgradeCallback?: (this: Server, req: IncomingMessage) => boolean }

interface Dispatcher {
  claims: Array<{ claim: Claim, app: FastifyInstance }>
  others: UpgradeListener[]
  listener: UpgradeListener
}

const dispatchers = new WeakMap<Server, Dispatcher>()

function claimUpgrades (app: FastifyInstance, claim: Claim): void {
  const server = app.server as UpgradeServer
  let d = dispatchers.get(server)
  if (d === undefined) {
    const disp: Dispatcher = {
      claims: [],
      others: [],
      listener: (req, socket, head) => {
        // pipelined behind a subscriber's request or a response still being written: not served
        if (tunnelNotOurs(socket)) return
        for (const c of disp.claims) {
          if (c.claim(req)) return routeUpgrade(c.app, req, socket, head)
        }
        if (disp.others.length > 0) {
          for (const l of disp.others) l.call(server, req, socket, head)
          return
        }
        // a listener the host added after it was ready (a WebSocketServer on app.server made after
        // listen) is called by the server too: it is that listener's to answer
        if (server.listenerCount('upgrade') > 1) return
        // nobody upgrades it (older Node asks no shouldUpgradeCallback): an ordinary request for
        // the host's routes, and the connection ends with its answer
        routeUpgrade(app, req, socket, head)
      }
    }
    d = disp
    dispatchers.set(server, d)
    server.on('upgrade', d.listener)
    const prev = server.shouldUpgradeCallback
    if (typeof prev === 'function') {
      server.shouldUpgradeCallback = function (req) {
        if (disp.claims.some((c) => c.claim(req))) return true
        // what Node would say without Parkline's listener
        return (disp.others.length > 0 || this.listenerCount('upgrade') > 1) && prev.call(this, req)
      }
    }
  }
  d.claims.push({ claim, app })
  const disp = d
  app.addHook('onReady', async () => {
    for (const l of server.listeners('upgrade') as UpgradeListener[]) {
      if (l === disp.listener) continue
      server.removeListener('upgrade', l)
      disp.others.push(l)
    }
  })
  app.addHook('onClose', async () => {
    disp.claims = disp.claims.filter((c) => c.app !== app)
    if (disp.claims.length > 0) return
    server.removeListener('upgrade', disp.listener)
    dispatchers.delete(server)
  })
}

function routeUpgrade (app: FastifyInstance, req: IncomingMessage, socket: Socket, head: Buffer): void {
  socket.on('error', destroyOnError)
  ;(req as IncomingMessage & { [kUpgradeHead]?: Buffer })[kUpgradeHead] = head.length > 0 ? Buffer.from(head) : undefined
  const res = new ServerResponse(req)
  // an answer written through Fastify (a hook's 401, a 400): `Connection: close`, and the
  // connection ends with it (Node's parser no longer reads this socket)
  res.shouldKeepAlive = false
  res.assignSocket(socket)
  ;(res as AnsweredUpgrade)[kAnswerCore] = coreOf(app)
  res.on('finish', endAfterAnswer)
  try {
    app.routing(req, res)
  } catch {
    socket.destroy()
  }
}

const kAnswerCore = Symbol('parkline.answerCore')
type AnsweredUpgrade = ServerResponse & { [kAnswerCore]?: Core }

function endAfterAnswer (this: AnsweredUpgrade): void {
  const socket = this.socket
  if (socket === null) return
  this.detachSocket(socket)
  // Node's parser no longer reads this socket (lib/linger.ts endUnread): ended without reading on,
  // it stayed open for good once its client left
  const core = this[kAnswerCore]
  if (core === undefined) socket.destroySoon()
  else endUnread(core, socket)
}

function destroyOnError (this: Socket): void {
  this.destroy()
}

async function keepRawContentType (request: FastifyRequest): Promise<void> {
  const ct = request.headers['content-type']
  if (ct === undefined || /^[^\s/;]+\/[^\s/;]+\s*(;|$)/.test(ct)) return
  ;(request.raw as IncomingMessage & { [kRawContentType]?: string })[kRawContentType] = ct
  request.headers['content-type'] = 'application/octet-stream'
}

function passThrough (_req: FastifyRequest, _payload: IncomingMessage, done: (err: Error | null, body?: unknown) => void): void {
  done(null)
}

const plugin: FastifyPluginAsync<ParklinePluginOptions> = fp(parklinePlugin, { name: 'parkline', fastify: '5.x' })

export default plugin
export { plugin as parkline }

/** A URL's path as received: everything before the query. */
function pathOf (url: string): string {
  const q = url.indexOf('?')
  return q === -1 ? url : url.slice(0, q)
}
