// One conformance suite, run against every transport (PROTOCOL.md §2, §3.1, §4.3, §5, §6, §11a):
// every macro below is looped over the SSE and long-poll drivers at the bottom of the file.
import test from 'ava'
import {
  DRIVERS, RawSse, liveSubs, multipartDriver, nextSecond, pub, sseFrame, splitId, type Driver, type Got, type Session
} from '../helpers/conformance.ts'
import { eventually, info, startServer, type Running } from '../helpers/server.ts'
import { websocketDriver } from '../helpers/websocket.ts'
import { coreOf } from '../../lib/plugin.ts'

const ids = (got: Got[]): string[] => got.map((g) => g.id)
const texts = (got: Got[]): string[] => got.map((g) => g.data.toString('utf8'))

function title (providedTitle = '', d: Driver): string {
  return `[${d.name}] ${providedTitle}`
}

async function publishN (srv: Running, channel: string, n: number, prefix = 'm'): Promise<string[]> {
  const out: string[] = []
  for (let i = 0; i < n; i++) out.push((await pub(srv.base, channel, prefix + i)).id)
  return out
}

/** Wait until the server holds `n` subscribers (parked long-polls are counted only once parked). */
async function subsAre (t: { true: (v: boolean, m?: string) => void }, srv: Running, n: number): Promise<void> {
  t.true(await eventually(() => liveSubs(srv) === n), `expected ${n} live subscribers, have ${liveSubs(srv)}`)
}

// ---- resume from an id --------------------------------------------------------------------------

const fromId = test.macro({
  async exec (t, d: Driver, source: 'native' | 'query' | 'header-wins') {
    const srv = await startServer(t)
    const all = await publishN(srv, 'from', 6)
    let s: Session
    if (source === 'native') {
      s = await d.open(srv, '/sub/from', { cursor: all[2] })
    } else if (source === 'query') {
      s = await d.open(srv, '/sub/from', { query: 'last_event_id=' + encodeURIComponent(all[2]!) })
    } else {
      // both valid: the Last-Event-ID header wins over ?last_event_id= (§4.2 step 3)
      s = await d.open(srv, '/sub/from', { headers: { 'Last-Event-ID': all[2]! }, query: 'last_event_id=' + encodeURIComponent(all[0]!) })
    }
    t.teardown(() => s.close())
    const got = await s.wait(3)
    t.deepEqual(ids(got), all.slice(3))
    t.deepEqual(texts(got), ['m3', 'm4', 'm5'])
    for (const g of got) t.is(g.gap, null)
    // exactly the later ones: the next thing to arrive is the next publish
    const live = await pub(srv.base, 'from', 'live')
    await s.wait(4)
    t.is(got.length, 4)
    t.is(got[3]!.id, live.id)
    t.is(got[3]!.data.toString(), 'live')
  },
  title
})

const noCursor = test.macro({
  async exec (t, d: Driver) {
    const srv = await startServer(t)
    const all = await publishN(srv, 'old', 3)
    const s = await d.open(srv, '/sub/old')
    t.teardown(() => s.close())
    const got = await s.wait(3)
    t.deepEqual(ids(got), all)
    t.deepEqual(texts(got), ['m0', 'm1', 'm2'])
    // an empty channel: the subscriber waits, and gets the first message published
    const s2 = await d.open(srv, '/sub/empty')
    t.teardown(() => s2.close())
    await subsAre(t, srv, 2)
    const p = await pub(srv.base, 'empty', 'first')
    t.is(p.status, 201)
    const got2 = await s2.wait(1)
    t.deepEqual(ids(got2), [p.id])
    t.is(got2[0]!.data.toString(), 'first')
  },
  title
})

// ---- resume after a dropped connection ----------------------------------------------------------

