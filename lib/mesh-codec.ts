// The mesh's frame body (lib/mesh.ts): a batch of entries, each written by hand when it is one of
// the entries every publish makes (lib/cluster.ts `Peer`: 'pub' to a channel's owner, 'm' from
// it, 'r' its answer, 'a' and 't'), and by `v8.serialize` otherwise. The hand-written ones cost a
// fraction of what the serializer does for a few strings, numbers and a body
// (benchmarks/micro/mesh-codec.ts); an entry of any other shape, or with a string UTF-8 cannot
// carry unchanged (a lone surrogate), goes through the serializer, so every entry comes back as
// `v8.deserialize` would give it: the same array, its bodies as views of the frame.
//
//   entry := TAG_V8 u32 len bytes                  (v8.serialize(entry))
//          | TAG_PUB u8 n f64 r str key bin data nstr ct nstr ev nstr ik [str fp]   (n = 7 | 8)
//          | TAG_M u8 n str key f64 time f64 tag bin data nstr ct nstr ev f64 at [str ik str fp]   (n = 8 | 10)
//          | TAG_R f64 r u8 kind [info] [u8 status u8 flags info]   (kind 0: null, 1: info, 2: a publish's result)
//          | TAG_A f64 n | TAG_T f64 sec
//   str := u32 len utf8 · nstr := u32 len (NULL_LEN: null) utf8 · bin := u32 len bytes
//   info := f64 messages f64 requested f64 subscribers str lastMessageId
import { deserialize, serialize } from 'node:v8'

const TAG_V8 = 0
const TAG_PUB = 1
const TAG_M = 2
const TAG_R = 3
const TAG_A = 4
const TAG_T = 5
const NULL_LEN = 0xffffffff

/** A string UTF-8 carries unchanged: no lone surrogate (V8 answers a one-byte string at once). */
function plain (s: unknown): s is string {
  return typeof s === 'string' && s.isWellFormed()
}

function nullable (s: unknown): boolean {
  return s === null || plain(s)
}

function bytes (b: unknown): b is Uint8Array {
  return b instanceof Uint8Array
}

/** A plain object's own enumerable keys, counted; -1 for anything else. */
function plainKeys (v: unknown): number {
  if (typeof v !== 'object' || v === null || Object.getPrototypeOf(v) !== Object.prototype) return -1
  let n = 0
  for (const k in v) {
    if (!Object.hasOwn(v, k)) return -1
    n++
  }
  return n
}

/** { messages, requested, subscribers, lastMessageId } and nothing else. */
function isInfo (v: unknown): boolean {
  const o = v as Record<string, unknown>
  return plainKeys(v) === 4 && typeof o.messages === 'number' && typeof o.requested === 'number' &&
    typeof o.subscribers === 'number' && plain(o.lastMessageId)
}

/** { status: 201 | 202, info, replayed?: boolean, conflict?: boolean } and nothing else. */
function isResult (v: unknown): boolean {
  const n = plainKeys(v)
  if (n < 0) return false
  const o = v as Record<string, unknown>
  let want = 2
  if ('replayed' in o) { if (typeof o.replayed !== 'boolean') return false; want++ }
  if ('conflict' in o) { if (typeof o.conflict !== 'boolean') return false; want++ }
  return n === want && (o.status === 201 || o.status === 202) && isInfo(o.info)
}

/** The entry's tag if it is written by hand, else TAG_V8. */
function tagOf (e: unknown): number {
  if (!Array.isArray(e)) return TAG_V8
  switch (e[0]) {
    case 'pub':
      if ((e.length === 7 || (e.length === 8 && plain(e[7]))) && typeof e[1] === 'number' && plain(e[2]) && bytes(e[3]) &&
        nullable(e[4]) && nullable(e[5]) && nullable(e[6])) return TAG_PUB
      return TAG_V8
    case 'm':
      if ((e.length === 8 || (e.length === 10 && plain(e[8]) && plain(e[9]))) && plain(e[1]) && typeof e[2] === 'number' &&
        typeof e[3] === 'number' && bytes(e[4]) && nullable(e[5]) && nullable(e[6]) && typeof e[7] === 'number') return TAG_M
      return TAG_V8
    case 'r':
      if (e.length === 3 && typeof e[1] === 'number' && (e[2] === null || isInfo(e[2]) || isResult(e[2]))) return TAG_R
      return TAG_V8
    case 'a':
      return e.length === 2 && typeof e[1] === 'number' ? TAG_A : TAG_V8
    case 't':
      return e.length === 2 && typeof e[1] === 'number' ? TAG_T : TAG_V8
    default:
      return TAG_V8
  }
}

