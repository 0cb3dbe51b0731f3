// Bounded per-channel history for resume: a ring of at most `capacity` messages, ids strictly
// increasing, so lookups by cursor are a binary search.
//
// A buffered message is kept for its channel's whole buffer window (bufferLength messages, up to
// messageTimeout): at the defaults, 100 per channel for an hour. Kept as a Message, each one holds
// ~400 B of heap in four or five objects (the Message, its frame's Buffer and ArrayBuffer, its id
// string, a view of its body), copied by the young-generation collector until promoted and traced
// by every major collection after. Here a buffered message is no object of its own: its id and
// publish time, its content type and event as one interned number (Message.kind), and where its
// bytes are, are numbers in a Float64Array; its bytes (its SSE frame, whose tail is the body: nearly
// every message; or the body alone, for a body with LF) are in one of the channel's chunks, backing
// stores written once, front to back, and never again. A message published here is framed straight
// into the chunk (`reserve`, called by the Message being made), so its bytes are written once and
// the frame its subscribers are sent is a view of them. A chunk goes when the last of its messages
// leaves the buffer (and no view of it is still being sent: the collector sees to that), so a view
// handed out stays valid for as long as anyone holds it. A channel's chunks grow with it (each half
// as large again as the last, in whole messages, at most what it holds, up to CHUNK_MAX:
// chunkSize): a quiet channel's one message takes what it needs, a busy one a chunk per ~15
// messages of 512 B. The young generation has one object to copy per chunk, not one per message
// (benchmarks/results/byte-chunks-2026-12-02.md; before them, one backing store
// per message: message-store-2026-12-01.md, buffer-kind-2026-12-02.md). A Message is made again,
// over a view of its bytes, when one is read back (a resume, a re-poll that finds a newer message, a
// worker's snapshot), through a small cache that also holds each message as it is published, so
// the subscribers that read the same message in the same moments share one Message and its frames.
import { BODY_KEPT, Message, kindEvent, kindType, type FrameStore } from './message.ts'

/**
 * Per message in `#meta`: time, tag, publishedAt, body length, `kind * 2 + framed` (framed 1: the
 * stored bytes are the SSE frame), where its stored bytes are (`chunk number * CHUNK_MAX + offset`:
 * a chunk holding several messages is at most CHUNK_MAX bytes, a larger message's chunk holds it
 * alone, at offset 0), and their length.
 */
const STRIDE = 7

/** The largest chunk of several messages (a larger message gets a chunk of its own size). */
const CHUNK_MAX = 8192

let nextBufferId = 1

/**
 * A new chunk for a message of `n` bytes, after one of `last` bytes (0: none), in a buffer of
 * `capacity` messages holding `live` stored bytes: in whole messages of this size (a channel's
 * messages are mostly alike: no tail too short for the next), half as large again as the last, but
 * never more than the channel holds now, than `capacity` messages, or CHUNK_MAX bytes. A first one
 * is exactly the message (a quiet channel holds just its one). What a channel's chunks hold beyond
 * its messages (the newest one's unwritten end, the oldest one's messages gone) is then less than
 * its messages, or than two chunks.
 */
function chunkSize (last: number, live: number, n: number, capacity: number): number {
  if (last === 0 || n === 0 || n >= CHUNK_MAX) return n
  return Math.max(1, Math.min(Math.floor(CHUNK_MAX / n), Math.ceil((last + (last >>> 1)) / n), Math.ceil(live / n), capacity)) * n
}

export class MessageBuffer implements FrameStore {
  readonly capacity: number
  readonly #id: number
  #meta: Float64Array | null
  /** Content type and event of the rare message whose kind is -1 (past the interning bound), by sequence number. */
  #odd: Map<number, [string | null, string | null]> | null
  /** Slots allocated (grows to capacity on demand: most channels never hold 100 messages). */
  #slots: number
  #head: number
  #size: number
  /** How many messages ever left from the front: the oldest's sequence number (cache key). */
  #first: number
  /** Body bytes of the messages held (`parkline_message_bytes_stored`). */
  #bytes: number
  /** The chunks that hold the messages' bytes, oldest first; #chunks[0] is chunk number #chunkBase. */
  #chunks: ArrayBuffer[] | null
  #chunkBase: number
  /** The newest chunk (the last of #chunks), as a Buffer, and how much of it is written. */
  #tail: Buffer | null
  #tailUsed: number
  /** Stored bytes of the messages held (their frames, or bodies with LF). */
  #live: number
  /** The last reservation, until a push takes it: its offset in the tail, and length (-1: none). */
  #reservedAt: number
  #reservedLength: number

