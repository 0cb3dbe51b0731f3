import test from 'ava'
import { ByteArena, MAX_SLOT, slotSize } from '../../lib/byte-arena.ts'
import { MessageBuffer } from '../../lib/message-buffer.ts'
import { Message } from '../../lib/message.ts'

const msg = (time: number, tag: number): Message => new Message(time, tag, Buffer.from(`${time}:${tag}`), null, null, 0)

/** The oldest id, then push (as the core does: the evicted message's id becomes the floor). */
function push (b: MessageBuffer, m: Message): string | null {
  const evicted = b.full ? `${b.timeAt(0)}:${b.tagAt(0)}` : null
  b.push(m)
  return evicted
}

test('push evicts the oldest once full', (t) => {
  const b = new MessageBuffer(3)
  t.is(push(b, msg(1, 0)), null)
  t.is(push(b, msg(1, 1)), null)
  t.is(push(b, msg(2, 0)), null)
  t.true(b.full)
  t.is(push(b, msg(2, 1)), '1:0')
  t.is(b.size, 3)
  t.is(b.oldest()?.id, '1:1')
  t.is(b.newest()?.id, '2:1')
})

test('firstAfter finds the first id greater than the cursor, tag -1 meaning the whole second', (t) => {
  const b = new MessageBuffer(10)
  for (const [s, g] of [[5, 0], [5, 1], [6, 0], [8, 0], [8, 1]] as const) b.push(msg(s, g))
  t.is(b.firstAfter(0, -1)?.id, '5:0')
  t.is(b.firstAfter(5, 0)?.id, '5:1')
  t.is(b.firstAfter(5, 1)?.id, '6:0')
  t.is(b.firstAfter(7, 3)?.id, '8:0')
  t.is(b.firstAfter(8, -1)?.id, '8:0')
  t.is(b.firstAfter(8, 1), null)
  t.is(b.firstAfter(9, 0), null)
})

test('shift (expiry) then refill keeps order and never evicts before capacity', (t) => {
  const b = new MessageBuffer(4)
  b.push(msg(1, 0)); b.push(msg(1, 1)); b.push(msg(1, 2))
  t.is(b.oldest()?.id, '1:0')
  b.shift()
  t.is(b.oldest()?.id, '1:1')
  b.shift()
  t.is(push(b, msg(2, 0)), null)
  t.is(push(b, msg(2, 1)), null)
  t.is(push(b, msg(2, 2)), null)
  t.is(b.size, 4)
  const ids: string[] = []
  for (let i = 0; i < b.size; i++) ids.push(b.at(i).id)
  t.deepEqual(ids, ['1:2', '2:0', '2:1', '2:2'])
  t.is(push(b, msg(3, 0)), '1:2')
  t.is(b.firstAfter(2, 0)?.id, '2:1')
})

test('wrap-around after many pushes stays searchable', (t) => {
  const b = new MessageBuffer(5)
  for (let i = 0; i < 23; i++) b.push(msg(100 + i, 0))
  t.is(b.oldest()?.id, '118:0')
  t.is(b.firstAfter(119, 0)?.id, '120:0')
  t.is(b.firstAfter(50, 0)?.id, '118:0')
})

test('a message read back has the body, content type, event and publish time it was pushed with', (t) => {
  const b = new MessageBuffer(8)
  const pushed = [
    new Message(10, 0, Buffer.from('plain'), 'text/plain', null, 1000.25),
    new Message(10, 1, Buffer.from('two\nlines'), null, 'update', 1001.5),
    new Message(10, 2, Buffer.alloc(0), 'application/octet-stream', null, 1002),
    new Message(11, 0, Buffer.from('é ü €', 'utf8'), 'text/plain; charset=utf-8', 'naïve', 1003)
  ]
  for (const m of pushed) b.push(m)
  // new messages in between take the cache's entries: the reads below are made from the bytes
  const other = new MessageBuffer(1024)
  for (let i = 0; i < 1024; i++) other.push(msg(1, i))
  for (let i = 0; i < pushed.length; i++) {
    const m = b.at(i)
    const p = pushed[i]!
    t.not(m, p, 'made again from the stored bytes')
    t.is(m.id, p.id)
    t.deepEqual(m.data, p.data)
    t.is(m.contentType, p.contentType)
    t.is(m.event, p.event)
    t.is(m.publishedAt, p.publishedAt)
    t.deepEqual(m.sseFrame(), p.sseFrame())
    t.deepEqual(m.wsFrame(), p.wsFrame())
  }
  t.is(b.publishedAtOf(1), 1001.5)
})

