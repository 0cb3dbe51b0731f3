// A published message and its wire frames, each built once and shared by every subscriber of a
// transport (pino's precomputation; ws `Sender.frame`). Frames are built lazily: a transport's
// frame exists only once a subscriber of that transport needed it.
import { formatHttpDate, formatId } from './message-id.ts'

const LF = 10
const DATA_PREFIX = Buffer.from('data: ')

export class Message {
  readonly time: number
  readonly tag: number
  readonly id: string
  readonly data: Buffer
  readonly contentType: string | null
  readonly event: string | null
  /** ms since the epoch when published, for expiry and delivery latency. */
  readonly publishedAt: number
  #sseData: Buffer | null
  #sseFrame: Buffer | null
  #lastModified: string | null

  constructor (time: number, tag: number, data: Buffer, contentType: string | null, event: string | null, publishedAt: number) {
    this.time = time
    this.tag = tag
    this.id = formatId(time, tag)
    this.data = data
    this.contentType = contentType
    this.event = event
    this.publishedAt = publishedAt
    this.#sseData = null
    this.#sseFrame = null
    this.#lastModified = null
  }

  /** `data: ` lines (split on LF only, §6) plus the blank line that ends the event. */
  sseData (): Buffer {
    if (this.#sseData === null) this.#sseData = frameSseData(this.data)
    return this.#sseData
  }

  /** The whole SSE event for a single-channel subscription: one Buffer for all of them. */
  sseFrame (): Buffer {
    if (this.#sseFrame === null) this.#sseFrame = Buffer.concat([Buffer.from(this.sseHead(this.id), 'latin1'), this.sseData()])
    return this.#sseFrame
  }

  /** `event:` and `id:` lines for an id (multiplexed subscriptions print their own vector). */
  sseHead (id: string): string {
    return this.event === null ? 'id: ' + id + '\n' : 'event: ' + this.event + '\nid: ' + id + '\n'
  }

  get lastModified (): string {
    if (this.#lastModified === null) this.#lastModified = formatHttpDate(this.time)
    return this.#lastModified
  }
}

export function frameSseData (data: Buffer): Buffer {
  let lines = 1
  for (let i = data.indexOf(LF); i !== -1; i = data.indexOf(LF, i + 1)) lines++
  // each piece keeps its bytes, loses its LF, gains "data: " + "\n"; one more "\n" ends the event
  const out = Buffer.allocUnsafe(data.length - (lines - 1) + lines * 7 + 1)
  let o = 0
  let start = 0
  for (;;) {
    const end = data.indexOf(LF, start)
    const stop = end === -1 ? data.length : end
    o += DATA_PREFIX.copy(out, o)
    o += data.copy(out, o, start, stop)
    out[o++] = LF
    if (end === -1) break
    start = end + 1
  }
  out[o++] = LF
  return out
}
