// The Parkline client (client/dist, the committed browser build) in Debian's Chromium against a real
// Parkline: each transport cross-origin, run-time fallback behind the test proxy (WebSocket blocked
// → EventSource; EventSource buffered → long-poll; a muted WebSocket caught by the probe), the
// cursor kept in localStorage across a reload, and the `parkline serve --demo` page, screenshotted.
import { spawn } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import path from 'node:path'
import test, { type ExecutionContext } from 'ava'
import type { Page } from 'playwright-core'
import { OUTPUT, type Browser, launchChromium, openPage, startPageServer, waitLog } from '../helpers/browser.ts'
import { publishedId } from '../helpers/client.ts'
import { publish } from '../helpers/server.ts'

let browser: Browser

test.before(async () => {
  browser = await launchChromium()
})

test.after.always(async () => {
  await browser?.close()
})

async function pub (base: string, channel: string, body: string): Promise<string> {
  return publishedId((await publish(base, channel, body)).text)
}

interface Entry { kind: string, data?: string, id?: string, channel?: string, transport?: string, requested?: string, reason?: string }

/** Start a client in the page; every event lands in window.log (messages) and window.events (all). */
async function startClient (page: Page, url: string, options: Record<string, unknown>): Promise<void> {
  await page.evaluate(`(async () => {
    const { Parkline } = await import('/t/parkline.js')
    window.events = []
    const c = new Parkline(${JSON.stringify(url)}, ${JSON.stringify({ minDelay: 50, maxDelay: 1000, connectTimeout: 1000, ...options })})
    window.client = c
    c.on('message', (data, m) => { const e = { kind: 'message', data, id: m.id, channel: m.channel, transport: m.transport }; window.log.push(e); window.events.push(e) })
    c.on('gap', (g) => window.events.push({ kind: 'gap', requested: g.requested, id: g.resumed }))
    c.on('transport', (name) => window.events.push({ kind: 'transport', transport: name }))
    c.on('retry', (r) => window.events.push({ kind: 'retry', transport: r.next, reason: r.reason }))
    c.start()
  })()`)
}

async function events (page: Page): Promise<Entry[]> {
  return await page.evaluate('window.events') as Entry[]
}

async function waitTransport (page: Page, name: string, ms = 8000): Promise<void> {
  try {
    await page.waitForFunction(`window.client.connected && window.client.transport === ${JSON.stringify(name)}`, undefined, { timeout: ms, polling: 50 })
  } catch {
    throw new Error(`not connected on ${name} after ${ms} ms; events: ${JSON.stringify(await events(page))}`)
  }
}

const crossOrigin = test.macro({
  async exec (t: ExecutionContext, transport: string) {
    const s = await startPageServer(t)
    const page = await openPage(t, browser, s.pageUrl)
    const ids = [await pub(s.base, 'x', 'one')]
    await startClient(page, `${s.cross.base}/sub/x,y`, { transports: [transport] })
    await waitTransport(page, transport)
    ids.push(await pub(s.base, 'y', 'two'))
    await waitLog(page, 2)
    s.cross.dropAll()
    ids.push(await pub(s.base, 'x', 'three'))
    await waitLog(page, 3)
    ids.push(await pub(s.base, 'y', 'four'))
    const log = await waitLog(page, 4) as unknown as Entry[]
    await page.waitForTimeout(200)
    const final = await page.evaluate('window.log') as Entry[]
    t.deepEqual(final.map((e) => e.data), ['one', 'two', 'three', 'four'], 'no loss, no duplicate across the drop')
    t.deepEqual(final.map((e) => e.channel), ['x', 'y', 'x', 'y'])
    t.true(log.every((e) => e.transport === transport))
    // multiplexed ids carry the publisher's seconds and tag in the bracket of the sending channel
    for (let i = 0; i < 4; i++) {
      const [sec, tag] = ids[i]!.split(':')
      t.regex(final[i]!.id!, new RegExp(`^${sec}:.*\\[${tag}\\]`))
    }
    t.true(s.cross.requests.some((h) => new RegExp(`\\r\\norigin: ${s.same.base}\\r\\n`, 'i').test(h)), 'the requests were cross-origin')
  },
  title: (_, transport: string) => `Parkline client ${transport} cross-origin, multiplexed: receives and resumes after a drop`
})

for (const transport of ['websocket', 'eventsource', 'longpoll']) test(crossOrigin, transport)

