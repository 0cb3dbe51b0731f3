// multipart/mixed stream (PROTOCOL.md §8, §11a, §11b, §11e) and the long-poll multipart response
// option (Nchan's nchan_longpoll_multipart_response), byte for byte over raw sockets.
import net from 'node:net'
import { once } from 'node:events'
import test from 'ava'
import { httpDate, lpCursor, lpGet, nextSecond, pub, splitId } from '../helpers/conformance.ts'
import { eventually, info, rawRequest, startServer } from '../helpers/server.ts'
import { RawStream, parseMultipart } from '../helpers/stream.ts'
import { coreOf } from '../../lib/plugin.ts'

/** The part a single-channel message must produce, built independently of the server. */
function part (id: string, body: string, ct: string | null, gap: string | null = null, etag = splitId(id).tags): string {
  let s = `\r\nLast-Modified: ${httpDate(splitId(id).seconds)}\r\nEtag: ${etag}\r\n`
  if (gap !== null) s += `Parkline-Gap: ${gap}\r\n`
  s += ct === null ? '\r\n' : `Content-Type: ${ct}\r\n\r\n`
  return s + body
}

test('head: 200, a fresh 32-character boundary per connection, no length or chunking, then --B', async (t) => {
  const srv = await startServer(t)
  const a = await RawStream.multipart(srv.port, '/sub/head')
  const b = await RawStream.multipart(srv.port, '/sub/head', { Origin: 'https://app.example' })
  t.teardown(() => { a.close(); b.close() })
  for (const c of [a, b]) {
    t.regex(c.boundary, /^[0-9A-Za-z]{32}$/)
    await c.until(() => c.text.length >= 34)
    t.is(c.text, '--' + c.boundary, 'first bytes are the boundary, no leading CRLF')
  }
  t.not(a.boundary, b.boundary)
  t.is(a.head, `HTTP/1.1 200 OK\r\nContent-Type: multipart/mixed; boundary=${a.boundary}\r\nX-Accel-Buffering: no\r\nConnection: close\r\n\r\n`)
  t.is(b.head, `HTTP/1.1 200 OK\r\nContent-Type: multipart/mixed; boundary=${b.boundary}\r\nX-Accel-Buffering: no\r\nConnection: close\r\n` +
    'Access-Control-Allow-Origin: https://app.example\r\nAccess-Control-Allow-Credentials: true\r\n\r\n')
  // counted once the head is out (§4.4)
  t.is((await info(srv.base, 'head')).json!.subscribers, 2)
})

test('parts with and without a content type, replayed and live, byte-exact', async (t) => {
  const srv = await startServer(t)
  const one = await pub(srv.base, 'parts', 'one', { 'Content-Type': 'text/plain; charset=utf-8' })
  const two = await pub(srv.base, 'parts', 'two')
  const empty = await pub(srv.base, 'parts', '')
  const c = await RawStream.multipart(srv.port, '/sub/parts')
  t.teardown(() => c.close())
  await c.waitParts(3)
  const three = await pub(srv.base, 'parts', Buffer.from([0, 13, 10, 45, 45, 255]), { 'Content-Type': 'application/octet-stream' })
  t.is(three.status, 201)
  await c.waitParts(4)
  const B = c.boundary
  const expected = `--${B}` +
    part(one.id, 'one', 'text/plain; charset=utf-8') + `\r\n--${B}` +
    part(two.id, 'two', null) + `\r\n--${B}` +
    part(empty.id, '', null) + `\r\n--${B}` +
    part(three.id, '\x00\r\n--\xff', 'application/octet-stream') + `\r\n--${B}`
  t.is(c.text, expected)
  const parsed = parseMultipart(c.text, B)
  t.deepEqual(parsed.parts.map((p) => p.headers.etag), [one, two, empty, three].map((p) => splitId(p.id).tags))
  t.deepEqual(parsed.parts.map((p) => p.headers['content-type'] ?? null), ['text/plain; charset=utf-8', null, null, 'application/octet-stream'])
  t.false(parsed.ended)
})

