// The slim connection record: one per subscriber, the only thing that stays reachable for the
// life of a parked connection. Fastify's request/reply and (for streams) Node's IncomingMessage,
// ServerResponse and HTTP parser are let go once the head is written (see transports/sse.ts).
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { HORIZON_ALL, type Channel } from './channel-registry.ts'
import type { Message } from './message.ts'
import { formatId, formatTags, formatVector, type Cursor } from './message-id.ts'
import type { Backlog } from './backlog.ts'
import type { Core } from './core.ts'
import type { Grant } from './auth.ts'

/** Subscriber flags (bit field). */
export const F_GAP_EVENT = 1 // ?parkline_gap=event: gap as an SSE event, not a comment
export const F_CATCHING_UP = 2 // replaying from the buffer, paced by drain; live fan-out skips it
export const F_CLOSED = 4 // removed from the table; late events are ignored
export const F_BATCHED = 8 // has frames held in this turn's coalesced batch (transports/coalesce.ts)
export const F_TOKEN_EXP = 16 // its deadline is its token's exp: ended with 401 `token expired`, not 408
export const F_HELD = 64 // multiplexed: a message waits for other authorities' earlier ones (Core.fence); live fan-out skips it
// WebSocket (transports/websocket.ts); high bits, clear of the other transports' flags
export const F_WS_META = 1 << 10 // ws+meta.nchan or ws+meta.parkline: id/content-type lines in each frame
export const F_WS_GAP = 1 << 11 // ws+meta.parkline: a gap: line may ride in the meta (§11a)
export const F_WS_PING = 1 << 12 // keepalive ping sent, no pong since: dropped at the next tick (§11c)
export const F_WS_DEFLATE = 1 << 13 // permessage-deflate negotiated: shared frames compressed once per message (§7)

export class Subscriber {
  transport: Transport
  socket: Socket
  /** Long-poll only: the parked response (one HTTP response per request). */
  res: ServerResponse | null
  /** Never changed once made (one-channel subscribers share their channel's: Channel.alone). */
  readonly channels: readonly Channel[]
  // Position 0's state inline: a one-channel subscriber (nearly all of them) holds no arrays of
  // its own beyond `channels` (four fewer objects per subscriber, ~170 B of heap, and four fewer
  // allocations per long-poll). Positions of a multiplexed subscriber live in `multi`.
  /** Index of this subscriber in its channel's `subs` (position 0). */
  slot0: number
  /** Position 0's cursor: the last id delivered (or the starting cursor). */
  time0: number
  tag0: number
  /** Multiplexed id vector (§2.2): its seconds; for one channel, the starting cursor's. */
  vTime: number
  /** Multiplexed (n > 1) only: every position's slot, cursor and the id vector's tags. */
  multi: MultiState | null
  tableIndex: number
  /** Seconds (coarse clock) of the last write, for keepalive skipping (WebSocket: of the last ping, sent every interval whatever else was written). */
  lastWrite: number
  /** Streams: bytes the socket had taken at the last keepalive that found bytes queued (-1: none yet). */
  taken: number
  /** Seconds after which the subscriber times out; 0 = never. */
  deadline: number
  flags: number
  origin: string | null
  /** A stream head held back until the engine has counted the subscriber (workers, Redis). */
  pendingHead: string | null
  /** With F_BATCHED: index of its first message in this turn's channel batch. */
  batchFrom: number
  /** multipart/mixed only: this connection's `\r\n--<boundary>`, written after every part (§8). */
  boundary: string | null
  /** Streams only, and only while the socket is backed up: frames not yet handed to it. */
  backlog: Backlog | null
  /** What admitted it when access control is on (token user, id, expiry), else null. */
  grant: Grant | null

  constructor (transport: Transport, socket: Socket, res: ServerResponse | null, channels: readonly Channel[], cursor: Cursor, origin: string | null, flags: number) {
    const n = channels.length
    this.transport = transport
    this.socket = socket
    this.res = res
    this.channels = channels
    this.slot0 = -1
    this.time0 = cursor.time
    this.tag0 = cursor.tags[0] ?? -1
    this.vTime = cursor.time
    this.multi = n > 1
      ? { slots: new Array<number>(n).fill(-1), times: new Array<number>(n).fill(cursor.time), tags: cursor.tags.slice(), vTags: cursor.tags.slice(), active: Math.max(0, cursor.active), horizon: null }
      : null
    this.tableIndex = -1
    this.lastWrite = 0
    this.taken = -1
    this.deadline = 0
    this.flags = flags
    this.origin = origin
    this.pendingHead = null
    this.batchFrom = 0
    this.boundary = null
    this.backlog = null
    this.grant = null
  }

