// One deployment, one truth: the same channel-info and delivery checks against every topology —
// one process, `--workers 2` (the default on this 2-core box), two nodes on Redis, and two nodes
// on Redis with two workers each. Whichever process answers, channel info is what Nchan with one
// worker says, right after the event that changed it.
import test, { type ExecutionContext } from 'ava'
import { startRedis } from './helpers/redis.ts'
import { serve as serveNode } from './helpers/node.ts'
import { SseClient, eventually } from './helpers/server.ts'
import { lpGet } from './helpers/conformance.ts'

interface Topology {
  name: string
  /** Base URLs to spread requests over (workers share a port; nodes each have one). */
  start (t: ExecutionContext, extra?: string[]): Promise<string[]>
}

/** The running nodes' logs (warnings and up), for a failure's message. */
let logs: Array<() => string> = []

async function serve (t: ExecutionContext, args: string[]): Promise<string> {
  const node = await serveNode(t, args, 'warn')
  logs.push(node.log)
  return node.base
}

/** What the nodes say about themselves: /status of each base and their logs. */
async function diagnosis (bases: string[]): Promise<string> {
  const status = await Promise.all(bases.map(async (b) => await (await fetch(`${b}/status`)).text().catch((err: Error) => err.message)))
  return `\n${status.join('\n--\n')}\nlogs:\n${logs.map((l) => l()).join('\n--\n')}`
}

const TOPOLOGIES: Topology[] = [
  { name: 'one process', start: async (t, extra = []) => [await serve(t, ['--workers', '1', ...extra])] },
  { name: '--workers 2', start: async (t, extra = []) => [await serve(t, ['--workers', '2', ...extra])] },
  {
    name: 'two Redis nodes',
    start: async (t, extra = []) => {
      const redis = await startRedis(t)
      const url = `redis://127.0.0.1:${redis.port}`
      return [await serve(t, ['--workers', '1', '--redis-url', url, ...extra]), await serve(t, ['--workers', '1', '--redis-url', url, ...extra])]
    }
  },
  {
    name: 'two Redis nodes × 2 workers',
    start: async (t, extra = []) => {
      const redis = await startRedis(t)
      const url = `redis://127.0.0.1:${redis.port}`
      return [await serve(t, ['--workers', '2', '--redis-url', url, ...extra]), await serve(t, ['--workers', '2', '--redis-url', url, ...extra])]
    }
  }
]

interface Info { messages: number, requested: number, subscribers: number, last_message_id: string }

async function info (base: string, ch: string): Promise<Info | null> {
  const r = await fetch(`${base}/pub/${ch}`, { headers: { accept: 'text/json' } })
  if (r.status === 404) return null
  return await r.json() as Info
}

/** Info from every process behind every base (a few requests each: workers share a port). */
async function everywhere (bases: string[], ch: string, tries = 4): Promise<Array<Info | null>> {
  const out: Array<Info | null> = []
  for (const b of bases) for (let i = 0; i < tries; i++) out.push(await info(b, ch))
  return out
}

async function publish (base: string, ch: string, body: string): Promise<number> {
  return (await fetch(`${base}/pub/${ch}`, { method: 'POST', body })).status
}

