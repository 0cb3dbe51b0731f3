// multipart/mixed stream (PROTOCOL.md §8): one part per message, each ended by this connection's
// boundary line. The boundary differs per connection, so what is shared is the part itself (id
// lines, Content-Type, body: Message.multipartPart, built once); each subscriber writes it and its
// own `\r\n--<B>` in one corked write. Multiplexed ids and gap headers (§11a) print their own id
// lines in front of the shared rest of the part (Message.multipartBody, a view of the same bytes).
import { randomBytes } from 'node:crypto'
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import { corsLines } from '../lib/http.ts'
import type { Message } from '../lib/message.ts'
import { formatHttpDate } from '../lib/message-id.ts'
import type { Subscriber } from '../lib/subscriber.ts'
import { HttpStreamTransport } from './http-stream.ts'

const STATUS_LINE = 'HTTP/1.1 200 OK\r\nContent-Type: multipart/mixed; boundary='
const HEAD_REST = 'X-Accel-Buffering: no\r\nConnection: close\r\n'
const END = Buffer.from('--\r\n')
const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
export const BOUNDARY_LENGTH = 32
/** `\r\nLast-Modified: ` + IMF-fixdate (29) + `\r\nEtag: ` + `\r\n`, without the tag itself. */
const ID_LINES = 17 + 29 + 8 + 2

/** 32 random characters from [0-9A-Za-z] (Nchan also uses `.` and `/`, which need quoting). */
export function randomBoundary (): string {
  const bytes = randomBytes(BOUNDARY_LENGTH)
  let s = ''
  // 62 symbols: the modulo bias is irrelevant for a delimiter that only has to be unlikely
  for (let i = 0; i < BOUNDARY_LENGTH; i++) s += ALPHABET[bytes[i]! % 62]
  return s
}

export class MultipartTransport extends HttpStreamTransport {
  readonly name = 'multipart'
  protected readonly signalsGap = true
  protected endBytes (_status: number): Buffer {
    return END
  }

  detect (req: IncomingMessage): boolean {
    return acceptsMultipart(req.headers)
  }

  protected open (sub: Subscriber, origin: string | null): string {
    const b = randomBoundary()
    sub.boundary = '\r\n--' + b
    return STATUS_LINE + b + '\r\n' + HEAD_REST + corsLines(origin) + '\r\n--' + b
  }

  protected payload (_sub: Subscriber, msg: Message, _id: string): Buffer {
    return msg.multipartBody()
  }

  protected size (sub: Subscriber, _msg: Message, payload: Buffer, id: string): number {
    return ID_LINES + (id.length - id.indexOf(':') - 1) + payload.length + sub.boundary!.length
  }

  protected write (sub: Subscriber, msg: Message | null, payload: Buffer, id: string, gap: string | null): void {
    const socket = sub.socket
    socket.cork()
    if (msg !== null && gap === null && sub.channels.length === 1) {
      socket.write(msg.multipartPart())
    } else {
      const colon = id.indexOf(':')
      // (a multiplexed id may stay in a later second than its message's: Subscriber.advance)
      const time = Number(id.slice(0, colon))
      const date = msg !== null && msg.time === time ? msg.lastModified : formatHttpDate(time)
      let lines = '\r\nLast-Modified: ' + date + '\r\nEtag: ' + id.slice(colon + 1) + '\r\n'
      // one header line per channel that lost messages (lib/message-id.ts withGaps: the ids joined by a space)
      if (gap !== null) lines += 'Parkline-Gap: ' + gap.replaceAll(' ', '\r\nParkline-Gap: ') + '\r\n'
      socket.write(lines, 'latin1')
      socket.write(payload)
    }
    socket.write(sub.boundary!, 'latin1')
    socket.uncork()
  }
}

/** §4.1: an Accept that names multipart/mixed. */
export function acceptsMultipart (headers: IncomingHttpHeaders): boolean {
  const accept = headers.accept
  return accept !== undefined && accept.indexOf('multipart/mixed') !== -1
}
