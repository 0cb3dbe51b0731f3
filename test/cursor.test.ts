// PROTOCOL.md §2.3 and §4.2: every row of the cursor table against a real server, on a one-channel
// subscription with 3 messages buffered. Long-poll for every row; SSE (Last-Event-ID) where the
// row is about Last-Event-ID or the query.
import test, { type ExecutionContext } from 'ava'
import net from 'node:net'
import { once } from 'node:events'
import { SseClient, eventually, info, publish, rawRequest, startServer, type HttpAnswer } from './helpers/server.ts'
import { serve } from './helpers/node.ts'

const BODIES = ['first', 'second', 'third']

interface Fixture { port: number, base: string, ids: string[], T: number }

/** A server with channel `c` holding 3 messages; `ids` are their ids as the publisher gave them. */
async function fixture (t: ExecutionContext): Promise<Fixture> {
  const { port, base } = await startServer(t)
  const ids: string[] = []
  for (const body of BODIES) {
    const r = await publish(base, 'c', body)
    t.is(r.status, 202)
    ids.push(/last message id: (\d+:\d+)$/.exec(r.text)![1]!)
  }
  return { port, base, ids, T: Number(ids[0]!.split(':')[0]) }
}

type Headers = Array<[string, string]>

function requestBytes (path: string, headers: Headers, sse = false): string {
  let req = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n`
  if (sse) req += 'Accept: text/event-stream\r\n'
  for (const [k, v] of headers) req += `${k}: ${v}\r\n`
  return req + '\r\n'
}

/** One long-poll answer; header values go out as latin1 bytes. */
async function poll (port: number, path: string, headers: Headers = []): Promise<HttpAnswer> {
  return await rawRequest(port, requestBytes(path, headers))
}

function isOldest (t: ExecutionContext, a: HttpAnswer, label: string): void {
  t.is(a.status, 200, label)
  t.is(a.body, 'first', label)
}

function isBadId (t: ExecutionContext, a: HttpAnswer, label: string): void {
  t.is(a.status, 400, label)
  t.is(a.headers['content-type'], 'text/plain', label)
  t.is(a.body, 'Message ID invalid', label)
}

/** SSE with these headers: the first event's data, or the HTTP status when it is not 200. */
async function sseFirst (port: number, path: string, headers: Headers): Promise<{ status: number, data?: string, body?: string }> {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => {})
  await once(socket, 'connect')
  socket.write(Buffer.from(requestBytes(path, headers, true), 'latin1'))
  let text = ''
  const result = await new Promise<{ status: number, data?: string, body?: string }>((resolve) => {
    const timer = setTimeout(() => resolve({ status: 0 }), 4000)
    const check = (): void => {
      const end = text.indexOf('\r\n\r\n')
      if (end === -1) return
      const status = Number(text.slice(9, 12))
      const rest = text.slice(end + 4)
      if (status !== 200) {
        const m = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end))
        if (m !== null && rest.length >= Number(m[1])) { clearTimeout(timer); resolve({ status, body: rest.slice(0, Number(m[1])) }) }
        return
      }
      const ev = /(?:^|\n)id: [^\n]*\ndata: ([^\n]*)\n\n/.exec(rest)
      if (ev !== null) { clearTimeout(timer); resolve({ status, data: ev[1] }) }
    }
    socket.on('data', (d: Buffer) => { text += d.toString('latin1'); check() })
    socket.on('close', () => { clearTimeout(timer); resolve({ status: Number(text.slice(9, 12)) }) })
  })
  socket.destroy()
  return result
}

/** Assert the long-poll parks: it is counted as a subscriber and gets no answer; then abort it. */
async function assertParks (t: ExecutionContext, f: Fixture, headers: Headers, label: string): Promise<void> {
  const socket = net.connect(f.port, '127.0.0.1')
  socket.on('error', () => {})
  await once(socket, 'connect')
  let text = ''
  socket.on('data', (d: Buffer) => { text += d.toString('latin1') })
  socket.write(Buffer.from(requestBytes('/sub/c', headers), 'latin1'))
  // a long-poll counts only once parked; an answered one never does (§4.4)
  t.true(await eventually(async () => (await info(f.base, 'c')).json!.subscribers === 1), label)
  t.is(text, '', label)
  socket.destroy()
  t.true(await eventually(async () => (await info(f.base, 'c')).json!.subscribers === 0), label)
}

// ---- Last-Event-ID --------------------------------------------------------------------------------

test('Last-Event-ID without `:` (garbage, %zz, 300 × x) is ignored: the next source, else the oldest', async (t) => {
  const f = await fixture(t)
  for (const v of ['garbage', '%zz', 'x'.repeat(300)]) {
    isOldest(t, await poll(f.port, '/sub/c', [['Last-Event-ID', v]]), v)
    t.deepEqual(await sseFirst(f.port, '/sub/c', [['Last-Event-ID', v]]), { status: 200, data: 'first' }, v)
    // the next source is used
    const next = await poll(f.port, `/sub/c?last_event_id=${f.ids[0]}`, [['Last-Event-ID', v]])
    t.is(next.body, 'second', v)
  }
})

test('Last-Event-ID 1:, 1:2:3, 1:99999999999, 1:-1, " 1:0 ", <past T>:[1, 0:0 → 200 from the oldest message', async (t) => {
  const f = await fixture(t)
  for (const v of ['1:', '1:2:3', '1:99999999999', '1:-1', ' 1:0 ', `${f.T - 1000}:[1`, '0:0', '0:5', `${f.T - 1}:0`]) {
    isOldest(t, await poll(f.port, '/sub/c', [['Last-Event-ID', v]]), v)
    t.deepEqual(await sseFirst(f.port, '/sub/c', [['Last-Event-ID', v]]), { status: 200, data: 'first' }, v)
  }
})

test('Last-Event-ID with bad seconds (-5:-3, abc:1, :, :1, ÿþ:é, 20 digits) → 400 Message ID invalid', async (t) => {
  const f = await fixture(t)
  for (const v of ['-5:-3', 'abc:1', ':', ':1', 'ÿþ:é', '99999999999999999999:0', '+1:0', '1 :0', '%2D5:0']) {
    isBadId(t, await poll(f.port, '/sub/c', [['Last-Event-ID', v]]), v)
    t.deepEqual(await sseFirst(f.port, '/sub/c', [['Last-Event-ID', v]]), { status: 400, body: 'Message ID invalid' }, v)
  }
  // the largest allowed seconds value is valid (a cursor in the future: it parks, not 400)
  await assertParks(t, f, [['Last-Event-ID', '9223372036854775807:0']], '2^63-1')
  isBadId(t, await poll(f.port, '/sub/c', [['Last-Event-ID', '9223372036854775808:0']]), '2^63')
})

test('Last-Event-ID with bad brackets or more tags than channels (T:[1]], T:[1],[2], 1:1,2,…,20) → 400', async (t) => {
  const f = await fixture(t)
  const many = '1:' + Array.from({ length: 20 }, (_, i) => String(i + 1)).join(',')
  for (const v of [`${f.T}:[1]]`, `${f.T}:[1],[2]`, many, `${f.T}:]1[`, `${f.T}:[0],1`, `${f.T}:0,0`]) {
    isBadId(t, await poll(f.port, '/sub/c', [['Last-Event-ID', v]]), v)
    t.deepEqual(await sseFirst(f.port, '/sub/c', [['Last-Event-ID', v]]), { status: 400, body: 'Message ID invalid' }, v)
  }
})

test('a Last-Event-ID over 128 bytes is skipped, even when it would be invalid', async (t) => {
  const f = await fixture(t)
  isOldest(t, await poll(f.port, '/sub/c', [['Last-Event-ID', '-5:-3' + 'x'.repeat(200)]]), 'long invalid')
  const next = await poll(f.port, `/sub/c?last_event_id=${f.ids[1]}`, [['Last-Event-ID', `${f.ids[0]}${' '.repeat(10)}${'x'.repeat(200)}`]])
  t.is(next.body, 'third')
})

test('Last-Event-ID resumes exactly after the id, on long-poll and SSE', async (t) => {
  const f = await fixture(t)
  t.is((await poll(f.port, '/sub/c', [['Last-Event-ID', f.ids[0]!]])).body, 'second')
  t.is((await poll(f.port, '/sub/c', [['Last-Event-ID', f.ids[1]!]])).body, 'third')
  // percent-encoded colon works too
  t.is((await poll(f.port, '/sub/c', [['Last-Event-ID', f.ids[0]!.replace(':', '%3A')]])).body, 'second')
  const sse = await SseClient.connect(f.port, '/sub/c', { 'Last-Event-ID': f.ids[0]! })
  await sse.waitEvents(2)
  t.deepEqual(sse.events.map((e) => [e.id, e.data]), [[f.ids[1], 'second'], [f.ids[2], 'third']])
  sse.close()
  await assertParks(t, f, [['Last-Event-ID', f.ids[2]!]], 'at the newest')
})

// ---- ?last_event_id= ---------------------------------------------------------------------------

test('?last_event_id=%ZZ, 400 digits, or empty → 200 from the oldest', async (t) => {
  const f = await fixture(t)
  for (const q of ['%ZZ', '9'.repeat(400), '', '1:' + '9'.repeat(400)]) {
    isOldest(t, await poll(f.port, `/sub/c?last_event_id=${q}`), q.slice(0, 10))
    t.deepEqual(await sseFirst(f.port, `/sub/c?last_event_id=${q}`, []), { status: 200, data: 'first' }, q.slice(0, 10))
  }
  isOldest(t, await poll(f.port, '/sub/c?last_event_id'), 'no =')
})

test('?last_event_id=a:b:c → 400', async (t) => {
  const f = await fixture(t)
  isBadId(t, await poll(f.port, '/sub/c?last_event_id=a:b:c'), 'a:b:c')
  t.deepEqual(await sseFirst(f.port, '/sub/c?last_event_id=a:b:c', []), { status: 400, body: 'Message ID invalid' })
})

test('?last_event_id= resumes after the id; only the first parameter of that name counts', async (t) => {
  const f = await fixture(t)
  t.is((await poll(f.port, `/sub/c?last_event_id=${f.ids[0]}`)).body, 'second')
  t.is((await poll(f.port, `/sub/c?x=1&last_event_id=${encodeURIComponent(f.ids[1]!)}`)).body, 'third')
  t.is((await poll(f.port, `/sub/c?last_event_id=${f.ids[0]}&last_event_id=${f.ids[1]}`)).body, 'second')
  t.deepEqual(await sseFirst(f.port, `/sub/c?last_event_id=${f.ids[1]}`, []), { status: 200, data: 'third' })
})

test('the Last-Event-ID header wins over ?last_event_id= when both are valid', async (t) => {
  const f = await fixture(t)
  t.is((await poll(f.port, `/sub/c?last_event_id=${f.ids[0]}`, [['Last-Event-ID', f.ids[1]!]])).body, 'third')
  t.is((await poll(f.port, `/sub/c?last_event_id=${f.ids[1]}`, [['Last-Event-ID', f.ids[0]!]])).body, 'second')
  const sse = await sseFirst(f.port, `/sub/c?last_event_id=${f.ids[0]}`, [['Last-Event-ID', f.ids[1]!]])
  t.deepEqual(sse, { status: 200, data: 'third' })
  // a malformed header is 400 even when the query is valid; an empty one falls through
  isBadId(t, await poll(f.port, `/sub/c?last_event_id=${f.ids[0]}`, [['Last-Event-ID', 'abc:1']]), 'bad header')
  t.is((await poll(f.port, `/sub/c?last_event_id=${f.ids[0]}`, [['Last-Event-ID', '']])).body, 'second')
})

// ---- If-Modified-Since / If-None-Match ---------------------------------------------------------

const PAST_DATES = ['Sun, 06 Nov 1994 08:49:37 GMT', 'Sunday, 06-Nov-94 08:49:37 GMT', 'Sun Nov  6 08:49:37 1994']

test('IMS garbage, empty, 300 chars or the epoch, with INM 0 → 200 from the oldest; no other source is consulted', async (t) => {
  const f = await fixture(t)
  for (const ims of ['garbage', '', 'x'.repeat(300), 'Thu, 01 Jan 1970 00:00:00 GMT']) {
    isOldest(t, await poll(f.port, '/sub/c', [['If-Modified-Since', ims], ['If-None-Match', '0']]), ims.slice(0, 10))
    // step 1 decides: a valid Last-Event-ID is not looked at
    isOldest(t, await poll(f.port, `/sub/c?last_event_id=${f.ids[1]}`, [['If-Modified-Since', ims], ['If-None-Match', '0'], ['Last-Event-ID', f.ids[0]!]]), ims.slice(0, 10) + ' + LEI')
  }
})

test('IMS in the past (IMF-fixdate, RFC 850, asctime) with INM 0, abc, -1, *, W/"0" or 300 nines → 200 with a buffered message', async (t) => {
  const f = await fixture(t)
  for (const ims of PAST_DATES) {
    for (const inm of ['0', 'abc', '-1', '*', 'W/"0"', '9'.repeat(300)]) {
      const a = await poll(f.port, '/sub/c', [['If-Modified-Since', ims], ['If-None-Match', inm]])
      t.is(a.status, 200, `${ims} / ${inm.slice(0, 10)}`)
      // every buffered message is newer than 1994, so the one served is the oldest
      t.is(a.body, 'first', `${ims} / ${inm.slice(0, 10)}`)
    }
  }
})

test('no IMS, INM without `:` (garbage, "quoted") → 200 from the oldest; no other source is consulted', async (t) => {
  const f = await fixture(t)
  for (const inm of ['garbage', '"quoted"', '0', '*']) {
    isOldest(t, await poll(f.port, '/sub/c', [['If-None-Match', inm]]), inm)
    isOldest(t, await poll(f.port, `/sub/c?last_event_id=${f.ids[0]}`, [['If-None-Match', inm], ['Last-Event-ID', f.ids[0]!]]), inm + ' + LEI')
  }
  // INM alone with a `:` is a compound id
  t.is((await poll(f.port, '/sub/c', [['If-None-Match', f.ids[0]!]])).body, 'second')
  isBadId(t, await poll(f.port, '/sub/c', [['If-None-Match', 'abc:1']]), 'INM abc:1')
})

test('a valid IMS with no INM, or with INM [1]], 1,2 or [[0]] → 400', async (t) => {
  const f = await fixture(t)
  for (const ims of PAST_DATES) {
    isBadId(t, await poll(f.port, '/sub/c', [['If-Modified-Since', ims]]), ims)
    for (const inm of ['[1]]', '1,2', '[[0]]']) {
      isBadId(t, await poll(f.port, '/sub/c', [['If-Modified-Since', ims], ['If-None-Match', inm]]), `${ims} / ${inm}`)
    }
  }
  // with an Origin, the 400 carries the CORS headers
  const a = await poll(f.port, '/sub/c', [['If-Modified-Since', PAST_DATES[0]!], ['Origin', 'https://example.test']])
  isBadId(t, a, 'with Origin')
  t.is(a.headers['access-control-allow-origin'], 'https://example.test')
  t.is(a.headers['access-control-allow-credentials'], 'true')
})

test('IMS Fri, 31 Dec 9999 23:59:59 GMT with INM 0 parks', async (t) => {
  const f = await fixture(t)
  await assertParks(t, f, [['If-Modified-Since', 'Fri, 31 Dec 9999 23:59:59 GMT'], ['If-None-Match', '0']], '9999')
})

test('IMS/INM walk the buffer one message per poll, and park past the newest', async (t) => {
  const f = await fixture(t)
  let a = await poll(f.port, '/sub/c')
  const seen = [a.body]
  for (let i = 0; i < 2; i++) {
    a = await poll(f.port, '/sub/c', [['If-Modified-Since', a.headers['last-modified']!], ['If-None-Match', a.headers.etag!]])
    seen.push(a.body)
  }
  t.deepEqual(seen, BODIES)
  t.is(`${Date.parse(a.headers['last-modified']!) / 1000}:${a.headers.etag}`, f.ids[2])
  await assertParks(t, f, [['If-Modified-Since', a.headers['last-modified']!], ['If-None-Match', a.headers.etag!]], 'past the newest')
})

// ---- Etag request header (EXTENSION, §4.2 step 4) ----------------------------------------------

test('the Etag request header resumes like Last-Event-ID, loses to it, and is never answered 400', async (t) => {
  const f = await fixture(t)
  t.is((await poll(f.port, '/sub/c', [['Etag', f.ids[0]!]])).body, 'second')
  t.is((await poll(f.port, '/sub/c', [['Etag', f.ids[1]!]])).body, 'third')
  // Last-Event-ID and the query come first
  t.is((await poll(f.port, '/sub/c', [['Etag', f.ids[0]!], ['Last-Event-ID', f.ids[1]!]])).body, 'third')
  t.is((await poll(f.port, `/sub/c?last_event_id=${f.ids[1]}`, [['Etag', f.ids[0]!]])).body, 'third')
  // malformed values are ignored
  for (const v of ['-5:-3', 'abc:1', ':', `${f.T}:[1]]`, '99999999999999999999:0', 'garbage', '"3"', 'ÿþ:é']) {
    isOldest(t, await poll(f.port, '/sub/c', [['Etag', v]]), v)
  }
  await assertParks(t, f, [['Etag', f.ids[2]!]], 'etag at the newest')
})

// ---- status answers (§5): what a client copies from them resumes --------------------------------

test('a multiplexed long-poll ended by 410 carries an Etag (its active position bracketed) that resumes, not a 400', async (t) => {
  const { port, base } = await startServer(t)
  await publish(base, 'ma', 'a1')
  await publish(base, 'mb', 'b1')
  // walk both messages, then park past the newest
  let a = await poll(port, '/sub/ma,mb')
  const seen = [a.body]
  a = await poll(port, '/sub/ma,mb', [['If-Modified-Since', a.headers['last-modified']!], ['If-None-Match', a.headers.etag!]])
  seen.push(a.body)
  t.deepEqual(seen.sort(), ['a1', 'b1'])
  const cursor: Headers = [['If-Modified-Since', a.headers['last-modified']!], ['If-None-Match', a.headers.etag!]]
  const parked = poll(port, '/sub/ma,mb', cursor)
  t.true(await eventually(async () => (await info(base, 'mb')).json?.subscribers === 1))
  t.is((await fetch(`${base}/pub/ma`, { method: 'DELETE' })).status, 200)
  const gone = await parked
  t.is(gone.status, 410)
  // (`[0],0`, or `-,[0]` where the two publishes fell in different seconds)
  t.regex(gone.headers.etag ?? '', /^(\[\d+\],(\d+|-)|(\d+|-),\[\d+\])$/)
  // NchanSubscriber.js sends the status answer's Etag back with the If-Modified-Since it had
  await publish(base, 'mb', 'b2')
  const next = await poll(port, '/sub/ma,mb', [['If-Modified-Since', a.headers['last-modified']!], ['If-None-Match', gone.headers.etag!]])
  t.is(next.status, 200)
  t.is(next.body, 'b2')
})

// ---- a restart within the second ------------------------------------------------------------------

test('a server that starts in the second its predecessor last published in issues no id of that second again: a client resuming from one gets the new messages and the gap signal', async (t) => {
  // A publishes at the start of a second T; B is started inside T (as a supervisor restarts a
  // crashed process at once; here an app closed and built again in this process). A try where B's
  // start came after T is tried again.
  let hit = false
  for (let attempt = 0; attempt < 4 && !hit; attempt++) {
    const a = await startServer(t)
    await new Promise((resolve) => setTimeout(resolve, 1005 - (Date.now() % 1000)))
    const old: string[] = []
    for (let i = 0; i < 5; i++) old.push(/last message id: (\d+:\d+)$/.exec((await publish(a.base, 'r', `m${i}`)).text)![1]!)
    await a.app.close()
    const T = Number(old[4]!.split(':')[0])
    if (Math.floor(Date.now() / 1000) !== T || Number(old[0]!.split(':')[0]) !== T) continue
    const b = await startServer(t)
    hit = true
    t.deepEqual(old.map((id) => id.split(':')[1]), ['0', '1', '2', '3', '4'])
    // a subscriber that resumes at once, before anything is published on B
    const early = await SseClient.connect(b.port, '/sub/r', { 'Last-Event-ID': old[1]! })
    t.teardown(() => early.close())
    await early.until(() => early.comments.includes(': hi'))
    const fresh: string[] = []
    for (let i = 5; i < 10; i++) fresh.push(/last message id: (\d+:\d+)$/.exec((await publish(b.base, 'r', `m${i}`)).text)![1]!)
    for (const id of fresh) {
      const [time, tag] = id.split(':').map(Number)
      t.true(time! > T || (time === T && tag! > 4), `${id} is above every id of the old process (${old.join(', ')})`)
    }
    // SSE from the old process's last id: the new messages, with the gap signal (what the old
    // process published after that id in T, if anything, is gone)
    const sse = await SseClient.connect(b.port, '/sub/r', { 'Last-Event-ID': old[4]! })
    t.teardown(() => sse.close())
    const evs = await sse.waitEvents(5)
    t.deepEqual(evs.map((e) => e.data), ['m5', 'm6', 'm7', 'm8', 'm9'])
    t.true(sse.comments.some((c) => c.startsWith(':parkline-gap')) || evs[0]!.comments.some((c) => c.startsWith(':parkline-gap')), JSON.stringify([sse.comments, evs[0]!.comments]))
    const first = await early.waitEvents(5)
    t.deepEqual(first.map((e) => e.data), ['m5', 'm6', 'm7', 'm8', 'm9'])
    t.true(early.comments.some((c) => c.startsWith(':parkline-gap')) || first[0]!.comments.some((c) => c.startsWith(':parkline-gap')), 'the subscriber there before the first publish gets the gap signal too: ' + JSON.stringify([early.comments, first[0]!.comments]))
    // long-poll from an id of the middle of T: the first new message, with the gap header
    const lp = await poll(b.port, '/sub/r', [['If-Modified-Since', new Date(T * 1000).toUTCString()], ['If-None-Match', '2']])
    t.is(lp.status, 200)
    t.is(lp.body, 'm5')
    t.is(lp.headers['parkline-gap'] !== undefined, true, JSON.stringify(lp.headers))
  }
  t.true(hit, 'no try had the new process start inside the second of the old one\'s last publish')
})

for (const args of [[], ['--workers', '2']]) {
  test(`parkline serve ${args.join(' ')} killed and started again at once, inside the second of its last publish: no id of that second is issued again`, async (t) => {
    let hit = false
    for (let attempt = 0; attempt < 4 && !hit; attempt++) {
      const a = await serve(t, args)
      await new Promise((resolve) => setTimeout(resolve, 1005 - (Date.now() % 1000)))
      const old: string[] = []
      for (let i = 0; i < 5; i++) old.push(/last message id: (\d+:\d+)$/.exec((await publish(a.base, 'k', `m${i}`)).text)![1]!)
      a.proc.kill('SIGKILL')
      const T = Number(old[4]!.split(':')[0])
      if (Math.floor(Date.now() / 1000) !== T || Number(old[0]!.split(':')[0]) !== T) continue
      hit = true
      const b = await serve(t, args)
      const id = /last message id: (\d+:\d+)$/.exec((await publish(b.base, 'k', 'm5')).text)![1]!
      t.true(Number(id.split(':')[0]) > T, `${id} is above every id of the killed process (${old.join(', ')})`)
      const sse = await SseClient.connect(b.port, '/sub/k', { 'Last-Event-ID': old[2]! })
      t.teardown(() => sse.close())
      const evs = await sse.waitEvents(1)
      t.is(evs[0]!.data, 'm5')
      t.true(sse.comments.some((c) => c.startsWith(':parkline-gap')) || evs[0]!.comments.some((c) => c.startsWith(':parkline-gap')), JSON.stringify([sse.comments, evs[0]!.comments]))
    }
    t.true(hit, 'no try killed the process inside the second of its last publish')
  })
}

// A client resumes with the id another node (or worker) gave it before this process has applied
// that message: when the message comes here, it must not get it again (docs/api.md 4.4: the first
// message with a larger id). Made deterministic with the id the next publish will take: this
// second, tag 0, on a channel with nothing in it yet.
for (const transport of ['longpoll', 'sse'] as const) {
  test(`${transport}: a cursor naming the id the next message takes is not sent that message, but the one after`, async (t) => {
    const { port, base } = await startServer(t)
    let tried = 0
    for (; tried < 3; tried++) {
      // early in a second, so that both publishes below land in it
      await new Promise((resolve) => setTimeout(resolve, 1020 - Date.now() % 1000))
      const sec = Math.floor(Date.now() / 1000)
      const ch = `ahead-${transport}-${tried}`
      const cursor = `${sec}:0`
      let answer: Promise<string>
      if (transport === 'longpoll') {
        const r = fetch(`${base}/sub/${ch}`, { headers: { 'Last-Event-ID': cursor } })
        answer = r.then(async (res) => await res.text())
      } else {
        const sse = await SseClient.connect(port, `/sub/${ch}`, { 'Last-Event-ID': cursor })
        t.teardown(() => sse.close())
        answer = sse.waitEvents(1).then((evs) => evs[0]!.data)
      }
      t.true(await eventually(async () => (await info(base, ch)).json?.subscribers === 1, 3000))
      const first = /last message id: (\S+)/.exec((await publish(base, ch, 'same')).text)![1]!
      await publish(base, ch, 'after')
      // (the second turned meanwhile: this round proves nothing, another is tried)
      if (first !== cursor) continue
      t.is(await answer, 'after', `the message ${cursor} the cursor names is not sent again`)
      break
    }
    t.true(tried < 3, 'a round with both publishes in one second')
  })
}
