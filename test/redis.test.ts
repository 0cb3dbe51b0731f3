// The Redis engine: separate Parkline processes (`serve --workers 1 --redis-url …`) share one real
// redis-server started here on a free loopback port. Ids, buffers, counts and deletes must be the
// same on every node; a Redis restart must never crash a node, and delivery must resume after it.
// redis-server is required: without it these tests fail (install: apt-get install -y redis-server).
import { spawn, type ChildProcess } from 'node:child_process'
import net from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'
import test, { type ExecutionContext } from 'ava'
import { monitorRedis, redisCommand, startRedis, type Redis } from './helpers/redis.ts'
import { redisCall } from './helpers/redis-cluster.ts'
import * as LUA from '../lib/redis-lua.ts'
import { REVOKED_JTI_KEY, REVOKED_SUB_KEY, channelKey } from '../lib/redis-engine.ts'
import { SseClient, eventually, freePort, info, publish, startServer } from './helpers/server.ts'
import { steadyPublish } from './helpers/steady.ts'
import { SECRET, mint } from './helpers/auth.ts'
import { START_MS, processTree } from './helpers/node.ts'

const NODE = process.execPath

interface ParklineNode { base: string, port: number, proc: ChildProcess }

async function startNode (t: ExecutionContext, redisPort: number): Promise<ParklineNode> {
  return await startNodeUrl(t, `redis://127.0.0.1:${redisPort}`)
}

async function startNodeUrl (t: ExecutionContext, url: string, extra: string[] = []): Promise<ParklineNode> {
  const port = await freePort()
  const proc = spawn(NODE, ['bin/parkline.ts', 'serve', '--workers', '1', '--port', String(port), '--host', '127.0.0.1',
    '--redis-url', url, '--log-level', 'error', '--drain-window', '0', ...extra], { stdio: ['ignore', 'ignore', 'pipe'] })
  // its errors go to the run's output as they come, and the last of them into a failed start's message
  let err = ''
  proc.stderr!.on('data', (d: Buffer) => { process.stderr.write(d); err = (err + d.toString()).slice(-8000) })
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      process.kill(proc.pid!, 'SIGKILL')
      await once(proc, 'exit')
    }
  })
  const base = `http://127.0.0.1:${port}`
  const started = Date.now()
  const up = await eventually(async () => {
    try { return (await fetch(`${base}/health`)).status === 200 } catch { return false }
  }, START_MS)
  if (!up) throw new Error(`parkline node did not start in ${Date.now() - started} ms (no 200 from /health); its processes:\n${processTree(proc.pid!)}\nits errors: ${err === '' ? '(none)' : err}`)
  return { base, port, proc }
}

async function cluster (t: ExecutionContext, n: number): Promise<{ redis: Redis, nodes: ParklineNode[] }> {
  const redis = await startRedis(t)
  const nodes = await Promise.all(Array.from({ length: n }, async () => await startNode(t, redis.port)))
  return { redis, nodes }
}

function lastId (text: string): string {
  return /last message id: (\S+)/.exec(text)![1]!
}

/**
 * Two nodes; an SSE subscriber on node `on` (0: A, 1: B), counted on the other, which then publishes
 * `bodies` on `channel`; resolves once the subscriber has them all. Their ids, in order.
 */
async function subscribedAcross (t: ExecutionContext, channel: string, on: 0 | 1, bodies: string[]): Promise<{ redis: Redis, a: ParklineNode, b: ParklineNode, sub: SseClient, ids: string[] }> {
  const { redis, nodes: [a, b] } = await cluster(t, 2)
  const [here, there] = on === 0 ? [a!, b!] : [b!, a!]
  const sub = await SseClient.connect(here.port, `/sub/${channel}`)
  t.teardown(() => sub.socket.destroy())
  t.true(await eventually(async () => (await info(there.base, channel)).json?.subscribers === 1, 5000))
  const ids: string[] = []
  for (const m of bodies) ids.push(lastId((await publish(there.base, channel, m)).text))
  t.deepEqual((await sub.waitEvents(bodies.length)).map((e) => e.id), ids)
  return { redis, a: a!, b: b!, sub, ids }
}

test.serial('a channel record stays while anyone subscribes (a day past each publish), then lives as its messages: once its subscriber left, and once the node that held it died (the sweep)', async (t) => {
  const { redis, a, b, sub } = await subscribedAcross(t, 'rec', 0, ['m1'])
  const pttl = async (channel: string): Promise<number> => Number(/^:(-?\d+)/.exec(await redisCommand(redis.port, `PTTL ${channelKey(channel, 'm')}`) ?? '')?.[1])
  const DAY = 86400000
  const TIMEOUT = 3600000 // messageTimeout's default
  t.true(await pttl('rec') > DAY - 60000, 'kept a day while its subscriber waits, not the message timeout')
  // a subscriber on the node that publishes, which then leaves
  const other = await SseClient.connect(b.port, '/sub/rec2')
  t.true(await eventually(async () => (await info(a.base, 'rec2')).json?.subscribers === 1, 5000))
  t.is((await publish(b.base, 'rec2', 'x')).status, 201)
  t.true(await pttl('rec2') > DAY - 60000)
  other.socket.destroy()
  t.true(await eventually(async () => { const left = await pttl('rec2'); return left > 0 && left <= TIMEOUT }, 5000), 'once nobody subscribes, it expires with its messages')
  // node A dies with its subscriber: B sweeps its count, and the record expires with its messages
  a.proc.kill('SIGKILL')
  sub.socket.destroy()
  t.true(await eventually(async () => { const left = await pttl('rec'); return left > 0 && left <= TIMEOUT }, 20000), 'the sweep of a dead node\'s counts lets the record expire with its messages')
})