test('the message just published, and one just read, are the same object for the next reader (frames shared)', (t) => {
  const b = new MessageBuffer(4)
  const m = new Message(1, 0, Buffer.from('x'), null, null, 0)
  b.push(m)
  t.is(b.firstAfter(0, -1), m)
  const other = new MessageBuffer(1024)
  for (let i = 0; i < 1024; i++) other.push(msg(2, i))
  const again = b.at(0)
  t.not(again, m)
  t.is(b.at(0), again)
})

test('without an arena, a buffered message keeps the bytes it was sent in, not a copy: read back, its frame is the same memory', (t) => {
  const b = new MessageBuffer(4)
  const plain = new Message(1, 0, Buffer.from('no line feed'), null, 'tick', 0)
  const lines = new Message(1, 1, Buffer.from('a\nb'), null, null, 0)
  const frame = plain.sseFrame()
  const body = lines.data
  b.push(plain)
  b.push(lines)
  const other = new MessageBuffer(256)
  for (let i = 0; i < 256; i++) other.push(msg(2, i))
  const p = b.at(0)
  const l = b.at(1)
  t.not(p, plain)
  t.is(p.sseFrame().buffer, frame.buffer, 'the SSE frame is the one it was published with')
  t.is(p.data.buffer, frame.buffer, 'and the body a view of it')
  t.is(p.data.toString(), 'no line feed')
  t.is(p.event, 'tick')
  t.is(l.data.buffer, body.buffer, 'a body with LF: its own store')
  t.is(l.sseFrame().toString(), 'id: 1:1\ndata: a\ndata: b\n\n')
})

test('with an arena, a message read back is a copy in a store of its own: the slot it came from can be written again without changing it', (t) => {
  const arena = new ByteArena()
  const b = new MessageBuffer(2, arena)
  const plain = new Message(1, 0, Buffer.from('no line feed'), null, 'tick', 0)
  const lines = new Message(1, 1, Buffer.from('a\nb'), null, null, 0)
  b.push(plain)
  b.push(lines)
  const other = new MessageBuffer(256)
  for (let i = 0; i < 256; i++) other.push(msg(2, i))
  const p = b.at(0)
  const l = b.at(1)
  t.not(p, plain)
  t.not(p.sseFrame().buffer, plain.sseFrame().buffer, 'not the published frame')
  t.is(p.sseFrame().toString(), 'event: tick\nid: 1:0\ndata: no line feed\n\n')
  t.is(p.data.buffer, p.sseFrame().buffer, 'the body a view of the copy')
  t.is(l.sseFrame().toString(), 'id: 1:1\ndata: a\ndata: b\n\n')
  // both leave; their slots take new messages of the same sizes
  b.push(new Message(1, 2, Buffer.from('NO LINE FEED'), null, 'tock', 0))
  b.push(new Message(1, 3, Buffer.from('A\nB'), null, null, 0))
  t.is(p.sseFrame().toString(), 'event: tick\nid: 1:0\ndata: no line feed\n\n', 'a message read back keeps its bytes')
  t.is(l.data.toString(), 'a\nb')
  t.is(b.at(0).data.toString(), 'NO LINE FEED')
  t.is(b.at(1).data.toString(), 'A\nB')
  t.is(arena.used, slotSize(b.at(0).sseFrame().length) + slotSize(3), 'two slots in use')
})

test('every way a message leaves frees its slot: eviction, expiry, clear', (t) => {
  const arena = new ByteArena()
  const b = new MessageBuffer(3, arena)
  for (let i = 0; i < 10; i++) b.push(msg(1, i))
  const one = slotSize(b.at(0).sseFrame().length)
  t.is(arena.used, 3 * one)
  b.shift()
  t.is(arena.used, 2 * one)
  b.clear()
  t.is(arena.used, 0)
  t.is(b.size, 0)
  b.push(msg(2, 0))
  t.is(arena.used, one)
  b.shift()
  t.is(arena.used, 0)
  // a message past the arena's largest slot is kept outside it, and read back the same
  const big = Buffer.alloc(MAX_SLOT + 1, 120)
  b.push(new Message(3, 0, big, null, null, 0))
  b.push(msg(3, 1))
  t.is(arena.used, one)
  const other = new MessageBuffer(256)
  for (let i = 0; i < 256; i++) other.push(msg(4, i))
  t.true(b.at(0).data.equals(big))
  b.clear()
  t.is(arena.used, 0)
})

test('an emptied buffer lets its arrays go and starts again', (t) => {
  const b = new MessageBuffer(4)
  b.push(msg(1, 0)); b.push(msg(1, 1))
  b.shift(); b.shift()
  t.is(b.size, 0)
  t.is(b.oldest(), null)
  t.is(b.firstAfter(0, -1), null)
  b.push(msg(2, 0))
  t.is(b.oldest()?.id, '2:0')
  t.is(b.bytes, 3)
  b.clear()
  t.is(b.size, 0)
  t.is(b.bytes, 0)
  t.is(b.firstAfter(0, -1), null)
  b.push(msg(3, 0))
  t.is(b.firstAfter(0, -1)?.id, '3:0')
})

