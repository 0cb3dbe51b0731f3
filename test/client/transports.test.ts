// The Parkline client (client/) in Node 24 against a real Parkline, once per transport: it
// receives with the publisher's ids, names multiplexed channels, resumes after a dropped connection
// with no loss and no duplicate, reports gaps, and keeps its cursor across restarts.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { once } from 'node:events'
import test, { type ExecutionContext } from 'ava'
import { Parkline, type TransportName } from '../../client/parkline.ts'
import { Recorder, publishedId, sleep, subscribe } from '../helpers/client.ts'
import { TestProxy } from '../helpers/proxy.ts'
import { eventually, publish, startServer } from '../helpers/server.ts'

const TRANSPORTS: TransportName[] = ['websocket', 'eventsource', 'longpoll']

async function pub (base: string, channel: string, body: string | Buffer, type?: string): Promise<string> {
  const r = await publish(base, channel, body, type === undefined ? {} : { 'Content-Type': type })
  return publishedId(r.text)
}

const receives = test.macro({
  async exec (t: ExecutionContext, transport: TransportName) {
    const { base } = await startServer(t)
    const ids = [await pub(base, 'ch', 'one', 'text/plain'), await pub(base, 'ch', 'two')]
    const rec = subscribe(t, `${base}/sub/ch`, { transports: [transport] })
    await rec.waitConnected(transport)
    ids.push(await pub(base, 'ch', 'three\nlines', 'text/plain; charset=utf-8'))
    if (transport !== 'eventsource') ids.push(await pub(base, 'ch', Buffer.from([0, 1, 2, 255]), 'application/octet-stream'))
    await rec.waitMessages(ids.length)
    t.deepEqual(rec.ids, ids, 'ids equal the publisher\'s')
    t.deepEqual(rec.texts.slice(0, 3), ['one', 'two', 'three\nlines'])
    t.true(rec.messages.every((m) => m.meta.channel === 'ch' && m.meta.transport === transport))
    t.deepEqual(rec.connects, [transport])
    t.deepEqual(rec.transports, [transport])
    if (transport !== 'eventsource') {
      // SSE carries no content type (§6); the others do, and octet-stream arrives as bytes
      t.is(rec.messages[0]!.meta.contentType, 'text/plain')
      t.is(rec.messages[1]!.meta.contentType, undefined)
      t.is(rec.messages[2]!.meta.contentType, 'text/plain; charset=utf-8')
      const bin = rec.messages[3]!
      t.true(bin.data instanceof ArrayBuffer)
      t.deepEqual([...new Uint8Array(bin.data as ArrayBuffer)], [0, 1, 2, 255])
      t.is(bin.meta.contentType, 'application/octet-stream')
    }
    t.is(rec.client.lastId, ids.at(-1) ?? null)
  },
  title: (_, transport: TransportName) => `${transport}: receives in order with the publisher's ids and types`
})

test('eventsource: what a message carries there, as the README says: text, CRLF as LF, bytes that are not UTF-8 replaced, no content type', async (t) => {
  const { base } = await startServer(t)
  const rec = subscribe(t, `${base}/sub/fid`, { transports: ['eventsource'] })
  await rec.waitConnected('eventsource')
  await pub(base, 'fid', 'a\r\nb', 'text/plain')
  await pub(base, 'fid', Buffer.from([0x61, 0xff, 0x62]), 'application/octet-stream')
  await rec.waitMessages(2)
  t.deepEqual(rec.texts, ['a\nb', 'a\ufffdb'])
  t.true(rec.messages.every((m) => typeof m.data === 'string' && m.meta.contentType === undefined))
})

const multiplexed = test.macro({
  async exec (t: ExecutionContext, transport: TransportName) {
    const { base } = await startServer(t)
    const rec = subscribe(t, `${base}/sub/news,alerts`, { transports: [transport] })
    await rec.waitConnected(transport)
    // each read before the next publish: a long-poll's next request may come after both later
    // publishes, and with the second turning after n1 a1 and n2 share one (a tie goes to news)
    await pub(base, 'news', 'n1')
    await rec.waitMessages(1)
    await pub(base, 'alerts', 'a1')
    await rec.waitMessages(2)
    await pub(base, 'news', 'n2')
    await rec.waitMessages(3)
    t.deepEqual(rec.texts, ['n1', 'a1', 'n2'])
    t.deepEqual(rec.messages.map((m) => m.meta.channel), ['news', 'alerts', 'news'])
    // the bracket names the sending position (§2.2)
    t.regex(rec.ids[0]!, /^\d+:\[0\],-$/)
    t.regex(rec.ids[1]!, /^\d+:0,\[0\]$|^\d+:-,\[0\]$/)
    t.deepEqual(rec.client.channels, ['news', 'alerts'])
  },
  title: (_, transport: TransportName) => `${transport}: multiplexed /sub/a,b names each message's channel`
})

const resumes = test.macro({
  async exec (t: ExecutionContext, transport: TransportName) {
    const { base, port } = await startServer(t)
    const proxy = await TestProxy.start(port)
    t.teardown(() => proxy.close())
    const rec = subscribe(t, `${proxy.base}/sub/r`, { transports: [transport] })
    await rec.waitConnected(transport)
    const ids: string[] = []
    for (let i = 0; i < 5; i++) ids.push(await pub(base, 'r', `m${i}`))
    await rec.waitMessages(5)
    t.true(proxy.dropAll() > 0)
    // published while the client is cut off: must arrive after the reconnect, once
    for (let i = 5; i < 10; i++) ids.push(await pub(base, 'r', `m${i}`))
    await rec.waitMessages(10)
    for (let i = 10; i < 12; i++) ids.push(await pub(base, 'r', `m${i}`))
    await rec.waitMessages(12)
    await new Promise((resolve) => setTimeout(resolve, 200)) // room for a duplicate to show up
    t.deepEqual(rec.ids, ids, 'no loss, no duplicate, in order')
    t.deepEqual(rec.texts, ids.map((_, i) => `m${i}`))
    t.true(rec.disconnects.length >= 1, 'the drop was noticed')
    t.true(rec.connects.length >= 2, 'and the client came back')
    t.true(rec.connects.every((c) => c === transport), 'on the same transport')
  },
  title: (_, transport: TransportName) => `${transport}: resumes after a dropped connection with no loss and no duplicate`
})

