// The publisher location (PROTOCOL.md §3), CORS (§9) and message ids (§2.1), asserted on the wire.
import test from 'ava'
import { RawSse, lpCursor, lpGet, lpId, pub, splitId } from './helpers/conformance.ts'
import { eventually, info, rawRequest, startServer } from './helpers/server.ts'
import { coreOf } from '../lib/plugin.ts'

const ORIGIN = 'https://app.example'

function req (method: string, path: string, headers: Record<string, string> = {}, body = ''): string {
  let s = `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n`
  for (const [k, v] of Object.entries(headers)) s += `${k}: ${v}\r\n`
  if (method === 'POST' || method === 'PUT') s += `Content-Length: ${Buffer.byteLength(body)}\r\n`
  return s + '\r\n' + body
}

// ---- 201 / 202, PUT ---------------------------------------------------------------------------

test('POST without a subscriber is 202; with an SSE or a parked long-poll subscriber 201', async (t) => {
  const { base, port, app } = await startServer(t)
  t.is((await pub(base, 'st', 'a')).status, 202)
  const sse = await RawSse.connect(port, '/sub/st')
  t.teardown(() => sse.close())
  await sse.waitEvents(1)
  t.is((await pub(base, 'st', 'b')).status, 201)
  sse.close()
  t.true(await eventually(() => coreOf(app).table.size === 0))
  t.is((await pub(base, 'st', 'c')).status, 202)
  // a long-poll past the newest message parks, and counts once parked
  const last = (await info(base, 'st')).json!.last_message_id
  const poll = lpGet(port, '/sub/st', lpCursor(last))
  t.true(await eventually(() => coreOf(app).table.size === 1))
  const d = await pub(base, 'st', 'd')
  t.is(d.status, 201)
  const a = await poll.done
  t.is(a.status, 200)
  t.is(a.body.toString(), 'd')
  t.is(lpId(a), d.id)
  // answered: no longer counted
  t.true(await eventually(() => coreOf(app).table.size === 0))
  t.is((await pub(base, 'st', 'e')).status, 202)
})

test('PUT behaves like POST: 202/201, info answer, stored and delivered', async (t) => {
  const { base, port } = await startServer(t)
  const p = await pub(base, 'put', 'by put', { 'Content-Type': 'text/x-put' }, 'PUT')
  t.is(p.status, 202)
  t.regex(p.text, /^queued messages: 1\r\nlast requested: -1 sec\. ago\r\nactive subscribers: 0\r\nlast message id: \d+:0$/)
  const a = await lpGet(port, '/sub/put').done
  t.is(a.body.toString(), 'by put')
  t.is(a.headers['content-type'], 'text/x-put')
  t.is(lpId(a), p.id)
  const sse = await RawSse.connect(port, '/sub/put')
  t.teardown(() => sse.close())
  await sse.waitEvents(1)
  const p2 = await pub(base, 'put', 'second', {}, 'PUT')
  t.is(p2.status, 201)
  await sse.waitEvents(2)
  t.is(sse.events[1]!.data, 'second')
  t.is(sse.events[1]!.id, p2.id)
})

// ---- channel info formats (§3.2) -----------------------------------------------------------------

function expectedBody (format: string, id: string, messages = 1, requested = -1, subscribers = 0): string {
  switch (format) {
    case 'json': return `{"messages": ${messages}, "requested": ${requested}, "subscribers": ${subscribers}, "last_message_id": "${id}" }`
    case 'yaml': return `---\r\nmessages: ${messages}\r\nrequested: ${requested}\r\nsubscribers: ${subscribers}\r\nlast_message_id: "${id}"\r\n\r\n`
    case 'xml': return `<?xml version="1.0" encoding="UTF-8" ?>\r\n<channel>\r\n  <messages>${messages}</messages>\r\n  <requested>${requested}</requested>\r\n  <subscribers>${subscribers}</subscribers>\r\n  <last_message_id>${id}</last_message_id>\r\n</channel>`
    default: return `queued messages: ${messages}\r\nlast requested: ${requested} sec. ago\r\nactive subscribers: ${subscribers}\r\nlast message id: ${id}`
  }
}

const CONTENT_TYPE: Record<string, string> = { plain: 'text/plain', json: 'text/json', yaml: 'text/yaml', xml: 'text/xml' }

