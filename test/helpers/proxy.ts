// A small TCP proxy (node:net) in front of a test server, to put clients behind the networks they
// meet in the wild: it can refuse WebSocket upgrades (502), black-hole them (never answer), mute
// them (pass the 101, then swallow every frame), strip their subprotocol (the server upgrades to
// plain WebSocket: frames with no ids), freeze open connections (a dead path), pass
// answers at a slow link's rate, hold back event-stream responses like a
// buffering reverse proxy, and drop every connection at once. It reads just enough HTTP/1.1 to
// see request heads (Content-Length bodies are skipped) and records the request and response
// heads it forwarded, so tests can check headers such as Last-Event-ID and Retry-After.
import net from 'node:net'
import { once } from 'node:events'

export type WebSocketMode = 'pass' | 'refuse' | 'blackhole' | 'mute' | 'strip'
export type EventStreamMode = 'pass' | 'buffer'

export interface ProxyModes {
  websocket: WebSocketMode
  eventsource: EventStreamMode
}

/** Bytes a buffering proxy holds before it lets an event stream through (nginx: 4k–8k per buffer). */
const BUFFER_LIMIT = 64 * 1024
const MAX_RECORDED = 2000

interface Pair { client: net.Socket, upstream: net.Socket, frozen: boolean }

export class TestProxy {
  readonly port: number
  readonly server: net.Server
  modes: ProxyModes
  /** Request heads forwarded (or refused), in arrival order, as latin1 text. */
  readonly requests: string[] = []
  /** Response heads seen from the upstream server. */
  readonly responses: string[] = []
  /** Bytes passed from the upstream server to clients. */
  bytesDown = 0
  /** Bytes per second passed to each client (a slow link); 0: as fast as they come. */
  downRate = 0
  readonly #pairs = new Set<Pair>()

  private constructor (server: net.Server, port: number, modes: ProxyModes) {
    this.server = server
    this.port = port
    this.modes = modes
  }

