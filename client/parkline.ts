// Parkline client: subscribe to a Parkline (or Nchan) subscriber location from a browser or Node 24.
//
//   const sub = new Parkline('/sub/news,alerts', { transports: ['websocket', 'eventsource', 'longpoll'] })
//   sub.on('message', (data, { id, channel }) => { … })
//   sub.start()
//
// Transports are tried in order and the client falls back at run time, not only by feature
// detection: a WebSocket that does not open, or stays silent while a probe shows it missed a
// message, and an event stream whose first bytes are held back by a buffering proxy, hand over to
// the next transport, which resumes from the same id. Reconnects back off exponentially with
// jitter and never come sooner than the server's `retry:` or `Retry-After` asks.
import {
  type ClientTransport, type CloseInfo, type DeliveredMeta, type FetchLike, TRANSPORT_CLASSES, TRANSPORT_NAMES,
  type TransportCallbacks, type TransportContext, type TransportName, type WebSocketCtor
} from './transports.ts'
import { activePosition, backoffDelay, channelsOf } from './wire.ts'

export { TRANSPORT_NAMES, type TransportName, type CloseInfo } from './transports.ts'
export { backoffDelay, parseId, retryAfterMs, SseParser } from './wire.ts'

/** Where the last id is kept across page loads (localStorage has this shape). */
export interface StorageLike {
  getItem (key: string): string | null
  setItem (key: string, value: string): void
  removeItem? (key: string): void
}

export interface ParklineClientOptions {
  /** Transports in order of preference. Default: websocket, eventsource, longpoll. */
  transports?: readonly TransportName[]
  /** Start after this id instead of the oldest buffered message. */
  lastId?: string | null
  /** Keep the last id in `storage` (default localStorage) under this key (`true`: `parkline:<url>`). */
  persist?: boolean | string
  storage?: StorageLike
  /** Subscriber location prefix, to name channels from the URL (default `/sub/`). */
  prefix?: string
  /** Channel names by position; default: read from the URL (`/sub/a,b` gives a and b). */
  channels?: readonly string[]
  /** A WebSocket must open, an event stream show its first byte, within this many ms. Default 5000. */
  connectTimeout?: number
  /** A WebSocket silent (no message, no ping) this long is checked with a long-poll probe; 0 = never. Default 45000. */
  keepalive?: number
  /** How long the probe may wait for an answer. Default 3000. */
  probeTimeout?: number
  /** First reconnect delay (ms); doubles per failed attempt up to maxDelay, with jitter. Default 500. */
  minDelay?: number
  /** Default 30000. */
  maxDelay?: number
  /** Send cookies cross-origin (fetch `credentials: 'include'`). */
  withCredentials?: boolean
  /** Replacements for the globals (tests, older runtimes). */
  WebSocket?: WebSocketCtor
  fetch?: FetchLike
  random?: () => number
}

export interface MessageMeta {
  /** The message id (`T:G`, or a multiplexed `T:[0],-`), as the publisher reported it. */
  id: string | undefined
  contentType: string | undefined
  /** The channel that sent the message (from the bracketed position of a multiplexed id). */
  channel: string | undefined
  /** SSE event name (`X-EventSource-Event`), when there was one. */
  event: string | undefined
  transport: TransportName
}

export interface GapInfo {
  /** The cursor the client asked from. */
  requested: string
  /** The id of the first message served after the gap. */
  resumed: string | undefined
  channel: string | undefined
  transport: TransportName
}

export interface DisconnectInfo {
  transport: TransportName
  reason: string
  /** ms until the next attempt (-1: stopped, no next attempt). */
  delay: number
  /** The server's `retry:` / `Retry-After` in ms, or null. */
  hint: number | null
}

export interface RetryInfo extends DisconnectInfo {
  /** The transport the next attempt uses. */
  next: TransportName
  /** The attempt failed before connecting (not a drop of a working connection). */
  failed: boolean
}

export interface ParklineEvents {
  message: (data: string | ArrayBuffer, meta: MessageMeta) => void
  gap: (info: GapInfo) => void
  connect: (info: { transport: TransportName }) => void
  disconnect: (info: DisconnectInfo) => void
  /** A different transport carries the subscription now. */
  transport: (name: TransportName, previous: TransportName | null) => void
  /** Every scheduled attempt, with the transport and the delay chosen. */
  retry: (info: RetryInfo) => void
}

