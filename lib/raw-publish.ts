// Publisher connections read by Parkline itself (the standalone server only, like lib/fast-path.ts).
//
// A connection whose first bytes are `POST <pubPrefix>` or `PUT <pubPrefix>` is a publisher's
// keep-alive connection: its requests are read here instead of by Node's HTTP parser, and each
// is answered with one write (a pipelined batch with one). No IncomingMessage, ServerResponse,
// parser, stream state or timer per request: a publish costs the bytes it carries, its message
// and its answer. The decisions are lib/publisher.ts's, exactly as on the fast path.
//
// Long-polls too: a connection that opens with `GET <subPrefix>`, or a raw connection's next
// request, that is a plain long-poll (no body, no Accept another transport claims) is admitted by
// lib/subscribe.ts subscribeRawPoll and parked by LongpollTransport.serveRaw; its answer is one
// write (answerPoll) and the connection reads its next poll here again. No IncomingMessage,
// ServerResponse or parser per poll, and no hand-back to Node's server after each answer.
//
// Streams too: a GET that the EventSource, chunked, multipart or WebSocket transport claims (the
// negotiation is Node's path's, transports/index.ts claimedBy) is admitted by the same
// subscribeRaw and its stream starts on the socket (HttpStreamTransport.serveSocket; a WebSocket's
// 101 and the frames that came with the handshake, WebSocketTransport.serveSocket), which from then
// on is the stream's alone: a subscriber never had Node's HTTP objects to release.
//
// Only plain requests are taken: `POST`/`PUT` on the publisher location, HTTP/1.1, printable
// ASCII, every header once, a Content-Length body that is all there and within maxMessageSize,
// no Transfer-Encoding or Expect, no Upgrade but a WebSocket handshake's, `Connection` absent,
// `keep-alive` or `close` (or naming upgrade, on a handshake), an
// allowed Origin. The first request that is anything else, with every byte after it, goes to
// Node's HTTP server as if the connection had just opened, and the connection stays there: Node
// and Fastify answer it as always (a 400 for a malformed head, a 413, a 405...). Every other
// connection (health, status, anything off the two locations) is handed to Node at its first bytes.
//
// Measured in benchmarks/results/request-path-*.md; PARKLINE_NO_FAST_PATH=1 turns it off.
import { STATUS_CODES, type IncomingHttpHeaders, type Server } from 'node:http'
import { performance } from 'node:perf_hooks'
import type { Socket } from 'node:net'
import type { PublishRequestLike } from './access.ts'
import type { ParklineOptions } from './config.ts'
import type { Core } from './core.ts'
import { keepAliveIdleMs, normalizePath, originAllowed, requestOrigin } from './http.ts'
import { MAX_HEADER_FIELDS, MAX_LINE } from './plugin.ts'
import { publisherRequest } from './publisher.ts'
import { subscribeRaw, type RawRequestLike } from './subscribe.ts'
import { claimedBy } from '../transports/index.ts'
import { isParked, rawConnectionClosed, rejectIfParked } from '../transports/longpoll.ts'
import { HeadersReply, type Reply } from './reply.ts'
import { formatHttpDate } from './message-id.ts'
import { queuedCopy } from './message.ts'
import { endUnread } from './linger.ts'
import { kBodyWaitSince, kNodeConnection, kRawConnection, kRawPublishers } from './symbols.ts'

type ConnectionListener = (socket: Socket) => void


type ServerWith = Server & { [kNodeConnection]?: ConnectionListener, [kRawPublishers]?: RawPublishers }
type RawSocket = Socket & { server?: ServerWith, [kRawConnection]?: Conn, [kHandedIncoming]?: IncomingCallback, [kBodyWaitSince]?: number }

/** Node's parser hands a request whose head is whole to this (node:_http_server, parserOnIncoming). */
type IncomingCallback = (this: NodeParser, ...args: unknown[]) => unknown
interface NodeParser { incoming: unknown, socket: RawSocket | null, onIncoming: IncomingCallback | null }
/** A handed-over socket's own parser.onIncoming, while ours stands in front of it. */
const kHandedIncoming = Symbol('parkline.handedIncoming')

/** A request head longer than this is Node's to read (its own limit is larger, and it answers 431 past it). */
const MAX_HEAD = 16384
const MAX_HEADERS = Math.min(64, MAX_HEADER_FIELDS)
/** Answers not yet taken by the client: stop reading its requests until they are. */
const HIGH_WATER = 65536
/**
 * Requests received behind one still being handled: stop reading past this (the socket's own
 * buffer then fills, and the kernel's). What a connection can make the server hold meanwhile is
 * this (and the read that crossed it): their store is at most twice this (appendHeld), three
 * times for the moment they move to a larger one.
 */
const INPUT_HIGH_WATER = 65536
/**
 * A publish whose body is cut by the end of a read (a client that writes its head and body apart,
 * a pipelined batch cut inside a body) waits here this long at most, and for at most
 * BODY_WAIT_READS more reads, for the rest, when the whole request is at most MAX_HEAD bytes (no
 * more than a cut head may hold here); then, or at once for a larger one, it goes to Node's
 * server, which reads the body under bodyTimeout and bodyMinRate counted from when it began to
 * wait here (kBodyWaitSince). It used to go there at once, and the connection with it for good:
 * 1.6-1.7× the CPU a publish from then on (benchmarks/results/cut-body-2026-12-06.md).
 */
const BODY_WAIT_MS = 1000
/** Reads a cut body may take here before it goes to Node's server (each copies what is held). */
const BODY_WAIT_READS = 4
/**
 * What one turn of the event loop spends taking requests here before it lets everything else in
 * (ms, from the first request it takes), while connections are being accepted (in this turn or
 * the one before): a connection with requests left when it is spent waits, not read, for a later
 * turn, first come first served (RawPublishers.#deferred), and takes the next turn's budget first.
 * libuv accepts one new connection per turn, and the turn's deliveries leave at its end, so a
 * turn that took every pipelined publish of a thousand connections (tens of milliseconds here)
 * left new connections waiting seconds, queued behind the flood's own, and every subscriber a
 * turn behind (benchmarks/results/publish-flood-2026-12-05.md). One request is always taken,
 * however long it takes (a broadcast to many subscribers).
 */
const TURN_BUDGET_MS = 1
/**
 * The budget when neither this turn nor the one before accepted a connection (libuv accepts one
 * per turn while any wait, so none waits then): a longer turn lets pipelined publishes share
 * their deliveries' writes (300 pipelined publishes to 1,000 subscribers took 2-3× as long in
 * 1 ms turns as in one turn, 1.1-1.6× in these) and still bounds what everyone else waits.
 */
const TURN_BUDGET_IDLE_MS = 5

