// A page of another site gets no use of a user's cookies on a subscription (lib/access.ts
// ambientCredentials): with corsOrigins empty every Origin is echoed with credentials (Nchan's
// CORS), so a browser would let such a page read what the user's token cookie, or the session the
// authorize request forwards, admits. Real sockets, a real Parkline, a real authorize upstream;
// Chromium's side of it is in test/browser/auth.test.ts.
import http from 'node:http'
import { once } from 'node:events'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import test, { type ExecutionContext } from 'ava'
import { ambientCredentials } from '../../lib/access.ts'
import { AUTH_SERVER, TRANSPORT_HEADERS, mint, pubKey, type SubscribeTransport } from '../helpers/auth.ts'
import { parseResponse, startServer } from '../helpers/server.ts'

type Transport = SubscribeTransport
const OK: Record<Transport, number> = { eventsource: 200, longpoll: 200, websocket: 101 }

/** One subscription's answer head and what came with it (bounded: 3 s for the head). */
async function subscribe (port: number, tr: Transport, path: string, headers: Record<string, string>): Promise<{ status: number, headers: Record<string, string>, text: string }> {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => {})
  await once(socket, 'connect')
  let req = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${TRANSPORT_HEADERS[tr]}`
  for (const [k, v] of Object.entries(headers)) req += `${k}: ${v}\r\n`
  socket.write(req + '\r\n')
  let buf = ''
  socket.on('data', (d: Buffer) => { buf += d.toString('latin1') })
  const deadline = Date.now() + 3000
  // the head and, for a long-poll answered from the buffer or a refusal, its body
  while (Date.now() < deadline && !(buf.includes('\r\n\r\n') && (/^HTTP\/1\.1 (101|200)/.test(buf) ? buf.includes('one') || tr === 'websocket' : /\r\n\r\n[^]+/.test(buf)))) {
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  socket.destroy()
  const r = parseResponse(buf)
  return { status: r.status, headers: r.headers, text: buf }
}

test('ambientCredentials: a listed origin, Sec-Fetch-Site, else the Origin\'s host name against Host', (t) => {
  const rows: Array<[Record<string, string>, readonly string[], boolean]> = [
    [{}, [], true], // no browser, or a same-origin GET
    [{ 'sec-fetch-site': 'none' }, [], true], // a URL the user opened
    [{ 'sec-fetch-site': 'same-origin', origin: 'https://push.example' }, [], true],
    [{ 'sec-fetch-site': 'same-site', origin: 'https://app.example' }, [], true],
    [{ 'sec-fetch-site': 'cross-site', origin: 'https://evil.example' }, [], false],
    [{ 'sec-fetch-site': 'cross-site' }, [], false], // an <img> or a link from another site
    [{ 'sec-fetch-site': 'same-site, cross-site', origin: 'https://evil.example', host: 'push.example' }, [], false], // not a browser's: by the Origin
    [{ 'sec-fetch-site': 'bogus' }, [], false],
    [{ 'sec-fetch-site': 'cross-site', origin: 'https://partner.example' }, ['https://partner.example'], true],
    // without Sec-Fetch-Site (an older browser): the Origin's host name, ports aside
    [{ origin: 'https://push.example', host: 'push.example' }, [], true],
    [{ origin: 'https://push.example:8443', host: 'push.example' }, [], true],
    [{ origin: 'http://127.0.0.1:9', host: '127.0.0.1:8080' }, [], true],
    [{ origin: 'https://PUSH.example', host: 'Push.Example:443' }, [], true],
    [{ origin: 'https://evil.example', host: 'push.example' }, [], false],
    [{ origin: 'https://push.example.evil.example', host: 'push.example' }, [], false],
    [{ origin: 'null', host: 'push.example' }, [], false], // a sandboxed frame, a file
    // listing `null` admits sandboxed frames' requests, never with cookies: any site can make one
    [{ origin: 'null', host: 'push.example' }, ['null'], false],
    [{ origin: 'null', 'sec-fetch-site': 'cross-site' }, ['null'], false],
    [{ origin: 'https://push.example' }, [], false], // no Host to compare with
    [{ origin: 'not a url', host: 'push.example' }, [], false]
  ]
  for (const [headers, listed, want] of rows) t.is(ambientCredentials(headers, listed), want, JSON.stringify([headers, listed]))
})

test('the token cookie: a page of another site is refused 401 on every transport, with why; this site, a same-site page and a listed origin are admitted', async (t) => {
  for (const corsOrigins of [[], ['https://partner.example']]) {
    const srv = await startServer(t, { ...AUTH_SERVER, corsOrigins })
    await pubKey(srv.base, 'inbox', 'one')
    const { token } = await mint(['inbox'])
    const cookie = 'theme=dark; parkline_token=' + token
    const cases: Array<[string, Record<string, string>, number]> = [
      ['no Origin (no browser)', { Cookie: cookie }, 0],
      // (a list refuses every origin it does not hold, this host's too: 403 before any credential)
      ['a page of this host', { Cookie: cookie, Origin: `http://127.0.0.1:${srv.port}` }, corsOrigins.length === 0 ? 0 : 403],
      ['a same-site page (Sec-Fetch-Site)', { Cookie: cookie, Origin: 'https://app.example', 'Sec-Fetch-Site': 'same-site' }, corsOrigins.length === 0 ? 0 : 403],
      ['a cross-site origin, listed in the second round', { Cookie: cookie, Origin: 'https://partner.example', 'Sec-Fetch-Site': 'cross-site' }, corsOrigins.length === 0 ? 401 : 0],
      ['cross-site by Sec-Fetch-Site, no Origin', { Cookie: cookie, 'Sec-Fetch-Site': 'cross-site' }, 401],
      ['another site by its Origin', { Cookie: cookie, Origin: 'https://evil.example' }, corsOrigins.length === 0 ? 401 : 403],
      ['another site, the token in Authorization', { Origin: 'https://evil.example', Authorization: 'Bearer ' + token }, corsOrigins.length === 0 ? 0 : 403],
      // the same answer without a cookie: the page cannot learn whether the user has one
      ['another site, no cookie', { Origin: 'https://evil.example' }, corsOrigins.length === 0 ? 401 : 403],
      ['a page of this host, no cookie', { Origin: `http://127.0.0.1:${srv.port}` }, corsOrigins.length === 0 ? -401 : 403]
    ]
    for (const tr of ['eventsource', 'longpoll', 'websocket'] as const) {
      for (const [name, headers, status] of cases) {
        const what = `${tr}, corsOrigins ${JSON.stringify(corsOrigins)}: ${name}`
        const r = await subscribe(srv.port, tr, '/sub/inbox?last_event_id=0:0', headers)
        t.is(r.status, status === 0 ? OK[tr] : Math.abs(status), what)
        // (-401: Parkline's plain answer for no credential)
        if (status === -401) t.regex(r.text, /a bearer token is required/, what)
        if (status === 0 && tr !== 'websocket') t.true(r.text.includes('one'), what + ': the message')
        if (status === 401) {
          t.false(r.text.includes('one'), what)
          t.is(r.headers['www-authenticate'], 'Bearer', what)
          t.regex(r.text, /cookies are not used on a request from another site; list its origin in corsOrigins/, what)
        }
      }
    }
  }
})

