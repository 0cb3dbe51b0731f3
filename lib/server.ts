// The standalone server: Fastify 5 with the HTTP limits of PROTOCOL.md §10 (only a server owner can
// set them), the plugin, and graceful shutdown.
import { createServer, METHODS, STATUS_CODES, type IncomingMessage, type Server, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { hostname } from 'node:os'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { DRAIN_QUIET_MS, FINISH_GRACE_MS, type ParklineOptions } from './config.ts'
import { kOwnHostCheck, kRawPublishers } from './symbols.ts'
import { sweepLingering } from './linger.ts'
import { ERRORS, type ErrorSpec } from './errors.ts'
import { PUB_ALLOW, SUB_ALLOW, allowedOrigin, normalizePath, refuseWithoutHost, splitUrl } from './http.ts'
import { MAX_LINE, checkLimits, coreOf, kResolved, kWorkerLink, parkline } from './plugin.ts'
import type { WorkerLink } from './cluster.ts'
import { sendError } from './reply.ts'
import { RawPublishers } from './raw-publish.ts'
import { fastPath, notFast, type FastPath } from './fast-path.ts'
import { droppedBehindSubscriber, tunnelNotOurs } from './pipelined.ts'
import { heldFromNode, heldParserFailed } from '../transports/detach.ts'
import { endUnread } from './linger.ts'
import { whenQuiet } from './stats.ts'
import type { Core } from './core.ts'

/** Whole header section (request line included) before Node's parser gives up (PROTOCOL.md §10: 32 KiB, nginx's 4 × 8k). */
export const MAX_HEADER_SECTION = 32768

interface ClientError extends Error { code?: string, rawPacket?: unknown, bytesParsed?: number }

/**
 * The packet from the start of the line Node's parser failed in: a request pipelined behind
 * others in one packet is judged by its own line, not the first request's.
 */
function failedLine (err: ClientError): unknown {
  const raw = err.rawPacket
  if (!Buffer.isBuffer(raw) || typeof err.bytesParsed !== 'number' || err.bytesParsed <= 0) return raw
  return raw.subarray(raw.lastIndexOf(10, Math.min(err.bytesParsed, raw.length) - 1) + 1)
}

function firstLineLength (raw: unknown): number {
  if (!Buffer.isBuffer(raw)) return 0
  const i = raw.indexOf(10)
  return i === -1 ? raw.length : i
}

/**
 * The path of a well-formed request line whose method Node's parser does not know (`BREW /x
 * HTTP/1.1`), or null for garbage: such a request gets 405, not 400 (§3.1, §4.1).
 */
function unknownMethodPath (raw: unknown): string | null {
  if (!Buffer.isBuffer(raw)) return null
  const m = /^[A-Z][A-Z_-]{0,31} (\/[\x21-\x7e]*) HTTP\/1\.[01]\r?\n/.exec(raw.toString('latin1', 0, Math.min(raw.length, MAX_LINE)))
  return m === null ? null : m[1]!
}

/** The request line ends in ` HTTP/<digit>.<digit>` and CRLF. */
function wellFormedVersion (raw: unknown): boolean {
  if (!Buffer.isBuffer(raw)) return true
  const line = raw.toString('latin1', 0, Math.min(raw.length, MAX_LINE + 2))
  const nl = line.indexOf('\n')
  return nl === -1 ? / HTTP\/\d\.\d/.test(line) : / HTTP\/\d\.\d\r$/.test(line.slice(0, nl))
}

/** Answer what Node's HTTP parser rejected (§10), then close. */
export function clientErrorHandler (err: ClientError, socket: Socket, subPrefix = '/sub/'): void {
  const s = socket as Socket & { _httpMessage?: { headersSent?: boolean } | null }
  // bytes behind a stream's or a parked poll's request that Node's parser read before letting go:
  // not answered here; a poll's connection ends, or a fresh parser would read the rest of that
  // request as requests of their own (transports/detach.ts)
  if (heldFromNode(socket)) {
    heldParserFailed(socket)
    return
  }
  if (err.code === 'ECONNRESET' || !socket.writable || (s._httpMessage?.headersSent ?? false)) {
    socket.destroy()
    return
  }
  // answered once: Node's parser fails again on each later chunk the client sends
  const marked = socket as Socket & { [kParseFailed]?: true }
  if (marked[kParseFailed] === true) return
  marked[kParseFailed] = true
  answerAfterPending(socket, clientErrorAnswer(err, subPrefix))
}

const kParseFailed = Symbol('parkline.parseFailed')

/**
 * The answers to requests before this one on the connection that are still to come (a publish
 * being published, pipelined behind another) go first, in order, then `answer`, then the close:
 * written at once it would take their place, and a client would publish again a message that was
 * published. An answer whose own request is not complete is that request's (the error is in its
 * body): it is not waited for.
 */
function answerAfterPending (socket: Socket, answer: string): void {
  const pending = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage
  if (pending === null || pending === undefined || pending.writableFinished || !pending.req.complete) {
    if (socket.writable) socket.end(answer)
    return
  }
  // Node hands the socket to the next queued answer as this one finishes (before this listener)
  pending.once('finish', () => { answerAfterPending(socket, answer) })
  pending.once('close', () => { if (!pending.writableFinished) socket.destroy() })
}

/** The answer to what Node's parser rejected (§10): its status, its text, Connection: close. */
function clientErrorAnswer (err: ClientError, subPrefix: string): string {
  let e: ErrorSpec = ERRORS.BAD_REQUEST
  let allow = ''
  switch (err.code) {
    case 'HPE_INVALID_METHOD': {
      const path = unknownMethodPath(failedLine(err))
      if (path !== null) {
        e = ERRORS.METHOD_NOT_ALLOWED
        allow = 'Allow: ' + ((normalizePath(path) ?? '').startsWith(subPrefix) ? SUB_ALLOW : PUB_ALLOW) + '\r\n'
      }
      break
    }
    case 'HPE_HEADER_OVERFLOW':
      e = firstLineLength(err.rawPacket) > MAX_LINE ? ERRORS.URI_TOO_LONG : ERRORS.HEADER_TOO_LARGE
      break
    case 'HPE_INVALID_VERSION':
      // 505 only for a well-formed version Parkline does not speak (HTTP/9.9); a request line
      // ending in a bare LF is malformed: 400 (RFC 9112 §2.2)
      e = wellFormedVersion(failedLine(err)) ? ERRORS.HTTP_VERSION : ERRORS.BAD_REQUEST
      break
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      e = ERRORS.REQUEST_TIMEOUT
      break
  }
  const status = e.statusCode
  const text = e.message
  return `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: text/plain\r\nContent-Length: ${text.length}\r\nConnection: close\r\n${allow}\r\n${text}`
}

function refuseConnect (core: Core, socket: Socket): void {
  const text = ERRORS.METHOD_NOT_ALLOWED.message
  socket.on('error', () => {})
  // pipelined behind a subscriber's request or a response still being written: not answered
  if (tunnelNotOurs(socket)) return
  // Node's parser let go of the socket (a tunnel request): read on, or a client that leaves is
  // never seen to (lib/linger.ts endUnread)
  endUnread(core, socket, `HTTP/1.1 405 Method Not Allowed\r\nAllow: ${PUB_ALLOW}\r\nContent-Type: text/plain\r\nContent-Length: ${text.length}\r\nConnection: close\r\n\r\n${text}`)
}

/** An answer to an earlier request on `socket` is still to be written or finishing (Node queues this one's). */
function pendingBefore (socket: Socket, res: ServerResponse): boolean {
  const current = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage
  return current !== undefined && current !== null && current !== res
}

/**
 * Fastify's option that turns its request log lines off: a LogController (later Fastify 5 releases,
 * where `disableRequestLogging` is deprecated), or that option where Fastify has none. Fastify is
 * the host's (a peer dependency, any 5.x): its default export carries the class when it has one.
 */
function noRequestLogging (): Partial<FastifyServerOptions> {
  const LogController = (Fastify as unknown as { LogController?: new (o: { disableRequestLogging: boolean }) => unknown }).LogController
  if (LogController !== undefined) return { logController: new LogController({ disableRequestLogging: true }) } as Partial<FastifyServerOptions>
  return { disableRequestLogging: true } as Partial<FastifyServerOptions>
}

export async function buildServer (opts: ParklineOptions, link?: WorkerLink): Promise<FastifyInstance> {
  // publishes and subscribes skip Fastify once the plugin is in (lib/fast-path.ts);
  // PARKLINE_NO_FAST_PATH=1 sends them through Fastify too, for comparing the two
  let fast: FastPath | null = null
  /** Set once the plugin is in: while it drains, every answer closes its connection. */
  let served: Core | null = null
  /**
   * Node's responses, which while the server drains (SIGTERM) say Connection: close and end their
   * connection, so no client or proxy sends another request on one the server is about to close:
   * decided when the head is written, so an answer to a request that came before the signal
   * (a body still arriving, an access check, a publish through the owner worker) closes too.
   */
  class DrainAwareResponse<R extends IncomingMessage = IncomingMessage> extends ServerResponse<R> {
    override writeHead (...args: unknown[]): this {
      if (served !== null && served.draining) this.shouldKeepAlive = false
      return (super.writeHead as (...a: unknown[]) => this)(...args)
    }
  }
  const app: FastifyInstance = Fastify({
    // Fastify gives a plugin 10 s to register; Parkline's start (its modules loaded and compiled,
    // a Redis engine's wait for the store, up to 3 s, a past second for ids) took that and more on a
    // busy host and exited 1 (`Plugin did not start in time`). A start that takes a minute is stuck.
    pluginTimeout: 60_000,
    // a worker's lines say which worker, as the primary's say `role: primary`
    logger: opts.logLevel === 'silent' ? false : { level: opts.logLevel, serializers: { req: logRequest }, ...(link !== undefined ? { base: { pid: process.pid, hostname: hostname(), role: 'worker', worker: link.id } } : {}) },
    // a push server's requests are its subscribers: one log line each would be the hot path
    ...noRequestLogging(),
    serverFactory: (handler: (req: IncomingMessage, res: ServerResponse) => void): Server => {
      const server = createServer({
        maxHeaderSize: MAX_HEADER_SECTION,
        headersTimeout: opts.headersTimeout * 1000,
        // Node checks that timeout only every connectionsCheckingInterval (default 30 s, which
        // would let a slow header section live up to 90 s)
        connectionsCheckingInterval: 1000,
        // a whole request, body included, within the head's time, what access control may wait
        // before a publish body is read (a JWKS fetch and an authorize request, authorizeTimeout
        // each) and the body's: a route that reads no body (/health, /status, a 404, an OPTIONS) is
        // answered at once and Node reads and drops the rest, which without this bound a client
        // could trickle for ever, holding the connection and its descriptor. Above every bound of
        // Parkline's own, so it never cuts a publish those let through (its clock starts at the
        // request's first byte); a subscriber's request is whole at its head, however long its
        // stream lasts.
        requestTimeout: (opts.headersTimeout + 2 * opts.authorizeTimeout + opts.bodyTimeout + 1) * 1000,
        noDelay: true,
        // a peer gone without a FIN (a parked long-poll on a quiet channel, which writes nothing)
        // is found by the kernel's probes, not held for ever: no timer of ours per connection
        keepAlive: opts.tcpKeepAlive > 0,
        keepAliveInitialDelay: opts.tcpKeepAlive * 1000,
        ServerResponse: DrainAwareResponse,
        // Node's own 400 for an HTTP/1.1 request without Host never reaches 'request': one
        // pipelined behind a parked poll would not be seen there (below, as Node answers it)
        requireHostHeader: false
      }, (req, res) => {
        // behind a subscriber's request on this connection: nobody sees it (lib/pipelined.ts)
        if (droppedBehindSubscriber(req.socket, res)) return
        if (refuseWithoutHost(req, res)) return
        // draining: a request pipelined behind one not yet answered is not applied, since that
        // answer closes the connection and this one's could never be sent (the client sends it again)
        if (served !== null && served.draining && pendingBefore(req.socket, res)) return
        if (fast === null) return handler(req, res)
        if (fast(req, res)) return
        notFast(req)
        handler(req, res)
      })
      // one more than the §10 limit, so an over-long list is seen (and answered 400), not truncated
      server.maxHeadersCount = 1001
      // idle between requests (Node's 5 s is shorter than most proxies' and load balancers' own
      // idle timeouts: a request they send on a connection this side is closing gets them a 502)
      server.keepAliveTimeout = opts.keepAliveTimeout * 1000
      // (the checkContinue of lib/plugin.ts checks Host first too)
      Object.defineProperty(server, kOwnHostCheck, { value: true })
      // an Expect Node does not know gets its 417, as Node answers it, unless the request is
      // behind a parked poll (which then gets its 400, lib/pipelined.ts)
      server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
        if (droppedBehindSubscriber(req.socket, res) || refuseWithoutHost(req, res)) return
        res.writeHead(417)
        res.end()
      })
      // CONNECT (a proxy tunnel) is not Parkline's: a prompt 405, not a dropped connection
      server.on('connect', (_req: IncomingMessage, socket: Socket) => { refuseConnect(coreOf(app), socket) })
      return server
    },
    clientErrorHandler: (err: Error, socket: Socket) => { clientErrorHandler(err, socket, opts.subPrefix) },
    rewriteUrl: (req) => {
      const url = req.url ?? '/'
      const q = url.indexOf('?')
      let path = normalizePath(q === -1 ? url : url.slice(0, q))
      // `..` above the root: routed as-is to the handlers, which answer 400
      if (path === null) return url
      // Ids may be any bytes (%FF%FE, §1), which the router cannot decode: route on an escaped
      // copy; the handlers read the original URL.
      if (path.indexOf('%') !== -1) {
        try { decodeURI(path) } catch { path = path.replaceAll('%', '%25') }
      }
      return q === -1 ? path : path + url.slice(q)
    },
    return503OnClosing: false
  })
  // The server owner's choice: every method Node parses reaches the handlers, so PROPFIND, BREW…
  // get a prompt 405 rather than a 404 (an embedding host keeps its own method list).
  for (const m of METHODS) {
    if (m !== 'CONNECT' && !app.supportedMethods.includes(m)) app.addHttpMethod(m, { hasBody: true })
  }
  await app.register(parkline, { [kResolved]: opts, [kWorkerLink]: link } as Parameters<typeof parkline>[1])
  app.addHook('onReady', async () => { served = coreOf(app) })
  if (process.env.PARKLINE_NO_FAST_PATH !== '1') {
    let raw: RawPublishers | null = null
    app.addHook('onReady', async () => {
      const core = coreOf(app)
      fast = fastPath(core, opts)
      // publisher and long-poll connections are read by Parkline itself (lib/raw-publish.ts);
      // PARKLINE_NO_RAW_PUBLISH=1 leaves them to Node's parser and the fast path, for comparing
      if (process.env.PARKLINE_NO_RAW_PUBLISH === '1') return
      raw = RawPublishers.install(app.server, core, opts, (socket) => {
        socket.on('error', () => {})
        // (Node's own 408 for a header section not whole within headersTimeout)
        clientErrorHandler(Object.assign(new Error('request timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }) as ClientError, socket, opts.subPrefix)
      })
    })
    app.addHook('preClose', async () => { raw?.close() })
  }
  // A fault in a handler is logged (request logging is off, and Fastify's own handler then logs
  // nothing), with the request (its query left out, logRequest) and the error; the client gets a
  // plain 500 that tells nothing of it. Fastify's 4xx (a bad URL, a body it refused) stay its own.
  app.setErrorHandler((err: Error & { statusCode?: number }, request, reply) => {
    if ((err.statusCode ?? 500) < 500) return reply.send(err)
    request.log.error({ req: request, err }, `request failed: ${err.message}`)
    return sendError(reply.header('Connection', 'close'), ERRORS.INTERNAL, allowedOrigin(request.headers, opts.corsOrigins))
  })
  // a path no route serves: a short text/plain answer like Parkline's others (section 11), not
  // Fastify's JSON one (an embedding host keeps its own)
  app.setNotFoundHandler((request, reply) => { sendError(reply, ERRORS.NOT_FOUND, allowedOrigin(request.headers, opts.corsOrigins)) })
  // The §10 limits and `..` above the root hold on every path, not only the plugin's locations.
  app.addHook('onRequest', async (request, reply) => {
    const limited = checkLimits(request.raw)
    if (limited !== null) return sendError(reply.header('Connection', 'close'), limited, allowedOrigin(request.headers, opts.corsOrigins))
    if (splitUrl(request.originalUrl).path === null) return sendError(reply, ERRORS.BAD_PATH, allowedOrigin(request.headers, opts.corsOrigins))
  })
  return app
}

/**
 * A request as a log line shows it (a fault's, buildServer's error handler): its query left out,
 * where a subscriber's `?access_token=` (tokenInQuery) or a relay's key would be.
 */
export function logRequest (request: { method: string, url: string, hostname?: string, ip?: string, socket?: { remotePort?: number } }): Record<string, unknown> {
  const q = request.url.indexOf('?')
  return {
    method: request.method,
    url: q === -1 ? request.url : request.url.slice(0, q) + '?redacted',
    host: request.hostname,
    remoteAddress: request.ip,
    remotePort: request.socket?.remotePort
  }
}

/**
 * SIGTERM/SIGINT: stop accepting, drain subscribers in waves over the window, then exit. The
 * drain ends early once no subscriber is left and no publish came for DRAIN_QUIET_MS (an idle server
 * stops at once). A worker of an in-memory deployment (`coordinated`) does not decide that alone:
 * its channels' subscribers may be on the other workers, which would lose their owner; the
 * primary, which sees every worker's counts, tells them all at once (WorkerLink.onFinish).
 * A second signal ends a lone process at once; a worker ignores it: under `systemctl stop` or
 * Ctrl-C the whole process group gets the signal and the primary forwards it too, and the
 * primary, not a repeated signal, ends its workers (SIGKILL: at its own second signal, or for one
 * that outlives the window).
 */
export function installShutdown (app: FastifyInstance, opts: ParklineOptions, worker = false, coordinated: { onFinish: (() => void) | null } | null = null): void {
  let closing = false
  let finished = false
  let idle: NodeJS.Timeout | null = null
  const finish = (): void => {
    if (finished) return
    finished = true
    if (idle !== null) clearInterval(idle)
    // a request still under way when the drain ends (a client sending its head or body a byte at
    // a time) is not waited for past FINISH_GRACE_MS: Node stops enforcing headersTimeout once the
    // server closes, and bodyTimeout (default 30 s) would outlast a supervisor's stop timeout
    let cut = false
    let grace = setTimeout(() => {
      // subscribers Parkline already ended (their last bytes given LINGER_MS to reach a slow peer)
      // go first, without counting: nobody's request is cut there
      sweepLingering(coreOf(app).lingering, Infinity)
      grace = setTimeout(() => {
        cut = true
        const raw = (app.server as { [kRawPublishers]?: { destroyAll: () => number } })[kRawPublishers]?.destroyAll() ?? 0
        app.server.closeAllConnections()
        app.log.warn({ graceMs: FINISH_GRACE_MS, rawConnections: raw }, 'the close did not finish after the drain (requests still under way, or a store slow to leave): connections are closed')
        // (anything that still holds app.close() does not hold the process)
        setTimeout(() => process.exit(1), 1000).unref()
      }, 500)
      grace.unref()
    }, FINISH_GRACE_MS)
    grace.unref()
    app.close().then(() => {
      clearTimeout(grace)
      if (cut) {
        app.log.warn('drain finished, with requests cut')
        process.exit(1)
      }
      app.log.info('drain finished')
      process.exit(0)
    }, () => process.exit(1))
  }
  const onSignal = (signal: NodeJS.Signals): void => {
    if (closing) {
      if (worker) return
      app.log.warn({ signal }, 'second signal: exiting now, the drain cut short')
      process.exit(1)
    }
    closing = true
    const core = coreOf(app)
    app.log.info({ signal, subscribers: core.table.size, drainWindow: opts.drainWindow }, 'drain begun')
    core.drain(opts.drainWindow)
    const t = setTimeout(finish, opts.drainWindow * 1000 + 500)
    t.unref()
    if (coordinated === null) idle = whenQuiet(() => core.table.size, () => core.stats.published, DRAIN_QUIET_MS, finish)
    // keep the process alive for the window even if every socket closed
    setTimeout(() => {}, opts.drainWindow * 1000 + 1000)
  }
  // the primary's word arrives only once this worker was signalled too (it forwards the signal first)
  if (coordinated !== null) coordinated.onFinish = () => { if (closing) finish() }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
  // (SIGHUP reads the configuration again: lib/cli.ts onReload; Node's default, an exit with no
  // drain, never applies)
}
