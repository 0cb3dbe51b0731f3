// Message ids and cursors: PROTOCOL.md §2.
//
// A single-channel id is `seconds:tag`. A multiplexed id is `seconds:tag,tag,…` with the sending
// channel's tag in brackets and `-` for "no message from that channel in this second".
// A cursor is what a subscriber resumes from: one (seconds, tag) pair per position, tag -1 meaning
// "every message of that second" (so (s, -1) sorts just before (s, 0)).

/** Largest tag Parkline issues or parses (tags never wrap; §2.1). */
export const MAX_TAG = 0x7fffffff
const MAX_SECONDS = 9223372036854775807n
/** Last-Event-ID / ?last_event_id= values longer than this are ignored (§2.3, as Nchan). */
export const MAX_CURSOR_SOURCE_LENGTH = 128

export interface Cursor {
  /** Seconds of the cursor; 0 means "from the oldest buffered message". */
  time: number
  /** One tag per position; -1 is `-`. */
  tags: number[]
  /** Position of the bracketed tag, or -1. */
  active: number
  /** True when a client sent it (seconds > 0); only explicit cursors can have a gap (§11a). */
  explicit: boolean
}

/** Result markers for cursor parsing. */
export const ABSENT = 0
export const INVALID = 1
export type ParseResult = Cursor | typeof ABSENT | typeof INVALID

export function defaultCursor (n: number): Cursor {
  return { time: 0, tags: new Array<number>(n).fill(-1), active: -1, explicit: false }
}

function hexValue (c: number): number {
  if (c >= 48 && c <= 57) return c - 48
  if (c >= 65 && c <= 70) return c - 55
  if (c >= 97 && c <= 102) return c - 87
  return -1
}

/**
 * Percent-decode to raw bytes held one per char (latin1): `%` plus two hex digits is decoded,
 * any other `%` is kept. Input comes from Node's HTTP parser, which hands bytes over as latin1.
 */
export function percentDecode (s: string): string {
  if (s.indexOf('%') === -1) return s
  const bytes = Buffer.from(s, 'latin1')
  const out = Buffer.allocUnsafe(bytes.length)
  let j = 0
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!
    if (b === 37 && i + 2 < bytes.length) {
      const h = hexValue(bytes[i + 1]!)
      const l = hexValue(bytes[i + 2]!)
      if (h >= 0 && l >= 0) {
        out[j++] = (h << 4) | l
        i += 2
        continue
      }
    }
    out[j++] = b
  }
  return out.toString('latin1', 0, j)
}


/**
 * Tag parse P(text, n) (§2.3): digits build the value, `-` makes it -1, `[`/`]` mark the active
 * position, every other byte is ignored. Returns null for a malformed list.
 */
export function parseTags (text: string, n: number): { tags: number[], active: number } | null {
  const tags: number[] = []
  let value = 0
  let negative = false
  let active = -1
  let opened = false
  let closed = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 44) { // ,
      tags.push(negative ? -1 : value)
      value = 0
      negative = false
    } else if (c >= 48 && c <= 57) {
      value = value * 10 + (c - 48)
      if (value > MAX_TAG) value = MAX_TAG
    } else if (c === 45) { // -
      negative = true
    } else if (c === 91) { // [
      if (opened) return null
      opened = true
      active = tags.length
    } else if (c === 93) { // ]
      if (closed || !opened) return null
      closed = true
    }
  }
  tags.push(negative ? -1 : value)
  if (tags.length > n) return null
  if (tags.length >= 2 && active < 0) return null
  while (tags.length < n) tags.push(-1)
  return { tags, active }
}

/**
 * Compound parse C(value) (§2.3) for Last-Event-ID, ?last_event_id=, a lone If-None-Match and the
 * Etag request header.
 */
