// Embedded (lib/plugin.ts): the headers the host app's hooks set on a subscriber's reply before
// Parkline took it (`reply.header()` or `reply.raw.setHeader()` in an onRequest or preHandler
// hook: @fastify/helmet's, a request id), as `Name: value\r\n` lines for the answers Parkline
// writes on the connection itself (a stream's head, a long-poll's answer, the WebSocket `101`).
// Headers Parkline writes on those answers, or that belong to the connection, or that tell a
// cache how to keep an answer (a user's long-poll answer is `private`), stay Parkline's; a header
// Node would refuse to write (a name that is no token, a value with a line break or a character
// past U+00FF) is left out. docs/api.md 14.2.

/** Parkline's own on a subscriber answer, the connection's, or a cache's: a host value is not added. */
const OWN = new Set(['age', 'allow', 'cache-control', 'connection', 'content-encoding', 'content-length', 'content-type', 'date', 'etag', 'expires',
  'keep-alive', 'last-modified', 'pragma', 'proxy-connection', 'retry-after', 'surrogate-control', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'vary',
  'www-authenticate'])
/** `X-Accel-*` (nginx: buffering, X-Accel-Expires), CDN-Cache-Control and its vendors' (RFC 9213). */
const OWN_PREFIXES = ['access-control-', 'parkline-', 'sec-websocket-', 'x-accel-']
const OWN_SUFFIX = 'cdn-cache-control'
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
/** What Node's checkInvalidHeaderChar refuses in a value. */
const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/

/** The block made last: a host whose hooks set the same headers on every request gets one string, shared by its subscribers. */
let last = ''

/** The host's headers of `headers` (Fastify's `reply.getHeaders()`) as header lines, '' where none is the host's to add. */
export function hostHeaderBlock (headers: Record<string, unknown>): string {
  let block = ''
  for (const name of Object.keys(headers)) {
    const value = headers[name]
    if (value === undefined || value === null || !TOKEN.test(name)) continue
    const lower = name.toLowerCase()
    if (OWN.has(lower) || OWN_PREFIXES.some((p) => lower.startsWith(p)) || lower.endsWith(OWN_SUFFIX)) continue
    for (const one of Array.isArray(value) ? value as unknown[] : [value]) {
      let s: string
      try {
        s = String(one)
      } catch {
        // (an object whose toString throws: Node would refuse it too)
        continue
      }
      if (!BAD_VALUE.test(s)) block += name + ': ' + s + '\r\n'
    }
  }
  if (block === last) return last
  last = block
  return block
}

/** `head` (a status line and header lines, then a blank line and maybe a body's start) with `lines` after its header lines. */
export function withHeaderLines (head: string, lines: string): string {
  if (lines === '') return head
  const end = head.indexOf('\r\n\r\n')
  return end === -1 ? head : head.slice(0, end + 2) + lines + head.slice(end + 2)
}
