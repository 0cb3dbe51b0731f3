// Bounded per-channel history for resume: a ring of at most `capacity` messages, ids strictly
// increasing, so lookups by cursor are a binary search.
//
// A buffered message is kept for its channel's whole buffer window (bufferLength messages, up to
// messageTimeout): at the defaults, 100 per channel for an hour. Kept as a Message, each one holds
// ~400 B of heap in four or five objects (the Message, its frame's Buffer and ArrayBuffer, its id
// string, a view of its body), copied by the young-generation collector until promoted and traced
// by every major collection after. Here a message is kept as numbers, its id and publish time, its
// content type and event as one interned number (Message.kind), and where its bytes are, in a
// Float64Array. The bytes are the SSE frame it was sent in, whose tail is the body (nearly every
// message), or the body alone (a body with LF). Where the process has an arena (lib/byte-arena.ts:
// wherever V8's heap growth is set: the standalone server), they are a copy in one of its slots and
// the message leaves no object at all; without one (the embedded plugin), or past the arena's largest
// slot, the buffer keeps the store the message already had, never copied, as one ArrayBuffer in an
// array made for such messages. A Message is made again, over the same bytes (a copy, from the
// arena), when one is read back (a resume, a re-poll that finds a newer message, a worker's
// snapshot), through a small cache that also holds each message as it is published, so the
// subscribers that read the same message in the same moments share one Message and the frames it
// builds.
// Measured in benchmarks/results/message-store-2026-12-01.md, buffer-kind-2026-12-02.md and
// byte-arena-2026-12-02.md.
import type { ByteArena } from './byte-arena.ts'
import { Message, kindEvent, kindType } from './message.ts'

/**
 * Per message in `#meta`: time, tag, publishedAt, body length, framed (1: the bytes are the SSE
 * frame), kind; with an arena, two more: the arena handle of its bytes (-1: in `#stores`) and their
 * length.
 */
const STRIDE = 6
const STRIDE_ARENA = 8

let nextBufferId = 1

export class MessageBuffer {
  readonly capacity: number
  readonly #id: number
  /** Where the bytes go (shared by a process's buffers), or null: each message keeps its own store. */
  readonly #arena: ByteArena | null
  /** Numbers per message in `#meta` (STRIDE, or STRIDE_ARENA with an arena). */
  readonly #stride: number
  #meta: Float64Array | null
  /** Per slot, the store of a message kept outside the arena; made for the first such message. */
  #stores: Array<ArrayBuffer | Buffer | null> | null
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

  constructor (capacity: number, arena: ByteArena | null = null) {
    this.capacity = capacity
    this.#id = nextBufferId++
    this.#arena = arena
    this.#stride = arena === null ? STRIDE : STRIDE_ARENA
    this.#meta = null
    this.#stores = null
    this.#odd = null
    this.#slots = 0
    this.#head = 0
    this.#size = 0
    this.#first = 0
    this.#bytes = 0
  }