test('Parkline client: WebSocket blocked → EventSource, then EventSource buffered → long-poll, no message lost', async (t) => {
  const s = await startPageServer(t)
  s.same.modes.websocket = 'refuse'
  const page = await openPage(t, browser, s.pageUrl)
  const ids = [await pub(s.base, 'fb', 'm0')]
  await startClient(page, '/sub/fb', {})
  await waitTransport(page, 'eventsource')
  ids.push(await pub(s.base, 'fb', 'm1'))
  await waitLog(page, 2)
  // now a buffering proxy: the stream's first bytes never come through in time
  s.same.modes.eventsource = 'buffer'
  s.same.dropAll()
  ids.push(await pub(s.base, 'fb', 'm2'))
  await waitTransport(page, 'longpoll')
  ids.push(await pub(s.base, 'fb', 'm3'))
  await waitLog(page, 4)
  await page.waitForTimeout(200)
  const log = await page.evaluate('window.log') as Entry[]
  t.deepEqual(log.map((e) => e.data), ['m0', 'm1', 'm2', 'm3'])
  t.deepEqual(log.map((e) => e.id), ids)
  const ev = await events(page)
  t.deepEqual(ev.filter((e) => e.kind === 'transport').map((e) => e.transport), ['eventsource', 'longpoll'])
  t.true(ev.some((e) => e.kind === 'retry' && /no first byte in 1000 ms/.test(e.reason!)), 'the buffered stream was detected')
})

test('Parkline client: a muted WebSocket (frames swallowed) is caught by the probe in the browser', async (t) => {
  const s = await startPageServer(t)
  s.same.modes.websocket = 'mute'
  const page = await openPage(t, browser, s.pageUrl)
  await startClient(page, '/sub/mute', { keepalive: 500, probeTimeout: 500 })
  await waitTransport(page, 'websocket')
  const ids = [await pub(s.base, 'mute', 'a'), await pub(s.base, 'mute', 'b')]
  await waitTransport(page, 'eventsource')
  const log = await waitLog(page, 2) as unknown as Entry[]
  t.deepEqual(log.map((e) => e.id), ids)
  t.true(log.every((e) => e.transport === 'eventsource'))
})

test('Parkline client: persist keeps the last id in localStorage across a page reload', async (t) => {
  const s = await startPageServer(t)
  const page = await openPage(t, browser, s.pageUrl)
  await pub(s.base, 'keep', 'a')
  const b = await pub(s.base, 'keep', 'b')
  await startClient(page, '/sub/keep', { persist: 'keep-test' })
  await waitLog(page, 2)
  t.is(await page.evaluate('localStorage.getItem("keep-test")'), b)
  await page.reload()
  await pub(s.base, 'keep', 'c')
  await startClient(page, '/sub/keep', { persist: 'keep-test' })
  const log = await waitLog(page, 1) as unknown as Entry[]
  await page.waitForTimeout(200)
  t.deepEqual((await page.evaluate('window.log') as Entry[]).map((e) => e.data), ['c'], 'only what came after b')
  t.is(log[0]!.transport, 'websocket')
})

test('`parkline serve --demo`: the demo page subscribes, publishes and shows the live log (screenshot)', async (t) => {
  const root = path.resolve(import.meta.dirname, '..', '..')
  const child = spawn(process.execPath, ['bin/parkline.ts', 'serve', '--demo', '--port', '0', '--host', '127.0.0.1', '--workers', '1', '--log-level', 'info'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { child.kill('SIGKILL') })
  let out = ''
  const base = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('parkline serve --demo did not start: ' + out)), 15000)
    const onData = (d: Buffer): void => {
      out += d.toString()
      const m = /listening on (http:\/\/[^\s"]+)/.exec(out)
      if (m !== null) { clearTimeout(timer); resolve(m[1]!) }
    }
    child.stdout.on('data', onData)
    child.stderr.on('data', onData)
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`parkline exited ${code}: ${out}`)) })
  })
  const page = await openPage(t, browser, `${base}/demo/`)
  t.is(await page.title(), 'Parkline demo')
  await page.fill('#subChannels', 'demo,alerts')
  await page.click('#subscribe')
  await page.waitForFunction('document.getElementById("transport").textContent === "websocket"', undefined, { timeout: 8000 })
  for (const [channel, text] of [['demo', 'Hello from Parkline'], ['alerts', 'Disk 91% full on db-2'], ['demo', 'Deploy 4.2.0 finished']]) {
    await page.fill('#pubChannel', channel!)
    await page.fill('#pubBody', text!)
    await page.click('#publish')
    await page.waitForFunction((want: string) => [...(globalThis as unknown as { document: { querySelectorAll (s: string): Array<{ textContent: string }> } }).document.querySelectorAll('#log li.message')].some((li) => li.textContent.includes(want)), text!, { timeout: 8000 })
  }
  const messages = await page.locator('#log li.message').evaluateAll((lis) => lis.map((li) => [...li.children].slice(1).map((c) => c.textContent).join(' ')))
  t.is(messages.length, 3)
  // newest first: channel and multiplexed id (bracket on the sending channel), then the text
  t.regex(messages[0]!, /message demo \d+:\[\d+\],\S+ Deploy 4\.2\.0 finished$/)
  t.regex(messages[1]!, /message alerts \d+:\S+,\[\d+\] Disk 91% full on db-2$/)
  t.regex(await page.textContent('#pubResult') ?? '', /^201 · id \d+:\d+ · 1 subscriber/)
  mkdirSync(OUTPUT, { recursive: true })
  const file = path.join(OUTPUT, 'demo.png')
  await page.screenshot({ path: file, fullPage: true })
  t.log('screenshot: ' + path.relative(root, file))
})