const resumeAfterDrop = test.macro({
  async exec (t, d: Driver, side: 'client' | 'server') {
    const srv = await startServer(t)
    const s1 = await d.open(srv, '/sub/drop')
    const all = await publishN(srv, 'drop', 3)
    await s1.wait(3)
    await subsAre(t, srv, 1)
    if (side === 'server') {
      for (const sub of coreOf(srv.app).table.subs.slice()) sub.socket.destroy()
      const end = await s1.ended
      t.is(end.status, 0)
    } else {
      s1.close()
    }
    await subsAre(t, srv, 0)
    // published while nobody listens
    all.push(...await publishN(srv, 'drop', 3, 'gap'))
    const last = s1.lastId()
    t.is(last, all[2])
    const s2 = await d.open(srv, '/sub/drop', { cursor: last! })
    t.teardown(() => s2.close())
    await s2.wait(3)
    all.push(...await publishN(srv, 'drop', 2, 'live'))
    await s2.wait(5)
    const everything = [...s1.got, ...s2.got]
    t.deepEqual(ids(everything), all, 'every message exactly once, in order')
    t.deepEqual(texts(everything), ['m0', 'm1', 'm2', 'gap0', 'gap1', 'gap2', 'live0', 'live1'])
    const extra = await pub(srv.base, 'drop', 'extra')
    await s2.wait(6)
    t.is(s2.got.length, 6)
    t.is(s2.got[5]!.id, extra.id)
  },
  title
})

// ---- eviction and the gap signal (§11a) ---------------------------------------------------------

const eviction = test.macro({
  async exec (t, d: Driver, gapForm: 'comment' | 'event') {
    const srv = await startServer(t, { bufferLength: 5 })
    const all = await publishN(srv, 'ev', 8)
    const i = await info(srv.base, 'ev')
    t.is(i.json!.messages, 5)
    const query = gapForm === 'event' ? 'parkline_gap=event' : undefined
    const s = await d.open(srv, '/sub/ev', { cursor: all[0], query })
    t.teardown(() => s.close())
    const got = await s.wait(5)
    // Nchan's answer: the oldest buffered message, then the rest, each once
    t.deepEqual(ids(got), all.slice(3))
    t.deepEqual(texts(got), ['m3', 'm4', 'm5', 'm6', 'm7'])
    const json = `{"requested":"${all[0]}","resumed":"${all[3]}"}`
    if (d.name !== 'sse') {
      t.is(got[0]!.gap, all[0])
    } else if (gapForm === 'comment') {
      t.is(got[0]!.gap, ':parkline-gap ' + json)
      const c = (s as unknown as { c: RawSse }).c
      t.true(c.text.includes(`:parkline-gap ${json}\nid: ${all[3]}\ndata: m3\n\n`))
    } else {
      t.is(got[0]!.gap, json)
      const c = (s as unknown as { c: RawSse }).c
      // an event with no id: line, so lastEventId is unchanged
      t.true(c.text.includes(`event: parkline-gap\ndata: ${json}\n\nid: ${all[3]}\ndata: m3\n\n`))
      t.is(c.events.filter((e) => e.event === 'parkline-gap').length, 1)
    }
    // signalled once
    for (const g of got.slice(1)) t.is(g.gap, null)

    // a cursor at the floor (the newest evicted message) has lost nothing: no signal
    const s2 = await d.open(srv, '/sub/ev', { cursor: all[2], query })
    t.teardown(() => s2.close())
    const got2 = await s2.wait(5)
    t.deepEqual(ids(got2), all.slice(3))
    for (const g of got2) t.is(g.gap, null)
    // no cursor (default start) never signals
    const s3 = await d.open(srv, '/sub/ev', { query })
    t.teardown(() => s3.close())
    const got3 = await s3.wait(5)
    t.deepEqual(ids(got3), all.slice(3))
    for (const g of got3) t.is(g.gap, null)
  },
  title
})

