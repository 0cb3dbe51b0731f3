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
// the next transport, which resumes from the same id. A subscription that fell back tries the
// transport it fell from again later (`upgradeAfter`, doubling after each try), so one bad moment
// does not keep it on long-poll for good. Reconnects back off exponentially with jitter and never
// come sooner than the server's `retry:` or `Retry-After` asks.
//
// Access control (`token`): a string, or a function (sync or async) the client calls for a fresh
// one. The token goes in `Authorization: Bearer` on eventsource and long-poll requests, and as
// `?access_token=` on the WebSocket URL (browsers cannot set WebSocket headers), which the server
// accepts only with `tokenInQuery: true`; without it, the WebSocket is refused and the client falls
// back to eventsource. An app that keeps the token in the server's cookie (`parkline_token`)
// passes no `token` at all. A JWT's `exp` is read (not verified) and the client renews shortly
// before it: a fresh token, a new connection resuming from the last id, so nothing is lost or
// repeated. When the server ends a connection because the token expired or was revoked, the client
// gets a fresh token and reconnects at once. A 401 or 403 that a freshly obtained token does not
// cure stops the client with one `auth` event; 401 and 403 never cause a transport fallback.
import {
                                                                                          TRANSPORT_CLASSES,
  TRANSPORT_NAMES,
} from './transports.js'
import { MAX_TIMER_MS, activePosition, backoffDelay, channelsOf, queryOf, tokenExpiry, withoutQuery } from './wire.js'

export { TRANSPORT_NAMES,                                                  } from './transports.js'
export { authChallenge, backoffDelay, parseId, retryAfterMs, SseParser, tokenExpiry } from './wire.js'

/** Where a token comes from: the token itself, or a function giving a fresh one (may be async). */


/** The longest wait between two tries of a transport the client fell back from (ms). */
const MAX_UPGRADE_DELAY = 30 * 60_000

/** A connection is up at least this long before the client renews its token (ms). */
const MIN_UP_BEFORE_RENEW = 1000
/**
 * A 401 counts as the token's own expiry (renew and go on, not a refusal) when it comes this close
 * to, or after, the token's exp (ms; allows for the server's 1 s timer and some clock skew) ...
 */
const EXPIRY_SLACK = 1000
/** ... and the token had at least this long to live when the client got it (ms). */
const MIN_TOKEN_LIFE = 1000

/** Where the last id is kept across page loads (localStorage has this shape). */

























                                                                                           
















                                                                                             




































































