// Unit tests of lib/message-id.ts: tag parse P, compound parse C, HTTP dates (PROTOCOL.md §2).
import test from 'ava'
import {
  ABSENT, INVALID, MAX_TAG, formatCursor, formatHttpDate, formatId, formatTags, formatVector, idAfter, makeCursor,
  parseCompound, parseHttpDate, parseTags, percentDecode
} from '../../lib/message-id.ts'

test('percentDecode: %XX decoded to a raw byte, any other % kept', (t) => {
  t.is(percentDecode('abc'), 'abc')
  t.is(percentDecode('1%3A2'), '1:2')
  t.is(percentDecode('%ff%FE'), '\xff\xfe')
  t.is(percentDecode('%zz'), '%zz')
  t.is(percentDecode('%4'), '%4')
  t.is(percentDecode('100%'), '100%')
  t.is(percentDecode('%%41'), '%A')
  t.is(percentDecode('%00'), '\0')
})

test('parseTags: digits, `-`, and ignored bytes', (t) => {
  t.deepEqual(parseTags('3', 1), { tags: [3], active: -1 })
  t.deepEqual(parseTags('"3"', 1), { tags: [3], active: -1 })
  t.deepEqual(parseTags('W/"3"', 1), { tags: [3], active: -1 })
  t.deepEqual(parseTags('abc', 1), { tags: [0], active: -1 })
  t.deepEqual(parseTags('*', 1), { tags: [0], active: -1 })
  t.deepEqual(parseTags('', 1), { tags: [0], active: -1 })
  t.deepEqual(parseTags('2:3', 1), { tags: [23], active: -1 })
  t.deepEqual(parseTags(' 4 ', 1), { tags: [4], active: -1 })
})

test('parseTags: negative and lone `-` mean -1', (t) => {
  t.deepEqual(parseTags('-', 1), { tags: [-1], active: -1 })
  t.deepEqual(parseTags('-1', 1), { tags: [-1], active: -1 })
  t.deepEqual(parseTags('-300', 1), { tags: [-1], active: -1 })
  t.deepEqual(parseTags('[0],-,-', 3), { tags: [0, -1, -1], active: 0 })
})

test('parseTags: overflow is clamped to the largest tag, never rejected', (t) => {
  t.deepEqual(parseTags('99999999999', 1), { tags: [MAX_TAG], active: -1 })
  t.deepEqual(parseTags('9'.repeat(300), 1), { tags: [MAX_TAG], active: -1 })
  t.deepEqual(parseTags('2147483647', 1), { tags: [2147483647], active: -1 })
  t.deepEqual(parseTags('32768', 1), { tags: [32768], active: -1 })
})

test('parseTags: brackets mark the active position; malformed brackets are rejected', (t) => {
  t.deepEqual(parseTags('[1],0', 2), { tags: [1, 0], active: 0 })
  t.deepEqual(parseTags('1,[0]', 2), { tags: [1, 0], active: 1 })
  t.deepEqual(parseTags('-,[2],5', 3), { tags: [-1, 2, 5], active: 1 })
  t.deepEqual(parseTags('[1', 1), { tags: [1], active: 0 })
  t.is(parseTags('[1]]', 1), null)
  t.is(parseTags('[[0]]', 1), null)
  t.is(parseTags('[1],[2]', 2), null)
  t.is(parseTags(']1[', 1), null)
  t.is(parseTags('1]', 1), null)
})

test('parseTags: tag count against the channel count', (t) => {
  // more tags than channels
  t.is(parseTags('[1],2', 1), null)
  t.is(parseTags(Array.from({ length: 20 }, (_, i) => String(i)).join(','), 1), null)
  // two or more tags need a bracket
  t.is(parseTags('1,2', 2), null)
  t.is(parseTags('1,2', 3), null)
  // fewer tags: the rest are `-`; a single unbracketed tag is position 0
  t.deepEqual(parseTags('[4]', 3), { tags: [4, -1, -1], active: 0 })
  t.deepEqual(parseTags('4', 3), { tags: [4, -1, -1], active: -1 })
  t.deepEqual(parseTags('0,[1]', 3), { tags: [0, 1, -1], active: 1 })
})