test('resume from a cursor: Last-Event-ID, ?last_event_id= and If-Modified-Since/If-None-Match give exactly the later ones', async (t) => {
  const srv = await startServer(t)
  const sources: Array<(id: string) => [string, Record<string, string>]> = [
    (id) => ['', { 'Last-Event-ID': id }],
    (id) => ['?last_event_id=' + encodeURIComponent(id), {}],
    (id) => ['', lpCursor(id)]
  ]
  for (let k = 0; k < sources.length; k++) {
    const ch = 'res' + k
    const ids: string[] = []
    for (let i = 0; i < 5; i++) ids.push((await pub(srv.base, ch, 'm' + i)).id)
    const [query, headers] = sources[k]!(ids[1]!)
    const c = await RawStream.multipart(srv.port, `/sub/${ch}${query}`, headers)
    t.teardown(() => c.close())
    const parts = await c.waitParts(3)
    t.deepEqual(parts.map((p) => p.body.toString()), ['m2', 'm3', 'm4'])
    t.deepEqual(parts.map((p) => Date.parse(p.headers['last-modified']!) / 1000 + ':' + p.headers.etag), ids.slice(2))
    const live = await pub(srv.base, ch, 'live')
    const more = await c.waitParts(4)
    t.is(more.length, 4)
    t.is(more[3]!.body.toString(), 'live')
    t.is(more[3]!.headers.etag, splitId(live.id).tags)
  }
})

test('DELETE ends the stream with --\\r\\n, then close; counts return to 0', async (t) => {
  const srv = await startServer(t)
  const m = await pub(srv.base, 'del', 'x')
  const c = await RawStream.multipart(srv.port, '/sub/del')
  await c.waitParts(1)
  t.is((await info(srv.base, 'del')).json!.subscribers, 1)
  const res = await fetch(`${srv.base}/pub/del`, { method: 'DELETE' })
  t.is(res.status, 200)
  t.regex(await res.text(), /active subscribers: 1\r\n/)
  await c.waitClosed()
  t.is(c.text, `--${c.boundary}` + part(m.id, 'x', null) + `\r\n--${c.boundary}--\r\n`)
  t.true(parseMultipart(c.text, c.boundary).ended)
  t.is(coreOf(srv.app).table.size, 0)
  t.is((await info(srv.base, 'del')).status, 404)
})

test('an empty channel: --B--\\r\\n on DELETE; subscriberTimeout and shutdown end the same way', async (t) => {
  const srv = await startServer(t)
  const c = await RawStream.multipart(srv.port, '/sub/quiet')
  t.is((await fetch(`${srv.base}/pub/quiet`, { method: 'DELETE' })).status, 200)
  await c.waitClosed()
  t.is(c.text, `--${c.boundary}--\r\n`)
  // shutdown (EXTENSION b): every stream is ended the same way
  const e = await RawStream.multipart(srv.port, '/sub/quiet2')
  coreOf(srv.app).closeAll(503)
  await e.waitClosed()
  t.is(e.text, `--${e.boundary}--\r\n`)
  t.is(coreOf(srv.app).table.size, 0)
  // the 1 s subscriber timeout of the shared timer
  const slow = await startServer(t, { subscriberTimeout: 1 })
  const d = await RawStream.multipart(slow.port, '/sub/quiet')
  t.is(coreOf(slow.app).table.size, 1)
  await d.waitClosed(5000)
  t.is(d.text, `--${d.boundary}--\r\n`)
  t.is(coreOf(slow.app).table.size, 0)
})

test('a cursor below the buffer gets the oldest message with a Parkline-Gap part header, once', async (t) => {
  const srv = await startServer(t, { bufferLength: 3 })
  const ids: string[] = []
  for (let i = 0; i < 5; i++) ids.push((await pub(srv.base, 'gap', 'g' + i)).id)
  const c = await RawStream.multipart(srv.port, '/sub/gap', { 'Last-Event-ID': ids[0]! })
  t.teardown(() => c.close())
  await c.waitParts(3)
  const B = c.boundary
  t.is(c.text, `--${B}` + part(ids[2]!, 'g2', null, ids[0]!) + `\r\n--${B}` + part(ids[3]!, 'g3', null) + `\r\n--${B}` + part(ids[4]!, 'g4', null) + `\r\n--${B}`)
  t.is(coreOf(srv.app).stats.gapsEvicted, 1)
})

