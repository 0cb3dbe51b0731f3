// PROTOCOL.md §10 rules and §5 status answers: abort storms, slowloris, bytes on a parked
// long-poll, and a 2 000-subscriber fan-out. Serial: these tests load the process and check
// global counts.
import test from 'ava'
import net from 'node:net'
import { once } from 'node:events'
import type { FastifyInstance } from 'fastify'
import { SseClient, eventually, info, parseResponse, publish, startServer, startStandalone } from './helpers/server.ts'
import { coreOf } from '../lib/plugin.ts'

const H = 'Host: 127.0.0.1\r\n'

async function connect (port: number): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => {})
  await once(socket, 'connect')
  return socket
}

/** Resolve when `socket` has received `text` (or closed, or 5 s passed). */
async function receive (socket: net.Socket, text: string): Promise<string> {
  let got = ''
  return await new Promise<string>((resolve) => {
    const timer = setTimeout(() => resolve(got), 5000)
    socket.on('data', (d: Buffer) => {
      got += d.toString('latin1')
      if (got.includes(text)) { clearTimeout(timer); resolve(got) }
    })
    socket.on('close', () => { clearTimeout(timer); resolve(got) })
  })
}

/** Sockets the server still has open (its own count, which detached SSE sockets are part of). */
async function serverConnections (app: FastifyInstance): Promise<number> {
  return await new Promise((resolve, reject) => app.server.getConnections((err, n) => err === null || err === undefined ? resolve(n) : reject(err)))
}

/** End a connection one of two ways: FIN, or RST (an abrupt reset). */
function abort (socket: net.Socket, i: number): void {
  if (i % 2 === 0) socket.destroy()
  else socket.resetAndDestroy()
}

type Kind = 'sse-before-head' | 'sse-after-head' | 'parked-longpoll' | 'half-request'
const KINDS: Kind[] = ['sse-before-head', 'sse-after-head', 'parked-longpoll', 'half-request']
const HALF_REQUESTS = [
  `GET /sub/storm HTTP/1.1\r\n${H}Acc`,
  'GET /sub/sto',
  `POST /pub/storm-pub HTTP/1.1\r\n${H}Content-Length: 100\r\n\r\nonly part of the body`,
  `POST /pub/storm-pub HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n10\r\nhalf`
]

/** One batch of `n` connect-then-abort cycles of one kind; false if a stage never happened. */
async function batch (app: FastifyInstance, port: number, kind: Kind, n: number, round: number): Promise<boolean> {
  const sockets = await Promise.all(Array.from({ length: n }, async () => await connect(port)))
  let ok = true
  if (kind === 'sse-before-head') {
    // the request and the abort in the same tick: the server may see either first
    sockets.forEach((s, i) => { s.write(`GET /sub/storm HTTP/1.1\r\n${H}Accept: text/event-stream\r\n\r\n`); abort(s, i) })
    return ok
  }
  if (kind === 'sse-after-head') {
    const heads = sockets.map(async (s) => await receive(s, ': hi\n\n'))
    for (const s of sockets) s.write(`GET /sub/storm HTTP/1.1\r\n${H}Accept: text/event-stream\r\n\r\n`)
    ok = (await Promise.all(heads)).every((text) => text.includes(': hi\n\n'))
  } else if (kind === 'parked-longpoll') {
    // earlier aborts are still being closed by the server: start from a clean count
    ok = await eventually(() => coreOf(app).table.size === 0, 5000)
    for (const s of sockets) s.write(`GET /sub/storm HTTP/1.1\r\n${H}\r\n`)
    // every poll is parked (counted) before it is aborted
    ok = ok && await eventually(() => coreOf(app).table.size === n, 5000)
  } else {
    sockets.forEach((s, i) => s.write(HALF_REQUESTS[(i + round) % HALF_REQUESTS.length]!))
    // wait until the server has read the bytes: it answers nothing, so give it a turn of the loop
    await new Promise((resolve) => setImmediate(resolve))
  }
  sockets.forEach((s, i) => abort(s, i))
  return ok
}