const multiplexedGap = test.macro({
  async exec (t, d: Driver) {
    const srv = await startServer(t, { bufferLength: 2 })
    for (let attempt = 0; ; attempt++) {
      const a = `mga${attempt}`
      const b = `mgb${attempt}`
      await nextSecond()
      const b0 = await pub(srv.base, b, 'b0')
      const as = await publishN(srv, a, 4, 'a')
      const T = splitId(b0.id).seconds
      const same = as.every((id) => splitId(id).seconds === T)
      if (!same && attempt < 3) continue
      t.true(same, 'the burst stayed in one second')
      t.deepEqual(as, [`${T}:0`, `${T}:1`, `${T}:2`, `${T}:3`])
      // after a0 and b0; a0 and a1 were evicted from a, nothing left b
      const s = await d.open(srv, `/sub/${a},${b}`, { cursor: `${T}:[0],0` })
      t.teardown(() => s.close())
      const got = await s.wait(2)
      t.deepEqual(texts(got), ['a2', 'a3'])
      t.deepEqual(ids(got), [`${T}:[2],0`, `${T}:[3],0`])
      const requested = `${T}:[0],0`
      t.is(got[0]!.gap, d.name === 'sse' ? `:parkline-gap {"requested":"${requested}","resumed":"${T}:[2],0"}` : requested)
      t.is(got[1]!.gap, null)
      return
    }
  },
  title
})

const gapAfterExpiry = test.macro({
  async exec (t, d: Driver) {
    const srv = await startServer(t, { messageTimeout: 1 })
    // a waiting subscriber keeps the channel record (and its floor) alive through the expiry
    const keeper = await RawSse.connect(srv.port, '/sub/exp')
    t.teardown(() => keeper.close())
    const [a, b] = await publishN(srv, 'exp', 2)
    await keeper.waitEvents(2)
    t.true(await eventually(async () => (await info(srv.base, 'exp')).json!.messages === 0, 5000), 'messages expired')
    // the cursor names an expired message and nothing is buffered: park, then the gap rides on the next message
    const s = await d.open(srv, '/sub/exp', { cursor: a })
    t.teardown(() => s.close())
    await subsAre(t, srv, 2)
    const c = await pub(srv.base, 'exp', 'c')
    t.is(c.status, 201)
    const got = await s.wait(1)
    t.is(got[0]!.id, c.id)
    t.is(got[0]!.gap, d.name === 'sse' ? `:parkline-gap {"requested":"${a}","resumed":"${c.id}"}` : a)
    const e = await pub(srv.base, 'exp', 'e')
    const more = await s.wait(2)
    t.is(more[1]!.id, e.id)
    t.is(more[1]!.gap, null, 'signalled once')
    await keeper.waitEvents(4)
    t.deepEqual(keeper.events.map((x) => x.id), [a, b, c.id, e.id])
    t.is(keeper.comments.filter((l) => l.startsWith(':parkline-gap')).length, 0, 'a live subscriber never sees a gap')
  },
  title
})

// ---- DELETE ends subscribers --------------------------------------------------------------------

const deleted = test.macro({
  async exec (t, d: Driver) {
    const srv = await startServer(t)
    const [first] = await publishN(srv, 'del', 1)
    const s = await d.open(srv, '/sub/del')
    await s.wait(1)
    await subsAre(t, srv, 1)
    const res = await fetch(`${srv.base}/pub/del`, { method: 'DELETE' })
    t.is(res.status, 200)
    t.regex(await res.text(), /^queued messages: 1\r\nlast requested: \d+ sec\. ago\r\nactive subscribers: 1\r\nlast message id: \d+:0$/)
    const end = await s.ended
    t.is(end.status, 410)
    if (d.name === 'sse') {
      const c = (s as unknown as { c: RawSse }).c
      t.true(c.closed)
      t.true(c.text.endsWith(':410: 410 Gone\n\n'))
    } else {
      t.is(end.body.length, 0)
      t.is(end.headers['content-length'], '0')
      // the cursor's tags (seconds > 0), never Last-Modified (§5 status answers)
      t.is(end.headers.etag, splitId(first!).tags)
      t.is(end.headers['last-modified'], undefined)
      t.is(end.headers.vary, 'If-None-Match, If-Modified-Since')
    }
    await subsAre(t, srv, 0)
    t.is((await info(srv.base, 'del')).status, 404)
    // a later subscriber finds an empty channel: none of the deleted messages
    const s2 = await d.open(srv, '/sub/del')
    t.teardown(() => s2.close())
    await subsAre(t, srv, 1)
    const p = await pub(srv.base, 'del', 'after')
    t.is(p.status, 201)
    const got = await s2.wait(1)
    t.deepEqual(texts(got), ['after'])
    t.is(got[0]!.id, p.id)
  },
  title
})

