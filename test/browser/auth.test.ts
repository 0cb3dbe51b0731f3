// Access control in Debian's Chromium against a real Parkline with jwtSecret: the native
// EventSource with its token in the `parkline_token` cookie (it cannot send a header) and without
// one, and the Parkline client (client/dist) whose `token` function calls back into the test
// (page.exposeFunction) for 3 s tokens, across several expiries, with no message lost or repeated.
// Cookies are scoped to one channel's path, so the tests in this file do not see each other's.
import test, { type ExecutionContext } from 'ava'
import type { Page } from 'playwright-core'
import { AUTH_SERVER, mint, pubKey, publishNumbered } from '../helpers/auth.ts'
import { type Browser, type PageServer, launchChromium, openPage, startPageServer, waitLog } from '../helpers/browser.ts'

let browser: Browser

test.before(async () => {
  browser = await launchChromium()
})

test.after.always(async () => {
  await browser?.close()
})

function requestsFor (s: PageServer, channel: string): string[] {
  return s.same.requests.filter((h) => h.startsWith(`GET /sub/${channel}`))
}

/** A native EventSource on `path`; messages go to window.log, errors are counted. */
async function nativeEventSource (page: Page, path: string): Promise<void> {
  await page.evaluate(`(() => {
    const es = new EventSource(${JSON.stringify(path)})
    window.es = es
    window.opens = 0
    window.errors = 0
    es.onopen = () => { window.opens++ }
    es.onerror = () => { window.errors++ }
    es.onmessage = (e) => { window.log.push({ data: e.data, id: e.lastEventId }) }
  })()`)
}

test('native EventSource: the token in the parkline_token cookie is admitted and receives', async (t) => {
  const s = await startPageServer(t, AUTH_SERVER)
  const page = await openPage(t, browser, s.pageUrl)
  const { token } = await mint(['cookie-ok'])
  await pubKey(s.base, 'cookie-ok', 'one')
  await page.evaluate(`document.cookie = ${JSON.stringify(`parkline_token=${token}; path=/sub/cookie-ok; SameSite=Strict`)}`)
  await nativeEventSource(page, '/sub/cookie-ok?last_event_id=0:0')
  await page.waitForFunction('window.opens === 1', undefined, { timeout: 8000 })
  await pubKey(s.base, 'cookie-ok', 'two')
  const log = await waitLog(page, 2)
  t.deepEqual(log.map((e) => e.data), ['one', 'two'])
  t.is(await page.evaluate('window.errors'), 0)
  const heads = requestsFor(s, 'cookie-ok')
  t.is(heads.length, 1)
  t.true(heads[0]!.includes(`parkline_token=${token}`), 'the cookie carried the token')
  t.false(/\r\nauthorization:/i.test(heads[0]!))
})

test('native EventSource without the cookie: refused (401), an error, no message, no reconnect', async (t) => {
  const s = await startPageServer(t, AUTH_SERVER)
  const page = await openPage(t, browser, s.pageUrl)
  await pubKey(s.base, 'cookie-none', 'one')
  await nativeEventSource(page, '/sub/cookie-none?last_event_id=0:0')
  // a non-200 answer fails the EventSource for good: readyState CLOSED, no reconnect
  await page.waitForFunction('window.errors >= 1 && window.es.readyState === 2', undefined, { timeout: 8000 })
  await pubKey(s.base, 'cookie-none', 'two')
  await page.waitForTimeout(700) // retryMin is 300: a reconnect would have come by now
  t.deepEqual(await page.evaluate('window.log'), [])
  t.is(await page.evaluate('window.opens'), 0)
  const heads = requestsFor(s, 'cookie-none')
  t.is(heads.length, 1, 'one request, not a loop')
  t.true(s.same.responses.some((h) => h.startsWith('HTTP/1.1 401')), 'the server answered 401')
})

interface Entry { kind: string, data?: string, transport?: string, reason?: string, status?: number }

