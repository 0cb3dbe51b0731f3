// Nchan's publisher upstream request (publishUpstreamUrl) end to end: a real Parkline (in
// process, standalone with and without its raw paths, with workers, with Redis) and a real
// node:http upstream. What the upstream gets, what is published after a 304, retries with an
// Idempotency-Key (answered without the upstream), and bodies waiting on it counted in
// maxPublishing.
import http from 'node:http'
import net from 'node:net'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import test, { type ExecutionContext } from 'ava'
import { SignJWT } from 'jose'
import { eventually, info, publish, rawRequest, startServer, startStandalone } from './helpers/server.ts'
import { serve } from './helpers/node.ts'
import { startRedis } from './helpers/redis.ts'
import { ownerOf } from '../lib/cluster.ts'

interface Seen { url: string, headers: http.IncomingHttpHeaders, body: Buffer }

interface Upstream {
  url: string
  seen: Seen[]
  /** Requests that came in and were not answered yet (a `hold` handler). */
  held: http.ServerResponse[]
}

/** A node:http upstream; `answer` decides each request (null: hold it until the test ends it). */
async function upstream (t: ExecutionContext, answer: (s: Seen, res: http.ServerResponse) => boolean): Promise<Upstream> {
  const seen: Seen[] = []
  const held: http.ServerResponse[] = []
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const s = { url: req.url!, headers: req.headers, body: Buffer.concat(chunks) }
      seen.push(s)
      if (!answer(s, res)) held.push(res)
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, seen, held }
}

const notModified = (_s: Seen, res: http.ServerResponse): boolean => {
  res.writeHead(304).end()
  return true
}

/** The oldest buffered message of a channel, as a long-poll answers it. */
async function oldest (port: number, channel: string): Promise<{ type: string | undefined, body: string }> {
  const r = await rawRequest(port, `GET /sub/${channel} HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\nIf-None-Match: 0\r\nConnection: close\r\n\r\n`)
  return { type: r.headers['content-type'], body: r.body }
}

for (const fast of [true, false]) {
  const path = fast ? 'raw path' : 'Fastify path'
  test(`${path}: an upstream 304 publishes the message with the publisher's own Content-Type, verbatim`, async (t) => {
    const up = await upstream(t, notModified)
    const srv = await startStandalone(t, { publishUpstreamUrl: up.url }, fast)
    // a registered media type, and a value no media type parser takes (kept as sent, as Nchan does)
    for (const [channel, type] of [['typed', 'application/json; charset=utf-8'], ['odd', 'not a media type']] as const) {
      const r = await publish(srv.base, channel, '{"a":1}', { 'Content-Type': type })
      t.is(r.status, 202, `${channel}: ${r.text}`)
      t.deepEqual(await oldest(srv.port, channel), { type, body: '{"a":1}' }, channel)
    }
    t.is(up.seen.length, 2)
  })
}

test('the upstream gets the publisher\'s headers but not its Cookie, nor an Authorization holding the API key; a JWT goes through', async (t) => {
  const secret = 'a-secret-of-at-least-32-bytes-long!!'
  const apiKey = 'an-api-key-of-24-bytes-xx'
  const up = await upstream(t, notModified)
  const srv = await startServer(t, { publishUpstreamUrl: up.url, apiKey: [apiKey], jwtSecret: secret })
  const jwt = await new SignJWT({ sub: 'pub-1', parkline: { publish: ['*'] } })
    .setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setExpirationTime('1m')
    .sign(new TextEncoder().encode(secret))
  t.is((await publish(srv.base, 'k', 'one', { Authorization: `Bearer ${apiKey}`, Cookie: 'session=s1', 'X-App': 'kept' })).status, 202)
  t.is((await publish(srv.base, 'k', 'two', { Authorization: `Bearer ${jwt}`, Cookie: 'session=s1' })).status, 202)
  t.is(up.seen.length, 2)
  const [byKey, byJwt] = up.seen as [Seen, Seen]
  t.is(byKey.headers.authorization, undefined, 'the API key is not handed to the application')
  t.is(byKey.headers.cookie, undefined)
  t.is(byKey.headers['x-app'], 'kept')
  t.is(byJwt.headers.authorization, `Bearer ${jwt}`)
  t.is(byJwt.headers.cookie, undefined)
})

test('X-Channel-Id to the upstream and to the publisher\'s authorize request decodes back to the id: `%` is always encoded', async (t) => {
  const up = await upstream(t, notModified)
  const authorized: string[] = []
  const az = await upstream(t, (s, res) => {
    authorized.push(String(s.headers['x-channel-id']))
    res.writeHead(204).end()
    return true
  })
  const srv = await startServer(t, { publishUpstreamUrl: up.url, authorizeUrl: az.url, authorizePublish: true })
  // the ids `a%01` (4 bytes) and `a<SOH>` (2 bytes): once both went as `a%01`
  t.is((await publish(srv.base, 'a%2501', 'x')).status, 202)
  t.is((await publish(srv.base, 'a%01', 'x')).status, 202)
  const sent = up.seen.map((s) => String(s.headers['x-channel-id']))
  t.deepEqual(sent, ['a%2501', 'a%01'])
  t.deepEqual(authorized, ['a%2501', 'a%01'])
  t.deepEqual(sent.map((v) => Buffer.from(decodeURIComponent(v), 'latin1').toString('hex')), ['61253031', '6101'])
})