test('multiplexed: the Etag part header is the tag list with the sending channel bracketed', async (t) => {
  const srv = await startServer(t)
  for (let attempt = 0; ; attempt++) {
    const c = await RawStream.multipart(srv.port, `/sub/mxa${attempt},mxb${attempt}`)
    t.teardown(() => c.close())
    await nextSecond()
    const a = await pub(srv.base, `mxa${attempt}`, 'A', { 'Content-Type': 'text/a' })
    const b = await pub(srv.base, `mxb${attempt}`, 'B')
    const a2 = await pub(srv.base, `mxa${attempt}`, 'A2')
    const T = splitId(a.id).seconds
    if (![b, a2].every((p) => splitId(p.id).seconds === T) && attempt < 3) continue
    t.deepEqual([a.id, b.id, a2.id], [`${T}:0`, `${T}:0`, `${T}:1`])
    await c.waitParts(3)
    const B = c.boundary
    t.is(c.text, `--${B}` +
      part(a.id, 'A', 'text/a', null, '[0],-') + `\r\n--${B}` +
      part(b.id, 'B', null, null, '0,[0]') + `\r\n--${B}` +
      part(a2.id, 'A2', null, null, '[1],0') + `\r\n--${B}`)
    // resume with the vector: exactly the later ones, replayed with the same ids
    const r = await RawStream.multipart(srv.port, `/sub/mxa${attempt},mxb${attempt}`, { 'Last-Event-ID': `${T}:0,[0]` })
    t.teardown(() => r.close())
    const parts = await r.waitParts(1)
    t.is(parts[0]!.headers.etag, '[1],0')
    t.is(parts[0]!.body.toString(), 'A2')
    // DELETE of one channel ends the whole subscription
    await fetch(`${srv.base}/pub/mxb${attempt}`, { method: 'DELETE' })
    await c.waitClosed()
    t.true(c.text.endsWith(`\r\n--${B}--\r\n`))
    return
  }
})

test('counts are exact right after connect and after close', async (t) => {
  const srv = await startServer(t)
  const cs: RawStream[] = []
  for (let i = 0; i < 3; i++) {
    cs.push(await RawStream.multipart(srv.port, '/sub/cnt'))
    t.is((await info(srv.base, 'cnt')).json!.subscribers, i + 1)
  }
  const p = await pub(srv.base, 'cnt', 'x')
  t.is(p.status, 201)
  for (const c of cs) await c.waitParts(1)
  cs[0]!.close()
  cs[1]!.close()
  t.true(await eventually(async () => (await info(srv.base, 'cnt')).json!.subscribers === 1))
  cs[2]!.close()
  t.true(await eventually(async () => (await info(srv.base, 'cnt')).json!.subscribers === 0))
  t.is(coreOf(srv.app).table.size, 0)
  const status = await (await fetch(`${srv.base}/status`)).text()
  t.regex(status, /\nsubscribers multipart: 0\n/)
})

test('negotiation: SSE and chunked come before multipart (§4.1); at the subscriber limit 503', async (t) => {
  const srv = await startServer(t, { maxSubscribers: 1 })
  const sse = await RawStream.connect(srv.port, '/sub/neg', { Accept: 'multipart/mixed, text/event-stream' })
  t.is(sse.headers['content-type'], 'text/event-stream; charset=utf-8')
  sse.close()
  t.true(await eventually(() => coreOf(srv.app).table.size === 0))
  const chunked = await RawStream.connect(srv.port, '/sub/neg', { Accept: 'multipart/mixed', TE: 'chunked' })
  t.is(chunked.headers['transfer-encoding'], 'chunked')
  t.is(coreOf(srv.app).table.size, 1)
  const refused = await RawStream.multipart(srv.port, '/sub/neg')
  t.is(refused.status, 503)
  t.regex(refused.headers['retry-after']!, /^([1-9]|10)$/)
  t.is(refused.headers.connection, 'close')
  await refused.waitClosed()
  chunked.close()
})

// ---- slow consumers (EXTENSION e) ----------------------------------------------------------------

const CAP = 65536
const SIZE = 50_000
const COUNT = 120