export function parseCompound (raw: string, n: number): ParseResult {
  const v = percentDecode(raw.trim())
  if (v.length === 0) return ABSENT
  const colon = v.indexOf(':')
  if (colon === -1) return ABSENT
  const seconds = parseSeconds(v.slice(0, colon))
  if (seconds < 0) return INVALID
  const parsed = parseTags(v.slice(colon + 1), n)
  if (parsed === null) return INVALID
  return makeCursor(seconds, parsed.tags, parsed.active)
}

/** Seconds: one or more ASCII digits, value ≤ 2⁶³−1; -1 when malformed. */
function parseSeconds (s: string): number {
  if (s.length === 0 || s.length > 19) return -1
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 48 || c > 57) return -1
  }
  if (s.length === 19 && BigInt(s) > MAX_SECONDS) return -1
  return Number(s)
}

export function makeCursor (time: number, tags: number[], active: number): Cursor {
  if (time === 0) return { time: 0, tags: tags.fill(-1), active: -1, explicit: false }
  return { time, tags, active, explicit: true }
}

/** Single-channel id. */
export function formatId (time: number, tag: number): string {
  return time + ':' + (tag < 0 ? '-' : tag)
}

/** Multiplexed tag list with the active position bracketed: `[1],0,-`. */
export function formatTags (tags: ArrayLike<number>, active: number): string {
  let s = ''
  for (let i = 0; i < tags.length; i++) {
    if (i > 0) s += ','
    const t = tags[i]!
    const text = t < 0 ? '-' : String(t)
    s += i === active ? '[' + text + ']' : text
  }
  return s
}

/** The id a multiplexed (n > 1) or single subscription sees. */
export function formatVector (time: number, tags: ArrayLike<number>, active: number): string {
  return tags.length === 1 ? formatId(time, tags[0]!) : time + ':' + formatTags(tags, active)
}

/** Cursor in canonical form (§11a). */
export function formatCursor (c: Cursor, active = c.active): string {
  return formatVector(c.time, c.tags, active)
}

/** a > b, comparing (seconds, tag). */
export function idAfter (aTime: number, aTag: number, bTime: number, bTag: number): boolean {
  return aTime > bTime || (aTime === bTime && aTag > bTag)
}

// ---- HTTP dates (If-Modified-Since / Last-Modified) -------------------------------------------

const MONTHS = 'JanFebMarAprMayJunJulAugSepOctNovDec'

/** Seconds since the epoch of an IMF-fixdate, RFC 850 or asctime date; NaN when unparseable. */
export function parseHttpDate (value: string): number {
  const v = value.trim()
  // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
  let m = /^[A-Za-z]{3}, (\d{2}) ([A-Za-z]{3}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT$/.exec(v)
  if (m === null) {
    // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
    m = /^[A-Za-z]+, (\d{2})-([A-Za-z]{3})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) GMT$/.exec(v)
    if (m !== null) {
      const yy = Number(m[3])
      m[3] = String(yy < 70 ? 2000 + yy : 1900 + yy)
    }
  }
  if (m === null) {
    // asctime: Sun Nov  6 08:49:37 1994
    const a = /^[A-Za-z]{3} ([A-Za-z]{3}) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) (\d{4})$/.exec(v)
    if (a !== null) m = [a[0], a[2]!, a[1]!, a[6]!, a[3]!, a[4]!, a[5]!] as unknown as RegExpExecArray
  }
  if (m === null) return NaN
  const month = MONTHS.indexOf(m[2]!)
  if (month < 0 || month % 3 !== 0) return NaN
  const ms = Date.UTC(Number(m[3]), month / 3, Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6]))
  return Math.floor(ms / 1000)
}

// Messages of one second share their Last-Modified: the last second formatted is kept (one Date
// and one toUTCString per second of publishing instead of one per message; 1% of a long-poll
// one-to-one profile).
let lastDateSeconds = NaN
let lastDate = ''

export function formatHttpDate (seconds: number): string {
  if (seconds !== lastDateSeconds) {
    lastDate = new Date(seconds * 1000).toUTCString()
    lastDateSeconds = seconds
  }
  return lastDate
}