test.serial('a node names a channel in its own set before it counts there, so that a node that dies between the two leaves no count its sweep cannot find', async (t) => {
  const redis = await startRedis(t)
  const node = await startNode(t, redis.port)
  // what Redis is sent, in the order it runs it
  const monitor = await monitorRedis(t, redis.port)
  const counts = `"${channelKey('named', 's')}"`
  const sub = await SseClient.connect(node.port, '/sub/named')
  t.teardown(() => sub.socket.destroy())
  t.true(await eventually(() => /"SADD" "pk:n:[^"]+"[^\n]*"named"/.test(monitor.seen()) && monitor.seen().includes(counts), 5000), monitor.seen().slice(-2000))
  const seen = monitor.seen()
  const named = seen.search(/"SADD" "pk:n:[^"]+"[^\n]*"named"/)
  const counted = seen.search(new RegExp(`"EVAL(SHA)?" "[^"]+" "3" ${counts.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`))
  t.true(counted > 0, 'the count was written')
  t.true(named < counted, 'the set names the channel before the count is written')
})

test.serial('counts written again after Redis lost them carry no arrival: one node\'s subscriber leaving does not expire the channel under another node\'s', async (t) => {
  const { redis, nodes: [x, y] } = await cluster(t, 2)
  const subs = [await SseClient.connect(x!.port, '/sub/resent'), await SseClient.connect(y!.port, '/sub/resent')]
  t.teardown(() => { for (const s of subs) s.socket.destroy() })
  t.true(await eventually(async () => (await info(x!.base, 'resent')).json?.subscribers === 2, 5000))
  // the store loses everything: each node writes its count again (no `~r` with it)
  t.is(await redisCommand(redis.port, 'FLUSHALL'), '+OK\r\n')
  t.true(await eventually(async () => (await redisCommand(redis.port, 'HLEN pk:{resent}:s')) === ':2\r\n', 15000), 'both counts written again')
  t.true(await eventually(async () => (await fetch(`${x!.base}/health`)).status === 200 && (await fetch(`${y!.base}/health`)).status === 200, 15000))
  t.is((await publish(x!.base, 'resent', 'm')).status, 201)
  // y's subscriber leaves; x's stays
  subs[1]!.socket.destroy()
  t.true(await eventually(async () => (await redisCommand(redis.port, 'HLEN pk:{resent}:s')) === ':1\r\n', 5000))
  const ttl = async (key: string): Promise<number> => Number(/^:(-?\d+)/.exec(await redisCommand(redis.port, `PTTL ${key}`) ?? '')?.[1])
  t.is(await ttl('pk:{resent}:s'), -1, 'the counts stay while x counts')
  t.true(await ttl('pk:{resent}:m') > 86400000 - 60000, 'the record keeps its hold while x\'s subscriber waits')
})

test.serial('a record a node seeds back after Redis lost it, while a subscriber waits, is not lost again at the message timeout: publishes go on in one generation', async (t) => {
  const redis = await startRedis(t)
  const node = await startNodeUrl(t, `redis://127.0.0.1:${redis.port}`, ['--message-timeout', '3'])
  const sub = await SseClient.connect(node.port, '/sub/seeded')
  t.teardown(() => sub.socket.destroy())
  t.is((await publish(node.base, 'seeded', 'm0')).status, 201)
  await sub.waitEvents(1)
  await redis.kill()
  await redis.restart()
  const g = async (): Promise<string> => (await redisCommand(redis.port, 'HGET pk:{seeded}:m g')) ?? ''
  // the node reads the channel again and seeds its last id back
  t.true(await eventually(async () => (await g()).startsWith('$'), 15000), 'seeded')
  t.true(await eventually(async () => (await fetch(`${node.base}/health`)).status === 200, 15000), 'up again')
  const generation = await g()
  // past the message timeout (3 s), a publish every 400 ms
  for (let i = 1; i <= 10; i++) {
    const r = await publish(node.base, 'seeded', `m${i}`)
    t.is(r.status, 201, `m${i}: ${r.text}`)
    await new Promise((resolve) => setTimeout(resolve, 400))
  }
  t.is(await g(), generation, 'one generation: the record never expired under its subscriber')
  t.deepEqual((await sub.waitEvents(11)).slice(1).map((e) => e.data), Array.from({ length: 10 }, (_, i) => `m${i + 1}`))
})

test.serial('a message published on node A reaches an SSE subscriber on node B with the same id; a cold node replays the buffer byte for byte', async (t) => {
  const { nodes: [a, b, c] } = await cluster(t, 3)
  const sub = await SseClient.connect(b!.port, '/sub/cross')
  t.is(sub.status, 200)
  const ids: string[] = []
  for (let i = 0; i < 5; i++) {
    const r = await publish(a!.base, 'cross', `m${i}`)
    t.is(r.status, 201)
    ids.push(lastId(r.text))
  }
  const ev = await publish(a!.base, 'cross', 'l1\nl2', { 'X-EventSource-Event': 'tick' })
  ids.push(lastId(ev.text))
  const events = await sub.waitEvents(6)
  t.deepEqual(events.map((e) => e.id), ids)
  t.deepEqual(events.map((e) => e.data), ['m0', 'm1', 'm2', 'm3', 'm4', 'l1\nl2'])
  t.is(events[5]!.event, 'tick')
  sub.close()

  // binary body and Content-Type survive Redis; node C has no replica yet and loads it first
  const bin = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
  const r = await publish(a!.base, 'bin', bin, { 'Content-Type': 'application/x-thing; q=1' })
  t.is(r.status, 202)
  const lp = await fetch(`${c!.base}/sub/bin`)
  t.is(lp.status, 200)
  t.is(lp.headers.get('content-type'), 'application/x-thing; q=1')
  t.deepEqual(Buffer.from(await lp.arrayBuffer()), bin)
  t.is(`${Date.parse(lp.headers.get('last-modified')!) / 1000}:${lp.headers.get('etag')}`, lastId(r.text))
})

test.serial('a Last-Event-ID from node A resumes exactly on node B', async (t) => {
  const { nodes: [a, b] } = await cluster(t, 2)
  for (let i = 0; i < 5; i++) await publish(a!.base, 'resume', `r${i}`)
  const onA = await SseClient.connect(a!.port, '/sub/resume')
  const first = await onA.waitEvents(5)
  onA.close()
  const onB = await SseClient.connect(b!.port, '/sub/resume', { 'Last-Event-ID': first[2]!.id! })
  const rest = await onB.waitEvents(2)
  t.deepEqual(rest.map((e) => e.data), ['r3', 'r4'])
  t.deepEqual(rest.map((e) => e.id), [first[3]!.id, first[4]!.id])
  const live = await publish(a!.base, 'resume', 'r5')
  const all = await onB.waitEvents(3)
  t.is(all[2]!.data, 'r5')
  t.is(all[2]!.id, lastId(live.text))
  t.is(all.length, 3)
  onB.close()
})

test.serial('subscriber counts are exact across nodes right after each SSE head', async (t) => {
  const { nodes: [a, b] } = await cluster(t, 2)
  const clients: SseClient[] = []
  for (let i = 0; i < 6; i++) {
    const node = i % 2 === 0 ? a! : b!
    const other = i % 2 === 0 ? b! : a!
    clients.push(await SseClient.connect(node.port, '/sub/counted'))
    // §3.2: written to the store before the head, so the other node already counts it
    t.is((await info(other.base, 'counted')).json!.subscribers, i + 1)
  }
  t.is((await publish(b!.base, 'counted', 'x')).status, 201)
  for (const c of clients) c.close()
  t.true(await eventually(async () => (await info(a!.base, 'counted')).json?.subscribers === 0, 5000))
  t.is((await publish(a!.base, 'counted', 'y')).status, 202)
})

test.serial('DELETE on node A ends subscribers on node B with :410: and the channel is gone there', async (t) => {
  const { nodes: [a, b] } = await cluster(t, 2)
  await publish(a!.base, 'gone', 'before')
  const sub = await SseClient.connect(b!.port, '/sub/gone')
  await sub.waitEvents(1)
  const del = await fetch(`${a!.base}/pub/gone`, { method: 'DELETE', headers: { Accept: 'text/json' } })
  t.is(del.status, 200)
  t.is(JSON.parse(await del.text()).subscribers, 1)
  await sub.waitClosed()
  t.true(sub.comments.includes(':410: 410 Gone'))
  t.true(await eventually(async () => (await info(b!.base, 'gone')).status === 404))
  // a later subscriber on B finds an empty channel and none of the deleted messages
  const after = await SseClient.connect(b!.port, '/sub/gone')
  await publish(a!.base, 'gone', 'new')
  const evs = await after.waitEvents(1)
  t.deepEqual(evs.map((e) => e.data), ['new'])
  after.close()
})

test.serial('DELETE, then a publish within the same second: its id goes on after the deleted ones, and a resume on another node skips none', async (t) => {
  const { nodes: [a, b] } = await cluster(t, 2)
  // publish, delete and publish again in one second of the store's clock (the host's): a try that
  // straddles a second starts over on a channel of its own
  let deleted: string[] = []
  let fresh = ''
  let channel = ''
  for (let attempt = 0; attempt < 20 && fresh === ''; attempt++) {
    while (Date.now() % 1000 > 300) await new Promise((resolve) => setTimeout(resolve, 20))
    channel = `again${attempt}`
    const ids = [lastId((await publish(a!.base, channel, 'old0')).text), lastId((await publish(a!.base, channel, 'old1')).text)]
    t.is((await fetch(`${a!.base}/pub/${channel}`, { method: 'DELETE' })).status, 200)
    const next = lastId((await publish(a!.base, channel, 'new0')).text)
    if (new Set([...ids, next].map((id) => id.split(':')[0])).size === 1) { deleted = ids; fresh = next }
  }
  t.not(fresh, '', 'publish, delete and publish again fell in one second within 20 tries')
  const [sec, lastTag] = deleted[1]!.split(':')
  t.is(fresh, `${sec}:${Number(lastTag) + 1}`, 'no id issued twice: ' + [...deleted, fresh].join(' '))
  // on node B: from the newest deleted id, the new message with no gap; from inside what the
  // delete took, the same message with the gap signal
  const atLast = await SseClient.connect(b!.port, `/sub/${channel}`, { 'Last-Event-ID': deleted[1]! })
  t.teardown(() => atLast.socket.destroy())
  const [ev] = await atLast.waitEvents(1)
  t.is(ev!.data, 'new0')
  t.is(ev!.id, fresh)
  t.false(ev!.comments.some((c) => c.startsWith(':parkline-gap')), ev!.comments.join(' | '))
  const inside = await SseClient.connect(b!.port, `/sub/${channel}`, { 'Last-Event-ID': deleted[0]! })
  t.teardown(() => inside.socket.destroy())
  const [ev2] = await inside.waitEvents(1)
  t.is(ev2!.data, 'new0')
  t.true(ev2!.comments.some((c) => c.startsWith(':parkline-gap')), 'gap signal: ' + ev2!.comments.join(' | '))
})

test.serial('Redis killed and restarted mid-stream: 503 + Retry-After, /status and /health say so, then delivery resumes; no node crashes', async (t) => {
  t.timeout(60000)
  const { redis, nodes: [a, b] } = await cluster(t, 2)
  const sub = await SseClient.connect(b!.port, '/sub/outage')
  const before = await publish(a!.base, 'outage', 'before')
  t.is(before.status, 201)
  await sub.waitEvents(1)

  await redis.kill()
  let down: Awaited<ReturnType<typeof publish>> | null = null
  t.true(await eventually(async () => {
    down = await publish(a!.base, 'outage', 'lost?')
    return down.status === 503
  }, 10000))
  t.is(down!.status, 503)
  t.regex(down!.headers.get('retry-after') ?? '', /^\d+$/)
  const status = await (await fetch(`${a!.base}/status`)).text()
  t.regex(status, /redis connected servers: 0\n/)
  t.regex(status, /redis pending commands: \d+\n/)
  // node b finds the outage on its own connections, in its own time (a's 503 says nothing of b's)
  t.true(await eventually(async () => (await fetch(`${b!.base}/health`)).status === 503, 10000), 'node b says the store is down')
  t.is((await fetch(`${a!.base}/pub/outage`)).status, 503)

  await redis.restart()
  t.true(await eventually(async () => {
    const [ha, hb] = await Promise.all([fetch(`${a!.base}/health`), fetch(`${b!.base}/health`)])
    return ha.status === 200 && hb.status === 200
  }, 20000))
  const after = await publish(a!.base, 'outage', 'after')
  t.true(after.status === 201 || after.status === 202)
  const evs = await sub.waitEvents(2, 10000)
  t.deepEqual(evs.map((e) => e.data), ['before', 'after'])
  t.is(evs[1]!.id, lastId(after.text))
  // ids kept increasing across the restart (the node seeded its last id back)
  const [s0, g0] = evs[0]!.id!.split(':').map(Number)
  const [s1, g1] = evs[1]!.id!.split(':').map(Number)
  t.true(s1! > s0! || (s1 === s0 && g1! > g0!))
  t.false(sub.closed)
  // counts are back too: B rewrote its count after the reconnect
  t.true(await eventually(async () => (await info(a!.base, 'outage')).json?.subscribers === 1, 5000))
  // the outage is one fault on each node, however many errors its clients saw while reconnecting
  for (const n of [a!, b!]) t.regex(await (await fetch(`${n.base}/status`)).text(), /redis faults: 1\n/)
  t.is(a!.proc.exitCode, null)
  t.is(b!.proc.exitCode, null)
  sub.close()
})

/** Set a channel's last id in Redis: the next publish takes `<time>:<tag + 1>` while the clock is behind `time`. */
async function setLastId (port: number, channel: string, time: number, tag: number): Promise<void> {
  const reply = await redisCommand(port, `HSET pk:{${channel}}:m lt ${time} lg ${tag}`)
  if (reply === null || !reply.startsWith(':')) throw new Error(`HSET failed: ${reply}`)
}

/** Move a channel's last id `ahead` seconds past the clock (as after a clock step back); returns that second. */
async function idsAhead (port: number, channel: string, ahead: number): Promise<number> {
  const future = Math.floor(Date.now() / 1000) + ahead
  await setLastId(port, channel, future, 0)
  return future
}

/** Stop a node's process (SIGSTOP) so it sees nothing until `resume`. */
function pause (t: ExecutionContext, node: ParklineNode): () => void {
  const pid = node.proc.pid!
  process.kill(pid, 'SIGSTOP')
  let resumed = false
  const resume = (): void => {
    if (resumed) return
    resumed = true
    try { process.kill(pid, 'SIGCONT') } catch {}
  }
  t.teardown(resume)
  return resume
}

/**
 * Two nodes; an SSE subscriber on A has m0 and m1 (ids moved `future` seconds ahead, m1 = future:1);
 * then A is stopped and Redis restarted empty. `resume` lets A see it.
 */
async function restartWhileStopped (t: ExecutionContext, channel: string): Promise<{ redis: Redis, b: ParklineNode, sub: SseClient, future: number, resume: () => void }> {
  const { redis, nodes: [a, b] } = await cluster(t, 2)
  const sub = await SseClient.connect(a!.port, `/sub/${channel}`)
  t.is((await publish(b!.base, channel, 'm0')).status, 201)
  const future = await idsAhead(redis.port, channel, 100)
  t.is(lastId((await publish(b!.base, channel, 'm1')).text), `${future}:1`)
  t.deepEqual((await sub.waitEvents(2)).map((e) => e.data), ['m0', 'm1'])
  const resume = pause(t, a!)
  await redis.kill()
  await redis.restart()
  return { redis, b: b!, sub, future, resume }
}

/** An SSE subscriber's gap comment (§11a) names the cursor it asked for and the message served. */
function gapOf (sub: SseClient): string | undefined {
  return sub.comments.find((c) => c.startsWith(':parkline-gap'))
}

test.serial('Redis loses a channel while nodes stay connected (evicted, flushed) and a publish reuses an id a node applied: its subscribers are ended with 410, and come back with the gap signal, not left silent', async (t) => {
  const { redis, nodes: [a, b] } = await cluster(t, 2)
  const sub = await SseClient.connect(a!.port, '/sub/evicted')
  t.is((await publish(b!.base, 'evicted', 'm0')).status, 201)
  const future = await idsAhead(redis.port, 'evicted', 100)
  const m1 = await publish(b!.base, 'evicted', 'm1')
  t.is(lastId(m1.text), `${future}:1`)
  t.deepEqual((await sub.waitEvents(2)).map((e) => e.data), ['m0', 'm1'])
  // the record goes (maxmemory eviction, FLUSHDB): the next publish makes a new one, and its id
  // (this second, tag 0) is below the one node A applied last, so A would skip it as a duplicate
  t.is(await redisCommand(redis.port, 'DEL pk:{evicted}:m pk:{evicted}:b'), ':2\r\n')
  const m2 = await publish(b!.base, 'evicted', 'm2')
  t.is(m2.status, 201)
  t.true(Number(lastId(m2.text).split(':')[0]) < future)
  await sub.waitClosed(10000)
  t.true(sub.comments.includes(':410: 410 Gone'))
  t.deepEqual(sub.events.map((e) => e.data), ['m0', 'm1'])
  // before ending them, A moved the record's ids and floor past the last id it applied (m1), so a
  // subscriber that comes back with m1's id, on either node, is told of the gap instead of waiting
  // above every id of the new record
  const resumed = await Promise.all([a!, b!].map(async (n) => await SseClient.connect(n.port, '/sub/evicted', { 'Last-Event-ID': lastId(m1.text) })))
  const again = await SseClient.connect(a!.port, '/sub/evicted')
  const m3 = await publish(b!.base, 'evicted', 'm3')
  t.is(lastId(m3.text), `${future}:3`)
  // m2 went with the ids it may have reused (below the new floor); a subscriber that starts over
  // gets what follows
  t.deepEqual((await again.waitEvents(1)).map((e) => [e.data, e.id]), [['m3', lastId(m3.text)]])
  t.is(gapOf(again), undefined)
  again.close()
  for (const r of resumed) {
    t.deepEqual((await r.waitEvents(1)).map((e) => [e.data, e.id]), [['m3', lastId(m3.text)]])
    t.is(gapOf(r), `:parkline-gap {"requested":"${lastId(m1.text)}","resumed":"${lastId(m3.text)}"}`)
    r.close()
  }
})

test.serial('a Redis that evicted a channel\'s record (maxmemory): a multiplexed resume from before it, on a node that never held the channel, gets the gap signal, as a one-channel resume does', async (t) => {
  const { redis, nodes: [a, b] } = await cluster(t, 2)
  const ids: string[] = []
  for (const body of ['m0', 'm1', 'm2']) ids.push(lastId((await publish(a!.base, 'ev', body)).text))
  // no node holds the channel (nobody subscribed); Redis evicts every key with a TTL, the
  // channel's record among them: a write past a 1-byte maxmemory evicts them all, then fails
  t.is(await redisCommand(redis.port, 'CONFIG SET maxmemory-policy volatile-random'), '+OK\r\n')
  t.is(await redisCommand(redis.port, 'CONFIG SET maxmemory 1'), '+OK\r\n')
  t.regex(await redisCommand(redis.port, 'SET probe 1') ?? '', /^-OOM/)
  t.is(await redisCommand(redis.port, 'CONFIG SET maxmemory 0'), '+OK\r\n')
  t.is(await redisCommand(redis.port, 'EXISTS pk:{ev}:m'), ':0\r\n')
  t.notRegex(await redisCommand(redis.port, 'INFO stats') ?? '', /evicted_keys:0\r\n/)
  // the next publish makes the record again, in a later second than m2 (a cursor in the lost
  // second itself is the case no node can tell, docs/redis.md)
  const lost = Number(ids[2]!.split(':')[0])
  t.true(await eventually(() => Math.floor(Date.now() / 1000) > lost, 3000))
  const n0 = lastId((await publish(a!.base, 'ev', 'n0')).text)
  // m1's client comes back: m2 went with the record
  const one = await SseClient.connect(b!.port, '/sub/ev', { 'Last-Event-ID': ids[1]! })
  const multi = await SseClient.connect(b!.port, '/sub/ev,other', { 'Last-Event-ID': ids[1]! })
  t.deepEqual((await one.waitEvents(1)).map((e) => [e.data, e.id]), [['n0', n0]])
  t.deepEqual((await multi.waitEvents(1)).map((e) => e.data), ['n0'])
  t.regex(gapOf(one) ?? '', new RegExp(`"requested":"${ids[1]!}"`))
  // the signal names ev's position (bracketed), whatever it says of `other` (never published: a
  // record missing after an eviction may be one it took)
  const [sec, tag] = ids[1]!.split(':')
  t.true(multi.comments.some((c) => c.startsWith(':parkline-gap') && c.includes(`"requested":"${sec}:[${tag}],`)), `the multiplexed resume is told of ev's loss: ${multi.comments.join(' | ')}`)
  one.close()
  multi.close()
})

test.serial('an eviction a node saw more than a message timeout ago no longer counts: a multiplexed resume inside the timeout gets no gap signal for a channel never published', async (t) => {
  const redis = await startRedis(t)
  const a = await startNodeUrl(t, `redis://127.0.0.1:${redis.port}`, ['--message-timeout', '3'])
  t.is((await publish(a.base, 'gone', 'x')).status, 202)
  t.is(await redisCommand(redis.port, 'CONFIG SET maxmemory-policy volatile-random'), '+OK\r\n')
  t.is(await redisCommand(redis.port, 'CONFIG SET maxmemory 1'), '+OK\r\n')
  t.regex(await redisCommand(redis.port, 'SET probe 1') ?? '', /^-OOM/)
  t.is(await redisCommand(redis.port, 'CONFIG SET maxmemory 0'), '+OK\r\n')
  // the node reads the count (a first read of a channel) now: the eviction is seen
  const seen = await SseClient.connect(a.port, '/sub/first', { 'Last-Event-ID': '1:0' })
  seen.close()
  // more than the timeout later, a resume from a cursor of a second ago (inside the timeout):
  // `never` has no record because it was never published, which an eviction seen 4 s ago could
  // not have changed (an eviction still counted would signal a loss on it)
  await new Promise((resolve) => setTimeout(resolve, 4200))
  const id = lastId((await publish(a.base, 'fresh', 'f0')).text)
  const sec = Number(id.split(':')[0])
  t.true(await eventually(() => Math.floor(Date.now() / 1000) > sec, 3000))
  const multi = await SseClient.connect(a.port, '/sub/fresh,never', { 'Last-Event-ID': id })
  t.is((await publish(a.base, 'fresh', 'f1')).status, 201)
  t.deepEqual((await multi.waitEvents(1)).map((e) => e.data), ['f1'])
  t.is(gapOf(multi), undefined, multi.comments.join(' | '))
  multi.close()
})

test.serial('a message that reused an id, of a record lost again before the node read it: the node reads once, ends its subscribers with 410 and stays up', async (t) => {
  const { redis, nodes: [a, b] } = await cluster(t, 2)
  const sub = await SseClient.connect(a!.port, '/sub/twice')
  t.is((await publish(b!.base, 'twice', 'm0')).status, 201)
  const future = await idsAhead(redis.port, 'twice', 100)
  t.is(lastId((await publish(b!.base, 'twice', 'm1')).text), `${future}:1`)
  t.deepEqual((await sub.waitEvents(2)).map((e) => e.data), ['m0', 'm1'])
  // while A sees nothing, the record goes, m2 makes a new one (reusing ids below A's), and that goes too
  const resume = pause(t, a!)
  t.is(await redisCommand(redis.port, 'DEL pk:{twice}:m pk:{twice}:b'), ':2\r\n')
  t.is((await publish(b!.base, 'twice', 'm2')).status, 201)
  t.is(await redisCommand(redis.port, 'DEL pk:{twice}:m pk:{twice}:b'), ':2\r\n')
  resume()
  // A holds m2 and reads the record: none (it seeds its own last id back), so m2 belongs to no
  // record there is; A ends the subscribers instead of holding m2 and reading again forever
  await sub.waitClosed(10000)
  t.true(sub.comments.includes(':410: 410 Gone'))
  t.deepEqual(sub.events.map((e) => e.data), ['m0', 'm1'])
  t.is((await fetch(`${a!.base}/health`)).status, 200)
  // nobody subscribes any more (202); the ids go on above the last one A applied
  const m3 = await publish(a!.base, 'twice', 'm3')
  t.is(m3.status, 202)
  t.is(lastId(m3.text), `${future}:2`)
})

test.serial('a node that holds a channel reads it again when another node moved its floor past reused ids: a cursor in that range gets the gap signal there too', async (t) => {
  const { redis, nodes: [a, b] } = await cluster(t, 2)
  // B holds the channel live, for a subscriber that has m0
  const live = await SseClient.connect(b!.port, '/sub/floor')
  t.teardown(() => live.socket.destroy())
  const m0 = await publish(a!.base, 'floor', 'm0')
  t.is(m0.status, 201)
  t.is((await live.waitEvents(1))[0]!.data, 'm0')
  // what a node that applied ids up to 100 s ahead from the lost record does (lib/redis-lua.ts REUSED)
  const gen = await redisCall(redis.port, ['HGET', 'pk:{floor}:m', 'g']) as string
  const ahead = Math.floor(Date.now() / 1000) + 100
  const info = await redisCall(redis.port, ['INFO', 'server']) as string
  const sharded = Number(/redis_version:(\d+)/.exec(info)![1]) >= 7 ? '1' : '0'
  t.deepEqual(await redisCall(redis.port, ['EVAL', LUA.REUSED, '2', 'pk:{floor}:m', 'pk:{floor}:b', gen, String(ahead), '4', 'pk:{floor}:c', sharded]), [ahead, 5])
  // (to B, which reads the record again meanwhile: no recovery, so it keeps answering)
  const m1 = await publish(b!.base, 'floor', 'm1')
  t.is(m1.status, 201)
  t.is(lastId(m1.text), `${ahead}:6`)
  // B was told (`f<g>` on the shard channel) before m1 came, and applied m1 after reading the
  // record again: its live subscriber, whose last id is below the floor now, is told too (Redis
  // lost data around there; whether this one missed any, nothing can tell)
  t.deepEqual((await live.waitEvents(2)).map((e) => [e.data, e.id]), [['m0', lastId(m0.text)], ['m1', lastId(m1.text)]])
  t.is(gapOf(live), `:parkline-gap {"requested":"${lastId(m0.text)}","resumed":"${lastId(m1.text)}"}`)
  const resumed = await SseClient.connect(b!.port, '/sub/floor', { 'Last-Event-ID': lastId(m0.text) })
  t.deepEqual((await resumed.waitEvents(1)).map((e) => e.data), ['m1'])
  t.is(gapOf(resumed), `:parkline-gap {"requested":"${lastId(m0.text)}","resumed":"${lastId(m1.text)}"}`)
  resumed.close()
  // m0 is below the floor: it left B's copy too, so one that starts over gets m1 alone, no gap
  const fresh = await SseClient.connect(b!.port, '/sub/floor')
  t.deepEqual((await fresh.waitEvents(1)).map((e) => e.data), ['m1'])
  const m2 = await publish(a!.base, 'floor', 'm2')
  t.deepEqual((await fresh.waitEvents(2)).map((e) => [e.data, e.id]), [['m1', lastId(m1.text)], ['m2', lastId(m2.text)]])
  t.is(gapOf(fresh), undefined)
  fresh.close()
})

test.serial('Redis restarted empty and another node publishes before this node re-reads the channel, reusing ids it applied: its subscribers are ended with 410 and come back with the gap signal, not left silent', async (t) => {
  t.timeout(60000)
  // A sees nothing of the restart until B has published on the new, empty Redis
  const { redis, b, sub, future, resume } = await restartWhileStopped(t, 'race')
  t.true(await eventually(async () => (await fetch(`${b.base}/health`)).status === 200, START_MS))
  const m2 = await publish(b.base, 'race', 'm2')
  t.is(m2.status, 202)
  t.true(Number(lastId(m2.text).split(':')[0]) < future)
  // the new record's last id passes A's, so only its base tells that m2 reused an id A applied
  await setLastId(redis.port, 'race', future, 5)
  t.is(lastId((await publish(b.base, 'race', 'm3')).text), `${future}:6`)
  resume()
  await sub.waitClosed(20000)
  t.true(sub.comments.includes(':410: 410 Gone'))
  t.deepEqual(sub.events.map((e) => e.data), ['m0', 'm1'])
  // the ids went on past the larger of the record's last id (m3, future:6) and A's, one id more
  const back = await SseClient.connect(b.port, '/sub/race', { 'Last-Event-ID': `${future}:1` })
  const m4 = await publish(b.base, 'race', 'm4')
  t.is(lastId(m4.text), `${future}:8`)
  t.deepEqual((await back.waitEvents(1)).map((e) => e.data), ['m4'])
  t.is(gapOf(back), `:parkline-gap {"requested":"${future}:1","resumed":"${future}:8"}`)
  back.close()
})

test.serial('Redis restarted empty and a node that was behind seeded the channel first: a node ahead moves the ids on past its own, and its subscribers stay and get what follows', async (t) => {
  t.timeout(60000)
  const { redis, b, sub, future, resume } = await restartWhileStopped(t, 'seeded')
  // the record as a node that had applied only m0 seeds it (lib/redis-lua.ts SEED): base = last id
  const now = Math.floor(Date.now() / 1000)
  t.is(await redisCommand(redis.port, `HSET pk:{seeded}:m lt ${now} lg 0 ft ${now} fg 0 g 1 bt ${now} bg 0`), ':7\r\n')
  resume()
  // A re-reads it and moves its ids past the last one A applied
  t.true(await eventually(async () => (await redisCommand(redis.port, 'HGET pk:{seeded}:m lt')) === `$${String(future).length}\r\n${future}\r\n`, 20000))
  t.true(await eventually(async () => (await fetch(`${b.base}/health`)).status === 200, START_MS))
  const m2 = await publish(b.base, 'seeded', 'm2')
  t.is(lastId(m2.text), `${future}:2`)
  const evs = await sub.waitEvents(3, 10000)
  t.deepEqual(evs.map((e) => [e.data, e.id]), [['m0', evs[0]!.id], ['m1', `${future}:1`], ['m2', `${future}:2`]])
  t.false(sub.closed)
  sub.close()
})

test.serial('scripts: SEED says whether it made the record; FORWARD moves a record only while it is as the caller read it; DELETE keeps a last id ahead of the clock', async (t) => {
  const redis = await startRedis(t)
  const call = async (...args: string[]): Promise<unknown> => await redisCall(redis.port, args)
  const m = 'pk:{s}:m'
  const b = 'pk:{s}:b'
  // a node that was behind seeds 100:3; a second seed finds the record and says so
  const first = await call('EVAL', LUA.SEED, '1', m, '100', '3', '0') as [string, number]
  t.is(first[1], 1)
  t.deepEqual(await call('EVAL', LUA.SEED, '1', m, '100', '9', '0'), [first[0], 0])
  t.deepEqual(await call('HMGET', m, 'lt', 'lg', 'bt', 'bg'), ['100', '3', '100', '3'])
  // two publishes got in after a node ahead (at 100:5) read 100:3: the record is not as it read it
  t.is(await call('HSET', m, 'lt', '100', 'lg', '5'), 0)
  t.is(await call('EVAL', LUA.FORWARD, '2', m, b, '100', '5', '100', '3'), -1)
  // read again (100:5) while it has applied 100:7: moved, base and floor with it
  t.is(await call('EVAL', LUA.FORWARD, '2', m, b, '100', '7', '100', '5'), 1)
  t.deepEqual(await call('HMGET', m, 'lt', 'lg', 'ft', 'fg', 'bt', 'bg'), ['100', '7', '100', '7', '100', '7'])
  // not behind: left alone; gone: read again
  t.is(await call('EVAL', LUA.FORWARD, '2', m, b, '100', '6', '100', '7'), 0)
  t.is(await call('DEL', m), 1)
  t.is(await call('EVAL', LUA.FORWARD, '2', m, b, '100', '9', '100', '7'), -1)

  // REUSED: only on the generation the caller read; ids and floor one past the larger last id, base kept
  t.is(await call('HSET', m, 'lt', '100', 'lg', '3', 'ft', '100', 'fg', '-1', 'g', 'G2', 'bt', '100', 'bg', '-1'), 7)
  t.is(await call('XADD', b, '100-0', 'p', '1', 'd', 'm2'), '100-0')
  t.is(await call('EVAL', LUA.REUSED, '2', m, b, 'G1', '100', '7', 'pk:{s}:c', '0'), -1)
  t.deepEqual(await call('EVAL', LUA.REUSED, '2', m, b, 'G2', '100', '7', 'pk:{s}:c', '0'), [100, 8])
  t.deepEqual(await call('HMGET', m, 'lt', 'lg', 'ft', 'fg', 'bt', 'bg'), ['100', '8', '100', '8', '100', '-1'])
  t.is(await call('XLEN', b), 0, 'what the store held is below the floor now')
  // a message leaving the buffer later never lowers that floor: one older than it is evicted
  t.is(await call('XADD', b, '99-0', 'p', '1', 'd', 'old'), '99-0')
  const publishOne = async (): Promise<unknown> => await call('EVAL', LUA.PUBLISH, '6', m, b, 'pk:{s}:s', m, 'pk:{s}:d', m,
    'm', '', '0', '', '0', '1', '0', 'pk:{s}:c', '0', String(Date.now() + 60000), '0', '0', '')
  t.is(((await publishOne()) as unknown[]).length, 5)
  t.is(await call('XLEN', b), 1)
  t.deepEqual(await call('HMGET', m, 'ft', 'fg'), ['100', '8'])

  // DELETE of a record whose seconds ran 30 s ahead of Redis' clock: its last id is kept until that
  // second has passed, so the record a publish makes again goes on after it, not below it
  const ahead = Math.floor(Date.now() / 1000) + 30
  const d = 'pk:{s}:d'
  await call('HSET', m, 'lt', String(ahead), 'lg', '4', 'g', 'G3')
  t.not(await call('EVAL', LUA.DELETE, '5', m, b, 'pk:{s}:s', 'pk:{s}:x', d, '0', 'pk:{s}:c', '0'), null)
  t.is(await call('GET', d), `${ahead} 4`)
  t.true(Number(await call('PTTL', d)) > 29000, 'kept past the record\'s last second')
  const again = await publishOne() as unknown[]
  t.deepEqual([again[3], again[4]], [ahead, 5], 'ids go on after the deleted ones')
})

test.serial('pub/sub connections dropped while publishing: a node re-reads what it missed, no loss, no duplicate', async (t) => {
  t.timeout(60000)
  const { redis, nodes: [a, b] } = await cluster(t, 2)
  const onA = await SseClient.connect(a!.port, '/sub/drops')
  const onB = await SseClient.connect(b!.port, '/sub/drops')
  const sent: string[] = []
  for (let i = 0; i < 30; i++) {
    // every few messages, cut every node's pub/sub connection (they reconnect with backoff)
    if (i % 6 === 3) t.regex((await redisCommand(redis.port, 'CLIENT KILL TYPE pubsub')) ?? '', /^:\d+/)
    const body = `d${i}`
    t.true(await eventually(async () => {
      const r = await publish(i % 2 === 0 ? a!.base : b!.base, 'drops', body)
      return r.status === 201 || r.status === 202
    }, 10000))
    sent.push(body)
  }
  for (const c of [onA, onB]) {
    const evs = await c.waitEvents(30, 10000)
    t.deepEqual(evs.map((e) => e.data), sent)
    const ids = evs.map((e) => e.id)
    t.is(new Set(ids).size, 30)
    c.close()
  }
})

/** Every command Redis runs, as MONITOR prints it, until the test ends. */
async function monitor (t: ExecutionContext, port: number): Promise<{ lines: () => string[] }> {
  const s = net.connect(port, '127.0.0.1')
  t.teardown(() => { s.destroy() })
  let buf = ''
  s.on('data', (d: Buffer) => { buf += d.toString('latin1') })
  await once(s, 'connect')
  s.write('MONITOR\r\n')
  if (!await eventually(() => buf.startsWith('+OK\r\n'), 5000)) throw new Error('MONITOR did not answer')
  return { lines: () => buf.split('\r\n').slice(1) }
}

test.serial('a long-poll answered at once from a cold node is never counted; one that parks is', async (t) => {
  const { redis, nodes: [a, b] } = await cluster(t, 2)
  const r = await publish(a!.base, 'lpcount', 'one')
  t.is(r.status, 202)
  const mon = await monitor(t, redis.port)
  // node B has no replica of the channel: it loads it, then answers the poll from the buffer
  const first = await fetch(`${b!.base}/sub/lpcount`)
  t.is(first.status, 200)
  t.is(await first.text(), 'one')
  // the next poll parks: counted, and the count write is what Redis sees for this channel
  const ac = new AbortController()
  const parked = fetch(`${b!.base}/sub/lpcount`, {
    headers: { 'If-Modified-Since': first.headers.get('last-modified')!, 'If-None-Match': first.headers.get('etag')! },
    signal: ac.signal
  }).catch(() => null)
  t.teardown(() => ac.abort())
  // node B's count writes for the channel: [count, arrived] of each (COUNT: KEYS s m b; ARGV node
  // count arrived linger ttl — the only script whose first key is the counts hash)
  const writes = (): Array<[string, string]> => mon.lines()
    .map((l) => [...l.matchAll(/"([^"]*)"/g)].map((m) => m[1]!))
    .filter((q) => (q[0] === 'EVALSHA' || q[0] === 'EVAL') && q[2] === '3' && q[3] === 'pk:{lpcount}:s')
    .map((q) => [q[7]!, q[8]!])
  t.true(await eventually(() => writes().some(([n]) => n === '1'), 5000), 'the parked poll is counted')
  const w = writes()
  const upTo = w.findIndex(([n]) => n === '1')
  // before the parked poll's count: the answered poll's arrival (last requested), with count 0
  t.true(upTo > 0, JSON.stringify(w))
  t.deepEqual(w.slice(0, upTo).map(([n]) => n), Array(upTo).fill('0'))
  t.true(w.slice(0, upTo).some(([, arrived]) => arrived === '1'), 'the answered poll updates last requested')
  t.is((await info(a!.base, 'lpcount')).json?.subscribers, 1)
  ac.abort()
  await parked
})

test.serial('Redis stopped (SIGSTOP) for 10 s under publishing: publishes are refused while it hangs, /health 503 and back, retries with one Idempotency-Key deliver each message once', async (t) => {
  t.timeout(90000)
  const { redis, nodes: [a, b] } = await cluster(t, 2)
  const sub = await SseClient.connect(b!.port, '/sub/paused')
  t.teardown(() => sub.socket.destroy())
  t.true(await eventually(async () => (await info(a!.base, 'paused')).json?.subscribers === 1, 5000))
  const pubs = steadyPublish([a!.base, b!.base], 'paused', { count: 80, everyMs: 50, limitMs: 60000 })
  t.true(await eventually(() => pubs.acked.length >= 10, 10000))
  const pid = redis.proc.pid!
  process.kill(pid, 'SIGSTOP')
  let stopped = true
  t.teardown(() => { if (stopped) process.kill(pid, 'SIGCONT') })
  const since = Date.now()
  // a hanging Redis is a down Redis: health, status and new subscribers say so
  for (const n of [a!, b!]) t.true(await eventually(async () => (await fetch(`${n.base}/health`)).status === 503, 5000), '/health 503 while Redis hangs')
  const st = await (await fetch(`${a!.base}/status`)).text()
  t.regex(st, /redis up: 0/)
  // new subscribers get a bounded answer: a long-poll 503 with Retry-After, SSE its :503: end
  const late = await fetch(`${b!.base}/sub/paused-new`, { signal: AbortSignal.timeout(10000) })
  t.is(late.status, 503)
  t.truthy(late.headers.get('retry-after'))
  await late.body?.cancel()
  const lateSse = await fetch(`${b!.base}/sub/paused-new`, { headers: { Accept: 'text/event-stream' }, signal: AbortSignal.timeout(10000) })
  t.regex(await lateSse.text(), /:503: 503 Service Unavailable/)
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, 10000 - (Date.now() - since))))
  const went = Date.now()
  process.kill(pid, 'SIGCONT')
  stopped = false
  t.true(await eventually(async () => (await fetch(`${a!.base}/health`)).status === 200, 10000), '/health 200 again')
  const r = await pubs.done
  t.is(r.acked.length, 80)
  t.log(`publishes refused for ${r.resumeMs} ms in all; slowest answer ${r.slowest} ms; ${r.answers.filter((x) => x.status === 503).length} answers 503, ${r.answers.filter((x) => x.status === 0).length} without an answer`)
  t.true(r.answers.some((x) => x.status === 503), 'publishes while Redis hung answered 503')
  t.deepEqual(r.answers.filter((x) => x.status !== 503 && x.status !== 201 && x.status !== 202), [], 'nothing but 2xx and 503')
  // refused while it hung, not held until it came back: shown by the order of events (503s answered
  // before SIGCONT; ~4 fit in 10 s with redisCommandTimeout 2 s), not by a time bound
  const whileHung = r.answers.filter((x) => x.status === 503 && x.at >= since && x.at + x.ms < went).length
  t.true(whileHung >= 2, `${whileHung} publishes answered 503 while Redis hung`)
  const got = await sub.waitEvents(80, 15000).catch(() => sub.events)
  // each message once: no body twice, and exactly the acknowledged ids, in order
  t.deepEqual(got.map((e) => e.data), r.acked.map((x) => x.body))
  t.deepEqual(got.map((e) => e.id), r.acked.map((x) => x.id))
  t.false(sub.closed)
  t.is(a!.proc.exitCode, null)
  t.is(b!.proc.exitCode, null)
})

