// The workers' mesh (`parkline serve --workers N`): every worker listens on a Unix socket of its
// own and dials every other one, so a publish goes from the worker that took it straight to the
// channel's owner, and the owner's messages straight to the workers with subscribers there — the
// primary is on no such path. Each direction is a stream of batches: one length-prefixed frame
// per peer per event-loop turn (lib/mesh-codec.ts: the entries every publish makes written by
// hand, any other by `v8.serialize`). A worker sends on the socket it dialed and reads on the
// ones it accepted.
//
// The sockets are files in a directory the primary creates for its workers (mkdtemp: mode 0700,
// so no other user can connect to them or take their names) and removes when it exits. A
// connection first sends a fixed 44-byte hello — magic, worker id, pid and the 32-byte key the
// primary gave its workers (in their environment) — checked with timingSafeEqual before one byte of it is
// deserialized; anything else is cut, and so is a connection that has not said hello within 5 s
// (at most 16 such at a time). A dialed peer that goes away is dialed again every
// 50 ms until it is back (the primary forks it again); what was sent to it meanwhile waits, bounded.
import net, { type Socket } from 'node:net'
import path from 'node:path'
import { rmdirSync, unlinkSync } from 'node:fs'
import { timingSafeEqual } from 'node:crypto'
import { decodeBatch, encodeBatch } from './mesh-codec.ts'
import { bytesTaken } from './subscriber.ts'

/** Worker `id`'s socket in the primary's private directory. */
export function meshPath (dir: string, id: number): string {
  return path.join(dir, `${id}.sock`)
}

export interface MeshHandler<T> {
  /** A batch from peer `from`, in the order it sent them. */
  onBatch (from: number, batch: T[]): void
  /** Peer reachable (first time, or forked again): entries to send before anything queued. */
  onUp (peer: number): T[]
  /** Peer gone (its socket closed): what was asked of it will not be answered. */
  onDown (peer: number): void
  /**
   * Peer (`pid`, from its hello: not a newer incarnation) has taken none of the bytes written to
   * it over a whole STUCK_MS check (stopped, swapping, or only waiting for a core on a host with
   * more busy processes than cores): said again at each check it still takes none. The primary
   * judges it (lib/cluster.ts): a peer that sends it nothing either is judged by its silence.
   * `full`: what must go to the peer no longer fits its queue (its replicas would miss it): it is
   * ended whatever it is doing. Its death heals both sides (onDown, then onUp).
   */
  onStuck (peer: number, pid: number, full: boolean): void
}

/** Entries, and their bytes, queued for a peer that is away, at most (beyond: `send` answers false). */
const QUEUE_CAP = 65_536
const QUEUE_BYTES_CAP = 64 * 1024 * 1024
const REDIAL_MS = 50
/**
 * Bytes written to a peer that it has not read, at most: past this, writing pauses until the
 * socket drains (what is sent meanwhile queues, capped as for a peer that is away). A peer that
 * took none of the bytes waiting for it over a whole STUCK_MS check is reported (onStuck) for the
 * primary to judge, and again at each check it still takes none; one whose queue is full while
 * paused is reported `full` and ended. So a stuck worker cannot grow another one's memory without
 * bound, nothing sent to it is dropped while it lives on, and one that is only slow (busy with a
 * large fan-out, or starved of a core) but reads again is not ended for it: writing resumes once
 * it takes bytes again.
 */
const BACKLOG_CAP = 64 * 1024 * 1024
export const STUCK_MS = 5000
/** Connections that have not said hello yet, at most. */
const UNAUTH_CAP = 16
// "PKM3": a worker forked from newer files (a frame format, or entries, of its own) and an older
// one cut each other at hello instead of misreading each other's frames (3: a user's owner
// answers for maxSubscribersPerUser)
const MAGIC = 0x504b4d33
const KEY_BYTES = 32
/** magic, worker id, pid, key */
const HELLO_BYTES = 12 + KEY_BYTES
const HELLO_MS = 5000

export interface Link<T> {
  id: number
  socket: Socket | null
  up: boolean
  queue: T[]
  /** Bytes of what is queued while the peer is away (as the caller counted them). */
  queuedBytes: number
  scheduled: boolean
  timer: NodeJS.Timeout | null
  /** Past BACKLOG_CAP: nothing more is written on this connection until it drains. */
  stuck: boolean
  /** Bytes the peer had taken at the last check that found bytes waiting for it (-1: none waited). */
  taken: number
  /**
   * When onStuck(full) was last called for this connection (performance.now(); 0: never): its
   * peer is being ended, nothing more is written to it.
   */
  reported: number
  /** Waiting for what is in `queue` now to be handed to the kernel (Mesh.written). */
  waiting: Array<() => void>
  /**
   * Waiting for the last batch written, while part of it is still in Node's buffer: its write's
   * callback (which runs once the socket has handed it all to the kernel) resolves them.
   */
  tail: Array<() => void> | null
  /** Counts this link's connections and losses: an answer meant for one connection's peer is not sent on the next (Mesh.epoch). */
  epoch: number
}