interface Upstream { url: string, cookies: Array<string | undefined>, authorizations: Array<string | undefined> }

/**
 * A real authorize endpoint: admits the session cookie `session=alice`, alice's HTTP Basic
 * credentials or `Bearer alice`, refuses 403 otherwise. Records each request's Cookie and
 * Authorization.
 */
async function authorizeUpstream (t: ExecutionContext): Promise<Upstream> {
  const cookies: Array<string | undefined> = []
  const authorizations: Array<string | undefined> = []
  const server = http.createServer((req, res) => {
    authorizations.push(req.headers.authorization)
    cookies.push(req.headers.cookie)
    if (req.headers.cookie === 'session=alice' || req.headers.authorization === 'Basic YWxpY2U6cHc=' || req.headers.authorization === 'Bearer alice') res.end('ok')
    else res.writeHead(403, { 'Content-Type': 'text/plain' }).end('no session')
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/auth`, cookies, authorizations }
}

test('authorizeUrl: a page of another site\'s request goes to the authorize endpoint without the Cookie; this site\'s with it', async (t) => {
  const up = await authorizeUpstream(t)
  // no decision cache: each request is asked about
  const srv = await startServer(t, { authorizeUrl: up.url, authorizeCacheTtl: 0 })
  await fetch(`${srv.base}/pub/inbox`, { method: 'POST', body: 'one' })
  const cookie = { Cookie: 'session=alice' }
  for (const tr of ['eventsource', 'longpoll', 'websocket'] as const) {
    up.cookies.length = 0
    up.authorizations.length = 0
    const mine = await subscribe(srv.port, tr, '/sub/inbox?last_event_id=0:0', { ...cookie, Origin: `http://127.0.0.1:${srv.port}` })
    t.is(mine.status, OK[tr], tr)
    const sameSite = await subscribe(srv.port, tr, '/sub/inbox?last_event_id=0:0', { ...cookie, Origin: 'https://app.example', 'Sec-Fetch-Site': 'same-site' })
    t.is(sameSite.status, OK[tr], tr)
    const other = await subscribe(srv.port, tr, '/sub/inbox?last_event_id=0:0', { ...cookie, Origin: 'https://evil.example', 'Sec-Fetch-Site': 'cross-site' })
    t.is(other.status, 403, tr)
    t.regex(other.text, /no session$/, 'the endpoint\'s own answer')
    t.false(other.text.includes('one'))
    // HTTP Basic credentials a browser keeps for the server go as the cookie does; a bearer token stays
    const basic = await subscribe(srv.port, tr, '/sub/inbox?last_event_id=0:0', { Authorization: 'Basic YWxpY2U6cHc=', Origin: 'https://evil.example' })
    t.is(basic.status, 403, tr)
    const bearer = await subscribe(srv.port, tr, '/sub/inbox?last_event_id=0:0', { Authorization: 'Bearer alice', Origin: 'https://evil.example' })
    t.is(bearer.status, OK[tr], tr)
    // this host's page, the same site's, another site's with the cookie, with Basic, with a bearer token
    t.deepEqual(up.cookies, ['session=alice', 'session=alice', undefined, undefined, undefined], tr)
    t.deepEqual(up.authorizations, [undefined, undefined, undefined, undefined, 'Bearer alice'], tr)
  }
})