test.serial('a store that lost a channel\'s tail (as a failover can): ids go on above what nodes applied, and an older cursor gets the gap signal', async (t) => {
  const { redis, a, sub, ids } = await subscribedAcross(t, 'tail', 1, ['m1', 'm2', 'm3'])
  // what a promoted replica that never got m3 looks like: the record and the buffer end at m2
  const [t2, g2] = ids[1]!.split(':')
  const [t3, g3] = ids[2]!.split(':')
  t.regex((await redisCommand(redis.port, `XDEL pk:{tail}:b ${t3}-${g3}`)) ?? '', /^:1/)
  t.regex((await redisCommand(redis.port, `HSET pk:{tail}:m lt ${t2} lg ${g2}`)) ?? '', /^:0/)
  // the nodes' pub/sub connections drop (as they do in a failover): they re-read what they hold
  t.regex((await redisCommand(redis.port, 'CLIENT KILL TYPE pubsub')) ?? '', /^:\d+/)
  t.true(await eventually(async () => (await redisCommand(redis.port, 'HGET pk:{tail}:m lt')) === `$${t3!.length}\r\n${t3}\r\n` &&
    (await redisCommand(redis.port, 'HGET pk:{tail}:m lg')) === `$${g3!.length}\r\n${g3}\r\n`, 10000), 'node B moved the record to the last id it applied')
  // the next message is above m3 and reaches the live subscriber (not taken for an old one)
  let p4 = await publish(a.base, 'tail', 'm4')
  if (p4.status === 503) {
    t.true(await eventually(async () => (p4 = await publish(a.base, 'tail', 'm4')).status !== 503, 10000))
  }
  t.is(p4.status, 201)
  const id4 = lastId(p4.text)
  const got = await sub.waitEvents(4)
  t.is(got[3]!.id, id4)
  t.is(got[3]!.data, 'm4')
  // a subscriber resuming inside the lost range is told so: the gap signal, then m4
  const late = await SseClient.connect(a.port, '/sub/tail', { 'Last-Event-ID': ids[0]! })
  t.teardown(() => late.socket.destroy())
  const ev = await late.waitEvents(1)
  t.is(ev[0]!.id, id4)
  t.true(late.comments.some((c) => c.includes('parkline-gap')), late.comments.join(' | '))
})