test.serial('abort storm: 2 000 connect-then-abort cycles, 50 at a time, leave the counts at 0 and the channel working', async (t) => {
  const { app, base, port } = await startServer(t)
  let cycles = 0
  const failed: string[] = []
  for (let round = 0; cycles < 2000; round++) {
    const kind = KINDS[round % KINDS.length]!
    if (!await batch(app, port, kind, 50, round)) failed.push(`${round} ${kind}`)
    cycles += 50
  }
  t.is(cycles, 2000)
  t.deepEqual(failed, [])
  // once the server has seen every close, nothing may still be counted
  t.true(await eventually(async () => await serverConnections(app) === 0, 10000))
  t.is(coreOf(app).table.size, 0)
  t.deepEqual(coreOf(app).table.counts, coreOf(app).table.counts.map(() => 0))
  const i = await info(base, 'storm')
  t.true(i.status === 404 || i.json!.subscribers === 0)
  // the half POSTs queued nothing
  const p = await info(base, 'storm-pub')
  t.true(p.status === 404 || p.json!.messages === 0)
  // the channel still works, and counts are exact again
  const sse = await SseClient.connect(port, '/sub/storm')
  t.is(sse.status, 200)
  t.is((await info(base, 'storm')).json!.subscribers, 1)
  t.is((await publish(base, 'storm', 'after the storm')).status, 201)
  await sse.waitEvents(1)
  t.is(sse.events[0]!.data, 'after the storm')
  const lp = await fetch(`${base}/sub/storm`)
  t.is(await lp.text(), 'after the storm')
  sse.close()
  t.true(await eventually(() => coreOf(app).table.size === 0))
})

test.serial('slowloris: 200 connections sending 1 header byte a second do not stop delivery or new subscribers', async (t) => {
  const { app, base, port } = await startServer(t)
  const sse = await SseClient.connect(port, '/sub/slow')
  t.is(sse.status, 200)
  const request = `GET /sub/slow HTTP/1.1\r\n${H}X-Slow: ${'s'.repeat(40)}\r\n`
  const slow = await Promise.all(Array.from({ length: 200 }, async () => await connect(port)))
  let closedEarly = 0
  for (const s of slow) s.on('close', () => { closedEarly++ })
  let sent = 0
  const late: SseClient[] = []
  // 4 rounds: one byte per connection, then a publish, a new subscriber and a long-poll
  for (let round = 0; round < 4; round++) {
    for (const s of slow) s.write(request[sent]!)
    sent++
    const r = await publish(base, 'slow', `m${round}`)
    t.is(r.status, 201)
    await sse.waitEvents(round + 1)
    t.is(sse.events[round]!.data, `m${round}`)
    const c = await SseClient.connect(port, '/sub/slow')
    t.is(c.status, 200)
    late.push(c)
    const lp = await fetch(`${base}/sub/slow`)
    t.is(await lp.text(), 'm0')
    await new Promise((resolve) => setTimeout(resolve, 1000))
  }
  // the slow connections were not closed and are not subscribers
  t.is(closedEarly, 0)
  t.is(coreOf(app).table.size, 1 + late.length)
  t.is((await info(base, 'slow')).json!.subscribers, 1 + late.length)
  // every late subscriber got the replay and then the live message
  t.is((await publish(base, 'slow', 'last')).status, 201)
  for (const [i, c] of late.entries()) {
    await c.waitEvents(5)
    t.deepEqual(c.events.map((e) => e.data), ['m0', 'm1', 'm2', 'm3', 'last'], `late subscriber ${i}`)
    c.close()
  }
  await sse.waitEvents(5)
  t.deepEqual(sse.events.map((e) => e.data), ['m0', 'm1', 'm2', 'm3', 'last'])
  sse.close()
  for (const s of slow) s.destroy()
})

test.serial('a header section not completed within the headers timeout is closed', async (t) => {
  const { port } = await startServer(t, { headersTimeout: 1 })
  const s = await connect(port)
  let closed = false
  let text = ''
  s.on('data', (d: Buffer) => { text += d.toString('latin1') })
  const done = new Promise<void>((resolve) => s.on('close', () => { closed = true; resolve() }))
  s.write('GET /sub/x HTTP/1.1\r\n')
  // a byte a second would keep nothing alive past the deadline; stop after 8 s whatever happens
  for (let i = 0; i < 8 && !closed; i++) {
    s.write('X')
    await Promise.race([done, new Promise((resolve) => setTimeout(resolve, 1000))])
  }
  s.destroy()
  t.true(closed)
  t.true(text === '' || /^HTTP\/1\.1 408 /.test(text))
})

