// Test helpers: a real Parkline on 127.0.0.1 port 0, and small clients that speak raw bytes so
// tests can assert exact wire formats.
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, statSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import type { ExecutionContext } from 'ava'
import type { FastifyInstance } from 'fastify'
import { resolveOptions, type ParklineOptions } from '../../lib/config.ts'
import { buildServer } from '../../lib/server.ts'

export interface Running {
  app: FastifyInstance
  port: number
  base: string
  opts: ParklineOptions
}

export async function startServer (t: ExecutionContext, options: Partial<Record<keyof ParklineOptions, unknown>> = {}): Promise<Running> {
  const opts = resolveOptions({ port: 0, host: '127.0.0.1', logLevel: 'silent', ...options })
  const app = await buildServer(opts)
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const addr = app.server.address() as net.AddressInfo
  return { app, port: addr.port, base: `http://127.0.0.1:${addr.port}`, opts }
}

export interface Standalone extends Running {
  /** Requests on Parkline's locations that Fastify's hooks saw. */
  hooks: () => number
}

/**
 * A standalone server as `parkline serve` builds it; `fast: false` builds it with
 * PARKLINE_NO_FAST_PATH=1 (neither the fast path nor raw publisher connections: all through Fastify).
 */
/** The build in progress (startStandalone): the next one waits for it. */
let building: Promise<unknown> = Promise.resolve()

export async function startStandalone (t: ExecutionContext, options: Partial<Record<keyof ParklineOptions, unknown>>, fast: boolean): Promise<Standalone> {
  const opts = resolveOptions({ port: 0, host: '127.0.0.1', logLevel: 'silent', ...options })
  // buildServer reads PARKLINE_NO_FAST_PATH after awaiting: one build at a time, or a test's
  // setting leaks into a server another test is building at the same moment
  const build = building.then(async () => {
    if (!fast) process.env.PARKLINE_NO_FAST_PATH = '1'
    try {
      return await buildServer(opts)
    } finally {
      delete process.env.PARKLINE_NO_FAST_PATH
    }
  })
  building = build.catch(() => {})
  const app = await build
  let seen = 0
  app.addHook('onRequest', async (request) => { if (request.url.startsWith(opts.pubPrefix) || request.url.startsWith(opts.subPrefix)) seen++ })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as net.AddressInfo).port
  return { app, port, base: `http://127.0.0.1:${port}`, opts, hooks: () => seen }
}

export interface HttpAnswer { status: number, headers: Record<string, string>, body: string, raw: string }

/** Parse one HTTP/1.1 response (Content-Length bodies) out of raw text. */
export function parseResponse (raw: string): HttpAnswer {
  const end = raw.indexOf('\r\n\r\n')
  const head = end === -1 ? raw : raw.slice(0, end)
  const lines = head.split('\r\n')
  const status = Number(lines[0]!.split(' ')[1])
  const headers: Record<string, string> = {}
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':')
    if (i > 0) headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim()
  }
  let body = end === -1 ? '' : raw.slice(end + 4)
  if (headers['content-length'] !== undefined) body = body.slice(0, Number(headers['content-length']))
  return { status, headers, body, raw }
}

/**
 * Send raw bytes and collect what comes back until the server closes, `until` says enough, or
 * `ms` passes. Latin1 in and out so any byte survives.
 */
export async function rawExchange (port: number, data: string | Buffer, opts: { until?: (text: string) => boolean, ms?: number } = {}): Promise<string> {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => {})
  await once(socket, 'connect')
  let text = ''
  const done = new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, opts.ms ?? 3000)
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1')
      if (opts.until?.(text) === true) { clearTimeout(timer); resolve() }
    })
    socket.on('close', () => { clearTimeout(timer); resolve() })
  })
  socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data)
  await done
  socket.destroy()
  return text
}

/**
 * A loopback connection to `port` that keeps what it reads (latin1) and whether the server ended
 * it (its FIN, or the socket closed, by a reset too): `closed()`, and `ended`, which settles then.
 * Our own `socket.destroy()` closes it as well, so read `closed()` before that. With
 * `allowHalfOpen` our side stays open after the server's FIN, as a client still sending would.
 */
