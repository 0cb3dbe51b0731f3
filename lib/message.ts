// A published message and its wire frames, each built once and shared by every subscriber of a
// transport (pino's precomputation; ws `Sender.frame`). Frames are built lazily: a transport's
// frame exists only once a subscriber of that transport needed it.
import { isUtf8 } from 'node:buffer'
import type { Socket } from 'node:net'
import { formatHttpDate, formatId } from './message-id.ts'
import { DEFLATE_MAX, DEFLATE_MIN, OP_BINARY, OP_TEXT, deflatedFrame, frame, framePrefixed } from '../transports/websocket-frame.ts'

const LF = 10
const CR = 13
/** A string of ASCII characters only (a content type written into ws+meta lines as is). */
const ASCII = /^[\x00-\x7f]*$/
const DATA_PREFIX = Buffer.from('data: ')

/**
 * A content type, or an SSE event name, is one of a handful per deployment: every message that
 * names one shares one string (bounded: past MAX_TYPES distinct ones of each, a new one is kept as
 * given). A buffered message then holds no string of its own (lib/message-buffer.ts).
 */
const MAX_TYPES = 64
/** string → its index (1 … MAX_TYPES); NAMES[index] is the shared string, NAMES[0] none. */
const TYPES = new Map<string, number>()
const TYPE_NAMES: Array<string | null> = [null]
const EVENTS = new Map<string, number>()
const EVENT_NAMES: Array<string | null> = [null]

/** The index of `s` (0: null), interning it while there is room; -1: past the bound, kept as given. */
function intern (map: Map<string, number>, names: Array<string | null>, s: string | null): number {
  if (s === null) return 0
  const known = map.get(s)
  if (known !== undefined) return known
  if (map.size >= MAX_TYPES) return -1
  names.push(s)
  map.set(s, names.length - 1)
  return names.length - 1
}

/**
 * A message's content type and event as one number (`Message.kind`), so a buffer keeps them with
 * its numbers and no reference: -1 when either is past the interning bound (kept as given).
 */
const KINDS = MAX_TYPES + 1
function kindOf (ti: number, ei: number): number {
  return ti < 0 || ei < 0 ? -1 : ti * KINDS + ei
}

/** The content type of a kind ≥ 0. */
export function kindType (kind: number): string | null {
  return TYPE_NAMES[Math.floor(kind / KINDS)]!
}

/** The event of a kind ≥ 0. */
export function kindEvent (kind: number): string | null {
  return EVENT_NAMES[kind % KINDS]!
}

/** Caches a message needs only for some transports (long-poll, multipart, chunked, ws+meta, multiplexed SSE). */
interface Extras {
  sseData: Buffer | null
  wsMetaFrame: Buffer | null
  /** permessage-deflate frames (plain, ws+meta one channel): the compressed frame, or the frame as it is where compressing does not pay. */
  wsDeflateFrame: Buffer | null
  wsDeflateMetaFrame: Buffer | null
  lastModified: string | null
  multipartPart: Buffer | null
  multipartBody: Buffer | null
  chunk: Buffer | null
}

/**
 * A message as it is published and delivered. The channel's buffer does not keep this object: it
 * keeps the id and publish time as numbers, the type and event as shared strings, and the store
 * that holds the body (`stored`), and makes a Message again over that store when one is read back
 * (lib/message-buffer.ts). A Message still holds as few heap objects as it can, since backlogs and
 * the buffer's read cache keep some for a while (benchmarks/results/message-memory-*.md). A body
 * without LF is stored once, inside its SSE frame (`id: …\ndata: <body>\n\n`, built at publish,
 * one backing store), and `data` is a view of it made at first use; a body with LF is stored on its
 * own and its frame built when an SSE subscriber needs it. The id string is made when first asked
 * for (every delivery asks: lib/subscriber.ts advance) and kept, not for a message nobody received.
 * Frames and headers only some transports use live in one object made at first use.
 */