  get size (): number { return this.#size }

  /** Body bytes of the messages held. */
  get bytes (): number { return this.#bytes }

  /** The next push evicts the oldest message. */
  get full (): boolean { return this.#size === this.capacity }

  #slot (i: number): number {
    const s = this.#head + i
    return s < this.#slots ? s : s - this.#slots
  }

  /** The id seconds of the i-th message, oldest first. */
  timeAt (i: number): number { return this.#meta![this.#slot(i) * this.#stride]! }
  tagAt (i: number): number { return this.#meta![this.#slot(i) * this.#stride + 1]! }
  publishedAtOf (i: number): number { return this.#meta![this.#slot(i) * this.#stride + 2]! }
  bodyLengthOf (i: number): number { return this.#meta![this.#slot(i) * this.#stride + 3]! }

  /** The i-th message (0 ≤ i < size), oldest first: the cache's, or made again over its stored bytes. */
  at (i: number): Message {
    if (i < 0 || i >= this.#size) throw new RangeError(`message ${i} of ${this.#size}`)
    const seq = this.#first + i
    const c = cacheSlot(this.#id, seq)
    if (cacheOwner[c] === this.#id && cacheSeq[c] === seq) return cacheMsg[c]!
    const s = this.#slot(i)
    const meta = this.#meta!
    const x = s * this.#stride
    const handle = this.#arena === null ? -1 : meta[x + 6]!
    let bytes: Buffer
    if (handle >= 0) bytes = this.#arena!.read(handle, meta[x + 7]!)
    else {
      const store = this.#stores![s]!
      bytes = store instanceof ArrayBuffer ? Buffer.from(store) : store
    }
    const framed = meta[x + 4] === 1
    const kind = meta[x + 5]!
    const odd = kind < 0 ? this.#odd!.get(seq)! : null
    const msg = new Message(meta[x]!, meta[x + 1]!, bytes, odd === null ? kindType(kind) : odd[0], odd === null ? kindEvent(kind) : odd[1],
      meta[x + 2]!, framed ? meta[x + 3]! : -1)
    cacheSet(c, this.#id, seq, msg)
    return msg
  }

  oldest (): Message | null { return this.#size === 0 ? null : this.at(0) }
  newest (): Message | null { return this.#size === 0 ? null : this.at(this.#size - 1) }

  /** Append `m`; when full the oldest goes first (read its id with timeAt(0)/tagAt(0) before). */
  push (m: Message): void {
    if (this.#size === this.capacity) this.#drop()
    if (this.#size === this.#slots) this.#grow()
    const s = this.#slot(this.#size)
    const meta = this.#meta!
    const x = s * this.#stride
    const framed = m.framed
    meta[x] = m.time
    meta[x + 1] = m.tag
    meta[x + 2] = m.publishedAt
    meta[x + 3] = m.bodyLength
    this.#bytes += m.bodyLength
    meta[x + 4] = framed ? 1 : 0
    const kind = m.kind
    meta[x + 5] = kind
    const bytes = m.stored
    const handle = this.#arena === null ? -1 : this.#arena.store(bytes)
    if (this.#arena !== null) {
      meta[x + 6] = handle
      meta[x + 7] = bytes.length
    }
    if (handle < 0) {
      // no arena, or too large for it: the store it has, as its ArrayBuffer alone if it is all of it
      const stores = this.#stores ??= new Array<ArrayBuffer | Buffer | null>(this.#slots).fill(null)
      stores[s] = bytes.byteOffset === 0 && bytes.buffer.byteLength === bytes.length ? bytes.buffer as ArrayBuffer : bytes
    }
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
    const x = s * this.#stride
    this.#bytes -= meta[x + 3]!
    if (meta[x + 5]! < 0) this.#odd!.delete(this.#first)
    const handle = this.#arena === null ? -1 : meta[x + 6]!
    if (handle >= 0) this.#arena!.free(handle)
    else this.#stores![s] = null
    this.#head = s + 1 === this.#slots ? 0 : s + 1
    this.#size--
    this.#first++
  }

  clear (): void {
    const meta = this.#meta
    if (this.#arena !== null) {
      for (let i = 0; i < this.#size; i++) {
        const handle = meta![this.#slot(i) * STRIDE_ARENA + 6]!
        if (handle >= 0) this.#arena.free(handle)
      }
    }
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
      const x = this.#slot(mid) * this.#stride
      const t = meta![x]!
      if (t > time || (t === time && meta![x + 1]! > tag)) hi = mid
      else lo = mid + 1
    }
    return lo
  }

  #release (): void {
    this.#meta = null
    this.#stores = null
    this.#odd = null
    this.#slots = 0
    this.#head = 0
  }

  /** More slots, oldest first from 0 (doubling, up to capacity). */
  #grow (): void {
    const slots = Math.min(this.capacity, Math.max(4, this.#slots * 2))
    const stride = this.#stride
    const meta = new Float64Array(slots * stride)
    const oldStores = this.#stores
    const stores = oldStores === null ? null : new Array<ArrayBuffer | Buffer | null>(slots).fill(null)
    if (this.#size > 0) {
      // [head, slots) then [0, head)
      const oldMeta = this.#meta!
      const head = this.#head
      const run = this.#slots - head
      meta.set(oldMeta.subarray(head * stride, this.#slots * stride), 0)
      if (head > 0) meta.set(oldMeta.subarray(0, head * stride), run * stride)
      if (stores !== null) for (let i = 0; i < this.#size; i++) stores[i] = oldStores![this.#slot(i)]!
    }
    this.#meta = meta
    this.#stores = stores
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
