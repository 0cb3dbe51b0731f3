// Idempotent publishing (Parkline extension, docs/api.md): a publish retried with the same
// `Idempotency-Key` inside `idempotencyWindow` answers the original id and publishes nothing, and the
// key sent again with another message is answered 422 and publishes nothing either — on
// every engine: one process, `--workers 2` (each channel's owner worker keeps its keys) and two Redis
// nodes (Redis keeps them with the channel). Subscribers see each message once.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { once } from 'node:events'
import test from 'ava'
import { pub } from './helpers/conformance.ts'
import { SseClient, eventually, info, startServer } from './helpers/server.ts'
import { TOPOLOGIES, closeAll } from './helpers/topology.ts'
import { IdempotencyKeys, MAX_BYTES, MAX_KEYS } from '../lib/idempotency.ts'

test.after.always(closeAll)

for (const topo of TOPOLOGIES) {
  test(`[${topo.name}] a retried Idempotency-Key answers the original id, publishes nothing, and is per channel`, async (t) => {
    const dep = await topo.start(t)
    const ch = dep.ch('idem')
    const other = dep.ch('idem-other')
    const sub = await SseClient.connect(dep.port, `/sub/${ch}`)
    t.teardown(() => sub.socket.destroy())
    t.is(sub.status, 200)
    t.true(await eventually(async () => (await info(dep.pubBase, ch)).json?.subscribers === 1, 5000))

    const first = await pub(dep.pubBase, ch, 'one', { 'Idempotency-Key': 'order-17' })
    t.is(first.status, 201)
    // the retry (the same bytes and no Content-Type, as the first: a Buffer body gets none from
    // fetch) is answered with the first id; nothing is published
    const res = await fetch(`${dep.pubBase}/pub/${ch}`, { method: 'POST', body: Buffer.from('one'), headers: { 'Idempotency-Key': 'order-17' } })
    const text = await res.text()
    t.is(res.status, 201)
    t.is(res.headers.get('idempotent-replayed'), 'true')
    t.regex(text, new RegExp(`last message id: ${first.id.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`))
    // the key again with another message (body, or type): 422, and nothing is published
    for (const [body, headers] of [['one again', {}], ['one', { 'Content-Type': 'text/html' }], ['one', { 'X-EventSource-Event': 'e' }]] as const) {
      const r = await fetch(`${dep.pubBase}/pub/${ch}`, { method: 'POST', body: Buffer.from(body), headers: { 'Idempotency-Key': 'order-17', ...headers } })
      t.is(r.status, 422, `${body} ${JSON.stringify(headers)}`)
      t.is(await r.text(), 'Unprocessable Content: Idempotency-Key already used for a different message')
      t.is(r.headers.get('idempotent-replayed'), null)
    }
    const second = await pub(dep.pubBase, ch, 'two', { 'Idempotency-Key': 'order-18' })
    t.is(second.status, 201)
    t.not(second.id, first.id)
    // no key: always published
    const third = await pub(dep.pubBase, ch, 'three')
    t.is(third.status, 201)
    const events = await sub.waitEvents(3)
    t.deepEqual(events.map((e) => e.data), ['one', 'two', 'three'])
    t.deepEqual(events.map((e) => e.id), [first.id, second.id, third.id])
    t.is((await info(dep.pubBase, ch)).json?.messages, 3)

    // the same key on another channel is another publish
    const elsewhere = await pub(dep.pubBase, other, 'x', { 'Idempotency-Key': 'order-17' })
    t.is(elsewhere.status, 202)
    t.is((await info(dep.pubBase, other)).json?.messages, 1)

    // a key that is no header-safe token: 400, nothing published
    for (const bad of ['x'.repeat(256), 'caf\u00e9', 'tab\there']) {
      const r = await fetch(`${dep.pubBase}/pub/${other}`, { method: 'POST', body: 'y', headers: { 'Idempotency-Key': bad } })
      t.is(r.status, 400, JSON.stringify(bad))
      t.is(await r.text(), 'Bad Request: Idempotency-Key must be 1 to 255 visible ASCII characters')
    }
    t.is((await info(dep.pubBase, other)).json?.messages, 1)
    // nothing more reached the subscriber
    await new Promise((resolve) => setTimeout(resolve, 200))
    t.is(sub.events.length, 3)
  })
}