export class Message {
  readonly time: number
  readonly tag: number
  readonly contentType: string | null
  readonly event: string | null
  /** Content type and event as one number (kindType, kindEvent), or -1 (see kindOf). */
  readonly kind: number
  /** ms since the epoch when published (sub-ms where it was published here), for expiry and delivery latency. */
  readonly publishedAt: number
  /** Its publish-to-write latency was recorded (once per message and process, lib/metrics.ts). */
  latencyObserved: boolean
  /** The body's length (its bytes are in #sseFrame's tail, or in #data). */
  readonly #length: number
  #id: string | null
  #data: Buffer | null
  #sseFrame: Buffer | null
  /** The body is the SSE frame's tail (a body without LF, or bytes read back framed): `framed`. */
  #inFrame: boolean
  #wsFrame: Buffer | null
  #extras: Extras | null
  /** The WebSocket opcode, found at the first frame (0: not yet). */
  #opcode: number

  /**
   * `data` is the body; or, with `framedLength` ≥ 0, the SSE frame this message was sent in, whose
   * tail holds a body of that length (a buffered message read back: lib/message-buffer.ts).
   * `alloc` gives the store the body is copied into here (its frame, or its own copy):
   * Buffer.allocUnsafeSlow, a store of its own, where the channel's buffer keeps that store; a
   * process whose buffers copy the bytes into an arena passes frameAlloc (lib/core.ts), a view of
   * a shared slab, which `keep` and `unpinned` copy out of where one would stay.
   */
  constructor (time: number, tag: number, data: Buffer, contentType: string | null, event: string | null, publishedAt: number, framedLength = -1, alloc: Alloc = Buffer.allocUnsafeSlow) {
    this.time = time
    this.tag = tag
    const ti = intern(TYPES, TYPE_NAMES, contentType)
    const ei = intern(EVENTS, EVENT_NAMES, event)
    this.contentType = ti > 0 ? TYPE_NAMES[ti]! : contentType
    this.event = ei > 0 ? EVENT_NAMES[ei]! : event
    this.kind = kindOf(ti, ei)
    this.publishedAt = publishedAt
    this.latencyObserved = false
    this.#id = null
    this.#wsFrame = null
    this.#extras = null
    this.#opcode = 0
    if (framedLength >= 0) {
      this.#length = framedLength
      this.#sseFrame = data
      this.#data = null
      this.#inFrame = true
      return
    }
    this.#length = data.length
    if (oneSseLine(data)) {
      // the body is copied once, into the frame it is sent in
      this.#sseFrame = frameSseLine(data, this.sseHead(formatId(time, tag)), alloc)
      this.#data = null
      this.#inFrame = true
    } else {
      this.#sseFrame = null
      this.#data = owned(data, alloc)
      this.#inFrame = false
    }
  }

