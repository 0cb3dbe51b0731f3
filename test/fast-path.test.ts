// The standalone server's fast path (lib/fast-path.ts): a POST or PUT on the publisher location
// and a GET on the subscriber location skip Fastify, and every answer is what the same request
// gets through Fastify (PARKLINE_NO_FAST_PATH=1): status, headers, body, on every branch of the
// publisher and the subscriber's answers.
import type { ExecutionContext } from 'ava'
import test from 'ava'
import { once } from 'node:events'
import net from 'node:net'
import { coreOf } from '../lib/plugin.ts'
import type { ParklineOptions } from '../lib/config.ts'
import { eventually, parseResponse, rawExchange, rawRequest, startStandalone, type Standalone } from './helpers/server.ts'
import { API_KEY, AUTH_SERVER, mint } from './helpers/auth.ts'

async function serve (t: ExecutionContext, options: Partial<Record<keyof ParklineOptions, unknown>>, fast: boolean): Promise<Standalone> {
  return await startStandalone(t, options, fast)
}

function req (method: string, path: string, headers: Record<string, string> = {}, body = ''): string {
  let s = `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n`
  for (const [k, v] of Object.entries(headers)) s += `${k}: ${v}\r\n`
  if (method === 'POST' || method === 'PUT') s += `Content-Length: ${Buffer.byteLength(body)}\r\n`
  return s + '\r\n' + body
}

/** What differs between two runs (message ids and times, the jittered retry) masked; header lines come lower-cased. */
function mask (text: string): string {
  return text.replace(/\nretry: \d+\n/g, '\nretry: R\n').replace(/\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT/gi, 'DATE').replace(/\d{10}(:\d+)?/g, 'T')
}

/** An answer, its Date header dropped, header lines in order of name, ids and times masked. */
function masked (raw: string, stream = false): string {
  const end = raw.indexOf('\r\n\r\n')
  const head = raw.slice(0, end).split('\r\n')
  const lines = [head[0]!, ...head.slice(1).filter((l) => !/^date:/i.test(l)).map((l) => l.toLowerCase()).sort()]
  return mask(lines.join('\n') + '\n\n' + (stream ? raw.slice(end + 4) : parseResponse(raw).body))
}

const ORIGIN = 'https://app.example'

const CASES: Array<{ name: string, options: Partial<Record<keyof ParklineOptions, unknown>>, requests: () => Promise<string[]> }> = [
  {
    name: 'no credentials configured (loopback publisher)',
    options: { corsOrigins: [ORIGIN], maxMessageSize: 64 },
    requests: async () => [
      req('POST', '/pub/a', {}, 'one'),
      req('PUT', '/pub/a', { 'Content-Type': 'foo' }, 'two'),
      req('POST', '/pub/a', { Accept: 'text/json' }, 'three'),
      req('POST', '/pub/a', { Accept: 'application/xml' }, 'four'),
      req('POST', '/pub/a', { Origin: ORIGIN }, 'cors'),
      req('POST', '/pub/a', { Origin: 'https://evil.example' }, 'refused'),
      req('POST', '/pub/a', { 'Sec-Fetch-Site': 'cross-site' }, 'refused'),
      req('POST', '/pub/a', { 'Idempotency-Key': 'k1' }, 'once'),
      req('POST', '/pub/a', { 'Idempotency-Key': 'k1' }, 'once'),
      req('POST', '/pub/a', { 'Idempotency-Key': 'bad key' }, 'x'),
      req('POST', '/pub/a', {}, 'x'.repeat(65)),
      req('POST', '/pub/', {}, 'no id'),
      req('POST', '/pub/%00', {}, 'nul'),
      req('POST', '/pub/' + 'c'.repeat(1100), {}, 'long id'),
      req('POST', '/pub/b/../a', {}, 'normalised'),
      req('POST', '/pub/a?x=1', {}, 'query'),
      req('POST', '/pub/a', { 'X-EventSource-Event': 'tick' }, 'event'),
      req('GET', '/pub/a', { Accept: 'text/json' }),
      // subscribers whose answer ends: long-polls answered from the buffer, and refusals
      req('GET', '/sub/a'),
      req('GET', '/sub/a', { Origin: ORIGIN }),
      req('GET', '/sub/a', { Origin: 'https://evil.example' }),
      req('GET', '/sub/a?last_event_id=a:b:c'),
      req('GET', '/sub/'),
      req('GET', '/sub/a,b'),
      req('GET', '/sub/a/../a'),
      req('OPTIONS', '/sub/a', { Origin: ORIGIN }),
      req('POST', '/sub/a', {}, 'no'),
      req('DELETE', '/pub/a'),
      req('POST', '/pub/a', {}, '')
    ]
  },
  {
    name: 'an API key',
    options: { apiKey: 'secret-key-0123456' },
    requests: async () => [
      req('POST', '/pub/k', {}, 'no credential'),
      req('POST', '/pub/k', { Authorization: 'Bearer wrong' }, 'wrong'),
      req('POST', '/pub/k', { Authorization: 'Bearer secret-key-0123456' }, 'right'),
      req('POST', '/pub/k', { Cookie: 'parkline_token=secret-key-0123456' }, 'cookie'),
      req('GET', '/sub/k')
    ]
  },
  {
    name: 'JWT subscribers',
    options: AUTH_SERVER,
    requests: async () => {
      const good = (await mint(['j'])).token
      const other = (await mint(['elsewhere'])).token
      return [
        req('POST', '/pub/j', { Authorization: `Bearer ${API_KEY}` }, 'm'),
        req('GET', '/sub/j'),
        req('GET', '/sub/j', { Authorization: 'Bearer not.a.token' }),
        req('GET', '/sub/j', { Authorization: `Bearer ${other}` }),
        req('GET', '/sub/j', { Authorization: `Bearer ${good}` }),
        req('GET', '/sub/j', { Cookie: `parkline_token=${good}` }),
        req('GET', `/sub/j?access_token=${good}`)
      ]
    }
  }
]

