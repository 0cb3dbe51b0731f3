// The floor: the least a Node process can do to serve the benchmark's traffic. Plain node:net,
// one tiny HTTP/1.1 parser (Content-Length bodies, keep-alive, pipelining):
//   GET  /<anything>/<channel>  with `Accept: text/event-stream`: SSE head + `: hi`, then the
//                               socket is a subscriber of <channel>
//   GET  /<anything>/<channel>  otherwise: a long-poll. `If-None-Match: <n>` is the cursor (the
//                               n-th message of the channel was seen); the next one, if kept, is
//                               the answer at once, else the request parks; none: parks for the
//                               next message. The answer (`Etag: <n>`, a fixed `Last-Modified`,
//                               the body) is built once per message, one write per poll; the
//                               connection stays for the next poll
//   GET  /pub/<channel>         -> 404, empty body (the suite's readiness probe)
//   POST /<anything>/<channel>  -> `data: <body>\n\n` framed once, one write per SSE subscriber
//                                  socket, its long-poll answer to every parked poll, then 201
//                                  (had subscribers) or 202, empty body, kept alive
// No real ids, no expiry, 8 answers kept per long-poll channel, no backpressure handling: what
// every real server must add costs on top.
//
// With N > 1 (the suite's `floor2`): N such processes share PORT (`reusePort`, as Parkline's
// workers), and each publish is also sent to every other one over a Unix socket (one frame per
// publish, the frames of a turn in one write), which delivers it to its own subscribers: the least
// a multi-process Node server pays for a subscriber on another process. No owner, no order, no
// answer waits for the others.
//
// Two knobs for experiments on what a server's shape costs (benchmarks/micro/step-probe.sh; the
// suite never sets them): FLOOR_HOLD=1 holds a turn's SSE deliveries and publish answers to its
// end (setImmediate: the deliveries, then the answers), as Parkline does (long-polls still answer
// at once); FLOOR_WORK_US=<µs> spins that long in each publish before its deliveries, standing
// in for a real server's work per message.
//
//   node benchmarks/suite/floor-server.ts PORT [HOST [INDEX N DIR]]   prints "floor listening on PORT"
import net from 'node:net'
import path from 'node:path'

const SSE_HEAD = Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n' +
  'Cache-Control: no-cache\r\nConnection: close\r\n\r\n: hi\n\n', 'latin1')
const R201 = Buffer.from('HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n', 'latin1')
const R202 = Buffer.from('HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n', 'latin1')
const R404 = Buffer.from('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n', 'latin1')
const R405 = Buffer.from('HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n', 'latin1')
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1')
const DATA = Buffer.from('data: ', 'latin1')
const EOM = Buffer.from('\n\n', 'latin1')
const CONTENT_LENGTH = /\r\ncontent-length:[ \t]*(\d+)/i

const ACCEPT_SSE = /\r\naccept:[^\r]*text\/event-stream/i
const IF_NONE_MATCH = /\r\nif-none-match:[ \t]*(\d+)/i
const LP_KEPT = 8

const kBuf = Symbol('buf')
const kChannel = Symbol('channel')
const kParked = Symbol('parked')

type FloorSocket = net.Socket & { [kBuf]: Buffer | null, [kChannel]: Set<FloorSocket> | null, [kParked]: LpChannel | null }

const channels = new Map<string, Set<FloorSocket>>()

/** A long-poll channel: its last LP_KEPT answers (message `seq` is answers[seq - 1 - first]) and its parked polls. */
interface LpChannel { seq: number, first: number, answers: Buffer[], parked: FloorSocket[] }
const lpChannels = new Map<string, LpChannel>()

function lpChannel (id: string): LpChannel {
  let ch = lpChannels.get(id)
  if (ch === undefined) lpChannels.set(id, ch = { seq: 0, first: 0, answers: [], parked: [] })
  return ch
}

function lpAnswer (seq: number, body: Buffer): Buffer {
  const head = Buffer.from(`HTTP/1.1 200 OK\r\nLast-Modified: Thu, 01 Jan 2026 00:00:00 GMT\r\nEtag: ${seq}\r\nContent-Length: ${body.length}\r\n\r\n`, 'latin1')
  return Buffer.concat([head, body])
}