export async function connectReading (port: number, opts: { allowHalfOpen?: boolean } = {}): Promise<{ socket: net.Socket, text: () => string, closed: () => boolean, ended: Promise<void> }> {
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: opts.allowHalfOpen ?? false })
  socket.on('error', () => {})
  await once(socket, 'connect')
  let text = ''
  let closed = false
  socket.on('data', (d: Buffer) => { text += d.toString('latin1') })
  const ended = new Promise<void>((resolve) => {
    const end = (): void => { closed = true; resolve() }
    socket.on('end', end)
    socket.on('close', end)
  })
  return { socket, text: () => text, closed: () => closed, ended }
}

/** Polls `cond` every 10 ms for up to `ms`; its last answer (a bounded wait, never a timed assertion). */
export async function until (cond: () => boolean, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms
  while (!cond() && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 10))
  return cond()
}

/** One full response to a raw request (waits for a complete Content-Length body). */
export async function rawRequest (port: number, data: string | Buffer, ms = 3000): Promise<HttpAnswer> {
  const text = await rawExchange(port, data, {
    ms,
    until: (s) => {
      const end = s.indexOf('\r\n\r\n')
      if (end === -1) return false
      const m = /\r\ncontent-length: *(\d+)/i.exec(s.slice(0, end))
      return m !== null && s.length - end - 4 >= Number(m[1])
    }
  })
  return parseResponse(text)
}

export interface SseEvent { id?: string, event?: string, data: string, comments: string[] }

/**
 * A raw EventSource client: parses the stream as the SSE spec does (LF, CR or CRLF line ends),
 * keeping comments so tests can see `: hi`, keepalives and gap signals.
 */
export class SseClient {
  socket: net.Socket
  head = ''
  status = 0
  headers: Record<string, string> = {}
  events: SseEvent[] = []
  comments: string[] = []
  retry: number | null = null
  closed = false
  #buf = ''
  #pending: SseEvent = { data: '', comments: [] }
  #hasData = false
  #waiters: Array<() => void> = []

  private constructor (socket: net.Socket) {
    this.socket = socket
  }

  static async connect (port: number, path: string, headers: Record<string, string> = {}): Promise<SseClient> {
    const socket = net.connect(port, '127.0.0.1')
    socket.on('error', () => {})
    await once(socket, 'connect')
    return SseClient.#start(socket, path, headers)
  }

  /**
   * Subscribe on a given worker of `--workers N`: connections are opened until one whose
   * `GET /status` names that worker (`worker: N`); the subscription then goes on that connection.
   */
  static async connectOnWorker (port: number, path: string, worker: number, headers: Record<string, string> = {}): Promise<SseClient> {
    return SseClient.#start(await socketOnWorker(port, worker), path, headers)
  }

  /** A subscription on a socket already connected (e.g. one of socketOnWorker's). */
  static async over (socket: net.Socket, path: string, headers: Record<string, string> = {}): Promise<SseClient> {
    return await SseClient.#start(socket, path, headers)
  }

