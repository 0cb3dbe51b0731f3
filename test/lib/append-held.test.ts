// lib/raw-publish.ts appendHeld: the bytes a raw connection receives while a request is being
// handled, each read appended to what came before. Joined anew per read (Buffer.concat) that
// copied every held byte again per read: a client sending one byte at a time made 64 KiB cost
// gigabytes of copying.
import test from 'ava'
import { appendHeld } from '../../lib/raw-publish.ts'

test('appended one byte at a time, 64 KiB are the bytes sent, in a handful of stores, not one per read', (t) => {
  const n = 65536
  let held: Buffer | null = null
  const stores = new Set<ArrayBufferLike>()
  for (let i = 0; i < n; i++) {
    held = appendHeld(held, Buffer.from([i & 0xff]))
    stores.add(held.buffer)
  }
  t.is(held!.length, n)
  for (let i = 0; i < n; i++) if (held![i] !== (i & 0xff)) return t.fail(`byte ${i}`)
  // each store twice the last (the first exact, from 4 KiB): about log2(64 Ki / 4 Ki) + 2 of them
  // (plus Node's pool, which a one-byte Buffer.from comes from), where a join per read made 65,535
  t.true(stores.size <= 8, `${stores.size} stores`)
})

test('a view handed out before (a request\'s body) keeps its bytes while later reads are appended', (t) => {
  let held = appendHeld(Buffer.from('POST /pub/a HTTP/1.1\r\n'), Buffer.from('Content-Length: 3\r\n\r\n'))
  held = appendHeld(held, Buffer.from('abc'))
  const body = held.subarray(held.length - 3)
  // the request is taken: what is held is the rest of the read (nothing), then more comes
  let rest = held.subarray(held.length)
  rest = appendHeld(rest, Buffer.from('POST /pub/b'))
  rest = appendHeld(rest, Buffer.from(' HTTP/1.1\r\n'))
  rest = appendHeld(rest, Buffer.from('X'.repeat(10000)))
  t.is(body.toString(), 'abc')
  t.is(rest.toString(), 'POST /pub/b HTTP/1.1\r\n' + 'X'.repeat(10000))
  // a remainder cut from the front, then appended to: the bytes in order
  let tail = appendHeld(Buffer.from('0123456789'), Buffer.from('abcdef')).subarray(4)
  tail = appendHeld(tail, Buffer.from('ghij'))
  tail = appendHeld(tail, Buffer.from('klmn'))
  t.is(tail.toString(), '456789abcdefghijklmn')
})

test('a Buffer appendHeld did not make is never written past its end, even where its store has room', (t) => {
  // a view into a larger store (Node's pool, a read's slab): its room may be someone else's bytes
  const store = Buffer.from('held....|someone else\'s')
  const held = store.subarray(0, 4)
  const out = appendHeld(held, Buffer.from('more'))
  t.is(out.toString(), 'heldmore')
  t.is(store.toString(), 'held....|someone else\'s')
  t.not(out.buffer, store.buffer)
})

test('appended into a store\'s room only where the Buffer ends at the last byte written there: an older, shorter view is copied', (t) => {
  // a store of appendHeld's own with room: '0123456789' written, 4 KiB in all
  let a = appendHeld(Buffer.from('0123'), Buffer.from('4567'))
  a = appendHeld(a, Buffer.from('89'))
  const body = a.subarray(2, 6)
  // a view that ends before the store's last written byte: its room is a's bytes '6789'
  const stale = appendHeld(a.subarray(0, 6), Buffer.from('XY'))
  t.is(stale.toString(), '012345XY')
  t.not(stale.buffer, a.buffer)
  t.is(a.toString(), '0123456789')
  // the remainder after a request (ends at the last byte written): appended in the room
  const rest = appendHeld(a.subarray(6), Buffer.from('ab'))
  t.is(rest.toString(), '6789ab')
  t.is(rest.buffer, a.buffer)
  t.is(a.toString(), '0123456789')
  t.is(body.toString(), '2345')
})