test.serial('a failover lost a channel\'s last id and another node\'s publish took it again: the node that applied the lost message ends its subscribers with 410, and their cursor gets the gap signal', async (t) => {
  const { redis, a, b, sub, ids } = await subscribedAcross(t, 'retaken', 0, ['m1', 'm2', 'm3'])
  // what the store looks like when a promoted replica never got m3 and node B then published m3x,
  // which took m3's id (the record is the same one: same generation, same last id as A's)
  const [t3, g3] = ids[2]!.split(':')
  t.regex((await redisCommand(redis.port, 'DEL pk:{retaken}:b')) ?? '', /^:1/)
  t.is(await redisCall(redis.port, ['XADD', 'pk:{retaken}:b', `${t3}-${g3}`, 'p', String(Date.now()), 'd', 'm3x']), `${t3}-${g3}`)
  // the nodes' pub/sub connections drop (as they do in a failover): A re-reads the channel, finds
  // another message under the id it applied last, and moves the ids past it
  t.regex((await redisCommand(redis.port, 'CLIENT KILL TYPE pubsub')) ?? '', /^:\d+/)
  await sub.waitClosed(10000)
  t.true(sub.comments.includes(':410: 410 Gone'))
  t.deepEqual(sub.events.map((e) => e.data), ['m1', 'm2', 'm3'])
  // A's subscriber comes back with m3's id, on B: told of the gap (it never had m3x), then m4.
  // B published m3, so B too reads the channel again once its own pub/sub connection is back, and
  // ends the subscribers it then holds there with 410: on a loaded host that can come after this
  // connect (one CI run), and the client connects again with the same id, as after A's 410
  t.true(await eventually(async () => ((await redisCommand(redis.port, 'CLIENT LIST TYPE pubsub')) ?? '').split('\n').filter((l) => l.includes('cmd=')).length >= 2, 10000), 'both nodes\' pub/sub connections are back')
  let back = await SseClient.connect(b.port, '/sub/retaken', { 'Last-Event-ID': ids[2]! })
  for (let i = 0; i < 3; i++) {
    const ended = await back.until(() => back.closed, 2000).then(() => true, () => false)
    if (!ended) break
    // (or 503: its store connection not back yet)
    t.true(back.comments.some((c) => c.startsWith(':410:') || c.startsWith(':503:')), back.comments.join(' | '))
    back = await SseClient.connect(b.port, '/sub/retaken', { 'Last-Event-ID': ids[2]! })
  }
  t.teardown(() => back.socket.destroy())
  // (a retry after a 503 keeps the Idempotency-Key: a publish Redis took before a timeout is not doubled)
  let p4 = await publish(a.base, 'retaken', 'm4', { 'Idempotency-Key': 'm4' })
  if (p4.status === 503) t.true(await eventually(async () => (p4 = await publish(a.base, 'retaken', 'm4', { 'Idempotency-Key': 'm4' })).status !== 503, 10000))
  const ev = await back.waitEvents(1)
  t.deepEqual([ev[0]!.data, ev[0]!.id], ['m4', lastId(p4.text)])
  t.is(gapOf(back), `:parkline-gap {"requested":"${ids[2]!}","resumed":"${lastId(p4.text)}"}`)
})