test('parseCompound: absent values', (t) => {
  for (const v of ['', '   ', 'garbage', '%zz', 'x'.repeat(300), '"quoted"', '0']) t.is(parseCompound(v, 1), ABSENT, v)
})

test('parseCompound: bad seconds are INVALID', (t) => {
  for (const v of ['-5:-3', 'abc:1', ':', ':1', '\xff\xfe:\xe9', '99999999999999999999:0', '9223372036854775808:0', '+1:0', '1 :0', '1.5:0', '%2D5:0']) {
    t.is(parseCompound(v, 1), INVALID, v)
  }
})

test('parseCompound: bad tags are INVALID', (t) => {
  for (const v of ['5:[1]]', '5:[1],[2]', '1:' + Array.from({ length: 20 }, (_, i) => String(i + 1)).join(','), '5:1,2']) {
    t.is(parseCompound(v, 1), INVALID, v)
  }
  t.is(parseCompound('5:1,2', 2), INVALID)
})

test('parseCompound: valid values', (t) => {
  t.deepEqual(parseCompound('1795375223:4', 1), { time: 1795375223, tags: [4], active: -1, explicit: true })
  t.deepEqual(parseCompound('  1795375223:4 ', 1), { time: 1795375223, tags: [4], active: -1, explicit: true })
  t.deepEqual(parseCompound('1795375223%3A4', 1), { time: 1795375223, tags: [4], active: -1, explicit: true })
  t.deepEqual(parseCompound('1:', 1), { time: 1, tags: [0], active: -1, explicit: true })
  t.deepEqual(parseCompound('1:2:3', 1), { time: 1, tags: [23], active: -1, explicit: true })
  t.deepEqual(parseCompound('1:-1', 1), { time: 1, tags: [-1], active: -1, explicit: true })
  t.deepEqual(parseCompound('1:99999999999', 1), { time: 1, tags: [MAX_TAG], active: -1, explicit: true })
  t.deepEqual(parseCompound('7:[1', 1), { time: 7, tags: [1], active: 0, explicit: true })
  t.deepEqual(parseCompound('7:[1],-', 2), { time: 7, tags: [1, -1], active: 0, explicit: true })
  t.deepEqual(parseCompound('0001:0', 1), { time: 1, tags: [0], active: -1, explicit: true })
  const big = parseCompound('9223372036854775807:0', 1)
  t.true(big !== INVALID && big !== ABSENT && big.time > 9e18)
})

test('parseCompound: seconds 0 means "oldest", whatever the tags', (t) => {
  t.deepEqual(parseCompound('0:0', 1), { time: 0, tags: [-1], active: -1, explicit: false })
  t.deepEqual(parseCompound('0:5', 1), { time: 0, tags: [-1], active: -1, explicit: false })
  t.deepEqual(parseCompound('0:[1],2', 2), { time: 0, tags: [-1, -1], active: -1, explicit: false })
  t.deepEqual(makeCursor(0, [3], 0), { time: 0, tags: [-1], active: -1, explicit: false })
})

test('parseHttpDate: the three HTTP date forms', (t) => {
  const sec = 784111777 // Sun, 06 Nov 1994 08:49:37 GMT
  t.is(parseHttpDate('Sun, 06 Nov 1994 08:49:37 GMT'), sec)
  t.is(parseHttpDate('Sunday, 06-Nov-94 08:49:37 GMT'), sec)
  t.is(parseHttpDate('Sun Nov  6 08:49:37 1994'), sec)
  t.is(parseHttpDate('Sun Nov 16 08:49:37 1994'), sec + 10 * 86400)
  t.is(parseHttpDate('  Sun, 06 Nov 1994 08:49:37 GMT  '), sec)
  t.is(parseHttpDate('Thu, 01 Jan 1970 00:00:00 GMT'), 0)
  t.is(parseHttpDate('Fri, 31 Dec 9999 23:59:59 GMT'), 253402300799)
  // RFC 850 two-digit years: < 70 is 20xx
  t.is(parseHttpDate('Monday, 01-Jan-30 00:00:00 GMT'), Date.UTC(2030, 0, 1) / 1000)
  t.is(parseHttpDate('Thursday, 01-Jan-70 00:00:00 GMT'), 0)
  // every month name
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
  months.forEach((m, i) => t.is(parseHttpDate(`Mon, 01 ${m} 2024 00:00:00 GMT`), Date.UTC(2024, i, 1) / 1000, m))
})

