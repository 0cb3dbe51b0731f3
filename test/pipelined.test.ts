// Requests pipelined behind a subscriber's request on one connection (lib/pipelined.ts): the
// connection is the subscriber's, so nothing behind it is applied or answered, and the server
// lives on. Node's parser reads every request of a packet before the first one's handler is
// done; answering one behind a stream broke Node's bookkeeping and ended the process.
// The subscriber requests here are the ones Node's parser reads (an SSE request with a header
// twice, chunked, multipart, a long-poll with a header twice), on the standalone server with its
// fast path and without it (Fastify's routes, as embedded).
import net from 'node:net'
import http from 'node:http'
import { once } from 'node:events'
import test from 'ava'
import Fastify from 'fastify'
import parkline, { coreOf } from '../lib/plugin.ts'
import { connectReading, info, publish, rawExchange, startStandalone, until } from './helpers/server.ts'

const FIRST: Record<string, string> = {
  'an SSE stream': 'GET /sub/OWNER HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\nX-Twice: 1\r\nX-Twice: 2\r\n\r\n',
  'a chunked stream': 'GET /sub/OWNER HTTP/1.1\r\nHost: a\r\nTE: chunked\r\nX-Twice: 1\r\nX-Twice: 2\r\n\r\n',
  'a multipart stream': 'GET /sub/OWNER HTTP/1.1\r\nHost: a\r\nAccept: multipart/mixed\r\nX-Twice: 1\r\nX-Twice: 2\r\n\r\n',
  'a parked long-poll': 'GET /sub/OWNER HTTP/1.1\r\nHost: a\r\nX-Twice: 1\r\nX-Twice: 2\r\n\r\n'
}
const NEXT: Record<string, string> = {
  'a publish': 'POST /pub/other HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello',
  'a request for another route': 'GET /nowhere HTTP/1.1\r\nHost: a\r\n\r\n',
  'a status request': 'GET /status HTTP/1.1\r\nHost: a\r\n\r\n',
  'another subscriber': 'GET /sub/other HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n'
}

/** Requests Node's parser answers (or hands to 'upgrade' or 'connect') without our request listener. */
const NEXT_NODE: Record<string, string> = {
  'a request without Host': 'GET /sub/y HTTP/1.1\r\n\r\n',
  'an Expect Node refuses': 'GET /sub/y HTTP/1.1\r\nHost: a\r\nExpect: foo\r\n\r\n',
  'a publish that expects 100-continue': 'POST /pub/other HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 99999999\r\n\r\n',
  'a CONNECT': 'CONNECT a:1 HTTP/1.1\r\nHost: a\r\n\r\n',
  'a WebSocket handshake': 'GET /sub/other HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'
}

