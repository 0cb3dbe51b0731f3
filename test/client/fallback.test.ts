// Run-time fallback and reconnect pacing of the Parkline client, with the test proxy between the
// client and a real Parkline: WebSocket refused, black-holed or muted, event streams held back by a
// buffering proxy, and the delays chosen against the server's `retry:` and `Retry-After`. Delays
// are asserted as the values the client chose (its `retry` events), never by wall-clock timing.
import http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import test from 'ava'
import { WebSocketServer } from 'ws'
import { Parkline, backoffDelay } from '../../client/parkline.ts'
import { publishedId, sleep, subscribe } from '../helpers/client.ts'
import { TestProxy, type ProxyModes } from '../helpers/proxy.ts'
import { SseClient, publish, startServer } from '../helpers/server.ts'

async function pub (base: string, channel: string, body: string): Promise<string> {
  return publishedId((await publish(base, channel, body)).text)
}

async function setup (t: Parameters<typeof startServer>[0], modes: Partial<ProxyModes>, options: Parameters<typeof startServer>[1] = {}): Promise<{ base: string, port: number, proxy: TestProxy }> {
  const { base, port } = await startServer(t, options)
  const proxy = await TestProxy.start(port, modes)
  t.teardown(() => proxy.close())
  return { base, port, proxy }
}

const ALL = ['websocket', 'eventsource', 'longpoll'] as const

for (const mode of ['refuse', 'blackhole'] as const) {
  test(`websocket ${mode === 'refuse' ? 'refused (502)' : 'black-holed (never answered)'}: falls back to eventsource and resumes from the same id`, async (t) => {
    const { base, proxy } = await setup(t, { websocket: mode })
    const ids = [await pub(base, 'f', 'before')]
    const rec = subscribe(t, `${proxy.base}/sub/f`, { transports: ALL, connectTimeout: 800 })
    await rec.waitConnected('eventsource')
    ids.push(await pub(base, 'f', 'after'))
    await rec.waitMessages(2)
    t.deepEqual(rec.ids, ids)
    t.deepEqual(rec.transports, ['eventsource'])
    const r = rec.retries[0]!
    t.like(r, { transport: 'websocket', next: 'eventsource', failed: true, delay: 0 })
    t.regex(r.reason, mode === 'refuse' ? /websocket close 1006/ : /not open after 800 ms/)
    t.true(proxy.requests.some((h) => /upgrade: websocket/i.test(h)), 'the WebSocket was tried first')
  })
}

test('websocket muted (101 passes, frames swallowed): the silence probe catches it, eventsource resumes with no loss', async (t) => {
  const { base, proxy } = await setup(t, { websocket: 'mute' })
  const rec = subscribe(t, `${proxy.base}/sub/m`, { transports: ALL, keepalive: 400, probeTimeout: 500 })
  await rec.waitConnected('websocket')
  const ids = [await pub(base, 'm', 'lost on the ws'), await pub(base, 'm', 'and this')]
  await rec.waitMessages(2)
  t.deepEqual(rec.ids, ids, 'both arrive exactly once, over eventsource')
  t.deepEqual(rec.transports, ['websocket', 'eventsource'])
  t.true(rec.messages.every((m) => m.meta.transport === 'eventsource'))
  const r = rec.retries.find((x) => x.transport === 'websocket')!
  t.regex(r.reason, /silent for 400 ms and missed/)
  t.is(r.next, 'eventsource')
})

test('an idle websocket is kept: the probe parks, nothing was missed', async (t) => {
  const { base, proxy } = await setup(t, {})
  const rec = subscribe(t, `${proxy.base}/sub/idle`, { transports: ALL, keepalive: 300, probeTimeout: 300 })
  await rec.waitConnected('websocket')
  await new Promise((resolve) => setTimeout(resolve, 1500)) // several windows, several probes
  t.true(proxy.requests.filter((h) => h.startsWith('GET /sub/idle HTTP')).length >= 2, 'probes were sent')
  await pub(base, 'idle', 'late')
  await rec.waitMessages(1)
  t.deepEqual(rec.transports, ['websocket'])
  t.is(rec.retries.length, 0)
})