const deleteMultiplexed = test.macro({
  async exec (t, d: Driver) {
    const srv = await startServer(t)
    const s = await d.open(srv, '/sub/mda,mdb')
    await subsAre(t, srv, 1)
    t.is((await info(srv.base, 'mda')).json!.subscribers, 1)
    t.is((await info(srv.base, 'mdb')).json!.subscribers, 1)
    const res = await fetch(`${srv.base}/pub/mdb`, { method: 'DELETE' })
    t.is(res.status, 200)
    const end = await s.ended
    t.is(end.status, 410)
    await subsAre(t, srv, 0)
    // the whole subscription ended: channel a lost its subscriber too (and, empty, is gone)
    const a = await info(srv.base, 'mda')
    t.true(a.status === 404 || a.json!.subscribers === 0)
  },
  title
})

// ---- multiplexed ids (§2.2) ---------------------------------------------------------------------

const multiplexed = test.macro({
  async exec (t, d: Driver) {
    const srv = await startServer(t)
    for (let attempt = 0; ; attempt++) {
      const a = `mxa${attempt}`
      const b = `mxb${attempt}`
      const s = await d.open(srv, `/sub/${a},${b}`)
      await subsAre(t, srv, 1)
      await nextSecond()
      const A1 = await pub(srv.base, a, 'A1')
      const B1 = await pub(srv.base, b, 'B1')
      const A2 = await pub(srv.base, a, 'A2')
      const B2 = await pub(srv.base, b, 'B2')
      await nextSecond()
      const B3 = await pub(srv.base, b, 'B3')
      const A3 = await pub(srv.base, a, 'A3')
      const T = splitId(A1.id).seconds
      const firstSecond = [A1, B1, A2, B2].every((p) => splitId(p.id).seconds === T)
      const secondSecond = [B3, A3].every((p) => splitId(p.id).seconds === T + 1)
      if (!(firstSecond && secondSecond) && attempt < 3) {
        s.close()
        await subsAre(t, srv, 0)
        continue // the clock crossed a second mid-burst: try again on fresh channels
      }
      t.true(firstSecond && secondSecond, 'publishes landed in the seconds the example needs')
      t.deepEqual([A1, B1, A2, B2, B3, A3].map((p) => p.id), [`${T}:0`, `${T}:0`, `${T}:1`, `${T}:1`, `${T + 1}:0`, `${T + 1}:0`])
      const got = await s.wait(6)
      t.deepEqual(ids(got), [`${T}:[0],-`, `${T}:0,[0]`, `${T}:[1],0`, `${T}:1,[1]`, `${T + 1}:-,[0]`, `${T + 1}:[0],0`])
      t.deepEqual(texts(got), ['A1', 'B1', 'A2', 'B2', 'B3', 'A3'])
      s.close()

      // resume after B1: A2, B2, A3, B3 (replay merges by seconds, tag, position), each once
      const r = await d.open(srv, `/sub/${a},${b}`, { cursor: `${T}:0,[0]` })
      t.teardown(() => r.close())
      const replay = await r.wait(4)
      t.deepEqual(texts(replay), ['A2', 'B2', 'A3', 'B3'])
      t.deepEqual(ids(replay), [`${T}:[1],0`, `${T}:1,[1]`, `${T + 1}:[0],-`, `${T + 1}:0,[0]`])
      const A4 = await pub(srv.base, a, 'A4')
      const more = await r.wait(5)
      t.is(more.length, 5)
      t.is(more[4]!.data.toString(), 'A4')
      const { seconds, tags } = splitId(A4.id)
      const expected = seconds === T + 1 ? `${T + 1}:[${tags}],0` : `${seconds}:[${tags}],-`
      t.is(more[4]!.id, expected)
      return
    }
  },
  title
})

