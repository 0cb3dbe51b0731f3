// The core, the backlog and the coalescer on their own: no sockets, no HTTP. A recording transport
// (it implements the Transport contract and keeps what the core hands it) stands in for the wire.
import test from 'ava'
import type { Socket } from 'node:net'
import { resolveOptions } from '../../lib/config.ts'
import { Core } from '../../lib/core.ts'
import { Backlog, OVERFLOW, QUEUED, enqueue } from '../../lib/backlog.ts'
import { defaultCursor } from '../../lib/message-id.ts'
import type { Message } from '../../lib/message.ts'
import { F_BATCHED, Subscriber, type SubscribeRequest, type Transport } from '../../lib/subscriber.ts'
import { Coalescer } from '../../transports/coalesce.ts'
import { ExpiryWheel } from '../../lib/expiry.ts'
import type { Channel } from '../../lib/channel-registry.ts'
import { Revocations } from '../../lib/auth.ts'
import { channelInfo } from '../../lib/channel-info.ts'

class Recorder implements Transport {
  readonly name = 'recorder'
  readonly index: number
  readonly core: Core
  readonly got: Array<[Subscriber, string]> = []
  readonly ended: Array<[Subscriber, number, string | undefined]> = []
  constructor (core: Core, index: number) {
    this.core = core
    this.index = index
  }

  detect (): boolean { return false }
  serve (_sr: SubscribeRequest): void {}
  deliver (sub: Subscriber, msg: Message, pos: number): void { this.got.push([sub, sub.advance(msg, pos)]) }
  end (sub: Subscriber, status: number, reason?: string): void {
    this.core.unregister(sub)
    this.ended.push([sub, status, reason])
  }

  /** Keepalives asked for, per subscriber; written at once, as the real transports do. */
  readonly pinged: Subscriber[] = []
  /** Subscribers that get no keepalive (as long-poll, multipart, chunked, or a stream still backed up). */
  readonly silent = new Set<Subscriber>()
  keepalive (sub: Subscriber): boolean {
    if (this.silent.has(sub)) return false
    this.pinged.push(sub)
    sub.lastWrite = this.core.nowSec
    return true
  }

  ready (): void {}

  /** Held by the fence: served from the buffer, as the stream transports' pump does. */
  resume (sub: Subscriber): void {
    for (let n = this.core.nextMessage(sub); n !== null; n = this.core.nextMessage(sub)) this.got.push([sub, sub.advance(n.msg, n.pos)])
  }
}

/** A socket stand-in for the backlog and the coalescer: what they read and write. */
function fakeSocket (writableLength = 0): Socket & { written: Buffer[] } {
  const written: Buffer[] = []
  return { writableLength, destroyed: false, writable: true, written, write (b: Buffer) { written.push(b); return true } } as unknown as Socket & { written: Buffer[] }
}

function setup (over: Record<string, unknown> = {}): { core: Core, rec: Recorder } {
  const core = new Core(resolveOptions({ logLevel: 'silent', ...over }), [Recorder], 1000)
  return { core, rec: core.transports[0] as Recorder }
}

function subscribe (core: Core, rec: Recorder, keys: string[], grant: Subscriber['grant'] = null): Subscriber {
  const sub = new Subscriber(rec, fakeSocket(), null, core.channelsFor(keys), defaultCursor(keys.length), null, 0)
  sub.grant = grant
  core.register(sub)
  return sub
}

test('ids increase within a second and across, fan-out reaches every subscriber once, in order', (t) => {
  const { core, rec } = setup()
  const a = subscribe(core, rec, ['ch'])
  const b = subscribe(core, rec, ['ch', 'other'])
  const ids = [1, 2, 3].map((i) => core.publish('ch', Buffer.from(String(i)), null, null).msg.id)
  // each id: the next tag in the same second, or tag 0 of a later one (the clock may tick between)
  const parsed = ids.map((id) => id.split(':').map(Number) as [number, number])
  for (let i = 1; i < parsed.length; i++) {
    const [t0, g0] = parsed[i - 1]!
    const [t1, g1] = parsed[i]!
    t.true((t1 === t0 && g1 === g0 + 1) || (t1 > t0 && g1 === 0), `${ids[i - 1]} then ${ids[i]}`)
  }
  t.deepEqual(rec.got.filter(([s]) => s === a).map(([, id]) => id), ids)
  t.is(rec.got.filter(([s]) => s === b).length, 3)
  t.true(rec.got.filter(([s]) => s === b).every(([, id]) => /^\d+:\[\d+\],-$/.test(id)), 'multiplexed: vector ids')
  t.is(core.stats.published, 3)
  t.is(core.table.size, 2)
})