test('app.parkline.publish takes an idempotencyKey; idempotencyWindow 0 turns it off', async (t) => {
  const srv = await startServer(t)
  const a = await srv.app.parkline.publish('facade-idem', 'a', { idempotencyKey: 'k' })
  const b = await srv.app.parkline.publish('facade-idem', 'a', { idempotencyKey: 'k' })
  t.false(a.replayed)
  t.true(b.replayed)
  t.is(b.id, a.id)
  await t.throwsAsync(srv.app.parkline.publish('facade-idem', 'b', { idempotencyKey: 'k' }), { code: 'PKL_ERR_IDEMPOTENCY_KEY_REUSED' })
  t.is((await srv.app.parkline.info('facade-idem'))?.messages, 1)
  await t.throwsAsync(srv.app.parkline.publish('facade-idem', 'c', { idempotencyKey: '' }), { message: /Idempotency-Key/ })

  const off = await startServer(t, { idempotencyWindow: 0 })
  await off.app.parkline.publish('w', 'a', { idempotencyKey: 'k' })
  const again = await off.app.parkline.publish('w', 'b', { idempotencyKey: 'k' })
  t.false(again.replayed)
  t.is((await off.app.parkline.info('w'))?.messages, 2)
  const r = await fetch(`${off.base}/pub/w`, { method: 'POST', body: 'c', headers: { 'Idempotency-Key': 'k' } })
  t.is(r.status, 202)
  t.is(r.headers.get('idempotent-replayed'), null)
})