const ACCEPT_CASES: Array<[string | null, string]> = [
  [null, 'plain'],
  ['text/plain', 'plain'],
  ['text/json', 'json'],
  ['application/json', 'json'],
  ['application/x-json', 'json'],
  ['text/x-json', 'json'],
  ['text/yaml', 'yaml'],
  ['application/yaml', 'yaml'],
  ['application/x-yaml', 'yaml'],
  ['text/x-yaml', 'yaml'],
  ['text/xml', 'xml'],
  ['application/xml', 'xml'],
  ['*/*', 'plain'],
  ['text/html', 'plain'],
  ['image/png', 'plain'],
  // first matching entry wins, q-values ignored
  ['text/html, application/json;q=0.1, text/xml', 'json'],
  ['text/xml;q=0.1, text/json;q=1', 'xml'],
  ['text/plain, text/json', 'plain'],
  ['image/png, application/x-yaml', 'yaml'],
  ['text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8', 'xml']
]

test('channel info: exact bytes and Content-Type of each format, chosen from Accept', async (t) => {
  const { base, port } = await startServer(t)
  for (const [accept, format] of ACCEPT_CASES) {
    const ch = 'fmt' + ACCEPT_CASES.findIndex((c) => c[0] === accept)
    const h: Record<string, string> = accept === null ? {} : { Accept: accept }
    // the POST answer
    const p = await rawRequest(port, req('POST', `/pub/${ch}`, h, 'x'))
    t.is(p.status, 202, `POST Accept ${accept}`)
    t.is(p.headers['content-type'], CONTENT_TYPE[format], `POST Accept ${accept}`)
    const id = /(\d+:\d+)/.exec(p.body)![1]!
    t.is(p.body, expectedBody(format, id), `POST Accept ${accept}`)
    t.is(p.headers['content-length'], String(Buffer.byteLength(p.body)))
    // the GET answer: same bytes
    const g = await rawRequest(port, req('GET', `/pub/${ch}`, h))
    t.is(g.status, 200)
    t.is(g.headers['content-type'], CONTENT_TYPE[format], `GET Accept ${accept}`)
    t.is(g.body, expectedBody(format, id), `GET Accept ${accept}`)
  }
  t.is((await info(base, 'fmt0')).json!.requested, -1)
})

test('requested is -1 until a subscriber arrives, then whole seconds since', async (t) => {
  const { base, port } = await startServer(t)
  await pub(base, 'rq', 'a')
  await pub(base, 'rq', 'b')
  t.is((await info(base, 'rq')).json!.requested, -1)
  t.is((await info(base, 'rq')).json!.requested, -1, 'GET info is not a subscriber')
  const a = await lpGet(port, '/sub/rq').done
  t.is(a.status, 200)
  const r = (await info(base, 'rq')).json!.requested
  t.true(r === 0 || r === 1, `requested ${r}`)
})

test('GET and DELETE of an unknown channel: 404, empty, Content-Length 0, no Content-Type', async (t) => {
  // publisherOpen: cross-origin publisher requests (Nchan's open publisher)
  const { port } = await startServer(t, { publisherOpen: true })
  for (const method of ['GET', 'DELETE']) {
    for (const h of [{}, { Accept: 'text/json' }, { Origin: ORIGIN }] as Array<Record<string, string>>) {
      const a = await rawRequest(port, req(method, '/pub/never-used', h))
      t.is(a.status, 404, method)
      t.is(a.body, '')
      t.is(a.headers['content-length'], '0')
      t.false('content-type' in a.headers, `${method} ${JSON.stringify(h)}`)
      if ('Origin' in h) {
        t.is(a.headers['access-control-allow-origin'], ORIGIN)
        t.is(a.headers['access-control-allow-credentials'], 'true')
      }
    }
  }
})