test('unregister removes a subscriber from its channels and the table once; an empty channel is released', (t) => {
  const { core, rec } = setup()
  const a = subscribe(core, rec, ['x', 'y'])
  t.is(core.registry.size, 2)
  core.unregister(a)
  core.unregister(a)
  t.is(core.table.size, 0)
  t.is(core.registry.size, 0)
})

test('DELETE ends every subscriber with 410 and drops the channel; its messages are gone', (t) => {
  const { core, rec } = setup()
  const a = subscribe(core, rec, ['d'])
  const b = subscribe(core, rec, ['d', 'e'])
  core.publish('d', Buffer.from('m'), null, null)
  core.deleteChannel(core.registry.get('d')!)
  t.deepEqual(rec.ended.map(([s, status]) => [s === a || s === b, status]), [[true, 410], [true, 410]])
  t.is(core.registry.get('d'), undefined)
  t.is(core.table.size, 0)
})

test('nextMessage merges a multiplexed buffer by id and signals a gap below the floor', (t) => {
  const { core, rec } = setup({ bufferLength: 2 })
  for (const [ch, m] of [['p', 'p1'], ['q', 'q1'], ['p', 'p2'], ['p', 'p3']]) core.publish(ch!, Buffer.from(m!), null, null)
  const sub = new Subscriber(rec, fakeSocket(), null, core.channelsFor(['p', 'q']), defaultCursor(2), null, 0)
  const order: string[] = []
  for (let n = core.nextMessage(sub); n !== null; n = core.nextMessage(sub)) {
    order.push(n.msg.data.toString())
    sub.advance(n.msg, n.pos)
  }
  t.deepEqual(order, ['q1', 'p2', 'p3'], 'p1 was evicted (bufferLength 2)')
  // a cursor at p1 lies below p's floor: the next message comes with the gap signal
  const p1 = { time: core.registry.get('p')!.floorTime, tag: core.registry.get('p')!.floorTag - 1 }
  const late = new Subscriber(rec, fakeSocket(), null, core.channelsFor(['p']), { time: p1.time, tags: [p1.tag], active: 0, explicit: true }, null, 0)
  t.not(core.nextMessage(late)!.gap, null)
})

test('fan-out: a subscriber whose cursor is at or past a message\'s id (it got it from another node first, or named a later id) is not sent it; the next message comes', (t) => {
  const { core, rec } = setup()
  // the id the next publish takes: this second, tag 0 (a cursor naming it, as a client holds one
  // that another node gave it before this process applied the message)
  const sec = Math.floor(Date.now() / 1000) + 1
  core.nowSec = sec
  const at = (keys: string[], time: number, tags: number[]): Subscriber => {
    const sub = new Subscriber(rec, fakeSocket(), null, core.channelsFor(keys), { time, tags, active: 0, explicit: true }, null, 0)
    core.register(sub)
    return sub
  }
  const equal = at(['c'], sec, [0])
  const ahead = at(['c'], sec, [1])
  const later = at(['c'], sec + 5, [0])
  const behind = at(['c'], sec - 1, [0])
  const multi = at(['c', 'd'], sec, [0, -1])
  const multiAll = at(['c', 'd'], sec, [-1, -1])
  const multiLater = at(['c', 'd'], sec + 5, [0, -1])
  const multiBehind = at(['c', 'd'], sec - 1, [0, -1])
  const got = (sub: Subscriber): string[] => rec.got.filter(([x]) => x === sub).map(([, id]) => id)
  for (const body of ['m0', 'm1', 'm2']) core.publish('c', Buffer.from(body), null, null)
  t.deepEqual(got(equal), [`${sec}:1`, `${sec}:2`])
  t.deepEqual(got(ahead), [`${sec}:2`])
  t.deepEqual(got(later), [])
  t.deepEqual(got(behind), [`${sec}:0`, `${sec}:1`, `${sec}:2`])
  t.deepEqual(got(multi), [`${sec}:[1],-`, `${sec}:[2],-`], 'a multiplexed position within its cursor\'s second')
  t.deepEqual(got(multiAll), [`${sec}:[0],-`, `${sec}:[1],-`, `${sec}:[2],-`], '`-`: every message of that second')
  // a multiplexed cursor of a later second waits for a larger id too (§4.4), and one of an earlier
  // second takes them all
  t.deepEqual(got(multiLater), [], 'a multiplexed cursor in the future')
  t.deepEqual(got(multiBehind), [`${sec}:[0],-`, `${sec}:[1],-`, `${sec}:[2],-`])
})