const duplicates = test.macro({
  async exec (t, d: Driver) {
    const srv = await startServer(t)
    const s = await d.open(srv, '/sub/dup,dup')
    t.teardown(() => s.close())
    await subsAre(t, srv, 1)
    t.is((await info(srv.base, 'dup')).json!.subscribers, 2, 'each position counts')
    const all = await publishN(srv, 'dup', 3)
    const got = await s.wait(6)
    // every position is independent: each message twice, once bracketed at each position
    for (let i = 0; i < 3; i++) {
      const pair = got.slice(2 * i, 2 * i + 2)
      t.deepEqual(texts(pair), ['m' + i, 'm' + i])
      const { seconds, tags } = splitId(all[i]!)
      const brackets = pair.map((g) => {
        const p = splitId(g.id)
        t.is(p.seconds, seconds)
        const parts = p.tags.split(',')
        t.is(parts.length, 2)
        const k = parts.findIndex((x) => x === `[${tags}]`)
        t.not(k, -1, g.id)
        return k
      })
      t.deepEqual(brackets.sort(), [0, 1])
    }
    // a replay from the oldest gives the same: position 0 first (merge by seconds, tag, position)
    const r = await d.open(srv, '/sub/dup,dup')
    t.teardown(() => r.close())
    const replay = await r.wait(6)
    t.deepEqual(texts(replay), ['m0', 'm0', 'm1', 'm1', 'm2', 'm2'])
    const { seconds, tags } = splitId(all[0]!)
    t.is(replay[0]!.id, `${seconds}:[${tags}],-`)
    t.is(replay[1]!.id, `${seconds}:${tags},[${tags}]`)
  },
  title
})

// ---- bodies and Content-Type --------------------------------------------------------------------

const bodies = test.macro({
  async exec (t, d: Driver) {
    const srv = await startServer(t)
    const binary = Buffer.alloc(256)
    for (let i = 0; i < 256; i++) binary[i] = i
    const utf8 = Buffer.from('héllo wörld ✓ 日本語 🚀', 'utf8')
    const big = Buffer.alloc(1048576)
    for (let i = 0; i < big.length; i++) big[i] = (i * 7919 + (i >> 9)) & 0xff
    const cases: Array<{ body: Buffer, ct: string | null }> = [
      { body: binary, ct: 'application/octet-stream' },
      { body: utf8, ct: 'text/plain; charset=utf-8' },
      { body: Buffer.alloc(0), ct: null },
      { body: big, ct: 'application/x-thing; a=b' }
    ]
    const live = await d.open(srv, '/sub/bodies')
    t.teardown(() => live.close())
    await subsAre(t, srv, 1)
    const pubIds: string[] = []
    for (const c of cases) {
      const p = await pub(srv.base, 'bodies', c.body, c.ct === null ? {} : { 'Content-Type': c.ct })
      t.true(p.status === 201 || p.status === 202)
      pubIds.push(p.id)
      if (d.name !== 'longpoll') await live.wait(pubIds.length) // one at a time: no overflow from our own burst
    }
    // live, then replayed from the buffer
    const replay = await d.open(srv, '/sub/bodies')
    t.teardown(() => replay.close())
    for (const s of [live, replay]) {
      const got = await s.wait(cases.length, 15000)
      t.deepEqual(ids(got), pubIds)
      if (d.name !== 'sse') {
        for (let i = 0; i < cases.length; i++) {
          t.true(got[i]!.data.equals(cases[i]!.body), `body ${i} byte-exact`)
          t.is(got[i]!.contentType, cases[i]!.ct)
        }
      } else {
        const c = (s as unknown as { c: RawSse }).c
        const start = c.text.indexOf('id: ' + pubIds[0])
        const expected = Buffer.concat(cases.map((x, i) => sseFrame(pubIds[i]!, x.body)))
        await c.until(() => c.text.length - start >= expected.length, 15000)
        t.true(Buffer.from(c.text.slice(start), 'latin1').equals(expected), 'SSE stream byte-exact')
        t.is(got[1]!.data.toString('utf8'), utf8.toString('utf8'))
        t.is(got[2]!.data.length, 0)
      }
    }
  },
  title
})