  /** The id this subscriber sees for `msg` from position `pos`, advancing its cursor (§2.2). */
  advance (msg: Message, pos: number): string {
    const m = this.multi
    if (m === null) {
      this.time0 = msg.time
      this.tag0 = msg.tag
      return msg.id
    }
    m.times[pos] = msg.time
    m.tags[pos] = msg.tag
    if (m.horizon !== null) m.horizon[pos] = false
    if (msg.time < this.vTime) {
      // a message of an earlier second, live after one of a later second (another authority's:
      // an owner worker, a Redis master, a clock stepped back): the id stays in the later second,
      // this position at `-` there (every message of it before that second is delivered), so a
      // resume from it repeats nothing of the others
      m.active = pos
      return formatVector(this.vTime, m.vTags, pos)
    }
    if (msg.time !== this.vTime) {
      this.vTime = msg.time
      m.vTags.fill(-1)
      // the positions that lost messages below their floor had the loss signalled with this
      // message (Core.#hiddenGap): their cursors move up to the floor, so it is signalled once
      for (let k = 0; k < m.times.length; k++) {
        if (k === pos || !this.lostAt(k)) continue
        const ch = this.channels[k]!
        if (!ch.floorKnown) {
          // a loss below the horizon: what the channel holds is all after it (a creation floor
          // is this process's second, which may run ahead of the authority's ids)
          m.times[k] = ch.horizonTime
          m.tags[k] = ch.horizonTag
          ;(m.horizon ??= new Array<boolean>(m.times.length).fill(false))[k] = true
          if (ch.horizonTime === msg.time && ch.horizonTag !== HORIZON_ALL) m.vTags[k] = ch.horizonTag
          continue
        }
        m.times[k] = ch.floorTime
        m.tags[k] = ch.floorTag
        if (m.horizon !== null) m.horizon[k] = false
        // a floor in this very second is printed in the vector, so that a resume from this id
        // reads that position after the floor, not from the second's start (signalled again)
        if (ch.floorTime === msg.time && ch.floorTag !== HORIZON_ALL) m.vTags[k] = ch.floorTag
      }
    }
    m.vTags[pos] = msg.tag
    m.active = pos
    return formatVector(msg.time, m.vTags, pos)
  }

  /**
   * Did messages of position `k` after its cursor leave the buffer (evicted, expired, a restart)?
   * Only an explicit cursor counts, and only a known floor (Channel.floorKnown): the creation
   * floor of a replica says nothing of an idle channel (one re-made for each long-poll). Without
   * one, a cursor below the channel's horizon (Channel.horizonTime) may have lost messages.
   */
  lostAt (k: number): boolean {
    const t = this.timeAt(k)
    const ch = this.channels[k]!
    return t > 0 && (ch.floorKnown ? ch.hasGapAfter(t, this.tagAt(k)) : ch.hasHorizonAfter(t, this.tagAt(k)))
  }

  /** The cursor of position `pos` in canonical form, for the gap signal (§11a). */
  requested (pos: number): string {
    const m = this.multi
    return m === null ? formatId(this.time0, this.tag0) : formatVector(this.vTime, m.vTags, pos)
  }

  /** Seconds of position `pos`'s cursor. */
  timeAt (pos: number): number {
    return this.multi === null ? this.time0 : this.multi.times[pos]!
  }

  /** Tag of position `pos`'s cursor. */
  tagAt (pos: number): number {
    return this.multi === null ? this.tag0 : this.multi.tags[pos]!
  }

  /** Index in the `subs` of the channel at position `pos`, or -1. */
  slotAt (pos: number): number {
    return this.multi === null ? this.slot0 : this.multi.slots[pos]!
  }

  setSlot (pos: number, slot: number): void {
    if (this.multi === null) this.slot0 = slot
    else this.multi.slots[pos] = slot
  }

  /**
   * The id vector's tags as a long-poll Etag (§5): the cursor's tag for one channel; for several,
   * the tag list with its active position bracketed, as every id prints it, so that the client
   * sending it back as If-None-Match resumes (a list without brackets is no id: 400).
   */
  etag (): string {
    const m = this.multi
    if (m !== null) return formatTags(m.vTags, m.active)
    return this.tag0 < 0 ? '-' : String(this.tag0)
  }
}

/** A multiplexed subscriber's per-position state (§2.2). */
export interface MultiState {
  slots: number[]
  times: number[]
  tags: number[]
  /** The id vector's tags (one per position, -1 where that channel had nothing at vTime). */
  vTags: number[]
  /** The position bracketed in the vector: the last one delivered from, else the cursor's (0 if it named none). */
  active: number
  /**
   * Positions whose cursor advance() moved up to their channel's horizon (a second of this
   * process's own clock, which may run ahead of the authority's ids): a live message of an earlier
   * second is still theirs (Core.#fanout). Null until one is. Every other cursor is an id: the
   * client's, a message's, or a floor.
   */
  horizon: boolean[] | null
}

