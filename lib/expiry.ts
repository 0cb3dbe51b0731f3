// Message expiry (messageTimeout) without a pass over every channel each second. A channel that
// holds messages is filed under the second its oldest message expires; the shared timer's tick
// takes the seconds that have come and hands over only the channels filed there, which expire
// what is due and are filed again under their new oldest message's second. A tick costs the
// channels due in it, not every channel the process holds (a pass over 100,000 channels stopped
// the event loop for ~11 ms each second: benchmarks/results/idle-stall-2026-12-01.md).
import type { Channel } from './channel-registry.ts'

export class ExpiryWheel {
  readonly #due = new Map<number, Channel[]>()
  /** Seconds up to this one were taken. */
  #done: number

  constructor (nowSec: number) {
    this.#done = nowSec
  }

  /**
   * File `ch` under the second `expiresAt` (ms) falls in, unless it is filed under that second or
   * an earlier one already. A second already taken files it under the next one.
   */
  file (ch: Channel, expiresAt: number): void {
    const sec = Math.max(Math.ceil(expiresAt / 1000), this.#done + 1)
    if (ch.expiryAt !== 0 && ch.expiryAt <= sec) return
    // filed later before (a buffer refilled with older messages): that entry goes stale
    ch.expiryAt = sec
    const list = this.#due.get(sec)
    if (list === undefined) this.#due.set(sec, [ch])
    else list.push(ch)
  }

  /** Every channel filed under a second up to `nowSec`, once each, unfiled before it is handed over. */
  take (nowSec: number, each: (ch: Channel) => void): void {
    if (nowSec <= this.#done) return
    const from = this.#done + 1
    this.#done = nowSec
    if (nowSec - from + 1 <= this.#due.size) {
      for (let sec = from; sec <= nowSec; sec++) this.#take(sec, each)
      return
    }
    // the clock moved on by more seconds than are filed: by the filed ones
    for (const sec of [...this.#due.keys()]) if (sec <= nowSec) this.#take(sec, each)
  }

  #take (sec: number, each: (ch: Channel) => void): void {
    const list = this.#due.get(sec)
    if (list === undefined) return
    this.#due.delete(sec)
    for (let i = 0; i < list.length; i++) {
      const ch = list[i]!
      // filed again under another second since (stale here)
      if (ch.expiryAt !== sec) continue
      ch.expiryAt = 0
      each(ch)
    }
  }

  /** Channels filed, stale entries included (tests). */
  get filed (): number {
    let n = 0
    for (const list of this.#due.values()) n += list.length
    return n
  }
}