for (const ping of ['comment', 'event'] as const) test(`eventsource: a stream whose keepalives (${ping}) stop (a dead path, no FIN) is reconnected from the last id`, async (t) => {
  const { base, port } = await startServer(t, { keepalive: 1, ping })
  const proxy = await TestProxy.start(port)
  t.teardown(() => proxy.close())
  const rec = subscribe(t, `${proxy.base}/sub/dead`, { transports: ['eventsource'], keepalive: 2500 })
  await rec.waitConnected('eventsource')
  const ids = [await pub(base, 'dead', 'before')]
  await rec.waitMessages(1)
  // two keepalives have come (the server's interval is 1 s, nothing is published): the watchdog
  // is on from the second
  for (let i = 0; i < 2; i++) {
    const before = proxy.bytesDown
    t.true(await eventually(() => proxy.bytesDown > before, 10000), 'a keepalive')
  }
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.is(proxy.freezeAll(), 1)
  ids.push(await pub(base, 'dead', 'while dead'))
  await rec.waitMessages(2, 20000)
  t.deepEqual(rec.ids, ids, 'no loss, no duplicate')
  t.regex(rec.disconnects[0]!.reason, /^eventsource: silent for \d+ ms, keepalives stopped$/)
  t.deepEqual(rec.connects, ['eventsource', 'eventsource'])
})

test('eventsource: on a busy channel (the server never idle long enough to send a keepalive) a dead path is still left: Parkline says its keepalive interval in the head, so the watchdog runs from the open', async (t) => {
  const { base, port } = await startServer(t, { keepalive: 2 })
  const proxy = await TestProxy.start(port)
  t.teardown(() => proxy.close())
  const rec = subscribe(t, `${proxy.base}/sub/busy`, { transports: ['eventsource'], keepalive: 1500 })
  await rec.waitConnected('eventsource')
  const ids: string[] = []
  // a message every 300 ms, far more often than the 2 s keepalive: the server sends none
  for (let i = 0; i < 3; i++) {
    ids.push(await pub(base, 'busy', `m${i}`))
    await sleep(300)
  }
  await rec.waitMessages(3)
  t.is(proxy.freezeAll(), 1)
  // (bounded: 40 more at most, until the client is back on a new connection)
  for (let i = 3; i < 43 && rec.connects.length < 2; i++) {
    ids.push(await pub(base, 'busy', `m${i}`))
    await sleep(300)
  }
  t.is(rec.connects.length, 2, 'reconnected')
  await rec.waitMessages(ids.length, 20000)
  t.deepEqual(rec.ids, ids, 'no loss, no duplicate')
  t.regex(rec.disconnects[0]!.reason, /^eventsource: silent for \d+ ms, keepalives stopped$/)
})

test.serial('eventsource: a watchdog turn that comes far past its time (the client\'s own loop stalled) does not end a live stream', async (t) => {
  const { base, port } = await startServer(t, { keepalive: 1 })
  const proxy = await TestProxy.start(port)
  t.teardown(() => proxy.close())
  const rec = subscribe(t, `${proxy.base}/sub/stall`, { transports: ['eventsource'], keepalive: 1500 })
  await rec.waitConnected('eventsource')
  for (let i = 0; i < 2; i++) {
    const before = proxy.bytesDown
    t.true(await eventually(() => proxy.bytesDown > before, 10000), 'a keepalive')
  }
  await new Promise((resolve) => setTimeout(resolve, 100))
  // this process (client and server alike; serial, so no other test of this file runs) stalls 5 s:
  // the watchdog (2 s window) comes at least 3 s late, and nothing was read meanwhile; the stream
  // itself is fine
  const until = Date.now() + 5000
  while (Date.now() < until) { /* a stalled loop: a frozen tab, a long GC */ }
  await new Promise((resolve) => setTimeout(resolve, 3000))
  t.deepEqual(rec.disconnects, [])
  const id = await pub(base, 'stall', 'still here')
  await rec.waitMessages(1)
  t.deepEqual(rec.ids, [id])
  t.deepEqual(rec.connects, ['eventsource'])
})

test('eventsource: a server that sends no keepalives (Nchan\'s default) is not watched: an idle stream stays', async (t) => {
  const { base, port } = await startServer(t, { keepalive: 0 })
  const proxy = await TestProxy.start(port)
  t.teardown(() => proxy.close())
  const rec = subscribe(t, `${proxy.base}/sub/idle`, { transports: ['eventsource'], keepalive: 500 })
  await rec.waitConnected('eventsource')
  await new Promise((resolve) => setTimeout(resolve, 2500))
  const id = await pub(base, 'idle', 'late')
  await rec.waitMessages(1)
  t.deepEqual(rec.ids, [id])
  t.deepEqual(rec.disconnects, [])
  t.is(proxy.requests.length, 1)
})

