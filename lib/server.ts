// The standalone server: Fastify 5 with the HTTP limits of PROTOCOL.md §10 (only a server owner can
// set them), the plugin, and graceful shutdown.
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import type { ParklineOptions } from './config.ts'
import { normalizePath } from './http.ts'
import { MAX_LINE, parkline } from './plugin.ts'

/** Whole header section (request line included) before Node's parser gives up (§10: 32 KiB). */
export const MAX_HEADER_SECTION = 32768 + MAX_LINE

interface ClientError extends Error { code?: string, rawPacket?: unknown }

function firstLineLength (raw: unknown): number {
  if (!Buffer.isBuffer(raw)) return 0
  const i = raw.indexOf(10)
  return i === -1 ? raw.length : i
}

/** Answer what Node's HTTP parser rejected (§10), then close. */
export function clientErrorHandler (err: ClientError, socket: Socket): void {
  const s = socket as Socket & { _httpMessage?: { headersSent?: boolean } | null }
  if (err.code === 'ECONNRESET' || !socket.writable || (s._httpMessage?.headersSent ?? false)) {
    socket.destroy()
    return
  }
  let status = 400
  let text = 'Bad Request'
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      if (firstLineLength(err.rawPacket) > MAX_LINE) {
        status = 414
        text = 'Request-URI Too Large'
      } else {
        text = 'Request Header Or Cookie Too Large'
      }
      break
    case 'HPE_INVALID_VERSION':
      status = 505
      text = 'HTTP Version Not Supported'
      break
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      status = 408
      text = 'Request Timeout'
      break
  }
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: text/plain\r\nContent-Length: ${text.length}\r\nConnection: close\r\n\r\n${text}`)
}

export async function buildServer (opts: ParklineOptions): Promise<FastifyInstance> {
  const app: FastifyInstance = Fastify({
    logger: opts.logLevel === 'silent' ? false : { level: opts.logLevel },
    serverFactory: (handler: (req: IncomingMessage, res: ServerResponse) => void): Server => {
      const server = createServer({
        maxHeaderSize: MAX_HEADER_SECTION,
        headersTimeout: opts.headersTimeout * 1000,
        requestTimeout: 0,
        noDelay: true
      }, handler)
      // one more than the §10 limit, so an over-long list is seen (and answered 400), not truncated
      server.maxHeadersCount = 1001
      return server
    },
    clientErrorHandler: clientErrorHandler as (err: Error, socket: Socket) => void,
    rewriteUrl: (req) => {
      const url = req.url ?? '/'
      const q = url.indexOf('?')
      const path = normalizePath(q === -1 ? url : url.slice(0, q))
      // `..` above the root: routed as-is to the handlers, which answer 400
      return path === null ? url : (q === -1 ? path : path + url.slice(q))
    },
    return503OnClosing: false
  })
  await app.register(parkline, { resolved: opts })
  return app
}

/** SIGTERM/SIGINT: stop accepting, drain subscribers in waves over the window, then exit. */
export function installShutdown (app: FastifyInstance, opts: ParklineOptions): void {
  let closing = false
  const onSignal = (): void => {
    if (closing) {
      process.exit(1)
    }
    closing = true
    app.parkline.drain(opts.drainWindow)
    const t = setTimeout(() => {
      app.close().then(() => process.exit(0), () => process.exit(1))
    }, opts.drainWindow * 1000 + 500)
    t.unref()
    // keep the process alive for the window even if every socket closed
    setTimeout(() => {}, opts.drainWindow * 1000 + 1000)
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
}