test('DELETE answers 200 with the info as it was, ends subscribers, then 404', async (t) => {
  const { base, port } = await startServer(t)
  for (let i = 0; i < 3; i++) await pub(base, 'gone', 'm' + i)
  const last = (await info(base, 'gone')).json!.last_message_id
  const s1 = await RawSse.connect(port, '/sub/gone')
  const s2 = await RawSse.connect(port, '/sub/gone')
  t.teardown(() => { s1.close(); s2.close() })
  await s1.waitEvents(3)
  await s2.waitEvents(3)
  const d = await rawRequest(port, req('DELETE', '/pub/gone'))
  t.is(d.status, 200)
  t.is(d.headers['content-type'], 'text/plain')
  t.regex(d.body, new RegExp(`^queued messages: 3\\r\\nlast requested: [01] sec\\. ago\\r\\nactive subscribers: 2\\r\\nlast message id: ${last}$`))
  await s1.waitClosed()
  await s2.waitClosed()
  t.true(s1.text.endsWith(':410: 410 Gone\n\n'))
  t.true(s2.text.endsWith(':410: 410 Gone\n\n'))
  t.is((await rawRequest(port, req('GET', '/pub/gone'))).status, 404)
  t.is((await rawRequest(port, req('DELETE', '/pub/gone'))).status, 404)
  // DELETE answers in the format Accept asks for
  const p = await pub(base, 'gone2', 'x')
  const dj = await rawRequest(port, req('DELETE', '/pub/gone2', { Accept: 'application/json' }))
  t.is(dj.status, 200)
  t.is(dj.headers['content-type'], 'text/json')
  t.is(dj.body, `{"messages": 1, "requested": -1, "subscribers": 0, "last_message_id": "${p.id}" }`)
})

test('queued messages are capped at bufferLength (default 100); the oldest are evicted', async (t) => {
  const { base, port } = await startServer(t)
  let last = { status: 0, id: '', text: '' }
  const ids: string[] = []
  for (let i = 0; i < 105; i++) {
    last = await pub(base, 'cap', 'm' + i)
    ids.push(last.id)
  }
  t.regex(last.text, /^queued messages: 100\r\n/)
  t.is((await info(base, 'cap')).json!.messages, 100)
  // a cursor at an evicted id gets the oldest buffered message, with 200
  const a = await lpGet(port, '/sub/cap', lpCursor(ids[0]!)).done
  t.is(a.status, 200)
  t.is(a.body.toString(), 'm5')
  t.is(lpId(a), ids[5])

  const small = await startServer(t, { bufferLength: 5 })
  for (let i = 0; i < 8; i++) last = await pub(small.base, 'cap', 'm' + i)
  t.regex(last.text, /^queued messages: 5\r\n/)
  const b = await lpGet(small.port, '/sub/cap').done
  t.is(b.body.toString(), 'm3')
})

// ---- OPTIONS and CORS (§9) ------------------------------------------------------------------------

function noCorsHeaders (t: { is: (a: unknown, b: unknown, m?: string) => void }, headers: Record<string, string>): void {
  for (const k of Object.keys(headers)) t.is(k.startsWith('access-control-'), false, `unexpected ${k}`)
}

test('OPTIONS on the publisher: Allow, Content-Length 0, and the preflight headers with Origin', async (t) => {
  const { port } = await startServer(t)
  const plain = await rawRequest(port, req('OPTIONS', '/pub/opt'))
  t.is(plain.status, 200)
  t.is(plain.headers.allow, 'GET, POST, PUT, DELETE')
  t.is(plain.headers['content-length'], '0')
  t.is(plain.body, '')
  noCorsHeaders(t, plain.headers)
  const pre = await rawRequest(port, req('OPTIONS', '/pub/opt', {
    Origin: ORIGIN, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type'
  }))
  t.is(pre.status, 200)
  t.is(pre.headers['content-length'], '0')
  t.is(pre.headers.allow, 'GET, POST, PUT, DELETE')
  t.is(pre.headers['access-control-allow-origin'], ORIGIN)
  t.is(pre.headers['access-control-allow-credentials'], 'true')
  t.is(pre.headers['access-control-allow-methods'], 'GET, POST, PUT, DELETE')
  t.is(pre.headers['access-control-allow-headers'], 'Content-Type, X-EventSource-Event, Authorization, Idempotency-Key')
})

test('OPTIONS on the subscriber: Allow GET, and the preflight allows Etag and Last-Event-ID', async (t) => {
  const { port } = await startServer(t)
  const plain = await rawRequest(port, req('OPTIONS', '/sub/opt'))
  t.is(plain.status, 200)
  t.is(plain.headers.allow, 'GET')
  t.is(plain.headers['content-length'], '0')
  noCorsHeaders(t, plain.headers)
  const pre = await rawRequest(port, req('OPTIONS', '/sub/opt', {
    Origin: ORIGIN, 'Access-Control-Request-Method': 'GET', 'Access-Control-Request-Headers': 'etag, if-none-match'
  }))
  t.is(pre.status, 200)
  t.is(pre.headers['content-length'], '0')
  t.is(pre.headers.allow, 'GET')
  t.is(pre.headers['access-control-allow-origin'], ORIGIN)
  t.is(pre.headers['access-control-allow-credentials'], 'true')
  t.is(pre.headers['access-control-allow-methods'], 'GET')
  t.is(pre.headers['access-control-allow-headers'], 'If-None-Match, If-Modified-Since, Content-Type, Cache-Control, X-EventSource-Event, Etag, Last-Event-ID, Authorization')
  // a preflight neither creates a channel nor counts a subscriber
  t.is((await rawRequest(port, req('GET', '/pub/opt'))).status, 404)
})

