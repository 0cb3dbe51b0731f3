// A buffered message keeps only its own bytes (lib/message.ts): its body and its SSE frame each in a
// backing store of their own, never a view that pins a shared slab or a larger frame.
import { once } from 'node:events'
import net from 'node:net'
import test from 'ava'
import { FRAME_MAX, FRAME_SLAB, Message, frameAlloc, frameSseData, owned, unpinned, writeShared } from '../../lib/message.ts'

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

test('with frameAlloc (a process whose buffers copy into an arena) the frame is a view of a shared slab until keep() gives it a store of its own', (t) => {
  const m = new Message(5, 2, Buffer.from('pooled body'), null, 'ev', 0, -1, frameAlloc)
  const f = m.sseFrame()
  t.is(f.toString('latin1'), 'event: ev\nid: 5:2\ndata: pooled body\n\n')
  t.true(f.buffer.byteLength > f.length + 1024, 'a view of the slab')
  t.true(m.framed)
  t.is(m.stored, f)
  const data = m.data
  const sseData = m.sseData()
  m.keep()
  const kept = m.sseFrame()
  t.not(kept, f)
  t.is(kept.buffer.byteLength, kept.length, 'a store of its own')
  t.true(kept.equals(f))
  t.true(m.framed)
  t.is(m.stored, kept)
  // the body and the data lines are views of the kept frame now, with the same bytes as before
  t.is(m.data.buffer, kept.buffer)
  t.true(m.data.equals(data))
  t.is(m.sseData().buffer, kept.buffer)
  t.true(m.sseData().equals(sseData))
  m.keep()
  t.is(m.sseFrame(), kept, 'keep() again copies nothing')
  // a body with LF: its own copy in the pool, stored apart from the frame built later
  const lf = new Message(6, 0, Buffer.from('xa\nb').subarray(1), null, null, 0, -1, frameAlloc)
  t.true(lf.data.buffer.byteLength > lf.data.length + 1024)
  t.is(lf.sseFrame().toString('latin1'), 'id: 6:0\ndata: a\ndata: b\n\n')
  t.false(lf.framed, 'the frame does not hold the body as its tail')
  t.is(lf.stored, lf.data)
  lf.keep()
  t.is(lf.data.buffer.byteLength, 3)
  t.is(lf.data.toString(), 'a\nb')
  t.false(lf.framed)
  // the default: stores of their own, nothing for keep() to do
  const own = new Message(7, 0, Buffer.from('x'), null, null, 0)
  const ownFrame = own.sseFrame()
  own.keep()
  t.is(own.sseFrame(), ownFrame)
})

test('unpinned: a view of a much larger store is copied; a store of its own, or a body\'s view of its frame, is not', (t) => {
  const pool = Buffer.allocUnsafe(100)
  pool.fill(7)
  t.true(pool.buffer.byteLength > 1124)
  const copy = unpinned(pool)
  t.not(copy, pool)
  t.is(copy.buffer.byteLength, 100)
  t.true(copy.equals(pool))
  const own = Buffer.allocUnsafeSlow(100)
  t.is(unpinned(own), own)
  const m = new Message(1, 0, Buffer.from('body'), null, null, 0)
  t.is(unpinned(m.data), m.data, 'a body differs from its frame by the head alone')
  const big = Buffer.allocUnsafeSlow(10000)
  const most = big.subarray(0, 9000)
  t.is(unpinned(most), most, 'within PIN_SLACK of its store')
  t.is(unpinned(big.subarray(0, 10)).buffer.byteLength, 10)
})

test('frameAlloc: frames one after another in a shared slab, 8-byte aligned, never overlapping; a large one has a store of its own', (t) => {
  const frames: Buffer[] = []
  for (let i = 0; i < 400; i++) {
    const size = 1 + (i * 37) % 700
    const b = frameAlloc(size)
    t.is(b.length, size)
    b.fill(i & 255)
    frames.push(b)
  }
  for (let i = 0; i < frames.length; i++) {
    const b = frames[i]!
    t.is(b.buffer.byteLength, FRAME_SLAB)
    t.is(b.byteOffset % 8, 0)
    t.true(b.byteOffset + b.length <= FRAME_SLAB)
    // every frame still holds what was written into it: none was handed out twice
    t.true(b.every((x) => x === (i & 255)), `frame ${i} was overwritten`)
  }
  t.true(new Set(frames.map((b) => b.buffer)).size > 1, 'a full slab is followed by a new one')
  const big = frameAlloc(FRAME_MAX + 1)
  t.is(big.buffer.byteLength, big.length)
  // FRAME_MAX is the largest taken from a slab; every view of one is one the copies take out of it
  const largest = frameAlloc(FRAME_MAX)
  t.is(largest.length, FRAME_MAX)
  t.is(largest.buffer.byteLength, FRAME_SLAB)
  t.not(unpinned(largest), largest)
  t.is(unpinned(frames[0]!).buffer.byteLength, frames[0]!.length, 'a frame of the slab is copied where it would stay')
})