  static async #start (socket: net.Socket, path: string, headers: Record<string, string>): Promise<SseClient> {
    const c = new SseClient(socket)
    let req = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n`
    for (const [k, v] of Object.entries(headers)) req += `${k}: ${v}\r\n`
    socket.write(req + '\r\n')
    socket.on('data', (d: Buffer) => c.#feed(d.toString('latin1')))
    socket.on('close', () => { c.closed = true; c.#wake() })
    await c.until(() => c.status !== 0)
    return c
  }

  #wake (): void {
    const w = this.#waiters
    this.#waiters = []
    for (const f of w) f()
  }

  #feed (s: string): void {
    this.#buf += s
    if (this.status === 0) {
      const end = this.#buf.indexOf('\r\n\r\n')
      if (end === -1) return
      const r = parseResponse(this.#buf.slice(0, end + 4))
      this.head = this.#buf.slice(0, end + 4)
      this.status = r.status
      this.headers = r.headers
      this.#buf = this.#buf.slice(end + 4)
      if (this.status !== 200) { this.#buf = ''; this.#wake(); return }
    }
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.#buf)
      if (m === null) break
      if (m[0] === '\r' && m.index === this.#buf.length - 1) break // maybe a CRLF split across reads
      const line = this.#buf.slice(0, m.index)
      this.#buf = this.#buf.slice(m.index + m[0].length)
      this.#line(line)
    }
    this.#wake()
  }

  #line (line: string): void {
    if (line === '') {
      if (this.#hasData) {
        const ev = this.#pending
        if (ev.data.endsWith('\n')) ev.data = ev.data.slice(0, -1)
        this.events.push(ev)
      }
      this.#pending = { data: '', comments: [] }
      this.#hasData = false
      return
    }
    if (line.startsWith(':')) {
      this.comments.push(line)
      this.#pending.comments.push(line)
      return
    }
    const i = line.indexOf(':')
    const field = i === -1 ? line : line.slice(0, i)
    let value = i === -1 ? '' : line.slice(i + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    if (field === 'data') { this.#pending.data += value + '\n'; this.#hasData = true } else if (field === 'id') this.#pending.id = value
    else if (field === 'event') this.#pending.event = value
    else if (field === 'retry') this.retry = Number(value)
  }

  /** Wait until `pred` holds (or the stream closes, or `ms` passes: then it throws). */
  async until (pred: () => boolean, ms = 5000): Promise<void> {
    const deadline = Date.now() + ms
    while (!pred()) {
      if (this.closed) { if (pred()) return; throw new Error('stream closed while waiting') }
      const left = deadline - Date.now()
      if (left <= 0) throw new Error('timed out waiting on SSE stream')
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.#waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
  }

  async waitEvents (n: number, ms = 5000): Promise<SseEvent[]> {
    await this.until(() => this.events.length >= n, ms)
    return this.events
  }

  async waitClosed (ms = 5000): Promise<void> {
    await this.until(() => this.closed, ms).catch(() => {})
    if (!this.closed) throw new Error('stream still open')
  }

  close (): void {
    this.socket.destroy()
  }
}

/** Publish with fetch (undici, Node's own). */
export async function publish (base: string, channel: string, body: string | Buffer = '', headers: Record<string, string> = {}): Promise<{ status: number, text: string, headers: Headers }> {
  // a Buffer body, so fetch adds no Content-Type of its own
  const res = await fetch(`${base}/pub/${channel}`, { method: 'POST', body: typeof body === 'string' ? Buffer.from(body) : body, headers })
  return { status: res.status, text: await res.text(), headers: res.headers }
}

/** Channel info as JSON. */
export async function info (base: string, channel: string): Promise<{ status: number, json: { messages: number, requested: number, subscribers: number, last_message_id: string } | null }> {
  const res = await fetch(`${base}/pub/${channel}`, { headers: { Accept: 'text/json' } })
  const text = await res.text()
  return { status: res.status, json: res.status === 200 ? JSON.parse(text) : null }
}

/** A loopback port free right now, for servers the tests start as separate processes. */
/**
 * A port for a process the test starts itself (`parkline serve`, redis-server, nginx), which binds
 * it a moment later (seconds, for `--workers N`). Between the two the port is free, and ava runs
 * test files in parallel: two files could be handed the same one. `--workers N` binds with
 * SO_REUSEPORT, so two such servers would then share the port, each answering some of the other's
 * connections. A lock file per port (created exclusively, across processes) hands each port to one
 * caller; a lock older than PORT_LOCK_MS belongs to a server bound long ago or gone, and is taken
 * over. The port is chosen below the kernel's ephemeral range (ip_local_port_range): an
 * in-process server or proxy that listens on port 0, or any outgoing connection, is given a port
 * from that range, so none can take this one in between (which a `--workers N` server, binding
 * with SO_REUSEPORT, would then fail to bind, while its health check reached the other server).
 */
export async function freePort (): Promise<number> {
  mkdirSync(PORT_LOCKS, { recursive: true })
  const [low, high] = belowEphemeral()
  for (let i = 0; i < 100; i++) {
    const port = low + Math.floor(Math.random() * (high - low + 1))
    const s = net.createServer()
    const bound = await new Promise<boolean>((resolve) => {
      s.once('error', () => resolve(false))
      s.listen(port, '127.0.0.1', () => resolve(true))
    })
    if (!bound) continue
    s.close()
    await once(s, 'close')
    const lock = path.join(PORT_LOCKS, String(port))
    try {
      if (Date.now() - statSync(lock).mtimeMs > PORT_LOCK_MS) rmSync(lock, { force: true })
    } catch {}
    try {
      closeSync(openSync(lock, 'wx'))
      return port
    } catch {
      // handed to another test moments ago: ask for another
    }
  }
  throw new Error(`freePort: no unclaimed port after 100 tries (locks in ${PORT_LOCKS})`)
}

/** Ports for freePort: outside the kernel's ephemeral range (Linux: 32768-60999 by default). */
function belowEphemeral (): [number, number] {
  let range = [32768, 60999]
  try {
    range = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number)
  } catch {}
  const [first = 32768, last = 60999] = range
  if (first > 11000) return [10000, first - 1]
  if (last < 64000) return [last + 1, 65000]
  throw new Error(`freePort: the ephemeral range ${first}-${last} leaves no ports for test servers`)
}

const PORT_LOCKS = path.join(os.tmpdir(), 'parkline-test-ports')
const PORT_LOCK_MS = 10 * 60 * 1000

/**
 * The exit code of `child` (null: ended by a signal) once it has exited and what it wrote to its
 * piped stdout and stderr has been read: 'exit' can come before the last 'data', so output read at
 * 'exit' may lack its end (a CI run saw `parkline token --help` exit 0 with its usage not yet
 * read). A grandchild that keeps a pipe open (a worker, a server a benchmark started) delays this
 * by at most `graceMs` after the exit. Call it before the child can have closed its pipes.
 */
export async function exitedWithOutput (child: ChildProcess, graceMs = 5000): Promise<number | null> {
  const closed = once(child, 'close')
  const code = child.exitCode !== null || child.signalCode !== null ? child.exitCode : (await once(child, 'exit') as [number | null])[0]
  let timer: NodeJS.Timeout | undefined
  await Promise.race([closed, new Promise((resolve) => { timer = setTimeout(resolve, graceMs) })])
  clearTimeout(timer)
  return code
}

/** Poll until `pred` is true; for counts that settle after a socket event. */
export async function eventually (pred: () => Promise<boolean> | boolean, ms = 3000): Promise<boolean> {
  const deadline = Date.now() + ms
  for (;;) {
    if (await pred()) return true
    if (Date.now() > deadline) return false
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/**
 * A keep-alive connection to a given worker of `--workers N`: connections are opened until one
 * whose `GET /status` names that worker (`worker: N`); what it got so far is read.
 */
export async function socketOnWorker (port: number, worker: number): Promise<net.Socket> {
  for (let i = 0; i < 200; i++) {
    const socket = net.connect(port, '127.0.0.1')
    socket.on('error', () => {})
    await once(socket, 'connect')
    socket.write('GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
    let got = ''
    const body = await new Promise<string | null>((resolve) => {
      const onData = (d: Buffer): void => {
        got += d.toString('latin1')
        const end = got.indexOf('\r\n\r\n')
        if (end === -1) return
        const len = Number(/content-length: (\d+)/i.exec(got.slice(0, end))?.[1] ?? -1)
        if (got.length < end + 4 + len) return
        socket.off('data', onData)
        resolve(got.slice(end + 4, end + 4 + len))
      }
      socket.on('data', onData)
      socket.once('close', () => resolve(null))
    })
    if (body !== null && new RegExp(`^worker: ${worker}$`, 'm').test(body)) return socket
    socket.destroy()
  }
  throw new Error(`no connection reached worker ${worker}`)
}