/** What the core hands a transport to serve one subscribe request. */
export interface SubscribeRequest {
  req: IncomingMessage
  res: ServerResponse
  channels: readonly Channel[]
  cursor: Cursor
  origin: string | null
  flags: number
  /** What admitted it (access control), kept on the Subscriber for expiry and revocation. */
  grant: Grant | null
  /** Embedded: the host app's header lines for the answer (lib/host-headers.ts), '' where none. */
  host: string
}

/**
 * The transport contract (nchan's subscriber_fn_t, undici's connectH1 object): every transport
 * implements these and the core calls nothing else. One instance per Core.
 */
export interface Transport {
  readonly name: string
  /** Index into per-transport counters (its place in negotiation order). */
  readonly index: number
  /** Does this request ask for this transport (§4.1)? Called in negotiation order. */
  detect (req: IncomingMessage): boolean
  /** Serve a validated subscribe request (cursor parsed, channels resolved, Fastify reply hijacked). */
  serve (sr: SubscribeRequest): void
  /** Deliver a live message published on the channel at position `pos`. */
  deliver (sub: Subscriber, msg: Message, pos: number): void
  /**
   * End the subscription from the server side: 410 (deleted), 408 (timeout), 503 (shutdown), 401
   * (its token expired or was revoked; `reason` says which).
   */
  end (sub: Subscriber, status: number, reason?: string): void
  /**
   * Shared-timer tick, for a subscriber that wrote nothing for `keepalive` seconds: its keepalive.
   * True when something was written (it counts against the tick's share); false for transports
   * that have none, and for a stream whose bytes are still queued (queuedAtKeepalive).
   */
  keepalive (sub: Subscriber): boolean
  /**
   * A request that finds a message is answered and never counted (long-poll): an engine that must
   * load a channel before it can tell counts such a subscriber only once it parks.
   */
  readonly answersAtOnce?: boolean
  /** The engine counted a subscriber deployment-wide (see Core.register): start streaming. */
  ready (sub: Subscriber): void
  /**
   * Refused at maxSubscribersPerUser after it was registered, before ready() (Core.endOverUserLimit):
   * the answer a refusal at admission gives. Absent: end(sub, 429).
   */
  endOverLimit? (sub: Subscriber): void
  /**
   * Coalescing transports: `sub` is being unregistered while this turn's frames are held for it
   * (F_BATCHED): write them now, or uncount them when its socket is gone.
   */
  releaseHeld? (sub: Subscriber): void
  /**
   * A subscriber the fence held (F_HELD) may go on: serve what is buffered for it, as after
   * ready(). Absent: ready() is called.
   */
  resume? (sub: Subscriber): void
}

export type TransportFactory = new (core: Core, index: number) => Transport

/**
 * Transport.endOverLimit: a subscriber refused before its head left is uncounted and its head
 * dropped, for the refusal to take its place. False when it had started (the head is out).
 */
export function unstarted (core: Core, sub: Subscriber): boolean {
  if (sub.pendingHead === null) return false
  core.unregister(sub)
  sub.pendingHead = null
  sub.backlog = null
  return true
}

/**
 * A stream's keepalive fell due with bytes still queued for its socket (§11c, §11e): no keepalive
 * goes behind them. If the socket took some of them since the last such check, the peer is reading
 * and the interval starts again. If it took none for a whole interval, the peer has stopped reading
 * (or is gone without a word): it is dropped, and counted as a queue-cap disconnect; its client
 * resumes from its last id. Either way nothing is written: false, for Transport.keepalive.
 */
export function queuedAtKeepalive (core: Core, sub: Subscriber): boolean {
  const socket = sub.socket
  const taken = bytesTaken(socket)
  if (taken !== sub.taken) {
    sub.taken = taken
    sub.lastWrite = core.nowSec
    return false
  }
  core.stats.overflowDisconnect++
  core.subscriberCut('disconnect')
  core.unregister(sub)
  socket.destroy()
  return false
}

/**
 * Bytes the kernel has taken from the socket so far. Node's public counters move a whole write
 * at a time (`bytesWritten` counts a chunk once handed over, `writableLength` until its write
 * completes), so a single large frame the peer reads slowly would look stalled until its last
 * byte went: the part of it libuv still holds (`writeQueueSize`, as Node's own TLS and HTTP/2
 * read it) tells the bytes taken meanwhile.
 */
export function bytesTaken (socket: Socket): number {
  const s = socket as Socket & { _bytesDispatched?: number, _handle?: { writeQueueSize?: number } | null }
  const dispatched = s._bytesDispatched
  const queued = s._handle?.writeQueueSize
  if (typeof dispatched === 'number' && typeof queued === 'number') return dispatched - queued
  return socket.bytesWritten - socket.writableLength
}