/** A poll with cursor `seen` (null: none): the next kept answer at once, or park. */
function poll (socket: FloorSocket, id: string, seen: number | null): void {
  const ch = lpChannel(id)
  if (seen !== null && seen < ch.seq) {
    // the next message after the cursor, or the oldest kept if the cursor fell out of the window
    socket.write(ch.answers[Math.max(0, seen - ch.first)]!)
    return
  }
  ch.parked.push(socket)
  socket[kParked] = ch
}

function publishLongpoll (id: string, body: Buffer): number {
  const ch = lpChannels.get(id)
  if (ch === undefined) return 0
  const answer = lpAnswer(++ch.seq, body)
  ch.answers.push(answer)
  if (ch.answers.length > LP_KEPT) { ch.answers.shift(); ch.first++ }
  const parked = ch.parked
  if (parked.length === 0) return 0
  ch.parked = []
  for (const s of parked) {
    s[kParked] = null
    s.write(answer)
  }
  return parked.length
}

function channelId (path: string): string {
  const q = path.indexOf('?')
  const p = q === -1 ? path : path.slice(0, q)
  return p.slice(p.lastIndexOf('/') + 1)
}

const HOLD = process.env.FLOOR_HOLD === '1'
const WORK_MS = Number(process.env.FLOOR_WORK_US ?? 0) / 1000
/** FLOOR_HOLD: this turn's writes, socket then bytes, deliveries before answers. */
const heldDeliveries: Array<net.Socket | Buffer> = []
const heldAnswers: Array<net.Socket | Buffer> = []
let flushQueued = false

function hold (list: Array<net.Socket | Buffer>, socket: net.Socket, bytes: Buffer): void {
  list.push(socket, bytes)
  if (!flushQueued) {
    flushQueued = true
    setImmediate(flushHeld)
  }
}

function flushHeld (): void {
  flushQueued = false
  for (const list of [heldDeliveries, heldAnswers]) {
    for (let i = 0; i < list.length; i += 2) (list[i] as net.Socket).write(list[i + 1] as Buffer)
    list.length = 0
  }
}

function publish (id: string, body: Buffer): number {
  if (WORK_MS > 0) for (const until = performance.now() + WORK_MS; performance.now() < until;);
  const subs = channels.get(id)
  if (subs === undefined || subs.size === 0) return 0
  const frame = Buffer.concat([DATA, body, EOM]) // serialized once, written to every subscriber
  if (HOLD) for (const s of subs) hold(heldDeliveries, s, frame)
  else for (const s of subs) s.write(frame)
  return subs.size
}

function onData (this: FloorSocket, chunk: Buffer): void {
  if (this[kChannel] !== null) return // a subscriber sends nothing more
  const buf = this[kBuf] === null ? chunk : Buffer.concat([this[kBuf], chunk])
  let pos = 0
  for (;;) {
    const end = buf.indexOf(HEAD_END, pos)
    if (end === -1) break
    const head = buf.toString('latin1', pos, end)
    const m = CONTENT_LENGTH.exec(head)
    const len = m === null ? 0 : Number(m[1])
    const bodyStart = end + 4
    if (buf.length < bodyStart + len) break
    pos = bodyStart + len
    const sp1 = head.indexOf(' ')
    const sp2 = head.indexOf(' ', sp1 + 1)
    const method = head.slice(0, sp1)
    const id = channelId(head.slice(sp1 + 1, sp2))
    if (method === 'GET' && head.startsWith('GET /pub/')) {
      // the publisher location: nothing to tell (the suite's readiness probe asks here)
      this.write(R404)
      continue
    }
    if (method === 'GET' && !ACCEPT_SSE.test(head)) {
      const m = IF_NONE_MATCH.exec(head)
      poll(this, id, m === null ? null : Number(m[1]))
      continue
    }
    if (method === 'GET') {
      let set = channels.get(id)
      if (set === undefined) channels.set(id, set = new Set())
      set.add(this)
      this[kChannel] = set
      this[kBuf] = null
      this.write(SSE_HEAD)
      return
    }
    if (method === 'POST' || method === 'PUT') {
      const body = buf.subarray(bodyStart, pos)
      const local = publish(id, body) + publishLongpoll(id, body)
      if (peers.length > 0) forward(id, body)
      const answer = local > 0 || peers.length > 0 ? R201 : R202
      if (HOLD) hold(heldAnswers, this, answer)
      else this.write(answer)
    }
    else this.write(R405)
  }
  this[kBuf] = pos === buf.length ? null : Buffer.from(buf.subarray(pos))
}