test('fan-out: a subscription naming a channel twice (`a,a`) that ends mid fan-out costs no one a duplicate or a miss', (t) => {
  const { core, rec } = setup()
  // the long-poll-like subscription ends at its first message (its two slots leave the list at once)
  const twice = subscribe(core, rec, ['a', 'a'])
  const others = [subscribe(core, rec, ['a']), subscribe(core, rec, ['a', 'b'])]
  const after = subscribe(core, rec, ['a'])
  const deliver = rec.deliver.bind(rec)
  rec.deliver = (sub, msg, pos) => {
    deliver(sub, msg, pos)
    if (sub === twice) rec.end(sub, 200)
  }
  core.publish('a', Buffer.from('m'), null, null)
  const count = (s: Subscriber): number => rec.got.filter(([x]) => x === s).length
  t.is(count(twice), 1, 'answered once, then gone')
  for (const s of [...others, after]) t.is(count(s), 1)
  t.is(core.registry.get('a')!.subs.length, 3)
  // with it gone the list is walked in place again; a subscriber still holding both positions gets both
  const both = subscribe(core, rec, ['a', 'a'])
  core.publish('a', Buffer.from('n'), null, null)
  t.is(count(both), 2)
  for (const s of [...others, after]) t.is(count(s), 2)
})

test('multiplexed: a gap on one position is signalled before an id of a later second from another would hide it', (t) => {
  const { core, rec } = setup({ bufferLength: 3 })
  const T = core.nowSec
  const put = (key: string, time: number, tag: number): void => { core.applyMessage(key, time, tag, Buffer.from(`${key}${time - T}:${tag}`), null, null, Date.now()) }
  // b: T:0..3, then a: T+1:0, then b: T+2:0..2 (b keeps three: T:2 and T:3 are evicted, its floor is T:3)
  for (let i = 0; i < 4; i++) put('b', T, i)
  put('a', T + 1, 0)
  for (let i = 0; i < 3; i++) put('b', T + 2, i)
  t.deepEqual([core.registry.get('b')!.floorTime, core.registry.get('b')!.floorTag], [T, 3])
  // the client had b up to T:1 (`T:-,[1]`): b's T:2 and T:3 are lost
  const cursor = { time: T, tags: [-1, 1], active: 1, explicit: true }
  const walk = (sub: Subscriber): Array<[string, string | null]> => {
    const out: Array<[string, string | null]> = []
    for (let n = core.nextMessage(sub); n !== null; n = core.nextMessage(sub)) {
      sub.advance(n.msg, n.pos)
      out.push([n.msg.data.toString(), n.gap])
    }
    return out
  }
  // a stream: the loss rides with a's message, whose id (`T+1:[0],-`) no longer names b's cursor,
  // and once only
  const stream = new Subscriber(rec, fakeSocket(), null, core.channelsFor(['a', 'b']), cursor, null, 0)
  t.deepEqual(walk(stream), [['a1:0', `${T}:-,[1]`], ['b2:0', null], ['b2:1', null], ['b2:2', null]])
  // long-poll: one message a poll, each poll a new subscription from the id the last one printed
  const polled: Array<[string, string | null]> = []
  let from = cursor
  for (let i = 0; i < 4; i++) {
    const poll = new Subscriber(rec, fakeSocket(), null, core.channelsFor(['a', 'b']), from, null, 0)
    const n = core.nextMessage(poll)!
    const id = poll.advance(n.msg, n.pos)
    polled.push([n.msg.data.toString(), n.gap])
    const [sec, tags] = id.split(':')
    const list = tags!.split(',')
    from = { time: Number(sec), tags: list.map((x) => x.replace(/[[\]]/g, '')).map((x) => (x === '-' ? -1 : Number(x))), active: list.findIndex((x) => x.startsWith('[')), explicit: true }
  }
  t.deepEqual(polled, [['a1:0', `${T}:-,[1]`], ['b2:0', null], ['b2:1', null], ['b2:2', null]])
})

