// Unit tests of client/wire.ts: ids, long-poll cursor headers, ws+meta heads, the SSE parser.
import test from 'ava'
import {
  activePosition, channelsOf, cursorHeaders, longpollId, parseId, parseWsMeta, parseWsMetaBytes, retryAfterMs, SseParser,
  type SseEvent, hasQuery, queryOf, withCursor, withoutQuery, withQuery
} from '../../client/wire.ts'

test('parseId: single and multiplexed ids (§2)', (t) => {
  t.deepEqual(parseId('1795375223:4'), { seconds: 1795375223, tags: [4], active: 0 })
  t.deepEqual(parseId('1795375223:0,[1],-'), { seconds: 1795375223, tags: [0, 1, -1], active: 1 })
  t.deepEqual(parseId('1795375223:[0],-'), { seconds: 1795375223, tags: [0, -1], active: 0 })
  t.is(parseId('garbage'), null)
  t.is(parseId('1:1,2'), null, 'two tags and no bracket')
  t.is(parseId(':1'), null)
  t.is(activePosition('5:-,[3]'), 1)
  t.is(activePosition(undefined), 0)
})

test('cursorHeaders / longpollId round-trip (§5)', (t) => {
  const h = cursorHeaders('1795375223:7')!
  t.is(h['If-Modified-Since'], 'Sun, 22 Nov 2026 19:20:23 GMT')
  t.is(h['If-None-Match'], '7')
  t.is(longpollId(h['If-Modified-Since']!, h['If-None-Match']!), '1795375223:7')
  t.is(cursorHeaders('1795375223:[1],0')!['If-None-Match'], '[1],0')
  t.is(longpollId('Sun, 22 Nov 2026 19:20:23 GMT', '[1],0'), '1795375223:[1],0')
  t.is(longpollId(null, null), undefined)
  t.is(longpollId('Sun, 22 Nov 2026 19:20:23 GMT', 'W/"3"'), '1795375223:3')
  t.is(cursorHeaders('0:0'), null, 'seconds 0 means oldest: no cursor')
})

test('parseWsMeta: ws+meta.nchan and ws+meta.parkline heads (§7)', (t) => {
  t.deepEqual(parseWsMeta('id: 5:3\ncontent-type: text/plain\n\nbody'), { id: '5:3', contentType: 'text/plain', gap: undefined, length: 34 })
  t.deepEqual(parseWsMeta('id: 5:3\n\nno type'), { id: '5:3', contentType: undefined, gap: undefined, length: 9 })
  t.deepEqual(parseWsMeta('id: 5:3\ngap: 4:0\nx-future: 1\n\nb'), { id: '5:3', contentType: undefined, gap: '4:0', length: 30 })
  // one gap line per channel that lost messages: kept joined by a space
  t.deepEqual(parseWsMeta('id: 5:-,[3]\ngap: 4:[0],1\ngap: 4:0,[1]\n\nb'), { id: '5:-,[3]', contentType: undefined, gap: '4:[0],1 4:0,[1]', length: 39 })
  t.is(parseWsMeta('plain body'), null)
  const bytes = new Uint8Array([...new TextEncoder().encode('id: 5:[0],-\ncontent-type: application/octet-stream\n\n'), 0, 255])
  const m = parseWsMetaBytes(bytes)!
  t.is(m.id, '5:[0],-')
  t.deepEqual([...bytes.subarray(m.length)], [0, 255])
})