for (const fast of [true, false]) {
  for (const [first, head] of Object.entries(FIRST)) {
    test(`${fast ? 'fast path' : 'through Fastify'}: behind ${first}, nothing is applied or answered and the server lives on`, async (t) => {
      const s = await startStandalone(t, {}, fast)
      const core = coreOf(s.app)
      const nexts = { ...NEXT, ...(first === 'a parked long-poll' ? {} : NEXT_NODE) }
      for (const [i, [what, next]] of Object.entries(nexts).entries()) {
        // a channel of its own each time: the poll parks (nothing published there yet)
        const owner = `owner-${i}`
        const { socket, text, closed } = await connectReading(s.port, { allowHalfOpen: true })
        socket.write(head.replace('OWNER', owner) + next)
        if (first === 'a parked long-poll') {
          // that poll gets 400 and the connection closes (§5), or, through Fastify (which parks it
          // only after the next request was dispatched), it stays parked and answers its message
          await until(() => closed() || core.table.size === 1)
          if (closed()) {
            t.regex(text(), /^HTTP\/1\.1 400 /, what)
            t.is(text().match(/HTTP\/1\.1/g)?.length, 1, `${what}: one answer`)
          } else {
            t.false(fast, `${what}: the fast path rejects the poll`)
            await publish(s.base, owner, 'for the poll')
            t.true(await until(() => text().includes('for the poll')), `${what}: the poll answered ${JSON.stringify(text())}`)
            // the poll's answer first; a route of Fastify's that answered behind it, after it, in order
            t.true(text().startsWith('HTTP/1.1 200 OK\r\n'), what)
            t.true(text().indexOf('for the poll') < text().indexOf('HTTP/1.1', 1) || text().indexOf('HTTP/1.1', 1) === -1, what)
          }
        } else if (!fast && (what === 'a CONNECT' || what === 'a WebSocket handshake') && await until(() => closed() || core.table.size >= 1) && closed()) {
          // through Fastify the stream's request is still being handled when Node hands the tunnel
          // request over: no answer to it could go out in order, so that connection goes
          t.true((text().match(/HTTP\/1\.1/g)?.length ?? 0) <= 1, `${what}: ${JSON.stringify(text())}`)
        } else {
          // the stream is intact: its head, then the channel's next message, nothing else
          t.true(await until(() => core.table.size >= 1 && text().includes('\r\n\r\n')), what)
          await publish(s.base, owner, 'for the stream')
          t.true(await until(() => text().includes('for the stream')), `${what}: ${JSON.stringify(text())}`)
          t.is(text().match(/HTTP\/1\.1/g)?.length, 1, `${what}: one answer`)
          t.false(closed(), what)
        }
        // nothing behind it was applied: no message, no second subscriber
        t.is((await info(s.base, 'other')).status, 404, `${what}: not published`)
        t.true(core.table.size <= 1, `${what}: one subscriber at most`)
        socket.destroy()
        t.true(await until(() => core.table.size === 0), `${what}: gone with its client`)
      }
      // and the server answers everyone else, on new connections too (Node's parsers are whole)
      t.is((await publish(s.base, 'after', 'x')).status, 202)
      for (let k = 0; k < 3; k++) {
        const text = await rawExchange(s.port, 'GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n', { ms: 3000 })
        t.regex(text, /^HTTP\/1\.1 200 /, `health on a new connection ${k}`)
      }
    })
  }
}

test('an upgrade pipelined behind a request still being answered: that connection goes, the server lives', async (t) => {
  for (const fast of [true, false]) {
    const s = await startStandalone(t, {}, fast)
    const socket = net.connect(s.port, '127.0.0.1')
    socket.on('error', () => {})
    await once(socket, 'connect')
    // /status is Fastify's (its hooks wait a turn): its answer is still pending when the upgrade is read
    socket.write('GET /status HTTP/1.1\r\nHost: a\r\n\r\nGET /sub/ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')
    const closed = await Promise.race([once(socket, 'close').then(() => true), new Promise((resolve) => setTimeout(() => resolve(false), 3000))])
    t.true(closed, `${fast ? 'fast' : 'Fastify'}: closed`)
    t.is((await fetch(`${s.base}/health`)).status, 200)
  }
})

test('answered without switching protocols (CONNECT, a refused WebSocket handshake): nothing is kept once the client leaves', async (t) => {
  const s = await startStandalone(t, {}, true)
  const connections = (): Promise<number> => new Promise((resolve) => { s.app.server.getConnections((_err, n) => { resolve(n) }) })
  for (const [what, bytes, status] of [
    ['CONNECT', 'CONNECT a:1 HTTP/1.1\r\nHost: a\r\n\r\n', 405],
    ['a WebSocket handshake for a bad channel id', `GET /sub/${'x'.repeat(1100)} HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`, 403]
  ] as const) {
    // a client that sends more after the answer, then leaves: bytes nobody read kept the socket open
    const socket = net.connect({ port: s.port, host: '127.0.0.1', allowHalfOpen: true })
    socket.on('error', () => {})
    await once(socket, 'connect')
    let text = ''
    socket.on('data', (d: Buffer) => { text += d.toString('latin1') })
    socket.write(bytes)
    t.true(await until(() => text.includes('\r\n\r\n')), what)
    t.regex(text, new RegExp(`^HTTP/1\\.1 ${status} `), what)
    socket.write('GET /sub/more HTTP/1.1\r\nHost: a\r\n\r\n')
    await new Promise((resolve) => setTimeout(resolve, 50))
    socket.destroy()
    const end = Date.now() + 3000
    while (await connections() > 0 && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 20))
    t.is(await connections(), 0, `${what}: the server's socket is gone`)
  }
})