test('multiplexed: a live message of an earlier second (another owner\'s, arriving late) does not move the id back: a resume from it repeats nothing', (t) => {
  const { core, rec } = setup()
  const T = core.nowSec
  const stream = new Subscriber(rec, fakeSocket(), null, core.channelsFor(['a', 'b']), defaultCursor(2), null, 0)
  core.register(stream)
  // b's T+1:0 comes first; a's T:5 (published a moment before, by another authority) after it
  core.applyMessage('b', T + 1, 0, Buffer.from('b'), null, null, Date.now())
  core.applyMessage('a', T, 5, Buffer.from('a'), null, null, Date.now())
  const ids = rec.got.filter(([s]) => s === stream).map(([, id]) => id)
  t.deepEqual(ids, [`${T + 1}:-,[0]`, `${T + 1}:[-],0`])
  // a client that resumes from the last id it got has both: nothing is served again
  const resumed = new Subscriber(rec, fakeSocket(), null, core.channelsFor(['a', 'b']), { time: T + 1, tags: [-1, 0], active: 0, explicit: true }, null, 0)
  t.is(core.nextMessage(resumed), null)
  // a later message of a still counts from the cursor it really has
  core.applyMessage('a', T, 6, Buffer.from('a2'), null, null, Date.now())
  t.deepEqual(rec.got.filter(([s]) => s === stream).map(([, id]) => id).slice(2), [`${T + 1}:[-],0`])
  core.applyMessage('a', T + 1, 0, Buffer.from('a3'), null, null, Date.now())
  t.deepEqual(rec.got.filter(([s]) => s === stream).map(([, id]) => id).slice(3), [`${T + 1}:[0],0`])
})

test('the fence: a multiplexed subscriber\'s message past it waits in the buffer, and leaves in id order once the fence moves', (t) => {
  const { core, rec } = setup()
  const T = core.nowSec
  let fence = T
  core.fence = () => fence
  const multi = new Subscriber(rec, fakeSocket(), null, core.channelsFor(['a', 'b']), defaultCursor(2), null, 0)
  const single = new Subscriber(rec, fakeSocket(), null, core.channelsFor(['b']), defaultCursor(1), null, 0)
  core.register(multi)
  core.register(single)
  const ids = (sub: Subscriber): string[] => rec.got.filter(([s]) => s === sub).map(([, id]) => id)
  // b's T+1:0 is past the fence: the one-channel subscriber gets it, the multiplexed one waits
  core.applyMessage('b', T + 1, 0, Buffer.from('b'), null, null, Date.now())
  t.deepEqual(ids(single), [`${T + 1}:0`])
  t.deepEqual(ids(multi), [])
  t.is(core.heldCount, 1)
  // another authority's a:T:3, published before it, arrives after it: it goes first
  core.applyMessage('a', T, 3, Buffer.from('a'), null, null, Date.now())
  t.deepEqual(ids(multi), [])
  fence = T + 1
  core.fenceMoved()
  t.deepEqual(ids(multi), [`${T}:[3],-`, `${T + 1}:-,[0]`])
  t.is(core.heldCount, 0)
  // within the fence: at once
  core.applyMessage('a', T + 1, 0, Buffer.from('a2'), null, null, Date.now())
  t.deepEqual(ids(multi).slice(2), [`${T + 1}:[0],0`])
  // past it again, then the subscriber leaves: nothing is held for it any more
  core.applyMessage('b', T + 2, 0, Buffer.from('b2'), null, null, Date.now())
  t.is(core.heldCount, 1)
  core.unregister(multi)
  t.is(core.heldCount, 0)
  fence = Infinity
  core.fenceMoved()
  t.is(ids(multi).length, 3)
})

