// Real EventSource clients (the `eventsource` package and undici's) against Parkline (§6, §11a-b):
// automatic reconnect with Last-Event-ID after the server drops or ends the stream, every message
// exactly once, in order, with the publisher's ids.
import test from 'ava'
import { EventSource as EventSourcePkg } from 'eventsource'
import { EventSource as UndiciEventSource } from 'undici'
import { pub } from '../helpers/conformance.ts'
import { eventually, startServer, type Running } from '../helpers/server.ts'
import { coreOf } from '../../lib/plugin.ts'

interface EsLike extends EventTarget {
  close (): void
  readonly readyState: number
}

interface Client { name: string, create: (url: string) => EsLike }

const CLIENTS: readonly Client[] = [
  { name: 'eventsource', create: (url) => new EventSourcePkg(url) as unknown as EsLike },
  { name: 'undici', create: (url) => new UndiciEventSource(url) as unknown as EsLike }
]

interface Recorder {
  es: EsLike
  messages: Array<{ id: string, data: string }>
  gaps: Array<{ data: string, lastEventId: string }>
  opens: number
  errors: number
}

function record (t: { teardown: (f: () => void) => void }, client: Client, url: string): Recorder {
  const es = client.create(url)
  const r: Recorder = { es, messages: [], gaps: [], opens: 0, errors: 0 }
  t.teardown(() => es.close())
  es.addEventListener('message', (e) => {
    const m = e as MessageEvent
    r.messages.push({ id: m.lastEventId, data: String(m.data) })
  })
  es.addEventListener('parkline-gap', (e) => {
    const m = e as MessageEvent
    r.gaps.push({ data: String(m.data), lastEventId: m.lastEventId })
  })
  es.addEventListener('open', () => { r.opens++ })
  es.addEventListener('error', () => { r.errors++ })
  return r
}

async function publishN (srv: Running, channel: string, prefix: string, n: number): Promise<Array<{ id: string, data: string }>> {
  const out: Array<{ id: string, data: string }> = []
  for (let i = 0; i < n; i++) {
    const data = `${prefix}${i}`
    const p = await pub(srv.base, channel, data)
    out.push({ id: p.id, data })
  }
  return out
}

/** Destroy every subscriber socket on the server side (no `:4xx:` notice, just a dropped TCP). */
function dropAll (srv: Running): number {
  const subs = coreOf(srv.app).table.subs.slice()
  for (const sub of subs) sub.socket.destroy()
  return subs.length
}

const reconnectAfterDrop = test.macro({
  async exec (t, client: Client) {
    const srv = await startServer(t, { retryMin: 200, retryMax: 300 })
    const expected = await publishN(srv, 'es', 'before', 2)
    const r = record(t, client, `${srv.base}/sub/es`)
    t.true(await eventually(() => r.messages.length === 2, 5000))
    expected.push(...await publishN(srv, 'es', 'live', 2))
    t.true(await eventually(() => r.messages.length === 4, 5000))
    t.is(r.opens, 1)

    t.is(dropAll(srv), 1)
    // published while the client is away (it waits `retry:` before reconnecting)
    expected.push(...await publishN(srv, 'es', 'away', 3))
    t.true(await eventually(() => r.opens === 2, 5000), 'reconnected by itself')
    t.true(r.errors >= 1)
    t.true(await eventually(() => r.messages.length >= 7, 5000))
    expected.push(...await publishN(srv, 'es', 'after', 2))
    t.true(await eventually(() => r.messages.length >= 9, 5000))

    // a second drop, straight after live traffic
    t.is(dropAll(srv), 1)
    expected.push(...await publishN(srv, 'es', 'again', 2))
    t.true(await eventually(() => r.opens === 3 && r.messages.length >= 11, 5000))
    t.deepEqual(r.messages, expected, 'every message exactly once, in order, with the publisher ids')
    t.is(r.gaps.length, 0)
    t.true(await eventually(() => coreOf(srv.app).table.size === 1))
  },
  title: (providedTitle = '', client: Client) => `[${client.name}] ${providedTitle}`
})

