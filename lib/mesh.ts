// The workers' mesh (`parkline serve --workers N`): every worker listens on a Unix socket of its
// own and dials every other one, so a publish goes from the worker that took it straight to the
// channel's owner, and the owner's messages straight to the workers with subscribers there — the
// primary is on no such path. Each direction is a stream of batches: one length-prefixed
// `v8.serialize` frame per peer per event-loop turn. A worker sends on the socket it dialed and
// reads on the ones it accepted.
//
// On Linux the sockets live in the abstract namespace (nothing on disk to clean up; gone with the
// process); elsewhere in the temp directory. A dialed peer that goes away is dialed again every
// 50 ms until it is back (the primary forks it again); what was sent to it meanwhile waits, bounded.
import net, { type Socket } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { unlinkSync } from 'node:fs'
import { deserialize, serialize } from 'node:v8'

export function meshPath (name: string, id: number): string {
  return process.platform === 'linux' ? `\0parkline-${name}-${id}` : path.join(os.tmpdir(), `parkline-${name}-${id}.sock`)
}

export interface MeshHandler<T> {
  /** A batch from peer `from`, in the order it sent them. */
  onBatch (from: number, batch: T[]): void
  /** Peer reachable (first time, or forked again): entries to send before anything queued. */
  onUp (peer: number): T[]
  /** Peer gone (its socket closed): what was asked of it will not be answered. */
  onDown (peer: number): void
  /** Peer connected to this worker and said who it is (first time, or forked again). */
  onHello (peer: number): void
}

/** Entries queued for a peer that is away, at most (beyond: `send` answers false). */
const QUEUE_CAP = 65_536
const REDIAL_MS = 50
/**
 * Bytes written to a peer that it has not read, at most: past this the peer is stuck (stopped,
 * swapping), and the link is cut — to this worker the peer is then gone (onDown) until a new
 * link to it is up, so a stuck worker cannot grow another one's memory without bound.
 */
const BACKLOG_CAP = 64 * 1024 * 1024

interface Link<T> {
  id: number
  socket: Socket | null
  up: boolean
  queue: T[]
  scheduled: boolean
  timer: NodeJS.Timeout | null
}

export class Mesh<T> {
  readonly me: number
  readonly n: number
  readonly #name: string
  readonly #handler: MeshHandler<T>
  readonly #links: Array<Link<T>> = []
  #server: net.Server | null = null
  #closed = false

  constructor (me: number, n: number, name: string, handler: MeshHandler<T>) {
    this.me = me
    this.n = n
    this.#name = name
    this.#handler = handler
    for (let i = 0; i < n; i++) this.#links.push({ id: i, socket: null, up: false, queue: [], scheduled: false, timer: null })
  }

  /** Listen, then dial every peer (each dial retries until the peer listens). */
  async start (): Promise<void> {
    const file = meshPath(this.#name, this.me)
    if (!file.startsWith('\0')) { try { unlinkSync(file) } catch {} }
    const server = net.createServer((socket) => { this.#accept(socket) })
    this.#server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(file, () => { server.off('error', reject); resolve() })
    })
    server.unref()
    for (const link of this.#links) if (link.id !== this.me) this.#dial(link)
  }

  isUp (peer: number): boolean {
    return this.#links[peer]!.up
  }

  /** Queue an entry for the peer (sent this turn, or when it is back). False when it cannot be queued. */
  send (peer: number, entry: T): boolean {
    const link = this.#links[peer]!
    if (!link.up && link.queue.length >= QUEUE_CAP) return false
    link.queue.push(entry)
    if (link.up && !link.scheduled) {
      link.scheduled = true
      setImmediate(flushLink, this, link)
    }
    return true
  }

  /** Write what is queued for the peer now, not at the end of the turn. */
  flushNow (peer: number): void {
    this.flush(this.#links[peer]!)
  }

  /** Drop what waits for a peer that is away (its requests were answered otherwise). */
  clearQueue (peer: number): T[] {
    const link = this.#links[peer]!
    const q = link.queue
    link.queue = []
    return q
  }

  close (): void {
    this.#closed = true
    this.#server?.close()
    for (const link of this.#links) {
      if (link.timer !== null) clearTimeout(link.timer)
      link.socket?.destroy()
    }
  }

  flush (link: Link<T>): void {
    link.scheduled = false
    if (!link.up || link.socket === null || link.queue.length === 0) return
    const batch = link.queue
    link.queue = []
    writeFrame(link.socket, batch)
    if (link.socket.writableLength > BACKLOG_CAP) link.socket.destroy()
  }

  #dial (link: Link<T>): void {
    link.timer = null
    if (this.#closed) return
    const socket = net.connect(meshPath(this.#name, link.id))
    socket.setNoDelay(true)
    let connected = false
    socket.on('connect', () => {
      connected = true
      link.socket = socket
      link.up = true
      // who is calling, then what the peer must hear first, then what waited
      writeFrame(socket, this.me)
      const first = this.#handler.onUp(link.id)
      if (first.length > 0) link.queue = first.concat(link.queue)
      this.flush(link)
    })
    socket.on('error', () => {})
    socket.on('close', () => {
      if (connected) {
        link.socket = null
        link.up = false
        if (!this.#closed) this.#handler.onDown(link.id)
      }
      if (!this.#closed) {
        link.timer = setTimeout(redial, REDIAL_MS, this, link)
        link.timer.unref()
      }
    })
    // a peer that stops reading must not pin this worker: the kernel buffer plus nothing here
    socket.on('data', () => {})
  }

  redial (link: Link<T>): void {
    this.#dial(link)
  }

  #accept (socket: Socket): void {
    socket.setNoDelay(true)
    let from = -1
    const reader = new FrameReader((value) => {
      if (from < 0) {
        from = typeof value === 'number' && value >= 0 && value < this.n ? value : -2
        if (from === -2) socket.destroy()
        else this.#handler.onHello(from)
        return
      }
      this.#handler.onBatch(from, value as T[])
    })
    socket.on('data', (chunk: Buffer) => { reader.push(chunk) })
    socket.on('error', () => {})
  }
}

function flushLink<T> (mesh: Mesh<T>, link: Link<T>): void {
  mesh.flush(link)
}

function redial<T> (mesh: Mesh<T>, link: Link<T>): void {
  mesh.redial(link)
}

function writeFrame (socket: Socket, value: unknown): void {
  const body = serialize(value)
  const head = Buffer.allocUnsafe(4)
  head.writeUInt32BE(body.length, 0)
  socket.cork()
  socket.write(head)
  socket.write(body)
  socket.uncork()
}

/** Length-prefixed frames out of a byte stream; a frame's chunks are joined once. */
class FrameReader {
  readonly #onFrame: (value: unknown) => void
  #chunks: Buffer[] = []
  #have = 0
  #need = -1

  constructor (onFrame: (value: unknown) => void) {
    this.#onFrame = onFrame
  }

  push (chunk: Buffer): void {
    this.#chunks.push(chunk)
    this.#have += chunk.length
    for (;;) {
      if (this.#need < 0) {
        if (this.#have < 4) return
        this.#need = this.#take(4).readUInt32BE(0)
      }
      if (this.#have < this.#need) return
      const body = this.#take(this.#need)
      this.#need = -1
      this.#onFrame(deserialize(body))
    }
  }

  #take (n: number): Buffer {
    let buf = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks, this.#have)
    const out = buf.subarray(0, n)
    buf = buf.subarray(n)
    this.#chunks = buf.length > 0 ? [buf] : []
    this.#have = buf.length
    return out
  }
}
