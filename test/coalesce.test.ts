// Coalescing (option `coalesce`): messages a stream gets in one event-loop turn leave in one write.
// Whatever the batching, every subscriber gets every message once, in order, with its own start.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import net from 'node:net'
import test, { type ExecutionContext } from 'ava'
import { SseClient, eventually, freePort, info, startServer } from './helpers/server.ts'
import { RawWs, parseMeta } from './helpers/websocket.ts'
import { coreOf } from '../lib/plugin.ts'

for (const coalesce of [true, false]) {
  test(`coalesce ${coalesce}: bursts published in one turn arrive complete and in order, late joiners included`, async (t) => {
    const { port, base, app } = await startServer(t, { coalesce })
    const core = coreOf(app)
    const early = await SseClient.connect(port, '/sub/co')
    await early.until(() => early.comments.includes(': hi'))
    // three messages in one synchronous turn: one batch for the channel
    for (let i = 0; i < 3; i++) core.publish('co', Buffer.from(`a${i}`), null, null)
    const late = await SseClient.connect(port, '/sub/co', { 'Last-Event-ID': (await early.waitEvents(1))[0]!.id! })
    await late.until(() => late.comments.includes(': hi'))
    for (let i = 0; i < 3; i++) core.publish('co', Buffer.from(`b${i}`), null, null)
    const multi = await SseClient.connect(port, '/sub/co,other')
    for (let i = 0; i < 3; i++) core.publish('co', Buffer.from(`c${i}`), null, null)
    const all = ['a0', 'a1', 'a2', 'b0', 'b1', 'b2', 'c0', 'c1', 'c2']
    t.deepEqual((await early.waitEvents(9)).map((e) => e.data), all)
    t.deepEqual((await late.waitEvents(8)).map((e) => e.data), all.slice(1))
    t.deepEqual((await multi.waitEvents(9)).map((e) => e.data), all)
    t.is((await info(base, 'co')).json!.subscribers, 3)
    t.is(core.stats.delivered[core.transports.findIndex((x) => x.name === 'eventsource')], 9 + 8 + 9)
    early.close(); late.close(); multi.close()
  })
}

for (const coalesce of [true, false]) {
  test(`coalesce ${coalesce}: WebSocket plain and ws+meta subscribers get a turn's burst complete, in order, with their ids`, async (t) => {
    const { port, app } = await startServer(t, { coalesce })
    const core = coreOf(app)
    const plain = await RawWs.connect(port, '/sub/wc')
    const meta = await RawWs.connect(port, '/sub/wc', { 'Sec-WebSocket-Protocol': 'ws+meta.nchan' })
    const ids: string[] = []
    for (let i = 0; i < 5; i++) ids.push(core.publish('wc', Buffer.from(`m${i}`), 'text/plain', null).msg.id)
    const late = await RawWs.connect(port, `/sub/wc?last_event_id=${ids[2]}`)
    for (let i = 5; i < 8; i++) ids.push(core.publish('wc', Buffer.from(`m${i}`), 'text/plain', null).msg.id)
    const all = ids.map((_, i) => `m${i}`)
    t.deepEqual((await plain.waitMessages(8)).map((f) => f.payload.toString()), all)
    const metas = (await meta.waitMessages(8)).map((f) => parseMeta(f.payload))
    t.deepEqual(metas.map((m) => m.body.toString()), all)
    t.deepEqual(metas.map((m) => m.meta.id), ids)
    t.deepEqual((await late.waitMessages(5)).map((f) => f.payload.toString()), all.slice(3))
    plain.close(); meta.close(); late.close()
  })
}

test('one turn over many channels, interleaved, then the next turn: each subscriber gets its own channel\'s messages, in order, once', async (t) => {
  // past the few channels a turn finds by a scan (transports/coalesce.ts SCAN), a map takes over;
  // the second turn reuses the first one's emptied lists
  const { port, app } = await startServer(t, { coalesce: true })
  const core = coreOf(app)
  const n = 20
  const subs: SseClient[] = []
  for (let c = 0; c < n; c++) {
    const s = await SseClient.connect(port, `/sub/many${c}`)
    await s.until(() => s.comments.includes(': hi'))
    subs.push(s)
  }
  const expected: string[][] = subs.map(() => [])
  // channel 15 is found through the map; it is deleted in the second turn after its messages
  // were held, so they are written before its end (Coalescer.release)
  const deleted = 15
  for (const turn of ['t1', 't2']) {
    for (let round = 0; round < 3; round++) {
      for (let c = 0; c < n; c++) {
        // channels in a different order each round, so later rounds find earlier slots
        const ch = (c * 7 + round) % n
        const body = `${turn}-${ch}-${round}`
        core.publish(`many${ch}`, Buffer.from(body), null, null)
        expected[ch]!.push(body)
      }
    }
    if (turn === 't2') core.deleteChannel(core.registry.get(`many${deleted}`)!)
    await new Promise<void>((resolve) => setImmediate(resolve))
  }
  for (let c = 0; c < n; c++) t.deepEqual((await subs[c]!.waitEvents(6)).map((e) => e.data), expected[c])
  await subs[deleted]!.until(() => subs[deleted]!.closed)
  t.deepEqual(subs[deleted]!.events.map((e) => e.data), expected[deleted])
  t.true(subs[deleted]!.comments.some((c) => c.startsWith(':410:')), JSON.stringify(subs[deleted]!.comments))
  t.is(core.stats.delivered[core.transports.findIndex((x) => x.name === 'eventsource')], n * 6)
  for (const s of subs) s.close()
})

