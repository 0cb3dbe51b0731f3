// Nchan's browser clients against a real Parkline in Debian's Chromium: the native EventSource and
// NchanSubscriber.js (npm `nchan`) with each of its subscribers, same-origin and cross-origin. The
// "network" drops are the test proxy cutting every connection; the server never notices first.
import test, { type ExecutionContext } from 'ava'
import { type Browser, launchChromium, openPage, startPageServer, waitLog } from '../helpers/browser.ts'
import { publishedId } from '../helpers/client.ts'
import { publish } from '../helpers/server.ts'

let browser: Browser

test.before(async () => {
  browser = await launchChromium()
})

test.after.always(async () => {
  await browser?.close()
})

type Origin = 'same-origin' | 'cross-origin'

async function pub (base: string, channel: string, body: string): Promise<string> {
  return publishedId((await publish(base, channel, body)).text)
}

const eventSource = test.macro({
  async exec (t: ExecutionContext, origin: Origin) {
    const s = await startPageServer(t)
    const proxy = origin === 'same-origin' ? s.same : s.cross
    const page = await openPage(t, browser, s.pageUrl)
    const url = origin === 'same-origin' ? '/sub/es' : `${s.cross.base}/sub/es`
    const ids = [await pub(s.base, 'es', 'one')]
    await page.evaluate(`(() => {
      const es = new EventSource(${JSON.stringify(url)})
      window.es = es
      window.opens = 0
      es.onopen = () => { window.opens++ }
      es.onmessage = (e) => { window.log.push({ data: e.data, id: e.lastEventId, origin: e.origin }) }
    })()`)
    await page.waitForFunction('window.opens === 1')
    ids.push(await pub(s.base, 'es', 'two'), await pub(s.base, 'es', 'three'))
    await waitLog(page, 3)
    const lastBefore = ids[2]!
    t.true(proxy.dropAll() > 0)
    // published while the stream is down: EventSource reconnects by itself with Last-Event-ID
    ids.push(await pub(s.base, 'es', 'four'), await pub(s.base, 'es', 'five'))
    const log = await waitLog(page, 5)
    await page.waitForTimeout(300)
    const final = await page.evaluate('window.log') as Array<{ data: string, id: string, origin: string }>
    t.deepEqual(final.map((e) => e.data), ['one', 'two', 'three', 'four', 'five'], 'in order, no loss, no duplicate')
    t.deepEqual(final.map((e) => e.id), ids, 'lastEventId equals the publisher\'s id')
    t.is(log[0]!.origin, origin === 'same-origin' ? s.same.base : s.cross.base)
    t.true(await page.evaluate('window.opens') as number >= 2, 'reconnected')
    const resumed = proxy.requests.filter((h) => h.startsWith('GET /sub/es') && /\r\nlast-event-id: /i.test(h))
    t.true(resumed.length >= 1, 'the reconnect carried Last-Event-ID')
    t.is(/\r\nlast-event-id: *([^\r]*)/i.exec(resumed[0]!)![1], lastBefore)
    if (origin === 'cross-origin') t.regex(resumed[0]!, new RegExp(`\\r\\norigin: ${s.same.base}\\r\\n`, 'i'))
  },
  title: (_, origin: Origin) => `native EventSource ${origin}: in order, publisher ids, reconnects with Last-Event-ID`
})

test(eventSource, 'same-origin')
test(eventSource, 'cross-origin')

type NchanKind = 'websocket' | 'eventsource' | 'longpoll' | 'default'

const nchanSubscriber = test.macro({
  async exec (t: ExecutionContext, kind: NchanKind, origin: Origin) {
    const s = await startPageServer(t)
    const proxy = origin === 'same-origin' ? s.same : s.cross
    const page = await openPage(t, browser, s.pageUrl)
    const ch = `ns-${kind}`
    const url = origin === 'same-origin' ? `${s.same.base}/sub/${ch}` : `${s.cross.base}/sub/${ch}`
    const ids: string[] = [await pub(s.base, ch, 'm0')]
    await page.evaluate(`(() => {
      const opt = ${kind === 'default' ? '{}' : JSON.stringify({ subscriber: kind })}
      const sub = new NchanSubscriber(${JSON.stringify(url)}, opt)
      window.sub = sub
      window.transport = null
      sub.on('transportSetup', (o, name) => { window.transport = name })
      sub.on('message', (m, meta) => { window.log.push({ data: m, id: meta.id }) })
      sub.start()
    })()`)
    await waitLog(page, 1)
    ids.push(await pub(s.base, ch, 'm1'))
    await waitLog(page, 2)
    // a dropped connection: every subscriber type must come back without loss or duplicate
    t.true(proxy.dropAll() > 0)
    ids.push(await pub(s.base, ch, 'm2'), await pub(s.base, ch, 'm3'))
    await waitLog(page, 4)
    // stop(), publish, start(): resumes from lastMessageId
    await page.evaluate('window.sub.stop()')
    ids.push(await pub(s.base, ch, 'm4'), await pub(s.base, ch, 'm5'))
    await page.evaluate('window.sub.start()')
    await waitLog(page, 6)
    ids.push(await pub(s.base, ch, 'm6'))
    await waitLog(page, 7)
    await page.waitForTimeout(300) // room for a duplicate to show up
    const log = await page.evaluate('window.log') as Array<{ data: string, id: string }>
    t.deepEqual(log.map((e) => e.data), ['m0', 'm1', 'm2', 'm3', 'm4', 'm5', 'm6'])
    t.deepEqual(log.map((e) => e.id), ids, 'NchanSubscriber sees the publisher\'s ids')
    t.is(await page.evaluate('window.transport'), kind === 'default' ? 'websocket' : kind)
  },
  title: (_, kind: NchanKind, origin: Origin) => `NchanSubscriber.js ${kind} ${origin}: receives, survives a drop and stop()/start() with no loss or duplicate`
})

for (const kind of ['websocket', 'eventsource', 'longpoll', 'default'] as const) {
  for (const origin of ['same-origin', 'cross-origin'] as const) test(nchanSubscriber, kind, origin)
}

test('native WebSocket with websocketDeflate: Chromium negotiates permessage-deflate and gets every message whole, compressed or not', async (t) => {
  const s = await startPageServer(t, { websocketDeflate: true })
  const page = await openPage(t, browser, s.pageUrl)
  const big = JSON.stringify(Array.from({ length: 100 }, (_, i) => ({ id: i, name: `item ${i % 7}` })))
  await page.evaluate(`(() => {
    const ws = new WebSocket(${JSON.stringify(`${s.same.base.replace('http', 'ws')}/sub/wz`)})
    window.opened = false
    ws.onopen = () => { window.opened = true; window.ext = ws.extensions }
    ws.onmessage = (e) => { window.log.push({ data: e.data }) }
  })()`)
  await page.waitForFunction('window.opened === true')
  t.is(await page.evaluate('window.ext'), 'permessage-deflate; server_no_context_takeover')
  await pub(s.base, 'wz', big)
  await pub(s.base, 'wz', 'short')
  await pub(s.base, 'wz', big + big)
  const log = await waitLog(page, 3)
  t.deepEqual(log.map((e) => e.data), [big, 'short', big + big])
  // the proxy saw the browser's offer
  t.true(s.same.requests.some((h) => /\r\nsec-websocket-extensions: permessage-deflate/i.test(h)))
})