test('CORS: publisher answers echo the Origin with credentials', async (t) => {
  const { port } = await startServer(t, { publisherOpen: true })
  const h = { Origin: ORIGIN }
  const answers = [
    await rawRequest(port, req('POST', '/pub/cors', h, 'x')),
    await rawRequest(port, req('PUT', '/pub/cors', h, 'y')),
    await rawRequest(port, req('GET', '/pub/cors', h)),
    await rawRequest(port, req('DELETE', '/pub/cors', h)),
    await rawRequest(port, req('GET', '/pub/cors', h)) // 404 now
  ]
  t.deepEqual(answers.map((a) => a.status), [202, 202, 200, 200, 404])
  for (const a of answers) {
    t.is(a.headers['access-control-allow-origin'], ORIGIN)
    t.is(a.headers['access-control-allow-credentials'], 'true')
  }
  // without Origin: no CORS headers
  noCorsHeaders(t, (await rawRequest(port, req('POST', '/pub/cors', {}, 'z'))).headers)
  // Parkline's own 400 answers carry them too
  const bad = await rawRequest(port, req('GET', '/sub/cors', { Origin: ORIGIN, 'Last-Event-ID': 'abc:1' }))
  t.is(bad.status, 400)
  t.is(bad.headers['content-type'], 'text/plain')
  t.is(bad.body, 'Message ID invalid')
  t.is(bad.headers['access-control-allow-origin'], ORIGIN)
  t.is(bad.headers['access-control-allow-credentials'], 'true')
})

test('CORS: the SSE head echoes the Origin with credentials and exposes only Parkline-Keepalive (none with keepalive 0)', async (t) => {
  const { base, port } = await startServer(t)
  await pub(base, 'csse', 'x')
  const c = await RawSse.connect(port, '/sub/csse', { Origin: ORIGIN })
  t.teardown(() => c.close())
  t.is(c.status, 200)
  t.is(c.headers['access-control-allow-origin'], ORIGIN)
  t.is(c.headers['access-control-allow-credentials'], 'true')
  t.is(c.headers['access-control-expose-headers'], 'Parkline-Keepalive')
  t.is(c.headers['parkline-keepalive'], '25')
  await c.waitEvents(1)
  const plain = await RawSse.connect(port, '/sub/csse')
  t.teardown(() => plain.close())
  noCorsHeaders(t, plain.headers)
  t.is(plain.headers['parkline-keepalive'], '25')
  const quiet = await startServer(t, { keepalive: 0 })
  const q = await RawSse.connect(quiet.port, '/sub/csse', { Origin: ORIGIN })
  t.teardown(() => q.close())
  t.false('access-control-expose-headers' in q.headers)
  t.false('parkline-keepalive' in q.headers)
})

test('CORS: long-poll answers echo the Origin and expose Last-Modified, Etag, Content-Type, Parkline-Gap', async (t) => {
  const { base, port, app } = await startServer(t)
  const p = await pub(base, 'clp', 'x')
  const a = await lpGet(port, '/sub/clp', { Origin: ORIGIN }).done
  t.is(a.status, 200)
  t.is(a.headers['access-control-allow-origin'], ORIGIN)
  t.is(a.headers['access-control-allow-credentials'], 'true')
  t.is(a.headers['access-control-expose-headers'], 'Last-Modified, Etag, Content-Type, Parkline-Gap, WWW-Authenticate')
  t.is(lpId(a), p.id)
  // status answers (410 here) carry them as well
  const parked = lpGet(port, '/sub/clp', { Origin: ORIGIN, ...lpCursor(p.id) })
  t.true(await eventually(() => coreOf(app).table.size === 1))
  t.is((await fetch(`${base}/pub/clp`, { method: 'DELETE' })).status, 200)
  const g = await parked.done
  t.is(g.status, 410)
  t.is(g.headers['access-control-allow-origin'], ORIGIN)
  t.is(g.headers['access-control-allow-credentials'], 'true')
  t.is(g.headers['access-control-expose-headers'], 'Last-Modified, Etag, Content-Type, Parkline-Gap, WWW-Authenticate')
  t.is(g.headers.etag, splitId(p.id).tags)
  // without Origin: none
  await pub(base, 'clp', 'y')
  const n = await lpGet(port, '/sub/clp').done
  t.is(n.status, 200)
  noCorsHeaders(t, n.headers as Record<string, string>)
})