test('longpoll: a poll parked past `keepalive` is asked again from the same cursor, so a dead path (no FIN) is left', async (t) => {
  const { base, port } = await startServer(t)
  const proxy = await TestProxy.start(port)
  t.teardown(() => proxy.close())
  const rec = subscribe(t, `${proxy.base}/sub/stale`, { transports: ['longpoll'], keepalive: 1500, connectTimeout: 300 })
  await rec.waitConnected('longpoll')
  const ids = [await pub(base, 'stale', 'before')]
  await rec.waitMessages(1)
  // the next poll, with the cursor, parked: then its path dies
  t.true(await eventually(() => proxy.requests.length >= 2, 5000))
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.true(proxy.freezeAll() >= 1)
  ids.push(await pub(base, 'stale', 'while dead'))
  await rec.waitMessages(2, 20000)
  t.deepEqual(rec.ids, ids, 'no loss, no duplicate')
  // the poll asked again is no drop: no disconnect, no reconnect
  t.deepEqual(rec.disconnects, [])
  t.deepEqual(rec.connects, ['longpoll'])
  // every poll after the first (the one the freeze swallowed is not recorded) carried the cursor
  t.true(proxy.requests.length >= 2)
  t.true(proxy.requests.slice(1).every((r) => /\r\nif-none-match: /i.test(r)), proxy.requests.join('\n'))
})

test('longpoll: an answer that has started is read to its end however slowly it comes, not asked again', async (t) => {
  const { base, port } = await startServer(t)
  const proxy = await TestProxy.start(port)
  t.teardown(() => proxy.close())
  const body = 'x'.repeat(200_000)
  const id = await pub(base, 'slowbody', body)
  // 50 kB/s: the answer takes 4 s, past `keepalive`
  proxy.downRate = 50_000
  const rec = subscribe(t, `${proxy.base}/sub/slowbody`, { transports: ['longpoll'], keepalive: 1500, connectTimeout: 300 })
  await rec.waitMessages(1, 20000)
  t.deepEqual(rec.ids, [id])
  t.is(rec.texts[0]!.length, body.length)
  t.deepEqual(rec.disconnects, [])
})

test('longpoll: an idle channel is polled again once per `keepalive`, never faster', async (t) => {
  const { base, port } = await startServer(t)
  const proxy = await TestProxy.start(port)
  t.teardown(() => proxy.close())
  const rec = subscribe(t, `${proxy.base}/sub/quiet`, { transports: ['longpoll'], keepalive: 1000, connectTimeout: 300 })
  await rec.waitConnected('longpoll')
  await new Promise((resolve) => setTimeout(resolve, 3500))
  const polls = proxy.requests.length
  // one at the start and one per second since: 4 (a timer late under load: fewer)
  t.true(polls >= 2 && polls <= 4, `${polls} polls in 3.5 s`)
  const id = await pub(base, 'quiet', 'at last')
  await rec.waitMessages(1)
  t.deepEqual(rec.ids, [id])
  t.deepEqual(rec.disconnects, [])
})

const gap = test.macro({
  async exec (t: ExecutionContext, transport: TransportName) {
    const { base } = await startServer(t, { bufferLength: 3 })
    const first = await pub(base, 'g', 'first')
    const rec = subscribe(t, `${base}/sub/g`, { transports: [transport] })
    await rec.waitMessages(1)
    rec.client.stop()
    const later: string[] = []
    for (let i = 0; i < 6; i++) later.push(await pub(base, 'g', `later${i}`))
    rec.client.start()
    await rec.waitMessages(4)
    await rec.until(() => rec.gaps.length === 1, 3000, 'a gap event')
    const g = rec.gaps[0]!
    t.is(g.requested, first)
    t.is(g.resumed, later[3], 'resumed at the oldest message still buffered')
    t.is(g.channel, 'g')
    t.deepEqual(rec.texts, ['first', 'later3', 'later4', 'later5'])
    // the gap is reported just before the message it came with
    const gi = rec.log.indexOf('gap ' + first)
    t.is(rec.log[gi + 1], 'message ' + later[3])
  },
  title: (_, transport: TransportName) => `${transport}: a cursor below the buffer gives one gap event, then the oldest buffered message`
})