test('multiplexed: two positions that lost messages get a signal each, with the same message, each naming its channel and counted once; an idle channel lost nothing', (t) => {
  const { core, rec } = setup({ bufferLength: 2 })
  const T = core.nowSec
  const put = (key: string, time: number, tag: number): void => { core.applyMessage(key, time, tag, Buffer.from(`${key}${time - T}:${tag}`), null, null, Date.now()) }
  // b and c each lose T:0 (evicted by two later messages), a has T+1:0 in between
  for (const key of ['b', 'c']) put(key, T, 0)
  put('a', T + 1, 0)
  for (const key of ['b', 'c']) for (let i = 0; i < 2; i++) put(key, T + 2, i)
  // d was never published: its record, made a second later than the cursor, says only when it was made
  core.registry.getOrCreate('d', T + 1)
  // the client asked for every message from second T on
  const sub = new Subscriber(rec, fakeSocket(), null, core.channelsFor(['a', 'b', 'c', 'd']), { time: T, tags: [-1, -1, -1, -1], active: 0, explicit: true }, null, 0)
  const before = core.stats.gapsEvicted
  const got: Array<[string, string | null]> = []
  for (let n = core.nextMessage(sub); n !== null; n = core.nextMessage(sub)) {
    sub.advance(n.msg, n.pos)
    got.push([n.msg.data.toString(), n.gap])
  }
  // (the signals joined by a space: one per channel, lib/message-id.ts withGaps)
  t.deepEqual(got, [['a1:0', `${T}:-,[-],-,- ${T}:-,-,[-],-`], ['b2:0', null], ['c2:0', null], ['b2:1', null], ['c2:1', null]])
  t.is(core.stats.gapsEvicted - before, 2, 'two signals')
})

test('multiplexed: a loss whose floor is in the served message\'s second is printed in its id, so a poll from it is not told again', (t) => {
  const { core, rec } = setup({ bufferLength: 2 })
  const T = core.nowSec
  const put = (key: string, time: number, tag: number): void => { core.applyMessage(key, time, tag, Buffer.from(`${key}${time - T}:${tag}`), null, null, Date.now()) }
  put('a', T + 1, 0)
  for (let i = 0; i < 3; i++) put('b', T + 1, i) // b's T+1:0 is evicted: its floor is T+1:0
  const polls: Array<[string, string | null, string]> = []
  let from = { time: T, tags: [-1, -1], active: 0, explicit: true }
  for (let i = 0; i < 3; i++) {
    const poll = new Subscriber(rec, fakeSocket(), null, core.channelsFor(['a', 'b']), from, null, 0)
    const n = core.nextMessage(poll)!
    const id = poll.advance(n.msg, n.pos)
    polls.push([n.msg.data.toString(), n.gap, id])
    const [sec, tags] = id.split(':')
    const list = tags!.split(',')
    from = { time: Number(sec), tags: list.map((x) => x.replace(/[[\]]/g, '')).map((x) => (x === '-' ? -1 : Number(x))), active: list.findIndex((x) => x.startsWith('[')), explicit: true }
  }
  t.deepEqual(polls, [['a1:0', `${T}:-,[-]`, `${T + 1}:[0],0`], ['b1:1', null, `${T + 1}:0,[1]`], ['b1:2', null, `${T + 1}:0,[2]`]])
})

test('hasNext says whether nextMessage would serve, and counts no gap (the Redis engine asks it before it serves)', (t) => {
  const { core, rec } = setup({ bufferLength: 2 })
  for (let i = 0; i < 3; i++) core.publish('h', Buffer.from('m' + i), null, null)
  const floor = core.registry.get('h')!
  // a cursor at the evicted first message: a gap, spent once, by the message served
  const sub = new Subscriber(rec, fakeSocket(), null, core.channelsFor(['h']), { time: floor.floorTime, tags: [floor.floorTag - 1], active: 0, explicit: true }, null, 0)
  const before = core.stats.gapsEvicted
  t.true(core.hasNext(sub))
  t.true(core.hasNext(sub))
  t.is(core.stats.gapsEvicted, before)
  t.not(core.nextMessage(sub)!.gap, null)
  t.is(core.stats.gapsEvicted, before + 1)
  const idle = new Subscriber(rec, fakeSocket(), null, core.channelsFor(['none']), defaultCursor(1), null, 0)
  t.false(core.hasNext(idle))
})

