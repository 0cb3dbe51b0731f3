import test from 'ava'
import { deserialize, serialize } from 'node:v8'
import { decodeBatch, encodeBatch } from '../../lib/mesh-codec.ts'

const body = Buffer.from('héllo\n\u0000\xff world')
const info = { messages: 3, requested: -1, subscribers: 0, lastMessageId: '1796514622:2' }

/** What a batch is after the mesh: as v8.deserialize(v8.serialize(batch)) gives it, Buffers as Buffers. */
function viaV8 (batch: unknown[]): unknown {
  return normalize(deserialize(serialize(batch)))
}

function normalize (v: unknown): unknown {
  if (v instanceof Uint8Array) return ['bytes', Buffer.from(v).toString('hex')]
  if (Array.isArray(v)) return v.map(normalize)
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalize(x)]))
  return v
}

const batches: Record<string, unknown[]> = {
  'a publish to an owner': [['pub', 7, 'chan/é', body, 'text/plain', null, null, '']],
  'a publish with an Idempotency-Key': [['pub', 8, 'c', body, null, 'ev', 'key-1', 'fp']],
  'a publish without its fingerprint slot': [['pub', 9, 'c', Buffer.alloc(0), null, null, null]],
  'a message': [['m', 'c', 1796514622, 3, body, 'application/json', 'update', 1796514622123.25]],
  'a message with its key and fingerprint': [['m', 'c', 1796514622, 0, body, null, null, 0, 'k', 'f']],
  'answers': [['r', 1, null], ['r', 2, info], ['r', 3, { status: 201, info }], ['r', 4, { status: 202, info, replayed: true }],
    ['r', 5, { status: 201, info, conflict: true }], ['r', 6, { status: 201, info, replayed: false, conflict: false }]],
  'acks and clock': [['a', 3], ['t', 1796514622]],
  'numbers past 2^32, negative, fractional': [['m', 'c', 2 ** 40, 2 ** 33 + 1, body, null, null, -1.5], ['r', -1, { ...info, messages: 2 ** 53 - 1 }]],
  'entries of other kinds': [['sub', ['a', 'b'], 1], ['own', ['c', 1, 2, 3, 4, [[1, 2, body, null, null, 5]], true], 2, []], ['synced'], ['d', 'c']],
  'a mixed batch in order': [['t', 5], ['sub', ['x'], -1, 1], ['pub', 1, 'x', body, null, null, null, ''], ['r', 1, info], ['m', 'x', 1, 0, body, null, null, 2], ['a', 1]],
  // what UTF-8 cannot carry unchanged, and shapes the codec does not know, go through v8 whole
  'a lone surrogate in a channel id': [['pub', 1, 'a\ud800b', body, null, null, null, ''], ['m', '\udc00', 1, 0, body, null, null, 2]],
  'a lone surrogate in the last message id': [['r', 1, { ...info, lastMessageId: 'x\ud800' }]],
  'an answer with another field': [['r', 1, { status: 201, info, extra: 1 }], ['r', 2, { ...info, more: 'x' }]],
  'an answer of another status': [['r', 1, { status: 503, info }]],
  'a body that is not bytes': [['pub', 1, 'c', 'text', null, null, null, ''], ['m', 'c', 1, 0, null, null, null, 2]],
  'an undefined passed for a field': [['pub', 1, 'c', body, null, null, null, undefined], ['m', 'c', 1, 0, body, null, null, 2, 'k', undefined],
    ['r', 1, { status: 201, info, replayed: undefined }], ['pub', 2, 'c', body, undefined, null, null, '']],
  'an entry longer than known': [['pub', 1, 'c', body, null, null, null, '', 'x'], ['a', 1, 2]],
  'an empty batch': []
}

for (const [name, batch] of Object.entries(batches)) {
  test(`mesh frames: ${name} comes back as v8 would give it`, (t) => {
    const decoded = decodeBatch(encodeBatch(batch))
    t.deepEqual(normalize(decoded), viaV8(batch))
    // bodies come back as Buffers (lib/cluster.ts toBuffer copies what it keeps)
    for (const e of decoded as unknown[][]) for (const x of e) if (x instanceof Uint8Array) t.true(Buffer.isBuffer(x))
  })
}

test('mesh frames: the hand-written entries are smaller than v8\'s and carry no serializer header', (t) => {
  const batch = [['pub', 7, 'c', body, null, null, null, ''], ['r', 2, { status: 201, info }], ['a', 1]]
  const frame = encodeBatch(batch)
  // the first byte is an entry tag, not v8's version tag 0xff
  t.is(frame[0], 1)
  t.true(frame.length < serialize(batch).length)
})

test('mesh frames: a truncated or unknown entry throws, at every cut', (t) => {
  const frame = encodeBatch([['pub', 7, 'chan', body, 'text/plain', 'e', 'k', 'fp'], ['m', 'c', 1, 2, body, null, null, 3], ['r', 1, { status: 201, info, replayed: true }], ['sub', ['x'], 1]])
  for (let cut = 1; cut < frame.length; cut++) {
    const part = frame.subarray(0, cut)
    let threw = false
    try { decodeBatch(part) } catch { threw = true }
    // a cut between whole entries decodes to fewer entries; any other cut throws
    if (!threw) t.true(decodeBatch(part).length < 4, `cut at ${cut}`)
  }
  t.throws(() => decodeBatch(Buffer.from([0x7f])))
  t.throws(() => decodeBatch(Buffer.from([3, 0, 0, 0, 0, 0, 0, 0, 0, 9])))
  // an entry v8 carries must be an entry: an array named by a string
  for (const v of [null, 'x', { a: 1 }, [1, 2], []]) {
    const blob = serialize(v)
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), blob])
    frame.writeUInt32BE(blob.length, 1)
    t.throws(() => decodeBatch(frame))
  }
})

test('mesh frames: headroom leaves the caller its bytes ahead of the same body', (t) => {
  const batch = [['pub', 7, 'c', body, null, null, null, ''], ['sub', ['x'], 1], ['a', 2]]
  const plain = encodeBatch(batch)
  const framed = encodeBatch(batch, 4)
  t.is(framed.length, plain.length + 4)
  t.true(framed.subarray(4).equals(plain))
})
