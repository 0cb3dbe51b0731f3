// Requests Node's HTTP parser reads behind a subscriber's request on the same connection
// (pipelined, often in the same packet). The connection is that subscriber's from its request on,
// so nothing behind it is applied or answered:
//   - behind a parked long-poll: that poll gets 400 and the connection closes (PROTOCOL.md §5);
//   - behind a stream (SSE, chunked, multipart): ignored, as every byte after a stream's request;
//   - behind a subscriber still being admitted (access control that waits): the connection goes;
//   - behind a stream Parkline ended or refused (at the subscriber limit, draining), its socket
//     lingering: ignored too.
// Node parses every request of a read before the first one's handler has run to the end, and
// would assign the connection to the next response once a stream's response let go of it
// (transports/detach.ts): answering that one breaks Node's own bookkeeping (an internal assertion
// that ends the process). So the standalone server drops such a request before anything else sees
// it (lib/server.ts), and the publisher and subscriber handlers drop it too (embedded, where the
// host app's other routes are its own). Embedded, a request Node answers itself (no Host, an
// unknown Expect) or a route of the host app answers, read behind a parked poll, is seen when the
// poll lets go of Node's parser (transports/detach.ts releaseParser): the poll gets its 400 then.
import type { ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Subscriber } from './subscriber.ts'
import { kAdmitting, kSubscriber } from './symbols.ts'
import { rejectIfParked } from '../transports/longpoll.ts'
import { lingers } from './linger.ts'

type OwnedSocket = Socket & { [kSubscriber]?: Subscriber, [kAdmitting]?: number, _httpMessage?: ServerResponse | null }

/**
 * Is this request behind a subscriber's on `socket`? If so it is dropped here (the parked poll
 * answered 400, the admitting connection destroyed, Node's response `res` let go of the socket)
 * and the caller must neither apply nor answer it.
 */
export function droppedBehindSubscriber (socket: Socket, res: ServerResponse | null): boolean {
  const s = socket as OwnedSocket
  if (s[kSubscriber] !== undefined) {
    rejectIfParked(socket)
  } else if ((s[kAdmitting] ?? 0) > 0) {
    socket.destroy()
  } else if (!lingers(socket)) {
    return false
  }
  // the connection is not this response's to write on
  if (res !== null && s._httpMessage === res) res.detachSocket(socket)
  return true
}

/**
 * A socket Node handed to 'upgrade' or 'connect' (its parser let go of it and stopped its flow)
 * that is not this request's to answer: behind a subscriber's request the subscriber keeps it and
 * it reads on; behind a response still being written no answer could go out in order (and Node
 * will not give a ServerResponse a socket another one holds), so it is destroyed. True when so.
 */
export function tunnelNotOurs (socket: Socket): boolean {
  if (droppedBehindSubscriber(socket, null)) {
    if (!socket.destroyed) socket.resume()
    return true
  }
  if ((socket as OwnedSocket)._httpMessage != null) {
    socket.destroy()
    return true
  }
  return false
}
