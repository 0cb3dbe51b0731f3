// Coalescing (option `coalesce`): messages a stream gets in one event-loop turn leave in one write.
// Whatever the batching, every subscriber gets every message once, in order, with its own start.
import test from 'ava'
import { SseClient, info, startServer } from './helpers/server.ts'
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