test('writeShared: every socket a slab frame waits on holds one copy of it, a store of its own; a socket with nothing queued holds none', async (t) => {
  const accepted: net.Socket[] = []
  const server = net.createServer((s) => {
    // (a reset at the end, with bytes still queued, is not this test's failure)
    s.on('error', () => {})
    accepted.push(s)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as net.AddressInfo
  const clients: net.Socket[] = []
  try {
    for (let i = 0; i < 3; i++) {
      const c = net.connect(port, '127.0.0.1')
      c.on('error', () => {})
      c.pause()
      clients.push(c)
      await once(c, 'connect')
    }
    while (accepted.length < 3) await new Promise((resolve) => setImmediate(resolve))
    const [a, b, idle] = accepted as [net.Socket, net.Socket, net.Socket]
    // more than loopback's kernel buffers take from a client that does not read: the rest stays queued
    const filler = Buffer.alloc(32 * 1024 * 1024, 0x2e)
    a.write(filler)
    b.write(filler)
    await new Promise((resolve) => setTimeout(resolve, 100))
    t.true(a.writableLength > 0 && b.writableLength > 0)
    t.is(idle.writableLength, 0)
    // Node's Writable keeps its queue in writableBuffer (untyped in @types/node)
    const last = (s: net.Socket): Buffer => (s as unknown as { writableBuffer: Array<{ chunk: Buffer }> }).writableBuffer.at(-1)!.chunk
    const frames = [frameAlloc(100).fill(0x41), frameAlloc(100).fill(0x42)]
    t.true(frames[0]!.buffer.byteLength > 100 + 1024, 'a view of a slab')
    const held: Buffer[] = []
    for (const frame of frames) {
      writeShared(a, frame)
      writeShared(b, frame)
      writeShared(idle, frame)
      t.is(last(a), last(b), 'the same Buffer on both queues')
      t.not(last(a), frame)
      t.is(last(a).buffer.byteLength, 100, 'a store of its own')
      t.true(last(a).equals(frame))
      held.push(last(a))
    }
    t.not(held[0], held[1], 'each frame its own copy')
    t.is(idle.writableLength, 0, 'written at once')
    // what the clients read: the filler, then the two frames
    const tails = await Promise.all(clients.map(async (c, i) => {
      const want = (i < 2 ? filler.length : 0) + 200
      let got = 0
      const tail: Buffer[] = []
      c.on('data', (d: Buffer) => {
        got += d.length
        tail.push(d)
        if (tail.length > 4) tail.shift()
      })
      c.resume()
      while (got < want) await once(c, 'data')
      return Buffer.concat(tail).subarray(-200)
    }))
    for (const tail of tails) t.is(tail.toString('latin1'), 'A'.repeat(100) + 'B'.repeat(100))
  } finally {
    for (const c of clients) c.destroy()
    server.close()
  }
})

test('frameSseData matches a byte-by-byte model of the SSE line rule for every short body over a, CR and LF, and its frame is exactly as long as it writes', (t) => {
  // the model: each LF ends a data: line (dropped), each lone CR ends one (kept, then an LF)
  const model = (b: Buffer): string => {
    let out = 'data: '
    for (let i = 0; i < b.length; i++) {
      const c = b[i]!
      if (c === 10) out += '\ndata: '
      else if (c === 13 && i + 1 < b.length && b[i + 1] !== 10) out += '\r\ndata: '
      else out += String.fromCharCode(c)
    }
    return out + '\n\n'
  }
  let bodies = 0
  const alphabet = [97, 13, 10]
  for (let len = 0; len <= 7; len++) {
    for (let n = 0; n < 3 ** len; n++) {
      const b = Buffer.alloc(len)
      for (let i = 0, v = n; i < len; i++, v = Math.floor(v / 3)) b[i] = alphabet[v % 3]!
      const framed = frameSseData(b, 'id: 1:0\n')
      t.is(framed.toString('latin1'), 'id: 1:0\n' + model(b), JSON.stringify(b.toString('latin1')))
      bodies++
    }
  }
  t.is(bodies, 3280)
})