test('parseHttpDate: as nginx reads If-Modified-Since for Nchan, whatever follows the time is not looked at (another zone, none, junk: GMT)', (t) => {
  const sec = 784111777 // Sun, 06 Nov 1994 08:49:37 GMT
  // PHP date('r'), Python formatdate(), a zone name, none, junk
  for (const v of ['Sun, 06 Nov 1994 08:49:37 +0000', 'Sun, 06 Nov 1994 08:49:37 -0000', 'Sun, 06 Nov 1994 08:49:37 UTC',
    'Sun, 06 Nov 1994 08:49:37', 'Sun, 06 Nov 1994 08:49:37 GMT junk', 'Sun, 06 Nov 1994 08:49:37 +0100', 'Sunday, 06-Nov-94 08:49:37',
    'Sun Nov  6 08:49:37 1994 GMT', 'Mon, 06 Nov 1994 08:49:37 GMT', 'Sun,  06 Nov 1994 08:49:37 GMT']) {
    t.is(parseHttpDate(v), sec, v)
  }
  t.is(parseHttpDate('Thu, 29 Feb 2024 00:00:00 +0000'), Date.UTC(2024, 1, 29) / 1000)
})

test('parseHttpDate: anything else is NaN', (t) => {
  for (const v of ['', 'garbage', 'x'.repeat(300), 'Sun, 06 Foo 1994 08:49:37 GMT', 'Sun, 06 Nov 1994 08:49', 'Sun, 06 Nov 1994 8:49:37 GMT',
    '1994-11-06T08:49:37Z', '784111777', 'Sun, 6 Nov 1994 08:49:37 GMT', 'Sun, 06 nov 1994 08:49:37 GMT', 'Sun, 06 anF 1994 08:49:37 GMT',
    'Sun, 06 Nov 1994 24:00:00 GMT', 'Sun, 06 Nov 1994 08:60:00 GMT', 'Sun, 06 Nov 1994 08:49:60 GMT', 'Sun, 31 Nov 1994 08:49:37 GMT',
    'Sun, 00 Nov 1994 08:49:37 GMT', 'Wed, 29 Feb 2023 00:00:00 GMT', 'Sun, 29 Feb 1900 00:00:00 GMT', 'Sun, 06 Nov 94 08:49:37 GMT',
    'Sun, 06-Nov 1994 08:49:37 GMT', 'Sun Nov  6 08:49:37', 'Sun Nov 6 08:49:37 94', 'Sun, 06 Nov 1994 08-49-37 GMT']) {
    t.true(Number.isNaN(parseHttpDate(v)), v)
  }
})

test('formatHttpDate round-trips with parseHttpDate', (t) => {
  for (const s of [0, 784111777, 1795375223]) t.is(parseHttpDate(formatHttpDate(s)), s)
  t.is(formatHttpDate(784111777), 'Sun, 06 Nov 1994 08:49:37 GMT')
})

test('formatting ids, tag lists and cursors', (t) => {
  t.is(formatId(1795375223, 0), '1795375223:0')
  t.is(formatId(5, -1), '5:-')
  t.is(formatTags([1, 0, -1], 0), '[1],0,-')
  t.is(formatTags([-1, 0], 1), '-,[0]')
  t.is(formatVector(7, [3], 0), '7:3')
  t.is(formatVector(7, [3, -1], 0), '7:[3],-')
  t.is(formatCursor({ time: 9, tags: [2, -1], active: 0, explicit: true }), '9:[2],-')
  t.true(idAfter(2, 0, 1, 5))
  t.true(idAfter(2, 1, 2, 0))
  t.false(idAfter(2, 0, 2, 0))
  t.true(idAfter(2, 0, 2, -1))
})