test('SseParser: the HTML algorithm, chunk boundaries anywhere', (t) => {
  const stream = ': hi\n\nretry: 1234\n\nid: 1:0\ndata: a\r\ndata: b\n\nevent: parkline-gap\ndata: {}\n\nid: 1:1\ndata:\n\n:503: 503 Service Unavailable\n\nid: 1:2\rdata: cr\r\r\n'
  for (const size of [1, 2, 3, 7, 1000]) {
    const events: SseEvent[] = []
    const comments: string[] = []
    let retry = 0
    const p = new SseParser((e) => events.push(e), (c) => comments.push(c), (ms) => { retry = ms })
    for (let i = 0; i < stream.length; i += size) p.feed(stream.slice(i, i + size))
    // ownId: the block had an id line of its own (the gap event, a control event, has none)
    t.deepEqual(events, [
      { event: undefined, data: 'a\nb', id: '1:0', ownId: true },
      { event: 'parkline-gap', data: '{}', id: '1:0', ownId: false },
      { event: undefined, data: '', id: '1:1', ownId: true },
      { event: undefined, data: 'cr', id: '1:2', ownId: true }
    ], `chunks of ${size}`)
    t.deepEqual(comments, [' hi', '503: 503 Service Unavailable'])
    t.is(retry, 1234)
  }
})

test('retryAfterMs, channelsOf, withQuery', (t) => {
  t.is(retryAfterMs('7'), 7000)
  t.is(retryAfterMs(null), null)
  t.is(retryAfterMs('soon'), null)
  t.is(retryAfterMs(new Date(10000).toUTCString(), 4000), 6000)
  t.deepEqual(channelsOf('/sub/a,b%2Cc,d', '/sub/'), ['a', 'b,c', 'd'])
  t.deepEqual(channelsOf('/push/sub/x/y', '/sub/'), ['y'])
  t.deepEqual(channelsOf('/push/sub/x/y', '/push/sub/'), ['x/y'])
  t.is(withQuery('http://h/sub/a', 'last_event_id', '1:[0],-'), 'http://h/sub/a?last_event_id=1%3A%5B0%5D%2C-')
  t.is(withQuery('http://h/sub/a?x=1', 'k', 'v'), 'http://h/sub/a?x=1&k=v')
  // a parameter of that name the URL had is replaced (a server reads the first), others kept
  t.is(withQuery('http://h/sub/a?last_event_id=1:0&x=1&last_event_id=2:0#f', 'last_event_id', '3:0'), 'http://h/sub/a?x=1&last_event_id=3%3A0')
  t.is(withQuery('http://h/sub/a?access_token=old&last_event_id_x=1&access_token', 'access_token', 'new'), 'http://h/sub/a?last_event_id_x=1&access_token=new')
  t.is(withCursor('http://h/sub/a?last_event_id=1:0', '2:0'), 'http://h/sub/a?last_event_id=2:0')
  t.is(withoutQuery('http://h/sub/a?last_event_id=1:0', 'last_event_id'), 'http://h/sub/a')
  t.is(withoutQuery('http://h/sub/a?x=1&last_event_id=1:0&last_event_idx=2#f', 'last_event_id'), 'http://h/sub/a?x=1&last_event_idx=2')
  t.true(hasQuery('http://h/sub/a?x=1&last_event_id', 'last_event_id'))
  t.false(hasQuery('http://h/sub/a?last_event_idx=1#last_event_id=2', 'last_event_id'))
  t.is(queryOf('http://h/sub/a?last_event_id=1%3A0&last_event_id=2:0', 'last_event_id'), '1:0')
  t.is(queryOf('http://h/sub/a?x=%E0', 'x'), '%E0')
  t.is(queryOf('http://h/sub/a', 'x'), null)
})

test('SseParser: a line cut into many chunks is the same line; CR, LF and CRLF split across chunks end one line each', (t) => {
  const events: SseEvent[] = []
  const p = new SseParser((e) => events.push(e))
  const long = 'x'.repeat(100_000)
  p.feed('id: 1:0\ndata: ')
  for (let i = 0; i < long.length; i += 1000) p.feed(long.slice(i, i + 1000))
  p.feed('\r')
  p.feed('')
  p.feed('\ndata: y\r')
  p.feed('\r')
  t.deepEqual(events, [{ event: undefined, data: long + '\ny', id: '1:0', ownId: true }])
})