test('CORS allow-list: a non-matching Origin gets 403 and nothing happens', async (t) => {
  const { port } = await startServer(t, { corsOrigins: [ORIGIN] })
  const evil = { Origin: 'https://evil.example' }
  t.is((await rawRequest(port, req('POST', '/pub/al', evil, 'x'))).status, 403)
  t.is((await rawRequest(port, req('GET', '/pub/al'))).status, 404, 'nothing was queued')
  t.is((await rawRequest(port, req('GET', '/sub/al', { ...evil, Accept: 'text/event-stream' }))).status, 403)
  t.is((await rawRequest(port, req('GET', '/sub/al', evil))).status, 403)
  t.is((await rawRequest(port, req('OPTIONS', '/sub/al', evil))).status, 403)
  // the listed origin and requests without Origin are served
  const ok = await rawRequest(port, req('POST', '/pub/al', { Origin: ORIGIN }, 'y'))
  t.is(ok.status, 202)
  t.is(ok.headers['access-control-allow-origin'], ORIGIN)
  t.is((await rawRequest(port, req('POST', '/pub/al', {}, 'z'))).status, 202)
  const c = await RawSse.connect(port, '/sub/al', { Origin: ORIGIN })
  t.teardown(() => c.close())
  t.is(c.status, 200)
  await c.waitEvents(2)
  t.deepEqual(c.events.map((e) => e.data), ['y', 'z'])
})

// ---- ids (§2.1) ----------------------------------------------------------------------------------

test('ids are T:G, strictly increasing, G counting within the second; the same on publisher, SSE and long-poll', async (t) => {
  const { base, port } = await startServer(t)
  const sse = await RawSse.connect(port, '/sub/ids')
  t.teardown(() => sse.close())
  const ids: string[] = []
  const before = Math.floor(Date.now() / 1000)
  for (let i = 0; i < 30; i++) {
    const p = await pub(base, 'ids', 'm' + i)
    t.is(p.status, 201)
    t.regex(p.id, /^\d+:\d+$/)
    ids.push(p.id)
  }
  const after = Math.floor(Date.now() / 1000)
  let prev: { seconds: number, tag: number } | null = null
  for (const id of ids) {
    const seconds = Number(id.split(':')[0])
    const tag = Number(id.split(':')[1])
    t.true(seconds >= before && seconds <= after, 'seconds is the Unix time of the publish')
    if (prev === null || seconds !== prev.seconds) {
      t.is(tag, 0, `first in its second: ${id}`)
      if (prev !== null) t.true(seconds > prev.seconds)
    } else {
      t.is(tag, prev.tag + 1, `next in the same second: ${id}`)
    }
    prev = { seconds, tag }
  }
  t.is((await info(base, 'ids')).json!.last_message_id, ids[ids.length - 1])
  await sse.waitEvents(ids.length)
  t.deepEqual(sse.events.map((e) => e.id), ids)
  // long-poll: Last-Modified + Etag (bare digits) give the same ids
  let cursor: Record<string, string> = {}
  for (let i = 0; i < ids.length; i++) {
    const a = await lpGet(port, '/sub/ids', cursor).done
    t.is(a.status, 200)
    t.regex(String(a.headers.etag), /^\d+$/)
    t.is(a.headers.vary, 'If-None-Match, If-Modified-Since')
    t.is(a.headers['cache-control'], undefined)
    t.is(lpId(a), ids[i])
    t.is(a.body.toString(), 'm' + i)
    cursor = { 'If-Modified-Since': a.headers['last-modified']!, 'If-None-Match': String(a.headers.etag) }
  }
  // repeating a request gives the same answer
  const again = await lpGet(port, '/sub/ids', lpCursor(ids[3]!)).done
  t.is(lpId(again), ids[4])
  const again2 = await lpGet(port, '/sub/ids', lpCursor(ids[3]!)).done
  t.is(lpId(again2), ids[4])
})
