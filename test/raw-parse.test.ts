// lib/raw-publish.ts parseRequest: what the raw connections take themselves and what they leave to
// Node's parser (which answers it as it always does). UNSUPPORTED is 2, NEED_MORE_HEAD 0,
// NEED_MORE_BODY 1.
import test from 'ava'
import { resolveOptions, type ParklineOptions } from '../lib/config.ts'
import { parseRequest } from '../lib/raw-publish.ts'

const opts = resolveOptions({}, { env: {} })
const parse = (s: string): ReturnType<typeof parseRequest> => parseRequest(Buffer.from(s, 'latin1'), opts)
const UNSUPPORTED = 2

test('a publish and a long-poll are read, names lower-cased, values trimmed, whatever the spelling', (t) => {
  const p = parse('POST /pub/a?x=1 HTTP/1.1\r\nHOST: h\r\ncontent-TYPE:  text/plain \r\nX-Custom-Thing: v\r\nContent-Length: 5\r\n\r\nhello')
  if (typeof p !== 'object') { t.fail(String(p)); return }
  t.is(p.method, 'POST')
  t.is(p.target, '/pub/a?x=1')
  t.is(p.path, '/pub/a')
  t.deepEqual({ ...p.headers }, { host: 'h', 'content-type': 'text/plain', 'x-custom-thing': 'v', 'content-length': '5' })
  t.is(p.body.toString(), 'hello')
  t.false(p.close)
  const g = parse('GET /sub/a HTTP/1.1\r\nHost: h\r\nIf-None-Match: 3\r\nConnection: close\r\n\r\n')
  if (typeof g !== 'object') { t.fail(String(g)); return }
  t.is(g.method, 'GET')
  t.is(g.headers['if-none-match'], '3')
  t.true(g.close)
  t.is(g.end, Buffer.byteLength('GET /sub/a HTTP/1.1\r\nHost: h\r\nIf-None-Match: 3\r\nConnection: close\r\n\r\n'))
})

test('header values lose the SP and HTAB around them, nothing inside; an empty value is empty', (t) => {
  const p = parse('POST /pub/a HTTP/1.1\r\nHost:h\r\nContent-Type: \t text/plain; charset=utf-8 \t\r\nX-Empty: \t \r\nX-Inner: a \t b\r\nContent-Length: 0\r\n\r\n')
  if (typeof p !== 'object') { t.fail(String(p)); return }
  t.deepEqual({ ...p.headers }, { host: 'h', 'content-type': 'text/plain; charset=utf-8', 'x-empty': '', 'x-inner': 'a \t b', 'content-length': '0' })
  // no header lands on, or reads through to, the object's prototype
  t.is(Object.getPrototypeOf(p.headers), Object.prototype)
  t.deepEqual(Object.keys(p.headers), ['host', 'content-type', 'x-empty', 'x-inner', 'content-length'])
  // names are lower-cased first: `toString` is `tostring`, an own property like any other
  const q = parse('GET /sub/a HTTP/1.1\r\nHost: h\r\ntoString: x\r\nHasOwnProperty: y\r\n\r\n')
  if (typeof q !== 'object') { t.fail(String(q)); return }
  t.deepEqual(Object.entries(q.headers), [['host', 'h'], ['tostring', 'x'], ['hasownproperty', 'y']])
})

test('anything unusual is left to Node', (t) => {
  const bad = {
    'bare LF': 'GET /sub/a HTTP/1.1\nHost: h\r\n\r\n',
    'bare CR': 'GET /sub/a HTTP/1.1\r\nHost: h\rX: y\r\n\r\n',
    'NUL byte': 'GET /sub/a HTTP/1.1\r\nHost: h\0\r\n\r\n',
    'byte above 0x7e': 'GET /sub/a HTTP/1.1\r\nHost: h\u00e9\r\n\r\n',
    'HTTP/1.0': 'GET /sub/a HTTP/1.0\r\nHost: h\r\n\r\n',
    'two spaces': 'GET  /sub/a HTTP/1.1\r\nHost: h\r\n\r\n',
    'space in target': 'GET /sub/a b HTTP/1.1\r\nHost: h\r\n\r\n',
    'HTAB in target': 'GET /sub/a\tb HTTP/1.1\r\nHost: h\r\n\r\n',
    'no version': 'GET /sub/a\r\nHost: h\r\n\r\n',
    'other method': 'DELETE /pub/a HTTP/1.1\r\nHost: h\r\n\r\n',
    'GET on the publisher': 'GET /pub/a HTTP/1.1\r\nHost: h\r\n\r\n',
    'POST on the subscriber': 'POST /sub/a HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n',
    'dot segment': 'GET /sub/../pub/a HTTP/1.1\r\nHost: h\r\n\r\n',
    'no Host': 'GET /sub/a HTTP/1.1\r\nAccept: */*\r\n\r\n',
    'no colon': 'GET /sub/a HTTP/1.1\r\nHost: h\r\nBroken\r\n\r\n',
    'empty name': 'GET /sub/a HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n',
    'name not a token': 'GET /sub/a HTTP/1.1\r\nHost: h\r\nBad Name: v\r\n\r\n',
    'duplicate, any case': 'GET /sub/a HTTP/1.1\r\nHost: h\r\nhost: i\r\n\r\n',
    'Transfer-Encoding': 'POST /pub/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n',
    'an Upgrade that is not WebSocket': 'GET /sub/a HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n',
    'a WebSocket Upgrade on a publish': 'POST /pub/a HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 0\r\n\r\n',
    'Trailer': 'GET /sub/a HTTP/1.1\r\nHost: h\r\nTrailer: x\r\n\r\n',
    'GET with a body': 'GET /sub/a HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx',
    'Connection: Upgrade': 'GET /sub/a HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n\r\n',
    'bad Content-Length': 'POST /pub/a HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\nx',
    'a header named as an Object.prototype property': 'GET /sub/a HTTP/1.1\r\nHost: h\r\nConstructor: x\r\n\r\n',
    '__proto__ as a header name': 'POST /pub/a HTTP/1.1\r\nHost: h\r\n__proto__: x\r\nContent-Length: 0\r\n\r\n',
    'too many headers': 'GET /sub/a HTTP/1.1\r\nHost: h\r\n' + Array.from({ length: 70 }, (_, i) => `X-${i}: v\r\n`).join('') + '\r\n'
  }
  for (const [why, req] of Object.entries(bad)) t.is(parse(req), UNSUPPORTED, why)
})

