// A buffered message keeps only its own bytes (lib/message.ts): its body and its SSE frame each in a
// backing store of their own, never a view that pins a shared slab or a larger frame.
import test from 'ava'
import { Message, frameSseData, owned } from '../../lib/message.ts'

test('a body that is a view of a larger store is copied into the message\'s own; without LF that store is its SSE frame', (t) => {
  const pooled = Buffer.from('hello') // under 4 KiB: a view of Node's shared slab
  t.true(pooled.buffer.byteLength > pooled.length)
  const m = new Message(1, 0, pooled, null, null, 0)
  t.is(m.data.toString(), 'hello')
  // one store: the frame, whose tail is the body
  const f = m.sseFrame()
  t.is(f.toString('latin1'), 'id: 1:0\ndata: hello\n\n')
  t.is(f.buffer.byteLength, f.length)
  t.is(m.data.buffer, f.buffer)
  t.is(m.sseData().toString('latin1'), 'data: hello\n\n')
  t.is(m.sseData().buffer, f.buffer)
  t.is(m.id, '1:0')
  // a body with LF is kept on its own (its frame is not a copy of it)
  const lines = Buffer.from('xxa\nbyy').subarray(2, 5)
  const m2 = new Message(2, 1, lines, null, null, 0)
  t.is(m2.data.toString(), 'a\nb')
  t.is(m2.data.byteOffset, 0)
  t.is(m2.data.buffer.byteLength, 3)
  const empty = new Message(3, 0, Buffer.alloc(0), 'text/plain', null, 0)
  t.is(empty.data.length, 0)
  t.is(empty.sseFrame().toString('latin1'), 'id: 3:0\ndata: \n\n')
  t.is(empty.contentType, 'text/plain')
  const batch = Buffer.from('xxxxhelloyyyy')
  t.is(owned(batch.subarray(4, 9)).buffer.byteLength, 5)
  const own = Buffer.allocUnsafeSlow(3)
  t.is(owned(own), own)
  t.is(owned(Buffer.alloc(0)).length, 0)
})

test('the SSE frame is built in one store of its own, and equals id lines plus the data lines', (t) => {
  const m = new Message(1700000000, 3, Buffer.from('a\nb'), null, 'tick', 0)
  const f = m.sseFrame()
  t.is(f.toString('latin1'), 'event: tick\nid: 1700000000:3\ndata: a\ndata: b\n\n')
  t.is(f.byteOffset, 0)
  t.is(f.buffer.byteLength, f.length)
  t.is(m.sseFrame(), f)
  t.is(m.sseData().toString('latin1'), 'data: a\ndata: b\n\n')
  t.is(frameSseData(Buffer.from(''), 'id: 1\n').toString('latin1'), 'id: 1\ndata: \n\n')
})

test('the frames a message keeps for WebSocket, multipart and chunked subscribers are in stores of their own', (t) => {
  const m = new Message(1700000000, 4, Buffer.from('hello'), 'text/plain', null, 0)
  for (const f of [m.wsFrame(), m.wsMetaFrame(), m.multipartPart(), m.chunk()]) {
    t.is(f.byteOffset, 0)
    t.is(f.buffer.byteLength, f.length)
  }
  t.is(m.chunk().toString('latin1'), '5\r\nhello\r\n')
})
