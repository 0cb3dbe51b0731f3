// Publishing over a WebSocket (Nchan's `nchan_publisher websocket`, on by default there): a
// WebSocket handshake on the publisher location, admitted as any publisher request is (access
// control, the loopback-only default), then every text or binary message the client sends is
// published on the channel, and answered with one text frame of channel info in the format the
// handshake's `Accept` asks for (as a POST's answer). As Nchan does: a text message gets the
// handshake's `Content-Type`, a binary one `application/octet-stream`; a text message that is not
// UTF-8 closes 1007. A connection publishes one message at a time, in the order sent (the next
// waits for the one before it to be answered); what waits is bounded, and reading pauses past it.
// A publisher upstream (publishUpstreamUrl) is asked about each message, as about a POST's body.
// The credential is checked again at each message: an expired or revoked token closes the
// connection (1008) before anything more is published.
import { STATUS_CODES, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { isUtf8 } from 'node:buffer'
import type { Access, Grant, PublishRequestLike } from '../lib/access.ts'
import { infoFormat, renderInfo, type InfoFormat } from '../lib/channel-info.ts'
import type { Core } from '../lib/core.ts'
import { ERRORS, ParklineError } from '../lib/errors.ts'
import { corsLines, randomBetween } from '../lib/http.ts'
import { endAndLinger } from '../lib/linger.ts'
import { detachSocket } from './detach.ts'
import { handshakeError, pickProtocol, PROTO_NONE, PROTO_PARKLINE, rejectUpgrade } from './websocket.ts'
import { kUpgradeHead } from '../lib/symbols.ts'
import {
  CLOSE_GOING_AWAY, CLOSE_INTERNAL_ERROR, CLOSE_INVALID_PAYLOAD, CLOSE_POLICY, CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG,
  CLOSE_TRY_AGAIN_LATER, FrameHeader, NEED_MORE, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT,
  acceptKey, closeCode, closeFrame, frame, readHeader, unmaskPayload
} from './websocket-frame.ts'

const HEAD = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n'
const BINARY_TYPE = 'application/octet-stream'
/** Messages read and waiting to be published, per connection, at most; reading pauses past it. */
const QUEUE_CAP = 16
const EMPTY = Buffer.alloc(0)

const header = new FrameHeader()

/** The publisher WebSocket connections of each core: closed at shutdown (lib/plugin.ts). */
const open = new WeakMap<Core, Set<WsPublisher>>()

/** A handshake on the publisher location, admitted: answered 101 (or refused), then publishes. */
export function servePublisherSocket (core: Core, access: Access, request: PublishRequestLike, req: IncomingMessage, res: ServerResponse, key: string, origin: string | null, grant: Grant | null): void {
  const socket = detachSocket(req, res)
  const err = req.httpVersionMinor < 1 || req.httpVersionMajor !== 1 ? ERRORS.BAD_REQUEST : handshakeError(req.headers)
  if (err !== null) {
    rejectUpgrade(socket, err, origin)
    return
  }
  if (core.refusing) {
    core.countRefusal()
    rejectUpgrade(socket, ERRORS.OVER_CAPACITY, origin, 'Retry-After: ' + randomBetween(1, 10) + '\r\n')
    return
  }
  const headers = req.headers
  let head = HEAD + 'Sec-WebSocket-Accept: ' + acceptKey(String(headers['sec-websocket-key']).trim()) + '\r\n'
  // the subprotocol a client asks for is echoed as on the subscriber (it changes nothing here)
  const proto = pickProtocol(headers['sec-websocket-protocol'])
  if (proto !== PROTO_NONE) head += 'Sec-WebSocket-Protocol: ' + (proto === PROTO_PARKLINE ? 'ws+meta.parkline' : 'ws+meta.nchan') + '\r\n'
  socket.write(head + corsLines(origin) + '\r\n', 'latin1')
  const pub = new WsPublisher(core, access, request, socket, key, headers, grant)
  let set = open.get(core)
  if (set === undefined) open.set(core, set = new Set())
  set.add(pub)
  // frames that came with the handshake (lib/plugin.ts keeps them with the request)
  const early = (req as IncomingMessage & { [kUpgradeHead]?: Buffer })[kUpgradeHead]
  if (early !== undefined && early.length > 0) pub.read(early)
}

/** Shutdown: every publisher connection of this core closes (1001 `503 Service Unavailable`). */
export function closePublisherSockets (core: Core): void {
  const set = open.get(core)
  if (set === undefined) return
  for (const pub of [...set]) pub.close(closeFrame(CLOSE_GOING_AWAY, '503 Service Unavailable'))
}

/** A publish that failed: the store away or over capacity, try again later (1013); anything else 1011. */
function failureClose (err: unknown): Buffer {
  const code = err instanceof ParklineError ? err.code : ''
  if (code === ERRORS.STORE_UNAVAILABLE.code) return closeFrame(CLOSE_TRY_AGAIN_LATER, '503 Store unavailable')
  if (code === ERRORS.OVER_CAPACITY.code) return closeFrame(CLOSE_TRY_AGAIN_LATER, '503 Service Unavailable')
  return closeFrame(CLOSE_INTERNAL_ERROR, '500 Internal Server Error')
}

class WsPublisher {
  readonly #core: Core
  readonly #access: Access
  /** The handshake, for the publisher upstream request (its headers are forwarded as a POST's). */
  readonly #request: PublishRequestLike
  readonly #socket: Socket
  readonly #key: string
  readonly #contentType: string | null
  readonly #format: InfoFormat
  readonly #grant: Grant | null
  /** Bytes of a frame not whole yet. */
  #partial: Buffer | null = null
  /** A fragmented message being put together: its opcode and fragments so far. */
  #fragOpcode = -1
  #fragments: Buffer[] = []
  #fragBytes = 0
  /** Messages read, waiting to be published in order: [opcode, payload]. */
  readonly #queue: Array<[number, Buffer]> = []
  #busy = false
  #closed = false

  constructor (core: Core, access: Access, request: PublishRequestLike, socket: Socket, key: string, headers: IncomingHttpHeaders, grant: Grant | null) {
    this.#core = core
    this.#access = access
    // asked as a POST of each message would be, without the handshake's own fields
    const forwarded: IncomingHttpHeaders = {}
    for (const [name, value] of Object.entries(request.headers)) if (!name.startsWith('sec-websocket-') && name !== 'upgrade') forwarded[name] = value
    this.#request = { headers: forwarded, method: 'POST', originalUrl: request.originalUrl, socket: request.socket, raw: request.raw }
    this.#socket = socket
    this.#key = key
    const ct = headers['content-type']
    this.#contentType = typeof ct === 'string' && ct.length > 0 ? ct : null
    this.#format = infoFormat(headers.accept)
    this.#grant = grant
    socket.on('data', (chunk: Buffer) => { this.read(chunk) })
    socket.on('end', () => { socket.end() })
    socket.on('error', () => {})
    socket.on('close', () => { this.#gone() })
    socket.on('drain', () => { this.#maybeResume() })
    socket.setNoDelay(true)
  }

  read (chunk: Buffer): void {
    if (this.#closed) return
    let buf = chunk
    if (this.#partial !== null) {
      buf = Buffer.concat([this.#partial, chunk])
      this.#partial = null
    }
    const h = header
    const max = this.#core.opts.maxMessageSize
    let off = 0
    let ping: Buffer | null = null
    while (off < buf.length && !this.#closed) {
      const n = readHeader(buf, off, h)
      if (n === NEED_MORE) break
      if (n < 0) return this.close(closeFrame(-n))
      const op = h.opcode
      if (op === OP_CONTINUATION ? this.#fragOpcode === -1 : op < OP_CLOSE && this.#fragOpcode !== -1) {
        // a continuation of nothing, or a new message inside a fragmented one (RFC 6455 §5.4)
        return this.close(closeFrame(CLOSE_PROTOCOL_ERROR))
      }
      // past maxMessageSize (the fragments so far included): refused from the header alone
      if (op < OP_CLOSE && this.#fragBytes + h.length > max) return this.close(closeFrame(CLOSE_TOO_BIG, 'Message too big'))
      if (off + n + h.length > buf.length) break
      const payload = unmaskPayload(buf, h)
      off += n + h.length
      if (op === OP_PING) ping = payload
      else if (op === OP_PONG) continue
      else if (op === OP_CLOSE) {
        const code = closeCode(payload)
        return this.close(code < 0 ? closeFrame(-code) : code === 1005 ? frame(OP_CLOSE, EMPTY) : closeFrame(code))
      } else if (!h.fin) {
        if (op !== OP_CONTINUATION) this.#fragOpcode = op
        this.#fragments.push(payload)
        this.#fragBytes += payload.length
      } else if (op === OP_CONTINUATION) {
        this.#fragments.push(payload)
        const whole = Buffer.concat(this.#fragments, this.#fragBytes + payload.length)
        const opcode = this.#fragOpcode
        this.#fragOpcode = -1
        this.#fragments = []
        this.#fragBytes = 0
        if (!this.#message(opcode, whole)) return
      } else if (!this.#message(op, payload)) return
    }
    if (off < buf.length) this.#partial = Buffer.from(buf.subarray(off))
    if (ping !== null && this.#socket.writableLength <= this.#core.opts.queueCap) this.#socket.write(frame(OP_PONG, ping))
  }

  /** A whole message: queued for publishing; false once the connection was closed for it. */
  #message (opcode: number, payload: Buffer): boolean {
    if (opcode === OP_TEXT && !isUtf8(payload)) {
      this.close(closeFrame(CLOSE_INVALID_PAYLOAD, 'Invalid text frame (not UTF8).'))
      return false
    }
    this.#queue.push([opcode, payload])
    // a client that sends faster than its messages are published waits (TCP's window)
    if (this.#queue.length >= QUEUE_CAP) this.#socket.pause()
    if (!this.#busy) this.#next()
    return true
  }

  /** Publish the next queued message, then answer it; one at a time. */
  #next (): void {
    const item = this.#queue.shift()
    if (item === undefined || this.#closed) return
    this.#busy = true
    // the credential still holds (no timer per connection: checked as each message comes)
    const g = this.#grant
    if (g !== null) {
      const now = Math.floor(Date.now() / 1000)
      if (g.exp > 0 && now >= g.exp) return this.close(closeFrame(CLOSE_POLICY, 'token expired'))
      if (this.#core.revocations?.isRevoked(g, now) === true) return this.close(closeFrame(CLOSE_POLICY, 'revoked'))
    }
    const [opcode, payload] = item
    this.#core.publishing++
    this.#publish(opcode === OP_BINARY ? BINARY_TYPE : this.#contentType, payload).then((answer) => {
      this.#core.publishing--
      this.#busy = false
      if (this.#closed) return
      // a client that does not read its answers stops being read (its answers are bounded by queueCap)
      if (answer !== null && !this.#socket.write(answer) && this.#socket.writableLength > this.#core.opts.queueCap) this.#socket.pause()
      else this.#maybeResume()
      this.#next()
    }, (err: unknown) => {
      this.#core.publishing--
      this.#busy = false
      this.close(failureClose(err))
    })
  }

  /** The message published (through the upstream, if any): its answer frame, or null (dropped). */
  async #publish (contentType: string | null, body: Buffer): Promise<Buffer | null> {
    const core = this.#core
    const key = this.#key
    let ct = contentType
    let message = body
    const up = this.#access.hasUpstream ? await this.#access.upstream(this.#request, key, body) : null
    if (up !== null) {
      // 204: not published, nothing answered (as Nchan); any refusal closes, as Nchan's 403
      if (up.action === 'drop') return null
      if (up.action === 'reply') {
        this.close(closeFrame(CLOSE_POLICY, `${up.status} ${STATUS_CODES[up.status] ?? ''}`.trim()))
        return null
      }
      message = up.body
      if (up.contentType !== null) ct = up.contentType
    }
    if (core.overChannelCap([key]) && core.engine.recordsElsewhere?.(key) !== true) {
      throw new ParklineError(ERRORS.OVER_CAPACITY.code, ERRORS.OVER_CAPACITY.message, 503)
    }
    const result = await core.engine.publish(key, message, ct, null, null)
    return frame(OP_TEXT, Buffer.from(renderInfo(result.info, this.#format).body, 'latin1'))
  }

  #maybeResume (): void {
    if (this.#closed || !this.#socket.isPaused()) return
    if (this.#queue.length < QUEUE_CAP && this.#socket.writableLength <= this.#core.opts.queueCap) this.#socket.resume()
  }

  /** A close frame, and our side ends (lib/linger.ts destroys a peer that never closes its own). */
  close (last: Buffer): void {
    if (this.#closed) return
    this.#closed = true
    this.#queue.length = 0
    this.#partial = null
    this.#fragments = []
    this.#socket.resume()
    endAndLinger(this.#core, this.#socket, last)
  }

  #gone (): void {
    this.#closed = true
    this.#queue.length = 0
    open.get(this.#core)?.delete(this)
  }
}