// ---- subscriber timeout ---------------------------------------------------------------------------

const timeout = test.macro({
  async exec (t, d: Driver) {
    const srv = await startServer(t, { subscriberTimeout: 1 })
    const [first] = await publishN(srv, 'to', 1)
    const s = await d.open(srv, '/sub/to')
    await s.wait(1)
    await subsAre(t, srv, 1)
    const end = await s.ended
    t.is(end.status, 408)
    if (d.name === 'sse') {
      const c = (s as unknown as { c: RawSse }).c
      t.true(c.text.endsWith(':408: 408 Request Timeout\n\n'))
      t.true(c.closed)
    } else {
      t.is(end.body.length, 0)
      t.is(end.headers.etag, splitId(first!).tags)
      t.is(end.headers['last-modified'], undefined)
    }
    await subsAre(t, srv, 0)
    t.is((await info(srv.base, 'to')).json!.subscribers, 0)
  },
  title
})

// ---- exact subscriber counts ----------------------------------------------------------------------

const counts = test.macro({
  async exec (t, d: Driver) {
    const srv = await startServer(t)
    await publishN(srv, 'cnt', 1)
    const sessions: Session[] = []
    for (let i = 0; i < 3; i++) {
      const s = await d.open(srv, '/sub/cnt')
      sessions.push(s)
      t.teardown(() => s.close())
      await s.wait(1)
      if (d.name === 'sse') {
        // counted once the head is written: exact right after connect
        t.is((await info(srv.base, 'cnt')).json!.subscribers, i + 1)
      }
    }
    await subsAre(t, srv, 3)
    t.is((await info(srv.base, 'cnt')).json!.subscribers, 3)
    const m = await pub(srv.base, 'cnt', 'x')
    t.is(m.status, 201)
    for (const s of sessions) await s.wait(2)
    await subsAre(t, srv, 3)
    t.is((await info(srv.base, 'cnt')).json!.subscribers, 3)
    sessions[0]!.close()
    sessions[1]!.close()
    t.true(await eventually(async () => (await info(srv.base, 'cnt')).json!.subscribers === 1))
    sessions[2]!.close()
    t.true(await eventually(async () => (await info(srv.base, 'cnt')).json!.subscribers === 0))
    t.is(liveSubs(srv), 0)
    // a multiplexed subscriber counts once on each of its channels
    const mx = await d.open(srv, '/sub/cnt,cnt2')
    t.teardown(() => mx.close())
    await mx.wait(1)
    await subsAre(t, srv, 1)
    t.is((await info(srv.base, 'cnt')).json!.subscribers, 1)
    t.is((await info(srv.base, 'cnt2')).json!.subscribers, 1)
    mx.close()
    t.true(await eventually(async () => (await info(srv.base, 'cnt')).json!.subscribers === 0))
    t.is((await info(srv.base, 'cnt2')).status, 404) // empty and unused: gone
  },
  title
})

