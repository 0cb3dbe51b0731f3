// Hostile and odd clients, at random (seeded, so a failure replays): every kind of request this
// server takes, and malformed ones, pipelined in any order on one connection, cut at random
// points, followed by a FIN, a reset or nothing. The server must live through all of it (an
// uncaught exception or an unhandled rejection fails the test run), still answer, and keep
// nothing of those clients once they are gone: no subscriber, no connection. The standalone
// server with its raw connections and fast path, and through Fastify (as embedded); open, with
// access control that waits (JWTs), and at a subscriber limit that refuses. One run at a time, so
// its bursts do not starve the timing-sensitive tests of other files (Redis failovers).
import net from 'node:net'
import { once } from 'node:events'
import type { ExecutionContext } from 'ava'
import test from 'ava'
import { coreOf } from '../lib/plugin.ts'
import { AUTH_SERVER, mint } from './helpers/auth.ts'
import { rawRequest, startStandalone } from './helpers/server.ts'

const CONNECTIONS = 300
const AT_ONCE = 20

/** mulberry32: a small seeded PRNG, so a failing seed replays. */
function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

type Rng = () => number
const pick = <T>(r: Rng, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!

/** One request (or a malformed piece) as bytes; `token` is a valid subscriber JWT for channels c0..c3. */
function piece (r: Rng, token: string): string {
  const ch = pick(r, ['c0', 'c1', 'c2', 'c3', 'c0,c1', 'c%00', 'x'.repeat(1100), '', '..%2F', 'c1,c2,c3'])
  const auth = r() < 0.6 ? `Authorization: Bearer ${pick(r, [token, 'not-a-jwt', token.slice(0, -3) + 'AAA'])}\r\n` : ''
  const extra = pick(r, ['', '', 'X-Twice: 1\r\nX-Twice: 2\r\n', 'Origin: http://127.0.0.1\r\n', 'Connection: close\r\n', 'Last-Event-ID: ' + pick(r, ['0:0', 'x:1', '1:2,3', '9999999999:0']) + '\r\n',
    'If-None-Match: ' + pick(r, ['0', 'zz', '1:0']) + '\r\nIf-Modified-Since: ' + pick(r, ['yesterday', 'Thu, 01 Jan 1970 00:00:01 GMT']) + '\r\n', 'Cookie: parkline_token=' + token + '\r\n'])
  const body = pick(r, ['', 'hello', 'x'.repeat(2000), '\u00e9\u0000\n\n'])
  const len = Buffer.byteLength(body, 'latin1')
  switch (Math.floor(r() * 16)) {
    case 0: return `GET /sub/${ch} HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n${auth}${extra}\r\n`
    case 1: return `GET /sub/${ch} HTTP/1.1\r\nHost: a\r\n${auth}${extra}\r\n`
    case 2: return `GET /sub/${ch} HTTP/1.1\r\nHost: a\r\nTE: chunked\r\n${auth}${extra}\r\n`
    case 3: return `GET /sub/${ch} HTTP/1.1\r\nHost: a\r\nAccept: multipart/mixed\r\n${auth}${extra}\r\n`
    case 4: return `GET /sub/${ch} HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${auth}\r\n` +
      (r() < 0.5 ? '\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58' : '\x88\x80\x00\x00\x00\x00')
    case 5: return `${pick(r, ['POST', 'PUT'])} /pub/${ch} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${AUTH_SERVER.apiKey[0]}\r\nContent-Length: ${len}\r\n${extra}\r\n${body}`
    case 6: return `POST /pub/${ch} HTTP/1.1\r\nHost: a\r\nContent-Length: ${len + pick(r, [-1, 1, 1000])}\r\n\r\n${body}`
    case 7: return `POST /pub/${ch} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n${len.toString(16)}\r\n${body}\r\n0\r\n\r\n`
    case 8: return `${pick(r, ['DELETE', 'OPTIONS', 'GET', 'PATCH', 'BREW'])} /pub/${ch} HTTP/1.1\r\nHost: a\r\n${extra}\r\n`
    case 9: return `GET ${pick(r, ['/status', '/health', '/metrics', '/nowhere', '/sub/', '/pub/', '/../etc'])} HTTP/1.1\r\nHost: a\r\n\r\n`
    case 10: return `GET /sub/${ch} HTTP/1.0\r\n\r\n`
    case 11: return `GET /sub/${ch} HTTP/1.1\r\nHost: a\r\nX-Big: ${'b'.repeat(pick(r, [100, 9000, 20000]))}\r\n\r\n`
    case 12: return `GET /sub/${ch} HTTP/1.1\r\nHost: a\r\n` + Array.from({ length: 70 }, (_, i) => `X-${i}: v\r\n`).join('') + '\r\n'
    case 13: return pick(r, ['GET /sub/c0 HTTP/1.1\nHost: a\n\n', 'GET /sub/c0 HTTP/1.1\r\nHost : a\r\n\r\n', '\r\n\r\n', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'CONNECT a:1 HTTP/1.1\r\nHost: a\r\n\r\n',
      'GET /sub/c1 HTTP/1.1\r\n\r\n', 'GET /sub/c1 HTTP/1.1\r\nHost: a\r\nExpect: foo\r\n\r\n', `POST /pub/c1 HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: ${pick(r, [5, 99999999])}\r\n\r\n`])
    case 14: return Buffer.from(Array.from({ length: 1 + Math.floor(r() * 64) }, () => Math.floor(r() * 256))).toString('latin1')
    default: return `GET /sub/${ch}?${pick(r, ['last_event_id=0:0', 'parkline_gap=event', 'token=' + token, 'a=%ZZ'])} HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n`
  }
}

/** One client: a few pieces in a few writes, then a FIN, a reset, or nothing; gone within a bound. */
async function client (r: Rng, port: number, token: string): Promise<void> {
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: r() < 0.5 })
  socket.on('error', () => {})
  socket.on('data', () => {})
  try {
    await once(socket, 'connect')
  } catch {
    return
  }
  const bytes = Buffer.from(Array.from({ length: 1 + Math.floor(r() * 4) }, () => piece(r, token)).join(''), 'latin1')
  const cuts = Array.from({ length: Math.floor(r() * 3) }, () => Math.floor(r() * bytes.length)).sort((a, b) => a - b)
  let at = 0
  for (const cut of [...cuts, bytes.length]) {
    if (socket.destroyed) break
    socket.write(bytes.subarray(at, cut))
    at = cut
    await new Promise((resolve) => setTimeout(resolve, Math.floor(r() * 5)))
  }
  const end = r()
  if (end < 0.3) socket.end()
  else if (end < 0.5) socket.resetAndDestroy()
  await new Promise((resolve) => setTimeout(resolve, Math.floor(r() * 150)))
  socket.destroy()
}

