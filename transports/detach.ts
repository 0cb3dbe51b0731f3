// Letting go of Node's per-request HTTP objects once a stream's head is written.
//
// A streaming subscriber (SSE) never sends another request on its connection, so after the head
// the IncomingMessage, ServerResponse, HTTP parser and the server's per-connection closures are dead
// weight: about 5 KB per subscriber. Node does exactly this release itself for an `upgrade`
// (lib/_http_server.js, onParserExecuteCommon): remove its socket listeners, unconsume and free the
// parser, detach the response. We do the same for a request Node does not see as an upgrade.
// Everything used here is public or has been stable since Node 12; if a field is missing the
// release is skipped, never half-done.
import type { EventEmitter } from 'node:events'
import { Socket } from 'node:net'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { keepAliveIdleMs } from '../lib/http.ts'
import { kNodeConnection } from '../lib/symbols.ts'

interface NodeParser {
  _consumed?: boolean
  unconsume?: () => void
  /** llhttp_finish: an Error where the parser is inside a message (Node's socketOnEnd reads it so). */
  finish?: () => unknown
  remove?: () => void
  free?: () => void
  close?: () => void
  socket: unknown
  incoming: unknown
  onIncoming: unknown
}

type HttpSocket = Socket & { parser?: NodeParser | null, _httpMessage?: unknown, server?: EventEmitter & { keepAliveTimeout?: number, keepAliveTimeoutBuffer?: number }, _handle?: { _consumed?: boolean } | null, [kPendingParser]?: NodeParser | null, [kOnPartial]?: ((socket: Socket) => void) | null, [kPartial]?: boolean }

/** A released parser whose native half is not closed yet (see releaseSocket). */
const kPendingParser = Symbol('parkline.pendingParser')
const kReleased = Symbol('parkline.parserReleased')
/** Who is told when the released parser held part of a next request (detachSocket's `onPartial`). */
const kOnPartial = Symbol('parkline.onPartialRequest')
/** The released parser held part of a next request: the socket is never read as HTTP again. */
const kPartial = Symbol('parkline.partialRequest')
/** On a parser a poll's detachSocket holds: the poll's own request (releaseParser). */
const kOwnIncoming = Symbol('parkline.ownIncoming')

const NODE_EVENTS = ['data', 'end', 'close', 'drain', 'error', 'timeout', 'resume', 'pause'] as const
const protoOn = Socket.prototype.on
const protoAddListener = Socket.prototype.addListener
const protoPrependListener = Socket.prototype.prependListener
/** Benchmarks only (benchmarks/connections.ts): keep Node's HTTP objects, to show what the release buys. */
const NO_DETACH = process.env.PARKLINE_NO_DETACH === '1'

/**
 * Detach `socket` from Node's HTTP server and return it as a plain net.Socket that nothing but
 * the caller references. The caller must add its own 'close' and 'error' listeners.
 * `onPartial`: called (once the parser is let go of, on a later turn) if Node's parser had read
 * part of a request pipelined behind this one, bytes no 'data' listener will see (a long-poll's
 * connection is then not to be read again: see reattachSocket).
 */
export function detachSocket (req: IncomingMessage, res: ServerResponse, onPartial?: (socket: Socket) => void): Socket {
  const socket = req.socket as HttpSocket
  res.detachSocket(socket)
  if (NO_DETACH) return socket
  if (onPartial !== undefined) socket[kOnPartial] = onPartial
  // Node's parser may still be reading this socket's packet (requests pipelined behind this one,
  // until releaseParser). A response holds the socket meanwhile, so Node queues each later
  // response and never writes one: an answer Node gives by itself (400 without Host, 417 for an
  // Expect) or anyone else's would go into the stream, and its end would break Node's own
  // bookkeeping of the connection (an internal assertion that ends the process).
  if (socket.parser !== undefined && socket.parser !== null) {
    socket._httpMessage = HELD
    // who is told of a request behind this one must know this one from it (releaseParser)
    if (onPartial !== undefined) (socket.parser as NodeParser & { [kOwnIncoming]?: unknown })[kOwnIncoming] = req
  }
  return releaseSocket(socket)
}

function ignore (): void {}

/** What holds a detached socket's `_httpMessage` until its parser is released (detachSocket). */
const HELD = Object.freeze({ emit: (): boolean => false })

/**
 * Node's parser, still reading a detached socket (heldFromNode), met a parse error in the bytes
 * behind the stream's or poll's request: a request that no parser will ever read whole, as for a
 * head cut by the packet (releaseParser). llhttp's finish answers nothing for a parser in error,
 * so it is told here: the connection is never read as HTTP again (reattachSocket), and whoever
 * detached it is told (detachSocket's `onPartial`: a parked poll answers 400 and closes).
 */
export function heldParserFailed (socket: Socket): void {
  const s = socket as HttpSocket
  s[kPartial] = true
  const onPartial = s[kOnPartial]
  s[kOnPartial] = null
  onPartial?.(socket)
}

/** Is `socket` a stream's that Node's parser may still be reading (detachSocket)? */
export function heldFromNode (socket: Socket): boolean {
  return (socket as HttpSocket)._httpMessage === HELD
}

/**
 * The release itself, also for a socket Node handed to 'upgrade' (WebSocket): Node removed its
 * listeners and freed the parser there, but leaves its per-socket listener wrappers and a
 * dictionary-mode `_events` behind.
 */