async function stalled (port: number, path: string): Promise<{ socket: net.Socket, text: () => string }> {
  const socket = net.connect(port, '127.0.0.1')
  await once(socket, 'connect')
  let text = ''
  socket.on('data', (d: Buffer) => { text += d.toString('latin1') })
  socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nAccept: multipart/mixed\r\n\r\n`)
  while (!/\r\n\r\n--\w{32}$/.test(text)) await once(socket, 'data')
  socket.pause()
  return { socket, text: () => text }
}

test('overflow, disconnect: the part being written is finished, then --\\r\\n and close', async (t) => {
  const srv = await startServer(t, { queueCap: CAP, bufferLength: COUNT })
  const s = await stalled(srv.port, '/sub/ov')
  const body = 'x'.repeat(SIZE)
  for (let i = 0; i < COUNT && coreOf(srv.app).stats.overflowDisconnect === 0; i++) await pub(srv.base, 'ov', `${i}:${body}`)
  t.is(coreOf(srv.app).stats.overflowDisconnect, 1)
  s.socket.resume()
  await once(s.socket, 'close')
  const text = s.text()
  const B = /boundary=(\w+)/.exec(text)![1]!
  t.true(text.endsWith(`\r\n--${B}--\r\n`))
  const parts = parseMultipart(text.slice(text.indexOf('\r\n\r\n') + 4), B)
  t.true(parts.ended)
  parts.parts.forEach((p, i) => t.is(p.body.toString(), `${i}:${body}`))
})

test('overflow, drop-oldest: dropped messages are signalled by Parkline-Gap on the next part', async (t) => {
  const srv = await startServer(t, { queueCap: CAP, queuePolicy: 'drop-oldest', bufferLength: COUNT })
  const s = await stalled(srv.port, '/sub/dr')
  const body = 'y'.repeat(SIZE)
  for (let i = 0; i < COUNT; i++) await pub(srv.base, 'dr', `${i}:${body}`)
  t.true(coreOf(srv.app).stats.gapsDropped >= 1)
  t.is(coreOf(srv.app).table.size, 1)
  s.socket.resume()
  t.true(await eventually(() => coreOf(srv.app).table.subs.every((x) => x.socket.writableLength + (x.backlog?.bytes ?? 0) === 0), 20000))
  await pub(srv.base, 'dr', 'last')
  const deadline = Date.now() + 20000
  while (!s.text().includes('\r\n\r\nlast\r\n--') && Date.now() < deadline) await once(s.socket, 'data')
  const text = s.text()
  const B = /boundary=(\w+)/.exec(text)![1]!
  const parts = parseMultipart(text.slice(text.indexOf('\r\n\r\n') + 4), B).parts
  const gapped = parts.filter((p) => p.headers['parkline-gap'] !== undefined)
  t.true(gapped.length >= 1)
  // the gap names the last id written before the drop: the part just before the gapped one
  const i = parts.indexOf(gapped[0]!)
  const prev = parts[i - 1]!
  t.is(gapped[0]!.headers['parkline-gap'], Date.parse(prev.headers['last-modified']!) / 1000 + ':' + prev.headers.etag)
  t.deepEqual(gapped[0]!.lines.map((l) => l.split(':')[0]), ['Last-Modified', 'Etag', 'Parkline-Gap'])
  t.true(parts.length < COUNT + 1)
  s.socket.destroy()
})

// ---- long-poll multipart response option ---------------------------------------------------------

test('longpollMultipart: every buffered message after the cursor in one multipart/mixed body', async (t) => {
  const srv = await startServer(t, { longpollMultipart: true })
  const one = await pub(srv.base, 'lpm', 'one', { 'Content-Type': 'text/plain' })
  const two = await pub(srv.base, 'lpm', '')
  const three = await pub(srv.base, 'lpm', 'three')
  const a = await rawRequest(srv.port, 'GET /sub/lpm HTTP/1.1\r\nHost: x\r\nOrigin: https://o.example\r\n\r\n')
  t.is(a.status, 200)
  const m = /^multipart\/mixed; boundary=([0-9A-Za-z]{32})$/.exec(a.headers['content-type']!)
  t.truthy(m)
  const B = m![1]!
  // Nchan's layout: parts carry only their Content-Type; the body closes with --B--
  const body = `--${B}\r\nContent-Type: text/plain\r\n\r\none` + `\r\n--${B}\r\n\r\n` + `\r\n--${B}\r\n\r\nthree` + `\r\n--${B}--\r\n`
  t.is(a.body, body)
  t.is(a.headers['content-length'], String(body.length))
  // the last message's id, so the next poll resumes after it
  t.is(a.headers['last-modified'], httpDate(splitId(three.id).seconds))
  t.is(a.headers.etag, splitId(three.id).tags)
  t.is(a.headers.vary, 'If-None-Match, If-Modified-Since')
  t.is(a.headers['access-control-allow-origin'], 'https://o.example')
  t.is(a.headers['access-control-expose-headers'], 'Last-Modified, Etag, Content-Type, Parkline-Gap, WWW-Authenticate')
  // from the middle: the remaining two
  const b = await lpGet(srv.port, '/sub/lpm', lpCursor(one.id)).done
  const B2 = /boundary=(\w+)/.exec(b.headers['content-type']!)![1]!
  t.not(B2, B, 'a fresh boundary per response')
  t.is(b.body.toString('latin1'), `--${B2}\r\n\r\n\r\n--${B2}\r\n\r\nthree\r\n--${B2}--\r\n`)
  t.is(b.headers.etag, splitId(three.id).tags)
  // one message after the cursor: an ordinary long-poll answer
  const c = await lpGet(srv.port, '/sub/lpm', lpCursor(two.id)).done
  t.is(c.headers['content-type'], undefined)
  t.is(c.body.toString(), 'three')
  t.is(c.headers.etag, splitId(three.id).tags)
  // past the newest: parks, and the live message is an ordinary answer too
  const parked = lpGet(srv.port, '/sub/lpm', lpCursor(three.id))
  t.true(await eventually(() => coreOf(srv.app).table.size === 1))
  const four = await pub(srv.base, 'lpm', 'four', { 'Content-Type': 'text/x' })
  t.is(four.status, 201)
  const d = await parked.done
  t.is(d.headers['content-type'], 'text/x')
  t.is(d.body.toString(), 'four')
  t.is(coreOf(srv.app).stats.delivered[coreOf(srv.app).transports.findIndex((x) => x.name === 'longpoll')], 3 + 2 + 1 + 1)
})

test('longpollMultipart: multiplexed Etag is the last tag vector; a gap rides in Parkline-Gap; off by default', async (t) => {
  const srv = await startServer(t, { longpollMultipart: true, bufferLength: 2 })
  for (let attempt = 0; ; attempt++) {
    const A = `lma${attempt}`
    await nextSecond()
    const a: string[] = []
    for (let i = 0; i < 4; i++) a.push((await pub(srv.base, A, 'a' + i)).id)
    const b0 = await pub(srv.base, `lmb${attempt}`, 'b0')
    const T = splitId(a[0]!).seconds
    if (![...a, b0.id].every((id) => splitId(id).seconds === T) && attempt < 3) continue
    t.deepEqual([...a, b0.id], [`${T}:0`, `${T}:1`, `${T}:2`, `${T}:3`, `${T}:0`])
    // a0 and a1 were evicted: a cursor at a0 has lost a1
    const r = await lpGet(srv.port, `/sub/${A},lmb${attempt}`, { 'Last-Event-ID': `${T}:[0],-` }).done
    t.is(r.status, 200)
    const B = /boundary=(\w+)/.exec(r.headers['content-type']!)![1]!
    // replay merges by (seconds, tag, position) (§4.3): b0 (T:0) first
    t.deepEqual(parseMultipart(r.body.toString('latin1'), B).parts.map((p) => p.body.toString()), ['b0', 'a2', 'a3'])
    // signalled with a2, naming the cursor as it stood then (after b0), as a one-message poll would
    t.is(r.headers['parkline-gap'], `${T}:[0],0`)
    // the vector after the last message (§2.2)
    t.is(r.headers.etag, '[3],0')
    t.is(r.headers['last-modified'], httpDate(T))
    break
  }
  const off = await startServer(t)
  await pub(off.base, 'one', 'x')
  await pub(off.base, 'one', 'y')
  const o = await lpGet(off.port, '/sub/one').done
  t.is(o.body.toString(), 'x')
})

test('multiplexed: a live message of an earlier second (another authority\'s, arriving late) has the id the stream resumes from, its Last-Modified naming the id\'s second, not the message\'s', async (t) => {
  const srv = await startServer(t)
  const core = coreOf(srv.app)
  const c = await RawStream.multipart(srv.port, '/sub/ea,eb')
  t.teardown(() => c.close())
  t.true(await eventually(() => core.table.size === 1))
  const T = core.nowSec
  core.applyMessage('eb', T + 1, 0, Buffer.from('b'), null, null, Date.now())
  core.applyMessage('ea', T, 5, Buffer.from('a'), null, null, Date.now())
  await c.waitParts(2)
  const parts = parseMultipart(c.text, c.boundary).parts
  t.deepEqual(parts.map((p) => [p.headers['last-modified'], p.headers.etag]), [[httpDate(T + 1), '-,[0]'], [httpDate(T + 1), '[-],0']])
})