test('a subscriber\'s GET is read with the transport Node\'s path would negotiate for it, where that transport is on', (t) => {
  const req = 'GET /sub/a?last_event_id=1:0 HTTP/1.1\r\nHost: h\r\nAccept: text/event-stream\r\nLast-Event-ID: 2:0\r\n\r\n'
  const r = parse(req)
  if (typeof r !== 'object') { t.fail(String(r)); return }
  t.is(r.transport, 'eventsource')
  t.is(r.headers['last-event-id'], '2:0')
  t.is(r.target, '/sub/a?last_event_id=1:0')
  const transport = (s: string, o?: ParklineOptions): string | null | number => {
    const x = o === undefined ? parse(s) : parseRequest(Buffer.from(s, 'latin1'), o)
    return typeof x === 'object' ? x.transport : x
  }
  const get = (headers: string): string => `GET /sub/a HTTP/1.1\r\nHost: h\r\n${headers}\r\n`
  t.is(transport(get('Accept: */*\r\n')), 'longpoll')
  t.is(transport(get('TE: chunked\r\n')), 'chunked')
  t.is(transport(get('TE: trailers, chunked;q=0.5\r\n')), 'chunked')
  t.is(transport(get('TE: chunked;q=0\r\n')), 'longpoll', 'chunked with q=0 is not asked for')
  t.is(transport(get('Accept: multipart/mixed\r\n')), 'multipart')
  const ws = parse(get('Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: k\r\nAccept: text/event-stream\r\n'))
  t.true(typeof ws === 'object' && ws.transport === 'websocket' && ws.close, 'a WebSocket handshake, first in the order; its connection is not read on')
  // negotiation order (§4.1): EventSource, chunked, multipart
  t.is(transport(get('Accept: multipart/mixed, text/event-stream\r\nTE: chunked\r\n')), 'eventsource')
  t.is(transport(get('Accept: multipart/mixed\r\nTE: chunked\r\n')), 'chunked')
  t.is(transport('POST /pub/a HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n'), null, 'a publish has none')
  const only = (transports: string[], more: Partial<ParklineOptions> = {}): ParklineOptions => resolveOptions({ transports, ...more }, { env: {} })
  t.is(transport(get('Upgrade: websocket\r\nConnection: Upgrade\r\n'), only(['eventsource', 'longpoll'])), UNSUPPORTED, 'WebSocket off: Node\'s')
  // a transport switched off claims nothing: the next one does, as on Node's path
  t.is(transport(req, only(['longpoll'])), 'longpoll')
  t.is(transport(get('TE: chunked\r\nAccept: multipart/mixed\r\n'), only(['multipart', 'longpoll'])), 'multipart')
  t.is(transport(req, only(['eventsource'])), 'eventsource')
  // nothing claims it (Node answers 406), long-polls answered whole by Node: Node's
  t.is(transport(get(''), only(['eventsource'])), UNSUPPORTED)
  t.is(transport(get(''), only(['eventsource', 'longpoll'], { longpollMultipart: true })), UNSUPPORTED)
  t.is(transport(req, only(['eventsource', 'longpoll'], { longpollMultipart: true })), 'eventsource')
  // a body: Node's
  t.is(parse('GET /sub/a HTTP/1.1\r\nHost: h\r\nAccept: text/event-stream\r\nContent-Length: 0\r\n\r\n'), UNSUPPORTED)
})

test('a head or body not all there yet waits; a partial head Node would refuse does not', (t) => {
  t.is(parse('GET /sub/a HTTP/1.1\r\nHost: h\r\n'), 0)
  t.is(parse('POST /pub/a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhel'), 1)
  t.is(parse('GET /sub/a HTTP/1.1\nHost'), UNSUPPORTED)
})