test('a subscriber request pipelined behind a request still being answered: served once that answer is out, and nothing kept after', async (t) => {
  for (const fast of [true, false]) {
    const s = await startStandalone(t, {}, fast)
    const core = coreOf(s.app)
    const { socket, text } = await connectReading(s.port)
    // /health is Fastify's (its hooks wait a turn): the stream's response is queued behind it
    socket.write('GET /health HTTP/1.1\r\nHost: a\r\n\r\nGET /sub/queued,other HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n')
    t.true(await until(() => core.table.size === 1 && text().includes(': hi')), `${fast}: ${JSON.stringify(text())}`)
    t.regex(text(), /^HTTP\/1\.1 200 OK\r\n[\s\S]*HTTP\/1\.1 200 OK\r\nContent-Type: text\/event-stream/, 'the health answer, then the stream')
    await publish(s.base, 'queued', 'after its turn')
    t.true(await until(() => text().includes('after its turn')))
    socket.destroy()
    t.true(await until(() => core.table.size === 0 && core.registry.size <= 1), `${fast}: nothing kept (channels ${core.registry.size})`)
  }
})

for (const fast of [true, false]) {
  test(`${fast ? 'fast path' : 'through Fastify'}: behind a stream refused at the subscriber limit, nothing is applied or answered`, async (t) => {
    const s = await startStandalone(t, { maxSubscribers: 1 }, fast)
    const core = coreOf(s.app)
    // the one subscriber allowed
    const holder = net.connect(s.port, '127.0.0.1')
    holder.on('error', () => {})
    await once(holder, 'connect')
    holder.write('GET /sub/held HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n')
    await once(holder, 'data')
    for (const [first, head] of Object.entries(FIRST)) {
      if (first === 'a parked long-poll') continue
      const { socket, text, closed } = await connectReading(s.port)
      socket.write(head.replace('OWNER', 'refused') + NEXT['a publish'])
      // refused (SSE: 200 and `:503:`; the others: 503), and the server closes its side
      t.true(await until(closed), `${first}: closed ${JSON.stringify(text())}`)
      t.regex(text(), first === 'an SSE stream' ? /^HTTP\/1\.1 200 OK\r\n[\s\S]*:503: / : /^HTTP\/1\.1 503 /, first)
      t.is(text().match(/HTTP\/1\.1/g)?.length, 1, `${first}: one answer`)
      t.is((await info(s.base, 'other')).status, 404, `${first}: the publish behind it is not applied`)
    }
    t.is(core.stats.refused, 3)
    holder.destroy()
  })
}

for (const fast of [true, false]) {
  test(`${fast ? 'fast path' : 'through Fastify'}: half a request cut by the packet behind a parked long-poll Node's parser read is not read as a request of its own once the poll is answered (no desync)`, async (t) => {
    const s = await startStandalone(t, {}, fast)
    const core = coreOf(s.app)
    t.is((await publish(s.base, 'victim', 'keep me')).status, 202)
    const { socket, text, closed } = await connectReading(s.port, { allowHalfOpen: true })
    // a poll Node's parser reads (a header twice), and the head of a next request, cut in its
    // X-Pad value: to Node's parser, whatever comes next is that header's value
    socket.write('GET /sub/owner HTTP/1.1\r\nHost: a\r\nX-Twice: 1\r\nX-Twice: 2\r\n\r\nGET /sub/owner HTTP/1.1\r\nHost: a\r\nX-Pad: ')
    t.true(await until(() => closed() || core.table.size === 1))
    // the poll's parser is let go of after its turn
    await new Promise((resolve) => setTimeout(resolve, 50))
    if (!closed()) {
      await publish(s.base, 'owner', 'for the poll')
      await until(() => closed() || text().includes('for the poll'))
    }
    // the rest of the X-Pad value, which reads as a request if a fresh parser starts there
    if (!socket.destroyed) socket.write('DELETE /pub/victim HTTP/1.1\r\nHost: a\r\n\r\n')
    await new Promise((resolve) => setTimeout(resolve, 300))
    const v = await info(s.base, 'victim')
    t.is(v.status, 200, `the channel was deleted by the tail of a header: ${JSON.stringify(text())}`)
    // the poll got its message (or 400 for the bytes behind it, §5), and the connection closed
    t.true(/^HTTP\/1\.1 (200 OK\r\n[^]*for the poll|400 )/.test(text()), JSON.stringify(text()))
    t.true(await until(() => closed()), `the connection closes: ${JSON.stringify(text())}`)
    socket.destroy()
  })
}