test.serial('a message under an id a node applied, arriving live in the same record, that is not the one it applied: the node reads the record again and finds the reuse', async (t) => {
  const { redis, sub, ids } = await subscribedAcross(t, 'live-retaken', 0, ['m1', 'm2'])
  // another node's publish took m2's id after a failover, and A's pub/sub connection stayed up:
  // the store holds m2x under that id, and m2x reaches A live, in the same generation
  const [t2, g2] = ids[1]!.split(':')
  const gen = await redisCall(redis.port, ['HGET', 'pk:{live-retaken}:m', 'g']) as string
  const now = String(Date.now())
  t.regex((await redisCommand(redis.port, 'DEL pk:{live-retaken}:b')) ?? '', /^:1/)
  t.is(await redisCall(redis.port, ['XADD', 'pk:{live-retaken}:b', `${t2}-${g2}`, 'p', now, 'd', 'm2x']), `${t2}-${g2}`)
  const version = Number(/redis_version:(\d+)/.exec(await redisCall(redis.port, ['INFO', 'server']) as string)![1])
  t.is(await redisCall(redis.port, [version >= 7 ? 'SPUBLISH' : 'PUBLISH', 'pk:{live-retaken}:c', `m${t2} ${g2} ${now} -1 -1 ${gen}\nm2x`]), 1)
  await sub.waitClosed(10000)
  t.true(sub.comments.includes(':410: 410 Gone'))
  t.deepEqual(sub.events.map((e) => e.data), ['m1', 'm2'])
})

