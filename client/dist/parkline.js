// Generated from client/parkline.ts by client/build.ts: edit the .ts file, then run `node client/build.ts`.
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
                                                                            TRANSPORT_CLASSES, TRANSPORT_NAMES,

} from './transports.js'
import { activePosition, backoffDelay, channelsOf } from './wire.js'

export { TRANSPORT_NAMES,                                    } from './transports.js'
export { backoffDelay, parseId, retryAfterMs, SseParser } from './wire.js'

/** Where the last id is kept across page loads (localStorage has this shape). */




























































































export class Parkline {
           url
           channels
  /** Id of the last message delivered; the next connection resumes after it. */
  lastId
  /** Name of the transport now carrying the subscription (null before the first connect). */
  transport                       = null
  connected = false

  #order
  #ctx
  #opts
  #storage
  #key
  #listeners            = { message: [], gap: [], connect: [], disconnect: [], transport: [], retry: [] }
  #running = false
  #index = 0
  #attempt = 0
  #current                         = null
  #currentName                       = null
  #timer                                       = null
  #openedAt = 0
  #delivered = 0

  constructor (url        , options                        = {}) {
    const g = globalThis
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
      fetch: f === undefined ? undefined : (f                                              ).bind(globalThis)
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
    let saved                = null
    try { saved = this.#storage?.getItem(this.#key) ?? null } catch {}
    this.lastId = saved ?? options.lastId ?? null
  }

  on                                 (event   , fn                   )       {
    (this.#listeners[event]                            ).push(fn)
    return this
  }

  off                                 (event   , fn                   )       {
    const list = this.#listeners[event]
    const i = list.indexOf(fn)
    if (i !== -1) list.splice(i, 1)
    return this
  }

  #emit                                 (event   , ...args                               )       {
    for (const fn of [...this.#listeners[event]]                                    ) {
      try { fn(...args) } catch (err) { setTimeout(() => { throw err }) }
    }
  }

  get running ()          {
    return this.#running
  }

  /** Connect (again), starting with the first transport and resuming after lastId. */
  start ()       {
    if (this.#running) return this
    this.#running = true
    this.#index = 0
    this.#attempt = 0
    this.#connect()
    return this
  }

  /** Disconnect and stay disconnected; start() resumes from lastId. */
  stop ()       {
    if (!this.#running) return this
    this.#running = false
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    const t = this.#current
    this.#current = null
    t?.close()
    if (this.connected) {
      this.connected = false
      this.#emit('disconnect', { transport: this.#currentName , reason: 'stopped', delay: -1, hint: null })
    }
    return this
  }

  close ()       {
    return this.stop()
  }

  /** Forget the saved cursor: the next connection starts from the oldest buffered message. */
  resetCursor ()       {
    this.lastId = null
    try { this.#storage?.removeItem?.(this.#key) } catch {}
  }

  #connect ()       {
    this.#timer = null
    if (!this.#running) return
    // feature detection first: skip what this environment cannot do at all
    let t                         = null
    let name                       = null
    for (let n = 0; n < this.#order.length; n++) {
      const candidate = this.#order[this.#index]
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

  #callbacks ()                     {
    // each attempt gets its own callbacks; ones from a closed attempt are ignored
    let live = true
    const self = this
    const owner = ()          => live && self.#running
    return {
      onOpen () {
        if (!owner()) return
        self.#openedAt = Date.now()
        const name = self.#currentName
        self.connected = true
        if (self.transport !== name) {
          const prev = self.transport
          self.transport = name
          self.#emit('transport', name, prev)
        }
        self.#emit('connect', { transport: name })
      },
      onMessage (data                      , meta               ) {
        if (!owner()) return
        self.#delivered++
        if (meta.id !== undefined) {
          self.lastId = meta.id
          try { self.#storage?.setItem(self.#key, meta.id) } catch {}
        }
        const channel = self.channels[activePosition(meta.id)]
        self.#emit('message', data, { id: meta.id, contentType: meta.contentType, channel, event: meta.event, transport: self.#currentName  })
      },
      onGap (requested        , resumed                    ) {
        if (!owner()) return
        self.#emit('gap', { requested, resumed, channel: self.channels[activePosition(resumed)], transport: self.#currentName  })
      },
      onClose (info           ) {
        if (!owner()) return
        live = false
        self.#closed(info)
      }
    }
  }

  /** Decide what comes after a connection ended: same transport, next one, and when. */
  #closed (info           )       {
    const name = this.#currentName
    this.#current = null
    // a connection that opened and then carried messages, lasted, or was ended by the server in
    // protocol proves the transport works on this path; one that died at once does not
    const worked = info.opened && !info.fallback &&
      (info.clean || this.#delivered > 0 || Date.now() - this.#openedAt >= this.#opts.connectTimeout)
    if (info.badCursor) this.resetCursor()
    let delay
    let failed = false
    const backoff = ()         => backoffDelay(this.#attempt++, this.#opts.minDelay, this.#opts.maxDelay, this.#opts.random, info.hint)
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
    this.#emit('retry', { transport: name, reason: info.reason, delay, hint: info.hint, next: this.#order[this.#index] , failed })
    if (!this.#running) return
    this.#timer = setTimeout(() => { this.#connect() }, delay)
  }
}

export default Parkline