test('with a publisher upstream that stamps each message, a retry is still a retry: the key is matched against the request, not the rewritten message', async (t) => {
  let stamp = 0
  const upstream = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => { res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ body: Buffer.concat(chunks).toString(), stamp: stamp++ })) })
  })
  upstream.listen(0, '127.0.0.1')
  await once(upstream, 'listening')
  t.teardown(() => { upstream.closeAllConnections(); upstream.close() })
  const srv = await startServer(t, { publishUpstreamUrl: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/hook` })
  const first = await pub(srv.base, 'stamped', 'order', { 'Idempotency-Key': 'k1' })
  t.is(first.status, 202)
  const retry = await fetch(`${srv.base}/pub/stamped`, { method: 'POST', body: Buffer.from('order'), headers: { 'Idempotency-Key': 'k1' } })
  t.is(retry.status, 202)
  t.is(retry.headers.get('idempotent-replayed'), 'true')
  await retry.text()
  const other = await fetch(`${srv.base}/pub/stamped`, { method: 'POST', body: Buffer.from('another order'), headers: { 'Idempotency-Key': 'k1' } })
  t.is(other.status, 422)
  await other.text()
  t.is((await info(srv.base, 'stamped')).json?.messages, 1)
  t.is(stamp, 1, 'the retry and the other message were answered from the key, without the upstream')
})

test('keys past their window leave by themselves, a few hundred a second from the oldest: a burst holds no memory once its window has passed', async (t) => {
  const keys = new IdempotencyKeys(1)
  for (let i = 0; i < 1200; i++) keys.set('ch' + (i % 7), 'key' + i, `1-${i}`, 'fp')
  keys.sweep()
  t.is(keys.size, 1200, 'nothing inside its window goes')
  await new Promise((resolve) => setTimeout(resolve, 1100))
  keys.set('late', 'young', '2-0', 'fp')
  keys.sweep()
  t.is(keys.size, 701, 'at most 500 a sweep')
  keys.sweep()
  keys.sweep()
  t.is(keys.size, 1, 'the one inside its window stays')
  t.deepEqual(keys.get('late', 'young'), { id: '2-0', fingerprint: 'fp' })
  t.deepEqual(keys.of('ch0', ['1-0', '1-7']), [], 'the per-channel index is emptied with them')
})

test('the sweep looks past a key still inside its window: keys handed on with less of theirs, behind it, leave too', async (t) => {
  const keys = new IdempotencyKeys(60)
  keys.set('a', 'long', '1-0', 'fp')
  for (let i = 0; i < 1000; i++) keys.set('b', 'short' + i, `1-${i + 1}`, 'fp', 100)
  await new Promise((resolve) => setTimeout(resolve, 300))
  keys.sweep()
  keys.sweep()
  t.is(keys.size, 1)
  t.deepEqual(keys.get('a', 'long'), { id: '1-0', fingerprint: 'fp' })
})

test('the keys kept in memory are bounded in bytes as well as in count: long channel ids push the oldest out', (t) => {
  const keys = new IdempotencyKeys(60)
  const channel = (i: number): string => String(i).padStart(1000, 'c')
  // ~1.2 KB an entry: 40,000 of them are over MAX_BYTES while under MAX_KEYS
  const n = 40_000
  t.true(n < MAX_KEYS && n * 1000 > MAX_BYTES)
  for (let i = 0; i < n; i++) keys.set(channel(i), 'k', `1-${i}`, 'fp')
  t.is(keys.get(channel(0), 'k'), undefined)
  t.deepEqual(keys.get(channel(n - 1), 'k'), { id: `1-${n - 1}`, fingerprint: 'fp' })
  let kept = 0
  for (let i = 0; i < n; i++) if (keys.get(channel(i), 'k') !== undefined) kept++
  t.true(kept > 1000 && kept * 1000 <= MAX_BYTES, `${kept} kept`)
})

test('the keys held for one channel (handed on with its messages between workers): those of the ids asked for, each with what is left of its window; none once evicted or expired', async (t) => {
  const all = ['1:0', '1:1', '1:2']
  const keys = new IdempotencyKeys(1)
  keys.set('a', 'k1', '1:0', 'fp1')
  keys.set('a', 'k2', '1:1', 'fp2')
  keys.set('b', 'k1', '1:2', 'fp3')
  // a key seen again (a replica told twice) is one entry
  keys.set('a', 'k1', '1:0', 'fp1')
  const a = keys.of('a', all)
  t.deepEqual(a.map(([k, id, fp]) => [k, id, fp]), [['k1', '1:0', 'fp1'], ['k2', '1:1', 'fp2']])
  for (const [, , , left] of a) t.true(left > 0 && left <= 1000, String(left))
  // only the keys of the messages a buffer still holds
  t.deepEqual(keys.of('a', ['1:1', '9:9']).map(([k]) => k), ['k2'])
  t.deepEqual(keys.of('c', all), [])
  t.true(keys.holds('b', 'k1'))
  t.false(keys.holds('b', 'k2'))
  // a key handed on with what was left of its window keeps only that
  const other = new IdempotencyKeys(60)
  other.set('a', 'k1', '1:0', 'fp1', 1)
  await new Promise((resolve) => setTimeout(resolve, 1100))
  t.deepEqual(keys.of('a', all), [])
  t.deepEqual(keys.of('b', all), [])
  t.false(keys.holds('b', 'k1'))
  t.is(other.get('a', 'k1'), undefined)
  t.deepEqual(other.of('a', all), [])
  // evicted by the count bound: gone from the channel's keys too
  const full = new IdempotencyKeys(60)
  for (let i = 0; i <= MAX_KEYS; i++) full.set(i === 0 ? 'first' : 'rest', `k${i}`, `1:${i}`, 'fp')
  const every = Array.from({ length: MAX_KEYS + 1 }, (_, i) => `1:${i}`)
  t.deepEqual(full.of('first', every), [])
  t.is(full.of('rest', every).length, MAX_KEYS)
})

test('a key told again with another message id (a replica given the owner\'s value) is found by the new id only; a key gone leaves no id behind', (t) => {
  const keys = new IdempotencyKeys(60)
  keys.set('a', 'k1', '1:0', 'fp1')
  keys.set('a', 'k1', '1:5', 'fp5')
  t.deepEqual(keys.of('a', ['1:0']), [])
  t.deepEqual(keys.of('a', ['1:0', '1:5']).map(([k, id, fp]) => [k, id, fp]), [['k1', '1:5', 'fp5']])
  // many keys on one channel: only the ids asked for are read, each found
  for (let i = 0; i < 1000; i++) keys.set('a', `m${i}`, `2:${i}`, 'fp')
  t.deepEqual(keys.of('a', ['2:999', '2:0']).map(([k]) => k), ['m999', 'm0'])
  // evicted by the count bound: its id leaves the index, and a later key of that id is found
  const full = new IdempotencyKeys(60)
  for (let i = 0; i <= MAX_KEYS; i++) full.set('c', `k${i}`, `1:${i}`, 'fp')
  t.deepEqual(full.of('c', ['1:0']), [])
  full.set('c', 'again', '1:0', 'fp')
  t.deepEqual(full.of('c', ['1:0']).map(([k]) => k), ['again'])
})

test('a channel id holding LF (any byte but NUL may be in one): an evicted key leaves the index too, so the index stays bounded', (t) => {
  const keys = new IdempotencyKeys(60)
  // (a review grew a process's heap by 1.3 KB per publish this way, without bound)
  for (let i = 0; i < MAX_KEYS + 5000; i++) keys.set('nl\nchannel\n', `k${i}`, `1:${i}`, 'fp')
  t.is(keys.indexed, MAX_KEYS)
  t.is(keys.get('nl\nchannel\n', 'k0'), undefined)
  t.deepEqual(keys.get('nl\nchannel\n', `k${MAX_KEYS + 4999}`), { id: `1:${MAX_KEYS + 4999}`, fingerprint: 'fp' })
  t.deepEqual(keys.of('nl\nchannel\n', [`1:${MAX_KEYS + 4999}`]).map(([k]) => k), [`k${MAX_KEYS + 4999}`])
})