test.serial('a live replica whose re-read Redis answers with an error is read again on the next tick: its subscriber gets what was published, not a silent stall', async (t) => {
  const { redis, b, sub } = await subscribedAcross(t, 'refused', 0, ['m1'])
  // the buffer's key holds a string (as a script refused under maxmemory, or any answer that is an
  // error and not an outage): A's pub/sub connection drops, and A's read of the channel gets WRONGTYPE
  t.regex((await redisCommand(redis.port, 'SET pk:{refused}:b x')) ?? '', /^\+OK/)
  const errors = async (): Promise<number> => Number(/errorstat_WRONGTYPE:count=(\d+)/.exec((await redisCall(redis.port, ['INFO', 'errorstats'])) as string)?.[1] ?? 0)
  t.regex((await redisCommand(redis.port, 'CLIENT KILL TYPE pubsub')) ?? '', /^:\d+/)
  t.true(await eventually(async () => await errors() > 0, 10000), 'the read was answered WRONGTYPE')
  t.regex((await redisCommand(redis.port, 'DEL pk:{refused}:b')) ?? '', /^:1/)
  // the store is sound again: m2 reaches the subscriber on A (the refused read is tried again)
  let p2 = await publish(b.base, 'refused', 'm2', { 'Idempotency-Key': 'm2' })
  if (p2.status === 503) t.true(await eventually(async () => (p2 = await publish(b.base, 'refused', 'm2', { 'Idempotency-Key': 'm2' })).status !== 503, 10000))
  t.is(p2.status, 201)
  t.deepEqual((await sub.waitEvents(2, 10000)).map((e) => e.data), ['m1', 'm2'])
})

test.serial('a Redis that stalls on the very first commands (INFO past redisCommandTimeout) is probed until it answers; the node comes up', async (t) => {
  const redis = await startRedis(t)
  // a proxy that holds the first chunk carrying INFO server (and everything after it on that
  // connection) for 3 s: the node's first command times out right after its connection was ready
  let held = false
  const proxy = net.createServer((client) => {
    const upstream = net.connect(redis.port, '127.0.0.1')
    let hold: Buffer[] | null = null
    client.on('data', (d: Buffer) => {
      if (hold !== null) { hold.push(d); return }
      if (!held && d.includes('INFO\r\n$6\r\nserver')) {
        held = true
        hold = [d]
        setTimeout(() => { for (const b of hold!) upstream.write(b); hold = null }, 3000)
        return
      }
      upstream.write(d)
    })
    upstream.on('data', (d: Buffer) => client.write(d))
    client.on('error', () => upstream.destroy())
    upstream.on('error', () => client.destroy())
    client.on('close', () => upstream.destroy())
    upstream.on('close', () => client.destroy())
  })
  proxy.listen(0, '127.0.0.1')
  await once(proxy, 'listening')
  t.teardown(() => { proxy.close() })
  const port = (proxy.address() as net.AddressInfo).port
  const node = await startNodeUrl(t, `redis://127.0.0.1:${port}`)
  t.true(held, 'the first INFO was held')
  const r = await publish(node.base, 'stalled', 'x')
  t.is(r.status, 202)
})