test('websocket blocked and eventsource buffered: falls back to longpoll with no message lost', async (t) => {
  const { base, proxy } = await setup(t, { websocket: 'refuse', eventsource: 'buffer' })
  const ids = [await pub(base, 'b', 'one'), await pub(base, 'b', 'two')]
  const rec = subscribe(t, `${proxy.base}/sub/b`, { transports: ALL, connectTimeout: 700 })
  await rec.waitMessages(2)
  ids.push(await pub(base, 'b', 'three'))
  await rec.waitMessages(3)
  t.deepEqual(rec.ids, ids)
  t.deepEqual(rec.texts, ['one', 'two', 'three'])
  t.deepEqual(rec.transports, ['longpoll'])
  t.deepEqual(rec.retries.map((r) => [r.transport, r.next, r.delay]), [['websocket', 'eventsource', 0], ['eventsource', 'longpoll', 0]])
  t.regex(rec.retries[1]!.reason, /no first byte in 700 ms/)
})

test('fallback at run time: a working websocket later blocked hands over to eventsource from the same id', async (t) => {
  const { base, proxy } = await setup(t, {})
  const rec = subscribe(t, `${proxy.base}/sub/rt`, { transports: ALL })
  await rec.waitConnected('websocket')
  const ids = [await pub(base, 'rt', 'a'), await pub(base, 'rt', 'b')]
  await rec.waitMessages(2)
  proxy.modes.websocket = 'refuse'
  proxy.dropAll()
  ids.push(await pub(base, 'rt', 'c'))
  await rec.waitConnected('eventsource')
  ids.push(await pub(base, 'rt', 'd'))
  await rec.waitMessages(4)
  t.deepEqual(rec.ids, ids)
  t.deepEqual(rec.transports, ['websocket', 'eventsource'])
  // the drop of a working websocket is retried on websocket first, then the refusal falls back
  t.deepEqual(rec.retries.map((r) => [r.transport, r.next, r.failed]), [['websocket', 'websocket', false], ['websocket', 'eventsource', true]])
})

test('after a fallback the transport ahead is tried again (upgradeAfter): back on websocket once the path lets it through, nothing lost or repeated', async (t) => {
  const { base, proxy } = await setup(t, { websocket: 'refuse' })
  const rec = subscribe(t, `${proxy.base}/sub/up`, { transports: ALL, connectTimeout: 800, upgradeAfter: 400 })
  await rec.waitConnected('eventsource')
  const ids = [await pub(base, 'up', 'on eventsource')]
  await rec.waitMessages(1)
  proxy.modes.websocket = 'pass'
  // messages keep coming while the client changes transport (bounded: at most 80)
  for (let i = 0; i < 80 && rec.client.transport !== 'websocket'; i++) {
    ids.push(await pub(base, 'up', 'm' + i))
    await sleep(50)
  }
  await rec.waitConnected('websocket')
  ids.push(await pub(base, 'up', 'on websocket'))
  await rec.waitMessages(ids.length)
  t.deepEqual(rec.ids, ids, 'every message once, in order, across the change')
  t.deepEqual(rec.transports, ['eventsource', 'websocket'])
  const up = rec.retries.filter((r) => /ahead again/.test(r.reason))
  t.true(up.length >= 1, rec.log.join(' | '))
  t.like(up[0], { transport: 'eventsource', next: 'websocket', delay: 0, failed: false })
  t.is(rec.messages.at(-1)!.meta.transport, 'websocket')
})

test('an upgrade try that fails again falls back with no loss and stays there until the next try', async (t) => {
  const { base, proxy } = await setup(t, { websocket: 'refuse' })
  const rec = subscribe(t, `${proxy.base}/sub/up2`, { transports: ALL, connectTimeout: 800, upgradeAfter: 300 })
  await rec.waitConnected('eventsource')
  const ids: string[] = []
  // publish until two tries of the websocket have failed (bounded: at most 100 messages)
  for (let i = 0; i < 100 && rec.retries.filter((r) => /ahead again/.test(r.reason)).length < 2; i++) {
    ids.push(await pub(base, 'up2', 'm' + i))
    await sleep(50)
  }
  await rec.waitConnected('eventsource')
  ids.push(await pub(base, 'up2', 'last'))
  await rec.waitMessages(ids.length)
  t.deepEqual(rec.ids, ids, 'every message once, in order')
  t.deepEqual(rec.transports, ['eventsource'], 'never carried by the refused websocket')
  const tries = rec.retries.filter((r) => /ahead again/.test(r.reason))
  t.true(tries.length >= 2, rec.log.join(' | '))
  // each try: the websocket refused, then eventsource again at once
  for (const r of tries) t.like(r, { transport: 'eventsource', next: 'websocket', failed: false })
  t.true(rec.retries.filter((r) => r.transport === 'websocket').every((r) => r.next === 'eventsource' && r.failed && r.delay === 0))
  t.true(proxy.requests.filter((h) => /upgrade: websocket/i.test(h)).length >= 3, 'the first attempt and two tries')
})