for (const d of DRIVERS) {
  test('publish N, subscribe from an id: exactly the later ones, in order', fromId, d, 'native')
  test('?last_event_id= yields exactly the later ones', fromId, d, 'query')
  test('Last-Event-ID header wins over ?last_event_id=', fromId, d, 'header-wins')
  test('no cursor starts at the oldest buffered message; an empty channel waits', noCursor, d)
  test('resume after a client-side drop: no loss, no duplicates', resumeAfterDrop, d, 'client')
  test('resume after a server-side drop: no loss, no duplicates', resumeAfterDrop, d, 'server')
  test('evicted cursor resumes at the oldest with one gap signal', eviction, d, 'comment')
  if (d.name === 'sse') test('evicted cursor with ?parkline_gap=event gets a parkline-gap event', eviction, d, 'event')
  test('a multiplexed cursor below one channel\'s floor gets the gap signal naming that channel', multiplexedGap, d)
  test('a cursor below the floor that parks gets the gap signal with the next message', gapAfterExpiry, d)
  test('DELETE ends the subscriber with 410 and no deleted message is served again', deleted, d)
  test('DELETE of one channel ends a multiplexed subscription', deleteMultiplexed, d)
  test('multiplexed ids follow the vector rule and a multiplexed resume yields exactly the later ones', multiplexed, d)
  test('a duplicated channel (/sub/a,a) gets each message once per position', duplicates, d)
  test('binary, UTF-8, empty and 1 MiB bodies round-trip', bodies, d)
  test('subscriberTimeout ends the subscriber with 408', timeout, d)
  test('subscriber counts are exact after connect and after abort', counts, d)
}

// multipart/mixed (§8) runs every macro whose outcome it can show; the stream's end (`--\r\n`) carries
// no status, so the 410/408 macros are covered in multipart.test.ts instead.
{
  const d = multipartDriver
  test('publish N, subscribe from an id: exactly the later ones, in order', fromId, d, 'native')
  test('?last_event_id= yields exactly the later ones', fromId, d, 'query')
  test('Last-Event-ID header wins over ?last_event_id=', fromId, d, 'header-wins')
  test('no cursor starts at the oldest buffered message; an empty channel waits', noCursor, d)
  test('resume after a client-side drop: no loss, no duplicates', resumeAfterDrop, d, 'client')
  test('resume after a server-side drop: no loss, no duplicates', resumeAfterDrop, d, 'server')
  test('evicted cursor resumes at the oldest with one gap signal', eviction, d, 'comment')
  test('a multiplexed cursor below one channel\'s floor gets the gap signal naming that channel', multiplexedGap, d)
  test('a cursor below the floor that parks gets the gap signal with the next message', gapAfterExpiry, d)
  test('multiplexed ids follow the vector rule and a multiplexed resume yields exactly the later ones', multiplexed, d)
  test('a duplicated channel (/sub/a,a) gets each message once per position', duplicates, d)
  test('binary, UTF-8, empty and 1 MiB bodies round-trip', bodies, d)
  test('subscriber counts are exact after connect and after abort', counts, d)
}

// WebSocket (§7) as ws+meta.parkline, the variant that carries ids, content types and gaps; the
// close frames of DELETE and timeout (1001/1000) are checked in websocket.test.ts.
{
  const d = websocketDriver
  test('publish N, subscribe from an id: exactly the later ones, in order', fromId, d, 'native')
  test('?last_event_id= yields exactly the later ones', fromId, d, 'query')
  test('Last-Event-ID header wins over ?last_event_id=', fromId, d, 'header-wins')
  test('no cursor starts at the oldest buffered message; an empty channel waits', noCursor, d)
  test('resume after a client-side drop: no loss, no duplicates', resumeAfterDrop, d, 'client')
  test('resume after a server-side drop: no loss, no duplicates', resumeAfterDrop, d, 'server')
  test('evicted cursor resumes at the oldest with one gap signal', eviction, d, 'comment')
  test('a multiplexed cursor below one channel\'s floor gets the gap signal naming that channel', multiplexedGap, d)
  test('a cursor below the floor that parks gets the gap signal with the next message', gapAfterExpiry, d)
  test('DELETE of one channel ends a multiplexed subscription', deleteMultiplexed, d)
  test('multiplexed ids follow the vector rule and a multiplexed resume yields exactly the later ones', multiplexed, d)
  test('a duplicated channel (/sub/a,a) gets each message once per position', duplicates, d)
  test('binary, UTF-8, empty and 1 MiB bodies round-trip', bodies, d)
  test('subscriber counts are exact after connect and after abort', counts, d)
}

