// `app.parkline`: the small, typed API a host app uses from its own code. Every call goes through
// the configured engine (in-memory, owner workers, Redis), so an id returned here is the id every
// worker and node of the deployment uses, and a consumer sees what an SSE subscriber sees.
import type { ChannelInfo } from './channel-info.ts'
import type { ConsumerTransport, ParklineMessage } from './consumer.ts'
import type { Core } from './core.ts'
import { checkReload, publicKeyText } from './access.ts'
import { CREDENTIALS, type Credentials } from './config.ts'
import { ConfigError, ERRORS, ParklineError } from './errors.ts'
import { validIdempotencyKey } from './idempotency.ts'
import { requestCursor } from './http.ts'
import { INVALID } from './message-id.ts'
import type { Subscriber } from './subscriber.ts'

export type { ChannelInfo } from './channel-info.ts'
export type { ParklineMessage } from './consumer.ts'

export interface PublishOptions {
  /**
   * Stored verbatim and sent with the message (Content-Type of a publish request). Visible ASCII,
   * space, tab and latin1 characters only (a header value): anything else throws
   * `PKL_ERR_BAD_REQUEST` (400).
   */
  contentType?: string
  /** SSE `event:` name (X-EventSource-Event of a publish request); the same characters as `contentType`. */
  event?: string
  /**
   * Idempotency-Key: a retry with the same key inside idempotencyWindow publishes nothing and
   * answers the original id (`replayed: true`).
   */
  idempotencyKey?: string
}

export interface Published {
  /** The message id (`seconds:tag`), the same on every worker and node. */
  id: string
  /** 201 when the channel had a subscriber anywhere in the deployment, else 202. */
  status: 201 | 202
  info: ChannelInfo
  /** True when an idempotencyKey seen inside the window answered; nothing was published. */
  replayed: boolean
}

export interface SubscribeOptions {
  /** Resume after this id (an SSE `Last-Event-ID`); omitted: from the oldest buffered message. */
  lastEventId?: string
  /** Stops the subscription; the iterator then ends. */
  signal?: AbortSignal
  /** Live messages held for a consumer that has not asked for them yet; past it the iterator throws. Default 1000. */
  queueLimit?: number
}

/** The public face of a running Parkline (`app.parkline`). */
export interface Parkline {
  publish (channel: string, data: string | Uint8Array, options?: PublishOptions): Promise<Published>
  /** Channel info, or null when the channel does not exist. */
  info (channel: string): Promise<ChannelInfo | null>
  /** Delete the channel everywhere (its subscribers get 410); the info it had, or null. */
  delete (channel: string): Promise<ChannelInfo | null>
  /**
   * Messages of one channel, or of several (multiplexed, with vector ids), in order, from the
   * buffer then live, as an async iterator. Break out of the loop (or abort) to stop.
   */
  subscribe (channels: string | readonly string[], options?: SubscribeOptions): AsyncIterableIterator<ParklineMessage>
  /**
   * Take new credentials without a restart (what a SIGHUP does standalone): `apiKey`, `jwtSecret`,
   * `jwtPreviousSecret`, `jwtPublicKey`, `jwtIssuer`, `jwtAudience`, `jwtLeeway`, `jwtMaxLifetime`;
   * the ones left out stay. From the next request on only these admit. Throws (PKL_ERR_CONFIG,
   * nothing applied) for a bad value, another option, or turning API keys or JWT on or off.
   * Resolves to the names that changed.
   */
  reloadCredentials (changes: Partial<Credentials>): Promise<string[]>
}

/** `changes` holds credentials only, each of its type (a host app's own code calls this). */
function checkCredentialTypes (changes: unknown): Partial<Credentials> {
  if (typeof changes !== 'object' || changes === null || Array.isArray(changes)) throw new ConfigError('reloadCredentials takes an object of credentials')
  const c = changes as Record<string, unknown>
  const other = Object.keys(c).filter((k) => !(CREDENTIALS as readonly string[]).includes(k))
  if (other.length > 0) throw new ConfigError(`reloadCredentials takes ${CREDENTIALS.join(', ')}; not ${other.join(', ')} (a restart applies other options)`)
  for (const [k, v] of Object.entries(c)) {
    if (v === undefined) continue
    const ok = k === 'apiKey'
      ? Array.isArray(v) && v.every((x) => typeof x === 'string')
      : k === 'jwtLeeway' || k === 'jwtMaxLifetime' ? Number.isSafeInteger(v) : typeof v === 'string'
    if (!ok) throw new ConfigError(`reloadCredentials: ${k} must be ${k === 'apiKey' ? 'an array of strings' : k === 'jwtLeeway' || k === 'jwtMaxLifetime' ? 'an integer' : 'a string'}`)
  }
  return Object.fromEntries(Object.entries(c).filter(([, v]) => v !== undefined)) as Partial<Credentials>
}

/**
 * The channel key of an id given as text: keys are byte strings (one char per byte, latin1, as the
 * publisher URL decodes them), so `café` here is `/pub/caf%C3%A9` on the wire.
 */
function toKey (core: Core, channel: unknown): string {
  if (typeof channel !== 'string' || channel.length === 0) throw new ParklineError('PKL_ERR_NO_CHANNEL_ID', 'a channel id is a non-empty string', 400)
  if (channel.indexOf('\0') !== -1) throw new ParklineError('PKL_ERR_BAD_CHANNEL_ID', 'a channel id may not contain NUL', 400)
  const key = Buffer.from(channel, 'utf8').toString('latin1')
  if (key.length > core.opts.maxChannelIdLength) throw new ParklineError('PKL_ERR_CHANNEL_ID_TOO_LONG', `channel id longer than ${core.opts.maxChannelIdLength} bytes`, 403)
  return key
}

