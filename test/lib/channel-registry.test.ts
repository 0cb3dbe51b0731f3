// The channel registry's floors for records made again (lib/channel-registry.ts #dropped,
// knownSince): what a dropped record leaves behind, where it is the channels' authority only.
import test from 'ava'
import { ChannelRegistry, DROPPED_CAP } from '../../lib/channel-registry.ts'

const T = 1_796_000_000

/** A record of `key` holding nothing, whose newest message (time, tag) left its buffer. */
function emptied (r: ChannelRegistry, key: string, time: number, tag: number): void {
  const ch = r.getOrCreate(key, time)
  ch.setFloor(time, tag, true)
  r.release(ch)
}

test('in-memory (knownSince set): a record made again starts from its predecessor\'s floor, and its ids go on after it', (t) => {
  const r = new ChannelRegistry(10)
  r.knownSince = T
  emptied(r, 'a', T + 5, 3)
  t.is(r.get('a'), undefined, 'dropped')
  const again = r.getOrCreate('a', T + 9)
  t.deepEqual([again.floorTime, again.floorTag, again.floorExpired, again.floorKnown], [T + 5, 3, true, true])
  t.true(again.hasGapAfter(T + 5, 2), 'a cursor below the lost message: a gap')
  t.false(again.hasGapAfter(T + 5, 3), 'the client had it: none')
  again.nextId(T + 5)
  t.deepEqual([again.lastTime, again.lastTag], [T + 5, 4], 'in the same second, after it')
  // a channel never seen: known since knownSince, so a cursor after it lost nothing
  const fresh = r.getOrCreate('never', T + 9)
  t.deepEqual([fresh.floorTime, fresh.floorTag, fresh.floorKnown], [T, -1, true])
  t.false(fresh.hasGapAfter(T + 1, -1))
  t.true(fresh.hasGapAfter(T - 1, 0), 'a cursor of before (a restart): a gap')
})

test('a replica registry (knownSince 0: Redis, a worker that does not own the channel) keeps no floors: the authority says them again', (t) => {
  const r = new ChannelRegistry(10)
  emptied(r, 'a', T + 5, 3)
  const again = r.getOrCreate('a', T + 9)
  t.deepEqual([again.floorTime, again.floorTag, again.floorKnown], [T + 9, -1, false])
})

test('a record that knew nothing beyond knownSince is not kept; past DROPPED_CAP the oldest floor is forgotten and knownSince moves past it', (t) => {
  const r = new ChannelRegistry(10)
  r.knownSince = T
  // an idle channel's record (a subscriber came and went): nothing to keep
  const idle = r.getOrCreate('idle', T + 1)
  r.release(idle)
  emptied(r, 'first', T + 2, 0)
  for (let i = 0; i < DROPPED_CAP - 1; i++) emptied(r, 'k' + i, T + 3, 0)
  t.is(r.knownSince, T, 'DROPPED_CAP floors kept, the idle record\'s not among them: nothing forgotten yet')
  emptied(r, 'k' + (DROPPED_CAP - 1), T + 3, 0)
  t.is(r.knownSince, T + 3, 'the forgotten floor\'s second, and one')
  // 'first' was forgotten: made again it starts above what it knew (a cursor at it: told of a possible loss)
  const first = r.getOrCreate('first', T + 4)
  t.deepEqual([first.floorTime, first.floorTag, first.floorKnown], [T + 3, -1, true])
  t.true(first.hasGapAfter(T + 2, 0))
  // the newest are kept
  const last = r.getOrCreate('k' + (DROPPED_CAP - 1), T + 4)
  t.deepEqual([last.floorTime, last.floorTag], [T + 3, 0])
})
