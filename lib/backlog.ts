// Frames of one streaming subscriber not yet handed to its socket: exists only while the socket is
// backed up (EXTENSION e). Shared by the HTTP streams (transports/http-stream.ts) and WebSocket, with the one
// implementation of the queue cap and its policies (enqueue).
import type { Core } from './core.ts'
import { unpinned, type Message } from './message.ts'
import { withGaps } from './message-id.ts'
import type { Subscriber } from './subscriber.ts'

export class Backlog {
  frames: Buffer[]
  ids: string[]
  msgs: Message[]
  /** Bytes each frame takes on the wire (a transport may add per-connection framing). */
  sizes: number[]
  bytes: number
  /** Id of the last frame handed to the socket: the `requested` of a drop gap. */
  lastSentId: string
  gapFrom: string | null
  constructor (lastSentId: string) {
    this.frames = []
    this.ids = []
    this.msgs = []
    this.sizes = []
    this.bytes = 0
    this.lastSentId = lastSentId
    this.gapFrom = null
  }
}

/**
 * A drop gap a subscriber's queue still owes with no frame left to carry it (every frame of it was
 * dropped): taken, for the next message written to ride with. Null when none is owed. It goes
 * before the gap signals the message has of its own (its `requested` is the older), not instead.
 */
export function owedGap (sub: Subscriber): string | null {
  const backlog = sub.backlog
  if (backlog === null || backlog.frames.length > 0 || backlog.gapFrom === null) return null
  sub.backlog = null
  return backlog.gapFrom
}

export const QUEUED = 0
export const OVERFLOW = 1

/**
 * Queue a live frame on a backed-up subscriber (§11e). A message overflows when Node's buffered
 * bytes + the backlog + its size pass queueCap and something is already queued. Policy
 * `disconnect` (or a transport that cannot signal a gap): the subscriber is unregistered and
 * OVERFLOW returned — the caller writes its notice and closes. `drop-oldest`: unsent frames are
 * dropped until the new one fits, or all of them when Node alone holds most of the cap: the new
 * one is always queued (so a backlog holds at most a cap, or one message), and the next frame
 * delivered carries a gap from the last id written. O(1), or O(dropped); nobody else is touched.
 * `gap` is a live gap (§11a) to ride on the first queued frame.
 */
export function enqueue (core: Core, sub: Subscriber, before: string | null, msg: Message, frame: Buffer, id: string, size: number, gap: string | null, canSignal: boolean): number {
  const socket = sub.socket
  let backlog = sub.backlog as Backlog | null
  if (backlog === null) backlog = sub.backlog = new Backlog(before ?? id)
  // a live gap rides on the first frame written; several (other channels') ride together
  backlog.gapFrom = withGaps(backlog.gapFrom, gap)
  const cap = core.opts.queueCap
  if (socket.writableLength + backlog.bytes + size > cap && (backlog.frames.length > 0 || socket.writableLength > 0)) {
    if (core.opts.queuePolicy === 'disconnect' || !canSignal) {
      core.stats.overflowDisconnect++
      core.subscriberCut('disconnect')
      core.unregister(sub)
      sub.backlog = null
      return OVERFLOW
    }
    let dropped = 0
    while (backlog.frames.length > 0 && socket.writableLength + backlog.bytes + size > cap) {
      backlog.bytes -= backlog.sizes.shift()!
      backlog.frames.shift()
      backlog.ids.shift()
      backlog.msgs.shift()
      dropped++
    }
    // the newest is kept whatever Node alone holds: dropping it too would leave the subscriber
    // behind for as long as its channel stays quiet, and the drop's signal with no frame to ride on
    if (dropped > 0) {
      core.stats.overflowDropOldest++
      core.subscriberCut('drop-oldest')
      core.stats.messagesDropped += dropped
      if (backlog.gapFrom === null) {
        backlog.gapFrom = backlog.lastSentId
        core.stats.gap('dropped')
      }
    }
  }
  // queued bytes stay until the client reads: none of them a view that keeps a shared slab (lib/message.ts)
  const replaced = msg.keep()
  backlog.frames.push(frame === replaced ? msg.sseFrame() : unpinned(frame))
  backlog.ids.push(id)
  backlog.msgs.push(msg)
  backlog.sizes.push(size)
  backlog.bytes += size
  return QUEUED
}