  constructor (capacity: number) {
    this.capacity = capacity
    this.#id = nextBufferId++
    this.#meta = null
    this.#odd = null
    this.#slots = 0
    this.#head = 0
    this.#size = 0
    this.#first = 0
    this.#bytes = 0
    this.#chunks = null
    this.#chunkBase = 0
    this.#tail = null
    this.#tailUsed = 0
    this.#live = 0
    this.#reservedAt = 0
    this.#reservedLength = -1
  }

  get size (): number { return this.#size }

  /** Body bytes of the messages held. */
  get bytes (): number { return this.#bytes }

  /** Bytes of the chunks held: what the channel's messages take in memory (frames and the chunks' unused ends included). */
  get chunkBytes (): number {
    let n = 0
    if (this.#chunks !== null) for (const c of this.#chunks) n += c.byteLength
    return n
  }

  /** The next push evicts the oldest message. */
  get full (): boolean { return this.#size === this.capacity }

  #slot (i: number): number {
    const s = this.#head + i
    return s < this.#slots ? s : s - this.#slots
  }

  /** The id seconds of the i-th message, oldest first. */
  timeAt (i: number): number { return this.#meta![this.#slot(i) * STRIDE]! }
  tagAt (i: number): number { return this.#meta![this.#slot(i) * STRIDE + 1]! }
  publishedAtOf (i: number): number { return this.#meta![this.#slot(i) * STRIDE + 2]! }
  bodyLengthOf (i: number): number { return this.#meta![this.#slot(i) * STRIDE + 3]! }

  /** The i-th message (0 ≤ i < size), oldest first: the cache's, or made again over a view of its stored bytes. */
  at (i: number): Message {
    if (i < 0 || i >= this.#size) throw new RangeError(`message ${i} of ${this.#size}`)
    const seq = this.#first + i
    const c = cacheSlot(this.#id, seq)
    if (cacheOwner[c] === this.#id && cacheSeq[c] === seq) return cacheMsg[c]!
    const meta = this.#meta!
    const x = this.#slot(i) * STRIDE
    const where = meta[x + 5]!
    const chunk = Math.floor(where / CHUNK_MAX)
    const bytes = Buffer.from(this.#chunks![chunk - this.#chunkBase]!, where - chunk * CHUNK_MAX, meta[x + 6]!)
    const framed = (meta[x + 4]! & 1) === 1
    const kind = meta[x + 4]! >> 1
    const odd = kind < 0 ? this.#odd!.get(seq)! : null
    const msg = new Message(meta[x]!, meta[x + 1]!, bytes, odd === null ? kindType(kind) : odd[0], odd === null ? kindEvent(kind) : odd[1],
      meta[x + 2]!, framed ? meta[x + 3]! : BODY_KEPT)
    cacheSet(c, this.#id, seq, msg)
    return msg
  }

  oldest (): Message | null { return this.#size === 0 ? null : this.at(0) }
  newest (): Message | null { return this.#size === 0 ? null : this.at(this.#size - 1) }

  /**
   * `n` bytes for the next message's stored bytes, in the newest chunk or a new one: the Message
   * being published into this buffer writes its frame (or body) there, and `push` keeps them
   * without a copy. Nothing else is ever written into them.
   */
  reserve (n: number): Buffer {
    let tail = this.#tail
    if (tail === null || tail.length - this.#tailUsed < n) {
      const size = chunkSize(tail === null ? 0 : tail.length, this.#live, n, this.capacity)
      tail = Buffer.allocUnsafeSlow(size)
      if (this.#chunks === null) this.#chunks = []
      this.#chunks.push(tail.buffer as ArrayBuffer)
      this.#tail = tail
      this.#tailUsed = 0
    }
    const at = this.#tailUsed
    this.#tailUsed = at + n
    this.#reservedAt = at
    this.#reservedLength = n
    return tail.subarray(at, at + n)
  }

  /** Append `m`; when full the oldest goes first (read its id with timeAt(0)/tagAt(0) before). */
  push (m: Message): void {
    if (this.#size === this.capacity) this.#drop()
    if (this.#size === this.#slots) this.#grow()
    const stored = m.stored
    const n = stored.length
    let at: number
    if (this.#tail !== null && stored.buffer === this.#tail.buffer && stored.byteOffset === this.#reservedAt && n === this.#reservedLength) {
      // framed straight into the newest chunk (reserve)
      at = this.#reservedAt
    } else {
      // a message made elsewhere: its bytes are copied in
      const into = this.reserve(n)
      into.set(stored)
      at = this.#reservedAt
    }
    this.#reservedLength = -1
    const s = this.#slot(this.#size)
    const meta = this.#meta!
    const x = s * STRIDE
    meta[x] = m.time
    meta[x + 1] = m.tag
    meta[x + 2] = m.publishedAt
    meta[x + 3] = m.bodyLength
    this.#bytes += m.bodyLength
    const kind = m.kind
    meta[x + 4] = kind * 2 + (m.framed ? 1 : 0)
    meta[x + 5] = (this.#chunkBase + this.#chunks!.length - 1) * CHUNK_MAX + at
    meta[x + 6] = n
    this.#live += n
    const seq = this.#first + this.#size
    if (kind < 0) (this.#odd ??= new Map()).set(seq, [m.contentType, m.event])
    // the published message itself answers the reads of the next moments (re-polls, resumes)
    cacheSet(cacheSlot(this.#id, seq), this.#id, seq, m)
    this.#size++
  }

  /** Drop the oldest message (expiry, eviction); an emptied buffer lets its arrays go. */
  shift (): void {
    if (this.#size === 0) return
    this.#drop()
    if (this.#size === 0) this.#release()
  }

  #drop (): void {
    const s = this.#head
    const meta = this.#meta!
    this.#bytes -= meta[s * STRIDE + 3]!
    this.#live -= meta[s * STRIDE + 6]!
    if (meta[s * STRIDE + 4]! < 0) this.#odd!.delete(this.#first)
    this.#head = s + 1 === this.#slots ? 0 : s + 1
    this.#size--
    this.#first++
    // the chunks before the oldest message's are let go; the newest never (a reservation may be in it)
    const chunks = this.#chunks!
    const keep = this.#size === 0 ? this.#chunkBase + chunks.length - 1 : Math.floor(meta[this.#head * STRIDE + 5]! / CHUNK_MAX)
    while (this.#chunkBase < keep) {
      chunks.shift()
      this.#chunkBase++
    }
  }

  clear (): void {
    this.#first += this.#size
    this.#size = 0
    this.#bytes = 0
    this.#release()
  }

  /** First message with id > (time, tag), or null. */
  firstAfter (time: number, tag: number): Message | null {
    const i = this.indexAfter(time, tag)
    return i < this.#size ? this.at(i) : null
  }

  /** Index of the first message with id > (time, tag); size when none. */
  indexAfter (time: number, tag: number): number {
    let lo = 0
    let hi = this.#size
    const meta = this.#meta
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      const x = this.#slot(mid) * STRIDE
      const t = meta![x]!
      if (t > time || (t === time && meta![x + 1]! > tag)) hi = mid
      else lo = mid + 1
    }
    return lo
  }

  #release (): void {
    this.#meta = null
    this.#odd = null
    this.#slots = 0
    this.#head = 0
    if (this.#chunks !== null) this.#chunkBase += this.#chunks.length
    this.#chunks = null
    this.#tail = null
    this.#tailUsed = 0
    this.#live = 0
    this.#reservedLength = -1
  }

  /** More slots, oldest first from 0 (doubling, up to capacity). */
  #grow (): void {
    const slots = Math.min(this.capacity, Math.max(4, this.#slots * 2))
    const meta = new Float64Array(slots * STRIDE)
    if (this.#size > 0) {
      // [head, slots) then [0, head)
      const oldMeta = this.#meta!
      const head = this.#head
      const run = this.#slots - head
      meta.set(oldMeta.subarray(head * STRIDE, this.#slots * STRIDE), 0)
      if (head > 0) meta.set(oldMeta.subarray(0, head * STRIDE), run * STRIDE)
    }
    this.#meta = meta
    this.#slots = slots
    this.#head = 0
  }
}

// ---- the read cache -------------------------------------------------------------------------------
// Direct-mapped, CACHE_SIZE entries keyed by (buffer, sequence number): the message last published
// or read there. A message stays only until another takes its entry (at 8,000 publishes/s, tens of
// ms), so it dies young; subscribers reading it meanwhile share one Message and its frames.
const CACHE_SIZE = 256
const cacheOwner = new Float64Array(CACHE_SIZE)
const cacheSeq = new Float64Array(CACHE_SIZE).fill(-1)
const cacheMsg = new Array<Message | null>(CACHE_SIZE).fill(null)

function cacheSlot (id: number, seq: number): number {
  return (Math.imul(id, 0x9e3779b1) + seq) & (CACHE_SIZE - 1)
}

function cacheSet (c: number, id: number, seq: number, msg: Message): void {
  cacheOwner[c] = id
  cacheSeq[c] = seq
  cacheMsg[c] = msg
}
