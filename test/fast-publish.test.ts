// The standalone server's publish fast path (lib/fast-publish.ts): a POST or PUT on the publisher
// location skips Fastify, and every answer is what the same request gets through Fastify
// (PARKLINE_NO_FAST_PUBLISH=1): status, headers, body, on every branch of the publisher.
import net from 'node:net'
import type { ExecutionContext } from 'ava'
import test from 'ava'
import { resolveOptions, type ParklineOptions } from '../lib/config.ts'
import { buildServer } from '../lib/server.ts'
import { parseResponse, rawExchange, rawRequest } from './helpers/server.ts'

interface Server { port: number, publisherHooks: () => number }

/** A standalone server; counts the requests on the publisher location that Fastify's hooks saw. */
async function serve (t: ExecutionContext, options: Partial<Record<keyof ParklineOptions, unknown>>, fast: boolean): Promise<Server> {
  const opts = resolveOptions({ port: 0, host: '127.0.0.1', logLevel: 'silent', ...options })
  if (!fast) process.env.PARKLINE_NO_FAST_PUBLISH = '1'
  let app
  try {
    app = await buildServer(opts)
  } finally {
    delete process.env.PARKLINE_NO_FAST_PUBLISH
  }
  let seen = 0
  app.addHook('onRequest', async (request) => { if (request.url.startsWith('/pub/')) seen++ })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return { port: (app.server.address() as net.AddressInfo).port, publisherHooks: () => seen }
}

function req (method: string, path: string, headers: Record<string, string> = {}, body = ''): string {
  let s = `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n`
  for (const [k, v] of Object.entries(headers)) s += `${k}: ${v}\r\n`
  if (method === 'POST' || method === 'PUT') s += `Content-Length: ${Buffer.byteLength(body)}\r\n`
  return s + '\r\n' + body
}

/** An answer with what differs between two runs (Date, message ids, idle seconds) masked. */
function masked (raw: string): string {
  const a = parseResponse(raw)
  const head = raw.slice(0, raw.indexOf('\r\n\r\n')).split('\r\n')
  const lines = [head[0]!, ...head.slice(1).filter((l) => !/^date:/i.test(l)).map((l) => l.toLowerCase()).sort()]
  return lines.join('\n') + '\n\n' + a.body.replace(/\d{10}:\d+/g, 'ID').replace(/\d{10}/g, 'T')
}

const ORIGIN = 'https://app.example'

const CASES: Array<{ name: string, options: Partial<Record<keyof ParklineOptions, unknown>>, requests: string[] }> = [
  {
    name: 'no credentials configured (loopback publisher)',
    options: { corsOrigins: [ORIGIN], maxMessageSize: 64 },
    requests: [
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
      req('DELETE', '/pub/a'),
      req('POST', '/pub/a', {}, '')
    ]
  },
  {
    name: 'an API key',
    options: { apiKey: 'secret' },
    requests: [
      req('POST', '/pub/k', {}, 'no credential'),
      req('POST', '/pub/k', { Authorization: 'Bearer wrong' }, 'wrong'),
      req('POST', '/pub/k', { Authorization: 'Bearer secret' }, 'right'),
      req('POST', '/pub/k', { Cookie: 'parkline_token=secret' }, 'cookie')
    ]
  }
]

for (const c of CASES) {
  test.serial(`every answer is the one Fastify gives: ${c.name}`, async (t) => {
    const fast = await serve(t, c.options, true)
    const slow = await serve(t, c.options, false)
    for (const r of c.requests) {
      const a = masked((await rawRequest(fast.port, r)).raw)
      const b = masked((await rawRequest(slow.port, r)).raw)
      t.is(a, b, r.split('\r\n')[0])
    }
    // the plain publishes never reached Fastify on the fast server; everything did on the other
    t.true(fast.publisherHooks() < slow.publisherHooks(), `${fast.publisherHooks()} vs ${slow.publisherHooks()}`)
  })
}

test.serial('pipelined publishes answer in order, and a publish behind a GET goes through Fastify after it', async (t) => {
  const fast = await serve(t, {}, true)
  const slow = await serve(t, {}, false)
  const batch = req('POST', '/pub/p', {}, '1') + req('PUT', '/pub/p', {}, '2') + req('GET', '/pub/p', { Accept: 'text/json' }) +
    req('POST', '/pub/p', {}, '3') + req('DELETE', '/pub/p') + req('POST', '/pub/p', {}, '4') + req('GET', '/pub/p', { Accept: 'text/json', Connection: 'close' })
  const answers = async (port: number): Promise<string[]> => {
    const text = await rawExchange(port, batch, { ms: 5000 })
    return text.split(/(?=HTTP\/1\.1 )/).map(masked)
  }
  const a = await answers(fast.port)
  t.is(a.length, 7)
  t.deepEqual(a, await answers(slow.port))
  t.deepEqual(a.map((x) => x.split(' ')[1]), ['202', '202', '200', '202', '200', '202', '200'])
  t.regex(a[2]!, /"messages": 2/)
  t.regex(a[6]!, /"messages": 1/)
})