interface Conn {
  socket: RawSocket
  /** Bytes received and not yet taken as a request. */
  buf: Buffer | null
  /** A request is being handled (answers go out in order, one request at a time). */
  busy: boolean
  corked: boolean
  /** Waiting for the end of the turn's flush (RawPublishers.flushPending). */
  queued: boolean
  /** The connection ends after the answer being written (Connection: close, or shutting down). */
  closing: boolean
  /** The bytes held end in a request head cut short by the end of a read. */
  partial: boolean
  /**
   * The bytes held end in a publish whose body is cut short (BODY_WAIT_MS): until when it waits
   * for the rest (performance.now() ms); 0 when not waiting.
   */
  bodyDeadline: number
  /** While bodyDeadline is set: the bytes the request needs in all, and the reads taken since the cut. */
  bodyNeed: number
  bodyReads: number
  /**
   * When the head being read must be whole (performance.now() ms; Infinity without headersTimeout):
   * the first request's from the connection's first bytes, as Node counts it, a later one's from
   * its first cut read; 0 between requests. Handed to Node's server with a cut head, it still holds there.
   */
  headDeadline: number
  /** The client half-closed (FIN): nothing more will come. */
  eof: boolean
  /** A long-poll is being taken in pump's own loop: its answer at once does not pump again (answered). */
  pumping: boolean
  /** In RawPublishers.#deferred, paused: its requests wait for a later turn (TURN_BUDGET_MS). */
  deferred: boolean
  /**
   * The socket's timer is set (keepAliveIdleMs, or headersTimeout for a cut head). Not before a
   * connection first waits for a request: one whose first request starts a stream never gets one,
   * since a socket keeps its Timeout object, cleared, for life (Node's setTimeout(0) only clears it).
   */
  armed: boolean
}

export class RawPublishers {
  readonly #core: Core
  readonly #opts: ParklineOptions
  readonly #server: ServerWith
  readonly #node: ConnectionListener
  readonly #starts: Buffer[]
  readonly #conns = new Set<Conn>()
  /** Connections with answers corked in this turn, uncorked by one setImmediate at its end. */
  #pending: Conn[] = []
  /** The turn before's list, emptied: swapped in by the next flushPending (no array per turn). */
  #pendingDone: Conn[] = []
  #scheduled = false
  #closing = false
  /** When this turn took its first request here (performance.now() ms; 0: none yet), for TURN_BUDGET_MS. */
  #turnStart = 0
  /** Connections accepted in this turn, and whether the turn before accepted any (TURN_BUDGET_IDLE_MS). */
  #arrivals = 0
  #arrivedBefore = false
  /** Connections with requests left when a turn's budget was spent, in the order they came (#defer). */
  #deferred: Conn[] = []
  /**
   * Connections whose first bytes have not come yet, each with its deadline (performance.now() ms): one sweep timer
   * for all of them (sweep), not a timer per socket. A socket's own setTimeout would leave each
   * subscriber's socket holding a cleared Timeout and a bound function for its whole life (120-180 B
   * of heap each: benchmarks/results/subscriber-timer-2026-12-01.md). Insertion order is deadline order.
   */
  readonly waiting = new Map<RawSocket, number>()
  /**
   * Connections handed to Node's server with a request head not yet whole, each with that head's
   * deadline (Conn.headDeadline): Node's parser starts its own headersTimeout clock again at the
   * hand-over, which would give a slow head up to twice the time. Checked by the same sweep.
   */
  readonly handed = new Map<RawSocket, number>()
  #sweepTimer: NodeJS.Timeout | null = null
  /** A request head not whole within headersTimeout: answered as Node answers it (408), closed. */
  readonly silent: ConnectionListener
  readonly headersMs: number