/** The server refused the credential, and a freshly obtained token did not change that. */







































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
  #listeners            = { message: [], gap: [], connect: [], disconnect: [], transport: [], retry: [], auth: [] }
  #running = false
  #index = 0
  #attempt = 0
  #current                         = null
  #currentName                       = null
  #timer                                       = null
  #openedAt = 0
  #delivered = 0
  /**
   * The rest of a multipart long-poll answer a stop() cut short: its parts carry no id to resume
   * from, so the next start() delivers them first and then resumes after the answer's id.
   */
  #held                                                                                                        = null
  // access control
  #tokenSource
  #renewBefore
  /** The token now in use (null: none, cookies or nothing). */
  #token                = null
  /** Its `exp` (ms) when it is a JWT, and when the client got it. */
  #tokenExp                = null
  #tokenAt = 0
  /** Counts tokens obtained; the attempt now connecting or connected uses number #usedSerial. */
  #tokenSerial = 0
  #usedSerial = 0
  /** Get a token before the next connection (first one, after an auth end, renewal due). */
  #refresh = true
  /** The credential was obtained (or, without a token, retried) after the last auth problem and no connection has proven it yet. */
  #fresh = false
  #tokenPromise                       = null
  /** Counts the token function's calls: only the latest one's answer is taken. */
  #tokenAsk = 0
  /** tokenTimeout's timer for the call pending, if any (stop() clears it: nothing is left running). */
  #tokenTimer                                       = null

  #clearTokenTimer ()       {
    if (this.#tokenTimer !== null) clearTimeout(this.#tokenTimer)
    this.#tokenTimer = null
  }
  #renewTimer                                       = null
  /** Counts attempts, so a token that arrives late goes to the attempt that asked for it. */
  #generation = 0
  // going back up after a fallback
  /** Whether each transport can run here at all (feature detection), by name. */
  #supported = new Map                        ()
  /** When (Date.now()) to try the transports ahead of the one in use; null: not due (none ahead). */
  #upgradeAt                = null
  /** The wait before the next such try (ms): upgradeAfter, doubled by each try. */
  #upgradeDelay = 0
  #upgradeTimer                                       = null

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
      fetch: f === undefined ? undefined : (f                                              ).bind(globalThis)             ,
      cursorElsewhere: order.some((name) => name !== 'websocket')
    }
    const token = options.token
    if (token !== undefined && typeof token !== 'function' && (typeof token !== 'string' || token === '')) {
      throw new TypeError('token must be a non-empty string or a function returning one')
    }
    this.#tokenSource = token
    this.#renewBefore = options.renewBefore ?? 5000
    this.#opts = {
      minDelay: options.minDelay ?? 500,
      maxDelay: options.maxDelay ?? 30000,
      connectTimeout: this.#ctx.connectTimeout,
      upgradeAfter: options.upgradeAfter ?? 60000,
      tokenTimeout: options.tokenTimeout ?? 10000,
      random: options.random ?? Math.random
    }
    // 0 would reconnect in a tight loop, every attempt at once (the backoff doubles minDelay)
    if (!(this.#opts.minDelay >= 1)) throw new TypeError('minDelay must be a number of ms, at least 1')
    if (!(this.#opts.maxDelay >= this.#opts.minDelay)) throw new TypeError('maxDelay must be a number of ms, at least minDelay')
    if (!(this.#opts.upgradeAfter >= 0)) throw new TypeError('upgradeAfter must be a number of ms (0: never)')
    if (!(this.#opts.tokenTimeout >= 0)) throw new TypeError('tokenTimeout must be a number of ms (0: no limit)')
    this.#upgradeDelay = this.#opts.upgradeAfter
    this.#key = typeof options.persist === 'string' ? options.persist : 'parkline:' + abs.href
    this.#storage = null
    if (options.persist !== undefined && options.persist !== false) {
      // a runtime with no localStorage at all (Node) and no storage given: persist could keep
      // nothing, and a restarted process would read every buffered message again unawares
      if (options.storage === undefined && !('localStorage' in g)) throw new TypeError('persist needs a storage: this runtime has no localStorage, pass options.storage (getItem, setItem, removeItem)')
      // (a browser that denies storage, a sandboxed frame: no persistence, as without the option)
      try { this.#storage = options.storage ?? g.localStorage ?? null } catch {}
    }
    let saved                = null
    try { saved = this.#storage?.getItem(this.#key) ?? null } catch {}
    this.lastId = saved ?? options.lastId ?? null
  }

  on                                 (event   , fn                   )       {
    this.#listenersOf(event).push(fn)
    return this
  }

  off                                 (event   , fn                   )       {
    const list = this.#listenersOf(event)
    const i = list.indexOf(fn)
    if (i !== -1) list.splice(i, 1)
    return this
  }

  /** An event's listeners; an event the client never emits (a typo, `error`) is a TypeError naming the ones it does. */
  #listenersOf                                 (event   )                           {
    const list = Object.prototype.hasOwnProperty.call(this.#listeners, event) ? this.#listeners[event]                             : undefined
    if (list === undefined) throw new TypeError(`parkline: no event "${String(event)}" (events: ${Object.keys(this.#listeners).join(', ')})`)
    return list
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
    this.#refresh = true
    this.#upgradeAt = null
    this.#upgradeDelay = this.#opts.upgradeAfter
    if (this.#held !== null) {
      const gen = ++this.#generation
      this.#timer = setTimeout(() => {
        this.#timer = null
        // (the drain this start() was called from may have finished the answer meanwhile, or
        // resetCursor() dropped it)
        if (gen === this.#generation && this.#drainHeld()) this.#connect()
      }, 0)
      return this
    }
    this.#connect()
    return this
  }

  /** Deliver what is held of an answer, if anything: false when a stop() came in the middle (the rest stays held). */
  #drainHeld ()          {
    const held = this.#held
    if (held === null) return true
    const gen = this.#generation
    while (held.next < held.list.length) {
      if (!this.#running || gen !== this.#generation) return false
      const [data, meta] = held.list[held.next++]
      this.#delivered++
      this.#deliver(data, meta, held.transport)
    }
    if (this.#held === held) this.#held = null
    return true
  }

  #deliver (data                      , meta               , transport               )       {
    if (meta.id !== undefined) {
      this.lastId = meta.id
      try { this.#storage?.setItem(this.#key, meta.id) } catch {}
    }
    // a message without an id (a multipart answer's parts but the last, plain WebSocket frames)
    // names no channel: on a multiplexed subscription it is not known which one sent it
    const channel = meta.id === undefined && this.channels.length > 1 ? undefined : this.channels[activePosition(meta.id)]
    this.#emit('message', data, { id: meta.id, contentType: meta.contentType, channel, event: meta.event, transport })
  }

  /**
   * Disconnect and stay disconnected; start() resumes from lastId. Called in a handler in the
   * middle of a multipart long-poll answer, it keeps the answer's other messages (in memory) for
   * start(), which delivers them before it connects.
   */
  stop ()       {
    if (!this.#running) return this
    this.#running = false
    this.#generation++
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    this.#clearRenew()
    this.#clearUpgrade()
    // a token function still pending is not waited for by start(): it asks anew
    this.#tokenPromise = null
    this.#tokenAsk++
    this.#clearTokenTimer()
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
    this.#held = null
    // a cursor the URL was given (`?last_event_id=`) goes too: the next connection would start there
    this.#ctx.url = withoutQuery(this.#ctx.url, 'last_event_id')
    this.#ctx.wsUrl = withoutQuery(this.#ctx.wsUrl, 'last_event_id')
    try { this.#storage?.removeItem?.(this.#key) } catch {}
  }

  #connect ()       {
    this.#timer = null
    if (!this.#running) return
    const gen = ++this.#generation
    if (this.#refresh || this.#tokenDue()) {
      const got = this.#obtainToken()
      if (got !== null) {
        got.then(() => {
          if (gen === this.#generation && this.#running) this.#open()
        }, (err         ) => {
          if (gen === this.#generation && this.#running) this.#tokenFailed(err)
        })
        return
      }
    }
    this.#open()
  }

  /** The current token from a function expires within its renewal margin: get another first. */
  #tokenDue ()          {
    if (typeof this.#tokenSource !== 'function' || this.#tokenExp === null) return false
    return this.#tokenExp - Date.now() <= this.#margin()
  }

  /** How long before exp to renew: renewBefore, at most a quarter of the token's lifetime. */
  #margin ()         {
    if (this.#tokenExp === null) return 0
    return Math.max(0, Math.min(this.#renewBefore, (this.#tokenExp - this.#tokenAt) / 4))
  }

  #setToken (token               )       {
    this.#token = token
    this.#tokenExp = token === null ? null : tokenExpiry(token)
    this.#tokenAt = Date.now()
    this.#tokenSerial++
    this.#refresh = false
    this.#fresh = true
  }

  /**
   * Get a token from the source. A string (or no token) is taken at once and null returned; a
   * function's answer comes as a promise, shared by everyone who asks while it is pending.
   */
  #obtainToken ()                       {
    const source = this.#tokenSource
    if (typeof source !== 'function') {
      this.#setToken(source ?? null)
      return null
    }
    if (this.#tokenPromise !== null) return this.#tokenPromise
    const ask = ++this.#tokenAsk
    const limit = this.#opts.tokenTimeout
    const p = (async () => {
      let token
      if (limit > 0) {
        const late = new Promise       ((_resolve, reject) => {
          this.#tokenTimer = setTimeout(() => { reject(new Error(`the token function did not settle in ${limit / 1000} s`)) }, limit)
        })
        try {
          token = await Promise.race([source(), late])
        } finally {
          if (ask === this.#tokenAsk) this.#clearTokenTimer()
        }
      } else {
        token = await source()
      }
      if (typeof token !== 'string' || token === '') throw new TypeError(`the token function gave ${token === '' ? 'an empty string' : typeof token}, not a token`)
      // (an answer asked for before a stop() or a timeout, come late: a newer ask has the say)
      if (ask === this.#tokenAsk) this.#setToken(token)
    })()
    const shared = p.finally(() => { if (this.#tokenPromise === shared) this.#tokenPromise = null })
    this.#tokenPromise = shared
    return shared
  }

  /** The token function failed: an attempt that failed before connecting; back off and ask again. */
  #tokenFailed (err         )       {
    const name = this.#order[this.#index]
    const reason = `token: ${(err         )?.message ?? String(err)}`
    const delay = backoffDelay(this.#attempt++, this.#opts.minDelay, this.#opts.maxDelay, this.#opts.random)
    this.#refresh = true
    this.#emit('retry', { transport: name, reason, delay, hint: null, next: name, failed: true })
    if (!this.#running) return
    this.#timer = setTimeout(() => { this.#connect() }, delay)
  }

  #clearRenew ()       {
    if (this.#renewTimer !== null) clearTimeout(this.#renewTimer)
    this.#renewTimer = null
  }

  /**
   * Renew shortly before the token expires: `margin` before exp, minus up to another `margin` of
   * jitter (a crowd with tokens from the same moment does not come back together), and not before
   * the connection has been up a moment.
   */
  #scheduleRenew (t                 )       {
    this.#clearRenew()
    if (typeof this.#tokenSource !== 'function' || this.#tokenExp === null || this.#renewBefore <= 0) return
    // a token that came with under MIN_TOKEN_LIFE to live is not renewed ahead: the server ends the
    // connection at its exp, and #authEnded takes that as a refusal (a renewal would open another
    // connection with the next stale token, and another, with no end)
    if (this.#tokenExp - this.#tokenAt < MIN_TOKEN_LIFE) return
    const margin = this.#margin()
    const at = this.#tokenExp - margin - this.#opts.random() * margin
    const delay = Math.max(MIN_UP_BEFORE_RENEW, at - Date.now())
    // a token good for longer than a timer can wait (about 24.8 days): look again then, not at once
    if (delay > MAX_TIMER_MS) this.#renewTimer = setTimeout(() => { this.#renewTimer = null; if (this.#running && this.#current === t) this.#scheduleRenew(t) }, MAX_TIMER_MS)
    else this.#renewTimer = setTimeout(() => { this.#renew(t) }, delay)
  }

  /** Get the fresh token while the old connection still delivers, then reconnect from lastId. */
  #renew (t                 )       {
    this.#renewTimer = null
    if (!this.#running || this.#current !== t) return
    this.#refresh = true
    const got = this.#obtainToken()
    got.then(() => {
      if (!this.#running || this.#current !== t) return
      this.#reconnectNow(t, 'token renewal', this.#currentName )
    }, () => {
      // keep the connection; when the server ends it at exp, the reconnect asks again (and backs off)
      if (this.#current === t) this.#refresh = true
    })
  }

  /** Whether a transport ahead of position `index` in the order can run here. */
  #betterThan (index        )          {
    for (let i = 0; i < index; i++) {
      const name = this.#order[i]
      let ok = this.#supported.get(name)
      if (ok === undefined) {
        ok = new TRANSPORT_CLASSES[name](this.#ctx, this.#callbacks()).supported()
        this.#supported.set(name, ok)
      }
      if (ok) return true
    }
    return false
  }

  #clearUpgrade ()       {
    if (this.#upgradeTimer !== null) clearTimeout(this.#upgradeTimer)
    this.#upgradeTimer = null
  }

  /**
   * A connection opened on a transport the client fell back to: try the ones ahead of it at
   * #upgradeAt (set at the first such open, kept across reconnects and renewals so that they do not
   * put it off).
   */
  #scheduleUpgrade (t                 )       {
    this.#clearUpgrade()
    if (this.#opts.upgradeAfter <= 0 || !this.#betterThan(this.#index)) {
      this.#upgradeAt = null
      return
    }
    // ±25 % at random: clients that fell back together (a proxy that broke WebSocket for all of
    // them) do not all try it again in the same moment
    this.#upgradeAt ??= Date.now() + Math.min(MAX_UPGRADE_DELAY, Math.round(this.#upgradeDelay * (0.75 + 0.5 * this.#opts.random())))
    this.#upgradeTimer = setTimeout(() => { this.#upgrade(t) }, Math.max(0, this.#upgradeAt - Date.now()))
  }

  /** Close the fallback's connection and open the first transport, resuming from lastId. */
  #upgrade (t                 )       {
    this.#upgradeTimer = null
    if (!this.#running || this.#current !== t) return
    this.#upgradeAt = null
    this.#upgradeDelay = Math.min(MAX_UPGRADE_DELAY, 2 * this.#upgradeDelay)
    this.#index = 0
    let first = 0
    while (!this.#betterThan(first + 1)) first++
    this.#reconnectNow(t, 'trying the transports ahead again', this.#order[first] )
  }

  /**
   * Leave a working connection on purpose (a token renewal, an upgrade): close it, tell the app
   * (`disconnect`, `retry`), and connect at once from #index, resuming from lastId.
   */
  #reconnectNow (t                 , reason        , next               )       {
    const name = this.#currentName
    this.#current = null
    this.#clearRenew()
    this.#clearUpgrade()
    t.close()
    if (this.#timer !== null) clearTimeout(this.#timer)
    const gen = this.#generation
    if (this.connected) {
      this.connected = false
      this.#emit('disconnect', { transport: name, reason, delay: 0, hint: null })
    }
    if (!this.#running || gen !== this.#generation) return
    this.#emit('retry', { transport: name, reason, delay: 0, hint: null, next, failed: false })
    if (!this.#running || gen !== this.#generation) return
    this.#connect()
  }

  #open ()       {
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
    this.#usedSerial = this.#tokenSerial
    this.#scheduleRenew(t)
    t.open(this.lastId, this.#token)
  }

  #callbacks ()                     {
    // each attempt gets its own callbacks; ones from a closed attempt are ignored, also after a
    // stop() and start() made from inside a handler (its transport may still be reading the rest
    // of a chunk or a frame)
    let live = true
    const self = this
    const gen = this.#generation
    const owner = ()          => live && self.#running && gen === self.#generation
    return {
      onOpen () {
        if (!owner()) return
        self.#openedAt = Date.now()
        // the server accepted the credential (unless a newer one has come since)
        if (self.#usedSerial === self.#tokenSerial) self.#fresh = false
        const name = self.#currentName
        self.connected = true
        if (self.transport !== name) {
          const prev = self.transport
          self.transport = name
          self.#emit('transport', name, prev)
        }
        self.#emit('connect', { transport: name })
        if (owner() && self.#current !== null) self.#scheduleUpgrade(self.#current)
      },
      onMessage (data                      , meta               ) {
        if (!owner()) return
        self.#delivered++
        self.#deliver(data, meta, self.#currentName )
      },
      onMessages (list                                              ) {
        if (!owner()) return
        self.#held = { list, next: 0, transport: self.#currentName  }
        self.#drainHeld()
      },
      onGap (requested        , resumed                    ) {
        if (!owner()) return
        // the channel that lost messages is the bracketed one in `requested` (docs/api.md 12.1):
        // the served message may come from another one (a loss its id would hide)
        self.#emit('gap', { requested, resumed, channel: self.channels[activePosition(requested)], transport: self.#currentName  })
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
    this.#clearRenew()
    this.#clearUpgrade()
    if (info.auth !== null) {
      this.#authEnded(name, info, info.auth)
      return
    }
    // a connection that opened and then carried messages, lasted, or was ended by the server in
    // protocol proves the transport works on this path; one that died at once does not
    const lasted = info.opened && (this.#delivered > 0 || (this.#openedAt > 0 && Date.now() - this.#openedAt >= this.#opts.connectTimeout))
    const worked = info.opened && !info.fallback && (info.clean || lasted)
    // the first transport worked on this path again: a later fallback waits upgradeAfter anew
    if (worked && !this.#betterThan(this.#index)) this.#upgradeDelay = this.#opts.upgradeAfter
    if (info.badCursor) {
      // the server refused the cursor (400): the client starts over from the oldest buffered
      // message, which may repeat some and cannot say what it missed; the app is told, as for a gap
      // (the URL's own cursor, where the client had none)
      const requested = this.lastId ?? queryOf(this.#ctx.url, 'last_event_id')
      this.resetCursor()
      if (requested !== null) this.#emit('gap', { requested, resumed: undefined, channel: this.channels.length > 1 ? undefined : this.channels[0], transport: name })
    }
    let delay
    let failed = false
    const backoff = ()         => backoffDelay(this.#attempt++, this.#opts.minDelay, this.#opts.maxDelay, this.#opts.random, info.hint)
    // only a connection that carried messages or lasted starts the backoff over: one the server
    // ends in protocol right after it opened (a close 1011, a proxy's 1000) keeps backing off
    if (lasted) this.#attempt = 0
    if (info.refused || info.badCursor) {
      // the server is there and asked us to wait: same transport, not before its hint (after a
      // connection that lasted, such as a slow consumer's overflow, from the shortest delay again)
      delay = backoff()
    } else if (worked) {
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
    // a listener may stop() and start() again: that start's connection is the client's now, and
    // this one schedules nothing more (it would open a second, which stop() never closes)
    const gen = this.#generation
    if (this.connected) {
      this.connected = false
      this.#emit('disconnect', { transport: name, reason: info.reason, delay, hint: info.hint })
    }
    if (!this.#running || gen !== this.#generation) return
    this.#emit('retry', { transport: name, reason: info.reason, delay, hint: info.hint, next: this.#order[this.#index] , failed })
    if (!this.#running || gen !== this.#generation) return
    this.#timer = setTimeout(() => { this.#connect() }, delay)
  }

  /**
   * 401/403 (a refusal, or the server ended the connection for its token). Never a fallback. With a
   * token that no connection has proven since it was obtained, it is final: one `auth` event, and
   * the client stops. Otherwise (the token expired, was revoked, or went stale while we were away):
   * a fresh token, and at once the same transport again, resuming from lastId.
   */
  #authEnded (name               , info           , auth         )       {
    const now = Date.now()
    // a renewal brought a newer token while this connection ended: use it, nothing is decided yet
    const newer = this.#usedSerial !== this.#tokenSerial
    // a parked long-poll (not yet counted as open) that the server ended at the token's own exp
    const atExp = auth.status === 401 && this.#tokenExp !== null && now >= this.#tokenExp - EXPIRY_SLACK
    const ownExpiry = atExp && this.#tokenExp  - this.#tokenAt >= MIN_TOKEN_LIFE
    // a token that had under MIN_TOKEN_LIFE to live when the client got it, ended at its exp: a
    // source that hands out stale tokens, refused, whether or not a connection opened with it (or
    // the client would reconnect at once, again and again)
    const stale = atExp && !ownExpiry
    if (!newer && ((this.#fresh && !ownExpiry) || stale)) {
      this.#running = false
      this.#generation++
      if (this.connected) {
        this.connected = false
        this.#emit('disconnect', { transport: name, reason: info.reason, delay: -1, hint: info.hint })
      }
      this.#emit('auth', { status: auth.status, reason: auth.reason, error: auth.error, transport: name })
      return
    }
    if (!newer) this.#refresh = true
    const gen = this.#generation
    if (this.connected) {
      this.connected = false
      this.#emit('disconnect', { transport: name, reason: info.reason, delay: 0, hint: info.hint })
    }
    if (!this.#running || gen !== this.#generation) return
    this.#emit('retry', { transport: name, reason: info.reason, delay: 0, hint: info.hint, next: name, failed: !info.opened })
    if (!this.#running || gen !== this.#generation) return
    this.#timer = setTimeout(() => { this.#connect() }, 0)
  }
}

export default Parkline