type Listeners = { [K in keyof ParklineEvents]: Array<ParklineEvents[K]> }

interface BrowserGlobals {
  location?: { href: string }
  localStorage?: StorageLike
  WebSocket?: WebSocketCtor
  fetch?: FetchLike
}

export class Parkline {
  readonly url: string
  readonly channels: readonly string[]
  /** Id of the last message delivered; the next connection resumes after it. */
  lastId: string | null
  /** Name of the transport now carrying the subscription (null before the first connect). */
  transport: TransportName | null = null
  connected = false

  #order: readonly TransportName[]
  #ctx: TransportContext
  #opts: { minDelay: number, maxDelay: number, connectTimeout: number, random: () => number }
  #storage: StorageLike | null
  #key: string
  #listeners: Listeners = { message: [], gap: [], connect: [], disconnect: [], transport: [], retry: [] }
  #running = false
  #index = 0
  #attempt = 0
  #current: ClientTransport | null = null
  #currentName: TransportName | null = null
  #timer: ReturnType<typeof setTimeout> | null = null
  #openedAt = 0
  #delivered = 0

  constructor (url: string, options: ParklineClientOptions = {}) {
    const g = globalThis as BrowserGlobals
    const abs = new URL(url, g.location?.href)
    this.url = abs.href
    const wsUrl = new URL(abs.href)
    wsUrl.protocol = abs.protocol === 'https:' ? 'wss:' : 'ws:'
    this.channels = options.channels ?? channelsOf(abs.pathname, options.prefix ?? '/sub/')
    const order = options.transports ?? TRANSPORT_NAMES
    for (const name of order) {
      if (!(name in TRANSPORT_CLASSES)) throw new TypeError(`unknown transport "${name}" (known: ${TRANSPORT_NAMES.join(', ')})`)
    }
    if (order.length === 0) throw new TypeError('transports must name at least one transport')
    this.#order = order
    const f = options.fetch ?? g.fetch
    this.#ctx = {
      url: abs.href,
      wsUrl: wsUrl.href,
      connectTimeout: options.connectTimeout ?? 5000,
      keepalive: options.keepalive ?? 45000,
      probeTimeout: options.probeTimeout ?? 3000,
      credentials: options.withCredentials === true ? 'include' : 'same-origin',
      WebSocket: options.WebSocket ?? g.WebSocket,
      // unbound, browsers' fetch throws "Illegal invocation"
      fetch: f === undefined ? undefined : (f as (...a: unknown[]) => ReturnType<FetchLike>).bind(globalThis) as FetchLike
    }
    this.#opts = {
      minDelay: options.minDelay ?? 500,
      maxDelay: options.maxDelay ?? 30000,
      connectTimeout: this.#ctx.connectTimeout,
      random: options.random ?? Math.random
    }
    this.#key = typeof options.persist === 'string' ? options.persist : 'parkline:' + abs.href
    this.#storage = null
    if (options.persist !== undefined && options.persist !== false) {
      try { this.#storage = options.storage ?? g.localStorage ?? null } catch {}
    }
    let saved: string | null = null
    try { saved = this.#storage?.getItem(this.#key) ?? null } catch {}
    this.lastId = saved ?? options.lastId ?? null
  }

  on<K extends keyof ParklineEvents> (event: K, fn: ParklineEvents[K]): this {
    (this.#listeners[event] as Array<ParklineEvents[K]>).push(fn)
    return this
  }

  off<K extends keyof ParklineEvents> (event: K, fn: ParklineEvents[K]): this {
    const list = this.#listeners[event] as Array<ParklineEvents[K]>
    const i = list.indexOf(fn)
    if (i !== -1) list.splice(i, 1)
    return this
  }

  #emit<K extends keyof ParklineEvents> (event: K, ...args: Parameters<ParklineEvents[K]>): void {
    for (const fn of [...this.#listeners[event]] as Array<(...a: unknown[]) => void>) {
      try { fn(...args) } catch (err) { setTimeout(() => { throw err }) }
    }
  }

  get running (): boolean {
    return this.#running
  }

  /** Connect (again), starting with the first transport and resuming after lastId. */
  start (): this {
    if (this.#running) return this
    this.#running = true
    this.#index = 0
    this.#attempt = 0
    this.#connect()
    return this
  }

  /** Disconnect and stay disconnected; start() resumes from lastId. */
  stop (): this {
    if (!this.#running) return this
    this.#running = false
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    const t = this.#current
    this.#current = null
    t?.close()
    if (this.connected) {
      this.connected = false
      this.#emit('disconnect', { transport: this.#currentName!, reason: 'stopped', delay: -1, hint: null })
    }
    return this
  }

  close (): this {
    return this.stop()
  }

  /** Forget the saved cursor: the next connection starts from the oldest buffered message. */
  resetCursor (): void {
    this.lastId = null
    try { this.#storage?.removeItem?.(this.#key) } catch {}
  }

  #connect (): void {
    this.#timer = null
    if (!this.#running) return
    // feature detection first: skip what this environment cannot do at all
    let t: ClientTransport | null = null
    let name: TransportName | null = null
    for (let n = 0; n < this.#order.length; n++) {
      const candidate = this.#order[this.#index]!
      const inst = new TRANSPORT_CLASSES[candidate](this.#ctx, this.#callbacks())
      if (inst.supported()) { t = inst; name = candidate; break }
      this.#index = (this.#index + 1) % this.#order.length
    }
    if (t === null || name === null) throw new Error(`none of the transports ${this.#order.join(', ')} is supported here`)
    this.#current = t
    this.#currentName = name
    this.#delivered = 0
    this.#openedAt = 0
    t.open(this.lastId)
  }

  #callbacks (): TransportCallbacks {
    // each attempt gets its own callbacks; ones from a closed attempt are ignored
    let live = true
    const self = this
    const owner = (): boolean => live && self.#running
    return {
      onOpen () {
        if (!owner()) return
        self.#openedAt = Date.now()
        const name = self.#currentName!
        self.connected = true
        if (self.transport !== name) {
          const prev = self.transport
          self.transport = name
          self.#emit('transport', name, prev)
        }
        self.#emit('connect', { transport: name })
      },
      onMessage (data: string | ArrayBuffer, meta: DeliveredMeta) {
        if (!owner()) return
        self.#delivered++
        if (meta.id !== undefined) {
          self.lastId = meta.id
          try { self.#storage?.setItem(self.#key, meta.id) } catch {}
        }
        const channel = self.channels[activePosition(meta.id)]
        self.#emit('message', data, { id: meta.id, contentType: meta.contentType, channel, event: meta.event, transport: self.#currentName! })
      },
      onGap (requested: string, resumed: string | undefined) {
        if (!owner()) return
        self.#emit('gap', { requested, resumed, channel: self.channels[activePosition(resumed)], transport: self.#currentName! })
      },
      onClose (info: CloseInfo) {
        if (!owner()) return
        live = false
        self.#closed(info)
      }
    }
  }

  /** Decide what comes after a connection ended: same transport, next one, and when. */
  #closed (info: CloseInfo): void {
    const name = this.#currentName!
    this.#current = null
    // a connection that opened and then carried messages, lasted, or was ended by the server in
    // protocol proves the transport works on this path; one that died at once does not
    const worked = info.opened && !info.fallback &&
      (info.clean || this.#delivered > 0 || Date.now() - this.#openedAt >= this.#opts.connectTimeout)
    if (info.badCursor) this.resetCursor()
    let delay: number
    let failed = false
    const backoff = (): number => backoffDelay(this.#attempt++, this.#opts.minDelay, this.#opts.maxDelay, this.#opts.random, info.hint)
    if (info.refused || info.badCursor) {
      // the server is there and asked us to wait: same transport, not before its hint
      delay = backoff()
    } else if (worked) {
      this.#attempt = 0
      delay = backoff()
    } else {
      failed = true
      this.#index++
      if (this.#index < this.#order.length) {
        delay = 0 // fall back at once, resuming from the same id
      } else {
        this.#index = 0
        delay = backoff()
      }
    }
    if (this.connected) {
      this.connected = false
      this.#emit('disconnect', { transport: name, reason: info.reason, delay, hint: info.hint })
    }
    if (!this.#running) return
    this.#emit('retry', { transport: name, reason: info.reason, delay, hint: info.hint, next: this.#order[this.#index]!, failed })
    if (!this.#running) return
    this.#timer = setTimeout(() => { this.#connect() }, delay)
  }
}

export default Parkline
