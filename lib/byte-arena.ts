// Where a standalone server process keeps its buffered messages' bytes: slots in a few large
// slabs, reused, instead of one ArrayBuffer per message.
//
// A buffered message stays for its channel's buffer window (100 messages, up to an hour, by
// default). Kept as an ArrayBuffer of its own, each one is a heap object that the young generation
// copies and promotes and every major collection traces, and a backing store V8 counts as external
// memory (whose growth starts major collections of its own). Here a message's bytes are copied into
// a slot of a slab (64 KiB, one backing store per slab, not per message), its place is a number
// (`handle`) the buffer keeps with the message's other numbers, and a slot freed by an evicted or
// expired message is the next one handed out in its size class. The heap holds one object per
// slab, and the external memory stays flat while buffers turn over: 827 against 1,032 B of RSS
// per 512-byte message (benchmarks/results/heap-growth-2026-12-02.md).
//
// Used only where V8's heap growth is set (lib/heap-growth.ts, lib/core.ts): the heap it leaves is
// smaller, and with V8's own growing factor a heap of a few tens of MB is marked again and again.
//
// Bytes are copied in (store) and out (read): a slot's bytes are written again once it is freed, so
// no view of a slab may ever leave this file. A message read back gets a store of its own.
//
// Sizes: 32-byte steps up to 512, then eight steps per doubling (multiples of 16) up to MAX_SLOT
// (16 KiB); a length takes the smallest that fits, at most 12% larger past 512 bytes (9% plus 16 B).
// Larger messages keep a store of their own (store returns -1). A slab holds whole slots (slots ×
// size bytes). One slab per size class may sit empty (the next message of that size takes it); a
// second empty one is given back at once. One slot in use keeps its slab: a message that stays
// while its neighbours leave holds up to 64 KiB (`parkline_buffer_arena_bytes` against
// `parkline_message_bytes_stored` shows how much is held so).

const SLAB_BYTES = 64 * 1024
/** The largest slot; a message larger than this is not kept here. */
export const MAX_SLOT = 16 * 1024
/** Slot numbers within a slab are below this (a handle is slab id × SLOTS + slot). */
const SLOTS = 65536
const STEP = 32
/** Sizes above 512 are multiples of GRAIN, and CLASS_OF looks lengths up by it. */
const GRAIN = 16

/** Slot size of each class, ascending. */
const SIZES: number[] = []
for (let s = STEP; s <= 512; s += STEP) SIZES.push(s)
for (let k = 1; ; k++) {
  const s = Math.ceil(512 * 2 ** (k / 8) / 16) * 16
  if (s >= MAX_SLOT) { SIZES.push(MAX_SLOT); break }
  SIZES.push(s)
}
/** Class of a length n (0 … MAX_SLOT): the smallest that fits, indexed by ceil(n / GRAIN). */
const CLASS_OF = new Uint8Array(MAX_SLOT / GRAIN + 1)
for (let i = 0, c = 0; i < CLASS_OF.length; i++) {
  while (SIZES[c]! < i * GRAIN) c++
  CLASS_OF[i] = c
}

/** The slot size a message of `length` bytes takes, or -1 if it is kept outside the arena. */
export function slotSize (length: number): number {
  return length > MAX_SLOT ? -1 : SIZES[CLASS_OF[Math.ceil(length / GRAIN)]!]!
}

class Slab {
  readonly bytes: Buffer
  readonly cls: number
  readonly size: number
  /** Free slot numbers, a stack: the top `free` entries of `stack`. */
  readonly stack: Uint16Array
  free: number

  constructor (cls: number) {
    const size = SIZES[cls]!
    const slots = Math.floor(SLAB_BYTES / size)
    this.bytes = Buffer.allocUnsafeSlow(slots * size)
    this.cls = cls
    this.size = size
    this.stack = new Uint16Array(slots)
    // slot 0 handed out first
    for (let i = 0; i < slots; i++) this.stack[i] = slots - 1 - i
    this.free = slots
  }

  get slots (): number { return this.stack.length }
}

export class ByteArena {
  /** Slabs by id; null: given back (its id is reused). */
  readonly #slabs: Array<Slab | null> = []
  readonly #freeIds: number[] = []
  /** Per class, the ids of its slabs with a free slot; the last is the one handed out from. */
  readonly #open: number[][] = SIZES.map(() => [])
  #bytes = 0
  #used = 0

  /** Bytes of the slabs held (what the arena takes from the process). */
  get bytes (): number { return this.#bytes }

  /** Bytes of the slots in use. */
  get used (): number { return this.#used }

  /**
   * Copy `src` into a slot and return its handle, or -1 if it is larger than MAX_SLOT (kept
   * elsewhere). An empty `src` takes the smallest slot.
   */
  store (src: Buffer): number {
    const n = src.length
    if (n > MAX_SLOT) return -1
    const cls = CLASS_OF[Math.ceil(n / GRAIN)]!
    const open = this.#open[cls]!
    let id: number
    let slab: Slab
    if (open.length > 0) {
      id = open[open.length - 1]!
      slab = this.#slabs[id]!
    } else {
      slab = new Slab(cls)
      id = this.#freeIds.length > 0 ? this.#freeIds.pop()! : this.#slabs.length
      this.#slabs[id] = slab
      open.push(id)
      this.#bytes += slab.bytes.length
    }
    const slot = slab.stack[--slab.free]!
    if (slab.free === 0) open.pop()
    src.copy(slab.bytes, slot * slab.size)
    this.#used += slab.size
    return id * SLOTS + slot
  }

  /** A copy of the first `length` bytes of a slot, in a store of its own. */
  read (handle: number, length: number): Buffer {
    const slab = this.#slab(handle)
    const start = (handle % SLOTS) * slab.size
    const out = Buffer.allocUnsafeSlow(length)
    slab.bytes.copy(out, 0, start, start + length)
    return out
  }

  /** The slot is free again (its bytes may be written by the next store). */
  free (handle: number): void {
    const id = Math.floor(handle / SLOTS)
    const slab = this.#slab(handle)
    if (slab.free === slab.slots) throw new RangeError(`handle ${handle} freed twice`)
    if (slab.free === 0) this.#open[slab.cls]!.push(id)
    slab.stack[slab.free++] = handle % SLOTS
    this.#used -= slab.size
    if (slab.free === slab.slots) this.#emptied(id, slab)
  }

  /** An empty slab is given back unless it is its class's only one with room. */
  #emptied (id: number, slab: Slab): void {
    const open = this.#open[slab.cls]!
    if (open.length < 2) return
    const i = open.indexOf(id)
    open[i] = open[open.length - 1]!
    open.pop()
    this.#slabs[id] = null
    this.#freeIds.push(id)
    this.#bytes -= slab.bytes.length
  }

  #slab (handle: number): Slab {
    const slab = this.#slabs[Math.floor(handle / SLOTS)]
    if (slab === undefined || slab === null) throw new RangeError(`no slab for handle ${handle}`)
    return slab
  }
}