/** Encodes a batch: sizes first, then one Buffer. */
class Writer {
  buf: Buffer
  pos: number

  constructor (size: number, headroom: number) {
    this.buf = Buffer.allocUnsafe(headroom + size)
    this.pos = headroom
  }

  u8 (v: number): void { this.buf[this.pos++] = v }
  u32 (v: number): void { this.buf.writeUInt32BE(v, this.pos); this.pos += 4 }
  f64 (v: number): void { this.buf.writeDoubleBE(v, this.pos); this.pos += 8 }
  str (s: string): void {
    const n = this.buf.write(s, this.pos + 4, 'utf8')
    this.u32(n)
    this.pos += n
  }

  nstr (s: string | null): void {
    if (s === null) this.u32(NULL_LEN)
    else this.str(s)
  }

  bin (b: Uint8Array): void {
    this.u32(b.byteLength)
    this.buf.set(b, this.pos)
    this.pos += b.byteLength
  }

  info (o: Record<string, unknown>): void {
    this.f64(o.messages as number)
    this.f64(o.requested as number)
    this.f64(o.subscribers as number)
    this.str(o.lastMessageId as string)
  }
}

const strSize = (s: unknown): number => 4 + (s === null ? 0 : Buffer.byteLength(s as string, 'utf8'))
const INFO_FIXED = 3 * 8

/**
 * The frame body of `batch`, after `headroom` bytes left for the caller (the frame's length: one
 * Buffer, one write). `blobs` holds, per entry not written by hand, its serialization (made while
 * sizing, written after).
 */
export function encodeBatch (batch: readonly unknown[], headroom = 0): Buffer {
  const tags = new Uint8Array(batch.length)
  let blobs: Buffer[] | null = null
  let size = 0
  for (let i = 0; i < batch.length; i++) {
    const e = batch[i] as unknown[]
    const tag = tagOf(e)
    tags[i] = tag
    size += 1
    switch (tag) {
      case TAG_PUB:
        size += 1 + 8 + strSize(e[2]) + 4 + (e[3] as Uint8Array).byteLength + strSize(e[4]) + strSize(e[5]) + strSize(e[6]) + (e.length === 8 ? strSize(e[7]) : 0)
        break
      case TAG_M:
        size += 1 + strSize(e[1]) + 16 + 4 + (e[4] as Uint8Array).byteLength + strSize(e[5]) + strSize(e[6]) + 8 + (e.length === 10 ? strSize(e[8]) + strSize(e[9]) : 0)
        break
      case TAG_R: {
        const v = e[2] as Record<string, unknown> | null
        size += 8 + 1
        if (v !== null) size += 'info' in v ? 2 + INFO_FIXED + strSize((v.info as Record<string, unknown>).lastMessageId) : INFO_FIXED + strSize(v.lastMessageId)
        break
      }
      case TAG_A:
      case TAG_T:
        size += 8
        break
      default: {
        const blob = serialize(e)
        ;(blobs ??= []).push(blob)
        size += 4 + blob.length
      }
    }
  }
  const w = new Writer(size, headroom)
  let b = 0
  for (let i = 0; i < batch.length; i++) {
    const e = batch[i] as unknown[]
    const tag = tags[i]!
    w.u8(tag)
    switch (tag) {
      case TAG_PUB:
        w.u8(e.length)
        w.f64(e[1] as number)
        w.str(e[2] as string)
        w.bin(e[3] as Uint8Array)
        w.nstr(e[4] as string | null)
        w.nstr(e[5] as string | null)
        w.nstr(e[6] as string | null)
        if (e.length === 8) w.str(e[7] as string)
        break
      case TAG_M:
        w.u8(e.length)
        w.str(e[1] as string)
        w.f64(e[2] as number)
        w.f64(e[3] as number)
        w.bin(e[4] as Uint8Array)
        w.nstr(e[5] as string | null)
        w.nstr(e[6] as string | null)
        w.f64(e[7] as number)
        if (e.length === 10) { w.str(e[8] as string); w.str(e[9] as string) }
        break
      case TAG_R: {
        w.f64(e[1] as number)
        const v = e[2] as Record<string, unknown> | null
        if (v === null) w.u8(0)
        else if ('info' in v) {
          w.u8(2)
          w.u8(v.status as number)
          w.u8(('replayed' in v ? (v.replayed === true ? 3 : 2) : 0) | ('conflict' in v ? (v.conflict === true ? 12 : 8) : 0))
          w.info(v.info as Record<string, unknown>)
        } else {
          w.u8(1)
          w.info(v)
        }
        break
      }
      case TAG_A:
      case TAG_T:
        w.f64(e[1] as number)
        break
      default:
        w.bin(blobs![b++]!)
    }
  }
  return w.buf
}

