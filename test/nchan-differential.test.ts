// Parkline beside Nchan itself (nginx + libnginx-mod-nchan, started on loopback by the benchmark
// suite's helper): the same requests to both, and what a client or publisher reads of the answers
// compared. Each case here is one where Parkline once answered otherwise. Without nginx and the
// module this fails and says which packages to install.
import os from 'node:os'
import path from 'node:path'
import { mkdtempSync, rmSync } from 'node:fs'
import test from 'ava'
import { APT_LINE, nchanModule, startServer, type ServerHandle } from '../benchmarks/suite/servers.ts'
import { nextSecond, pub, splitId } from './helpers/conformance.ts'
import { RawWs } from './helpers/websocket.ts'
import { OP_BINARY, OP_TEXT } from '../transports/websocket-frame.ts'

let nchan: ServerHandle | null = null
let parkline: ServerHandle | null = null
let tmp = ''

test.before(async () => {
  if (nchanModule() === null) throw new Error(`Nchan is not installed; install it with: ${APT_LINE}`)
  tmp = mkdtempSync(path.join(os.tmpdir(), 'parkline-nchan-diff-'))
  nchan = await startServer('nchan', { workers: 1, tmp })
  parkline = await startServer('parkline1', { workers: 1, tmp })
})

test.after.always(async () => {
  await nchan?.stop()
  await parkline?.stop()
  if (tmp !== '') rmSync(tmp, { recursive: true, force: true })
})

const servers = (): Array<[string, string]> => [['nchan', `http://127.0.0.1:${nchan!.port}`], ['parkline', `http://127.0.0.1:${parkline!.port}`]]

/** Three messages, m0 to m2, published in one second on a new channel (tried again, up to 3 times, if a second boundary fell between them). */
async function threeInOneSecond (base: string, prefix: string): Promise<{ channel: string, seconds: number }> {
  for (let attempt = 0; attempt < 3; attempt++) {
    await nextSecond()
    const channel = `${prefix}-${attempt}`
    const seconds: number[] = []
    for (const body of ['m0', 'm1', 'm2']) seconds.push(splitId((await pub(base, channel, body)).id).seconds)
    if (seconds.every((s) => s === seconds[0])) return { channel, seconds: seconds[0]! }
  }
  throw new Error('no three publishes in one second')
}

test.serial('a long-poll\'s If-Modified-Since written back in another form (another zone, none, junk after the time) walks the buffer as with Nchan: not the oldest message again', async (t) => {
  const forms: Array<[string, (d: Date) => string]> = [
    ['IMF-fixdate', (d) => d.toUTCString()],
    ['PHP date(\'r\')', (d) => d.toUTCString().replace('GMT', '+0000')],
    ['Python formatdate()', (d) => d.toUTCString().replace('GMT', '-0000')],
    ['zone UTC', (d) => d.toUTCString().replace('GMT', 'UTC')],
    ['no zone', (d) => d.toUTCString().replace(' GMT', '')],
    ['junk after it', (d) => d.toUTCString() + ' junk'],
    ['asctime', (d) => d.toUTCString().replace(/^(\w{3}), (\d{2}) (\w{3}) (\d{4}) (\S+) GMT$/, (_, w: string, day: string, mon: string, y: string, hms: string) => `${w} ${mon} ${day.replace(/^0/, ' ')} ${hms} ${y}`)]
  ]
  const got: Record<string, Record<string, string>> = {}
  for (const [name, base] of servers()) {
    const { channel, seconds } = await threeInOneSecond(base, `ims-${process.pid}`)
    const answers: Record<string, string> = {}
    for (const [form, fmt] of forms) {
      // the client had m1 (tag 1 of that second) and asks for what follows it
      const res = await fetch(`${base}/sub/${channel}`, { headers: { 'If-Modified-Since': fmt(new Date(seconds * 1000)), 'If-None-Match': '1' }, signal: AbortSignal.timeout(5000) })
      answers[form] = `${res.status} ${await res.text()}`
    }
    got[name] = answers
  }
  t.deepEqual(got.parkline, got.nchan)
  for (const [form] of forms) t.is(got.parkline![form], '200 m2', form)
})

