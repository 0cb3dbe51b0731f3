// Coalescing (option `coalesce`): messages a stream gets in one event-loop turn leave in one write.
// Whatever the batching, every subscriber gets every message once, in order, with its own start.
import test from 'ava'
import { SseClient, info, startServer } from './helpers/server.ts'

for (const coalesce of [true, false]) {
  test(`coalesce ${coalesce}: bursts published in one turn arrive complete and in order, late joiners included`, async (t) => {
    const { port, base, app } = await startServer(t, { coalesce })
    const core = app.parkline
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