test('DELETE, then publishes again within the same second: the ids go on after the deleted ones, a resume skips none', (t) => {
  const { core, rec } = setup()
  // one second for all of it (the clock stands still)
  const realNow = Date.now
  const at = (core.nowSec + 1) * 1000 + 100
  Date.now = () => at
  try {
    const old = [0, 1, 2, 3].map((i) => core.publish('d', Buffer.from('old' + i), null, null).msg.id)
    const T = Math.floor(at / 1000)
    t.deepEqual(old, [0, 1, 2, 3].map((i) => `${T}:${i}`))
    core.deleteChannel(core.registry.get('d')!)
    // a subscriber that comes and goes re-makes the record and drops it again; meanwhile it says 0:0
    const made = core.channelsFor(['d'])
    t.is(channelInfo(made[0]!, at).lastMessageId, '0:0')
    core.releaseChannels(made)
    t.is(core.registry.get('d'), undefined)
    const fresh = [0, 1].map((i) => core.publish('d', Buffer.from('new' + i), null, null).msg.id)
    t.deepEqual(fresh, [`${T}:4`, `${T}:5`], 'no id issued twice')
    const resume = (time: number, tag: number): Array<[string, string | null]> => {
      const sub = new Subscriber(rec, fakeSocket(), null, core.channelsFor(['d']), { time, tags: [tag], active: 0, explicit: true }, null, 0)
      const out: Array<[string, string | null]> = []
      for (let n = core.nextMessage(sub); n !== null; n = core.nextMessage(sub)) {
        sub.advance(n.msg, n.pos)
        out.push([n.msg.data.toString(), n.gap])
      }
      return out
    }
    // from the newest deleted id: every new message, nothing lost; from inside what the delete took: the gap signal
    t.deepEqual(resume(T, 3), [['new0', null], ['new1', null]])
    t.deepEqual(resume(T, 1), [['new0', `${T}:1`], ['new1', null]])
    // a second later the deleted ids are forgotten; a record made then starts in its own second
    Date.now = () => at + 1000
    core.tick()
    core.deleteChannel(core.registry.get('d')!)
    t.is(core.publish('d', Buffer.from('later'), null, null).msg.id, `${T + 1}:0`)
    // a replica's delete keeps nothing: the process that assigns its ids (an owner worker, Redis) goes on
    core.deleteLocal('d')
    t.is(core.registry.getOrCreate('d', T + 1).lastTime, 0)
  } finally {
    Date.now = realNow
  }
})

test('a token deadline ends the subscriber with 401 `token expired`, before a later subscriberTimeout', (t) => {
  const { core, rec } = setup({ subscriberTimeout: 3600 })
  core.tokenExpiry = true
  // the Core's own second (a deadline counts from it), not one read after it, which may be the next
  const now = core.nowSec
  const grant = { kind: 'jwt' as const, sub: 'u', jti: 'j', exp: now - 1, iat: now - 60, subscribe: '*' as const, publish: [], admin: false }
  const sub = subscribe(core, rec, ['t'], grant)
  const plain = subscribe(core, rec, ['t'])
  core.tick()
  t.deepEqual(rec.ended.map(([s, status, reason]) => [s === sub, status, reason]), [[true, 401, 'token expired']])
  t.is(plain.deadline, now + 3600)
})

test('revokeLocal ends a user\'s subscribers issued up to the revocation, and only those', (t) => {
  const { core, rec } = setup()
  const now = Math.floor(Date.now() / 1000)
  const g = (sub: string, iat: number, jti: string): Subscriber['grant'] => ({ kind: 'jwt', sub, jti, exp: 0, iat, subscribe: '*', publish: [], admin: false })
  const old = subscribe(core, rec, ['r'], g('alice', now - 10, 'a1'))
  subscribe(core, rec, ['r'], g('alice', now + 5, 'a2'))
  subscribe(core, rec, ['r'], g('bob', now - 10, 'b1'))
  t.is(core.revokeLocal('sub', 'alice', now, now + 60), 1)
  t.is(rec.ended[0]![0], old)
  t.is(rec.ended[0]![2], 'revoked')
  t.is(core.revokeLocal('jti', 'b1', now, now + 60), 1)
  t.is(core.table.size, 1)
  // with the clock-skew leeway of the revocation list, the token stamped 5 s ahead goes too
  core.revocations = new Revocations()
  core.revocations.leeway = 5
  t.is(core.revokeLocal('sub', 'alice', now, now + 60), 1)
  t.is(core.table.size, 0)
  t.true(core.revocations.isRevoked({ jti: null, sub: 'alice', iat: now + 5 }, now))
})