test('SSE and WebSocket subscribers of one channel each get their own frames from one turn', async (t) => {
  const { port, app } = await startServer(t)
  const core = coreOf(app)
  const sse = await SseClient.connect(port, '/sub/mix')
  await sse.until(() => sse.comments.includes(': hi'))
  const ws = await RawWs.connect(port, '/sub/mix')
  for (let i = 0; i < 4; i++) core.publish('mix', Buffer.from(`x${i}`), null, null)
  t.deepEqual((await sse.waitEvents(4)).map((e) => e.data), ['x0', 'x1', 'x2', 'x3'])
  t.deepEqual((await ws.waitMessages(4)).map((f) => f.payload.toString()), ['x0', 'x1', 'x2', 'x3'])
  t.false(sse.events.some((e) => e.data.includes('\x81')))
  sse.close(); ws.close()
})

// ---- whatever ends a subscriber in the turn its messages were held for it flushes them first --

test('a DELETE or shutdown in the same turn as the publishes: every held message arrives before the end (SSE, WebSocket)', async (t) => {
  const { port, app } = await startServer(t)
  const core = coreOf(app)
  for (const end of ['delete', 'shutdown'] as const) {
    const ch = 'turn-' + end
    const sse = await SseClient.connect(port, `/sub/${ch}`)
    await sse.until(() => sse.comments.includes(': hi'))
    const ws = await RawWs.connect(port, `/sub/${ch}`)
    await eventually(() => core.registry.get(ch)?.subs.length === 2)
    const before = core.stats.delivered.reduce((a, b) => a + b, 0)
    // one synchronous turn: three publishes held by the coalescers, then the end
    for (let i = 0; i < 3; i++) core.publish(ch, Buffer.from(`${end}${i}`), null, null)
    if (end === 'delete') core.deleteChannel(core.registry.get(ch)!)
    else for (const s of core.registry.get(ch)!.subs.slice()) s.transport.end(s, 503)
    await sse.until(() => sse.closed)
    t.deepEqual(sse.events.map((e) => e.data), [`${end}0`, `${end}1`, `${end}2`])
    t.true(sse.comments.some((c) => c.startsWith(end === 'delete' ? ':410:' : ':503:')), JSON.stringify(sse.comments))
    t.deepEqual((await ws.waitMessages(3)).map((f) => f.payload.toString()), [`${end}0`, `${end}1`, `${end}2`])
    await ws.until(() => ws.closed)
    t.is(core.stats.delivered.reduce((a, b) => a + b, 0) - before, 6)
  }
})

test('a client gone in the turn its messages were held: they are not counted as delivered', async (t) => {
  const { port, app } = await startServer(t)
  const core = coreOf(app)
  const sse = await SseClient.connect(port, '/sub/gone')
  await sse.until(() => sse.comments.includes(': hi'))
  const sub = core.registry.get('gone')!.subs[0]!
  const before = core.stats.delivered.reduce((a, b) => a + b, 0)
  core.publish('gone', Buffer.from('x'), null, null)
  sub.socket.destroy()
  core.unregister(sub)
  t.is(core.stats.delivered.reduce((a, b) => a + b, 0), before)
})

/** POST on one connection and DELETE on another, written in the same instant, `rounds` times. */
async function publishThenDelete (t: ExecutionContext, port: number, rounds: number): Promise<void> {
  let created = 0
  for (let r = 0; r < rounds; r++) {
    const ch = `pd${r}`
    const sse = await SseClient.connect(port, `/sub/${ch}`)
    await sse.until(() => sse.comments.includes(': hi'))
    const a = net.connect(port, '127.0.0.1')
    const b = net.connect(port, '127.0.0.1')
    await Promise.all([once(a, 'connect'), once(b, 'connect')])
    let answer = ''
    a.on('data', (d: Buffer) => { answer += d.toString('latin1') })
    b.on('data', () => {})
    a.write(`POST /pub/${ch} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello`)
    b.write(`DELETE /pub/${ch} HTTP/1.1\r\nHost: x\r\n\r\n`)
    await sse.until(() => sse.closed)
    await eventually(() => answer.includes('\r\n\r\n'))
    if (answer.startsWith('HTTP/1.1 201')) {
      created++
      t.deepEqual(sse.events.map((e) => e.data), ['hello'], `round ${r}: a 201 publish that never arrived`)
    }
    a.destroy()
    b.destroy()
  }
  t.log(`${created} of ${rounds} publishes answered 201 before the delete`)
}

test('POST and DELETE back to back on two connections: every 201 reaches the subscriber (one process)', async (t) => {
  const { port } = await startServer(t)
  await publishThenDelete(t, port, 40)
})

test('POST and DELETE back to back on two connections: every 201 reaches the subscriber (--workers 2)', async (t) => {
  const port = await freePort()
  const proc = spawn(process.execPath, ['bin/parkline.ts', 'serve', '--workers', '2', '--port', String(port), '--host', '127.0.0.1', '--log-level', 'error', '--drain-window', '0'], { stdio: ['ignore', 'ignore', 'inherit'] })
  t.teardown(() => { proc.kill('SIGKILL') })
  t.true(await eventually(async () => {
    try { return (await fetch(`http://127.0.0.1:${port}/health`)).status === 200 } catch { return false }
  }, 20000))
  await publishThenDelete(t, port, 40)
})
