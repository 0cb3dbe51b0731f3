// Every live subscriber in one array: O(1) add and swap-with-last removal, counts per transport,
// and one loop for the shared timer's sweeps (keepalive, deadlines, shutdown waves).
import type { Subscriber } from './subscriber.ts'

export class ConnectionTable {
  readonly subs: Subscriber[] = []
  readonly counts: number[]

  constructor (transports: number) {
    this.counts = new Array<number>(transports).fill(0)
  }

  get size (): number { return this.subs.length }

  add (sub: Subscriber): void {
    sub.tableIndex = this.subs.length
    this.subs.push(sub)
    this.counts[sub.transport.index]!++
  }

  remove (sub: Subscriber): void {
    const i = sub.tableIndex
    if (i < 0) return
    const last = this.subs.length - 1
    if (i !== last) {
      const moved = this.subs[last]!
      this.subs[i] = moved
      moved.tableIndex = i
    }
    this.subs.pop()
    sub.tableIndex = -1
    this.counts[sub.transport.index]!--
  }
}
