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
const MDAY = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]

/** The `n` ASCII digits at `p` as a number, or -1. */
function digitsAt (v: string, p: number, n: number): number {
  let x = 0
  for (let i = 0; i < n; i++) {
    const d = v.charCodeAt(p + i) - 48
    if (!(d >= 0 && d <= 9)) return -1
    x = x * 10 + d
  }
  return x
}

/**
 * Seconds since the epoch of an HTTP date (IMF-fixdate, RFC 850 or asctime form); NaN when
 * unparseable. Read as nginx reads `If-Modified-Since` for Nchan (ngx_parse_http_time): the
 * weekday is not checked, and what follows the time (the year, in asctime form) is not looked at:
 * `+0000`, `UTC` or no zone at all read as GMT. A long-poll client that writes the date back in
 * another form than it got it (PHP's `date('r')`, Python's `formatdate()`) then walks the buffer as
 * it does with Nchan, instead of starting over at the oldest message every time.
 */
export function parseHttpDate (value: string): number {
  const v = value.trim()
  const end = v.length
  // the form: a comma (IMF-fixdate, RFC 850) or a space (asctime) first
  let p = 0
  let asctime = false
  for (; p < end; p++) {
    const c = v.charCodeAt(p)
    if (c === 44) break
    if (c === 32) { asctime = true; break }
  }
  for (p++; p < end && v.charCodeAt(p) === 32; p++);
  if (end - p < 18) return NaN
  let day = 32
  let year = -1
  let rfc850 = false
  if (!asctime) {
    day = digitsAt(v, p, 2)
    if (day < 0) return NaN
    p += 2
    const c = v.charCodeAt(p)
    if (c === 45) rfc850 = true
    else if (c !== 32 || end - p < 18) return NaN
    p++
  }
  // (nginx tells a month by one to three of its letters; here all three must be right)
  const m3 = MONTHS.indexOf(v.slice(p, p + 3))
  if (m3 < 0 || m3 % 3 !== 0) return NaN
  const month = m3 / 3
  p += 3
  if (!asctime && v[p] !== (rfc850 ? '-' : ' ')) return NaN
  p++
  if (!asctime) {
    if (rfc850) {
      year = digitsAt(v, p, 2)
      if (year < 0) return NaN
      year += year < 70 ? 2000 : 1900
      p += 2
    } else {
      year = digitsAt(v, p, 4)
      if (year < 0) return NaN
      p += 4
    }
  } else {
    if (v[p] === ' ') p++
    day = digitsAt(v, p, 1)
    if (day < 0) return NaN
    p++
    if (v[p] !== ' ') {
      const d = digitsAt(v, p, 1)
      if (d < 0) return NaN
      day = day * 10 + d
      p++
    }
    if (end - p < 14) return NaN
  }
  if (v[p++] !== ' ') return NaN
  const hour = digitsAt(v, p, 2)
  if (hour < 0 || v[p + 2] !== ':') return NaN
  const min = digitsAt(v, p + 3, 2)
  if (min < 0 || v[p + 5] !== ':') return NaN
  const sec = digitsAt(v, p + 6, 2)
  if (sec < 0) return NaN
  p += 8
  if (asctime) {
    if (v[p++] !== ' ') return NaN
    year = digitsAt(v, p, 4)
    if (year < 0) return NaN
  }
  if (hour > 23 || min > 59 || sec > 59) return NaN
  if (day === 29 && month === 1) {
    if ((year & 3) !== 0 || (year % 100 === 0 && year % 400 !== 0)) return NaN
  } else if (day > MDAY[month]! || day === 0) return NaN
  return Date.UTC(year, month, day, hour, min, sec) / 1000
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

/**
 * Gap signals of one delivery, one per channel that lost messages (§11a): the requested ids joined
 * by a space, which no id holds. Each transport writes one signal per id (gapSignals).
 */
export function withGaps (a: string | null, b: string | null): string | null {
  return a === null ? b : b === null ? a : a + ' ' + b
}

/** The requested ids of a delivery's gap signals (withGaps). */
export function gapSignals (gap: string): string[] {
  return gap.split(' ')
}
