// Idempotent publishing (Parkline extension): a publish that carries an `Idempotency-Key` already
// seen on its channel inside `idempotencyWindow` answers the original message's id and publishes
// nothing. The in-memory and worker engines keep the keys here (the worker engine in each channel's
// owner worker); the Redis engine keeps them in Redis, with the channel's keys.
//
// Bounded: at most MAX_KEYS per process and MAX_BYTES of them, the least recently published leaving first (lru-cache,
// which checks ages on read and sets no timer per entry). Past that many keys inside one window a
// retry of the oldest may publish again; the limit is documented with the option. Keys past their
// window leave a few hundred per second from the least recently used end (sweep, from the shared
// timer), so a burst of keyed publishes does not hold its memory after the window has passed.
// (lru-cache's purgeStale walks every entry: 73 ms for 100,000 on this host with none stale.)
//
// The cache is made at the first key: lru-cache allocates its arrays for `max` entries up front,
// 4.2 MB for 100,000 (heap and typed arrays, measured), which every worker process would otherwise
// hold whether or not any publisher sends an Idempotency-Key.
//
// A key is kept with its message's fingerprint (a digest of its body, Content-Type and event): a
// retry carries the same message, and a key sent again with another one is a publisher's mistake
// that would otherwise lose that message without a word. It is answered 422 (as the IETF
// Idempotency-Key draft asks) and publishes nothing.
import { createHash } from 'node:crypto'
import { LRUCache } from 'lru-cache'

export const MAX_KEYS = 100_000
/**
 * And at most this many bytes of keys, channel ids and ids (a key is up to 255 bytes and a channel
 * id up to maxChannelIdLength, so 100,000 long ones would otherwise hold over 100 MB).
 */
export const MAX_BYTES = 32 * 1024 * 1024
/**
 * What an entry holds beyond its strings' bytes (lru-cache's slots and Map entry, the strings'
 * headers, the id's own string and its Map entry in the per-channel index): measured, 280 bytes of
 * heap an entry for a 36-character key on a short channel id, 454 for a 212-character one
 * (100,000 entries, after a full GC; the arrays lru-cache allocates up front, 4.2 MB, not counted).
 */
const ENTRY_OVERHEAD = 200
/** Keys past their window dropped per sweep (one a second) at most ... */
const SWEEP_BUDGET = 500
/** ... of at most this many looked at, from the least recently used end. */
const SWEEP_SCAN = 4000

/** What a key published: the message's id and fingerprint. */
export interface Seen { id: string, fingerprint: string }

export class IdempotencyKeys {
  readonly #ttl: number
  #seen: LRUCache<string, string> | null = null
  /**
   * Each channel's entries by their message's id (id to cache key), kept as the cache adds,
   * changes and drops them: `of` looks up a buffer's ids, not every key of a hot channel.
   */
  readonly #byChannel = new Map<string, Map<string, string>>()

  constructor (windowSeconds: number) {
    this.#ttl = windowSeconds * 1000
  }

  /** Keys held (some may be past their window, until a sweep or a read drops them). */
  get size (): number {
    return this.#seen?.size ?? 0
  }

  /**
   * Drop keys whose window has passed, up to SWEEP_BUDGET of them among the SWEEP_SCAN least
   * recently used. Keys come in publish order, so those are the oldest, but for a key read again
   * since (moved to the other end) and one handed on with less of its window left: such a key
   * behind SWEEP_SCAN younger ones stays until they go (at most about one more window), and is
   * never honoured meanwhile (every read asks for keys inside their window).
   */
  sweep (): void {
    const seen = this.#seen
    if (seen === null || seen.size === 0) return
    const stale: string[] = []
    let scanned = 0
    for (const k of seen.rkeys()) {
      if (stale.length >= SWEEP_BUDGET || ++scanned > SWEEP_SCAN) break
      if (seen.getRemainingTTL(k) <= 0) stale.push(k)
    }
    for (const k of stale) seen.delete(k)
  }

  /** What a key published on this channel inside the window, if anything. */
  get (channel: string, key: string): Seen | undefined {
    const v = this.#seen?.get(channel + '\n' + key, { allowStale: false })
    if (v === undefined) return undefined
    const sp = v.indexOf(' ')
    return { id: v.slice(0, sp), fingerprint: v.slice(sp + 1) }
  }