const reconnectAfterTimeout = test.macro({
  async exec (t, client: Client) {
    const srv = await startServer(t, { retryMin: 50, retryMax: 100, subscriberTimeout: 1 })
    const r = record(t, client, `${srv.base}/sub/esto`)
    t.true(await eventually(() => r.opens === 1, 5000))
    const expected = await publishN(srv, 'esto', 'a', 3)
    t.true(await eventually(() => r.messages.length === 3, 5000))
    // the server ends the stream with `:408: 408 Request Timeout`; the client comes back
    t.true(await eventually(() => r.opens >= 2, 5000), 'reconnected after the 408 notice')
    expected.push(...await publishN(srv, 'esto', 'b', 3))
    t.true(await eventually(() => r.messages.length >= 6, 5000))
    t.deepEqual(r.messages, expected)
  },
  title: (providedTitle = '', client: Client) => `[${client.name}] ${providedTitle}`
})

const gapEvent = test.macro({
  async exec (t, client: Client, form: 'event' | 'comment') {
    const srv = await startServer(t, { bufferLength: 3, retryMin: 100, retryMax: 200 })
    const all = await publishN(srv, 'esg', 'm', 6)
    const query = `last_event_id=${encodeURIComponent(all[0]!.id)}` + (form === 'event' ? '&parkline_gap=event' : '')
    const r = record(t, client, `${srv.base}/sub/esg?${query}`)
    t.true(await eventually(() => r.messages.length === 3, 5000))
    t.deepEqual(r.messages, all.slice(3))
    if (form === 'event') {
      t.deepEqual(r.gaps, [{ data: `{"requested":"${all[0]!.id}","resumed":"${all[3]!.id}"}`, lastEventId: '' }])
    } else {
      t.deepEqual(r.gaps, [], 'the comment form is never dispatched')
    }
    // reconnect: the Last-Event-ID header the client now sends wins over the URL's ?last_event_id=
    t.is(dropAll(srv), 1)
    const more = await publishN(srv, 'esg', 'n', 1)
    t.true(await eventually(() => r.opens === 2 && r.messages.length >= 4, 5000))
    t.deepEqual(r.messages, [...all.slice(3), ...more])
    t.is(r.gaps.length, form === 'event' ? 1 : 0, 'no new gap: the resume lost nothing')
  },
  title: (providedTitle = '', client: Client, form: string) => `[${client.name}] ${providedTitle} (${form})`
})

// A lone CR is a line end to an EventSource: a body holding one must not write fields of its own
// (an id that breaks the client's resume, an event name, a retry) into every subscriber's stream
const loneCr = test.macro({
  async exec (t, client: Client) {
    const srv = await startServer(t)
    const r = record(t, client, `${srv.base}/sub/cr`)
    const forged: string[] = []
    const es = r.es
    for (const name of ['admin-notice', 'parkline-gap']) es.addEventListener(name, (e) => { forged.push(name + ' ' + String((e as MessageEvent).data)) })
    t.true(await eventually(() => r.opens === 1, 5000))
    const bodies = ['hi\rid: 9999999999:0\revent: admin-notice\rretry: 1\rdata: forged', 'a\rb', 'a\r\nb', 'end\r']
    const ids: string[] = []
    for (const body of bodies) ids.push((await pub(srv.base, 'cr', body)).id)
    t.true(await eventually(() => r.messages.length === bodies.length, 5000), JSON.stringify(r.messages))
    t.deepEqual(r.messages, [
      { id: ids[0]!, data: 'hi\nid: 9999999999:0\nevent: admin-notice\nretry: 1\ndata: forged' },
      { id: ids[1]!, data: 'a\nb' },
      { id: ids[2]!, data: 'a\nb' },
      { id: ids[3]!, data: 'end' }
    ])
    t.deepEqual(forged, [])
  },
  title: (providedTitle = '', client: Client) => `[${client.name}] ${providedTitle}`
})

for (const c of CLIENTS) {
  test('a lone CR in a body ends its data: line; it writes no id, event or retry of its own', loneCr, c)
  test('reconnects with Last-Event-ID after the server drops the stream: each message once, in order', reconnectAfterDrop, c)
  test('reconnects after the server ends the stream with 408', reconnectAfterTimeout, c)
  test('evicted ?last_event_id= resumes at the oldest with the gap signal', gapEvent, c, 'event')
  test('evicted ?last_event_id= resumes at the oldest with the gap signal', gapEvent, c, 'comment')
}