/** Start the Parkline client in the page with `token: () => window.mintToken()`; events land in window.events. */
async function startClient (page: Page, path: string, options: Record<string, unknown>): Promise<void> {
  await page.evaluate(`(async () => {
    const { Parkline } = await import('/t/parkline.js')
    window.events = []
    window.tokens = 0
    const c = new Parkline(${JSON.stringify(path)}, { ...${JSON.stringify({ minDelay: 50, maxDelay: 1000, connectTimeout: 1500, ...options })},
      token: async () => { window.tokens++; return await window.mintToken() } })
    window.client = c
    c.on('message', (data, m) => { const e = { kind: 'message', data, transport: m.transport }; window.log.push(e); window.events.push(e) })
    c.on('connect', (i) => window.events.push({ kind: 'connect', transport: i.transport }))
    c.on('retry', (r) => window.events.push({ kind: 'retry', transport: r.next, reason: r.reason }))
    c.on('auth', (a) => window.events.push({ kind: 'auth', status: a.status, reason: a.reason, transport: a.transport }))
    c.start()
  })()`)
}

async function events (page: Page): Promise<Entry[]> {
  return await page.evaluate('window.events') as Entry[]
}

const acrossExpiry = test.macro({
  async exec (t: ExecutionContext, transport: string) {
    const s = await startPageServer(t, { ...AUTH_SERVER, tokenInQuery: true })
    const channel = 'renew-' + transport
    let minted = 0
    // the page's token function calls back into the test, which signs 3 s tokens
    const page = await openPage(t, browser, s.pageUrl, { mintToken: async () => { minted++; return (await mint([channel], 3)).token } })
    // a parked long-poll counts as connected only after connectTimeout without an error; with 3 s
    // tokens the renewal (at least 1 s after each attempt) must not come first, or the client
    // renews before it ever reports connected (the 1.5 s default left that to the tokens' jitter)
    await startClient(page, `/sub/${channel}`, transport === 'default' ? {} : transport === 'longpoll' ? { transports: [transport], connectTimeout: 500 } : { transports: [transport] })
    const want = transport === 'default' ? 'websocket' : transport
    try {
      await page.waitForFunction(`window.client.connected && window.client.transport === ${JSON.stringify(want)}`, undefined, { timeout: 8000, polling: 50 })
    } catch {
      throw new Error(`not connected on ${want}; events: ${JSON.stringify(await events(page))}`)
    }
    const sent = await publishNumbered(s.base, channel, 80, 100)
    await waitLog(page, sent.length, 8000)
    await page.waitForTimeout(300) // a duplicate would arrive now
    const log = await page.evaluate('window.log') as Entry[]
    const ev = await events(page)
    t.deepEqual(log.map((e) => e.data), sent, 'every message once, in order')
    t.true(log.every((e) => e.transport === want), 'no fallback')
    t.true(minted >= 3, `the token function was called across the expiries (${minted})`)
    t.is(await page.evaluate('window.tokens'), minted)
    t.true(ev.filter((e) => e.kind === 'retry' && e.reason === 'token renewal').length >= 2, 'renewed ahead of exp: ' + JSON.stringify(ev.filter((e) => e.kind !== 'message')))
    t.deepEqual(ev.filter((e) => e.kind === 'auth'), [])
    if (want === 'websocket') {
      // the browser WebSocket cannot send a header: the token rides in the URL, there only
      t.true(requestsFor(s, channel).filter((h) => /\r\nupgrade: websocket/i.test(h)).every((h) => /[?&]access_token=/.test(h.slice(0, h.indexOf('\r\n')))))
    } else {
      const heads = requestsFor(s, channel)
      t.true(heads.every((h) => !h.slice(0, h.indexOf('\r\n')).includes('access_token') && /\r\nauthorization: Bearer /i.test(h)))
    }
  },
  title: (_, transport: string) => `Parkline client (${transport === 'default' ? 'default transports: websocket' : transport}) with a token function across 3 s expiries: no message lost or repeated`
})

for (const transport of ['default', 'eventsource', 'longpoll']) test(acrossExpiry, transport)