test('a body waiting on the upstream counts in maxPublishing: past it 503, and once the upstream answers, publishes go through again', async (t) => {
  const up = await upstream(t, () => false)
  const srv = await startServer(t, { publishUpstreamUrl: up.url, maxPublishing: 1, authorizeTimeout: 30 })
  const first = publish(srv.base, 'held', 'one')
  t.true(await eventually(() => up.held.length === 1))
  const second = await publish(srv.base, 'held', 'two')
  t.is(second.status, 503)
  t.truthy(second.headers.get('retry-after'))
  t.is(up.seen.length, 1, 'the refused body never went to the upstream')
  up.held[0]!.writeHead(304).end()
  t.is((await first).status, 202)
  const third = publish(srv.base, 'held', 'three')
  t.true(await eventually(() => up.held.length === 2))
  up.held[1]!.writeHead(304).end()
  t.is((await third).status, 202)
  t.is((await info(srv.base, 'held')).json?.messages, 2)
})

/** Publish with an Idempotency-Key: original, retry, the same key with another body; what each got. */
async function retries (base: string, channel: string, post: (body: string, key: string) => Promise<{ status: number, replayed: string | null }>): Promise<Array<[number, string | null]>> {
  const out: Array<[number, string | null]> = []
  for (const body of ['order', 'order', 'another order']) {
    const r = await post(body, `key-${channel}`)
    out.push([r.status, r.replayed])
  }
  return out
}

async function viaFetch (base: string, channel: string, body: string, key: string): Promise<{ status: number, replayed: string | null }> {
  const r = await fetch(`${base}/pub/${channel}`, { method: 'POST', body: Buffer.from(body), headers: { 'Idempotency-Key': key } })
  await r.text()
  return { status: r.status, replayed: r.headers.get('idempotent-replayed') }
}

/** An upstream that refuses every request after its first: a retry that reached it would get 403. */
function refusesAfterFirst (): (s: Seen, res: http.ServerResponse) => boolean {
  let n = 0
  return (_s, res) => {
    if (n++ === 0) res.writeHead(304).end()
    else res.writeHead(403, { 'content-type': 'text/plain' }).end('closed now')
    return true
  }
}

const EXPECTED: Array<[number, string | null]> = [[202, null], [202, 'true'], [422, null]]

test('memory engine: a retried Idempotency-Key is answered as the original was, without the upstream (which refuses by then)', async (t) => {
  const up = await upstream(t, refusesAfterFirst())
  const srv = await startServer(t, { publishUpstreamUrl: up.url })
  t.deepEqual(await retries(srv.base, 'mem', async (b, k) => await viaFetch(srv.base, 'mem', b, k)), EXPECTED)
  t.is(up.seen.length, 1)
  t.is((await info(srv.base, 'mem')).json?.messages, 1)
})

test('Redis engine: a retried Idempotency-Key is answered from Redis, without the upstream, on another node too', async (t) => {
  t.timeout(60000)
  const redis = await startRedis(t)
  const up = await upstream(t, refusesAfterFirst())
  const args = ['--redis-url', `redis://127.0.0.1:${redis.port}`, '--publish-upstream-url', up.url]
  const [a, b] = await Promise.all([serve(t, args), serve(t, args)])
  let i = 0
  t.deepEqual(await retries(a.base, 'red', async (body, k) => await viaFetch((i++ % 2 === 0 ? a : b).base, 'red', body, k)), EXPECTED)
  t.is(up.seen.length, 1)
  t.is((await info(a.base, 'red')).json?.messages, 1)
})

/** A keep-alive connection that /status says reached worker `worker`. */
async function onWorker (port: number, worker: number): Promise<(req: string) => Promise<string>> {
  for (let i = 0; i < 200; i++) {
    const socket = net.connect(port, '127.0.0.1')
    socket.on('error', () => {})
    await once(socket, 'connect')
    let got = ''
    let waiting: ((s: string) => void) | null = null
    socket.on('data', (d: Buffer) => {
      got += d.toString('latin1')
      const end = got.indexOf('\r\n\r\n')
      if (end === -1 || waiting === null) return
      const len = Number(/content-length: (\d+)/i.exec(got.slice(0, end))?.[1] ?? 0)
      if (got.length < end + 4 + len) return
      const answer = got.slice(0, end + 4 + len)
      got = got.slice(end + 4 + len)
      const w = waiting
      waiting = null
      w(answer)
    })
    const ask = async (req: string): Promise<string> => await new Promise((resolve) => {
      waiting = resolve
      socket.write(req)
    })
    const st = await ask('GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
    if (new RegExp(`^worker: ${worker}$`, 'm').test(st)) return ask
    socket.destroy()
  }
  throw new Error(`no connection reached worker ${worker}`)
}

test('workers: a retried Idempotency-Key on a worker that does not own the channel is answered by its owner, without the upstream', async (t) => {
  t.timeout(60000)
  const up = await upstream(t, refusesAfterFirst())
  const node = await serve(t, ['--workers', '2', '--publish-upstream-url', up.url])
  // a channel owned by worker 1, published through worker 0
  let channel = 'w0'
  for (let i = 1; ownerOf(channel, 2) !== 1; i++) channel = `w${i}`
  const ask = await onWorker(node.port, 0)
  const got = await retries(node.base, channel, async (body, key) => {
    const r = await ask(`POST /pub/${channel} HTTP/1.1\r\nHost: 127.0.0.1\r\nIdempotency-Key: ${key}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
    return { status: Number(/^HTTP\/1\.1 (\d+)/.exec(r)?.[1]), replayed: /\r\nidempotent-replayed: (\S+)/i.exec(r)?.[1] ?? null }
  })
  t.deepEqual(got, EXPECTED)
  t.is(up.seen.length, 1)
  t.is((await info(node.base, channel)).json?.messages, 1)
})
