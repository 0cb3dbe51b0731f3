// Bounded per-channel history for resume: a ring of at most `capacity` messages, ids strictly
// increasing, so lookups by cursor are a binary search.
//
// A buffered message is kept for its channel's whole buffer window (bufferLength messages, up to
// messageTimeout): at the defaults, 100 per channel for an hour. Kept as a Message, each one holds
// ~400 B of heap in four or five objects (the Message, its frame's Buffer and ArrayBuffer, its id
// string, a view of its body), copied by the young-generation collector until promoted and traced
// by every major collection after. Here a message is kept as numbers and one object: its id and
// publish time in a Float64Array, its content type and event (interned strings, shared) and the
// ArrayBuffer that holds its body in one array. That ArrayBuffer is the store the message already
// had, never copied: its SSE frame, whose tail is the body (nearly every message), or the body's
// own store (a body with LF). A Message is made again, over the same bytes, when one is read back
// (a resume, a re-poll that finds a newer message, a worker's snapshot), through a small cache that
// also holds each message as it is published, so the subscribers that read the same message in the
// same moments share one Message and the frames it builds.
// Measured in benchmarks/results/message-store-2026-12-01.md.
import { Message } from './message.ts'

/** Per message in `#meta`: time, tag, publishedAt, body length, framed (1: the store is the SSE frame). */
const STRIDE = 5
/** Per message in `#refs`: content type, event, the store (an ArrayBuffer; a Buffer if it is a view). */
const REFS = 3

let nextBufferId = 1

export class MessageBuffer {
  readonly capacity: number
  readonly #id: number
  #meta: Float64Array | null
  #refs: Array<string | ArrayBuffer | Buffer | null> | null
  /** Slots allocated (grows to capacity on demand: most channels never hold 100 messages). */
  #slots: number
  #head: number
  #size: number
  /** How many messages ever left from the front: the oldest's sequence number (cache key). */
  #first: number
  /** Body bytes of the messages held (`parkline_message_bytes_stored`). */
  #bytes: number

  constructor (capacity: number) {
    this.capacity = capacity
    this.#id = nextBufferId++
    this.#meta = null
    this.#refs = null
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
  timeAt (i: number): number { return this.#meta![this.#slot(i) * STRIDE]! }
  tagAt (i: number): number { return this.#meta![this.#slot(i) * STRIDE + 1]! }
  publishedAtOf (i: number): number { return this.#meta![this.#slot(i) * STRIDE + 2]! }

  /** The i-th message (0 ≤ i < size), oldest first: the cache's, or made again over its stored bytes. */
  at (i: number): Message {
    if (i < 0 || i >= this.#size) throw new RangeError(`message ${i} of ${this.#size}`)
    const seq = this.#first + i
    const c = cacheSlot(this.#id, seq)
    if (cacheOwner[c] === this.#id && cacheSeq[c] === seq) return cacheMsg[c]!
    const s = this.#slot(i)
    const meta = this.#meta!
    const refs = this.#refs!
    const x = s * STRIDE
    const store = refs[s * REFS + 2]!
    const bytes = store instanceof ArrayBuffer ? Buffer.from(store) : store as Buffer
    const framed = meta[x + 4] === 1
    const msg = new Message(meta[x]!, meta[x + 1]!, bytes, refs[s * REFS] as string | null, refs[s * REFS + 1] as string | null,
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
    const x = s * STRIDE
    const framed = m.framed
    meta[x] = m.time
    meta[x + 1] = m.tag
    meta[x + 2] = m.publishedAt
    meta[x + 3] = m.bodyLength
    this.#bytes += m.bodyLength
    meta[x + 4] = framed ? 1 : 0
    const refs = this.#refs!
    refs[s * REFS] = m.contentType
    refs[s * REFS + 1] = m.event
    // a store of its own is kept as its ArrayBuffer alone (one object, not two)
    const bytes = m.stored
    refs[s * REFS + 2] = bytes.byteOffset === 0 && bytes.buffer.byteLength === bytes.length ? bytes.buffer as ArrayBuffer : bytes
    // the published message itself answers the reads of the next moments (re-polls, resumes)
    const seq = this.#first + this.#size
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
    const refs = this.#refs!
    const s = this.#head
    this.#bytes -= this.#meta![s * STRIDE + 3]!
    refs[s * REFS] = null
    refs[s * REFS + 1] = null
    refs[s * REFS + 2] = null
    this.#head = s + 1 === this.#slots ? 0 : s + 1
    this.#size--
    this.#first++
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
    this.#refs = null
    this.#slots = 0
    this.#head = 0
  }

  /** More slots, oldest first from 0 (doubling, up to capacity). */
  #grow (): void {
    const slots = Math.min(this.capacity, Math.max(4, this.#slots * 2))
    const meta = new Float64Array(slots * STRIDE)
    const refs = new Array<string | ArrayBuffer | Buffer | null>(slots * REFS).fill(null)
    if (this.#size > 0) {
      // [head, slots) then [0, head)
      const oldMeta = this.#meta!
      const oldRefs = this.#refs!
      const head = this.#head
      const run = this.#slots - head
      meta.set(oldMeta.subarray(head * STRIDE, this.#slots * STRIDE), 0)
      if (head > 0) meta.set(oldMeta.subarray(0, head * STRIDE), run * STRIDE)
      for (let i = 0; i < this.#size; i++) {
        const s = this.#slot(i)
        refs[i * REFS] = oldRefs[s * REFS]!
        refs[i * REFS + 1] = oldRefs[s * REFS + 1]!
        refs[i * REFS + 2] = oldRefs[s * REFS + 2]!
      }
    }
    this.#meta = meta
    this.#refs = refs
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