test('Parkline client in the browser: a token that lacks the channel gives one auth event 403, no fallback, no loop', async (t) => {
  const s = await startPageServer(t, { ...AUTH_SERVER, tokenInQuery: true })
  const page = await openPage(t, browser, s.pageUrl, { mintToken: async () => (await mint(['elsewhere'])).token })
  await startClient(page, '/sub/forbidden', {})
  await page.waitForFunction('window.events.some((e) => e.kind === "auth")', undefined, { timeout: 8000, polling: 50 })
  const n = requestsFor(s, 'forbidden').length
  await page.waitForTimeout(1000)
  const ev = await events(page)
  t.deepEqual(ev, [{ kind: 'auth', status: 403, reason: 'Forbidden: token does not grant subscribe on channel "forbidden"', transport: 'websocket' }])
  t.false(await page.evaluate('window.client.running'))
  t.is(await page.evaluate('window.tokens'), 1)
  // the refused handshake, then one GET that learns its status (the browser hides it)
  t.is(n, 2)
  t.is(requestsFor(s, 'forbidden').length, n, 'nothing after the auth event')
})

// A page of another site (`localhost` is another site than `127.0.0.1`) in a browser where the
// user holds a token cookie for the push server (SameSite=None, as a cookie of a push server on
// another domain than the application must be; the browser sends it cross-site): with corsOrigins
// empty Parkline echoes every Origin with credentials, so before lib/access.ts ambientCredentials
// that page read the user's channel with EventSource's withCredentials, and over a WebSocket (no
// CORS at all: cross-site WebSocket hijacking).
test('a page of another site: the user\'s token cookie is not used, on EventSource (withCredentials) and WebSocket; the push server\'s own page is served', async (t) => {
  const lax = await launchChromium({ thirdPartyCookies: true })
  t.teardown(async () => { await lax.close() })
  const s = await startPageServer(t, AUTH_SERVER)
  const { token } = await mint(['private'])
  await pubKey(s.base, 'private', 'secret-1')
  await lax.context.addCookies([{ name: 'parkline_token', value: token, domain: '127.0.0.1', path: '/sub/private', sameSite: 'None', secure: true, httpOnly: true }])
  // an EventSource and a WebSocket on `base`: the first message, or how they failed
  const read = (base: string): string => `(async () => {
    const base = ${JSON.stringify(base)} || location.origin
    const es = await new Promise((resolve) => {
      const es = new EventSource(base + '/sub/private?last_event_id=0:0', { withCredentials: true })
      const t = setTimeout(() => { es.close(); resolve('timeout') }, 4000)
      es.onmessage = (e) => { clearTimeout(t); es.close(); resolve('message: ' + e.data) }
      es.onerror = () => { clearTimeout(t); es.close(); resolve('error') }
    })
    const ws = await new Promise((resolve) => {
      const ws = new WebSocket(base.replace('http', 'ws') + '/sub/private?last_event_id=0:0')
      const t = setTimeout(() => { ws.close(); resolve('timeout') }, 4000)
      ws.onmessage = (e) => { clearTimeout(t); ws.close(); resolve('message: ' + e.data) }
      ws.onerror = () => { clearTimeout(t); resolve('error') }
    })
    return { es, ws }
  })()`
  // the other site: the page from http://localhost, the push server at http://127.0.0.1
  const other = await openPage(t, lax, s.pageUrl.replace('127.0.0.1', 'localhost'))
  t.deepEqual(await other.evaluate(read(s.cross.base)), { es: 'error', ws: 'error' })
  const heads = s.cross.requests.filter((h) => h.startsWith('GET /sub/private'))
  t.is(heads.length, 2)
  t.true(heads.every((h) => h.includes('parkline_token=' + token) && h.includes('\r\nOrigin: http://localhost:')), 'the browser sent the cookie, from the other site: ' + JSON.stringify(heads))
  t.is(s.cross.responses.filter((h) => h.startsWith('HTTP/1.1 401')).length, 2, 'both refused 401')
  // the push server's own page (same origin), the same cookie: served on both
  const mine = await openPage(t, lax, s.cross.base + '/t/page.html')
  t.deepEqual(await mine.evaluate(read('')), { es: 'message: secret-1', ws: 'message: secret-1' })
})