test.serial('a publish that answers a parked long-poll counts it in its answer, as Nchan does (active subscribers: 1, not 0)', async (t) => {
  const got: Record<string, string[]> = {}
  for (const [name, base] of servers()) {
    const channel = `lp-count-${process.pid}`
    const poll = fetch(`${base}/sub/${channel}`, { signal: AbortSignal.timeout(10000) })
    // parked once the channel counts it
    let counted = false
    for (let i = 0; i < 100 && !counted; i++) {
      const res = await fetch(`${base}/pub/${channel}`, { headers: { Accept: 'text/json' } })
      counted = res.status === 200 && (JSON.parse(await res.text()) as { subscribers: number }).subscribers === 1
      if (!counted) await new Promise((resolve) => setTimeout(resolve, 20))
    }
    t.true(counted, `${name}: the poll is counted`)
    const answer = await pub(base, channel, 'hello')
    const polled = await poll
    got[name] = [String(answer.status), /active subscribers: (\d+)/.exec(answer.text)?.[1] ?? answer.text, `${polled.status} ${await polled.text()}`]
  }
  t.deepEqual(got.parkline, got.nchan)
  t.deepEqual(got.parkline, ['201', '1', '200 hello'])
})

test.serial('a WebSocket publisher: each message published and answered with channel info (the handshake\'s Accept), text with its Content-Type, binary as octet-stream, text not UTF-8 closed 1007, as with Nchan', async (t) => {
  const got: Record<string, unknown> = {}
  for (const [name, base] of servers()) {
    const port = Number(new URL(base).port)
    const channel = `wspub-${process.pid}`
    const ws = await RawWs.connect(port, `/pub/${channel}`, { 'Content-Type': 'text/x-note', Accept: 'text/json' })
    t.is(ws.status, 101, `${name}: ${ws.head}`)
    ws.send(OP_TEXT, 'hello')
    ws.send(OP_BINARY, Buffer.from([1, 2, 3]))
    ws.send(OP_TEXT, '')
    const answers = await ws.waitMessages(3)
    // each answer: a text frame, JSON (Accept: text/json), the channel's count growing
    const counts = answers.map((f) => [f.opcode, (JSON.parse(f.payload.toString()) as { messages: number }).messages])
    // the messages, read back oldest first by a long-poll walk
    const walked: Array<[number, string | null, string]> = []
    let headers: Record<string, string> = {}
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${base}/sub/${channel}`, { headers, signal: AbortSignal.timeout(5000) })
      walked.push([res.status, res.headers.get('content-type'), Buffer.from(await res.arrayBuffer()).toString('hex')])
      headers = { 'If-Modified-Since': res.headers.get('last-modified')!, 'If-None-Match': res.headers.get('etag')! }
    }
    // a text frame that is not UTF-8: the connection closes 1007, nothing more is published
    ws.send(OP_TEXT, Buffer.from([0xc3, 0x28]))
    await ws.waitClosed()
    const info = await fetch(`${base}/pub/${channel}`, { headers: { Accept: 'text/json' } })
    got[name] = { counts, walked, close: ws.closeFrame?.code, after: (JSON.parse(await info.text()) as { messages: number }).messages }
  }
  t.deepEqual(got.parkline, got.nchan)
  t.deepEqual(got.parkline, {
    counts: [[1, 1], [1, 2], [1, 3]],
    walked: [[200, 'text/x-note', Buffer.from('hello').toString('hex')], [200, 'application/octet-stream', '010203'], [200, 'text/x-note', '']],
    close: 1007,
    after: 3
  })
})

test.serial('the channel info format is chosen from Accept as Nchan chooses it: by how the subtype starts, letter case counting', async (t) => {
  const accepts = ['text/json', 'application/json', 'application/json; charset=utf-8', 'application/jsonp', 'text/jsonx', 'text/x-json', 'application/ json',
    'APPLICATION/JSON', 'text/xmlx', 'text/yaml', 'application/x-yaml', 'text/html, application/json;q=0.9', 'image/png, text/xml', 'application/vnd.api+json',
    'text/plain, text/json', '*/*', 'text/', 'application/ld+json']
  const got: Record<string, string[]> = {}
  for (const [name, base] of servers()) {
    const channel = `accept-${process.pid}`
    await pub(base, channel, 'x')
    const types: string[] = []
    for (const accept of accepts) {
      const res = await fetch(`${base}/pub/${channel}`, { headers: { Accept: accept } })
      await res.arrayBuffer()
      types.push(`${accept} → ${res.headers.get('content-type')}`)
    }
    got[name] = types
  }
  t.deepEqual(got.parkline, got.nchan)
})
