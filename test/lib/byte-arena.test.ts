import test from 'ava'
import { ByteArena, MAX_SLOT, slotSize } from '../../lib/byte-arena.ts'

const bytes = (n: number, salt: number): Buffer => {
  const b = Buffer.allocUnsafe(n)
  for (let i = 0; i < n; i++) b[i] = (salt + i * 13) & 255
  return b
}

test('slot sizes: each length takes the smallest class that fits; 32-byte steps to 512, then at most 12% more', (t) => {
  for (let n = 1; n <= MAX_SLOT; n++) {
    const s = slotSize(n)
    if (s < n) return t.fail(`length ${n}: slot ${s}`)
    // the smallest that fits: the length before takes the same class, or is a class of its own
    const before = slotSize(n - 1)
    if (before !== s && before !== n - 1) return t.fail(`length ${n}: slot ${s}, yet ${n - 1} takes ${before}`)
    if (n <= 512 && s !== Math.ceil(n / 32) * 32) return t.fail(`length ${n}: slot ${s}`)
    if (n > 512 && s > n * 1.12) return t.fail(`length ${n}: slot ${s} wastes more than 12%`)
  }
  t.is(slotSize(0), 32)
  t.is(slotSize(MAX_SLOT), MAX_SLOT)
  t.is(slotSize(MAX_SLOT + 1), -1)
})

test('bytes come back as stored, each read a copy of its own', (t) => {
  const a = new ByteArena()
  const lengths = [0, 1, 31, 32, 33, 511, 512, 513, 600, 4096, 9000, MAX_SLOT]
  const handles = lengths.map((n, i) => a.store(bytes(n, i)))
  lengths.forEach((n, i) => {
    const r = a.read(handles[i]!, n)
    t.true(r.equals(bytes(n, i)), `length ${n}`)
    t.is(r.byteOffset, 0)
    t.is(r.buffer.byteLength, n, 'a store of its own')
  })
  t.is(a.store(Buffer.alloc(MAX_SLOT + 1)), -1, 'too large: kept elsewhere')
  const r = a.read(handles[8]!, 600)
  r.fill(0)
  t.true(a.read(handles[8]!, 600).equals(bytes(600, 8)), 'writing a copy leaves the slot alone')
})

test('a freed slot is the next one handed out in its class, and a copy read before keeps its bytes', (t) => {
  const a = new ByteArena()
  const h1 = a.store(bytes(500, 1))
  const h2 = a.store(bytes(500, 2))
  const before = a.read(h1, 500)
  a.free(h1)
  const h3 = a.store(bytes(490, 3))
  t.is(h3, h1, 'same class: the freed slot again')
  t.true(a.read(h3, 490).equals(bytes(490, 3)))
  t.true(before.equals(bytes(500, 1)), 'the copy is not the slot')
  t.true(a.read(h2, 500).equals(bytes(500, 2)), 'its neighbour untouched')
  t.throws(() => a.read(Number.MAX_SAFE_INTEGER - 1, 1), { instanceOf: RangeError })
})

test('slabs: one empty slab per class stays, a second is given back', (t) => {
  const a = new ByteArena()
  const perSlab = Math.floor(64 * 1024 / slotSize(1000))
  const handles: number[] = []
  for (let i = 0; i < perSlab * 3; i++) handles.push(a.store(bytes(1000, i)))
  const slab = perSlab * slotSize(1000)
  t.is(a.bytes, 3 * slab)
  t.is(a.used, 3 * perSlab * slotSize(1000))
  for (const h of handles) a.free(h)
  t.is(a.used, 0)
  t.is(a.bytes, slab, 'one kept for the next message of this size')
  t.throws(() => a.free(handles[0]!), { instanceOf: RangeError, message: /freed twice/ })
  // the kept slab is used again, no new one
  const h = a.store(bytes(1000, 7))
  t.is(a.bytes, slab)
  t.true(a.read(h, 1000).equals(bytes(1000, 7)))
})

test('a random mix of stores and frees across classes keeps every byte and every count', (t) => {
  let seed = 987654
  const rnd = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
    return seed % n
  }
  const a = new ByteArena()
  const live = new Map<number, { len: number, salt: number }>()
  const classes = new Set<number>()
  for (let step = 0; step < 20000; step++) {
    if (live.size === 0 || rnd(100) < 55) {
      const r = rnd(100)
      const len = r < 60 ? rnd(700) : r < 95 ? 700 + rnd(4000) : 4700 + rnd(MAX_SLOT - 4700)
      const salt = rnd(256)
      const h = a.store(bytes(len, salt))
      classes.add(slotSize(len))
      if (live.has(h)) return t.fail(`step ${step}: handle ${h} handed out twice`)
      live.set(h, { len, salt })
    } else {
      const keys = [...live.keys()]
      const h = keys[rnd(keys.length)]!
      const e = live.get(h)!
      if (!a.read(h, e.len).equals(bytes(e.len, e.salt))) return t.fail(`step ${step}: handle ${h} changed before its free`)
      a.free(h)
      live.delete(h)
    }
    if (step % 1000 === 0) {
      for (const [h, e] of live) {
        if (!a.read(h, e.len).equals(bytes(e.len, e.salt))) return t.fail(`step ${step}: handle ${h} (${e.len} B) changed`)
      }
      let used = 0
      for (const e of live.values()) used += slotSize(e.len)
      t.is(a.used, used)
      if (a.bytes < a.used) return t.fail('more in use than held')
    }
  }
  for (const h of live.keys()) a.free(h)
  t.is(a.used, 0)
  // exactly one empty slab left in each class used
  let kept = 0
  for (const size of classes) kept += Math.floor(64 * 1024 / size) * size
  t.is(a.bytes, kept)
})
