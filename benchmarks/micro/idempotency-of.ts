// What a worker spends finding the Idempotency-Keys of a channel's buffered messages, to hand them
// on with the buffer (an owner's 'load' for a new replica, a replica's offer to a restarted owner):
// one channel holding KEYS keys inside the window (a hot keyed channel), a buffer of BUFFERED
// messages (the newest ids). The event loop is blocked for this long each time. Trees given by
// ROOTS, each in a fresh process; the median of RUNS calls after WARM.
//
//   ROOTS=/path/to/base,/path/to/new KEYS=100000 node benchmarks/micro/idempotency-of.ts
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { treeRoots } from './tree-server.ts'

const env = process.env
const KEYS = Number(env.KEYS ?? 100_000)
const BUFFERED = Number(env.BUFFERED ?? 100)
const RUNS = Number(env.RUNS ?? 21)
const WARM = 5

interface Keys { set: (c: string, k: string, id: string, fp: string) => void, of: (c: string, ids: never) => unknown[] }

if (env.IDEM_ROOT !== undefined) {
  const mod = await import(pathToFileURL(path.join(env.IDEM_ROOT, 'lib/idempotency.ts')).href) as { IdempotencyKeys: new (w: number) => Keys }
  const keys = new mod.IdempotencyKeys(3600)
  const id = (i: number): string => `${1_700_000_000 + Math.floor(i / 1000)}:${i % 1000}`
  for (let i = 0; i < KEYS; i++) keys.set('hot', `key-${i}`, id(i), 'AAAAAAAAAAAAAAAAAAAAAA')
  const ids = Array.from({ length: BUFFERED }, (_, j) => id(KEYS - BUFFERED + j))
  const wanted = new Set(ids)
  // both shapes of `of`: the ids (iterable), or a test of an id (called)
  const asked = Object.assign((x: string) => wanted.has(x), { [Symbol.iterator]: () => ids[Symbol.iterator]() })
  const ms: number[] = []
  for (let r = 0; r < WARM + RUNS; r++) {
    const t0 = process.hrtime.bigint()
    const n = keys.of('hot', asked as never).length
    const t = Number(process.hrtime.bigint() - t0) / 1e6
    if (n !== BUFFERED) throw new Error(`found ${n} keys, not ${BUFFERED}`)
    if (r >= WARM) ms.push(t)
  }
  ms.sort((a, b) => a - b)
  console.log(JSON.stringify({ median: ms[RUNS >> 1], max: ms[RUNS - 1] }))
} else {
  console.log(`| tree | keys on the channel | buffered | median ms | max ms |\n|---|--:|--:|--:|--:|`)
  for (const root of treeRoots()) {
    const r = spawnSync(process.execPath, [process.argv[1]!], { env: { ...env, IDEM_ROOT: root }, encoding: 'utf8' })
    if (r.status !== 0) throw new Error(r.stderr)
    const { median, max } = JSON.parse(r.stdout) as { median: number, max: number }
    console.log(`| ${root} | ${KEYS} | ${BUFFERED} | ${median.toFixed(3)} | ${max.toFixed(3)} |`)
  }
}