for (const c of CASES) {
  test.serial(`every answer is the one Fastify gives: ${c.name}`, async (t) => {
    const fast = await serve(t, c.options, true)
    const slow = await serve(t, c.options, false)
    for (const r of await c.requests()) {
      const a = masked((await rawRequest(fast.port, r)).raw)
      const b = masked((await rawRequest(slow.port, r)).raw)
      t.is(a, b, r.split('\r\n')[0])
    }
    // the plain publishes and subscribes never reached Fastify on the fast server; all did on the other
    t.true(fast.hooks() < slow.hooks(), `${fast.hooks()} vs ${slow.hooks()}`)
  })
}

test.serial('an SSE stream starts the same: head, retry, the buffered messages in order', async (t) => {
  const fast = await serve(t, {}, true)
  const slow = await serve(t, {}, false)
  const heads: string[] = []
  for (const s of [fast, slow]) {
    for (const body of ['one', 'two']) t.is((await rawRequest(s.port, req('POST', '/pub/s', {}, body))).status, 202)
    const text = await rawExchange(s.port, req('GET', '/sub/s', { Accept: 'text/event-stream', Origin: 'https://app.example' }), { until: (x) => x.includes('data: two\n\n') })
    heads.push(masked(text, true))
  }
  t.regex(heads[0]!, /data: one\n\n.*data: two\n\n/s)
  t.is(heads[0], heads[1])
  t.is(fast.hooks(), 0)
})

test.serial('pipelined publishes answer in order, and a publish behind a GET goes through Fastify after it', async (t) => {
  const fast = await serve(t, {}, true)
  const slow = await serve(t, {}, false)
  const batch = req('POST', '/pub/p', {}, '1') + req('PUT', '/pub/p', {}, '2') + req('GET', '/pub/p', { Accept: 'text/json' }) +
    req('POST', '/pub/p', {}, '3') + req('DELETE', '/pub/p') + req('POST', '/pub/p', {}, '4') + req('GET', '/pub/p', { Accept: 'text/json', Connection: 'close' })
  const answers = async (port: number): Promise<string[]> => {
    const text = await rawExchange(port, batch, { ms: 5000 })
    return text.split(/(?=HTTP\/1\.1 )/).map((x) => masked(x))
  }
  const a = await answers(fast.port)
  t.is(a.length, 7)
  t.deepEqual(a, await answers(slow.port))
  t.deepEqual(a.map((x) => x.split(' ')[1]), ['202', '202', '200', '202', '200', '202', '200'])
  t.regex(a[2]!, /"messages": 2/)
  t.regex(a[6]!, /"messages": 1/)
})

test.serial('a long-poll parked through the fast path lets go of Node\'s request and response, as through Fastify, and the connection polls on', async (t) => {
  for (const fast of [true, false]) {
    const s = await serve(t, {}, fast)
    const core = coreOf(s.app)
    const socket = net.connect(s.port, '127.0.0.1')
    socket.setEncoding('latin1')
    let text = ''
    socket.on('data', (d: string) => { text += d })
    await once(socket, 'connect')
    socket.write(req('GET', '/sub/lp'))
    t.true(await eventually(() => core.table.size === 1), 'parked')
    // released: the parked poll holds no ServerResponse (answers are written raw on the socket)
    t.is(core.table.subs[0]!.res, null, fast ? 'fast path' : 'Fastify')
    t.is((await rawRequest(s.port, req('POST', '/pub/lp', {}, 'one'))).status, 201)
    t.true(await eventually(() => text.includes('one')), 'answered')
    // the same connection goes back to Node's parser for the next poll, which parks and is released too
    socket.write(req('GET', '/sub/lp', { 'If-None-Match': parseResponse(text).headers.etag ?? '', 'If-Modified-Since': parseResponse(text).headers['last-modified'] ?? '' }))
    t.true(await eventually(() => core.table.size === 1), 'parked again')
    t.is(core.table.subs[0]!.res, null)
    text = ''
    t.is((await rawRequest(s.port, req('POST', '/pub/lp', {}, 'two'))).status, 201)
    t.true(await eventually(() => text.includes('two')), 'answered again')
    socket.destroy()
  }
})