test('messages of every kind (content types and events interned or past the bound) through eviction, expiry, growth and wrap-around read back intact and in order', (t) => {
  // a fixed-seed generator: the same sequence every run
  let seed = 12345
  const rnd = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
    return seed % n
  }
  for (const [capacity, arena] of [1, 2, 7, 100].flatMap((c) => [[c, new ByteArena()], [c, null]] as const)) {
    const b = new MessageBuffer(capacity, arena)
    const model: Array<{ id: string, body: Buffer, type: string | null, event: string | null, at: number, slot: number }> = []
    let time = 1
    let tag = 0
    for (let step = 0; step < 3000; step++) {
      const op = rnd(10)
      if (op < 7) {
        const r = rnd(100)
        const size = r < 5 ? 0 : r < 90 ? 1 + rnd(600) : 600 + rnd(20000)
        const body = Buffer.alloc(size)
        const salt = rnd(256)
        for (let i = 0; i < size; i++) body[i] = (salt + i * 7) & 255
        if (rnd(4) === 0 && size > 2) body[1] = 10
        if (rnd(3) === 0) { time++; tag = 0 } else tag++
        // one in ten of each is new: past the 64 interned per process, they are kept as given (kind -1)
        const type = rnd(10) === 0 ? `x/t${step}` : rnd(3) === 0 ? null : ['text/plain', 'application/json', 'application/octet-stream'][rnd(3)]!
        const event = rnd(10) === 0 ? `ev${step}` : rnd(4) === 0 ? 'e' + rnd(5) : null
        const m = new Message(time, tag, body, type, event, step + 0.5)
        // the ways a message is used before it is buffered: its frames built, or not
        if (rnd(2) === 0) m.sseFrame()
        if (rnd(3) === 0) void m.data
        if (model.length === capacity) model.shift()
        model.push({ id: `${time}:${tag}`, body, type, event, at: step + 0.5, slot: Math.max(0, slotSize(m.stored.length)) })
        b.push(m)
      } else if (op < 9) {
        if (rnd(20) === 0) {
          model.length = 0
          b.clear()
        } else {
          model.shift()
          b.shift()
        }
      } else {
        // every message, in order, as stored (read past the cache: another buffer takes its entries)
        const other = new MessageBuffer(256)
        for (let i = 0; i < 256; i++) other.push(msg(1, i))
        t.is(b.size, model.length)
        t.is(b.bytes, model.reduce((n, e) => n + e.body.length, 0), 'body bytes held')
        if (arena !== null) t.is(arena.used, model.reduce((n, e) => n + e.slot, 0), 'arena slots in use')
        for (let i = 0; i < model.length; i++) {
          const m = b.at(i)
          const e = model[i]!
          if (m.id !== e.id || !m.data.equals(e.body) || m.contentType !== e.type || m.event !== e.event || m.publishedAt !== e.at ||
            b.timeAt(i) !== m.time || b.tagAt(i) !== m.tag || b.publishedAtOf(i) !== e.at) {
            t.fail(`capacity ${capacity}, step ${step}: message ${i} is ${m.id} (${m.data.length} B), expected ${e.id} (${e.body.length} B)`)
            return
          }
          const fresh = new Message(m.time, m.tag, e.body, e.type, e.event, e.at)
          if (!m.sseFrame().equals(fresh.sseFrame()) || !m.wsFrame().equals(fresh.wsFrame())) {
            t.fail(`capacity ${capacity}, step ${step}: message ${i}'s frames differ from a fresh message's`)
            return
          }
        }
      }
    }
    b.clear()
    if (arena !== null) t.is(arena.used, 0, `capacity ${capacity}: every slot free after clear`)
  }
})

test('a body in shared or growable memory is copied when the message is made: the buffer keeps a store no one else can change', (t) => {
  const b = new MessageBuffer(4)
  const sab = new SharedArrayBuffer(3)
  const grow = new ArrayBuffer(3, { maxByteLength: 16 })
  Buffer.from(sab).set(Buffer.from('a\nb'))
  Buffer.from(grow).set(Buffer.from('c\nd'))
  b.push(new Message(1, 0, Buffer.from(sab), null, null, 0))
  b.push(new Message(1, 1, Buffer.from(grow), null, null, 0))
  Buffer.from(sab).fill(120)
  grow.resize(8)
  Buffer.from(grow).fill(120)
  const other = new MessageBuffer(256)
  for (let i = 0; i < 256; i++) other.push(msg(2, i))
  t.is(b.at(0).data.toString(), 'a\nb')
  t.is(b.at(1).data.toString(), 'c\nd')
  t.throws(() => b.at(2), { instanceOf: RangeError })
})
