import test from 'ava'
import { MessageBuffer } from '../../lib/message-buffer.ts'
import { Message } from '../../lib/message.ts'

const msg = (time: number, tag: number): Message => new Message(time, tag, Buffer.from(`${time}:${tag}`), null, null, 0)

test('push evicts the oldest once full and returns it', (t) => {
  const b = new MessageBuffer(3)
  t.is(b.push(msg(1, 0)), null)
  t.is(b.push(msg(1, 1)), null)
  t.is(b.push(msg(2, 0)), null)
  const evicted = b.push(msg(2, 1))
  t.is(evicted?.id, '1:0')
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
  t.is(b.shift()?.id, '1:0')
  t.is(b.shift()?.id, '1:1')
  t.is(b.push(msg(2, 0)), null)
  t.is(b.push(msg(2, 1)), null)
  t.is(b.push(msg(2, 2)), null)
  t.is(b.size, 4)
  const ids: string[] = []
  for (let i = 0; i < b.size; i++) ids.push(b.at(i).id)
  t.deepEqual(ids, ['1:2', '2:0', '2:1', '2:2'])
  t.is(b.push(msg(3, 0))?.id, '1:2')
  t.is(b.firstAfter(2, 0)?.id, '2:1')
})

test('wrap-around after many pushes stays searchable', (t) => {
  const b = new MessageBuffer(5)
  for (let i = 0; i < 23; i++) b.push(msg(100 + i, 0))
  t.is(b.oldest()?.id, '118:0')
  t.is(b.firstAfter(119, 0)?.id, '120:0')
  t.is(b.firstAfter(50, 0)?.id, '118:0')
})