export function releaseSocket (socket: HttpSocket): Socket {
  dropListeners(socket)
  // Node wraps these on the instance to unconsume the parser when a 'data' listener is added.
  socket.on = protoOn
  socket.addListener = protoAddListener
  socket.prependListener = protoPrependListener
  const parser = socket.parser
  if (parser !== undefined && parser !== null) {
    socket.parser = null
    // We may be inside the parser's own execute() (Fastify runs the handler synchronously from
    // 'request'): release it on the next turn, as Node does when its parser pool is full.
    socket[kPendingParser] = parser
    setImmediate(releaseParser, parser, socket)
  }
  socket.setTimeout(0)
  return socket
}

/**
 * Every listener of the events a stream subscriber listens to goes, Node's own included (a
 * socket's 'end' listener only matters where half-open is not allowed, and Node's HTTP server
 * allows it), and `_events` starts again from the shape streams are born with: dropping listeners
 * one by one leaves it a dictionary (256 B a socket, the largest object left after the release).
 */
export function dropListeners (socket: Socket): void {
  for (const ev of NODE_EVENTS) socket.removeAllListeners(ev)
  const emitter = socket as unknown as { _events?: object, _eventsCount?: number }
  if (emitter._eventsCount === 0) emitter._events = freshEvents()
}

/** The `_events` a new stream starts with (Node's lib/internal/streams/readable.js, duplex.js). */
function freshEvents (): object {
  return { close: undefined, error: undefined, prefinish: undefined, finish: undefined, drain: undefined, data: undefined, end: undefined, readable: undefined }
}

function releaseParser (parser: NodeParser & { [kReleased]?: boolean, [kOwnIncoming]?: unknown }, socket: HttpSocket): void {
  if (socket._httpMessage === HELD) socket._httpMessage = null
  // (taken off first: a parser Node took back into its pool keeps nothing of this connection's)
  const own = parser[kOwnIncoming]
  parser[kOwnIncoming] = undefined
  if (parser[kReleased] === true) return
  parser[kReleased] = true
  if (socket[kPendingParser] === parser) socket[kPendingParser] = null
  // Node freed it itself meanwhile (an upgrade or CONNECT read behind the stream's request puts
  // the parser back in Node's pool, where another connection takes it): not ours to close
  if (parser.socket !== socket) return
  if (parser._consumed === true && typeof parser.unconsume === 'function') parser.unconsume()
  parser._consumed = false
  // The parser reads the socket natively, a packet at a time: the head of a request pipelined
  // behind this one, cut by the packet, is inside it now (no 'request' for it, no 'data' event).
  // A fresh parser on this connection would start in the middle of that request and read the rest
  // of it (a header's value) as requests of their own: request smuggling. Node's own check for
  // "inside a message" (socketOnEnd) tells it.
  // A whole request read behind the poll's in the same packet, or before the poll parked, that
  // never reached a handler of Parkline's: one Node answered itself (400 without Host, 417 for an
  // Expect) or a route of an embedding app answered, its answer queued behind the poll's and never
  // written. The poll is told as of a partial one (400 and close, §5): the client sees what it
  // would for any other request there, not a poll that stays parked.
  const behind = own !== undefined && parser.incoming !== null && parser.incoming !== undefined && parser.incoming !== own
  const partial = (typeof parser.finish === 'function' && parser.finish() instanceof Error) || behind
  parser.socket = null
  parser.incoming = null
  parser.onIncoming = null
  if (typeof parser.remove === 'function') parser.remove() // out of the server's ConnectionsList
  // Not returned to Node's pool (that list is internal): close its native half instead.
  if (typeof parser.close === 'function') parser.close()
  const onPartial = socket[kOnPartial]
  socket[kOnPartial] = null
  if (partial) {
    socket[kPartial] = true
    onPartial?.(socket)
  }
}

/**
 * Hand a released keep-alive socket back to Node's HTTP server, as if it had just connected: a
 * fresh parser reads the next request (a long-poll's next poll). Call it only from outside that
 * socket's own parser callbacks, after removing every listener the caller added.
 */
export function reattachSocket (socket: Socket): void {
  const s = socket as HttpSocket
  const pending = s[kPendingParser]
  s[kOnPartial] = null
  if (pending !== undefined && pending !== null) releaseParser(pending, s)
  const server = s.server
  if (server === undefined || socket.destroyed) {
    socket.destroy()
    return
  }
  // the old parser held part of the next request: where it starts is lost, so the connection
  // ends once what was written goes out (the client sends its request again on a new one)
  if (s[kPartial] === true) {
    socket.on('error', ignore)
    socket.end()
    return
  }
  // the old parser no longer consumes the handle: let the new one read it natively again
  if (s._handle !== undefined && s._handle !== null) s._handle._consumed = false
  // straight to Node's own listener where the standalone server routes new connections (lib/raw-publish.ts)
  const node = (server as { [kNodeConnection]?: (socket: Socket) => void })[kNodeConnection]
  if (node !== undefined) node.call(server, socket)
  else server.emit('connection', socket)
  // Node arms its keep-alive timeout only after a response it wrote itself
  const idle = keepAliveIdleMs(server)
  if (idle > 0) socket.setTimeout(idle)
}