test('minDelay 0 (a reconnect loop with no wait) and a maxDelay below minDelay are refused', (t) => {
  t.throws(() => new Parkline('http://127.0.0.1:1/sub/x', { minDelay: 0 }), { instanceOf: TypeError, message: /minDelay/ })
  t.throws(() => new Parkline('http://127.0.0.1:1/sub/x', { minDelay: Number.NaN }), { instanceOf: TypeError, message: /minDelay/ })
  t.throws(() => new Parkline('http://127.0.0.1:1/sub/x', { minDelay: 1000, maxDelay: 500 }), { instanceOf: TypeError, message: /maxDelay/ })
  t.notThrows(() => new Parkline('http://127.0.0.1:1/sub/x', { minDelay: 1, maxDelay: 1 }))
})

test('upgradeAfter: 0 keeps a fallback for the session; a bad value is refused', async (t) => {
  t.throws(() => new Parkline('http://127.0.0.1:1/sub/x', { upgradeAfter: -1 }), { instanceOf: TypeError })
  t.throws(() => new Parkline('http://127.0.0.1:1/sub/x', { upgradeAfter: Number.NaN }), { instanceOf: TypeError })
  const { base, proxy } = await setup(t, { websocket: 'refuse' })
  const rec = subscribe(t, `${proxy.base}/sub/up0`, { transports: ALL, connectTimeout: 800, upgradeAfter: 0 })
  await rec.waitConnected('eventsource')
  proxy.modes.websocket = 'pass'
  const ids: string[] = []
  for (let i = 0; i < 10; i++) {
    ids.push(await pub(base, 'up0', 'm' + i))
    await sleep(50)
  }
  await rec.waitMessages(ids.length)
  t.deepEqual(rec.ids, ids)
  t.deepEqual(rec.transports, ['eventsource'])
  t.false(rec.retries.some((r) => /ahead again/.test(r.reason)))
})

test('every transport failing: wraps to the first with exponential backoff', async (t) => {
  // a port with nothing listening: every attempt fails before connecting
  const { port } = await startServer(t)
  const proxy = await TestProxy.start(port)
  await proxy.close()
  const rec = subscribe(t, `${proxy.base}/sub/x`, { transports: ALL, minDelay: 40, maxDelay: 200, random: () => 1 })
  await rec.until(() => rec.retries.length >= 15, 8000, '15 retries')
  rec.client.stop()
  const wraps = rec.retries.filter((r) => r.next === 'websocket').map((r) => r.delay)
  t.deepEqual(wraps.slice(0, 5), [40, 80, 160, 200, 200], 'doubling from minDelay, capped at maxDelay')
  t.true(rec.retries.filter((r) => r.next !== 'websocket').every((r) => r.delay === 0), 'falling back within one round is immediate')
})

test('a WebSocket the server closes cleanly right after it opens keeps backing off; one that carried a message starts over', async (t) => {
  // a server that accepts each handshake and closes at once with 1000 (as a proxy may)
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  await once(wss, 'listening')
  t.teardown(() => { for (const c of wss.clients) c.terminate(); wss.close() })
  let opened = 0
  wss.on('connection', (ws) => {
    opened++
    // the third connection carries one message before its close
    if (opened === 3) ws.send('one', () => { ws.close(1000) })
    else ws.close(1000)
  })
  const port = (wss.address() as AddressInfo).port
  const rec = subscribe(t, `http://127.0.0.1:${port}/sub/x`, { transports: ['websocket'], minDelay: 40, maxDelay: 5000, random: () => 1 })
  await rec.until(() => rec.retries.length >= 5, 8000, '5 retries')
  rec.client.stop()
  const delays = rec.retries.map((r) => r.delay)
  t.deepEqual(delays.slice(0, 5), [40, 80, 40, 80, 160], 'doubling while nothing comes through, from the start again after a message: ' + rec.log.join(' | '))
  t.true(rec.retries.every((r) => r.next === 'websocket' && !r.failed), 'a clean close is no reason to fall back')
})

