// Bounded per-channel history for resume: a ring of at most `capacity` messages, ids strictly
// increasing, so lookups by cursor are a binary search.
import type { Message } from './message.ts'

export class MessageBuffer {
  #ring: Array<Message | null>
  #head: number
  #size: number

  constructor (capacity: number) {
    // the ring grows to capacity on demand: most channels never hold 100 messages
    this.#ring = []
    this.#head = 0
    this.#size = 0
    this.capacity = capacity
  }

  readonly capacity: number

  get size (): number { return this.#size }

  at (i: number): Message {
    return this.#ring[(this.#head + i) % this.#ring.length]!
  }

  oldest (): Message | null { return this.#size === 0 ? null : this.at(0) }
  newest (): Message | null { return this.#size === 0 ? null : this.at(this.#size - 1) }

  /** Append; returns the evicted message when the ring was full. */
  push (m: Message): Message | null {
    const ring = this.#ring
    if (this.#size < ring.length) {
      ring[(this.#head + this.#size) % ring.length] = m
      this.#size++
      return null
    }
    if (ring.length < this.capacity) {
      if (this.#head !== 0) {
        this.#ring = ring.slice(this.#head).concat(ring.slice(0, this.#head))
        this.#head = 0
      }
      this.#ring.push(m)
      this.#size++
      return null
    }
    const evicted = ring[this.#head]!
    ring[this.#head] = m
    this.#head = (this.#head + 1) % ring.length
    return evicted
  }

  /** Remove and return the oldest message. */
  shift (): Message | null {
    if (this.#size === 0) return null
    const m = this.#ring[this.#head]!
    this.#ring[this.#head] = null
    this.#head = (this.#head + 1) % this.#ring.length
    this.#size--
    if (this.#size === 0) { this.#ring = []; this.#head = 0 }
    return m
  }

  clear (): void {
    this.#ring = []
    this.#head = 0
    this.#size = 0
  }

  /** First message with id > (time, tag), or null. */
  firstAfter (time: number, tag: number): Message | null {
    let lo = 0
    let hi = this.#size
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      const m = this.at(mid)
      if (m.time > time || (m.time === time && m.tag > tag)) hi = mid
      else lo = mid + 1
    }
    return lo < this.#size ? this.at(lo) : null
  }
}