  /** Take over `server`'s connections; null when its 'connection' listener is not Node's own. */
  static install (server: Server, core: Core, opts: ParklineOptions, silent: ConnectionListener): RawPublishers | null {
    const s = server as ServerWith
    const node = s.listeners('connection').find((f) => f.name === 'connectionListener') as ConnectionListener | undefined
    if (node === undefined || core.access === null) return null
    const rp = new RawPublishers(s, node, core, opts, silent)
    s.removeListener('connection', node)
    s.prependListener('connection', onConnection)
    // A connection Node's server reads (handed over: every one here) ends after its last answer
    // when its client's FIN comes, as a half-open server's do (node:_http_server socketOnEnd),
    // not at once with answers still queued. Node stops reading while answers wait only past its
    // socket's high-water mark; a connection handed over after its requests waited for their
    // turns could give Node's parser its last requests and the FIN at once, and a plain end()
    // lost the answers still queued.
    ;(s as ServerWith & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true
    s[kNodeConnection] = node
    s[kRawPublishers] = rp
    return rp
  }

  private constructor (server: ServerWith, node: ConnectionListener, core: Core, opts: ParklineOptions, silent: ConnectionListener) {
    this.#server = server
    this.#node = node
    this.#core = core
    this.#opts = opts
    this.silent = silent
    this.headersMs = opts.headersTimeout * 1000

    this.#starts = [Buffer.from('POST ' + opts.pubPrefix, 'latin1'), Buffer.from('PUT ' + opts.pubPrefix, 'latin1')]
    // long-polls and streams too, where one is a plain GET (parseRequest): the connection's first request decides
    if (rawGets(opts)) this.#starts.push(Buffer.from('GET ' + opts.subPrefix, 'latin1'))
  }

  /** Server closing: idle connections close now (as Node's closeIdleConnections), busy ones after their answer. */
  close (): void {
    this.#closing = true
    for (const socket of [...this.waiting.keys()]) {
      stopWaiting(socket)
      socket.destroy()
    }
    this.#stopSweep()
    for (const c of [...this.#conns]) {
      c.closing = true
      if (c.busy) continue
      this.#release(c)
      // a publish whose body is still coming is a request under way, which Node's server lets finish
      if (c.bodyDeadline !== 0 && c.buf !== null) {
        markBodyWait(c, false)
        this.#handOver(c.socket, c.buf, c.eof)
      } else c.socket.destroy()
    }
  }

  /** Shutdown past its grace (lib/server.ts installShutdown): every connection still open goes, busy or not. */
  destroyAll (): number {
    this.close()
    const n = this.#conns.size
    for (const c of [...this.#conns]) c.socket.destroy()
    return n
  }

  /** A new connection waits for its first bytes, at most headersTimeout. */
  wait (socket: RawSocket): void {
    this.#arrivals++
    this.waiting.set(socket, this.headersMs > 0 ? performance.now() + this.headersMs : Infinity)
    this.#startSweep()
  }

  /**
   * Node's parser has the whole request head on `socket`: no longer watched. Whatever Node does
   * with it ('request', a 417 of its own for an unknown Expect, an upgrade), it is not a head late.
   */
  headDone (socket: RawSocket): void {
    if (this.handed.delete(socket)) socket.removeListener('close', onHandedClose)
  }

  #startSweep (): void {
    if (this.headersMs > 0 && this.#sweepTimer === null) {
      this.#sweepTimer = setInterval(sweepWaiting, Math.min(SWEEP_MS, this.headersMs), this)
      this.#sweepTimer.unref()
    }
  }

  /**
   * Connections silent past their deadline, and those handed over whose head is still not whole at
   * its deadline, get Node's answer (408); stops when none is left.
   */
  sweep (): void {
    // monotonic, as the socket timer it replaces: a clock step neither holds nor fires the sweep
    const now = performance.now()
    for (const [socket, deadline] of this.waiting) {
      if (deadline > now) break
      stopWaiting(socket)
      this.silent(socket)
    }
    // (not in deadline order: few, only heads cut over two reads)
    for (const [socket, deadline] of this.handed) {
      if (deadline > now) continue
      this.handed.delete(socket)
      socket.removeListener('close', onHandedClose)
      unhook(socket)
      if (!socket.destroyed && headUnfinished(socket)) this.silent(socket)
    }
    if (this.waiting.size === 0 && this.handed.size === 0) this.#stopSweep()
  }

  #stopSweep (): void {
    if (this.#sweepTimer !== null) clearInterval(this.#sweepTimer)
    this.#sweepTimer = null
  }

  /** The first bytes of a connection: a publisher's or a long-poll's stays here, any other goes to Node. */
  first (socket: RawSocket, chunk: Buffer, deadline: number): void {
    if (!this.#closing && this.#startsPublish(chunk, false)) {
      const c: Conn = { socket, buf: chunk, busy: false, corked: false, queued: false, closing: false, partial: false, bodyDeadline: 0, bodyNeed: 0, bodyReads: 0, headDeadline: deadline, eof: false, pumping: false, deferred: false, armed: false }
      socket[kRawConnection] = c
      this.#conns.add(c)
      this.#core.stats.rawConnections = this.#conns.size
      for (const [event, fn] of RAW_LISTENERS) socket.on(event, fn)
      this.pump(c, true)
      return
    }
    this.#handOver(socket, chunk, false, deadline)
  }

  /**
   * Do `bytes` open with `POST <pubPrefix>` or `PUT <pubPrefix>`? With `prefix`, also true for
   * fewer bytes that could still become that (a head cut by the end of a read).
   */
  #startsPublish (bytes: Buffer, prefix: boolean): boolean {
    for (const start of this.#starts) {
      const n = Math.min(start.length, bytes.length)
      if (n < start.length && !prefix) continue
      if (bytes.compare(start, 0, n, 0, n) === 0) return true
    }
    return false
  }

  /**
   * Take every whole request buffered, one at a time. Answers stay corked until the end of the
   * turn: a pipelined batch leaves in one write, and a publish is answered after the deliveries it
   * made in this turn were written (the coalescers, transports/coalesce.ts, are flushed first), so
   * a publisher waiting on its answer never runs ahead of the fan-out.
   */
  pump (c: Conn, read = false): void {
    const socket = c.socket
    while (!c.busy && !c.closing && c.buf !== null && !socket.destroyed) {
      // answers the client does not take: nothing more is read or taken until it does ('drain')
      if (socket.writableLength > HIGH_WATER) {
        this.#flush(c)
        socket.pause()
        this.#arm(c)
        return
      }
      // this turn has taken its share: the rest waits for a later one, paused (runDeferred)
      if (this.#spent()) {
        this.#defer(c)
        break
      }
      // waiting for its turn, taken out of turn ('drain', its FIN) while the budget lasts (its
      // entry in #deferred is passed over)
      c.deferred = false
      const buf = c.buf
      // a cut body still short of its length is not parsed again
      const r = c.bodyDeadline !== 0 && buf.length < c.bodyNeed ? NEED_MORE_BODY : parseRequest(buf, this.#opts)
      // A head cut by the end of a read (a pipelined batch) waits for the next read, for at most
      // headersTimeout; a body cut so, in a request of at most MAX_HEAD bytes, waits for its rest
      // at most BODY_WAIT_MS and BODY_WAIT_READS reads. A head still cut after that read, bytes
      // that cannot become a publish, or a body still on its way after its wait go to Node's
      // server, which has the timeouts and bounds for slow requests (headersTimeout, bodyTimeout,
      // bodyMinRate, maxPublishing).
      if (r === NEED_MORE_HEAD && (!read || !c.partial) && !c.eof && this.#startsPublish(buf, true)) {
        if (!c.partial) {
          c.partial = true
          if (this.headersMs > 0) {
            const now = performance.now()
            if (c.headDeadline === 0) c.headDeadline = now + this.headersMs
            socket.setTimeout(Math.max(1, Math.ceil(c.headDeadline - now)))
          }
          c.armed = true
        }
        break
      }
      if (r === NEED_MORE_BODY && !c.eof) {
        const now = performance.now()
        if (c.bodyDeadline === 0) {
          if (cutRequestBytes <= MAX_HEAD) {
            c.bodyDeadline = now + BODY_WAIT_MS
            c.bodyNeed = cutRequestBytes
            c.bodyReads = 0
          }
        } else if (read) c.bodyReads++
        if (c.bodyDeadline !== 0 && now < c.bodyDeadline && c.bodyReads <= BODY_WAIT_READS) {
          // what is left of the wait (the socket's timer counts from the last read)
          socket.setTimeout(Math.max(1, Math.ceil(c.bodyDeadline - now)))
          c.armed = true
          break
        }
      }
      if (r === NEED_MORE_HEAD || r === NEED_MORE_BODY || r === UNSUPPORTED) {
        this.#release(c)
        if (c.bodyDeadline !== 0) markBodyWait(c, false)
        this.#handOver(socket, buf, c.eof, c.headDeadline)
        return
      }
      c.headDeadline = 0
      c.buf = r.end < buf.length ? buf.subarray(r.end) : null
      if (c.partial || c.bodyDeadline !== 0) {
        c.partial = false
        c.bodyDeadline = 0
        socket.setTimeout(keepAliveIdleMs(this.#server))
        c.armed = true
      }
      this.#core.stats.rawRequests++
      this.#cork(c)
      c.busy = true
      if (r.close) c.closing = true
      if (r.transport !== null && r.transport !== 'longpoll') {
        this.#core.stats.rawStreams++
        this.#stream(c, r)
        return
      }
      if (r.transport !== null) {
        this.#core.stats.rawPolls++
        if (this.#poll(c, r)) return
        continue
      }
      if (this.#publish(c, r)) return
      if (c.closing) {
        this.#release(c)
        socket.destroySoon()
        return
      }
    }
    if (c.corked) this.#later(c)
    // the client half-closed with nothing left to answer: close, as Node's server does
    if (c.eof && !c.busy && !c.closing && c.buf === null) {
      this.#release(c)
      socket.destroySoon()
      return
    }
    if (c.deferred) return
    if (socket.isPaused() && !c.busy && socket.writableLength <= HIGH_WATER) socket.resume()
    // waiting for its next request from here: idle past keepAliveTimeout and Node's grace after
    // it (keepAliveIdleMs), it goes
    if (socket[kRawConnection] === c) this.#arm(c)
  }

  /** Has this turn spent its TURN_BUDGET_MS here? The first request of a turn starts the clock. */
  #spent (): boolean {
    const now = performance.now()
    if (this.#turnStart === 0) {
      this.#turnStart = now
      // the clock starts again at the end of the turn (flushPending)
      this.#schedule()
      return false
    }
    return now - this.#turnStart >= (this.#arrivals > 0 || this.#arrivedBefore ? TURN_BUDGET_MS : TURN_BUDGET_IDLE_MS)
  }

  /**
   * `c` waits for a later turn, behind those already waiting, paused: what it sends meanwhile
   * waits in its stream's buffer (up to its high-water mark, then in the kernel).
   */
  #defer (c: Conn): void {
    c.socket.pause()
    if (c.deferred) return
    c.deferred = true
    this.#deferred.push(c)
    this.#schedule()
  }

  #schedule (): void {
    if (!this.#scheduled) {
      this.#scheduled = true
      setImmediate(flushPending, this)
    }
  }

  /** The connections waiting take their requests, in the order they came, while a new budget lasts. */
  #runDeferred (): void {
    const list = this.#deferred
    let i = 0
    while (i < list.length && !this.#spent()) {
      const c = list[i++]!
      // taken out of turn since (its flag cleared), handed to Node's server or closed meanwhile
      if (!c.deferred || c.socket[kRawConnection] !== c || c.socket.destroyed) continue
      c.deferred = false
      if (c.busy) {
        // taken out of turn since ('drain') and now waiting on its handler, or parked: it reads as
        // a busy connection does (a parked poll sees its client's FIN and stray bytes), and its
        // handler's end takes what follows (answered)
        if (c.socket.isPaused() && (c.buf === null || c.buf.length <= INPUT_HIGH_WATER)) c.socket.resume()
        continue
      }
      this.pump(c)
    }
    list.splice(0, i)
  }

  /**
   * Take a publisher request (c is busy). True when pump must stop: its handler waits (access
   * control, an upstream, Redis) and answered() goes on from there; false when it was answered at
   * once (the usual publish: no promise) and the next request can be read, or the connection ends.
   */
  #publish (c: Conn, r: RawRequest): boolean {
    const reply = new SocketReply(c, this.#server.keepAliveTimeout, this.#core)
    const request: PublishRequestLike = { headers: r.headers, method: r.method, originalUrl: r.target, socket: c.socket, raw: null, wholeBody: r.body }
    let out: Reply | Promise<Reply> | null = null
    c.pumping = true
    try {
      out = publisherRequest(this.#core, this.#core.access!, request, reply, r.path.slice(this.#opts.pubPrefix.length), r.origin)
    } catch (err) {
      this.#publishFailed(reply, err)
    } finally {
      c.pumping = false
    }
    if (out instanceof Promise) {
      out.then(() => { this.#done(c, reply) }, (err: unknown) => {
        this.#publishFailed(reply, err)
        this.#done(c, reply)
      }).catch((err: unknown) => { this.#crashed(c, err) })
      // the answers before this one (pipelined, answered at once) leave at the end of the turn,
      // not when this handler is done
      this.#later(c)
      return true
    }
    // answered in pump's own loop: #answered leaves the reading on to it
    c.pumping = true
    this.#done(c, reply)
    c.pumping = false
    return false
  }

  #publishFailed (reply: SocketReply, err: unknown): void {
    this.#core.log?.error?.({ err }, 'request failed')
    if (!reply.sent) reply.code(500).header('Content-Type', 'text/plain').send(Buffer.from('Internal Server Error'))
  }

  #arm (c: Conn): void {
    if (c.armed) return
    c.armed = true
    c.socket.setTimeout(keepAliveIdleMs(this.#server))
  }

  /**
   * Take a long-poll (c is busy). True when pump must stop: the poll is parked or waits for access
   * control (answered() goes on from there), or the connection ends; false when it was answered
   * at once and the next request can be read.
   */
  #poll (c: Conn, r: RawRequest): boolean {
    const reply = new SocketReply(c, this.#server.keepAliveTimeout, this.#core)
    const socket = c.socket
    let out: void | Promise<void> = undefined
    c.pumping = true
    try {
      out = this.#subscribe(c, r, reply)
    } catch (err) {
      this.#failed(c, reply, err)
    } finally {
      c.pumping = false
    }
    if (out !== undefined) {
      out.then(() => {
        this.#polled(c, reply, r.close, true)
        this.#afterPark(c)
      }, (err: unknown) => {
        this.#failed(c, reply, err)
        this.#polled(c, reply, r.close, true)
      }).catch((err: unknown) => { this.#crashed(c, err) })
      this.#later(c)
      return true
    }
    this.#polled(c, reply, r.close, false)
    if (c.busy) {
      // parked: what was written before it leaves at the end of the turn; its answer, later, at once
      this.#later(c)
      this.#afterPark(c)
      return true
    }
    if (c.closing) {
      this.#release(c)
      socket.destroySoon()
      return true
    }
    return false
  }

  /** A long-poll or a stream's request (r.transport), admitted by lib/subscribe.ts subscribeRaw. */
  #subscribe (c: Conn, r: RawRequest, reply: SocketReply): void | Promise<void> {
    // (its `raw` is never read: access control and the transport take what they need from here)
    const request = { headers: r.headers, method: r.method, originalUrl: r.target, socket: c.socket, raw: null } as unknown as RawRequestLike
    // a WebSocket handshake: the client's frames read after it so far go to the transport with it
    if (r.transport === 'websocket') request.upgradeHead = () => c.buf ?? EMPTY
    const q = r.target.indexOf('?')
    return subscribeRaw(this.#core, this.#core.access!, request, reply, r.path.slice(this.#opts.subPrefix.length), q === -1 ? '' : r.target.slice(q + 1), r.origin, r.close, r.transport!)
  }

  /**
   * Take a stream's request (c is busy). Served, the stream owns the socket from then on
   * (transports/sse.ts): it is no longer read here. An error or refusal answered instead leaves
   * the connection reading on, as after a long-poll's.
   */
  #stream (c: Conn, r: RawRequest): void {
    const reply = new SocketReply(c, this.#server.keepAliveTimeout, this.#core)
    // a refused WebSocket handshake says which version it speaks (§7, RFC 6455 §4.4), as lib/plugin.ts's route
    if (r.transport === 'websocket') reply.header('Sec-WebSocket-Version', '13')
    let out: void | Promise<void> = undefined
    try {
      out = this.#subscribe(c, r, reply)
    } catch (err) {
      this.#failed(c, reply, err)
    }
    const ws = r.transport === 'websocket'
    if (out === undefined) {
      this.#streamed(c, reply, r.close, ws)
      return
    }
    this.#later(c)
    // admitted by access control that waits (an authorize request, a JWKS fetch): nothing is read
    // meanwhile, as on Node's path. A stream's client has nothing to send (a WebSocket client
    // waits for the 101, RFC 6455 §4.1), and what one sends anyway stays in the kernel until the
    // stream reads it (#streamed resumes), instead of piling up here on every connection waiting
    c.socket.pause()
    out.then(() => { this.#streamed(c, reply, r.close, ws) }, (err: unknown) => {
      this.#failed(c, reply, err)
      this.#streamed(c, reply, r.close, ws)
    }).catch((err: unknown) => { this.#crashed(c, err) })
  }

  /**
   * What runs after a handler that waited threw (a bug, never an answer): an unhandled rejection
   * would end the process and every subscriber in it, so only this connection goes, and the log says why.
   */
  #crashed (c: Conn, err: unknown): void {
    c.socket.destroy()
    try {
      this.#core.log?.error?.({ err }, 'request failed after its handler: its connection is closed')
    } catch {}
  }

  /** After a stream request's handler: the stream took the socket (or its client left), or an answer was written. */
  #streamed (c: Conn, reply: SocketReply, close: boolean, ws: boolean): void {
    if (!reply.hijacked) {
      if (ws && reply.sent) {
        // a refused handshake: its answer goes, then the connection is read and dropped until its
        // client closes (lib/linger.ts endUnread), as on Node's path (lib/plugin.ts endAfterAnswer):
        // closed at once, a client still sending frames would get a reset before reading the answer
        c.buf = null
        c.busy = false
        this.#release(c)
        endUnread(this.#core, c.socket)
        return
      }
      this.#polled(c, reply, close, true)
      return
    }
    // bytes a stream client sends after its request are not read (as on Node's path)
    c.buf = null
    this.#release(c, false)
    const socket = c.socket
    if (socket.destroyed) return
    // admitted while the server closed (access control that waited): the stream goes at once
    if (this.#closing) {
      socket.destroy()
      return
    }
    // its FIN came already: ours, as for a FIN on a stream (transports/http-stream.ts onEnd)
    if (c.eof) {
      if (!socket.writableEnded) socket.end()
    }
    // paused while answers before it waited for the client (HIGH_WATER) or requests piled up
    // behind it: the stream reads on, or it would never see its client's FIN
    else if (socket.isPaused()) socket.resume()
  }

  /**
   * A poll just parked. Requests pipelined behind it: the poll gets 400 and the connection closes
   * (§5), nothing of them is applied. The client's FIN came already: ours, as for a FIN while
   * parked (ended), and 'close' unregisters the poll.
   */
  #afterPark (c: Conn): void {
    if (!c.busy || !isParked(c.socket)) return
    if (c.buf !== null) {
      c.buf = null
      rejectIfParked(c.socket)
    } else if (c.eof) {
      c.socket.end()
    } else if (c.socket.isPaused() && !c.socket.destroyed) {
      // paused while it waited for its turn (or for its client to read): a parked poll reads on,
      // to see its client's FIN and any stray byte (§5)
      c.socket.resume()
    }
  }

  /** A poll's handler threw: a 500 if nothing was answered, else the connection goes (as lib/fast-path.ts failed). */
  #failed (c: Conn, reply: SocketReply, err: unknown): void {
    this.#core.log?.error?.({ err }, 'request failed')
    if (!reply.sent) {
      reply.code(500).header('Content-Type', 'text/plain').send(Buffer.from('Internal Server Error'))
      return
    }
    c.closing = true
    c.socket.destroy()
  }

  /** After a poll's handler: an error answered through `reply` frees the connection (a served poll frees it in #answered). */
  #polled (c: Conn, reply: SocketReply, close: boolean, later: boolean): void {
    if (reply.hijacked && reply.sent) return
    c.busy = false
    if (close || !reply.sent) c.closing = true
    if (!later) return
    this.#done(c, reply)
  }

  /**
   * A raw long-poll's answer (LongpollTransport): `head` is ended as SocketReply ends its heads and
   * written with the body in one writev, then the connection reads on, or ends.
   */
  answerPoll (c: Conn, head: string, body: Buffer | null, close: boolean): void {
    const socket = c.socket
    // as SocketReply: Date (formatted once a second), Connection, Keep-Alive
    head += 'Date: ' + formatHttpDate(Math.floor(Date.now() / 1000)) + '\r\n'
    if (close || c.closing || this.#core.draining) {
      close = true
      head += 'Connection: close\r\n\r\n'
    } else {
      const keepAlive = this.#server.keepAliveTimeout
      head += 'Connection: keep-alive\r\n' + (keepAlive > 0 ? 'Keep-Alive: timeout=' + Math.floor(keepAlive / 1000) + '\r\n' : '') + '\r\n'
    }
    if (!socket.destroyed && !socket.writableEnded) {
      if (body !== null && body.length > 0) {
        // the message's own Buffer, shared by every poll it answers (not copied per poll); on a
        // socket that still holds bytes its client has not read, bytes of their own (lib/message.ts)
        const out = socket.writableLength > 0 ? queuedCopy(body) : body
        socket.cork()
        socket.write(head, 'latin1')
        socket.write(out)
        socket.uncork()
      } else {
        socket.write(head, 'latin1')
      }
    }
    this.#answered(c, close)
  }

  /** A request was answered (`close`: the connection ends after it): read the next one, or end. */
  #answered (c: Conn, close: boolean): void {
    c.busy = false
    if (close) c.closing = true
    // (a poll answered inside pump's own loop: that loop reads on)
    if (c.pumping) return
    if (c.closing) {
      this.#release(c)
      // as Node's server ends a connection after a `Connection: close` answer: FIN, then gone
      c.socket.destroySoon()
      return
    }
    // this answer leaves at the end of the turn even if the next request's handler waits
    if (c.corked) this.#later(c)
    this.pump(c)
  }

  /** Answers written in this turn leave together: corked now, uncorked at the end of the turn (#later). */
  #cork (c: Conn): void {
    if (c.corked) return
    c.corked = true
    c.socket.cork()
  }

  /**
   * Uncork `c` at the end of this turn. Queued once a request's handler is done; a handler that
   * waits (Redis, a token check, an upstream) does not hold the answers before it, which were
   * queued when their own handlers finished.
   */
  #later (c: Conn): void {
    if (c.queued) return
    c.queued = true
    this.#pending.push(c)
    this.#schedule()
  }

  /**
   * setImmediate's end of the turn (see #later): the connections that waited for a later turn take
   * their requests (the next budget, first), then every corked connection's answers leave.
   */
  flushPending (): void {
    // the budget starts again: the connections waiting take it first (their answers join this
    // flush: #later finds it scheduled still), what they leave is the next turn's reads'
    this.#turnStart = 0
    this.#arrivedBefore = this.#arrivals > 0
    this.#arrivals = 0
    if (this.#deferred.length > 0) this.#runDeferred()
    const list = this.#pending
    this.#pending = this.#pendingDone
    this.#scheduled = false
    // connections still waiting, or a budget begun here: the next turn's end starts it again
    if (this.#deferred.length > 0 || this.#turnStart !== 0) this.#schedule()
    try {
      // the deliveries this turn held leave first, whichever transport's setImmediate is queued later
      deliveriesFirst(this.#core)
      for (let i = 0; i < list.length; i++) {
        const c = list[i]!
        c.queued = false
        // handed to Node's server, or closed, meanwhile: #release uncorked it already
        if (c.socket[kRawConnection] !== c) continue
        this.#flush(c)
        if (c.socket.writableLength > HIGH_WATER && !c.socket.destroyed) c.socket.pause()
      }
    } finally {
      list.length = 0
      this.#pendingDone = list
    }
  }

  #flush (c: Conn): void {
    if (!c.corked) return
    c.corked = false
    // (uncorked before the end of the turn too: a connection handed to Node, or paused)
    deliveriesFirst(this.#core)
    c.socket.uncork()
  }

  #done (c: Conn, reply: SocketReply): void {
    // a handler that took the connection over (hijack) or never answered: nothing more to read
    this.#answered(c, !reply.sent || reply.hijacked)
  }

  /** Stop reading `c` here (its socket goes to Node, to a stream with its own listeners, or ends). */
  #release (c: Conn, swallow = true): void {
    const socket = c.socket
    c.deferred = false
    this.#conns.delete(c)
    this.#core.stats.rawConnections = this.#conns.size
    socket[kRawConnection] = undefined
    for (const [event, fn] of RAW_LISTENERS) socket.removeListener(event, fn)
    socket.setTimeout(0)
    this.#flush(c)
    // still errors to swallow on the way out (an `end` racing a reset)
    if (swallow && !socket.destroyed) socket.on('error', noop)
  }

  /**
   * Node's HTTP server takes the connection from `pending` on, as if it had just opened (and the
   * client's FIN, if it came). `deadline`: when the request head in `pending` must be whole (0:
   * none began); one still cut when Node has read it is watched to that deadline (the sweep).
   */
  #handOver (socket: RawSocket, pending: Buffer, eof: boolean, deadline = 0): void {
    socket.removeListener('error', noop)
    if (socket.destroyed) return
    if (socket.isPaused()) socket.resume()
    this.#node.call(this.#server, socket)
    if (pending.length > 0) socket.emit('data', pending)
    if (eof && !socket.destroyed) socket.emit('end')
    if (deadline > 0 && deadline !== Infinity && !socket.destroyed && headUnfinished(socket)) {
      // told when the head is whole: in front of the parser's onIncoming until then (only for
      // connections handed over with a cut head, and put back at once)
      const parser = (socket as unknown as { parser: NodeParser }).parser
      if (typeof parser.onIncoming !== 'function') return
      socket[kHandedIncoming] = parser.onIncoming
      parser.onIncoming = onHandedIncoming
      this.handed.set(socket, deadline)
      socket.once('close', onHandedClose)
      this.#startSweep()
    }
  }

  /** A FIN that came before anything was read: Node's server sees it as its own. */
  handOverEnded (socket: RawSocket): void {
    this.#handOver(socket, EMPTY, true)
  }

  /** The client half-closed. */
  ended (c: Conn): void {
    c.eof = true
    // a parked long-poll whose client half-closed: close ours, as for one Node parked (longpoll.ts onEnd)
    if (c.busy && isParked(c.socket)) {
      c.socket.end()
      return
    }
    if (c.busy) return
    this.pump(c)
  }

  timeout (c: Conn): void {
    if (c.deferred) {
      // its timer ran out while it waited for its turn: set again when it has taken it (#arm; a
      // head still cut then gets what is left of its deadline, at least 1 ms)
      c.armed = false
      c.partial = false
      // (a cut body keeps its deadline: past it, it goes to Node's server when its turn comes)
      return
    }
    if (c.busy) return
    const socket = c.socket
    this.#release(c)
    // a cut body's rest not here in BODY_WAIT_MS: Node's server reads it, under bodyTimeout and
    // bodyMinRate counted from when it began to wait here
    if (c.bodyDeadline !== 0 && c.buf !== null) {
      markBodyWait(c, true)
      this.#handOver(socket, c.buf, c.eof)
    }
    // a head not whole within headersTimeout: Node's answer (408), then closed
    else if (c.partial) this.silent(socket)
    else socket.destroy()
  }

  closed (c: Conn): void {
    this.#conns.delete(c)
    this.#core.stats.rawConnections = this.#conns.size
    // a long-poll parked here goes with it (the poll adds no 'close' listener of its own)
    rawConnectionClosed(c.socket)
  }
}

function noop (): void {}

/**
 * A cut body goes to Node's server: its bodyTimeout and bodyMinRate count from when it began to
 * wait here (lib/publisher.ts readBody). `full`: its wait ran out (the socket's timer, which libuv
 * times from its loop's clock and may fire a little before performance.now() says it is due).
 */
function markBodyWait (c: Conn, full: boolean): void {
  const waited = performance.now() - (c.bodyDeadline - BODY_WAIT_MS)
  c.socket[kBodyWaitSince] = Date.now() - (full ? Math.max(waited, BODY_WAIT_MS) : waited)
}

const EMPTY = Buffer.alloc(0)

/**
 * What the coalescers (transports/coalesce.ts) hold in this turn is written now: a publish's answer
 * about to leave must not pass the deliveries it made (docs/api.md, "When the answer comes").
 */
function deliveriesFirst (core: Core): void {
  const coalescers = core.coalescers
  for (let i = 0; i < coalescers.length; i++) coalescers[i]!.flushNow()
}

function flushPending (rp: RawPublishers): void {
  rp.flushPending()
}

/** Waiting connections are checked this often (Node's own headersTimeout check runs every 30 s). */
const SWEEP_MS = 1000

function sweepWaiting (rp: RawPublishers): void {
  rp.sweep()
}

function onConnection (this: ServerWith, socket: RawSocket): void {
  const rp = this[kRawPublishers]
  if (rp === undefined) return
  // Node's server times a silent connection out (headersTimeout); until its first bytes, so do we
  rp.wait(socket)
  socket.on('data', onFirstData)
  socket.on('end', onWaitingEnd)
  socket.on('error', onWaitingError)
  socket.on('close', onWaitingClose)
}

/** A connection's first bytes came (or never will): it is no longer waited on. */
function stopWaiting (socket: RawSocket): void {
  socket.removeListener('data', onFirstData)
  socket.removeListener('end', onWaitingEnd)
  socket.removeListener('error', onWaitingError)
  socket.removeListener('close', onWaitingClose)
  socket.server?.[kRawPublishers]?.waiting.delete(socket)
}

function onWaitingClose (this: RawSocket): void {
  stopWaiting(this)
}

/** A reset before any byte: nobody to answer. */
function onWaitingError (this: RawSocket): void {
  stopWaiting(this)
  this.destroy()
}

/** A FIN before any byte: Node's server closes such a connection; it gets it. */
function onWaitingEnd (this: RawSocket): void {
  stopWaiting(this)
  const rp = this.server?.[kRawPublishers]
  if (rp === undefined) this.destroy()
  else rp.handOverEnded(this)
}

function onFirstData (this: RawSocket, chunk: Buffer): void {
  const rp = this.server?.[kRawPublishers]
  stopWaiting(this)
  if (rp === undefined) {
    this.destroy()
    return
  }
  // the first request's head is timed from its first bytes, as Node's parser times it (it starts
  // its clock again at a message's first byte: llhttp on_message_begin)
  rp.first(this, chunk, rp.headersMs > 0 ? performance.now() + rp.headersMs : Infinity)
}

/** A connection handed over with a cut head closed: no longer watched. */
function onHandedClose (this: RawSocket): void {
  unhook(this)
  this.server?.[kRawPublishers]?.handed.delete(this)
}

/** The parser's own onIncoming back in front, if ours still stands there. */
function unhook (socket: RawSocket): void {
  const own = socket[kHandedIncoming]
  if (own === undefined) return
  socket[kHandedIncoming] = undefined
  const parser = (socket as unknown as { parser?: NodeParser | null }).parser
  if (parser != null && parser.onIncoming === onHandedIncoming) parser.onIncoming = own
}

/** Node's parser has the whole head of a request handed over cut: its own onIncoming back, then on. */
function onHandedIncoming (this: NodeParser, ...args: unknown[]): unknown {
  const socket = this.socket
  const own = socket?.[kHandedIncoming]
  if (socket === null || own === undefined) return undefined
  this.onIncoming = own
  socket[kHandedIncoming] = undefined
  socket.server?.[kRawPublishers]?.headDone(socket)
  return own.apply(this, args)
}

/**
 * Node's parser on a handed-over connection has not finished the request head it reads: it makes a
 * request's IncomingMessage (parser.incoming) when its head is whole (node:_http_common), and
 * transports/detach.ts takes the parser off a parked poll.
 */
function headUnfinished (socket: RawSocket): boolean {
  const parser = (socket as { parser?: { incoming: unknown } | null }).parser
  return parser !== undefined && parser !== null && parser.incoming === null
}

/** Stores appendHeld allocated, and how many of their bytes are written (the rest is free room). */
const heldStores = new WeakMap<ArrayBufferLike, number>()

/**
 * `held` and `chunk` as one Buffer. Bytes that come while a request is being handled (an access
 * check or an upstream may take seconds) are held until it is done, up to INPUT_HIGH_WATER, each
 * read appended to what came before: joined anew each time (Buffer.concat) that was a copy of all
 * held bytes per read, quadratic in them, and a client sending its bytes a few at a time made the
 * server copy gigabytes for 64 KiB. The second append on the same bytes takes a store of twice
 * their size, and later ones fill its room: each byte is copied a bounded number of times. Room is
 * written only past the last byte appendHeld itself wrote into a store of its own, which no view
 * handed out (a request's body) covers.
 */
export function appendHeld (held: Buffer | null, chunk: Buffer): Buffer {
  if (held === null || held.length === 0) return chunk
  const store = held.buffer
  const written = heldStores.get(store)
  const end = held.byteOffset + held.length
  const need = held.length + chunk.length
  if (written === end && end + chunk.length <= store.byteLength) {
    chunk.copy(Buffer.from(store, end, chunk.length))
    heldStores.set(store, end + chunk.length)
    return Buffer.from(store, held.byteOffset, need)
  }
  // the first join is exact (a head or body cut once is joined once, and may stay held a while);
  // a join of bytes already joined doubles, so that the next ones find room
  const out = Buffer.allocUnsafeSlow(written === undefined ? need : Math.max(need, Math.min(2 * need, 2 * INPUT_HIGH_WATER), 4096))
  held.copy(out, 0)
  chunk.copy(out, held.length)
  heldStores.set(out.buffer, need)
  return out.subarray(0, need)
}

function onRawData (this: RawSocket, chunk: Buffer): void {
  const c = this[kRawConnection]
  if (c === undefined) return
  // any byte on a connection whose long-poll is parked: that poll gets 400, the connection closes (§5)
  if (c.busy && isParked(this)) {
    rejectIfParked(this)
    return
  }
  c.buf = appendHeld(c.buf, chunk)
  // requests pipelined behind one still being handled, or waiting for a later turn (paused, but
  // what the stream had read comes): read no further past a bound
  if (c.busy || c.deferred) {
    if (c.buf.length > INPUT_HIGH_WATER) this.pause()
    return
  }
  this.server![kRawPublishers]!.pump(c, true)
}

function onRawEnd (this: RawSocket): void {
  const c = this[kRawConnection]
  if (c !== undefined) this.server?.[kRawPublishers]?.ended(c)
}

function onRawError (this: RawSocket): void {
  this.destroy()
}

function onRawClose (this: RawSocket): void {
  const c = this[kRawConnection]
  if (c !== undefined) this.server?.[kRawPublishers]?.closed(c)
}

function onRawDrain (this: RawSocket): void {
  const c = this[kRawConnection]
  if (c === undefined || !this.isPaused() || c.busy) return
  this.server![kRawPublishers]!.pump(c)
}

function onRawTimeout (this: RawSocket): void {
  const c = this[kRawConnection]
  if (c !== undefined) this.server?.[kRawPublishers]?.timeout(c)
}

// listeners of different events (data: a Buffer, the others none)
type Listener = (this: RawSocket, ...args: any[]) => void
/** A raw connection's listeners (module functions: nothing allocated per connection). */
const RAW_LISTENERS: ReadonlyArray<readonly [string, Listener]> = [
  ['data', onRawData], ['end', onRawEnd], ['error', onRawError], ['close', onRawClose], ['drain', onRawDrain], ['timeout', onRawTimeout]
]

// ---- the request head ----------------------------------------------------------------------

const NEED_MORE_HEAD = 0
const NEED_MORE_BODY = 1
const UNSUPPORTED = 2
/** The bytes the request needs in all (head and body), set when parseRequest returns NEED_MORE_BODY. */
let cutRequestBytes = 0

interface RawRequest {
  method: 'POST' | 'PUT' | 'GET'
  target: string
  path: string
  headers: IncomingHttpHeaders
  origin: string | null
  body: Buffer
  /** Offset just past this request in the buffer. */
  end: number
  /** The client asked to close after this answer. */
  close: boolean
  /**
   * A GET: the transport that claims it (transports/index.ts claimedBy): `longpoll`, or a stream's,
   * `eventsource`, `chunked`, `multipart` or `websocket`. A publish: null.
   */
  transport: string | null
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
/** A byte parseRequest refuses in a head: not printable ASCII, SP or HTAB, or a CR and LF not paired. */
const BAD_HEAD = /[^\t\x20-\x7e\r\n]|\r(?!\n)|(?<!\r)\n/
/** Header names as clients usually spell them (Node, undici, curl, browsers), to their lower case. */
const KNOWN_NAMES = new Map<string, string>()
for (const n of ['Host', 'Connection', 'Content-Length', 'Content-Type', 'Accept', 'User-Agent', 'Origin', 'Authorization', 'Cookie',
  'If-Modified-Since', 'If-None-Match', 'Last-Event-ID', 'Accept-Encoding', 'Accept-Language', 'Cache-Control', 'Pragma',
  'X-EventSource-Event', 'Idempotency-Key', 'Referer', 'Sec-Fetch-Site', 'Sec-Fetch-Mode', 'Sec-Fetch-Dest',
  'Upgrade', 'Sec-WebSocket-Key', 'Sec-WebSocket-Version', 'Sec-WebSocket-Protocol', 'Sec-WebSocket-Extensions']) {
  KNOWN_NAMES.set(n, n.toLowerCase())
  KNOWN_NAMES.set(n.toLowerCase(), n.toLowerCase())
}
const DIGITS = /^\d{1,15}$/
/** Headers whose request Node's parser or Fastify treats specially: such a request goes there. */
const NOT_HERE = new Set(['transfer-encoding', 'expect', 'http2-settings', 'trailer', 'proxy-connection'])

/**
 * One whole request at the start of `buf`; NEED_MORE_HEAD or NEED_MORE_BODY (not all there yet,
 * within the limits); or UNSUPPORTED (Node's parser and Fastify answer it).
 */
export function parseRequest (buf: Buffer, opts: ParklineOptions): RawRequest | typeof NEED_MORE_HEAD | typeof NEED_MORE_BODY | typeof UNSUPPORTED {
  const headEnd = buf.indexOf('\r\n\r\n', 0, 'latin1')
  if (headEnd === -1) return buf.length > MAX_HEAD || !headSoFar(buf) ? UNSUPPORTED : NEED_MORE_HEAD
  if (headEnd > MAX_HEAD) return UNSUPPORTED
  const head = buf.toString('latin1', 0, headEnd)
  // printable ASCII, SP and HTAB; CR only before LF, LF only after CR
  if (BAD_HEAD.test(head)) return UNSUPPORTED
  const eol = head.indexOf('\r\n')
  const first = eol === -1 ? head : head.slice(0, eol)
  // `<method> <target> HTTP/1.1`, one space each (the request line takes no HTAB: Node's parser
  // refuses one in the target)
  const sp1 = first.indexOf(' ')
  const sp2 = first.length - 9
  if (sp1 === -1 || sp1 >= sp2 || !first.endsWith(' HTTP/1.1') || first.indexOf(' ', sp1 + 1) !== sp2 || first.indexOf('\t') !== -1) return UNSUPPORTED
  const method = first.slice(0, sp1)
  if (method !== 'POST' && method !== 'PUT' && method !== 'GET') return UNSUPPORTED
  const poll = method === 'GET'
  if (poll && !rawGets(opts)) return UNSUPPORTED
  const target = first.slice(sp1 + 1, sp2)
  if (target.length > MAX_LINE || !target.startsWith(poll ? opts.subPrefix : opts.pubPrefix)) return UNSUPPORTED
  const q = target.indexOf('?')
  const path = q === -1 ? target : target.slice(0, q)
  if (normalizePath(path) !== path) return UNSUPPORTED
  // A plain object: a client's usual header order gives every request one shape that V8 reads
  // fast, where a null-prototype object is a dictionary, built entry by entry
  // (benchmarks/results/parse-request-2026-12-01.md). A header named as an Object.prototype
  // property (`constructor`, `__proto__`) reads as defined below, so that request goes to Node's
  // parser: no own property here shadows the prototype's, and `__proto__` is never assigned.
  const headers: IncomingHttpHeaders = {}
  let count = 0
  // header lines, read in place (no array of lines, no line strings)
  for (let pos = eol === -1 ? head.length : eol + 2; pos < head.length;) {
    let end = head.indexOf('\r\n', pos)
    if (end === -1) end = head.length
    if (++count > MAX_HEADERS) return UNSUPPORTED
    const colon = head.indexOf(':', pos)
    if (colon <= pos || colon > end) return UNSUPPORTED
    const name = head.slice(pos, colon)
    // the usual names in their usual spellings need no check and no lower-casing
    const known = KNOWN_NAMES.get(name)
    if (known === undefined && !TOKEN.test(name)) return UNSUPPORTED
    const key = known ?? name.toLowerCase()
    if (headers[key] !== undefined || NOT_HERE.has(key)) return UNSUPPORTED
    // the value without the whitespace around it (SP and HTAB: BAD_HEAD let no other through),
    // cut once
    let from = colon + 1
    let to = end
    while (from < to && (head.charCodeAt(from) === 32 || head.charCodeAt(from) === 9)) from++
    while (to > from && (head.charCodeAt(to - 1) === 32 || head.charCodeAt(to - 1) === 9)) to--
    const value = head.slice(from, to)
    // the §10 limit as checkLimits (lib/plugin.ts) counts it: name, value, 2
    if (name.length + value.length + 2 > MAX_LINE) return UNSUPPORTED
    headers[key] = value
    pos = end + 2
  }
  // Node's server answers an HTTP/1.1 request without Host with 400 (requireHostHeader)
  if (headers.host === undefined) return UNSUPPORTED
  const cl = headers['content-length']
  let length = 0
  let transport: string | null = null
  if (poll) {
    // no body; the transport negotiated as on Node's path; a long-poll that answers with every
    // message at once is Node's
    if (cl !== undefined) return UNSUPPORTED
    transport = claimedBy(opts.transports, headers, 1)
    if (transport === null || (transport === 'longpoll' && !rawPolls(opts))) return UNSUPPORTED
  }
  // an Upgrade other than a WebSocket handshake on the subscriber location (h2c, a POST's) is Node's
  if (headers.upgrade !== undefined && transport !== 'websocket') return UNSUPPORTED
  const conn = headers.connection
  // a WebSocket handshake (its Connection names upgrade): the connection is the WebSocket's once
  // upgraded, and closes after any other answer, as Node's path closes it
  let close = transport === 'websocket'
  if (conn !== undefined && !close) {
    const v = conn.toLowerCase()
    if (v === 'close') close = true
    else if (v !== 'keep-alive') return UNSUPPORTED
  }
  if (!poll && cl !== undefined) {
    if (!DIGITS.test(cl)) return UNSUPPORTED
    length = Number(cl)
    if (length > opts.maxMessageSize) return UNSUPPORTED
  }
  const origin = requestOrigin(headers)
  if (!originAllowed(origin, opts.corsOrigins)) return UNSUPPORTED
  const start = headEnd + 4
  if (buf.length < start + length) {
    cutRequestBytes = start + length
    return NEED_MORE_BODY
  }
  // a view of the read: the message copies it once, into a store of its own (lib/message.ts)
  const body = buf.subarray(start, start + length)
  return { method, target, path, headers, origin, body, end: start + length, close, transport }
}

/**
 * Could `buf` (no blank line yet) still become a head parseRequest takes? Not with a byte it
 * refuses, such as a bare LF: Node's parser answers that at once (400), instead of the wait for
 * the rest of the head.
 */
function headSoFar (buf: Buffer): boolean {
  for (let i = 0; i < buf.length; i++) {
    const b = buf[i]!
    if ((b >= 0x20 && b < 0x7f) || b === 0x09) continue
    if (b === 0x0d && (i + 1 === buf.length || buf[i + 1] === 0x0a)) { i++; continue }
    return false
  }
  return true
}

/** Plain long-polls are read here (the longpoll transport is on and answers one message a poll). */
function rawPolls (opts: ParklineOptions): boolean {
  return opts.transports.includes('longpoll') && !opts.longpollMultipart
}

/** Subscribers' GETs are read here: plain long-polls, or streams and WebSocket handshakes (such a transport is on). */
function rawGets (opts: ParklineOptions): boolean {
  return rawPolls(opts) || opts.transports.some((name) => STREAMS.has(name))
}

/** The transports whose streams start on a raw connection (HttpStreamTransport and WebSocketTransport serveSocket). */
const STREAMS = new Set(['eventsource', 'chunked', 'multipart', 'websocket'])


// ---- the answer ----------------------------------------------------------------------------

/**
 * A reply written as Node's ServerResponse writes RawReply's (lib/reply.ts): the headers set, then
 * Date, Connection and Keep-Alive.
 */
class SocketReply extends HeadersReply {
  readonly #conn: Conn
  readonly #keepAlive: number
  readonly #core: Core
  /** The coalescers' hold count when the request was taken (Core.held): what its handler held since shows as more. */
  readonly #held: number
  hijacked = false

  constructor (conn: Conn, keepAliveMs: number, core: Core) {
    super()
    this.#conn = conn
    this.#keepAlive = keepAliveMs
    this.#core = core
    this.#held = core.held
  }

  send (payload?: Buffer | string): this {
    if (this.sent) return this
    this.sent = true
    const empty = this.frame(payload)
    const h = this.headers
    const status = this.status
    let head = 'HTTP/1.1 ' + status + ' ' + (STATUS_CODES[status] ?? 'unknown') + '\r\n'
    for (const k in h) head += k + ': ' + h[k] + '\r\n'
    // the Date header Node writes (formatted once a second)
    head += 'Date: ' + formatHttpDate(Math.floor(Date.now() / 1000)) + '\r\n'
    const c = this.#conn
    if (h.connection === 'close') c.closing = true
    else if (c.closing || this.#core.draining) {
      // draining (SIGTERM): the connection ends after this answer, as Node's path does (lib/server.ts)
      c.closing = true
      head += 'Connection: close\r\n'
    } else head += 'Connection: keep-alive\r\n' + (this.#keepAlive > 0 ? 'Keep-Alive: timeout=' + Math.floor(this.#keepAlive / 1000) + '\r\n' : '')
    head += '\r\n'
    const socket = c.socket
    if (socket.destroyed || socket.writableEnded) return this
    // an answer written at once (its handler waited: a token checked, an upstream) goes after the
    // deliveries its publish made, which the coalescers hold until the end of the turn (only when
    // something was held since the request came: an answer after a publish through Redis or another
    // worker, whose deliveries come back later anyway, leaves the turn's batches whole)
    if (!c.corked && this.#core.held !== this.#held) deliveriesFirst(this.#core)
    // one chunk per answer: uncorking a batch of one is then a plain write, not a writev
    if (empty) {
      socket.write(head, 'latin1')
      return this
    }
    // a text body of single bytes (channel info): one latin1 string, no Buffer made here
    if (typeof payload === 'string' && h['content-length'] === String(payload.length)) {
      socket.write(head + payload, 'latin1')
      return this
    }
    const body = typeof payload === 'string' ? Buffer.from(payload) : payload!
    const out = Buffer.allocUnsafe(head.length + body.length)
    out.write(head, 0, 'latin1')
    body.copy(out, head.length)
    socket.write(out)
    return this
  }

  hijack (): this {
    this.sent = true
    this.hijacked = true
    return this
  }
}