function onClose (this: FloorSocket): void {
  const set = this[kChannel]
  if (set !== null) set.delete(this)
  const lp = this[kParked]
  if (lp !== null) lp.parked = lp.parked.filter((s) => s !== this)
  this[kParked] = null
  this[kChannel] = null
  this[kBuf] = null
}

function onError (): void {}

function onConnection (socket: net.Socket): void {
  const s = socket as FloorSocket
  s[kBuf] = null
  s[kChannel] = null
  s[kParked] = null
  s.on('data', onData)
  s.on('close', onClose)
  s.on('error', onError)
}

// the other processes (N > 1): a frame is u32 id length, u32 body length, id, body
const peers: net.Socket[] = []
let corked = false

function uncorkPeers (): void {
  corked = false
  for (const p of peers) p.uncork()
}

function forward (id: string, body: Buffer): void {
  const idBytes = Buffer.from(id, 'latin1')
  const head = Buffer.allocUnsafe(8)
  head.writeUInt32LE(idBytes.length, 0)
  head.writeUInt32LE(body.length, 4)
  const frame = Buffer.concat([head, idBytes, body])
  if (!corked) {
    corked = true
    for (const p of peers) p.cork()
    setImmediate(uncorkPeers)
  }
  for (const p of peers) p.write(frame)
}

function onPeerConnection (socket: net.Socket): void {
  let pending: Buffer | null = null
  socket.on('error', onError)
  socket.on('data', (chunk: Buffer) => {
    const buf = pending === null ? chunk : Buffer.concat([pending, chunk])
    let pos = 0
    while (buf.length - pos >= 8) {
      const idLen = buf.readUInt32LE(pos)
      const bodyLen = buf.readUInt32LE(pos + 4)
      const end = pos + 8 + idLen + bodyLen
      if (buf.length < end) break
      const id = buf.toString('latin1', pos + 8, pos + 8 + idLen)
      const body = buf.subarray(pos + 8 + idLen, end)
      publish(id, body)
      publishLongpoll(id, body)
      pos = end
    }
    pending = pos === buf.length ? null : Buffer.from(buf.subarray(pos))
  })
}

async function connectPeer (file: string): Promise<net.Socket> {
  for (let i = 0; i < 200; i++) {
    try {
      const s = net.connect(file)
      await new Promise<void>((resolve, reject) => { s.once('connect', resolve); s.once('error', reject) })
      s.on('error', onError)
      return s
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
  throw new Error('floor: no peer at ' + file)
}

const port = Number(process.argv[2] ?? 0)
const host = process.argv[3] ?? '127.0.0.1'
const index = Number(process.argv[4] ?? 0)
const count = Number(process.argv[5] ?? 1)
const dir = process.argv[6] ?? ''
const server = net.createServer({ noDelay: true }, onConnection)

async function main (): Promise<void> {
  if (count > 1) {
    const mine = net.createServer(onPeerConnection)
    await new Promise<void>((resolve) => mine.listen(path.join(dir, `floor-${index}.sock`), resolve))
    for (let i = 0; i < count; i++) if (i !== index) peers.push(await connectPeer(path.join(dir, `floor-${i}.sock`)))
  }
  server.listen({ port, host, backlog: 4096, reusePort: count > 1 }, () => {
    process.stdout.write(`floor listening on ${(server.address() as net.AddressInfo).port}\n`)
  })
}
main().catch((err: unknown) => { process.stderr.write(String(err) + '\n'); process.exit(1) })
process.on('SIGTERM', () => process.exit(0))
