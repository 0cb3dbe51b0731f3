// Ending a connection Parkline closes (a stream's end, a cut at the queue cap, a WebSocket close):
// the last bytes are written, then the socket gets a short linger to drain and close; a client
// that never reads is destroyed when it passes (by the core's one shared timer, Core.tick), so no
// fd and no kernel send queue outlive their subscriber by more than that. Until then the socket
// counts against the subscriber limit. One module-level 'close' listener per socket, no closure.
import type { Socket } from 'node:net'
import type { Core } from './core.ts'

/** How long an ended connection may take to drain before it is destroyed (ms). */
export const LINGER_MS = 10_000

const kLinger = Symbol('parkline.linger')
type LingerSocket = Socket & { [kLinger]?: Core }

/** Write `last` (if any), end, and destroy after LINGER_MS unless the peer closed first. */
export function endAndLinger (core: Core, socket: Socket, last?: Buffer | string, encoding?: BufferEncoding): void {
  const s = socket as LingerSocket
  if (s.destroyed) return
  if (!s.writable) {
    s.destroy()
    return
  }
  if (s[kLinger] === undefined) {
    s[kLinger] = core
    core.lingering.set(s, Date.now() + LINGER_MS)
    s.once('close', onClose)
  }
  if (last === undefined) s.end()
  else if (encoding !== undefined) s.end(last, encoding)
  else s.end(last)
}

/**
 * endAndLinger for a socket Node's HTTP parser let go of (an upgrade or CONNECT answered without
 * switching protocols): nobody reads it any more, so what comes is read and dropped, or the
 * client's FIN or reset would never be seen and the socket would stay open for good.
 */
export function endUnread (core: Core, socket: Socket, last?: Buffer | string): void {
  socket.resume()
  endAndLinger(core, socket, last)
}

/** The shared timer's sweep: destroy every ended socket whose linger is over. */
export function sweepLingering (lingering: Map<Socket, number>, now: number): void {
  for (const [socket, deadline] of lingering) {
    if (deadline > now) continue
    lingering.delete(socket)
    socket.destroy()
  }
}

/** Has Parkline ended this connection (a stream's end, a refusal)? Nothing read on it after is applied. */
export function lingers (socket: Socket): boolean {
  return (socket as LingerSocket)[kLinger] !== undefined
}

function onClose (this: LingerSocket): void {
  this[kLinger]?.lingering.delete(this)
  this[kLinger] = undefined
}