  static async start (targetPort: number, modes: Partial<ProxyModes> = {}): Promise<TestProxy> {
    const server = net.createServer()
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const proxy = new TestProxy(server, (server.address() as net.AddressInfo).port, { websocket: 'pass', eventsource: 'pass', ...modes })
    server.on('connection', (client) => { proxy.#accept(client, targetPort) })
    return proxy
  }

  get base (): string {
    return `http://127.0.0.1:${this.port}`
  }

  get openConnections (): number {
    return this.#pairs.size
  }

  #record (list: string[], head: string): void {
    if (list.length < MAX_RECORDED) list.push(head)
  }

  #accept (client: net.Socket, targetPort: number): void {
    const upstream = net.connect(targetPort, '127.0.0.1')
    const pair: Pair = { client, upstream, frozen: false }
    this.#pairs.add(pair)
    client.setNoDelay(true)
    upstream.setNoDelay(true)
    // a slow link (downRate): bytes waiting, passed a tenth of the rate every 100 ms
    let trickle: Buffer[] = []
    let ticking: NodeJS.Timeout | null = null
    let endAfter = false
    const pump = (): void => {
      let budget = Math.max(1, Math.floor(this.downRate / 10))
      while (trickle.length > 0 && budget > 0) {
        const b = trickle[0]!
        const take = Math.min(b.length, budget)
        if (!client.destroyed) client.write(b.subarray(0, take))
        budget -= take
        if (take === b.length) trickle.shift()
        else trickle[0] = b.subarray(take)
      }
      if (trickle.length > 0) return
      clearInterval(ticking!)
      ticking = null
      if (endAfter) client.end()
    }
    const end = (): void => {
      if (ticking !== null) clearInterval(ticking)
      ticking = null
      trickle = []
      this.#pairs.delete(pair)
      client.destroy()
      upstream.destroy()
    }
    client.on('error', end)
    upstream.on('error', end)
    client.on('close', end)

    // client → upstream: find request heads
    let inBuf: Buffer = Buffer.alloc(0)
    let bodyLeft = 0
    let raw = false // after an upgrade or a chunked request body: pass bytes through unparsed
    let swallow = false // black-holed: read and forget
    // upstream → client
    let expectHead = 0
    let outHead = ''
    let mute = false
    let buffering = false
    let held: Buffer[] = []
    let heldBytes = 0

    client.on('data', (d: Buffer) => {
      if (swallow || pair.frozen) return
      if (raw) { upstream.write(d); return }
      inBuf = inBuf.length === 0 ? d : Buffer.concat([inBuf, d])
      while (inBuf.length > 0) {
        if (bodyLeft > 0) {
          const n = Math.min(bodyLeft, inBuf.length)
          upstream.write(inBuf.subarray(0, n))
          inBuf = inBuf.subarray(n)
          bodyLeft -= n
          continue
        }
        const end = inBuf.indexOf('\r\n\r\n')
        if (end === -1) {
          if (inBuf.length > 65536) { raw = true; upstream.write(inBuf); inBuf = Buffer.alloc(0) }
          return
        }
        const head = inBuf.subarray(0, end + 4).toString('latin1')
        inBuf = inBuf.subarray(end + 4)
        this.#record(this.requests, head)
        const lower = head.toLowerCase()
        const isWs = /\r\nupgrade: *websocket/.test(lower)
        const isSse = /\r\naccept:[^\r]*text\/event-stream/.test(lower)
        if (isWs && this.modes.websocket === 'refuse') {
          client.end('HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 26\r\nConnection: close\r\n\r\nWebSocket is not supported')
          upstream.destroy()
          return
        }
        if (isWs && this.modes.websocket === 'blackhole') {
          // the request never reaches the server, and no answer ever comes back
          swallow = true
          return
        }
        if (isWs && this.modes.websocket === 'mute') mute = true
        if (isSse && this.modes.eventsource === 'buffer') buffering = true
        expectHead++
        // a proxy that does not know the header drops it: the server picks no subprotocol
        upstream.write(isWs && this.modes.websocket === 'strip' ? head.replace(/\r\nsec-websocket-protocol:[^\r]*/i, '') : head)
        if (isWs) { raw = true; if (inBuf.length > 0) upstream.write(inBuf); inBuf = Buffer.alloc(0); return }
        const cl = /\r\ncontent-length: *(\d+)/.exec(lower)
        if (cl !== null) bodyLeft = Number(cl[1])
        if (/\r\ntransfer-encoding: *chunked/.test(lower)) { raw = true; if (inBuf.length > 0) upstream.write(inBuf); inBuf = Buffer.alloc(0); return }
      }
    })

    const flushHeld = (): void => {
      if (held.length > 0 && !client.destroyed) client.write(Buffer.concat(held))
      held = []
      heldBytes = 0
    }
    upstream.on('data', (d: Buffer) => {
      if (pair.frozen) return
      let rest = d
      if (expectHead > 0) {
        outHead += d.toString('latin1')
        const end = outHead.indexOf('\r\n\r\n')
        if (end !== -1) {
          const head = outHead.slice(0, end + 4)
          this.#record(this.responses, head)
          expectHead--
          const headBytes = Buffer.byteLength(head, 'latin1') - (outHead.length - d.length)
          outHead = ''
          if (mute) {
            // the 101 gets through; every frame after it is swallowed
            client.write(d.subarray(0, Math.max(0, headBytes)))
            return
          }
          rest = d
        } else {
          rest = d
        }
      }
      if (mute && expectHead === 0) return
      if (buffering) {
        held.push(rest)
        heldBytes += rest.length
        if (heldBytes >= BUFFER_LIMIT) flushHeld()
        return
      }
      this.bytesDown += rest.length
      if (this.downRate > 0 || ticking !== null) {
        trickle.push(rest)
        ticking ??= setInterval(pump, 100)
        return
      }
      client.write(rest)
    })
    upstream.on('end', () => {
      if (pair.frozen) return
      flushHeld()
      if (ticking !== null) { endAfter = true; return }
      client.end()
    })
    upstream.on('close', () => {
      if (pair.frozen) return
      if (!client.destroyed && client.writableLength === 0) client.end()
    })
  }

  /** Cut every connection (both sides, like a network failure or a proxy restart). */
  dropAll (): number {
    const n = this.#pairs.size
    for (const p of this.#pairs) {
      p.client.destroy()
      p.upstream.destroy()
    }
    this.#pairs.clear()
    return n
  }

  /**
   * Every open connection goes dead without a word (a path lost with no FIN or RST, a proxy that
   * hangs): nothing passes either way from now on, and neither side is closed. New connections
   * pass as before.
   */
  freezeAll (): number {
    for (const p of this.#pairs) p.frozen = true
    return this.#pairs.size
  }

  async close (): Promise<void> {
    this.dropAll()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }
}