test.serial('a long-poll that parks on a cold node next to one answered at once keeps its replica past the linger, and gets the next message', async (t) => {
  t.timeout(90000)
  const { nodes: [a, b] } = await cluster(t, 2)
  const first = await publish(a!.base, 'lplinger', 'one')
  t.is(first.status, 202)
  const id = lastId(first.text)
  const [sec, tag] = id.split(':')
  // on node B (no replica yet), at once: L1 with no cursor (answered from the buffer, never
  // counted) and L2 from `one` (parks, counted late): L1's answer marks the replica idle
  const l1 = fetch(`${b!.base}/sub/lplinger`)
  const ac = new AbortController()
  t.teardown(() => ac.abort())
  const l2 = fetch(`${b!.base}/sub/lplinger`, {
    headers: { 'If-Modified-Since': new Date(Number(sec) * 1000).toUTCString(), 'If-None-Match': tag! },
    signal: ac.signal
  })
  t.is(await (await l1).text(), 'one')
  t.true(await eventually(async () => (await info(a!.base, 'lplinger')).json?.subscribers === 1, 5000), 'L2 parked and counted')
  // past the 30 s linger (and a 2 s heartbeat tick): the replica must still be there for L2
  await new Promise((resolve) => setTimeout(resolve, 34000))
  const second = await publish(a!.base, 'lplinger', 'two')
  t.is(second.status, 201)
  const res = await Promise.race([l2, new Promise<null>((resolve) => setTimeout(resolve, 5000, null))])
  t.not(res, null, 'the parked long-poll got the message')
  t.is(await res!.text(), 'two')
})

test.serial('an event loop held up past redisCommandTimeout is not a store fault: a reply that arrived meanwhile answers the publish', async (t) => {
  const redis = await startRedis(t)
  const { app, base } = await startServer(t, { redisUrl: `redis://127.0.0.1:${redis.port}`, redisCommandTimeout: 300 })
  t.true(await eventually(async () => (await fetch(`${base}/health`)).status === 200, 10000))
  t.is((await app.parkline.publish('stall', 'first')).status, 202, 'the script is cached in Redis (no NOSCRIPT round trip below)')
  // hold the loop right after the publish's script is on the wire (a blocking call, a long GC, a
  // starved CPU), well past the deadline, while Redis answers: the reply waits unread in the socket
  const write = net.Socket.prototype.write
  let armed = false
  let held = 0
  net.Socket.prototype.write = function (this: net.Socket, ...args: unknown[]) {
    const out = (write as (...a: unknown[]) => boolean).apply(this, args)
    if (armed && String(args[0]).includes('EVALSHA')) {
      armed = false
      process.nextTick(() => {
        const until = Date.now() + 1000
        while (Date.now() < until) {}
        held++
      })
    }
    return out
  } as typeof write
  try {
    for (let round = 0; round < 3; round++) {
      armed = true
      const r = await app.parkline.publish('stall', `m${round}`).then((x) => x.status, (err: Error) => `${err.message}: ${String((err as { cause?: unknown }).cause)}`)
      t.is(held, round + 1, 'the loop was held after the write')
      t.is(r, 202, `round ${round}: the publish was answered by Redis, not timed out`)
    }
  } finally {
    net.Socket.prototype.write = write
  }
  t.regex(await (await fetch(`${base}/status`)).text(), /redis faults: 0\n/)
  t.is((await fetch(`${base}/health`)).status, 200)
})

test('a record that went on after a DELETE\'s last id, with Redis\' clock behind it, then expired: the record made again goes on after its ids, never repeats them', async (t) => {
  const redis = await startRedis(t)
  const srv = await startServer(t, { redisUrl: `redis://127.0.0.1:${redis.port}`, messageTimeout: 2 })
  const id = async (body: string): Promise<string> => (await (await fetch(`${srv.base}/pub/ib`, { method: 'POST', body, headers: { Accept: 'text/json' } })).json() as { last_message_id: string }).last_message_id
  // what a DELETE leaves, as if Redis' clock had stepped back 100 s since (a failover to a replica
  // whose clock is behind)
  const ahead = Math.floor(Date.now() / 1000) + 100
  t.is(await redisCommand(redis.port, `SET pk:{ib}:d "${ahead} 5" PX 3600000`), '+OK\r\n')
  const first = [await id('x1'), await id('x2')]
  t.deepEqual(first, [`${ahead}:6`, `${ahead}:7`])
  // the record expires with its messages
  t.true(await eventually(async () => (await redisCommand(redis.port, 'EXISTS pk:{ib}:m')) === ':0\r\n', 6000))
  t.is(await id('x3'), `${ahead}:8`)
})

test('maxChannels with Redis: the records of copies kept with no subscriber make room for a new channel rather than refuse it', async (t) => {
  const redis = await startRedis(t)
  const srv = await startServer(t, { redisUrl: `redis://127.0.0.1:${redis.port}`, maxChannels: 3 })
  for (const c of ['m1', 'm2', 'm3']) {
    const s = await SseClient.connect(srv.port, `/sub/${c}`)
    t.is(s.status, 200)
    s.close()
  }
  // each copy is kept a while (the node's linger); a fourth channel is admitted all the same
  await new Promise((resolve) => setTimeout(resolve, 300))
  const fourth = await SseClient.connect(srv.port, '/sub/m4')
  t.teardown(() => fourth.close())
  t.is(fourth.status, 200)
})

/** An SSE subscription on `port` with `token`, settled: admitted (open, `: hi`), or closed with its refusal. */
async function userStream (port: number, path: string, token: string): Promise<{ c: SseClient, verdict: string }> {
  const s = net.connect(port, '127.0.0.1')
  await once(s, 'connect')
  const c = await SseClient.over(s, path, { Authorization: `Bearer ${token}` })
  await c.until(() => c.closed, 500).catch(() => {})
  if (c.comments.some((x) => x.startsWith(':429:'))) return { c, verdict: 'user_limit' }
  return { c, verdict: !c.closed && c.comments.includes(': hi') ? 'admitted' : `${c.status} ${c.comments.join('|')}` }
}

/** A Redis (snapshots to `dir`, if given) and two nodes on it with maxSubscribersPerUser `limit`, and a token of `user`; `held` is closed at the end. */
async function userLimitNodes (t: ExecutionContext, limit: number, user: string, dir?: string): Promise<{ redis: Redis, a: ParklineNode, b: ParklineNode, token: string, held: SseClient[] }> {
  const redis = await startRedis(t, undefined, dir)
  const url = `redis://127.0.0.1:${redis.port}`
  const extra = ['--jwt-secret', SECRET, '--max-subscribers-per-user', String(limit)]
  const [a, b] = await Promise.all([startNodeUrl(t, url, extra), startNodeUrl(t, url, extra)])
  const { token } = await mint(['u*'], 120, user)
  const held: SseClient[] = []
  t.teardown(() => { for (const c of held) c.socket.destroy() })
  return { redis, a, b, token, held }
}

