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
// connection (1008) before anything more is published. The HTTP publisher's limits hold: a
// message that takes longer than bodyTimeout, or arrives slower than bodyMinRate, closes it
// (1008 `408 Request Timeout`); messages being published count in maxPublishing, and at most that
// many such connections are open per process; a peer that does not answer a ping within a
// keepalive interval is dropped. One shared timer does this for every publisher connection.
import { STATUS_CODES, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { isUtf8 } from 'node:buffer'
import { asPost, isRefusal, type Access, type Grant, type PublishRequestLike } from '../lib/access.ts'
import { infoFormat, renderInfo, type InfoFormat } from '../lib/channel-info.ts'
import type { Core } from '../lib/core.ts'
import { ERRORS, ParklineError } from '../lib/errors.ts'
import { corsLines, randomBetween } from '../lib/http.ts'
import { endAndLinger } from '../lib/linger.ts'
import { detachSocket } from './detach.ts'
import { HEAD, handshakeError, pickProtocol, PROTO_NONE, PROTO_PARKLINE, rejectUpgrade } from './websocket.ts'
import { kRawContentType, kUpgradeHead } from '../lib/symbols.ts'
import {
  CLOSE_GOING_AWAY, CLOSE_INTERNAL_ERROR, CLOSE_INVALID_PAYLOAD, CLOSE_POLICY, CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG,
  CLOSE_TRY_AGAIN_LATER, FrameHeader, NEED_MORE, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT,
  acceptKey, closeCode, closeFrame, frame, readHeader, unmaskPayload
} from './websocket-frame.ts'

const BINARY_TYPE = 'application/octet-stream'
/** Messages read and waiting to be published, per connection, at most; reading pauses there. */
const QUEUE_CAP = 16
/** Reads kept as they came for a frame known incomplete; past it, they are copied into one buffer. */
const CHUNKS_KEPT = 16
/** A message's bodyMinRate is held to only after this long, as a POST's (lib/publisher.ts). */
const MIN_RATE_GRACE_MS = 5000
const EMPTY = Buffer.alloc(0)
const PING = frame(OP_PING, EMPTY)

const header = new FrameHeader()

/** The publisher WebSocket connections of each core: the shared timer's, and closed at shutdown. */
const open = new WeakMap<Core, Set<WsPublisher>>()
/** Messages each core published for its publisher connections (parkline_websocket_published_total). */
const published = new WeakMap<Core, number>()

/**
 * For /metrics: publisher WebSocket connections open now, messages they published, and messages
 * read and waiting their turn to be published (at most 16 a connection).
 */
export function publisherSocketStats (core: Core): { open: number, published: number, waiting: number } {
  const set = open.get(core)
  let waiting = 0
  if (set !== undefined) for (const pub of set) waiting += pub.waiting
  return { open: set?.size ?? 0, published: published.get(core) ?? 0, waiting }
}

/** A handshake on the publisher location, admitted: answered 101 (or refused), then publishes. */
export function servePublisherSocket (core: Core, access: Access, request: PublishRequestLike, req: IncomingMessage, res: ServerResponse, key: string, origin: string | null, grant: Grant | null): void {
  const socket = detachSocket(req, res)
  const err = req.httpVersionMinor < 1 || req.httpVersionMajor !== 1 ? ERRORS.BAD_REQUEST : handshakeError(req.headers)
  if (err !== null) {
    rejectUpgrade(socket, err, origin)
    return
  }
  let set = open.get(core)
  // shutting down, or as many publisher connections as maxPublishing: 503, as a POST over it
  if (core.draining || (set !== undefined && set.size >= core.opts.maxPublishing)) {
    rejectUpgrade(socket, ERRORS.OVER_CAPACITY, origin, 'Retry-After: ' + randomBetween(1, 5) + '\r\n')
    return
  }
  const headers = req.headers
  let head = HEAD + 'Sec-WebSocket-Accept: ' + acceptKey(String(headers['sec-websocket-key']).trim()) + '\r\n'
  // the subprotocol a client asks for is echoed as on the subscriber (it changes nothing here)
  const proto = pickProtocol(headers['sec-websocket-protocol'])
  if (proto !== PROTO_NONE) head += 'Sec-WebSocket-Protocol: ' + (proto === PROTO_PARKLINE ? 'ws+meta.parkline' : 'ws+meta.nchan') + '\r\n'
  socket.write(head + corsLines(origin) + '\r\n', 'latin1')
  // the Content-Type as sent, even one that is no media type (lib/plugin.ts keeps it aside for Fastify)
  const ct = (req as IncomingMessage & { [kRawContentType]?: string })[kRawContentType] ?? headers['content-type']
  const pub = new WsPublisher(core, access, request, socket, key, typeof ct === 'string' && ct.length > 0 ? ct : null, infoFormat(headers.accept), grant)
  if (set === undefined) open.set(core, set = new Set())
  set.add(pub)
  startTimer(core, set)
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

const timers = new WeakMap<Core, NodeJS.Timeout>()

/** One timer per core while it has publisher connections: their time limits and pings, once a second. */
function startTimer (core: Core, set: Set<WsPublisher>): void {
  if (timers.has(core)) return
  const timer = setInterval(() => {
    if (set.size === 0) {
      clearInterval(timer)
      timers.delete(core)
      return
    }
    const now = Date.now()
    for (const pub of set) pub.tick(now)
  }, 1000)
  timer.unref()
  timers.set(core, timer)
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
  /** The handshake as a POST, for the publisher upstream request (its headers are forwarded as a POST's). */
  readonly #request: PublishRequestLike
  readonly #socket: Socket
  readonly #key: string
  readonly #contentType: string | null
  readonly #format: InfoFormat
  readonly #grant: Grant | null
  /** Bytes read and not parsed yet, as they came (joined once a frame is whole: no copy per read). */
  #chunks: Buffer[] = []
  #have = 0
  /** Bytes the frame being read needs in all (0: its header is not read yet). */
  #need = 0
  /**
   * A frame known incomplete whose bytes came in more than CHUNKS_KEPT reads: one buffer for the
   * frame's bytes (#gather), its first #have bytes written, each later read copied in as it comes;
   * #chunks then holds only bytes past the frame. A Buffer kept per read cost about 200 bytes of
   * heap each, so a frame sent a byte per read cost some 200 times its size.
   */
  #gathered: Buffer | null = null
  /** When the message being read began (its first bytes), and how many of its bytes came; 0: none. */
  #started = 0
  #got = 0
  /**
   * A fragmented message being put together: its opcode, and its bytes so far copied into one
   * buffer that doubles as it fills (at most maxMessageSize): what a message costs is its size,
   * however many fragments carry it (a flood of empty ones included).
   */
  #fragOpcode = -1
  #frag: Buffer | null = null
  #fragBytes = 0
  /** Messages read, waiting to be published in order: [opcode, payload]. */
  readonly #queue: Array<[number, Buffer]> = []
  #busy = false
  /** The client's close frame (its code's echo) or FIN (null) came: what it sent is published, then ours. */
  #ending: Buffer | null | undefined = undefined
  /** Our close frame went (or the connection is gone): nothing more is read or published. */
  #closed = false
  /** The connection is gone: what was read is still published, nothing is answered. */
  #gone = false
  /** A ping went unanswered (the shared timer's). */
  #pinged = false
  #lastPing = Date.now()

  constructor (core: Core, access: Access, request: PublishRequestLike, socket: Socket, key: string, contentType: string | null, format: InfoFormat, grant: Grant | null) {
    this.#core = core
    this.#access = access
    // asked as a POST of each message would be, without the handshake's own fields
    const forwarded: IncomingHttpHeaders = {}
    for (const [name, value] of Object.entries(request.headers)) if (!name.startsWith('sec-websocket-') && name !== 'upgrade') forwarded[name] = value
    this.#request = asPost(request, forwarded)
    this.#socket = socket
    this.#key = key
    this.#contentType = contentType
    this.#format = format
    this.#grant = grant
    socket.on('data', (chunk: Buffer) => { this.read(chunk) })
    socket.on('end', () => { this.#clientEnded(null) })
    socket.on('error', () => {})
    socket.on('close', () => { this.#onClose() })
    socket.on('drain', () => { this.#maybeResume() })
    socket.setNoDelay(true)
  }

  /** Messages read and waiting their turn (the one being published not counted). */
  get waiting (): number {
    return this.#queue.length
  }

  read (chunk: Buffer): void {
    if (this.#closed || this.#ending !== undefined) return
    if (chunk.length > 0) {
      const gathered = this.#gathered
      if (gathered !== null) {
        // the frame's part into its buffer; what lies past the frame is kept as it came
        const part = Math.min(Math.max(0, this.#need - this.#have), chunk.length)
        if (part > 0) chunk.copy(this.#have + part > gathered.length ? this.#grow(this.#have + part) : gathered, this.#have, 0, part)
        if (chunk.length > part) this.#chunks.push(part === 0 ? chunk : chunk.subarray(part))
      } else {
        this.#chunks.push(chunk)
      }
      this.#have += chunk.length
      if (this.#started !== 0) this.#got += chunk.length
      if (gathered === null && this.#have < this.#need && this.#chunks.length > CHUNKS_KEPT) this.#gather()
    }
    // a frame known to be incomplete waits for the rest without a copy (of a few reads), or is
    // copied in as it comes (#gathered)
    if (this.#have < this.#need || this.#have === 0 || this.#queue.length >= QUEUE_CAP) return
    const buf = this.#takeHeld()
    this.#need = 0
    const h = header
    const max = this.#core.opts.maxMessageSize
    let off = 0
    let ping: Buffer | null = null
    while (off < buf.length && !this.#closed && this.#ending === undefined) {
      // 16 waiting: the rest stays unparsed until one is published (#maybeResume)
      if (this.#queue.length >= QUEUE_CAP) break
      const n = readHeader(buf, off, h)
      if (n === NEED_MORE) break
      if (n < 0) return this.#refuse(closeFrame(-n))
      const op = h.opcode
      if (op === OP_CONTINUATION ? this.#fragOpcode === -1 : op < OP_CLOSE && this.#fragOpcode !== -1) {
        // a continuation of nothing, or a new message inside a fragmented one (RFC 6455 §5.4)
        return this.#refuse(closeFrame(CLOSE_PROTOCOL_ERROR))
      }
      // past maxMessageSize (the fragments so far included): refused from the header alone
      if (op < OP_CLOSE && this.#fragBytes + h.length > max) return this.#refuse(closeFrame(CLOSE_TOO_BIG, 'Message too big'))
      if (off + n + h.length > buf.length) {
        this.#need = n + h.length
        break
      }
      const payload = unmaskPayload(buf, h)
      off += n + h.length
      if (op === OP_PING) ping = payload
      else if (op === OP_PONG) this.#pinged = false
      else if (op === OP_CLOSE) {
        const code = closeCode(payload)
        // a malformed close is answered at once; a good one once what came before it is published
        if (code < 0) return this.#refuse(closeFrame(-code))
        // a ping that came before the close is answered before anything more (RFC 6455 §5.5.2)
        if (ping !== null && this.#socket.writableLength <= this.#core.opts.queueCap) this.#socket.write(frame(OP_PONG, ping))
        ping = null
        this.#clientEnded(code === 1005 ? frame(OP_CLOSE, EMPTY) : closeFrame(code))
      } else if (!h.fin) {
        if (op !== OP_CONTINUATION) this.#fragOpcode = op
        this.#addFragment(payload, max)
      } else if (op === OP_CONTINUATION) {
        this.#addFragment(payload, max)
        const whole = this.#frag === null ? EMPTY : Buffer.from(this.#frag.subarray(0, this.#fragBytes))
        const opcode = this.#fragOpcode
        this.#fragOpcode = -1
        this.#frag = null
        this.#fragBytes = 0
        if (!this.#message(opcode, whole)) return
      } else if (!this.#message(op, payload)) return
    }
    if (off < buf.length && !this.#closed && this.#ending === undefined) {
      // (a view of this read's bytes: no more than one read is kept)
      this.#chunks.push(buf.subarray(off))
      this.#have = buf.length - off
    }
    // a message under way (part of a frame, or fragments): its time limits run from its first bytes;
    // not while this side is the one that waits (16 queued, or its answers unread)
    if ((this.#have > 0 || this.#fragOpcode !== -1) && this.#queue.length < QUEUE_CAP && !this.#socket.isPaused()) {
      if (this.#started === 0) {
        this.#started = Date.now()
        this.#got = this.#have + this.#fragBytes
      }
    } else {
      this.#started = 0
    }
    if (ping !== null && this.#socket.writableLength <= this.#core.opts.queueCap) this.#socket.write(frame(OP_PONG, ping))
  }

  /**
   * The reads kept for an incomplete frame, into one buffer (see #gathered). It doubles as the
   * bytes come, up to the frame's size: what the frame's header says is not allocated before its
   * bytes came, and each byte is copied a bounded number of times.
   */
  #gather (): void {
    const gathered = Buffer.allocUnsafe(Math.min(this.#need, Math.max(4096, 2 * this.#have)))
    let at = 0
    for (const c of this.#chunks) at += c.copy(gathered, at)
    this.#gathered = gathered
    this.#chunks = []
  }

  /** #gathered, grown to hold at least `min` bytes (at most the frame's). */
  #grow (min: number): Buffer {
    const old = this.#gathered!
    const grown = Buffer.allocUnsafe(Math.min(this.#need, Math.max(min, 2 * old.length)))
    old.copy(grown, 0, 0, Math.min(this.#have, old.length))
    this.#gathered = grown
    return grown
  }

  /** Everything held, as one Buffer, and nothing held any more. */
  #takeHeld (): Buffer {
    const gathered = this.#gathered
    const chunks = this.#chunks
    let buf: Buffer
    if (gathered !== null) {
      // (the frame's bytes; the rest, past it, in chunks)
      const frameBytes = gathered.subarray(0, Math.min(this.#need, this.#have))
      buf = chunks.length === 0 ? frameBytes : Buffer.concat([frameBytes, ...chunks], this.#have)
    } else {
      buf = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, this.#have)
    }
    this.#dropHeld()
    return buf
  }

  #dropHeld (): void {
    this.#chunks = []
    this.#gathered = null
    this.#have = 0
  }

  /** A fragment's bytes, copied after the others (the read they came in is not kept). */
  #addFragment (payload: Buffer, max: number): void {
    if (payload.length === 0) return
    const need = this.#fragBytes + payload.length
    if (this.#frag === null || need > this.#frag.length) {
      const grown = Buffer.allocUnsafe(Math.min(max, Math.max(need, 2 * (this.#frag?.length ?? 0), 4096)))
      if (this.#frag !== null) this.#frag.copy(grown, 0, 0, this.#fragBytes)
      this.#frag = grown
    }
    payload.copy(this.#frag, this.#fragBytes)
    this.#fragBytes = need
  }

  /** A whole message: queued for publishing; false once the connection was closed for it. */
  #message (opcode: number, payload: Buffer): boolean {
    if (opcode === OP_TEXT && !isUtf8(payload)) {
      this.#refuse(closeFrame(CLOSE_INVALID_PAYLOAD, 'Invalid text frame (not UTF8).'))
      return false
    }
    this.#queue.push([opcode, payload])
    // a client that sends faster than its messages are published waits (TCP's window)
    if (this.#queue.length >= QUEUE_CAP) this.#socket.pause()
    if (!this.#busy) this.#next()
    return true
  }

  /**
   * A frame refused as it is read (malformed, too big, not UTF-8): nothing more is read, and the
   * messages before it, whole and good, are published and answered first (docs/api.md 5.2: one at
   * a time, in the order sent, each answered), then `last` closes the connection.
   */
  #refuse (last: Buffer): void {
    this.#clientEnded(last)
  }

  /** The client's close frame (`echo`) or FIN (null): no more is read; what it sent is published first. */
  #clientEnded (echo: Buffer | null): void {
    if (this.#closed || this.#ending !== undefined) return
    this.#ending = echo
    this.#dropHeld()
    this.#frag = null
    this.#fragBytes = 0
    this.#fragOpcode = -1
    this.#started = 0
    this.#socket.resume()
    if (!this.#busy && this.#queue.length === 0) this.#finish()
  }

  /** Everything the client sent before it ended is published: our close (or end) follows. */
  #finish (): void {
    const echo = this.#ending
    this.#closed = true
    if (echo === null || echo === undefined) {
      if (!this.#socket.destroyed) this.#socket.end()
    } else {
      endAndLinger(this.#core, this.#socket, echo)
    }
  }

  /** Publish the next queued message, then answer it; one at a time. */
  #next (): void {
    if (this.#closed) return
    const item = this.#queue.shift()
    if (item === undefined) {
      this.#busy = false
      if (this.#ending !== undefined) this.#finish()
      return
    }
    this.#busy = true
    if (this.#credentialEnded()) return
    const [opcode, payload] = item
    // with authorizePublish, each message is asked about as a POST of it would be: the decision
    // cached for the handshake answers it until authorizeCacheTtl lapses (0: asked at each
    // message), then the app is asked again, so a publisher it stops allowing is closed. Asked
    // before the message counts in maxPublishing, as a POST is
    if (this.#access.authorizesPublishers) {
      Promise.resolve(this.#access.publisher(this.#request, this.#key)).then((g) => {
        // closed meanwhile (a shutdown, a limit, a fault; not the client's close frame or end, after
        // which what it sent is still published): nothing more is published
        if (this.#closed) return
        if (isRefusal(g)) return this.close(closeFrame(g.status === 503 ? CLOSE_TRY_AGAIN_LATER : CLOSE_POLICY, `${g.status} ${STATUS_CODES[g.status] ?? ''}`.trim()))
        // (the app may take up to authorizeTimeout: the token may have expired or been revoked since)
        if (!this.#credentialEnded()) this.#start(opcode, payload)
      }, (err: unknown) => { this.close(failureClose(err)) })
      return
    }
    this.#start(opcode, payload)
  }

  /**
   * The connection's credential no longer holds (no timer per connection: checked as each message
   * comes): closed `1008` with why. A token expired (with jwtLeeway) or revoked; an API key taken
   * out since the connection opened (a SIGHUP's reload).
   */
  #credentialEnded (): boolean {
    const g = this.#grant
    if (g === null) return false
    const now = Math.floor(Date.now() / 1000)
    let why: string | null = null
    if (g.exp > 0 && now >= g.exp + this.#core.opts.jwtLeeway) why = 'token expired'
    else if (this.#core.revocations?.isRevoked(g, now) === true) why = 'revoked'
    else if (g.key !== undefined && this.#core.access?.granted(g) === false) why = 'key withdrawn'
    if (why === null) return false
    this.close(closeFrame(CLOSE_POLICY, why))
    return true
  }

  /** Publish one message (authorized), then answer it and take the next. */
  #start (opcode: number, payload: Buffer): void {
    // as many publishes in flight in this process as maxPublishing: try again later, as a POST's 503
    if (this.#core.publishing >= this.#core.opts.maxPublishing) return this.close(closeFrame(CLOSE_TRY_AGAIN_LATER, '503 Service Unavailable'))
    this.#core.publishing++
    this.#publish(opcode === OP_BINARY ? BINARY_TYPE : this.#contentType, payload).then((answer) => {
      this.#core.publishing--
      if (this.#closed) return
      // a client that does not read its answers stops being read (what it leaves unread is bounded by queueCap)
      if (answer !== null && !this.#gone) this.#socket.write(answer)
      if (this.#socket.writableLength > this.#core.opts.queueCap) this.#socket.pause()
      else this.#maybeResume()
      this.#next()
    }, (err: unknown) => {
      this.#core.publishing--
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
    published.set(core, (published.get(core) ?? 0) + 1)
    return frame(OP_TEXT, Buffer.from(renderInfo(result.info, this.#format).body, 'latin1'))
  }

  #maybeResume (): void {
    if (this.#closed || this.#gone) return
    if (this.#queue.length >= QUEUE_CAP || this.#socket.writableLength > this.#core.opts.queueCap) return
    // what was read past the 16 waiting is parsed now
    if (this.#have > 0 && this.#ending === undefined) this.read(EMPTY)
    if (this.#queue.length < QUEUE_CAP && this.#socket.isPaused()) this.#socket.resume()
  }

  /**
   * The shared timer, once a second: a message under way past bodyTimeout, or under bodyMinRate
   * after its first 5 s, closes the connection (408, as a POST's body); every keepalive interval a
   * ping, and a peer that has not answered the last one by the next is dropped.
   */
  tick (now: number): void {
    if (this.#closed || this.#gone) return
    const o = this.#core.opts
    if (this.#started !== 0) {
      const elapsed = now - this.#started
      if (elapsed >= o.bodyTimeout * 1000 || (o.bodyMinRate > 0 && elapsed >= MIN_RATE_GRACE_MS && this.#got * 1000 < o.bodyMinRate * elapsed)) {
        this.close(closeFrame(CLOSE_POLICY, '408 Request Timeout'))
        return
      }
    }
    if (o.keepalive > 0 && now - this.#lastPing >= o.keepalive * 1000) {
      if (this.#pinged) {
        this.#socket.destroy()
        return
      }
      this.#lastPing = now
      this.#pinged = true
      if (this.#socket.writableLength <= o.queueCap) this.#socket.write(PING)
    }
  }

  /** A close frame, and our side ends (lib/linger.ts destroys a peer that never closes its own); nothing waiting is published. */
  close (last: Buffer): void {
    if (this.#closed) return
    this.#closed = true
    this.#queue.length = 0
    this.#dropHeld()
    this.#frag = null
    this.#fragBytes = 0
    this.#socket.resume()
    if (this.#gone) return
    endAndLinger(this.#core, this.#socket, last)
  }

  /** The connection is gone: what the client sent and was read is still published (unanswered). */
  #onClose (): void {
    this.#gone = true
    open.get(this.#core)?.delete(this)
    if (this.#ending === undefined) this.#ending = null
    if (!this.#busy && !this.#closed) this.#next()
  }
}