test('an idle keep-alive connection stays keepAliveTimeout seconds (75 by default, past Node\'s 5, 6 on its own path, and a proxy\'s 60), said in Keep-Alive on both request paths; then it is closed', async (t) => {
  t.timeout(30_000)
  const idleFor = async (port: number, request: string, seconds: number): Promise<{ first: string, open: boolean, second: string }> => {
    const s = await connect(port)
    let closed = false
    s.on('close', () => { closed = true })
    s.write(request)
    const first = await receive(s, '\r\n\r\n')
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000))
    const open = !closed
    let second = ''
    if (open) {
      s.write(request)
      second = await receive(s, '\r\n\r\n')
    }
    s.destroy()
    return { first, open, second }
  }
  const raw = 'POST /pub/ka HTTP/1.1\r\n' + H + 'Content-Length: 1\r\n\r\nx'
  const node = 'GET /not-parkline HTTP/1.1\r\n' + H + '\r\n'
  const byDefault = await startStandalone(t, {}, true)
  // the publish goes on Parkline's raw path, the 404 through Node's server and Fastify (Node keeps
  // its connections a second past the timeout it announces: 6 s with its default)
  const [a, b] = await Promise.all([idleFor(byDefault.port, raw, 8), idleFor(byDefault.port, node, 8)])
  t.is(coreOf(byDefault.app).stats.rawRequests, 2, 'the publishes went on the raw path')
  for (const [name, r] of [['raw path', a], ['Node\'s path', b]] as const) {
    t.regex(r.first, /\r\nKeep-Alive: timeout=75\r\n/, name)
    t.true(r.open, `${name}: open after 8 s idle`)
    t.regex(r.second, /^HTTP\/1\.1 (202|404) /, `${name}: the connection serves the next request`)
  }
  const short = await startStandalone(t, { keepAliveTimeout: 1 }, true)
  const [c, d] = await Promise.all([idleFor(short.port, raw, 4), idleFor(short.port, node, 4)])
  for (const [name, r] of [['raw path', c], ['Node\'s path', d]] as const) {
    t.regex(r.first, /\r\nKeep-Alive: timeout=1\r\n/, name)
    t.false(r.open, `${name}: closed once idle past keepAliveTimeout 1`)
  }
})

test('a request whose route reads no body cannot hold its connection by trickling one: the whole request has headersTimeout + 2 authorizeTimeout + bodyTimeout + 1 s', async (t) => {
  t.timeout(40_000)
  // 7 s in all
  const { port } = await startStandalone(t, { headersTimeout: 2, bodyTimeout: 2, authorizeTimeout: 1 }, true)
  const heads = ['OPTIONS /pub/x', 'OPTIONS /sub/x', 'GET /health', 'GET /status', 'POST /not-parkline', 'GET /pub/x']
  const cases = heads.flatMap((head) => ['Content-Length: 1000000000\r\n', 'Transfer-Encoding: chunked\r\n'].map((framing) => ({ head, framing })))
  const results = await Promise.all(cases.map(async ({ head, framing }) => {
    const s = await connect(port)
    let closed = false
    s.on('close', () => { closed = true })
    const answer = receive(s, '\r\n\r\n')
    // the head, then a body the client trickles, a byte a second (the answer does not wait for it)
    s.write(`${head} HTTP/1.1\r\n${H}${framing}\r\n${framing.startsWith('Content') ? 'x' : '1\r\nx\r\n'}`)
    const text = await answer
    const drip = setInterval(() => { if (!closed) s.write(framing.startsWith('Content') ? 'x' : '1\r\nx\r\n') }, 1000)
    const ended = await eventually(() => closed, 15_000)
    clearInterval(drip)
    s.destroy()
    return { label: `${head} (${framing.trim()})`, text, ended }
  }))
  for (const r of results) {
    t.regex(r.text, /^HTTP\/1\.1 \d{3} /, r.label)
    t.true(r.ended, `${r.label}: the server ended the connection`)
  }
  // a body that came whole with its request keeps the connection (Node drops it)
  const s = await connect(port)
  const first = receive(s, '\r\n\r\n')
  s.write(`GET /health HTTP/1.1\r\n${H}Content-Length: 2\r\n\r\nab`)
  t.regex(await first, /^HTTP\/1\.1 200 [^]*\r\nConnection: keep-alive\r\n/)
  const second = receive(s, 'ok')
  s.write(`GET /health HTTP/1.1\r\n${H}\r\n`)
  t.regex(await second, /^HTTP\/1\.1 200 /)
  s.destroy()
})