const memory = (init: Record<string, string>): { getItem: (k: string) => string | null, setItem: (k: string, v: string) => void, removeItem: (k: string) => void, store: Map<string, string> } => {
  const store = new Map(Object.entries(init))
  return { store, getItem: (k) => store.get(k) ?? null, setItem: (k, v) => { store.set(k, v) }, removeItem: (k) => { store.delete(k) } }
}

for (const transport of ['eventsource', 'longpoll'] as const) {
  test(`${transport}: a saved cursor the server cannot read (400 Message ID invalid) is dropped, and the client starts from the oldest`, async (t) => {
    const { base } = await startServer(t)
    await pub(base, 'bc', 'kept')
    // (a second closing bracket: §2.3 answers 400)
    const storage = memory({ k: '1796000000:[1]]' })
    const rec = subscribe(t, `${base}/sub/bc`, { transports: [transport], persist: 'k', storage })
    await rec.waitMessages(1)
    t.deepEqual(rec.texts, ['kept'])
    t.regex(rec.retries[0]!.reason, /400/)
    t.is(rec.retries[0]!.next, transport)
    // the app is told it starts over, as for a gap: nothing says what it may have missed
    t.deepEqual(rec.gaps, [{ requested: '1796000000:[1]]', resumed: undefined, channel: 'bc', transport }])
    t.true(rec.log.indexOf('gap 1796000000:[1]]') < rec.log.indexOf('message ' + String(rec.ids[0])))
  })

  test(`${transport}: a 400 that is not about the cursor keeps it, and waits with backoff on the same transport`, async (t) => {
    const seen: string[] = []
    const server = http.createServer((req, res) => {
      seen.push(req.url + ' ' + (req.headers['if-none-match'] ?? ''))
      res.writeHead(400, { 'Content-Type': 'text/plain' })
      res.end('Channel id too long')
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    t.teardown(() => { server.closeAllConnections(); server.close() })
    const storage = memory({ k: '1796000000:4' })
    const rec = subscribe(t, `http://127.0.0.1:${(server.address() as AddressInfo).port}/sub/x`, { transports: [transport], persist: 'k', storage, minDelay: 40, maxDelay: 400, random: () => 1 })
    await rec.until(() => rec.retries.length >= 3, 5000, '3 retries')
    rec.client.stop()
    t.is(rec.client.lastId, '1796000000:4', 'the cursor is kept')
    t.is(storage.store.get('k'), '1796000000:4')
    t.deepEqual(rec.retries.slice(0, 3).map((r) => [r.delay, r.next]), [[40, transport], [80, transport], [160, transport]])
    t.true(seen.every((s) => s.includes('1796000000') || s.includes(' 4')), seen.join(' | '))
  })
}

test('eventsource honours the server\'s retry: after a drop', async (t) => {
  const { base, proxy } = await setup(t, {}, { retryMin: 2345, retryMax: 2345 })
  const rec = subscribe(t, `${proxy.base}/sub/rr`, { transports: ['eventsource'], random: () => 0 })
  await rec.waitConnected('eventsource')
  await pub(base, 'rr', 'x')
  await rec.waitMessages(1)
  proxy.dropAll()
  await rec.until(() => rec.disconnects.length === 1, 3000, 'a disconnect')
  const d = rec.disconnects[0]!
  t.is(d.hint, 2345)
  t.true(d.delay >= 2345, `delay ${d.delay} respects retry: 2345`)
  t.is(rec.retries[0]!.next, 'eventsource')
})

test('eventsource at the server\'s connection limit: waits the retry: the :503: stream carries', async (t) => {
  const { base, port } = await startServer(t, { maxSubscribers: 1, retryMin: 3210, retryMax: 3210 })
  const occupant = await SseClient.connect(port, '/sub/other')
  t.teardown(() => occupant.close())
  const rec = subscribe(t, `${base}/sub/full`, { transports: ['eventsource'], random: () => 0 })
  await rec.until(() => rec.retries.length >= 1, 4000, 'a retry')
  const r = rec.retries[0]!
  t.regex(r.reason, /503/)
  t.is(r.hint, 3210)
  t.true(r.delay >= 3210, `delay ${r.delay} respects retry: 3210`)
  t.is(r.next, 'eventsource', 'a refusal is not a reason to change transport')
  t.false(r.failed)
  t.deepEqual(rec.connects, [], 'a refused stream never counted as connected: ' + rec.log.join(' | '))
  t.deepEqual(rec.disconnects, [])
})

test('websocket at the server\'s connection limit: a refusal, not a reason to fall back; it waits the hint on the same transport', async (t) => {
  const { port, base } = await startServer(t, { maxSubscribers: 1, retryMin: 3210, retryMax: 3210 })
  const occupant = await SseClient.connect(port, '/sub/other')
  t.teardown(() => occupant.close())
  const rec = subscribe(t, `${base}/sub/full`, { transports: ['websocket', 'eventsource'], random: () => 0 })
  await rec.until(() => rec.retries.length >= 1, 6000, 'a retry')
  const r = rec.retries[0]!
  t.is(r.next, 'websocket', 'no fall back: ' + rec.log.join(' | '))
  t.false(r.failed)
  t.true(r.delay >= 3210, `delay ${r.delay} respects the stream's retry: 3210`)
  t.deepEqual(rec.connects, [], 'a refusal is not a connection')
})

test('longpoll 503 with Retry-After: the next attempt waits at least that long', async (t) => {
  const { port, proxy } = await setup(t, {}, { maxSubscribers: 1 })
  const occupant = await SseClient.connect(port, '/sub/other')
  t.teardown(() => occupant.close())
  const rec = subscribe(t, `${proxy.base}/sub/lp`, { transports: ['longpoll'], random: () => 0 })
  await rec.until(() => rec.retries.length >= 1, 4000, 'a retry')
  rec.client.stop()
  const head = proxy.responses.find((h) => h.startsWith('HTTP/1.1 503'))
  t.truthy(head, 'the server answered 503')
  const seconds = Number(/\r\nretry-after: *(\d+)/i.exec(head!)?.[1])
  t.true(seconds >= 1 && seconds <= 10)
  const r = rec.retries[0]!
  t.is(r.hint, seconds * 1000)
  t.true(r.delay >= seconds * 1000, `delay ${r.delay} respects Retry-After: ${seconds}`)
  t.is(r.next, 'longpoll')
})

test('backoffDelay: exponential, equal jitter, capped, server hint as a floor', (t) => {
  t.is(backoffDelay(0, 500, 30000, () => 0), 250)
  t.is(backoffDelay(0, 500, 30000, () => 1), 500)
  t.is(backoffDelay(3, 500, 30000, () => 1), 4000)
  t.is(backoffDelay(3, 500, 30000, () => 0.5), 3000)
  t.is(backoffDelay(20, 500, 30000, () => 1), 30000)
  t.is(backoffDelay(1000, 500, 30000, () => 1), 30000)
  t.is(backoffDelay(0, 500, 30000, () => 1, 7000), 7000)
  t.is(backoffDelay(6, 500, 30000, () => 1, 7000), 30000)
  for (let i = 0; i < 200; i++) {
    const d = backoffDelay(2, 100, 1000, Math.random)
    t.true(d >= 200 && d <= 400)
  }
})

test('in Node the server\'s WebSocket pings count as life: an idle websocket needs no probe', async (t) => {
  const { proxy } = await setup(t, {}, { keepalive: 1 })
  // (a watchdog window 1.6 s past the ping interval: a 2-core CI host busy with other tests may delay one tick by more than 0.6 s)
  const rec = subscribe(t, `${proxy.base}/sub/pinged`, { transports: ALL, keepalive: 2600, probeTimeout: 300 })
  await rec.waitConnected('websocket')
  await new Promise((resolve) => setTimeout(resolve, 5500)) // two watchdog windows, five server pings
  t.is(proxy.requests.filter((h) => h.startsWith('GET /sub/pinged HTTP') && !/upgrade: websocket/i.test(h)).length, 0, 'no probe was needed')
  t.deepEqual(rec.transports, ['websocket'])
})

test('longpoll, then websocket in the order: a 410 (channel deleted) right after the poll parked is the protocol, not a failure: it stays on longpoll', async (t) => {
  const { base } = await startServer(t)
  const rec = subscribe(t, `${base}/sub/del`, { transports: ['longpoll', 'websocket'], connectTimeout: 5000 })
  // parked (counted), well inside connectTimeout
  for (let i = 0; i < 100; i++) {
    const r = await fetch(`${base}/pub/del`, { headers: { Accept: 'text/json' } })
    const info = r.status === 200 ? await r.json() as { subscribers: number } : (await r.text(), null)
    if (info !== null && info.subscribers === 1) break
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  t.is((await fetch(`${base}/pub/del`, { method: 'DELETE' })).status, 200)
  await rec.until(() => rec.retries.length >= 1, 4000, 'a retry')
  rec.client.stop()
  const r = rec.retries[0]!
  t.regex(r.reason, /410/)
  t.is(r.next, 'longpoll')
  t.false(r.failed)
})

test('a 410 answered before the poll counted as open keeps backing off: the delays grow, as for any answer at once', async (t) => {
  // a channel deleted for good (or a proxy that says so): every poll gets 410 at once
  let polls = 0
  const server = http.createServer((_req, res) => {
    polls++
    res.writeHead(410)
    res.end()
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const rec = subscribe(t, `http://127.0.0.1:${(server.address() as AddressInfo).port}/sub/gone`, { transports: ['longpoll'], minDelay: 100, maxDelay: 10000, random: () => 0.5 })
  await rec.until(() => rec.retries.length >= 4, 8000, 'four retries')
  rec.client.stop()
  const delays = rec.retries.slice(0, 4).map((r) => r.delay)
  t.deepEqual(delays, [75, 150, 300, 600], `${polls} polls`)
  t.true(rec.retries.every((r) => r.next === 'longpoll'))
})

test('upgradeAfter is spread at random (±25 %): clients that fell back together do not all try the transport ahead in the same moment', async (t) => {
  const { proxy } = await setup(t, { websocket: 'refuse' })
  const tried = async (random: number): Promise<number> => {
    const rec = subscribe(t, `${proxy.base}/sub/herd${random}`, { transports: ALL, connectTimeout: 800, upgradeAfter: 2000, random: () => random })
    // (timed by the client's own events, not by when this test's polling sees them)
    let connected = 0
    let ahead = 0
    rec.client.on('connect', () => { connected ||= Date.now() })
    rec.client.on('retry', (r) => { if (/ahead again/.test(r.reason)) ahead ||= Date.now() })
    await rec.until(() => ahead > 0, 8000, 'a try of the transport ahead')
    return ahead - connected
  }
  const [early, late] = await Promise.all([tried(0), tried(0.999)])
  // at 0.75 and about 1.25 of upgradeAfter: 1,000 ms apart, far more than a busy host's timer slack
  t.true(late - early >= 500, `early ${early} ms, late ${late} ms`)
})

test('websocket behind a proxy that drops Sec-WebSocket-Protocol (the server upgrades to plain WebSocket, frames with no ids): the client fails the handshake, as browsers do, and falls back to eventsource, every message once with its id', async (t) => {
  const { base, proxy } = await setup(t, { websocket: 'strip' })
  const ids = [await pub(base, 's', 'before')]
  const rec = subscribe(t, `${proxy.base}/sub/s`, { transports: ALL })
  await rec.waitConnected('eventsource')
  ids.push(await pub(base, 's', 'after'))
  await rec.waitMessages(2)
  t.deepEqual(rec.ids, ids)
  t.deepEqual(rec.transports, ['eventsource'])
  t.true(proxy.requests.some((h) => /upgrade: websocket/i.test(h) && /sec-websocket-protocol: ws\+meta/i.test(h)), 'the client asked for its subprotocols')
  t.true(proxy.responses.some((h) => /^HTTP\/1\.1 101 /.test(h) && !/sec-websocket-protocol/i.test(h)), 'the server upgraded with none')
  const r = rec.retries.find((x) => x.transport === 'websocket')!
  t.like(r, { next: 'eventsource', failed: true })
})