  /**
   * The message stays (a backed-up subscriber's backlog, lib/backlog.ts): what it holds in a
   * shared slab (frameAlloc's, or Node's pool) is copied into stores of its own, so that it keeps
   * its own bytes and not the slab. Returns the SSE frame it replaced (the caller may hold it:
   * sseFrame() gives the copy), or null.
   */
  keep (): Buffer | null {
    const f = this.#sseFrame
    let replaced: Buffer | null = null
    if (f !== null && pins(f)) {
      this.#sseFrame = ownCopy(f)
      replaced = f
      // views of the old frame
      if (this.#inFrame) this.#data = null
      if (this.#extras !== null) this.#extras.sseData = null
    }
    if (!this.#inFrame && this.#data !== null && pins(this.#data)) this.#data = ownCopy(this.#data)
    return replaced
  }

  /** `<time>:<tag>` (§2): made when first asked for (a delivery asks), then kept. */
  get id (): string {
    if (this.#id === null) this.#id = formatId(this.time, this.tag)
    return this.#id
  }

  /** The body's length in bytes. */
  get bodyLength (): number {
    return this.#length
  }

  /**
   * The bytes that hold the body, which Parkline never writes into: the SSE frame whose tail it is
   * (framed), or the body's own store. A buffer keeps these and nothing else of the message.
   */
  get stored (): Buffer {
    return this.framed ? this.#sseFrame! : this.#data!
  }

  /** Whether `stored` is the SSE frame (the body its tail) rather than the body alone. */
  get framed (): boolean {
    return this.#inFrame
  }

  /** The body: its own store, or a view of the SSE frame that holds it. */
  get data (): Buffer {
    if (this.#data === null) {
      const frame = this.#sseFrame!
      // the frame ends with the body, then "\n\n"
      this.#data = frame.subarray(frame.length - 2 - this.#length, frame.length - 2)
    }
    return this.#data
  }

  #more (): Extras {
    if (this.#extras === null) {
      this.#extras = { sseData: null, wsMetaFrame: null, wsDeflateFrame: null, wsDeflateMetaFrame: null, lastModified: null, multipartPart: null, multipartBody: null, chunk: null }
    }
    return this.#extras
  }

  /** `data: ` lines (split at each LF and lone CR, frameSseData) plus the blank line that ends the event. */
  sseData (): Buffer {
    const x = this.#more()
    if (x.sseData === null) {
      // a frame that holds the body ends with exactly these lines: a view of it
      const f = this.#sseFrame
      x.sseData = this.framed ? f!.subarray(f!.length - 8 - this.#length) : frameSseData(this.data)
    }
    return x.sseData
  }

  /** The whole SSE event for a single-channel subscription: one Buffer for all of them. */
  sseFrame (): Buffer {
    // built in one allocation, without keeping the `data:` lines apart (only multiplexed
    // subscriptions, which print their own id lines, ask for those)
    if (this.#sseFrame === null) this.#sseFrame = frameSseData(this.data, this.sseHead(this.id))
    return this.#sseFrame
  }

  /** `event:` and `id:` lines for an id (multiplexed subscriptions print their own vector). */
  sseHead (id: string): string {
    return this.event === null ? 'id: ' + id + '\n' : 'event: ' + this.event + '\nid: ' + id + '\n'
  }

  /**
   * WebSocket opcode (§7): binary for `application/octet-stream`, text otherwise, as Nchan; but a
   * text frame must be UTF-8 (RFC 6455 §5.6, §8.1: a client fails the connection on one that is
   * not, and would meet the message again on every resume while it is buffered), so a body that is
   * not UTF-8, or a content type past ASCII (written into the ws+meta lines), goes binary. Found
   * once a message, at its first frame.
   */
  get wsOpcode (): number {
    if (this.#opcode === 0) {
      const ct = this.contentType
      this.#opcode = ct === 'application/octet-stream' || (ct !== null && !ASCII.test(ct)) || !isUtf8(this.data) ? OP_BINARY : OP_TEXT
    }
    return this.#opcode
  }

  /** The plain WebSocket frame (payload = body): one Buffer for every plain-mode subscriber. */
  wsFrame (): Buffer {
    if (this.#wsFrame === null) this.#wsFrame = frame(this.wsOpcode, this.data, Buffer.allocUnsafeSlow)
    return this.#wsFrame
  }

  /** The `ws+meta.*` frame of a single-channel subscription without a gap: shared as well. */
  wsMetaFrame (): Buffer {
    const x = this.#more()
    if (x.wsMetaFrame === null) x.wsMetaFrame = framePrefixed(this.wsOpcode, this.wsMeta(this.id, null), this.data, Buffer.allocUnsafeSlow)
    return x.wsMetaFrame
  }

  /**
   * wsFrame for a subscriber that negotiated permessage-deflate: compressed once, for all of them,
   * where that makes it smaller (else wsFrame itself).
   */
  wsDeflateFrame (): Buffer {
    if (this.#length < DEFLATE_MIN || this.#length > DEFLATE_MAX) return this.wsFrame()
    const x = this.#more()
    if (x.wsDeflateFrame === null) x.wsDeflateFrame = deflatedFrame(this.wsOpcode, this.data, Buffer.allocUnsafeSlow) ?? this.wsFrame()
    return x.wsDeflateFrame
  }

  /** wsMetaFrame for a subscriber that negotiated permessage-deflate, as wsDeflateFrame. */
  wsDeflateMetaFrame (): Buffer {
    // (the meta lines are under 128 bytes, save a long content type: the body decides)
    if (this.#length > DEFLATE_MAX) return this.wsMetaFrame()
    const x = this.#more()
    if (x.wsDeflateMetaFrame === null) {
      const meta = this.wsMeta(this.id, null)
      const payload = this.#length + meta.length < DEFLATE_MIN ? null : Buffer.concat([Buffer.from(meta, 'latin1'), this.data])
      x.wsDeflateMetaFrame = (payload === null ? null : deflatedFrame(this.wsOpcode, payload, Buffer.allocUnsafeSlow)) ?? this.wsMetaFrame()
    }
    return x.wsDeflateMetaFrame
  }

  /** `ws+meta` lines for an id (multiplexed ids differ per subscriber) and an optional gap (§7, §11a). */
  wsMeta (id: string, gap: string | null): string {
    let s = 'id: ' + id + '\n'
    if (this.contentType !== null) s += 'content-type: ' + this.contentType + '\n'
    // one line per channel that lost messages (lib/message-id.ts withGaps: the ids joined by a space)
    if (gap !== null) s += 'gap: ' + gap.replaceAll(' ', '\ngap: ') + '\n'
    return s + '\n'
  }

  /**
   * The multipart/mixed part of a single-channel subscription (§8): `\r\nLast-Modified: …\r\nEtag: …\r\n`,
   * the Content-Type line (or none), the blank line and the body. The boundary line that ends the
   * part differs per connection and is written after it.
   */
  multipartPart (): Buffer {
    const x = this.#more()
    if (x.multipartPart === null) {
      const ids = '\r\nLast-Modified: ' + this.lastModified + '\r\nEtag: ' + this.tag + '\r\n'
      const type = this.contentType === null ? '\r\n' : 'Content-Type: ' + this.contentType + '\r\n\r\n'
      const part = Buffer.allocUnsafeSlow(ids.length + type.length + this.data.length)
      let o = part.write(ids, 0, 'latin1')
      o += part.write(type, o, 'latin1')
      this.data.copy(part, o)
      x.multipartPart = part
      x.multipartBody = part.subarray(ids.length)
    }
    return x.multipartPart
  }

  /** The part without its id lines (a view of multipartPart): for multiplexed ids and gap headers. */
  multipartBody (): Buffer {
    const x = this.#more()
    if (x.multipartBody === null) this.multipartPart()
    return x.multipartBody!
  }

  /** The chunked-stream chunk `<hex length>\r\n<body>\r\n` (§8); never asked for an empty body. */
  chunk (): Buffer {
    const x = this.#more()
    if (x.chunk === null) {
      const size = this.data.length.toString(16) + '\r\n'
      const out = Buffer.allocUnsafeSlow(size.length + this.data.length + 2)
      out.write(size, 0, 'latin1')
      this.data.copy(out, size.length)
      out[out.length - 2] = 13
      out[out.length - 1] = 10
      x.chunk = out
    }
    return x.chunk
  }

  /**
   * The long-poll answer's header block (§5): `Last-Modified`, bare `Etag`, `Vary`,
   * `Content-Length` and `Content-Type` if any. Built once per message and shared by every poll it
   * answers; a multiplexed subscription passes its own tag list as `etag` (not cached).
   */
  /**
   * A long-poll answer's header block: for one channel shared by every poll it answers; for several,
   * with the id vector's tags (`etag`) and its seconds (`time`), which may be a later second than
   * this message's (Subscriber.advance): Last-Modified and Etag must name the same id.
   */
  longpollHeaders (etag?: string, time = this.time): string {
    if (etag !== undefined) return this.#buildLongpollHeaders(etag, time)
    // Kept for the message last asked, not on every message: the polls one message answers are
    // answered together (its fan-out, or a burst of re-polls), and a one-to-one message's block
    // would otherwise stay on the heap for the message's whole buffer window, promoted by every
    // young collection (benchmarks/results/longpoll-raw-2026-12-01.md).
    if (lastHeadersOf !== this) {
      lastHeaders = this.#buildLongpollHeaders(String(this.tag), this.time)
      lastHeadersOf = this
    }
    return lastHeaders
  }

  #buildLongpollHeaders (etag: string, time: number): string {
    return 'Last-Modified: ' + formatHttpDate(time) + '\r\nEtag: ' + etag +
      '\r\nVary: If-None-Match, If-Modified-Since\r\nContent-Length: ' + this.data.length + '\r\n' +
      (this.contentType === null ? '' : 'Content-Type: ' + this.contentType + '\r\n')
  }

  get lastModified (): string {
    const x = this.#more()
    if (x.lastModified === null) x.lastModified = formatHttpDate(this.time)
    return x.lastModified
  }
}

/** The long-poll header block of the message last asked (Message.longpollHeaders). */
let lastHeadersOf: Message | null = null
let lastHeaders = ''

/**
 * A message's bytes in a backing store of their own. A small Buffer from Buffer.allocUnsafe,
 * Buffer.concat or Buffer.from (under half of Buffer.poolSize: 64 KiB on Node 24, 8 KiB on 22) is a
 * view of a slab shared with whatever else was allocated next to it (request heads, answers,
 * frames), and a view read out of a larger frame (a worker's batch, a Redis reply) pins all of
 * that frame: a message kept for an hour would keep all of it.
 * Measured in benchmarks/results/message-memory-*.md. With `alloc` frameAlloc (a process whose
 * buffers copy into an arena: Message's constructor), the copy no longer holds the read it came
 * from, and is itself a view of a shared slab for the moment of the fan-out.
 */
export function owned (data: Buffer, alloc: Alloc = Buffer.allocUnsafeSlow): Buffer {
  // kept only if its store is a plain ArrayBuffer: a shared one can change under it, a resizable
  // one can grow, and a buffer keeps the store itself (lib/message-buffer.ts)
  const store = data.buffer
  if (data.byteOffset === 0 && store.byteLength === data.length && store instanceof ArrayBuffer && !store.resizable) return data
  const own = alloc(data.length)
  data.copy(own)
  return own
}

/** Where a Message's bytes are copied at publish (see its constructor). */
export type Alloc = (size: number) => Buffer

/**
 * Frames for a process whose buffers copy what they keep into an arena (lib/core.ts): views of a
 * FRAME_SLAB-byte slab, handed out one after another (8-byte aligned); a slab goes once nothing
 * holds a view of it. A frame that stays keeps its whole slab: the bytes that stay are copied out
 * (`keep`, `unpinned`, `writeShared`); what is left, a stalled socket's one unfinished write or
 * the read cache's entries, keeps a slab each. Node's pool does the same with slabs of
 * Buffer.poolSize: 64 KiB on Node 24, 8 KiB on 22, and a host may change it; ours is 64 KiB on
 * both, since 8 KiB slabs cost the server more CPU (benchmarks/results/pooled-frames-2026-12-02.md).
 * A frame over FRAME_MAX gets a store of its own (the arena copies up to its MAX_SLOT, 16 KiB, and
 * a buffer keeps what is larger as it is: never a view of a slab).
 */
export function frameAlloc (size: number): Buffer {
  if (size > FRAME_MAX) return Buffer.allocUnsafeSlow(size)
  if (slabUsed + size > FRAME_SLAB) {
    slab = Buffer.allocUnsafeSlow(FRAME_SLAB)
    slabUsed = 0
  }
  const out = slab.subarray(slabUsed, slabUsed + size)
  slabUsed = (slabUsed + size + 7) & ~7
  return out
}

export const FRAME_SLAB = 65536
/** The largest frame taken from a slab. */
export const FRAME_MAX = 4096
/** The slab frames are handed out from (none until the first: the embedded plugin never asks). */
let slab = Buffer.alloc(0)
let slabUsed = FRAME_SLAB

/**
 * Does `b` keep a store larger than itself by more than PIN_SLACK: a view of a shared slab (a frame
 * from frameAlloc, a Buffer from Node's pool), or of a larger read? (A body's view of the frame that
 * holds it differs by the frame's head alone.) Such a view should stay only for the moment of a write.
 */
function pins (b: Buffer): boolean {
  return b.buffer.byteLength > b.length + PIN_SLACK
}

const PIN_SLACK = 1024

function ownCopy (b: Buffer): Buffer {
  const out = Buffer.allocUnsafeSlow(b.length)
  b.copy(out)
  return out
}

/** `b`, or a copy in a store of its own where `b` pins a larger one (see pins): for bytes that stay. */
export function unpinned (b: Buffer): Buffer {
  return pins(b) ? ownCopy(b) : b
}

/** The frame queuedCopy copied last, and its copy. */
let copiedFrom: Buffer | null = null
let copied: Buffer = Buffer.alloc(0)

/**
 * `frame` for a socket that holds bytes its client has not read, where it will stay: `unpinned`,
 * but one copy per frame, not per socket. A fan-out writes one frame to each subscriber in turn,
 * so every socket it waits on holds the same store of its own (the copy made for the first),
 * not a copy each (benchmarks/micro/queued-fanout.ts). The frame copied last is kept to know
 * it again: at most one slab (FRAME_SLAB) stays pinned by it, until the next copy.
 */
export function queuedCopy (frame: Buffer): Buffer {
  if (!pins(frame)) return frame
  if (frame !== copiedFrom) {
    copied = ownCopy(frame)
    copiedFrom = frame
  }
  return copied
}

/**
 * Write a shared frame to a subscriber's socket. A socket that holds unwritten bytes (and is not
 * corked for this turn) keeps what it is given until its client reads: it gets the frame's bytes
 * in a store of their own (queuedCopy: one for every socket the frame waits on), not a view that
 * would keep a shared slab. A frame written to a socket with nothing queued leaves at once, or,
 * the first time a client stops reading, stays as that socket's one pinned slab. A corked
 * socket's writes are this turn's (they leave at its uncork); a caller that corks around writes
 * of frames that may stay passes frames of their own (http-stream.ts flush: a backlog's, copied
 * when queued).
 */
export function writeShared (socket: Socket, frame: Buffer): void {
  socket.write(socket.writableLength > 0 && socket.writableCorked === 0 ? queuedCopy(frame) : frame)
}

/**
 * A body that is one `data:` line: no LF, and no lone CR (one not followed by LF; with no LF, a CR
 * before the last byte). One scan each for LF and CR, whatever the body holds.
 */
function oneSseLine (data: Buffer): boolean {
  if (data.indexOf(LF) !== -1) return false
  const cr = data.indexOf(CR)
  return cr === -1 || cr === data.length - 1
}

/**
 * Where the body's `data:` lines end, in order: each LF, and each lone CR (one not followed by LF;
 * a CR that is the body's last byte is followed by the line's own LF). EventSource parsers end a
 * line at CR, LF or CRLF: a lone CR left inside a `data:` line would start a line of the body's
 * choosing (`id:`, `event:`, `retry:`) in every subscriber's stream, so it ends the line instead.
 * The next LF and the next CR are carried from one call to the next: linear in the body, however
 * many of either it holds.
 */
class SseBreaks {
  readonly data: Buffer
  #lf: number
  #cr: number
  constructor (data: Buffer) {
    this.data = data
    this.#lf = data.indexOf(LF)
    this.#cr = data.indexOf(CR)
  }

  /** The next break, or -1. */
  next (): number {
    const data = this.data
    for (;;) {
      const cr = this.#cr
      if (cr !== -1 && (this.#lf === -1 || cr < this.#lf)) {
        this.#cr = data.indexOf(CR, cr + 1)
        if (cr + 1 < data.length && data[cr + 1] !== LF) return cr
        continue
      }
      const lf = this.#lf
      if (lf !== -1) this.#lf = data.indexOf(LF, lf + 1)
      return lf
    }
  }
}

/**
 * frameSseData for a body without LF or lone CR (nearly every publish): one `data: ` line, the head
 * and the prefix written in one go, no scans (one of the cuts in benchmarks/results/publish-path-2026-12-01.md).
 */
function frameSseLine (data: Buffer, head: string, alloc: Alloc): Buffer {
  const pre = head + 'data: '
  const out = alloc(pre.length + data.length + 2)
  out.write(pre, 0, 'latin1')
  out.set(data, pre.length)
  out[out.length - 2] = LF
  out[out.length - 1] = LF
  return out
}

/**
 * `data: ` lines for `data` (after an optional latin1 `head`), in a backing store of their own. A
 * line ends at each LF (which it loses: `a\nb` is `data: a\ndata: b`) and at each lone CR (which it
 * keeps, followed by an LF: one CRLF line end, `a\rb` is `data: a\r\ndata: b`), so an EventSource
 * reads `a\nb` for both and no body can write a line that is not `data:`. A CR before an LF stays
 * in its line (`a\r\nb` is `data: a\r\ndata: b`, as Nchan writes it).
 */
export function frameSseData (data: Buffer, head = ''): Buffer {
  let lines = 1
  let loneCr = 0
  const count = new SseBreaks(data)
  for (let i = count.next(); i !== -1; i = count.next()) {
    lines++
    if (data[i] === CR) loneCr++
  }
  // each line gains "data: " and ends in "\n" (an LF of the body's, or one added after a lone CR);
  // one more "\n" ends the event
  const out = Buffer.allocUnsafeSlow(head.length + data.length + lines * 6 + loneCr + 2)
  let o = head.length > 0 ? out.write(head, 0, 'latin1') : 0
  const breaks = new SseBreaks(data)
  let start = 0
  for (;;) {
    const end = breaks.next()
    const stop = end === -1 ? data.length : end
    o += DATA_PREFIX.copy(out, o)
    o += data.copy(out, o, start, stop)
    if (end !== -1 && data[end] === CR) out[o++] = CR
    out[o++] = LF
    if (end === -1) break
    start = end + 1
  }
  out[o++] = LF
  return out
}
