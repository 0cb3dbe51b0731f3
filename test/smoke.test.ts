// The README's walk-through, end to end: publish, SSE, long-poll, info.
import test from 'ava'
import { SseClient, info, publish, startServer } from './helpers/server.ts'

test('publish without subscribers is 202, with an SSE subscriber 201, and the event arrives', async (t) => {
  const { base, port } = await startServer(t)
  const first = await publish(base, 'smoke', 'hello')
  t.is(first.status, 202)
  t.regex(first.text, /^queued messages: 1\r\nlast requested: -1 sec\. ago\r\nactive subscribers: 0\r\nlast message id: \d+:0$/)
  const sse = await SseClient.connect(port, '/sub/smoke')
  t.is(sse.status, 200)
  t.is(sse.headers['content-type'], 'text/event-stream; charset=utf-8')
  await sse.waitEvents(1)
  t.is(sse.events[0]!.data, 'hello')
  const second = await publish(base, 'smoke', 'world')
  t.is(second.status, 201)
  await sse.waitEvents(2)
  t.is(sse.events[1]!.data, 'world')
  const i = await info(base, 'smoke')
  t.is(i.json!.subscribers, 1)
  t.is(i.json!.messages, 2)
  sse.close()
})

test('long-poll gets the oldest message, then walks the buffer with If-Modified-Since/If-None-Match', async (t) => {
  const { base } = await startServer(t)
  await publish(base, 'lp', 'one', { 'Content-Type': 'text/plain' })
  await publish(base, 'lp', 'two')
  const r1 = await fetch(`${base}/sub/lp`)
  t.is(r1.status, 200)
  t.is(await r1.text(), 'one')
  t.is(r1.headers.get('content-type'), 'text/plain')
  const r2 = await fetch(`${base}/sub/lp`, { headers: { 'If-Modified-Since': r1.headers.get('last-modified')!, 'If-None-Match': r1.headers.get('etag')! } })
  t.is(await r2.text(), 'two')
  t.is(r2.headers.get('content-type'), null)
  const parked = fetch(`${base}/sub/lp`, { headers: { 'If-Modified-Since': r2.headers.get('last-modified')!, 'If-None-Match': r2.headers.get('etag')! } })
  // the publish that releases a parked poll answers 201 (the poll counts once parked)
  let status = 0
  for (let i = 0; i < 100 && status !== 201; i++) {
    const inf = await info(base, 'lp')
    if (inf.json!.subscribers === 1) status = (await publish(base, 'lp', 'three')).status
    else await new Promise((resolve) => setTimeout(resolve, 10))
  }
  t.is(status, 201)
  const r3 = await parked
  t.is(await r3.text(), 'three')
})