for (const topo of TOPOLOGIES) {
  test.serial(`${topo.name}: channel info agrees everywhere, right after each event`, async (t) => {
    logs = []
    const bases = await topo.start(t)
    const a = bases[0]!
    const b = bases[bases.length - 1]!
    // a subscriber that only names a channel leaves nothing behind (no leaked record)
    const probe = lpGet(Number(new URL(b).port), '/sub/leak1')
    // (the first subscriber on a node that just started: a generous bound for a loaded CI box)
    if (!await eventually(async () => (await info(a, 'leak1'))?.subscribers === 1, 10000)) t.fail(`a parked long-poll shows in channel info: ${JSON.stringify(await info(a, 'leak1'))}${await diagnosis(bases)}`)
    probe.abort()
    await probe.done.catch(() => {})
    t.true(await eventually(async () => (await everywhere(bases, 'leak1')).every((i) => i === null), 5000), 'freed once its only subscriber left')

    // a parked long-poll on a fresh channel is counted at once, whichever process asks
    for (let i = 0; i < 5; i++) {
      const ch = `fresh${i}`
      const lp = lpGet(Number(new URL(b).port), `/sub/${ch}`)
      t.true(await eventually(async () => (await everywhere(bases, ch, 2)).every((x) => x?.subscribers === 1), 2000), `${ch}: parked long-poll visible everywhere`)
      t.is(await publish(a, ch, 'x'), 201)
      t.is((await lp.done).status, 200)
    }

    // a long-poll answered at once from the buffer is a request: "last requested" 0, not -1
    t.is(await publish(a, 'req', 'm'), 202)
    t.is((await everywhere(bases, 'req')).map((x) => x?.requested).every((r) => r === -1), true)
    t.is((await lpGet(Number(new URL(b).port), '/sub/req').done).status, 200)
    t.true(await eventually(async () => (await everywhere(bases, 'req')).every((x) => x?.requested === 0), 2000), 'requested 0 after a long-poll answered from the buffer')

    // SSE heads: exact counts right after each head, then 201 and the same id everywhere
    const subs: SseClient[] = []
    for (let i = 0; i < 4; i++) {
      const base = bases[i % bases.length]!
      subs.push(await SseClient.connect(Number(new URL(base).port), '/sub/exact'))
      t.deepEqual((await everywhere(bases, 'exact', 2)).map((x) => x?.subscribers), new Array(bases.length * 2).fill(i + 1))
    }
    if (topo.name.includes('Redis')) {
      // /status on any node has the deployment's figure too (from the heartbeats, every 2 s)
      const nodes = topo.name.includes('workers') ? 4 : 2
      t.true(await eventually(async () => {
        const s = await (await fetch(`${a}/status`)).text()
        return s.includes('deployment subscribers: 4\n') && s.includes(`deployment nodes: ${nodes}\n`)
      }, 6000), 'deployment totals in /status')
    }
    t.is(await publish(a, 'exact', 'hello'), 201)
    const ids = await Promise.all(subs.map(async (s) => (await s.waitEvents(1))[0]!.id))
    t.is(new Set(ids).size, 1)
    t.true((await everywhere(bases, 'exact')).every((x) => x?.last_message_id === ids[0] && x?.messages === 1))
    // DELETE: every subscriber ends with :410:, the channel is gone everywhere
    t.is((await fetch(`${b}/pub/exact`, { method: 'DELETE' })).status, 200)
    for (const s of subs) {
      await s.until(() => s.closed)
      t.true(s.comments.some((c) => c.startsWith(':410:')))
    }
    t.true(await eventually(async () => (await everywhere(bases, 'exact')).every((x) => x === null), 3000))
  })
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

for (const topo of TOPOLOGIES) {
  test.serial(`${topo.name}: an expired message is not counted from its expiry on; a channel made again has never been requested`, async (t) => {
    logs = []
    const bases = await topo.start(t, ['--message-timeout', '2'])
    const a = bases[0]!
    const b = bases[bases.length - 1]!
    // a subscriber asks for the channel and gets its message, then leaves
    const lp = lpGet(Number(new URL(b).port), '/sub/gone')
    t.true(await eventually(async () => (await info(a, 'gone'))?.subscribers === 1, 10000), 'the poll is counted' + await diagnosis(bases))
    // published early in a second, so that the second's tick comes well after the message's expiry
    await sleep(1050 - Date.now() % 1000)
    t.is(await publish(a, 'gone', 'm1'), 201)
    const published = Date.now()
    t.is((await lp.done).status, 200)
    t.true((await everywhere(bases, 'gone', 2)).every((x) => x?.messages === 1 && x.requested >= 0))
    // past the timeout (2 s) from the publish's answer: gone everywhere, not at the next tick
    await sleep(published + 2150 - Date.now())
    // nothing to delete: 404, as its info would be (asked first, before anything else reads it)
    t.is((await fetch(`${b}/pub/gone`, { method: 'DELETE' })).status, 404)
    t.deepEqual(await everywhere(bases, 'gone', 2), new Array(bases.length * 2).fill(null), 'expired: no message, no subscriber, no channel' + await diagnosis(bases))
    t.is((await fetch(`${a}/pub/gone`, { method: 'DELETE' })).status, 404)
    // published again: a new channel, which nobody has requested since it was made (§6: -1)
    const r = await fetch(`${b}/pub/gone`, { method: 'POST', body: 'm2', headers: { accept: 'text/json' } })
    t.is(r.status, 202)
    const fresh = await r.json() as Info
    t.is(fresh.messages, 1)
    t.is(fresh.requested, -1, 'the old channel\'s last request is not carried over')
  })
}

for (const topo of TOPOLOGIES) {
  test.serial(`${topo.name}: a channel whose only subscriber left, never published to, is gone: its DELETE is 404, as its info`, async (t) => {
    logs = []
    const bases = await topo.start(t)
    const a = bases[0]!
    const b = bases[bases.length - 1]!
    const sub = await SseClient.connect(Number(new URL(b).port), '/sub/left')
    t.true(await eventually(async () => (await info(a, 'left'))?.subscribers === 1, 10000), 'counted' + await diagnosis(bases))
    sub.socket.destroy()
    t.true(await eventually(async () => (await info(a, 'left')) === null, 10000), 'gone once it left' + await diagnosis(bases))
    t.is((await fetch(`${b}/pub/left`, { method: 'DELETE' })).status, 404)
  })
}

for (const topo of TOPOLOGIES) {
  test.serial(`${topo.name}: a channel whose messages expired while a subscriber waits keeps its last id, and goes on from it`, async (t) => {
    logs = []
    const bases = await topo.start(t, ['--message-timeout', '2'])
    const a = bases[0]!
    const b = bases[bases.length - 1]!
    const r = await fetch(`${a}/pub/wait`, { method: 'POST', body: 'm1', headers: { accept: 'text/json' } })
    const first = (await r.json() as Info).last_message_id
    const published = Date.now()
    const sub = await SseClient.connect(Number(new URL(b).port), '/sub/wait', { 'Last-Event-ID': first })
    t.teardown(() => sub.close())
    t.true(await eventually(async () => (await everywhere(bases, 'wait', 2)).every((x) => x?.subscribers === 1), 10000), 'counted' + await diagnosis(bases))
    await sleep(published + 2500 - Date.now())
    // the message expired; the channel is still there (its subscriber), with its last id
    t.deepEqual((await everywhere(bases, 'wait', 2)).map((x) => x === null ? null : [x.messages, x.subscribers, x.last_message_id]),
      new Array(bases.length * 2).fill([0, 1, first]), 'the last id stays while the channel lives' + await diagnosis(bases))
    const next = await fetch(`${a}/pub/wait`, { method: 'POST', body: 'm2', headers: { accept: 'text/json' } })
    t.is(next.status, 201)
    const [ev] = await sub.waitEvents(1)
    t.is(ev!.data, 'm2')
    t.deepEqual(sub.comments.filter((c) => /gap/i.test(c)), [], 'nothing was lost after the cursor: no gap signal')
  })
}