test.serial('bytes arriving on a connection whose long-poll is parked: that poll gets 400, then close', async (t) => {
  const { app, base, port } = await startServer(t)
  const extras = [
    `GET /sub/parked HTTP/1.1\r\n${H}\r\n`, // a pipelined request to the subscriber
    `POST /pub/parked-other HTTP/1.1\r\n${H}Content-Length: 1\r\n\r\nq`, // … or the publisher
    'GET /sub/parked HT', // half a request the parser keeps waiting on
    'x' // one stray byte
  ]
  for (const extra of extras) {
    const s = await connect(port)
    let closed = false
    s.on('close', () => { closed = true })
    const answer = receive(s, '\r\n\r\n')
    s.write(`GET /sub/parked HTTP/1.1\r\n${H}\r\n`)
    t.true(await eventually(() => coreOf(app).table.size === 1), JSON.stringify(extra))
    t.is((await info(base, 'parked')).json!.subscribers, 1)
    s.write(extra)
    const text = await answer
    await eventually(() => closed, 5000)
    t.regex(text, /^HTTP\/1\.1 400 /, JSON.stringify(extra))
    t.is(parseResponse(text).headers.connection, 'close', JSON.stringify(extra))
    t.true(closed, JSON.stringify(extra))
    t.is(coreOf(app).table.size, 0)
    s.destroy()
  }
  // nothing was published by the pipelined POST, and the channel still works
  t.is((await info(base, 'parked')).json?.subscribers ?? 0, 0)
  const poll = fetch(`${base}/sub/parked`)
  t.true(await eventually(() => coreOf(app).table.size === 1))
  t.is((await publish(base, 'parked', 'fine')).status, 201)
  t.is(await (await poll).text(), 'fine')
})

test.serial('a parked long-poll that asked for Connection: close, answered, then reset by its client before it closes: the server lives on', async (t) => {
  // long-polls read by Node's parser (the fast path off), released from Node's HTTP objects while
  // parked (transports/longpoll.ts release), then answered raw
  const { app, base, port } = await startStandalone(t, {}, false)
  for (let i = 0; i < 5; i++) {
    const s = await connect(port)
    const got = new Promise<void>((resolve) => {
      let text = ''
      s.on('data', (d: Buffer) => {
        text += d.toString('latin1')
        // the whole answer is here and the server's FIN is on its way: a reset, not our FIN
        if (text.endsWith('m' + i)) { s.resetAndDestroy(); resolve() }
      })
    })
    s.write(`GET /sub/lp-reset-${i} HTTP/1.1\r\n${H}Connection: close\r\n\r\n`)
    t.true(await eventually(() => coreOf(app).table.size === 1))
    t.is((await publish(base, `lp-reset-${i}`, 'm' + i)).status, 201)
    await got
  }
  // a reset that found no 'error' listener would have ended this process; the server still answers
  const r = await fetch(`${base}/sub/lp-reset-0`)
  t.is(r.status, 200)
  t.is(await r.text(), 'm0')
})

test.serial('fan-out: 2 000 SSE subscribers, 20 messages: info shows 2000, every POST is 201, 40 000 events in order', async (t) => {
  const { app, base, port } = await startServer(t)
  const clients: SseClient[] = []
  for (let i = 0; i < 2000; i += 200) {
    const batch = await Promise.all(Array.from({ length: 200 }, async () => await SseClient.connect(port, '/sub/fan')))
    clients.push(...batch)
  }
  t.is(clients.length, 2000)
  t.true(clients.every((c) => c.status === 200))
  t.is((await info(base, 'fan')).json!.subscribers, 2000)
  t.is(coreOf(app).table.size, 2000)
  const ids: string[] = []
  for (let m = 0; m < 20; m++) {
    const r = await publish(base, 'fan', `message ${m}`)
    t.is(r.status, 201)
    ids.push(/last message id: (\d+:\d+)$/.exec(r.text)![1]!)
  }
  const expected = ids.map((id, m) => ({ id, data: `message ${m}` }))
  await Promise.all(clients.map(async (c) => await c.waitEvents(20, 20000)))
  let total = 0
  let inOrder = 0
  for (const c of clients) {
    total += c.events.length
    if (JSON.stringify(c.events.map((e) => ({ id: e.id, data: e.data }))) === JSON.stringify(expected)) inOrder++
  }
  t.is(total, 40000)
  t.is(inOrder, 2000)
  for (const c of clients) c.close()
  t.true(await eventually(() => coreOf(app).table.size === 0, 5000))
})