test('a request Node\'s parser rejects, arriving behind a long-poll just as a waiting access check admits and parks it, ends that connection: nothing after the poll\'s answer is read as a request (no desync)', async (t) => {
  // the authorize app holds each answer until the test sends the bad bytes right behind it, so
  // they reach the server in the turn the poll is let go of by Node's parser (a race: tried 8 times)
  let pending: http.ServerResponse | null = null
  const app = http.createServer((_req, res) => { pending = res })
  app.listen(0, '127.0.0.1')
  await once(app, 'listening')
  t.teardown(() => { app.closeAllConnections(); app.close() })
  const s = await startStandalone(t, { authorizeUrl: `http://127.0.0.1:${(app.address() as net.AddressInfo).port}/auth`, authorizeCacheTtl: 0 }, true)
  for (let i = 0; i < 8; i++) {
    const victim = `victim-${i}`
    t.is((await publish(s.base, victim, 'keep me')).status, 202)
    const { socket, text, closed } = await connectReading(s.port, { allowHalfOpen: true })
    pending = null
    socket.write(`GET /sub/owner-${i} HTTP/1.1\r\nHost: a\r\nX-Twice: 1\r\nX-Twice: 2\r\n\r\n`)
    t.true(await until(() => pending !== null), 'the authorize request came')
    ;(pending as unknown as http.ServerResponse).end('ok')
    // Content-Length with chunked: Node's parser refuses it
    socket.write('POST /pub/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 42\r\n\r\n')
    await new Promise((resolve) => setTimeout(resolve, 150))
    if (!closed()) {
      await publish(s.base, `owner-${i}`, 'for the poll')
      await until(() => closed() || text().includes('for the poll'))
    }
    if (!socket.destroyed) socket.write(`DELETE /pub/${victim} HTTP/1.1\r\nHost: a\r\n\r\n`)
    await new Promise((resolve) => setTimeout(resolve, 200))
    t.is((await info(s.base, victim)).status, 200, `try ${i}: deleted by bytes sent after the poll's answer: ${JSON.stringify(text())}`)
    socket.destroy()
  }
})

test('embedded: a poll answered in the very turn it parked, with half a next request read behind it, ends its connection after the answer: the rest is not read as a request (no desync)', async (t) => {
  const app = Fastify({ logger: false })
  await app.register(parkline, { logLevel: 'silent' })
  // the host's own hook answers the poll from an immediate queued before the poll parks, so the
  // answer is written before Node's parser is let go of (transports/detach.ts, reattachSocket)
  app.addHook('onRequest', (req, _reply, done) => {
    if (req.url === '/sub/owner') setImmediate(() => { void app.parkline.publish('owner', 'for the poll') })
    done()
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as net.AddressInfo).port
  const base = `http://127.0.0.1:${port}`
  await app.parkline.publish('victim', 'keep me')
  const { socket, text, closed } = await connectReading(port, { allowHalfOpen: true })
  socket.write('GET /sub/owner HTTP/1.1\r\nHost: a\r\n\r\nGET /sub/owner HTTP/1.1\r\nHost: a\r\nX-Pad: ')
  t.true(await until(() => closed() || text().includes('for the poll')))
  if (!socket.destroyed) socket.write('DELETE /pub/victim HTTP/1.1\r\nHost: a\r\n\r\n')
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.is((await info(base, 'victim')).status, 200, `the channel was deleted by the tail of a header: ${JSON.stringify(text())}`)
  t.regex(text(), /^HTTP\/1\.1 200 OK\r\n[^]*for the poll$/, 'the poll got its message, and nothing after it')
  t.true(await until(() => closed()), `the connection closes: ${JSON.stringify(text())}`)
  socket.destroy()
})
