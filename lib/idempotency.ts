// Idempotent publishing (Parkline extension): a publish that carries an `Idempotency-Key` already
// seen on its channel inside `idempotencyWindow` answers the original message's id and publishes
// nothing. The in-memory and worker engines keep the keys here (the worker engine in each channel's
// owner worker); the Redis engine keeps them in Redis, with the channel's keys.
//
// Bounded: at most MAX_KEYS per process, the least recently published leaving first (lru-cache,
// which checks ages on read and sets no timer per entry). Past that many keys inside one window a
// retry of the oldest may publish again; the limit is documented with the option.
//
// The cache is made at the first key: lru-cache allocates its arrays for `max` entries up front,
// 4.2 MB for 100,000 (heap and typed arrays, measured), which every worker process would otherwise
// hold whether or not any publisher sends an Idempotency-Key.
import { LRUCache } from 'lru-cache'

export const MAX_KEYS = 100_000

export class IdempotencyKeys {
  readonly #ttl: number
  #seen: LRUCache<string, string> | null = null

  constructor (windowSeconds: number) {
    this.#ttl = windowSeconds * 1000
  }

  /** The id a key published on this channel inside the window, if any. */
  get (channel: string, key: string): string | undefined {
    return this.#seen?.get(channel + '\n' + key)
  }

  set (channel: string, key: string, id: string): void {
    if (this.#ttl <= 0) return
    this.#seen ??= new LRUCache<string, string>({ max: MAX_KEYS, ttl: this.#ttl, updateAgeOnGet: false })
    this.#seen.set(channel + '\n' + key, id)
  }
}

/** `Idempotency-Key`: 1 to 255 visible ASCII characters (no spaces, no controls). */
export function validIdempotencyKey (v: string): boolean {
  return /^[\x21-\x7e]{1,255}$/.test(v)
}