test('backlog: under the cap frames queue; past it `disconnect` unregisters, `drop-oldest` drops the oldest (never the newest) and marks a gap', (t) => {
  for (const policy of ['disconnect', 'drop-oldest'] as const) {
    const { core, rec } = setup({ queueCap: 100, queuePolicy: policy })
    const sub = subscribe(core, rec, ['b'])
    sub.socket = fakeSocket(60)
    const msgs = [1, 2, 3].map((i) => core.publish('b', Buffer.from(String(i)), null, null).msg)
    t.is(enqueue(core, sub, '0:0', msgs[0]!, Buffer.alloc(30), msgs[0]!.id, 30, null, true), QUEUED)
    const r = enqueue(core, sub, null, msgs[1]!, Buffer.alloc(30), msgs[1]!.id, 30, null, true)
    if (policy === 'disconnect') {
      t.is(r, OVERFLOW)
      t.is(core.table.size, 0)
      t.is(core.stats.overflowDisconnect, 1)
    } else {
      t.is(r, QUEUED)
      const backlog = sub.backlog as Backlog
      t.deepEqual(backlog.ids, [msgs[1]!.id], 'the oldest queued frame went')
      t.is(backlog.gapFrom, '0:0', 'the gap starts after the last id written')
      t.is(core.stats.messagesDropped, 1)
      // Node alone holds a full cap: every older frame goes, the newest is kept (delivered once
      // the socket drains, with the gap), never dropped itself
      sub.socket = fakeSocket(100)
      t.is(enqueue(core, sub, null, msgs[2]!, Buffer.alloc(30), msgs[2]!.id, 30, null, true), QUEUED)
      t.deepEqual(backlog.ids, [msgs[2]!.id], 'only the newest is queued')
      t.is(backlog.gapFrom, '0:0', 'the gap still starts after the last id written')
      t.is(core.stats.messagesDropped, 2)
    }
  }
})

test('coalescer: a turn\'s messages leave as one write per subscriber; a subscriber ending mid-turn gets them first', (t) => {
  const { core, rec } = setup()
  const framer = (m: Message): Buffer => Buffer.concat([m.data, Buffer.from('|')])
  const c = new Coalescer(core, rec.index, [framer], () => 0)
  const a = subscribe(core, rec, ['c'])
  const b = subscribe(core, rec, ['c'])
  const msgs = [1, 2, 3].map((i) => core.publish('c', Buffer.from(`m${i}`), null, null).msg)
  for (const m of msgs) { c.hold(a, m); c.hold(b, m) }
  t.true((a.flags & F_BATCHED) !== 0)
  // b ends within the turn: its frames are written at once
  c.release(b)
  t.deepEqual((b.socket as unknown as { written: Buffer[] }).written.map(String), ['m1|m2|m3|'])
  c.flush()
  t.deepEqual((a.socket as unknown as { written: Buffer[] }).written.map(String), ['m1|m2|m3|'])
  t.is((b.socket as unknown as { written: Buffer[] }).written.length, 1, 'not written twice')
  // a subscriber whose socket is gone: held frames are taken off the delivered count
  const gone = subscribe(core, rec, ['c'])
  const m4 = core.publish('c', Buffer.from('m4'), null, null).msg
  const before = core.stats.delivered[rec.index]!
  c.hold(gone, m4)
  ;(gone.socket as unknown as { destroyed: boolean }).destroyed = true
  c.release(gone)
  t.is(core.stats.delivered[rec.index], before)
})

test('an expired buffer met by a new subscriber is emptied, not released: the subscriber stays on the registry\'s channel', (t) => {
  const { core, rec } = setup({ messageTimeout: 1 })
  // a message published 5 s ago (its id and publish time as another authority gave them)
  const at = Date.now() - 5000
  core.applyMessage('x', Math.floor(at / 1000), 0, Buffer.from('old'), null, null, at)
  const ch = core.registry.get('x')!
  // what a long-poll does: look for a message, then park
  const sub = new Subscriber(rec, fakeSocket(), null, core.channelsFor(['x']), defaultCursor(1), null, 0)
  t.is(core.nextMessage(sub), null)
  t.is(core.registry.get('x'), ch, 'the record is still the registry\'s')
  core.register(sub)
  core.publish('x', Buffer.from('new'), null, null)
  t.deepEqual(rec.got.map(([s]) => s), [sub])
})