const gapOnOther = test.macro({
  async exec (t: ExecutionContext, transport: TransportName) {
    const { base } = await startServer(t, { bufferLength: 1 })
    const seconds = (id: string): number => Number(id.slice(0, id.indexOf(':')))
    const nextSecond = async (id: string): Promise<void> => {
      while (Math.floor(Date.now() / 1000) <= seconds(id)) await new Promise((resolve) => setTimeout(resolve, 50))
    }
    // a0, then a1 a second later (a0 evicted); b1 and b2 a second later still (b1 evicted). A
    // cursor at a0 has lost nothing of ga but b1 of gb, and is served a1 first, whose later-second
    // id would hide that loss: the gap comes with a1 (docs/api.md 12.1)
    const a0 = await pub(base, 'ga', 'a0')
    await nextSecond(a0)
    const a1 = await pub(base, 'ga', 'a1')
    await nextSecond(a1)
    const b1 = await pub(base, 'gb', 'b1')
    const b2 = await pub(base, 'gb', 'b2')
    t.true(seconds(a0) < seconds(a1) && seconds(a1) < seconds(b1), `${a0} ${a1} ${b1}`)
    const cursor = `${seconds(a0)}:[${a0.slice(a0.indexOf(':') + 1)}],-`
    const rec = subscribe(t, `${base}/sub/ga,gb`, { transports: [transport], lastId: cursor })
    await rec.waitMessages(2)
    // (long-poll signals it again with b2: each poll's cursor is the last id, which cannot carry
    // that the loss was signalled already)
    await rec.until(() => rec.gaps.length >= 1, 3000, 'a gap event')
    const g = rec.gaps[0]!
    t.is(g.resumed, rec.ids[0], 'signalled with the first message')
    t.is(rec.texts[0], 'a1', 'which is from the other channel')
    t.is(g.channel, 'gb', 'the channel that lost a message')
    t.regex(g.requested, /,\[/, 'its position bracketed in the requested id')
    t.deepEqual(rec.texts, ['a1', 'b2'])
    t.is(rec.ids[1], `${seconds(b2)}:-,[${b2.slice(b2.indexOf(':') + 1)}]`)
  },
  title: (_, transport: TransportName) => `${transport}: a multiplexed gap signalled with another channel's message names the channel that lost it`
})

const gapsOnBoth = test.macro({
  async exec (t: ExecutionContext, transport: TransportName) {
    // a restart: every record is new, so both channels may have lost messages, and ra did (a2,
    // published before the restart and never read): one gap event per channel, each named
    const first = await startServer(t)
    await pub(first.base, 'ra', 'a1')
    const b1 = await pub(first.base, 'rb', 'b1')
    const before = subscribe(t, `${first.base}/sub/ra,rb`, { transports: [transport], lastId: '0:0' })
    await before.waitMessages(2)
    before.client.stop()
    const last = before.ids[1]!
    t.true(last.includes(b1.slice(b1.indexOf(':') + 1)), last)
    await pub(first.base, 'ra', 'a2')
    await first.app.close()
    const second = await startServer(t)
    await pub(second.base, 'rb', 'b2')
    const rec = subscribe(t, `${second.base}/sub/ra,rb`, { transports: [transport], lastId: last })
    await rec.waitMessages(1)
    await rec.until(() => rec.gaps.length >= 2, 3000, 'two gap events')
    t.deepEqual(rec.texts, ['b2'])
    t.deepEqual(rec.gaps.slice(0, 2).map((g) => g.channel).sort(), ['ra', 'rb'])
    t.true(rec.gaps.slice(0, 2).every((g) => g.resumed === rec.ids[0]))
  },
  title: (_, transport: TransportName) => `${transport}: after a restart, a multiplexed subscription gets a gap event for each channel, named`
})

const persists = test.macro({
  async exec (t: ExecutionContext, transport: TransportName) {
    const { base } = await startServer(t)
    const store = new Map<string, string>()
    const storage = { getItem: (k: string) => store.get(k) ?? null, setItem: (k: string, v: string) => { store.set(k, v) }, removeItem: (k: string) => { store.delete(k) } }
    await pub(base, 'p', 'a')
    const second = await pub(base, 'p', 'b')
    const one = subscribe(t, `${base}/sub/p`, { transports: [transport], persist: 'my-key', storage })
    await one.waitMessages(2)
    one.client.stop()
    t.is(store.get('my-key'), second)
    await pub(base, 'p', 'c')
    // a new client (a page reload) with the same storage resumes after b
    const two = subscribe(t, `${base}/sub/p`, { transports: [transport], persist: 'my-key', storage })
    t.is(two.client.lastId, second)
    await two.waitMessages(1)
    await pub(base, 'p', 'd')
    await two.waitMessages(2)
    t.deepEqual(two.texts, ['c', 'd'])
  },
  title: (_, transport: TransportName) => `${transport}: persist keeps the last id across instances (reloads)`
})

const manyChannels = test.macro({
  async exec (t: ExecutionContext, transport: TransportName) {
    const { base, port } = await startServer(t)
    const proxy = await TestProxy.start(port)
    t.teardown(() => proxy.close())
    const channels = Array.from({ length: 60 }, (_, i) => 'c' + i)
    // a second subscriber, never cut off, keeps the channel records while the client is away: a
    // record made again after the cursor's second has that second as its floor, and the client
    // would rightly get a gap signal for it (docs/api.md 12.1)
    const keeper = subscribe(t, `${base}/sub/${channels.join(',')}`, { transports: ['eventsource'] })
    await keeper.waitConnected('eventsource')
    // a WebSocket URL cannot carry such a cursor: the client resumes on the next transport
    const rec = subscribe(t, `${proxy.base}/sub/${channels.join(',')}`, { transports: transport === 'websocket' ? ['websocket', 'eventsource'] : [transport] })
    await rec.waitConnected(transport)
    const sent: string[] = []
    for (let i = 0; i < 6; i++) {
      await pub(base, channels[i * 10]!, 'm' + i)
      sent.push('m' + i)
    }
    await rec.waitMessages(6)
    t.true(rec.client.lastId!.length > 128, `a vector of 60 positions: ${rec.client.lastId!.length} bytes`)
    t.true(proxy.dropAll() > 0)
    // published while the client is cut off: after the reconnect, once, and nothing before them again
    for (let i = 6; i < 9; i++) {
      await pub(base, channels[i * 5 + 1]!, 'm' + i)
      sent.push('m' + i)
    }
    await rec.waitMessages(9)
    await new Promise((resolve) => setTimeout(resolve, 300)) // room for a duplicate to show up
    t.deepEqual(rec.texts, sent, 'no loss, no duplicate: ' + rec.log.join(' | '))
    t.deepEqual(rec.gaps, [])
    t.is(rec.connects.at(-1), transport === 'websocket' ? 'eventsource' : transport)
  },
  title: (_, transport: TransportName) => `${transport}: a multiplexed subscription of 60 channels (a cursor past 128 bytes) resumes with no loss and no duplicate${transport === 'websocket' ? ' (on EventSource, which carries it)' : ''}`
})

test('websocket alone: a cursor past 128 bytes still reconnects (from the oldest message, as the server reads no such cursor), and the app is told with a gap event that the resume is not exact', async (t) => {
  const { base, port } = await startServer(t)
  const proxy = await TestProxy.start(port)
  t.teardown(() => proxy.close())
  const channels = Array.from({ length: 60 }, (_, i) => 'c' + i)
  const rec = subscribe(t, `${proxy.base}/sub/${channels.join(',')}`, { transports: ['websocket'] })
  await rec.waitConnected('websocket')
  for (let i = 0; i < 6; i++) await pub(base, channels[i * 10]!, 'm' + i)
  await rec.waitMessages(6)
  t.true(rec.client.lastId!.length > 128)
  t.true(proxy.dropAll() > 0)
  await pub(base, channels[7]!, 'after')
  await rec.until(() => rec.texts.includes('after'), 8000, 'the message published while cut off')
  t.true(rec.connects.length >= 2 && rec.connects.every((c) => c === 'websocket'), rec.log.join(' | '))
  // the first six came again: not silently
  t.is(rec.gaps.length, rec.connects.length - 1, rec.log.join(' | '))
  t.is(rec.gaps[0]!.resumed, undefined)
  t.is(rec.gaps[0]!.requested.split(',').length, 60)
})

test('longpoll: a 408 or 304 answered at once (a proxy, not the server\'s timeout) is not polled again in a loop: the pauses grow', async (t) => {
  for (const status of [408, 304]) {
    let polls = 0
    const server = http.createServer((_req, res) => {
      polls++
      res.writeHead(status)
      res.end()
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const rec = subscribe(t, `http://127.0.0.1:${(server.address() as AddressInfo).port}/sub/x`, { transports: ['longpoll'] })
    // pauses of 1, 2 and 4 s: four polls in 3.5 s (in a loop, hundreds)
    await new Promise((resolve) => setTimeout(resolve, 3500))
    rec.client.stop()
    server.closeAllConnections()
    server.close()
    t.true(polls >= 2 && polls <= 4, `${status}: ${polls} polls in 3.5 s`)
    t.deepEqual(rec.retries, [], 'the same poll loop, not a reconnection')
  }
})

test('longpoll: a short subscriber timeout (408 in under a second) is polled again once a second, without a growing pause', async (t) => {
  let polls = 0
  const server = http.createServer((_req, res) => {
    polls++
    setTimeout(() => { res.writeHead(408); res.end() }, 300)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const rec = subscribe(t, `http://127.0.0.1:${(server.address() as AddressInfo).port}/sub/x`, { transports: ['longpoll'] })
  // one poll a second: seven in 6.5 s (a pause of 1, 2 and 4 s, as for a proxy's answers, three)
  await new Promise((resolve) => setTimeout(resolve, 6500))
  rec.client.stop()
  server.closeAllConnections()
  server.close()
  t.true(polls >= 5 && polls <= 8, `${polls} polls in 6.5 s`)
  t.deepEqual(rec.retries, [], 'the same poll loop, not a reconnection')
})

/**
 * A server answering every poll with the same message and `headers`, a long-poll client on it for
 * 1.5 s (backoff 200–400 ms), stopped: its recorder and how many polls came.
 */
async function sameAnswerEveryPoll (t: ExecutionContext, headers: Record<string, string>): Promise<{ rec: Recorder, polls: number }> {
  let polls = 0
  const server = http.createServer((_req, res) => {
    polls++
    res.writeHead(200, { 'Content-Type': 'text/plain', ...headers })
    res.end('same')
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const rec = subscribe(t, `http://127.0.0.1:${(server.address() as AddressInfo).port}/sub/x`, { transports: ['longpoll'], minDelay: 200, maxDelay: 400 })
  await new Promise((resolve) => setTimeout(resolve, 1500))
  rec.client.stop()
  return { rec, polls }
}

test('longpoll: an answer without a readable id is not delivered again and again: the transport fails over with backoff', async (t) => {
  // a proxy that strips Etag and Last-Modified, as a server here: every poll gets the same message
  const { rec, polls } = await sameAnswerEveryPoll(t, {})
  t.is(rec.messages.length, 0, 'nothing delivered without an id to resume from')
  t.true(polls <= 10, `${polls} polls in 1.5 s`)
  t.true(rec.retries.length >= 1 && rec.retries.every((r) => r.delay >= 100), rec.log.join(' | '))
})

test('longpoll: an answer that repeats the message of the cursor sent (a cache on the path serving the last answer again) is not delivered again: the transport fails over with backoff', async (t) => {
  // a cache that ignores no-cache, as a server here: every poll gets the same answer, its id too
  const { rec, polls } = await sameAnswerEveryPoll(t, { 'Last-Modified': 'Thu, 01 Jan 2026 00:00:00 GMT', Etag: '0' })
  t.deepEqual(rec.texts, ['same'], 'delivered once')
  t.true(polls <= 10, `${polls} polls in 1.5 s`)
  t.true(rec.retries.length >= 1 && rec.retries.every((r) => r.delay >= 100 && /repeats the message/.test(r.reason)), rec.log.join(' | '))
})

for (const transport of TRANSPORTS) {
  test(receives, transport)
  test(multiplexed, transport)
  test(manyChannels, transport)
  test(resumes, transport)
  test(gap, transport)
  test(gapOnOther, transport)
  test(gapsOnBoth, transport)
  test(persists, transport)
}

for (const transport of TRANSPORTS) {
  test(`${transport}: stop() and start() from inside a message handler: the stopped connection delivers nothing more, nothing is lost or repeated`, async (t) => {
    const { base } = await startServer(t)
    const sent: string[] = []
    // five messages buffered: they come together (one chunk, frames in one read, or one poll each)
    for (let i = 0; i < 5; i++) sent.push(await pub(base, 'restart', 'm' + i))
    const rec = subscribe(t, `${base}/sub/restart`, { transports: [transport] })
    let restarted = false
    rec.client.on('message', () => {
      if (restarted) return
      restarted = true
      rec.client.stop()
      rec.client.start()
    })
    await rec.waitMessages(5)
    await new Promise((resolve) => setTimeout(resolve, 300)) // room for a duplicate to show up
    t.deepEqual(rec.ids, sent, rec.log.join(' | '))
  })
}

test('the default order starts with websocket; stop() then start() resumes without loss', async (t) => {
  const { base } = await startServer(t)
  const client = new Parkline(`${base}/sub/d`, { minDelay: 50 })
  const rec = new Recorder(client)
  t.teardown(() => client.stop())
  client.start()
  await rec.waitConnected('websocket')
  await pub(base, 'd', 'x')
  await rec.waitMessages(1)
  client.stop()
  t.false(client.connected)
  t.is(rec.disconnects.at(-1)?.reason, 'stopped')
  await pub(base, 'd', 'y')
  client.start()
  await rec.waitMessages(2)
  t.deepEqual(rec.texts, ['x', 'y'])
})

test('longpoll against a server with longpollMultipart: each message of a multipart answer is delivered on its own, the last with the answer\'s id', async (t) => {
  const { base } = await startServer(t, { longpollMultipart: true })
  const ids = [await pub(base, 'mp', 'one', 'text/plain'), await pub(base, 'mp', 'two'), await pub(base, 'mp', Buffer.from([0, 1, 2]), 'application/octet-stream')]
  const rec = subscribe(t, `${base}/sub/mp`, { transports: ['longpoll'] })
  await rec.waitMessages(3)
  t.deepEqual(rec.texts.slice(0, 2), ['one', 'two'])
  t.deepEqual([...new Uint8Array(rec.messages[2]!.data as ArrayBuffer)], [0, 1, 2])
  t.deepEqual(rec.messages.map((m) => m.meta.contentType), ['text/plain', undefined, 'application/octet-stream'])
  t.deepEqual(rec.messages.map((m) => m.meta.id), [undefined, undefined, ids[2]])
  t.is(rec.client.lastId, ids[2])
  // the next message, alone, comes as a plain answer
  const four = await pub(base, 'mp', 'four')
  await rec.waitMessages(4)
  t.is(rec.texts[3], 'four')
  t.is(rec.ids[3], four)
  t.deepEqual(rec.messages.map((m) => m.meta.channel), ['mp', 'mp', 'mp', 'mp'])
})

for (const multipart of [false, true]) {
  test(`the published bytes on websocket and longpoll${multipart ? ' (longpollMultipart)' : ''}: bytes that are not UTF-8 come as an ArrayBuffer whatever the type, a BOM is kept, octet-stream in any spelling is bytes, a long content-type is read`, async (t) => {
    const { base } = await startServer(t, { longpollMultipart: multipart })
    const bad = Buffer.from([0x68, 0x69, 0xff, 0xfe, 0x00])
    const sent: Array<[Buffer, string | undefined]> = [
      [bad, 'text/plain'],
      [bad, undefined],
      [Buffer.from('\ufeffbom', 'utf8'), 'text/plain'],
      [Buffer.from([1, 2, 3]), 'Application/Octet-Stream; x=1'],
      [Buffer.from('long type'), 'text/plain; p=' + 'x'.repeat(5000)]
    ]
    for (const [body, type] of sent) await pub(base, 'bytes', body, type)
    for (const transport of ['websocket', 'longpoll'] as const) {
      const rec = subscribe(t, `${base}/sub/bytes`, { transports: [transport] })
      await rec.waitMessages(sent.length)
      rec.client.stop()
      const got = rec.messages.map((m) => m.data)
      t.true(got[0] instanceof ArrayBuffer && Buffer.from(got[0]).equals(bad), `${transport}: not UTF-8, typed text/plain`)
      t.true(got[1] instanceof ArrayBuffer && Buffer.from(got[1]).equals(bad), `${transport}: not UTF-8, no type`)
      t.is(rec.messages[1]!.meta.contentType, undefined, `${transport}: no type is no type`)
      t.is(got[2], '\ufeffbom', `${transport}: the BOM is the message's`)
      t.true(got[3] instanceof ArrayBuffer && Buffer.from(got[3]).equals(Buffer.from([1, 2, 3])), `${transport}: octet-stream in another spelling`)
      t.is(got[4], 'long type', `${transport}: a 5,000-byte content-type`)
      t.is(rec.messages[4]!.meta.contentType?.length, 5014)
    }
  })
}

const stopMidAnswer = test.macro({
  async exec (t: ExecutionContext, restart: 'later' | 'in the same handler') {
    const { base } = await startServer(t, { longpollMultipart: true })
    for (const m of ['one', 'two', 'three']) await pub(base, 'ms', m)
    const client = new Parkline(`${base}/sub/ms`, { transports: ['longpoll'], minDelay: 50 })
    t.teardown(() => { client.stop() })
    const got: string[] = []
    client.on('message', (data) => {
      got.push(data as string)
      // the first part of the answer's three: the rest waits, and comes first when started again
      if (got.length === 1) {
        client.stop()
        if (restart === 'in the same handler') client.start()
      }
    })
    client.start()
    await eventually(async () => got.length >= 1, 5000)
    await sleep(300)
    if (restart === 'later') {
      t.deepEqual(got, ['one'], 'nothing after stop()')
      client.start()
    }
    const four = await pub(base, 'ms', 'four')
    await eventually(async () => got.length >= 4, 5000)
    await sleep(200)
    t.deepEqual(got, ['one', 'two', 'three', 'four'], 'each once, in order')
    t.is(client.lastId, four)
  },
  title: (_, restart: string) => `longpoll against longpollMultipart: stop() in a handler in the middle of an answer, start() ${restart}: the rest of the answer comes next, nothing twice`
})
test(stopMidAnswer, 'later')
test(stopMidAnswer, 'in the same handler')

test('longpoll against longpollMultipart: stop() and start() in the handler of an answer\'s last message, or start() then resetCursor() while an answer is held, go on polling', async (t) => {
  const { base } = await startServer(t, { longpollMultipart: true })
  for (const m of ['one', 'two', 'three']) await pub(base, 'mt', m)
  const last = new Parkline(`${base}/sub/mt`, { transports: ['longpoll'], minDelay: 50 })
  t.teardown(() => { last.stop() })
  const got: string[] = []
  last.on('message', (data) => {
    got.push(data as string)
    if (got.length === 3) { last.stop(); last.start() }
  })
  last.start()
  await eventually(async () => got.length >= 3, 5000)
  await pub(base, 'mt', 'four')
  await eventually(async () => got.length >= 4, 5000)
  t.deepEqual(got, ['one', 'two', 'three', 'four'])
  // held, then start() and resetCursor() before the held rest is delivered: from the oldest again
  const reset = new Parkline(`${base}/sub/mt`, { transports: ['longpoll'], minDelay: 50 })
  t.teardown(() => { reset.stop() })
  const again: string[] = []
  reset.on('message', (data) => {
    again.push(data as string)
    if (again.length === 1) reset.stop()
  })
  reset.start()
  await eventually(async () => again.length >= 1, 5000)
  reset.start()
  reset.resetCursor()
  await eventually(async () => again.length >= 5, 5000)
  t.deepEqual(again, ['one', 'one', 'two', 'three', 'four'])
})

test('longpoll, multiplexed, longpollMultipart: a part that comes without an id is not named after the first channel', async (t) => {
  const { base } = await startServer(t, { longpollMultipart: true })
  await pub(base, 'mx', 'from x')
  await pub(base, 'my', 'from y')
  const rec = subscribe(t, `${base}/sub/mx,my`, { transports: ['longpoll'] })
  await rec.waitMessages(2)
  t.deepEqual(rec.texts, ['from x', 'from y'])
  // the first part carries no id: which channel sent it is not known; the last is y's (its id says so)
  t.deepEqual(rec.messages.map((m) => m.meta.channel), [undefined, 'my'])
})

test('on/off with an event the client never emits (a typo, `error`) throws a TypeError naming the events it has; nothing is started', (t) => {
  const p = new Parkline('http://127.0.0.1:9/sub/x')
  const err = t.throws(() => p.on('error' as 'message', () => {}), { instanceOf: TypeError })
  t.regex(err!.message, /no event "error" \(events: message, gap, connect, disconnect, transport, retry, auth\)/)
  t.throws(() => p.off('toString' as 'message', () => {}), { instanceOf: TypeError })
  t.notThrows(() => p.on('message', () => {}).off('message', () => {}))
  t.false(p.running)
})

test('websocket with keepalive 0: a working connection is kept past connectTimeout (the connect timer ends at open)', async (t) => {
  const { base } = await startServer(t)
  // the helper's 1.5 s: a shorter timeout can run out before the socket opens on a busy host (CI runs
  // the test files side by side on 2 cores), and the client then rightly falls back to eventsource
  const connectTimeout = 1500
  const rec = subscribe(t, `${base}/sub/k0`, { transports: ['websocket', 'eventsource'], keepalive: 0, connectTimeout })
  await rec.waitConnected('websocket')
  // three connect timeouts' worth: the old timer fired on the open socket and fell back
  await sleep(3 * connectTimeout)
  await pub(base, 'k0', 'still here')
  await rec.waitMessages(1)
  t.is(rec.client.transport, 'websocket')
  t.deepEqual(rec.retries, [], rec.log.join(' | '))
  t.deepEqual(rec.messages.map((m) => m.meta.id !== undefined), [true])
})

for (const listener of ['disconnect', 'retry'] as const) {
  test(`stop() and start() inside a ${listener} listener: one connection, and stop() ends it`, async (t) => {
    const { base } = await startServer(t)
    const ch = 'restart-' + listener
    const subscribers = async (): Promise<number> => {
      const r = await fetch(`${base}/pub/${ch}`, { headers: { Accept: 'text/json' } })
      return r.status === 200 ? (await r.json() as { subscribers: number }).subscribers : 0
    }
    await pub(base, ch, 'm0')
    const rec = subscribe(t, `${base}/sub/${ch}`, { transports: ['websocket'] })
    let done = false
    rec.client.on(listener, () => {
      if (done) return
      done = true
      rec.client.stop()
      rec.client.start()
    })
    await rec.waitMessages(1)
    // the server ends the subscription (the channel is deleted): the client reconnects
    await fetch(`${base}/pub/${ch}`, { method: 'DELETE' })
    await rec.until(() => done)
    await pub(base, ch, 'm1')
    await rec.waitMessages(2)
    t.true(await eventually(async () => await subscribers() === 1), 'one connection')
    await sleep(300) // a second connection the client opened on its own would be counted by now
    t.is(await subscribers(), 1, rec.log.join(' | '))
    rec.client.stop()
    t.true(await eventually(async () => await subscribers() === 0), 'stop() ended it')
  })
}

test('eventsource: a message whose event name is one of the control events\' (ping, parkline-gap, parkline-overflow) is a message', async (t) => {
  const { base } = await startServer(t)
  for (const event of ['ping', 'parkline-gap', 'parkline-overflow', '']) {
    await publish(base, 'names', JSON.stringify({ event }), event === '' ? {} : { 'X-EventSource-Event': event })
  }
  const rec = subscribe(t, `${base}/sub/names`, { transports: ['eventsource'], lastId: '0:0' })
  await rec.waitMessages(4)
  t.deepEqual(rec.messages.map((m) => m.meta.event), ['ping', 'parkline-gap', 'parkline-overflow', undefined])
  t.deepEqual(rec.gaps, [])
  // the stream was not taken as ended by an overflow: a later message arrives on it
  await publish(base, 'names', 'after')
  await rec.waitMessages(5)
  t.deepEqual(rec.retries, [], rec.log.join(' | '))
})

test('longpoll: a body typed application/octet-stream with parameters comes as an ArrayBuffer, as on WebSocket', async (t) => {
  const { base } = await startServer(t)
  const bytes = Buffer.from([0xff, 0x00, 0xfe, 0x80])
  await pub(base, 'bin', bytes, 'Application/Octet-Stream; x=1')
  const rec = subscribe(t, `${base}/sub/bin`, { transports: ['longpoll'], lastId: '0:0' })
  await rec.waitMessages(1)
  const data = rec.messages[0]!.data
  t.true(data instanceof ArrayBuffer, typeof data)
  t.deepEqual(Buffer.from(data as ArrayBuffer), bytes)
})

test('persist where there is no localStorage (Node) and no storage given: a TypeError at construction, not a silent no-op', (t) => {
  t.false('localStorage' in globalThis, 'this runtime has none')
  t.throws(() => new Parkline('http://127.0.0.1:9/sub/p', { persist: true }), { instanceOf: TypeError, message: /persist needs a storage/ })
  const store = new Map<string, string>()
  t.notThrows(() => new Parkline('http://127.0.0.1:9/sub/p', { persist: true, storage: { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => { store.set(k, v) }, removeItem: (k) => { store.delete(k) } } }))
  t.notThrows(() => new Parkline('http://127.0.0.1:9/sub/p', { persist: false }))
})

test('longpoll against longpollMultipart: a gap that comes with an answer of several parts has resumed undefined (the answer names only its last id)', async (t) => {
  const { base } = await startServer(t, { longpollMultipart: true, bufferLength: 3 })
  const first = await pub(base, 'mp', 'm0')
  for (const m of ['m1', 'm2', 'm3', 'm4']) await pub(base, 'mp', m)
  // the cursor is m0: m1 has left the buffer of three (m2, m3, m4 remain)
  const rec = subscribe(t, `${base}/sub/mp`, { transports: ['longpoll'], lastId: first })
  await rec.waitMessages(3)
  t.deepEqual(rec.texts, ['m2', 'm3', 'm4'])
  t.is(rec.gaps.length, 1)
  t.is(rec.gaps[0]!.requested, first)
  t.is(rec.gaps[0]!.resumed, undefined)
})

for (const transport of TRANSPORTS) {
  test(`${transport} alone, with a cursor the server refuses (400 Message ID invalid): one gap event, the cursor starts over, the messages come`, async (t) => {
    const { base } = await startServer(t)
    await pub(base, 'bc', 'm1')
    // e.g. a persisted cursor of /sub/a,b,c used on a subscription of one channel
    const rec = subscribe(t, `${base}/sub/bc`, { transports: [transport], lastId: '1796000000:1,2,[3]' })
    await rec.waitMessages(1)
    t.deepEqual(rec.texts, ['m1'])
    t.is(rec.gaps.length, 1)
    t.is(rec.gaps[0]!.requested, '1796000000:1,2,[3]')
  })
}

test('websocket and longpoll alike: a UTF-8 body whose Content-Type has a byte past ASCII (sent in a binary frame) comes as text, and a body that is not UTF-8 as bytes', async (t) => {
  const { base } = await startServer(t)
  // the type as latin1 bytes, as an HTTP publisher sends it (é is 0xE9)
  await pub(base, 'typed', 'abc', 'text/plain; name=\u00e9')
  await pub(base, 'typed', Buffer.from([0xff, 0xfe]), 'text/plain; name=\u00e9')
  for (const transport of ['websocket', 'longpoll'] as const) {
    const rec = subscribe(t, `${base}/sub/typed`, { transports: [transport], lastId: '0:0' })
    await rec.waitMessages(2)
    t.is(rec.messages[0]!.data, 'abc', transport)
    t.is(rec.messages[0]!.meta.contentType, 'text/plain; name=\u00e9', transport)
    t.true(rec.messages[1]!.data instanceof ArrayBuffer, transport)
    t.deepEqual([...new Uint8Array(rec.messages[1]!.data as ArrayBuffer)], [0xff, 0xfe], transport)
    rec.client.stop()
  }
})

const badSavedCursor = test.macro({
  async exec (t: ExecutionContext, transport: TransportName) {
    const { base } = await startServer(t)
    await pub(base, 'saved', 'first')
    await pub(base, 'saved', 'second')
    // a cursor kept from before (storage, an app's own) that is no id: the client starts over and says so
    const rec = subscribe(t, `${base}/sub/saved`, { transports: [transport], lastId: 'abc:1' })
    await rec.waitMessages(2)
    t.deepEqual(rec.texts, ['first', 'second'])
    t.is(rec.gaps.length, 1, rec.log.join(' | '))
    t.is(rec.gaps[0]!.requested, 'abc:1')
  },
  title: (_, transport: TransportName) => `${transport}: a saved cursor that is no id starts over from the oldest message with a gap event, not silently`
})
for (const transport of TRANSPORTS) test(badSavedCursor, transport)

for (const transport of TRANSPORTS) {
  test(`${transport}: a URL that names a cursor (?last_event_id=) starts there, and a resume goes on from the last message received, not from the URL's cursor again`, async (t) => {
    const { base } = await startServer(t)
    const one = await pub(base, 'uq', 'one')
    await pub(base, 'uq', 'two')
    const client = new Parkline(`${base}/sub/uq?x=1&last_event_id=${one}`, { minDelay: 50, transports: [transport] })
    const rec = new Recorder(client)
    t.teardown(() => client.stop())
    client.start()
    await rec.waitMessages(1)
    client.stop()
    await pub(base, 'uq', 'three')
    client.start()
    await rec.waitMessages(2)
    await sleep(300)
    t.deepEqual(rec.texts, ['two', 'three'])
  })
}

for (const transport of TRANSPORTS) {
  test(`${transport}: a URL whose cursor the server refuses (400) starts over without it, once, and the app is told with a gap event`, async (t) => {
    const { base } = await startServer(t)
    await pub(base, 'ub', 'one')
    const client = new Parkline(`${base}/sub/ub?last_event_id=a:b:c&x=1`, { minDelay: 50, transports: [transport] })
    const rec = new Recorder(client)
    t.teardown(() => client.stop())
    client.start()
    await rec.waitMessages(1)
    await pub(base, 'ub', 'two')
    await rec.waitMessages(2)
    t.deepEqual(rec.texts, ['one', 'two'])
    t.true(rec.retries.filter((r) => /400/.test(r.reason)).length <= 1, rec.log.join('\n'))
    t.is(rec.gaps.length, 1)
    t.like(rec.gaps[0], { requested: 'a:b:c', resumed: undefined })
  })
}