async function fuzz (t: ExecutionContext, seed: number, fast: boolean, options: Record<string, unknown>): Promise<void> {
  const s = await startStandalone(t, options, fast)
  const core = coreOf(s.app)
  const token = (await mint(['c0', 'c1', 'c2', 'c3'])).token
  const r = prng(seed)
  for (let i = 0; i < CONNECTIONS; i += AT_ONCE) {
    const seeds = Array.from({ length: Math.min(AT_ONCE, CONNECTIONS - i) }, () => Math.floor(r() * 2 ** 32))
    await Promise.all(seeds.map((x) => client(prng(x), s.port, token)))
  }
  // alive and answering (on connections this client then closes: a fetch would keep its own open
  // for the server's keep-alive, 75 s)
  t.is((await rawRequest(s.port, 'GET /health HTTP/1.1\r\nHost: a\r\n\r\n')).status, 200, `seed ${seed}`)
  const pub = await rawRequest(s.port, `POST /pub/after HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${AUTH_SERVER.apiKey[0]}\r\nContent-Length: 1\r\n\r\nx`)
  t.true(pub.status === 201 || pub.status === 202, `seed ${seed}: publish ${pub.status}`)
  // nothing of theirs kept: every client closed, so every subscriber and connection goes
  // (a refused or ended stream lingers at most LINGER_MS, lib/linger.ts, unless its peer closed)
  const connections = (): Promise<number> => new Promise((resolve) => { s.app.server.getConnections((_err, n) => { resolve(n) }) })
  const until = Date.now() + 15000
  while ((core.table.size > 0 || await connections() > 0) && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 50))
  t.is(core.table.size, 0, `seed ${seed}: subscribers left`)
  t.is(await connections(), 0, `seed ${seed}: connections left`)
  t.is(core.stats.rawConnections, 0, `seed ${seed}: raw connections left`)
}

const CONFIGS: Array<[string, Record<string, unknown>]> = [
  ['open', { apiKey: AUTH_SERVER.apiKey }],
  ['JWT access control', AUTH_SERVER],
  ['a subscriber limit of 3', { apiKey: AUTH_SERVER.apiKey, maxSubscribers: 3 }]
]

for (const [i, [name, options]] of CONFIGS.entries()) {
  for (const fast of [true, false]) {
    const seed = 1000 + i * 2 + (fast ? 0 : 1)
    test.serial(`${CONNECTIONS} random clients, ${name}, ${fast ? 'standalone' : 'through Fastify'} (seed ${seed}): the server lives, answers, and keeps nothing of them`, async (t) => {
      t.timeout(120_000)
      await fuzz(t, seed, fast, options)
    })
  }
}