  /** `ttlMs`: what is left of the window for a key another process saw first (its `of`). */
  set (channel: string, key: string, id: string, fingerprint: string, ttlMs = this.#ttl): void {
    if (this.#ttl <= 0 || ttlMs <= 0) return
    // (dispose: an entry dropped, or its value replaced: its old id leaves the index)
    // (allowStale: what the sweep walks; every read asks for keys inside their window only)
    this.#seen ??= new LRUCache<string, string>({ max: MAX_KEYS, maxSize: MAX_BYTES, sizeCalculation: entrySize, ttl: this.#ttl, updateAgeOnGet: false, allowStale: true, dispose: (v, k) => { this.#unindex(k, v) } })
    const k = channel + '\n' + key
    // (an entry is far under maxSize: a key is at most 255 bytes, a channel id maxChannelIdLength)
    this.#seen.set(k, id + ' ' + fingerprint, { ttl: ttlMs })
    let ids = this.#byChannel.get(channel)
    if (ids === undefined) this.#byChannel.set(channel, ids = new Map())
    ids.set(id, k)
  }

  #unindex (k: string, v: string): void {
    // the last LF: a channel id may hold LFs (any byte but NUL), a key never does (visible ASCII)
    const channel = k.slice(0, k.lastIndexOf('\n'))
    const ids = this.#byChannel.get(channel)
    if (ids === undefined) return
    const id = v.slice(0, v.indexOf(' '))
    if (ids.get(id) !== k) return
    ids.delete(id)
    if (ids.size === 0) this.#byChannel.delete(channel)
  }

  /** Message ids indexed, over every channel: no more than the keys held (a bound kept). */
  get indexed (): number {
    let n = 0
    for (const ids of this.#byChannel.values()) n += ids.size
    return n
  }

  /** Whether a key is held for this channel inside the window (its place in the order kept). */
  holds (channel: string, key: string): boolean {
    return this.#seen?.peek(channel + '\n' + key, { allowStale: false }) !== undefined
  }

  /**
   * The keys held for `channel` of the messages `ids` (a buffer's), each with what is left of its
   * window: for a worker to hand them on with the channel's messages (to a replica, to the
   * channel's next owner). O(ids), however many keys the channel has; the order of use is left
   * as it is.
   */
  of (channel: string, ids: Iterable<string>): HeldKey[] {
    const seen = this.#seen
    const byId = this.#byChannel.get(channel)
    if (seen === null || byId === undefined) return []
    const out: HeldKey[] = []
    for (const id of ids) {
      const k = byId.get(id)
      if (k === undefined) continue
      const v = seen.peek(k, { allowStale: false })
      const left = Math.floor(seen.getRemainingTTL(k))
      if (v === undefined || left <= 0) continue
      const sp = v.indexOf(' ')
      // (the index follows the entry's value: this is its id)
      out.push([k.slice(channel.length + 1), v.slice(0, sp), v.slice(sp + 1), left])
    }
    return out
  }
}

/** A key as handed on: the key, its message's id and fingerprint, the ms left of its window. */
export type HeldKey = [string, string, string, number]

function entrySize (value: string, key: string): number {
  return key.length + value.length + ENTRY_OVERHEAD
}

/**
 * A message's fingerprint for its Idempotency-Key: 128 bits of SHA-256 over its Content-Type, event
 * and body (each length-prefixed, so no two messages share one by where their parts meet).
 */
export function fingerprint (data: Buffer, contentType: string | null, event: string | null): string {
  const h = createHash('sha256')
  h.update(contentType === null ? '-' : String(Buffer.byteLength(contentType)) + ':' + contentType)
  h.update(event === null ? '-' : String(Buffer.byteLength(event)) + ':' + event)
  h.update(String(data.length) + ':')
  h.update(data)
  return h.digest('base64url').slice(0, 22)
}

/**
 * A key as kept and matched: a publisher with a token's `sub` gets a digest of it before its keys,
 * so one user's key never meets another's (one could otherwise have another's publish refused
 * `422`, or answered as a retry of a message it never sent: the IETF draft scopes keys to their
 * client). The backend's (an API key), a local process's, an authorize request's and a token
 * without `sub` are kept as sent, one scope those share. The digest and the key are joined by a
 * space, which a key as sent never holds (validIdempotencyKey), so no key sent unscoped is ever
 * another user's scoped one.
 */
export function scopedIdempotencyKey (key: string, sub: string | null): string {
  if (sub === null) return key
  return createHash('sha256').update(sub).digest('base64url').slice(0, 22) + ' ' + key
}

/** `Idempotency-Key`: 1 to 255 visible ASCII characters (no spaces, no controls). */
export function validIdempotencyKey (v: string): boolean {
  return /^[\x21-\x7e]{1,255}$/.test(v)
}