/** A TCP relay to Redis on `target` that the test can cut (every connection closed, new ones refused) and open again. */
async function relay (t: ExecutionContext, target: number): Promise<{ port: number, cut: () => void, open: () => void }> {
  let open = true
  const socks = new Set<net.Socket>()
  const server = net.createServer((c) => {
    if (!open) { c.destroy(); return }
    const u = net.connect(target, '127.0.0.1')
    socks.add(c).add(u)
    c.pipe(u)
    u.pipe(c)
    const end = (): void => { c.destroy(); u.destroy(); socks.delete(c); socks.delete(u) }
    for (const s of [c, u]) { s.on('error', end); s.on('close', end) }
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { for (const s of socks) s.destroy(); server.close() })
  return {
    port: (server.address() as net.AddressInfo).port,
    cut: () => { open = false; for (const s of socks) s.destroy(); socks.clear() },
    open: () => { open = true }
  }
}

/** A long-poll on `port`; its status, headers and body, or status 0 once `ms` pass. */
async function poll (port: number, path: string, headers: Record<string, string>, ms: number): Promise<{ status: number, headers: Headers | null, body: string }> {
  try {
    const r = await fetch(`http://127.0.0.1:${port}${path}`, { headers, signal: AbortSignal.timeout(ms) })
    return { status: r.status, headers: r.headers, body: await r.text() }
  } catch {
    return { status: 0, headers: null, body: '' }
  }
}

test.serial('Redis: a node cut off from the store re-reads its channels when back; a multiplexed long-poll parked there gets what arrived meanwhile in id order (an earlier second first), never a later one that would skip it', async (t) => {
  t.timeout(60000)
  const redis = await startRedis(t)
  const cut = await relay(t, redis.port)
  const a = await startNodeUrl(t, `redis://127.0.0.1:${redis.port}`)
  const b = await startNodeUrl(t, `redis://127.0.0.1:${cut.port}`)
  // channel x made first on B (its replica is read first when B is back), then y
  for (const [ch, body] of [['rx', 'x0'], ['ry', 'y0']]) t.is((await publish(a.base, ch, body)).status, 202)
  let cursor: Record<string, string> = {}
  for (let i = 0; i < 2; i++) {
    const r = await poll(b.port, '/sub/rx,ry', cursor, 5000)
    t.is(r.status, 200)
    cursor = { 'If-Modified-Since': r.headers!.get('last-modified')!, 'If-None-Match': r.headers!.get('etag')! }
  }
  const parked = poll(b.port, '/sub/rx,ry', cursor, 30000)
  // parked (counted in the store) before B is cut off
  t.true(await eventually(async () => (await info(b.base, 'rx')).json?.subscribers === 1, 10000))
  // B cut off; y's message in one second, then x's in a later one; then B may reconnect
  cut.cut()
  t.true(await eventually(async () => (await fetch(`${b.base}/health`)).status === 503, 10000))
  const early = lastId((await publish(a.base, 'ry', 'y1-earlier')).text)
  const second = Number(early.split(':')[0])
  while (Math.floor(Date.now() / 1000) <= second) await new Promise((resolve) => setTimeout(resolve, 20))
  const late = lastId((await publish(a.base, 'rx', 'x1-later')).text)
  t.true(Number(late.split(':')[0]) > second)
  cut.open()
  const first = await parked
  t.is(first.status, 200)
  t.is(first.body, 'y1-earlier', 'the earlier second first')
  t.is(first.headers!.get('parkline-gap'), null)
  const next = await poll(b.port, '/sub/rx,ry', { 'If-Modified-Since': first.headers!.get('last-modified')!, 'If-None-Match': first.headers!.get('etag')! }, 10000)
  t.is(next.status, 200)
  t.is(next.body, 'x1-later')
})

test.serial('maxSubscribersPerUser holds across nodes sharing a Redis: a burst spread over two nodes is admitted up to the limit, and a node that dies takes its count with it', async (t) => {
  const { a, b, token, held: clients } = await userLimitNodes(t, 3, 'hank')
  // 12 connections on each node, then 24 subscriptions of one user written at once: each node's
  // own count is under the limit when it checks; Redis' answer decides
  const sockets = await Promise.all(Array.from({ length: 24 }, async (_, i) => {
    const s = net.connect(i < 12 ? a.port : b.port, '127.0.0.1')
    await once(s, 'connect')
    return s
  }))
  clients.push(...await Promise.all(sockets.map(async (s, i) => await SseClient.over(s, `/sub/uburst${i}`, { Authorization: `Bearer ${token}` }))))
  const limited = (c: SseClient): boolean => c.comments.some((x) => x.startsWith(':429:'))
  t.true(await eventually(() => clients.every((c) => c.closed || (c.comments.includes(': hi') && !limited(c))), 10000))
  const admitted = clients.filter((c) => !c.closed)
  t.true(admitted.length <= 3, `${admitted.length} of 24 admitted, limit 3`)
  t.true(admitted.length >= 1)
  t.is(admitted.length + clients.filter(limited).length, 24, 'every other one refused at the limit')
  // the burst over, the user holds exactly the limit: one more while under it is admitted (on
  // either node), then one on each is refused
  for (let i = admitted.length; i < 3; i++) {
    t.true(await eventually(async () => {
      const r = await userStream(i % 2 === 0 ? a.port : b.port, `/sub/umore${i}`, token)
      clients.push(r.c)
      return r.verdict === 'admitted'
    }, 10000))
  }
  for (const node of [a, b]) {
    const r = await userStream(node.port, '/sub/uover', token)
    clients.push(r.c)
    t.is(r.verdict, 'user_limit')
  }
  // node a dies: once its heartbeat lapses and b sweeps it, b admits as many as a held
  const onA = clients.filter((c) => !c.closed && c.socket.remotePort === a.port).length
  process.kill(a.proc.pid!, 'SIGKILL')
  for (let i = 0; i < onA; i++) {
    t.true(await eventually(async () => {
      const r = await userStream(b.port, `/sub/uafter${i}`, token)
      clients.push(r.c)
      if (r.verdict !== 'admitted') r.c.socket.destroy()
      return r.verdict === 'admitted'
    }, 30000), `one of the ${onA} node a held`)
  }
  const over = await userStream(b.port, '/sub/uover2', token)
  clients.push(over.c)
  t.is(over.verdict, 'user_limit')
})

test.serial('maxSubscribersPerUser with Redis: a node writes its users\' counts again after a reconnect, so a Redis that comes back from an older snapshot does not let another node pass the limit', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'parkline-rdb-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const { redis, a, b, token, held } = await userLimitNodes(t, 2, 'ivan', dir)
  // a snapshot with both nodes alive and no count of the user, then the user's two on node a
  t.is(await redisCommand(redis.port, 'SAVE'), '+OK\r\n')
  for (const path of ['/sub/ua1', '/sub/ua2']) {
    const r = await userStream(a.port, path, token)
    held.push(r.c)
    t.is(r.verdict, 'admitted')
  }
  // Redis dies and comes back from the snapshot: a's count is gone there until a, reconnected,
  // writes it again (before that, a user can pass the limit: docs/configuration.md)
  await redis.kill()
  await redis.restart()
  t.true(await eventually(async () => await redisCommand(redis.port, 'HLEN pk:u:ivan') === ':1\r\n', 20000), 'node a wrote its count again')
  // node b refuses the user (503 while it reconnects; one it admitted would fail the test)
  let passed = 0
  t.true(await eventually(async () => {
    const r = await userStream(b.port, '/sub/ub', token)
    r.c.socket.destroy()
    if (r.verdict === 'admitted') passed++
    return r.verdict === 'user_limit'
  }, 20000))
  t.is(passed, 0)
  t.true(held.every((c) => !c.closed))
})

test.serial('maxSubscribersPerUser with Redis: a node that stalls past its heartbeat is swept, another admits the user meanwhile; back, the stalled node asks again for its subscribers and ends those past the limit (429), so the deployment is back under it', async (t) => {
  t.timeout(90000)
  const { redis, a, b, token, held } = await userLimitNodes(t, 1, 'lena')
  const onA = await userStream(a.port, '/sub/ul1', token)
  held.push(onA.c)
  t.is(onA.verdict, 'admitted')
  const first = await userStream(b.port, '/sub/ul2', token)
  held.push(first.c)
  t.is(first.verdict, 'user_limit')
  // a stalls (SIGSTOP) past its node life (6 s): b sweeps its counts, and then admits the user
  process.kill(a.proc.pid!, 'SIGSTOP')
  let stopped = true
  t.teardown(() => { if (stopped) process.kill(a.proc.pid!, 'SIGCONT') })
  let onB: SseClient | null = null
  t.true(await eventually(async () => {
    const r = await userStream(b.port, '/sub/ul3', token)
    held.push(r.c)
    if (r.verdict === 'admitted') onB = r.c
    else r.c.socket.destroy()
    return onB !== null
  }, 30000), 'b admits the user once a is swept')
  process.kill(a.proc.pid!, 'SIGCONT')
  stopped = false
  // a, back, finds the store forgot it: asked for again, its subscriber does not fit and ends 429
  t.true(await eventually(() => onA.c.closed, 15000), 'the stalled node ends the subscriber past the limit')
  t.true(onA.c.comments.some((x) => x.startsWith(':429:')), onA.c.comments.join('|'))
  t.false(onB!.closed)
  t.true(await eventually(async () => await redisCommand(redis.port, 'HVALS pk:u:lena') === '*1\r\n$1\r\n1\r\n', 10000), 'the store counts one')
  // and the limit holds on both nodes after
  for (const node of [a, b]) {
    const r = await userStream(node.port, '/sub/ul4', token)
    held.push(r.c)
    t.is(r.verdict, 'user_limit')
  }
})

test.serial('maxSubscribersPerUser with Redis: a subscription that left before its flush takes no grant from one that is still there', async (t) => {
  const { redis, a, b, token, held } = await userLimitNodes(t, 2, 'judy')
  const other = (await mint(['u*'], 120, 'karl')).token
  // the user's two on node b
  for (const path of ['/sub/ub1', '/sub/ub2']) {
    const r = await userStream(b.port, path, token)
    held.push(r.c)
    t.is(r.verdict, 'admitted')
  }
  // Redis stalls with a flush of node a's in flight (another user's subscription); two of the
  // user's then wait for a's next flush together, and the later one leaves before it
  t.is(await redisCommand(redis.port, 'CLIENT PAUSE 700 ALL'), '+OK\r\n')
  const connect = async (): Promise<net.Socket> => {
    const s = net.connect(a.port, '127.0.0.1')
    await once(s, 'connect')
    return s
  }
  const [sz, s1, s2] = await Promise.all([connect(), connect(), connect()])
  const z = SseClient.over(sz, '/sub/uz', { Authorization: `Bearer ${other}` })
  await new Promise((resolve) => setTimeout(resolve, 150))
  const first = SseClient.over(s1, '/sub/ua1', { Authorization: `Bearer ${token}` })
  void SseClient.over(s2, '/sub/ua2', { Authorization: `Bearer ${token}` }).catch(() => {})
  await new Promise((resolve) => setTimeout(resolve, 200))
  s2.destroy()
  const c1 = await first
  held.push(c1, await z)
  await c1.until(() => c1.closed || c1.comments.includes(': hi'), 5000).catch(() => {})
  await c1.until(() => c1.closed, 300).catch(() => {})
  // the user holds its two on b: the one left on a is refused
  t.true(c1.closed && c1.comments.some((x) => x.startsWith(':429:')), c1.comments.join('|'))
  t.true(held.slice(0, 2).every((c) => !c.closed))
})

test.serial('the revocation script keeps the stronger row: a user\'s later second, a token\'s longer exp, for good over any exp', async (t) => {
  const redis = await startRedis(t)
  const revoke = async (kind: string, value: string, held: number): Promise<unknown> => await redisCall(redis.port, ['EVAL', LUA.REVOKE, '2', REVOKED_JTI_KEY, REVOKED_SUB_KEY, kind, value, String(held)])
  await revoke('sub', 'u', 200)
  await revoke('sub', 'u', 100)
  t.is(await redisCall(redis.port, ['HGET', REVOKED_SUB_KEY, 'u']), '200')
  await revoke('sub', 'u', 300)
  t.is(await redisCall(redis.port, ['HGET', REVOKED_SUB_KEY, 'u']), '300')
  await revoke('jti', 'j', 500)
  await revoke('jti', 'j', 400)
  t.is(String(await redisCall(redis.port, ['ZSCORE', REVOKED_JTI_KEY, 'j'])), '500')
  await revoke('jti', 'j', 0)
  await revoke('jti', 'j', 900)
  t.is(String(await redisCall(redis.port, ['ZSCORE', REVOKED_JTI_KEY, 'j'])), 'inf')
})