/** Reads a frame body; a body that does not parse throws (the connection is cut). */
class Reader {
  readonly buf: Buffer
  pos: number

  constructor (buf: Buffer) {
    this.buf = buf
    this.pos = 0
  }

  /** Where the next `n` bytes start; past them after. */
  #take (n: number): number {
    if (this.pos + n > this.buf.length) throw new RangeError('mesh frame: truncated entry')
    const at = this.pos
    this.pos += n
    return at
  }

  #text (n: number): string {
    const at = this.#take(n)
    return this.buf.toString('utf8', at, at + n)
  }

  u8 (): number { return this.buf[this.#take(1)]! }
  u32 (): number { return this.buf.readUInt32BE(this.#take(4)) }
  f64 (): number { return this.buf.readDoubleBE(this.#take(8)) }
  str (): string { return this.#text(this.u32()) }
  nstr (): string | null {
    const n = this.u32()
    return n === NULL_LEN ? null : this.#text(n)
  }

  /** A view of the frame, as the deserializer gives a Buffer. */
  bin (): Buffer {
    const n = this.u32()
    const at = this.#take(n)
    return this.buf.subarray(at, at + n)
  }

  info (): { messages: number, requested: number, subscribers: number, lastMessageId: string } {
    const messages = this.f64()
    const requested = this.f64()
    const subscribers = this.f64()
    return { messages, requested, subscribers, lastMessageId: this.str() }
  }
}

export function decodeBatch (body: Buffer): unknown[] {
  const r = new Reader(body)
  const out: unknown[] = []
  while (r.pos < body.length) {
    const tag = r.u8()
    switch (tag) {
      case TAG_PUB: {
        const n = r.u8()
        if (n !== 7 && n !== 8) throw new RangeError('mesh frame: bad entry')
        const e: unknown[] = ['pub', r.f64(), r.str(), r.bin(), r.nstr(), r.nstr(), r.nstr()]
        if (n === 8) e.push(r.str())
        out.push(e)
        break
      }
      case TAG_M: {
        const n = r.u8()
        if (n !== 8 && n !== 10) throw new RangeError('mesh frame: bad entry')
        const e: unknown[] = ['m', r.str(), r.f64(), r.f64(), r.bin(), r.nstr(), r.nstr(), r.f64()]
        if (n === 10) e.push(r.str(), r.str())
        out.push(e)
        break
      }
      case TAG_R: {
        const seq = r.f64()
        const kind = r.u8()
        let v: unknown = null
        if (kind === 1) v = r.info()
        else if (kind === 2) {
          const status = r.u8()
          const flags = r.u8()
          const res: Record<string, unknown> = { status, info: r.info() }
          if ((flags & 2) !== 0) res.replayed = (flags & 1) !== 0
          if ((flags & 8) !== 0) res.conflict = (flags & 4) !== 0
          v = res
        } else if (kind !== 0) throw new RangeError('mesh frame: bad entry')
        out.push(['r', seq, v])
        break
      }
      case TAG_A:
        out.push(['a', r.f64()])
        break
      case TAG_T:
        out.push(['t', r.f64()])
        break
      case TAG_V8: {
        const e: unknown = deserialize(r.bin())
        // every entry is an array named by its first element (lib/cluster.ts `Peer`)
        if (!Array.isArray(e) || typeof e[0] !== 'string') throw new RangeError('mesh frame: bad entry')
        out.push(e)
        break
      }
      default:
        throw new RangeError('mesh frame: bad entry')
    }
  }
  return out
}