// ---- SSE framing (§6) ----------------------------------------------------------------------------

test('[sse] line splitting: multi-line, CRLF, trailing LF, leading blank lines, empty', async (t) => {
  const srv = await startServer(t)
  const c = await RawSse.connect(srv.port, '/sub/split')
  t.teardown(() => c.close())
  const cases: Array<[string, string]> = [
    ['one\ntwo\nthree', 'data: one\ndata: two\ndata: three\n\n'],
    ['a\r\nb', 'data: a\r\ndata: b\n\n'],
    ['trail\n', 'data: trail\ndata: \n\n'],
    ['\n\nx', 'data: \ndata: \ndata: x\n\n'],
    ['', 'data: \n\n'],
    ['plain', 'data: plain\n\n']
  ]
  const pubIds: string[] = []
  for (const [body] of cases) pubIds.push((await pub(srv.base, 'split', body)).id)
  await c.waitEvents(cases.length)
  const start = c.text.indexOf('id: ' + pubIds[0])
  t.is(c.text.slice(0, start).replace(/^: hi\n\nretry: \d+\n\n/, ''), '')
  t.is(c.text.slice(start), cases.map(([, lines], i) => `id: ${pubIds[i]}\n${lines}`).join(''))
  // what an EventSource parser hands the app
  t.deepEqual(c.events.map((e) => e.data), ['one\ntwo\nthree', 'a\nb', 'trail\n', '\n\nx', '', 'plain'])
  t.deepEqual(c.events.map((e) => e.id), pubIds)
})

test('[sse] X-EventSource-Event gives the event: line; an empty value gives none', async (t) => {
  const srv = await startServer(t)
  const c = await RawSse.connect(srv.port, '/sub/evname')
  t.teardown(() => c.close())
  const a = await pub(srv.base, 'evname', 'hello', { 'X-EventSource-Event': 'greeting' })
  const b = await pub(srv.base, 'evname', 'plain', { 'X-EventSource-Event': '' })
  await c.waitEvents(2)
  t.true(c.text.endsWith(`event: greeting\nid: ${a.id}\ndata: hello\n\nid: ${b.id}\ndata: plain\n\n`))
  t.is(c.events[0]!.event, 'greeting')
  t.is(c.events[1]!.event, null)
  // replayed from the buffer, the name is kept
  const r = await RawSse.connect(srv.port, '/sub/evname')
  t.teardown(() => r.close())
  await r.waitEvents(2)
  t.is(r.events[0]!.raw, `event: greeting\nid: ${a.id}\ndata: hello\n\n`)
})

test('[longpoll] a burst of 10 messages between polls arrives one per poll, complete and in order', async (t) => {
  const srv = await startServer(t)
  const [first] = await publishN(srv, 'burst', 1)
  const s = await DRIVERS[1]!.open(srv, '/sub/burst')
  t.teardown(() => s.close())
  await s.wait(1)
  await subsAre(t, srv, 1)
  const rest = await publishN(srv, 'burst', 10, 'b')
  const got = await s.wait(11)
  t.deepEqual(ids(got), [first, ...rest])
  t.deepEqual(texts(got).slice(1), rest.map((_, i) => 'b' + i))
})