export class Mesh<T> {
  readonly me: number
  readonly n: number
  readonly #dir: string
  readonly #key: Buffer
  readonly #handler: MeshHandler<T>
  readonly #links: Array<Link<T>> = []
  #unauth = 0
  /** When checkProgress last ran (performance.now() ms; 0: not yet). */
  #checkedAt = 0
  readonly #pids: number[] = []
  /** Per peer, the socket it dialed to this worker (the one it said hello on). */
  readonly #accepted: Array<Socket | null> = []

  /** `key`: 32 bytes every worker of this primary shares (PARKLINE_MESH_KEY), proof of a peer. */
  constructor (me: number, n: number, dir: string, key: Buffer, handler: MeshHandler<T>) {
    if (key.length !== KEY_BYTES) throw new Error(`mesh key must be ${KEY_BYTES} bytes`)
    this.me = me
    this.n = n
    this.#dir = dir
    this.#key = key
    this.#handler = handler
    for (let i = 0; i < n; i++) { this.#pids.push(0); this.#accepted.push(null) }
    for (let i = 0; i < n; i++) this.#links.push({ id: i, socket: null, up: false, queue: [], queuedBytes: 0, scheduled: false, timer: null, stuck: false, taken: -1, reported: 0, waiting: [], tail: null, epoch: 0 })
  }

  /**
   * Every STUCK_MS: a peer with bytes waiting for it that has taken none since the last check
   * (a whole interval, bytes waiting at both ends of it) is stuck.
   */
  checkProgress (): void {
    const now = performance.now()
    // this worker's own loop stalled past the interval (a long turn, a pause of the process): it
    // could not write meanwhile, so the interval says nothing of its peers
    const late = this.#checkedAt > 0 && now - this.#checkedAt > STUCK_MS * 1.5
    this.#checkedAt = now
    let suspects: Array<Link<T>> | null = null
    for (const link of this.#links) {
      const socket = link.socket
      if (socket === null || !link.up || socket.writableLength === 0) {
        link.taken = -1
        continue
      }
      const taken = bytesTaken(socket)
      // a peer that took bytes since the last check reads (a report about it is not repeated)
      if (late || taken !== link.taken) link.taken = taken
      else (suspects ??= []).push(link)
    }
    // confirmed after this turn's poll phase (setImmediate runs after it): what the peer read
    // while timers ran first has been written by then
    if (suspects !== null) setImmediate(confirmStuck, this, suspects)
  }

  /** checkProgress's suspects: stuck if they still took nothing. */
  confirmStuck (links: Array<Link<T>>): void {
    for (const link of links) {
      const socket = link.socket
      if (socket === null || !link.up || socket.writableLength === 0) {
        link.taken = -1
        continue
      }
      const taken = bytesTaken(socket)
      if (taken === link.taken) this.#stuck(link, false)
      else link.taken = taken
    }
  }

  /** Listen, then dial every peer (each dial retries until the peer listens). */
  async start (): Promise<void> {
    const file = meshPath(this.#dir, this.me)
    // the socket of this worker's previous life, if it died
    try { unlinkSync(file) } catch {}
    const server = net.createServer((socket) => { this.#accept(socket) })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(file, () => { server.off('error', reject); resolve() })
    })
    server.unref()
    setInterval(checkProgress, STUCK_MS, this).unref()
    // this worker's socket goes with it
    process.once('exit', () => { try { unlinkSync(file) } catch {} })
    for (const link of this.#links) if (link.id !== this.me) this.#dial(link)
  }

  /**
   * The primary is gone (killed: it could not remove the directory itself): this worker's socket
   * goes now, and the directory with the last worker. Never while the primary lives: it forks
   * workers again into the same directory.
   */
  primaryGone (): void {
    try { unlinkSync(meshPath(this.#dir, this.me)) } catch {}
    if (path.basename(this.#dir).startsWith('parkline-')) { try { rmdirSync(this.#dir) } catch {} }
  }

  isUp (peer: number): boolean {
    return this.#links[peer]!.up
  }

  /**
   * Queue an entry for the peer (sent this turn, or when it is back). False when it cannot be
   * queued (the peer is away or stuck and the queue is full). `bytes`: its payload, for the cap.
   */
  send (peer: number, entry: T, bytes = 0): boolean {
    const link = this.#links[peer]!
    if (!link.up || link.stuck) {
      if (link.queue.length >= QUEUE_CAP || link.queuedBytes + bytes > QUEUE_BYTES_CAP) {
        // a live peer that cannot take what it must have (a message for its replica) is ended
        if (link.stuck) this.#stuck(link, true)
        return false
      }
      link.queuedBytes += bytes
    }
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

  /**
   * Resolves once what was sent to `peer` so far has been handed to the kernel: in the peer's
   * receive queue (a Unix socket has no send buffer of its own), where it stays if this worker
   * dies right after. Null when there is nothing to wait for: the peer is away (what it held is
   * gone, or resent when it is back) or it all was written already. Else at this turn's flush, or
   * when the socket took part of the last batch, once it has taken the rest (that write's
   * callback). A publish's answer waits for this (lib/cluster.ts).
   */
  written (peer: number): Promise<void> | null {
    const link = this.#links[peer]!
    const socket = link.socket
    if (!link.up || socket === null) return null
    if (link.queue.length > 0) return new Promise((resolve) => { link.waiting.push(resolve) })
    const tail = link.tail
    if (tail === null || socket.writableLength === 0) return null
    return new Promise((resolve) => { tail.push(resolve) })
  }

  /** The current connection to `peer`: it changes when the link goes and when it is back. */
  epoch (peer: number): number {
    return this.#links[peer]!.epoch
  }

  /** The link went (or its queue was dropped): nothing more to wait for on it. */
  #settleAll (link: Link<T>): void {
    const w = link.waiting
    const tail = link.tail
    link.waiting = []
    link.tail = null
    settle(w)
    if (tail !== null) settle(tail)
  }

  /** Drop what waits for a peer that is away (its requests were answered otherwise). */
  clearQueue (peer: number): void {
    const link = this.#links[peer]!
    link.queue = []
    link.queuedBytes = 0
    this.#settleAll(link)
  }

  flush (link: Link<T>): void {
    link.scheduled = false
    if (!link.up || link.stuck || link.socket === null || link.queue.length === 0) return
    const batch = link.queue
    link.queue = []
    link.queuedBytes = 0
    const socket = link.socket
    // this batch's waiters, and any that come while part of it is still in Node's buffer (the
    // callback runs once the socket has handed it all to the kernel, or with an error when it is
    // destroyed: either way nothing is left to wait for)
    const tail = link.waiting
    link.waiting = []
    link.tail = tail
    writeFrame(socket, batch, () => {
      if (link.tail === tail) link.tail = null
      settle(tail)
    })
    if (socket.writableLength <= BACKLOG_CAP) return
    link.stuck = true
    socket.once('drain', () => {
      if (link.socket !== socket) return
      // it read it all, yet what did not fit its queue was dropped and it lives (the primary
      // ended no one: a report naming an incarnation it no longer has): the link is cut, and both
      // sides resend what they hold of each other's channels once it is back (onDown, onUp)
      if (link.reported > 0) {
        socket.destroy()
        return
      }
      // it read it all: writing resumes
      link.stuck = false
      this.flush(link)
    })
  }

  /** Tell the primary: a peer that took nothing over a check (judged there), or one that must be ended (`full`). */
  #stuck (link: Link<T>, full: boolean): void {
    if (!link.up) return
    if (full) {
      // once a check at most (every send past the cap lands here)
      const now = performance.now()
      if (link.reported > 0 && now - link.reported < STUCK_MS) return
      link.reported = now
    } else if (link.reported > 0) return
    this.#handler.onStuck(link.id, this.#pids[link.id]!, full)
  }

  #dial (link: Link<T>): void {
    link.timer = null
    const socket = net.connect(meshPath(this.#dir, link.id))
    socket.setNoDelay(true)
    let connected = false
    socket.on('connect', () => {
      connected = true
      link.socket = socket
      link.epoch++
      link.up = true
      link.stuck = false
      link.taken = -1
      link.reported = 0
      link.queuedBytes = 0
      // who is calling, then what the peer must hear first, then what waited
      const hello = Buffer.allocUnsafe(HELLO_BYTES)
      hello.writeUInt32BE(MAGIC, 0)
      hello.writeUInt32BE(this.me, 4)
      hello.writeUInt32BE(process.pid, 8)
      this.#key.copy(hello, 12)
      socket.write(hello)
      const first = this.#handler.onUp(link.id)
      if (first.length > 0) link.queue = first.concat(link.queue)
      this.flush(link)
    })
    socket.on('error', () => {})
    socket.on('close', () => {
      if (connected) {
        link.socket = null
        link.epoch++
        link.up = false
        link.stuck = false
        link.reported = 0
        this.#settleAll(link)
        // a link is both directions: the peer's connection to this worker goes too (nothing more
        // is read from it), so the peer sees this one go (onDown) and both resync when they are back
        this.#accepted[link.id]?.destroy()
        this.#handler.onDown(link.id)
      }
      link.timer = setTimeout(redial, REDIAL_MS, this, link)
      link.timer.unref()
    })
    // a peer that stops reading must not pin this worker: the kernel buffer plus nothing here
    socket.on('data', () => {})
  }

  redial (link: Link<T>): void {
    this.#dial(link)
  }

  #accept (socket: Socket): void {
    socket.on('error', () => {})
    if (this.#unauth >= UNAUTH_CAP) { socket.destroy(); return }
    this.#unauth++
    let waiting = true
    const said = (): void => { if (waiting) { waiting = false; this.#unauth-- } }
    socket.setNoDelay(true)
    let from = -1
    let head: Buffer | null = null
    const reader = new FrameReader((batch) => { this.#handler.onBatch(from, batch as T[]) })
    const timer = setTimeout(() => { socket.destroy() }, HELLO_MS)
    timer.unref()
    socket.on('close', () => {
      clearTimeout(timer)
      said()
      // the peer's connection to this worker went: so does this worker's to the peer (see #dial)
      if (from >= 0 && this.#accepted[from] === socket) {
        this.#accepted[from] = null
        this.#links[from]!.socket?.destroy()
      }
    })
    socket.on('data', (chunk: Buffer) => {
      if (from >= 0) {
        if (!reader.push(chunk)) socket.destroy()
        return
      }
      head = head === null ? chunk : Buffer.concat([head, chunk])
      if (head.length < HELLO_BYTES) return
      clearTimeout(timer)
      said()
      const id = head.readUInt32BE(4)
      if (head.readUInt32BE(0) !== MAGIC || id >= this.n || id === this.me || !timingSafeEqual(head.subarray(12, HELLO_BYTES), this.#key)) {
        socket.destroy()
        return
      }
      from = id
      // a newer connection from the same peer replaces the older one
      const older = this.#accepted[id]
      this.#accepted[id] = socket
      older?.destroy()
      this.#pids[id] = head.readUInt32BE(8)
      const rest = head.subarray(HELLO_BYTES)
      head = null
      if (rest.length > 0 && !reader.push(rest)) socket.destroy()
    })
  }
}

function checkProgress<T> (mesh: Mesh<T>): void {
  mesh.checkProgress()
}

function confirmStuck<T> (mesh: Mesh<T>, links: Array<Link<T>>): void {
  mesh.confirmStuck(links)
}

/** Resolve every waiter in `fns`. */
function settle (fns: Array<() => void>): void {
  for (let i = 0; i < fns.length; i++) fns[i]!()
}

function flushLink<T> (mesh: Mesh<T>, link: Link<T>): void {
  mesh.flush(link)
}

function redial<T> (mesh: Mesh<T>, link: Link<T>): void {
  mesh.redial(link)
}

function writeFrame (socket: Socket, batch: readonly unknown[], done?: () => void): void {
  const frame = encodeBatch(batch, 4)
  frame.writeUInt32BE(frame.length - 4, 0)
  socket.write(frame, done)
}

/** Length-prefixed frames out of a byte stream; a frame's chunks are joined once. */
class FrameReader {
  readonly #onFrame: (batch: unknown[]) => void
  #chunks: Buffer[] = []
  #have = 0
  #need = -1

  constructor (onFrame: (batch: unknown[]) => void) {
    this.#onFrame = onFrame
  }

  /** False when a frame does not parse (the connection is cut: what follows cannot be framed). */
  push (chunk: Buffer): boolean {
    this.#chunks.push(chunk)
    this.#have += chunk.length
    for (;;) {
      if (this.#need < 0) {
        if (this.#have < 4) return true
        this.#need = this.#take(4).readUInt32BE(0)
      }
      if (this.#have < this.#need) return true
      const body = this.#take(this.#need)
      this.#need = -1
      let batch: unknown[]
      try {
        batch = decodeBatch(body)
      } catch {
        return false
      }
      this.#onFrame(batch)
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