test('message expiry: a tick takes only the channels whose second came, and releases those it emptied', (t) => {
  const { core } = setup({ messageTimeout: 1, keepalive: 0 })
  for (let i = 0; i < 100; i++) core.publish('c' + i, Buffer.from('m'), null, null)
  const now = core.nowSec
  // every channel holding messages is filed once, under the second its oldest expires
  for (let i = 0; i < 100; i++) t.true(core.registry.get('c' + i)!.expiryAt >= now + 1 && core.registry.get('c' + i)!.expiryAt <= now + 2)
  const filed = core.registry.get('c0')!.expiryAt
  core.publish('c0', Buffer.from('newer'), null, null)
  t.is(core.registry.get('c0')!.expiryAt, filed, 'a newer message does not file it again')
  // half the channels' messages were published 5 s ago; the tick two seconds on takes them all
  for (let i = 50; i < 100; i++) {
    const ch = core.registry.get('c' + i)!
    ch.buffer.clear()
    core.applyMessage('c' + i, ch.lastTime, ch.lastTag + 1, Buffer.from('m'), null, null, Date.now() - 5000)
  }
  core.nowSec = now + 2
  core.tick()
  for (let i = 50; i < 100; i++) t.is(core.registry.get('c' + i), undefined, `c${i} expired and released`)
  // the others' messages are not due (their publish time is now): they hold them, filed again later
  for (let i = 1; i < 50; i++) {
    const ch = core.registry.get('c' + i)!
    t.is(ch.buffer.size, 1)
    t.true(ch.expiryAt > now + 2)
  }
  t.is(core.registry.size, 50)
})

test('the expiry wheel: filed once under the earliest second, stale entries skipped, a clock jump taken by the filed seconds', (t) => {
  const ch = (k: string): Channel => ({ key: k, expiryAt: 0 }) as unknown as Channel
  const w = new ExpiryWheel(100)
  const [a, b, c] = [ch('a'), ch('b'), ch('c')]
  w.file(a, 103_500)
  t.is(a.expiryAt, 104)
  w.file(a, 105_000)
  t.is(a.expiryAt, 104, 'filed under an earlier second already')
  w.file(a, 102_000)
  t.is(a.expiryAt, 102, 'an earlier second: filed again there (the 104 entry goes stale)')
  w.file(b, 50_000)
  t.is(b.expiryAt, 101, 'a second already taken: the next one')
  w.file(c, 5_000_000)
  const taken: string[] = []
  w.take(103, (x) => taken.push(x.key))
  t.deepEqual(taken, ['b', 'a'])
  t.is(a.expiryAt, 0)
  w.take(104, (x) => taken.push(x.key))
  t.deepEqual(taken, ['b', 'a'], 'the stale entry of a is skipped')
  // the clock jumps an hour and more: the filed seconds are visited, not every second between
  w.take(200_000, (x) => taken.push(x.key))
  t.deepEqual(taken, ['b', 'a', 'c'])
  t.is(w.filed, 0)
})

test('keepalives are spread over ticks: at most twice the even share in one, every subscriber in turn', (t) => {
  const { core, rec } = setup({ keepalive: 25 })
  const subs = Array.from({ length: 1000 }, (_, i) => subscribe(core, rec, ['k' + i]))
  // all wrote last in the same second (one broadcast): all due together
  for (const sub of subs) sub.lastWrite = core.nowSec - 25
  const per: number[] = []
  for (let tick = 0; tick < 20 && rec.pinged.length < 1000; tick++) {
    const before = rec.pinged.length
    core.tick()
    per.push(rec.pinged.length - before)
  }
  t.is(new Set(rec.pinged).size, 1000, 'every subscriber got one')
  t.is(rec.pinged.length, 1000, 'and only one')
  t.true(per.every((n) => n <= 80), per.join(' '))
  t.is(per.length, Math.ceil(1000 / 80))
})

test('subscribers without a keepalive (parked long-polls, chunked, a stream still backed up) take no share of a tick from those with one', (t) => {
  const { core, rec } = setup({ keepalive: 25 })
  const streams = Array.from({ length: 100 }, (_, i) => subscribe(core, rec, ['s' + i]))
  // registered later, so the tick (newest first) meets them first; idle for longer than the interval
  const polls = Array.from({ length: 2000 }, (_, i) => subscribe(core, rec, ['p' + i]))
  for (const sub of polls) rec.silent.add(sub)
  for (const sub of [...streams, ...polls]) sub.lastWrite = core.nowSec - 25
  // the share is max(64, 2 × 2100 / 25) = 168 a tick: every stream gets its keepalive in the first
  core.tick()
  t.is(new Set(rec.pinged).size, 100, `${rec.pinged.length} keepalives in the first tick`)
  core.tick()
  t.is(rec.pinged.length, 100, 'and none again in the next')
})