/**
 * A Content-Type or event name given to `publish`: what a header value may hold (visible ASCII,
 * space, tab, bytes 0x80-0xFF as latin1 characters). Both are written as they are into answers'
 * heads and SSE `event:` lines, where a CR or LF would end the head or the field: HTTP publishers
 * cannot send one (Node's parser and the raw path refuse them), and neither can the API.
 */
function headerText (value: unknown, what: string): string | null {
  if (value === undefined || value === null) return null
  if (typeof value !== 'string' || !/^[\t\x20-\x7e\x80-\xff]*$/.test(value)) {
    throw new ParklineError('PKL_ERR_BAD_REQUEST', `${what} must be a string of visible ASCII, space, tab or latin1 characters (no CR, LF or other control)`, 400)
  }
  return value
}

/** After the host's app.close(): a clear error, not a publish nobody receives or an iterator that never ends. */
function open (core: Core): void {
  if (core.closed) throw new ParklineError(ERRORS.CLOSED.code, ERRORS.CLOSED.message, ERRORS.CLOSED.statusCode)
}

function fromKey (key: string): string {
  return Buffer.from(key, 'latin1').toString('utf8')
}

export function createFacade (core: Core, consumers: ConsumerTransport): Parkline {
  return {
    async publish (channel, data, options = {}) {
      open(core)
      const key = toKey(core, channel)
      // the caller's bytes are copied: what it does with its array after cannot change the message
      // (anything else, from JavaScript or past a cast: a short 400, not Node's TypeError)
      if (typeof data !== 'string' && (!ArrayBuffer.isView(data) || data instanceof DataView)) throw new ParklineError('PKL_ERR_BAD_REQUEST', `data must be a string or a Uint8Array (a Buffer), not ${data === null ? 'null' : typeof data === 'object' ? (data as object).constructor?.name ?? 'object' : typeof data}`, 400)
      const body = typeof data === 'string' ? Buffer.from(data) : Buffer.copyBytesFrom(data)
      if (body.length > core.opts.maxMessageSize) throw new ParklineError('PKL_ERR_PAYLOAD_TOO_LARGE', `message larger than maxMessageSize (${core.opts.maxMessageSize} bytes)`, 413)
      const idem = options.idempotencyKey ?? null
      if (idem !== null && !validIdempotencyKey(idem)) throw new ParklineError(ERRORS.BAD_IDEMPOTENCY_KEY.code, ERRORS.BAD_IDEMPOTENCY_KEY.message, 400)
      const contentType = headerText(options.contentType, 'contentType')
      const event = headerText(options.event, 'event')
      const r = await core.engine.publish(key, body, contentType, event, core.opts.idempotencyWindow > 0 ? idem : null)
      if (r.conflict === true) throw new ParklineError(ERRORS.IDEMPOTENCY_KEY_REUSED.code, ERRORS.IDEMPOTENCY_KEY_REUSED.message, 422)
      return { id: r.info.lastMessageId, status: r.status, info: r.info, replayed: r.replayed === true }
    },
    async info (channel) {
      open(core)
      return await core.engine.info(toKey(core, channel))
    },
    async delete (channel) {
      open(core)
      return await core.engine.delete(toKey(core, channel))
    },
    subscribe (channels, options = {}) {
      open(core)
      const list = typeof channels === 'string' ? [channels] : [...channels]
      if (list.length === 0) throw new ParklineError('PKL_ERR_NO_CHANNEL_ID', 'subscribe needs at least one channel', 400)
      const keys = list.map((c) => toKey(core, c))
      if (keys.length > core.opts.maxChannelsPerSubscription) {
        throw new ParklineError('PKL_ERR_TOO_MANY_CHANNELS', `more than ${core.opts.maxChannelsPerSubscription} channels`, 403)
      }
      const headers = options.lastEventId === undefined ? {} : { 'last-event-id': options.lastEventId }
      const cursor = requestCursor(headers, '', keys.length)
      if (cursor === INVALID) throw new ParklineError('PKL_ERR_BAD_MESSAGE_ID', `invalid lastEventId ${JSON.stringify(options.lastEventId)}`, 400)
      const queueLimit = options.queueLimit ?? 1000
      if (!Number.isInteger(queueLimit) || queueLimit < 1) throw new ParklineError('PKL_ERR_CONFIG', 'queueLimit must be an integer >= 1', 400)
      return iterate(consumers, consumers.open(keys, cursor, queueLimit), options.signal)
    },
    async reloadCredentials (changes) {
      open(core)
      const c = checkCredentialTypes(changes)
      // a key file read once: what is checked is what is taken
      if (c.jwtPublicKey !== undefined) c.jwtPublicKey = publicKeyText(c.jwtPublicKey)
      const next = { ...core.opts, ...c }
      await checkReload(core.opts, next)
      return core.access?.reload(next) ?? []
    }
  }
}

function iterate (consumers: ConsumerTransport, sub: Subscriber, signal: AbortSignal | undefined): AsyncIterableIterator<ParklineMessage> {
  const onAbort = (): void => { consumers.stop(sub) }
  if (signal !== undefined) {
    if (signal.aborted) consumers.stop(sub)
    else signal.addEventListener('abort', onAbort, { once: true })
  }
  const cleanup = (): void => { signal?.removeEventListener('abort', onAbort) }
  const it: AsyncIterableIterator<ParklineMessage> = {
    async next () {
      try {
        const r = await consumers.next(sub)
        if (r.done === true) cleanup()
        else r.value.channel = fromKey(r.value.channel)
        return r
      } catch (err) {
        cleanup()
        throw err
      }
    },
    async return () {
      consumers.stop(sub)
      cleanup()
      return { value: undefined, done: true }
    },
    [Symbol.asyncIterator] () { return it }
  }
  return it
}
