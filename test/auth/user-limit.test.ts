// maxSubscribersPerUser: one user (a JWT's `sub`) may not hold every connection the process
// admits. Real sockets on a real server, the fast path and Fastify's, on every subscriber
// transport; the refusal is 429 with Retry-After, another user is not disturbed, a slot comes back
// when a subscription ends, and the metric counts it.
import net from 'node:net'
import { once } from 'node:events'
import test, { type ExecutionContext } from 'ava'
import { AUTH_SERVER, TRANSPORT_HEADERS, mint, pubKey, type SubscribeTransport } from '../helpers/auth.ts'
import { eventually, parseResponse, startStandalone } from '../helpers/server.ts'

type Transport = SubscribeTransport
const HELD: Record<Transport, number> = { eventsource: 200, longpoll: 0, websocket: 101 }

interface Held { socket: net.Socket, status: () => number, text: () => string }

/** Open a subscription and read until its answer's head (a parked long-poll has none: 300 ms). */
async function open (t: ExecutionContext, port: number, tr: Transport, channel: string, token: string): Promise<Held> {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => {})
  t.teardown(() => { socket.destroy() })
  await once(socket, 'connect')
  let buf = ''
  socket.on('data', (d: Buffer) => { buf += d.toString('latin1') })
  socket.write(`GET /sub/${channel} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\n${TRANSPORT_HEADERS[tr]}\r\n`)
  const head = (): boolean => buf.includes('\r\n\r\n')
  await eventually(head, tr === 'longpoll' ? 300 : 3000)
  const status = (): number => head() ? Number(buf.slice(9, 12)) : 0
  return { socket, status, text: () => buf }
}

async function refusedUserLimit (base: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text()
  return Number(/^parkline_connections_refused_total\{reason="user_limit"\} (\d+)/m.exec(text)?.[1] ?? NaN)
}

for (const fast of [true, false]) {
  for (const tr of ['eventsource', 'longpoll', 'websocket'] as const) {
    test(`${tr}, ${fast ? 'fast path' : 'through Fastify'}: a user past maxSubscribersPerUser gets 429 with Retry-After, another user is served, and an ended subscription frees its slot`, async (t) => {
      const srv = await startStandalone(t, { ...AUTH_SERVER, maxSubscribersPerUser: 2 }, fast)
      const alice = (await mint(['a', 'b', 'c'], 60, 'alice')).token
      const held = [await open(t, srv.port, tr, 'a', alice), await open(t, srv.port, tr, 'b', alice)]
      t.deepEqual(held.map((h) => h.status()), [HELD[tr], HELD[tr]], 'two held')
      const third = await open(t, srv.port, tr, 'c', alice)
      await eventually(() => third.socket.readableEnded || third.socket.destroyed, 3000)
      if (tr === 'eventsource') {
        // an EventSource reconnects only after a 200 stream: `retry:` (the wait) and `:429:`
        const text = third.text()
        t.is(third.status(), 200)
        t.regex(text, /\n:429: 429 Too Many Requests: this user holds its limit of subscriptions\n\n$/)
        const retry = Number(/\nretry: (\d+)\n/.exec(text)?.[1])
        t.true(retry >= 5000 && retry <= 30000, `retry: ${retry}`)
      } else {
        const r = parseResponse(third.text())
        t.is(r.status, 429)
        t.is(r.body, 'Too Many Requests: this user holds its limit of subscriptions')
        const after = Number(r.headers['retry-after'])
        t.true(after >= 5 && after <= 30, `Retry-After ${r.headers['retry-after']}`)
      }
      t.is(await refusedUserLimit(srv.base), 1)
      // another user is not disturbed
      const bob = await open(t, srv.port, tr, 'c', (await mint(['c'], 60, 'bob')).token)
      t.is(bob.status(), HELD[tr])
      // the held ones still get what is published
      await pubKey(srv.base, 'a', 'for-a')
      t.true(await eventually(() => held[0]!.text().includes('for-a'), 3000), 'the first subscription still delivers')
      // one of alice's ends (a long-poll by its answer, a stream by its close): her slot comes back
      if (tr !== 'longpoll') held[0]!.socket.destroy()
      let again = false
      await eventually(async () => {
        const h = await open(t, srv.port, tr, 'c', alice)
        again = h.status() === HELD[tr] && !h.text().includes(':429:')
        if (!again) h.socket.destroy()
        return again
      }, 3000)
      t.true(again, 'a slot came back')
    })
  }
}

test('a token without sub, and API keys, are not counted; maxSubscribersPerUser 0 is no limit', async (t) => {
  const srv = await startStandalone(t, { ...AUTH_SERVER, maxSubscribersPerUser: 1 }, true)
  const { SignJWT } = await import('jose')
  const now = Math.floor(Date.now() / 1000)
  const noSub = await new SignJWT({ iat: now, exp: now + 60, parkline: { subscribe: ['x'] } }).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(AUTH_SERVER.jwtSecret))
  for (let i = 0; i < 3; i++) t.is((await open(t, srv.port, 'eventsource', 'x', noSub)).status(), 200)
  for (let i = 0; i < 3; i++) t.is((await open(t, srv.port, 'eventsource', 'x', AUTH_SERVER.apiKey[0]!)).status(), 200)
  const off = await startStandalone(t, { ...AUTH_SERVER }, true)
  const carol = (await mint(['x'], 60, 'carol')).token
  for (let i = 0; i < 3; i++) t.is((await open(t, off.port, 'eventsource', 'x', carol)).status(), 200)
})
