// Parkline on a real Redis Cluster (3 masters + 3 replicas) and a real Sentinel set, started here
// (test/helpers/redis-cluster.ts): channel ids that would break a naive hash tag, publish load
// spread over the masters, and failovers under a steady publisher with replica acknowledgements.
// redis-server, redis-cli and redis-sentinel are required (npm test installs them).
import test, { type ExecutionContext } from 'ava'
import { REVOKED_JTI_KEY, REVOKED_SUB_KEY, channelKey } from '../lib/redis-engine.ts'
import { startCluster, startReplicated, startSentinel, redisCall, redisSession, type RedisSession } from './helpers/redis-cluster.ts'
import { monitorRedis } from './helpers/redis.ts'
import { START_MS, serve, type Node } from './helpers/node.ts'
import { SseClient, eventually, info, publish } from './helpers/server.ts'
import { steadyPublish, type SteadyResult } from './helpers/steady.ts'
import { API_KEY, SECRET, mint, revoke } from './helpers/auth.ts'
import net from 'node:net'
import { once } from 'node:events'

async function nodes (t: ExecutionContext, store: string[], extra: string[] = []): Promise<[Node, Node]> {
  const [a, b] = await Promise.all([serve(t, ['--workers', '1', ...store, ...extra]), serve(t, ['--workers', '1', ...store, ...extra])])
  return [a!, b!]
}

async function status (base: string): Promise<Record<string, string>> {
  const text = await (await fetch(`${base}/status`)).text()
  return Object.fromEntries(text.trim().split('\n').map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 2)]))
}

/** Every acknowledged message reached the subscriber once, in order (ids and bodies). */
function exactlyOnce (t: ExecutionContext, name: string, got: Array<{ id?: string | null, data: string }>, r: SteadyResult): void {
  const ids = got.map((e) => e.id)
  for (const a of r.acked) t.is(ids.filter((id) => id === a.id).length, 1, `${name}: ${a.body} (${a.id}) delivered once`)
  const order = r.acked.map((a) => ids.indexOf(a.id))
  t.deepEqual(order, [...order].sort((x, y) => x - y), `${name}: in order`)
  t.deepEqual(got.filter((e) => r.acked.some((a) => a.id === e.id)).map((e) => e.data), r.acked.map((a) => a.body))
}

/**
 * What the steady publisher saw around a store fault (a failover, or a master that hung): only 2xx
 * and 503 (with Retry-After), and publishes refused while the store was away rather than held until
 * it was back, shown by the order of events, not by a time bound: `least` or more 503s answered
 * within `away` (from the kill or the stop to the new master serving, or the hung one going on). A
 * publish left hanging shows as no answer at all (the publisher gives up after 10 s), refused too.
 * A failover is over in about 2 s, and a 503 can take redisCommandTimeout (2 s): one may be all
 * that fits (a Sentinel failover in CI: 2,318 ms, one 503 inside it); a 10 s hang fits several.
 */
function refusedWhileAway (t: ExecutionContext, r: SteadyResult, away: { from: number, to: number }, least: number): void {
  const refused = r.answers.filter((a) => a.status === 503)
  t.true(refused.length > 0, 'publishes while the store was away answered 503')
  for (const a of refused) t.truthy(a.retryAfter, '503 carries Retry-After')
  t.deepEqual(r.answers.filter((a) => a.status !== 503 && a.status !== 201 && a.status !== 202), [], 'nothing but 2xx and 503')
  // answered within the window (a publish sent just before the kill and refused after it counts)
  const whileAway = refused.filter((a) => a.at + a.ms >= away.from && a.at + a.ms < away.to).length
  t.true(whileAway >= least, `${whileAway} publishes answered 503 while the store was away (not held until it came back)`)
}

test.serial('channel ids with {, }, :, % and Unicode each land on one slot and work across two nodes', async (t) => {
  const cluster = await startCluster(t)
  const [a, b] = await nodes(t, ['--redis-cluster', cluster.seeds.join(',')])
  const ids = ['a{b', 'x}y', '{tag}', '}{', 'a:b:c', 'ünïcødé-☃', '100%7D', '{}']
  const subs: SseClient[] = []
  for (const id of ids) {
    const s = await SseClient.connect(b.port, `/sub/${encodeURIComponent(id)}`)
    t.teardown(() => s.socket.destroy())
    t.is(s.status, 200, id)
    subs.push(s)
  }
  for (const id of ids) t.true(await eventually(async () => (await info(a.base, encodeURIComponent(id))).json?.subscribers === 1, 5000), id)
  for (const [i, id] of ids.entries()) {
    const r = await publish(a.base, encodeURIComponent(id), `to ${i}`)
    t.is(r.status, 201, id)
    const ev = await subs[i]!.waitEvents(1)
    t.is(ev[0]!.data, `to ${i}`)
    // every key of the channel on one slot, and the buffer on the master that owns it
    // (the server's channel key is the id's UTF-8 bytes, one char each)
    const keys = (['m', 'b', 's', 'c'] as const).map((p) => channelKey(Buffer.from(id, 'utf8').toString('latin1'), p))
    const slots = await Promise.all(keys.map(async (k) => await redisCall(cluster.nodes[0]!.port, ['CLUSTER', 'KEYSLOT', k])))
    t.is(new Set(slots).size, 1, `${id}: ${keys.join(' ')} on slots ${slots.join(' ')}`)
    const owner = await cluster.masterOf(keys[0]!)
    t.is(await redisCall(owner.port, ['EXISTS', keys[0]!, keys[1]!]), 2, `${id} stored on its slot's master`)
  }
  // a multiplexed subscription across slots
  const mx = await SseClient.connect(b.port, `/sub/${encodeURIComponent('a{b')},${encodeURIComponent('x}y')}`)
  t.teardown(() => mx.socket.destroy())
  t.true(await eventually(async () => (await info(a.base, encodeURIComponent('x}y'))).json?.subscribers === 2, 5000))
  await publish(a.base, encodeURIComponent('a{b'), 'one')
  await publish(a.base, encodeURIComponent('x}y'), 'two')
  // the buffered message of each channel first, then the live ones
  t.deepEqual((await mx.waitEvents(4)).map((e) => e.data), ['to 0', 'to 1', 'one', 'two'])
  const st = await status(a.base)
  t.is(st['redis mode'], 'cluster')
  t.is(st['redis up'], '1')
})

test.serial('publishing to 1,000 channels spreads the scripts and the shard channels over all three masters', async (t) => {
  const cluster = await startCluster(t)
  const [a, b] = await nodes(t, ['--redis-cluster', cluster.seeds.join(',')])
  const masters = await cluster.masters()
  t.is(masters.length, 3)
  // a subscriber on 30 channels: each master holds some of the shard channels
  const chans = Array.from({ length: 30 }, (_, i) => `spread-sub-${i}`)
  const s = await SseClient.connect(b.port, `/sub/${chans.slice(0, 10).join(',')}`)
  const s2 = await SseClient.connect(b.port, `/sub/${chans.slice(10, 20).join(',')}`)
  const s3 = await SseClient.connect(b.port, `/sub/${chans.slice(20).join(',')}`)
  t.teardown(() => { s.socket.destroy(); s2.socket.destroy(); s3.socket.destroy() })
  t.true(await eventually(async () => (await info(a.base, chans[29]!)).json?.subscribers === 1, 5000))
  for (const m of masters) await redisCall(m.port, ['CONFIG', 'RESETSTAT'])
  const N = 1000
  let next = 0
  const statuses = new Map<number, number>()
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next < N) {
      const i = next++
      const r = await publish(a.base, `spread-${i}`, 'x')
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1)
    }
  }))
  t.deepEqual([...statuses], [[202, N]])
  const per: number[] = []
  const shards: number[] = []
  for (const m of masters) {
    const stats = String(await redisCall(m.port, ['INFO', 'commandstats']))
    const calls = (name: string): number => Number(new RegExp(`cmdstat_${name}:calls=(\\d+)`).exec(stats)?.[1] ?? 0)
    per.push(calls('evalsha') + calls('eval'))
    shards.push((await redisCall(m.port, ['PUBSUB', 'SHARDCHANNELS', 'pk:*']) as unknown[]).length)
  }
  t.log(`scripts per master while publishing ${N} channels: ${per.join(' / ')}; shard channels per master: ${shards.join(' / ')}`)
  // ~1/3 each; below 20% on a master would mean the tags do not spread (p < 1e-20 by chance)
  for (const n of per) t.true(n >= N * 0.2, `each master ran at least 20% of the publishes: ${per.join(' / ')}`)
  for (const n of shards) t.true(n > 0, `each master holds shard channels: ${shards.join(' / ')}`)
  t.is(shards.reduce((x, y) => x + y, 0), 30)
})

/**
 * Two nodes with an SSE subscriber each on `ch`, a steady publisher (retrying 503s with the same
 * Idempotency-Key), and `fail` run once 30 messages are acknowledged: then every answer was a 2xx
 * or a 503 with Retry-After in time, and every acknowledged message reached both subscribers once.
 */
async function failoverUnderPublishing (t: ExecutionContext, store: string[], ch: string, fail: () => Promise<{ what: string, promoted: number }>): Promise<[Node, Node]> {
  const [a, b] = await nodes(t, store, ['--redis-replica-ack', '1'])
  const onA = await SseClient.connect(a.port, `/sub/${ch}`)
  const onB = await SseClient.connect(b.port, `/sub/${ch}`)
  t.teardown(() => { onA.socket.destroy(); onB.socket.destroy() })
  t.true(await eventually(async () => (await info(a.base, ch)).json?.subscribers === 2, 5000))
  const pubs = steadyPublish([a.base, b.base], ch, { count: 120, everyMs: 20, limitMs: 60000 })
  t.true(await eventually(() => pubs.acked.length >= 30, 20000), 'publishing before the failover')
  const from = Date.now()
  const { what, promoted } = await fail()
  const r = await pubs.done
  t.is(r.acked.length, 120)
  t.log(`${what}; publishes refused for ${r.resumeMs} ms in all; slowest answer ${r.slowest} ms; ${r.answers.filter((x) => x.status === 503).length} answers 503`)
  // away until the new master serves; with redisReplicaAck 1 a publish cannot be acknowledged
  // until it has a replica again either: the window ends with the first publish acknowledged after
  // the fault (a 503 answered before it was refused, not held), at the promotion at the earliest
  const back = r.answers.filter((x) => x.status !== 503 && x.at >= from).reduce((m, x) => Math.min(m, x.at + x.ms), Infinity)
  refusedWhileAway(t, r, { from, to: Math.max(promoted, back === Infinity ? promoted : back) }, 1)
  for (const [name, c] of [['node A', onA], ['node B', onB]] as const) {
    const got = await c.waitEvents(r.acked.length, 15000).catch(() => c.events)
    t.false(c.closed, `${name}: the subscriber stayed connected`)
    exactlyOnce(t, name, got, r)
  }
  t.is(a.proc.exitCode, null)
  t.is(b.proc.exitCode, null)
  return [a, b]
}

test.serial('a cluster master SIGKILLed under steady publishing (redisReplicaAck 1): 503s with Retry-After, then every acknowledged message exactly once on both nodes', async (t) => {
  t.timeout(90000)
  const cluster = await startCluster(t)
  const [a] = await failoverUnderPublishing(t, ['--redis-cluster', cluster.seeds.join(',')], 'busy', async () => {
    const owner = await cluster.masterOf(channelKey('busy', 'm'))
    const { ms } = await cluster.failover(owner)
    const promoted = Date.now()
    // the promoted replica has no replica of its own until the old master is back (as the
    // operator's supervisor restarts it): until then no publish on its slots can be acknowledged
    await owner.restart()
    return { what: `failover took ${ms} ms (cluster-node-timeout 1000), then the old master restarted`, promoted }
  })
  t.true(await eventually(async () => (await status(a.base))['redis failovers'] !== '0', 5000), '/status counts the failover')
  const metrics = await (await fetch(`${a.base}/metrics`)).text()
  t.regex(metrics, /parkline_store_slots_covered 16384/)
  t.regex(metrics, /parkline_store_masters\{state="reachable"\} 3/)
})

test.serial('a Sentinel failover under steady publishing (redisReplicaAck 1): Parkline follows the new master, every acknowledged message exactly once', async (t) => {
  t.timeout(90000)
  const set = await startSentinel(t)
  const [a] = await failoverUnderPublishing(t, ['--redis-sentinel', set.sentinelNodes.join(','), '--redis-sentinel-name', set.name], 'watched', async () => {
    const { ms, newMasterPort } = await set.failover()
    const promoted = Date.now()
    t.is(newMasterPort, set.replica.port)
    // the sentinels make the old master a replica of the new one once it is back
    await set.master.restart()
    return { what: `sentinel failover took ${ms} ms, then the old master restarted`, promoted }
  })
  t.is((await status(a.base))['redis mode'], 'sentinel')
  // the sentinels failed over once (had they failed back to the restarted master before the node
  // followed, it would have seen no master change: the count is of the changes a node saw)
  t.is(await set.failovers(), 1, 'the sentinels failed over once')
  // the master change is a failover, in /status and the metrics, as a cluster's is
  const failovers = Number((await status(a.base))['redis failovers'])
  t.is(failovers, 1, `redis failovers: ${failovers}`)
  t.regex(await (await fetch(`${a.base}/metrics`)).text(), /^parkline_store_failovers_total 1$/m)
})

test.serial('a cluster master stopped (SIGSTOP) for 10 s under publishing (redisReplicaAck 1): refused while it hangs, /health 503 and back, each message once', async (t) => {
  t.timeout(90000)
  // a hang, not a failover: cluster-node-timeout longer than the stop (the SIGKILL test fails over)
  const cluster = await startCluster(t, { nodeTimeoutMs: 20000 })
  const [a, b] = await nodes(t, ['--redis-cluster', cluster.seeds.join(',')], ['--redis-replica-ack', '1'])
  const ch = 'hung'
  const onB = await SseClient.connect(b.port, `/sub/${ch}`)
  t.teardown(() => onB.socket.destroy())
  t.true(await eventually(async () => (await info(a.base, ch)).json?.subscribers === 1, 5000))
  const pubs = steadyPublish([a.base, b.base], ch, { count: 100, everyMs: 40, limitMs: 60000 })
  t.true(await eventually(() => pubs.acked.length >= 20, 20000), 'publishing before the stop')
  const owner = await cluster.masterOf(channelKey(ch, 'm'))
  owner.stop()
  const since = Date.now()
  // (within the 10 s hang: a command past redisCommandTimeout, then the probe, on a loaded host)
  t.true(await eventually(async () => (await fetch(`${a.base}/health`, { signal: AbortSignal.timeout(2000) }).catch(() => null))?.status === 503, 9000), '/health 503 while the master hangs')
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, 10000 - (Date.now() - since))))
  const went = Date.now()
  owner.cont()
  t.true(await eventually(async () => (await fetch(`${a.base}/health`)).status === 200, START_MS), '/health 200 again')
  const r = await pubs.done
  t.is(r.acked.length, 100)
  t.log(`publishes refused for ${r.resumeMs} ms in all; slowest answer ${r.slowest} ms; ${r.answers.filter((x) => x.status === 503).length} answers 503`)
  refusedWhileAway(t, r, { from: since, to: went }, 2)
  const got = await onB.waitEvents(r.acked.length, 15000).catch(() => onB.events)
  exactlyOnce(t, 'node B', got, r)
  t.is(new Set(got.map((e) => e.data)).size, got.length, 'no message body delivered twice')
  t.is(a.proc.exitCode, null)
  t.is(b.proc.exitCode, null)
})

test.serial('redisReplicaAck: a publish whose script a resumed master answers late gets only what is left of redisCommandTimeout for its WAIT', async (t) => {
  t.timeout(60000)
  const { master, replica } = await startReplicated(t)
  const timeout = 4000
  const node = await serve(t, ['--workers', '1', '--redis-url', `redis://127.0.0.1:${master.port}`, '--redis-replica-ack', '1', '--redis-command-timeout', String(timeout)])
  const sub = await SseClient.connect(node!.port, '/sub/late')
  t.teardown(() => sub.socket.destroy())
  t.true(await eventually(async () => (await info(node!.base, 'late')).json?.subscribers === 1, 5000))
  t.is((await publish(node!.base, 'late', 'before')).status, 201)
  // what the master is sent (MONITOR): the WAIT's own timeout is the proof, not the wall time
  // the publish took (a loaded machine lengthens that, never the arguments)
  const monitor = await monitorRedis(t, master.port)
  // the replica cannot acknowledge; the master hangs for 3 s of the 4 s, then runs the script
  replica.stop()
  t.teardown(() => replica.cont())
  master.stop()
  t.teardown(() => master.cont())
  const pending = publish(node!.base, 'late', 'straddles', { 'Idempotency-Key': 'k1' })
  await new Promise((resolve) => setTimeout(resolve, 3000))
  master.cont()
  const r = await pending
  t.is(r.status, 503, 'no replica acknowledged it')
  t.truthy(r.headers.get('retry-after'))
  // the script was answered ~3 s into the publish, so the WAIT was given what was left (~4000 -
  // 3000, less its 250 ms margin: ~750); a whole one more would be 3750. The bound between leaves
  // the request 1.25 s to reach the node.
  t.true(await eventually(() => /"WAIT" "1" "\d+"/.test(monitor.seen()), 5000), 'the master was sent the WAIT')
  const waitMs = Number(/"WAIT" "1" "(\d+)"/.exec(monitor.seen())![1])
  t.true(waitMs <= 2000, `the WAIT was given ${waitMs} ms, not a whole ${timeout - 250}`)
  monitor.stop()
  // the store was slow, never away: the node stays healthy, and the retry (same key) is acknowledged
  // once the replica is back, the message delivered once
  t.is((await fetch(`${node!.base}/health`)).status, 200)
  replica.cont()
  let retry = { status: 0 }
  t.true(await eventually(async () => (retry = await publish(node!.base, 'late', 'straddles', { 'Idempotency-Key': 'k1' })).status === 201, 10000), `the retry is acknowledged (${retry.status})`)
  t.is((await publish(node!.base, 'late', 'after')).status, 201)
  const got = await sub.waitEvents(3, 5000).catch(() => sub.events)
  t.deepEqual(got.map((e) => e.data), ['before', 'straddles', 'after'])
})

test.serial('redisReplicaAck: a revoke is answered 200 only once a replica has it; with none acknowledging in time, 503 (the revocation still ends the streams and may be sent again)', async (t) => {
  const { master, replica } = await startReplicated(t)
  const node = await serve(t, ['--workers', '1', '--redis-url', `redis://127.0.0.1:${master.port}`, '--redis-replica-ack', '1', '--redis-command-timeout', '2000', '--jwt-secret', SECRET, '--api-key', API_KEY])
  t.is((await revoke(node.base, { sub: 'erin' })).status, 200)
  t.is(await redisCall(replica.port, ['HEXISTS', REVOKED_SUB_KEY, 'erin']), 1, 'on the replica when answered')
  // (issued before the revocation: one issued after it is a fresh login, kept)
  const { token } = await mint(['u*'], 120, 'frank')
  replica.stop()
  t.teardown(() => replica.cont())
  t.is((await revoke(node.base, { sub: 'frank' })).status, 503, 'no replica acknowledged it')
  const r = await fetch(`${node.base}/sub/u1`, { headers: { Authorization: `Bearer ${token}`, Accept: 'text/event-stream' } })
  t.is(r.status, 401, 'applied all the same')
  await r.body?.cancel()
  replica.cont()
  t.true(await eventually(async () => (await revoke(node.base, { sub: 'frank' })).status === 200, 10000), 'sent again once the replica is back')
})

test.serial('node-redis closing a master\'s pub/sub connection after the last subscription there ends is not a store fault', async (t) => {
  t.timeout(90000)
  const cluster = await startCluster(t)
  const [a] = await nodes(t, ['--redis-cluster', cluster.seeds.join(',')])
  const s = await SseClient.connect(a.port, '/sub/solo')
  t.true(await eventually(async () => (await info(a.base, 'solo')).json?.subscribers === 1, 5000))
  s.socket.destroy()
  // past the 30 s linger: the replica is dropped, its shard channel unsubscribed, and node-redis
  // closes that master's pub/sub connection, which is no outage
  await new Promise((resolve) => setTimeout(resolve, 34000))
  const st = await status(a.base)
  t.is(st['redis faults'], '0')
  t.is(st['redis up'], '1')
  t.is((await fetch(`${a.base}/health`)).status, 200)
})

/**
 * On `port`: refuse new connections (maxclients 1), then cut the pub/sub connections that hold a
 * shard channel subscription (a node's subscriber connection; a node's control-channel connection
 * is left alone). Command connections stay up: the store answers, but this pub/sub cannot come back.
 */
async function cutShardPubSub (t: ExecutionContext, port: number): Promise<RedisSession> {
  const session = await redisSession(port)
  t.teardown(async () => { await session.call(['CONFIG', 'SET', 'maxclients', '10000']); session.close() })
  const list = String(await session.call(['CLIENT', 'LIST', 'TYPE', 'pubsub']))
  const ids = list.split('\n').filter((l) => /\bssub=[1-9]/.test(l)).map((l) => /\bid=(\d+)/.exec(l)![1]!)
  t.true(ids.length > 0, `a shard channel subscriber connection on ${port}: ${list}`)
  t.is(String(await session.call(['CONFIG', 'SET', 'maxclients', '1'])), 'OK')
  for (const id of ids) t.is(await session.call(['CLIENT', 'KILL', 'ID', id]), 1)
  return session
}

/** Publish through `base` until acknowledged (the node may refuse for a moment: 503 with Retry-After). */
async function publishAcked (t: ExecutionContext, base: string, ch: string, body: string): Promise<void> {
  let status = 0
  t.true(await eventually(async () => (status = (await publish(base, ch, body)).status) === 201, 15000), `${body} acknowledged (last ${status})`)
}

for (const mode of ['cluster', 'sentinel'] as const) {
  test.serial(`${mode}: a node whose pub/sub connection is cut while its commands still work stays down until pub/sub is back, then delivers what was published meanwhile`, async (t) => {
    t.timeout(90000)
    let store: string[]
    let ownerPort: number
    const ch = 'cut'
    if (mode === 'cluster') {
      const cluster = await startCluster(t)
      store = ['--redis-cluster', cluster.seeds.join(',')]
      ownerPort = (await cluster.masterOf(channelKey(ch, 'm'))).port
    } else {
      const set = await startSentinel(t)
      store = ['--redis-sentinel', set.sentinelNodes.join(','), '--redis-sentinel-name', set.name]
      ownerPort = await set.currentMaster()
    }
    const [a, b] = await nodes(t, store)
    const s = await SseClient.connect(a.port, `/sub/${ch}`)
    t.teardown(() => s.socket.destroy())
    t.true(await eventually(async () => (await info(b.base, ch)).json?.subscribers === 1, 5000))
    await publishAcked(t, b.base, ch, 'before')
    await s.waitEvents(1, 5000)
    // B publishes all along: before the cut, while A cannot get its pub/sub connection back, after
    const pubs = steadyPublish([b.base], ch, { count: 40, everyMs: 150, limitMs: 60000 })
    t.true(await eventually(() => pubs.acked.length >= 5, 10000), 'publishing before the cut')
    const session = await cutShardPubSub(t, ownerPort)
    // (the first half second: the connection's error, then A's fault)
    await new Promise((resolve) => setTimeout(resolve, 500))
    const health: number[] = []
    for (let i = 0; i < 25; i++) {
      health.push((await fetch(`${a.base}/health`)).status)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    t.deepEqual(health.filter((h) => h !== 503), [], `A is down all the while its pub/sub connection is away: ${health.join(' ')}`)
    t.is(String(await session.call(['CONFIG', 'SET', 'maxclients', '10000'])), 'OK')
    const r = await pubs.done
    t.is(r.acked.length, 40)
    t.true(await eventually(async () => (await fetch(`${a.base}/health`)).status === 200, START_MS), 'A up again')
    await publishAcked(t, b.base, ch, 'after')
    const got = await s.waitEvents(r.acked.length + 2, 10000).catch(() => s.events)
    exactlyOnce(t, 'node A', got.slice(1, -1), r)
    t.deepEqual([got[0]?.data, got.at(-1)?.data, got.length], ['before', 'after', r.acked.length + 2])
  })
}

test.serial('cluster: a channel\'s slot moved to another master under publishing (resharding): every acknowledged message once on the node whose subscription moved', async (t) => {
  t.timeout(90000)
  const cluster = await startCluster(t)
  const [a, b] = await nodes(t, ['--redis-cluster', cluster.seeds.join(',')])
  const ch = 'moving'
  const s = await SseClient.connect(a.port, `/sub/${ch}`)
  t.teardown(() => s.socket.destroy())
  t.true(await eventually(async () => (await info(b.base, ch)).json?.subscribers === 1, 5000))
  const from = await cluster.masterOf(channelKey(ch, 'm'))
  const to = (await cluster.masters()).find((m) => m !== from)!
  const pubs = steadyPublish([b.base], ch, { count: 600, everyMs: 2, limitMs: 60000 })
  t.true(await eventually(() => pubs.acked.length >= 5, 10000), 'publishing before the move')
  let during = 0
  // publishes go on while the target already serves the slot and the source may not know it yet
  await cluster.moveSlot(channelKey(ch, 'm'), to, async () => {
    const at = pubs.acked.length
    await new Promise((resolve) => setTimeout(resolve, 1500))
    during = pubs.acked.length - at
  })
  t.true(during > 0, `published while only the target served the slot (${during})`)
  t.is((await cluster.masterOf(channelKey(ch, 'm'))).port, to.port)
  // node A heard of the move (its subscription was ended on the old master): it reads the channel again
  t.true(await eventually(async () => (await status(a.base))['redis faults'] !== '0', 5000), 'the move counts as a fault on A')
  const r = await pubs.done
  t.is(r.acked.length, 600)
  await publishAcked(t, b.base, ch, 'after')
  const got = await s.waitEvents(r.acked.length + 1, 15000).catch(() => s.events)
  exactlyOnce(t, 'node A', got.slice(0, -1), r)
  t.is(got.at(-1)?.data, 'after')
  t.is(got.length, r.acked.length + 1)
})

test.serial('cluster: maxSubscribersPerUser holds across two nodes on a Redis Cluster, for users whose names would break a naive hash tag too', async (t) => {
  const cluster = await startCluster(t)
  const [a, b] = await nodes(t, ['--redis-cluster', cluster.seeds.join(',')], ['--jwt-secret', SECRET, '--max-subscribers-per-user', '2'])
  const clients: SseClient[] = []
  t.teardown(() => { for (const c of clients) c.socket.destroy() })
  const open = async (port: number, path: string, token: string): Promise<SseClient> => {
    const s = net.connect(port, '127.0.0.1')
    await once(s, 'connect')
    const c = await SseClient.over(s, path, { Authorization: `Bearer ${token}` })
    clients.push(c)
    return c
  }
  const settled = (c: SseClient): boolean => c.closed || (c.comments.includes(': hi') && !c.comments.some((x) => x.startsWith(':429:')))
  for (const user of ['lena', 'mo{x}', '{}', 'nick}{']) {
    const { token } = await mint(['u*'], 120, user)
    // 8 at once, 4 on each node: at most the limit admitted, the rest 429
    const burst = await Promise.all(Array.from({ length: 8 }, async (_, i) => await open(i < 4 ? a.port : b.port, `/sub/u${i}`, token)))
    t.true(await eventually(() => burst.every(settled), 10000), user)
    const admitted = burst.filter((c) => !c.closed).length
    t.true(admitted >= 1 && admitted <= 2, `${user}: ${admitted} of 8 admitted, limit 2`)
    t.is(burst.filter((c) => c.comments.some((x) => x.startsWith(':429:'))).length, 8 - admitted, user)
    // topped up to the limit, then refused on both nodes
    for (let i = admitted; i < 2; i++) {
      t.true(await eventually(async () => {
        const c = await open(b.port, `/sub/umore${i}`, token)
        await c.until(() => settled(c), 5000).catch(() => {})
        return !c.closed
      }, 10000), user)
    }
    for (const node of [a, b]) {
      const c = await open(node.port, '/sub/uover', token)
      t.true(await eventually(() => settled(c), 5000))
      t.true(c.closed && c.comments.some((x) => x.startsWith(':429:')), `${user} on ${node.port}: ${c.comments.join('|')}`)
    }
  }
})

test.serial('cluster: the master that holds the revocations, flushed (a restart without persistence), loses the store\'s epoch with them: the nodes write them back, and a node that starts later refuses the revoked tokens', async (t) => {
  const cluster = await startCluster(t)
  const args = ['--redis-cluster', cluster.seeds.join(','), '--jwt-secret', SECRET, '--api-key', API_KEY]
  const [a] = await nodes(t, args)
  const { token } = await mint(['u*'], 300, 'erin')
  const held = await mint(['u*'], 300, 'frank')
  t.is((await revoke(a.base, { sub: 'erin' })).status, 200)
  t.is((await revoke(a.base, { jti: held.jti })).status, 200)
  const master = await cluster.masterOf(REVOKED_JTI_KEY)
  t.is(master, await cluster.masterOf(REVOKED_SUB_KEY))
  const count = async (): Promise<number> => Number(await redisCall(master.port, ['ZCARD', REVOKED_JTI_KEY])) + Number(await redisCall(master.port, ['HLEN', REVOKED_SUB_KEY]))
  t.is(await count(), 2)
  // that master alone loses its data: no other master's keys change
  t.is(await redisCall(master.port, ['FLUSHALL']), 'OK')
  t.true(await eventually(async () => await count() === 2, 20000), 'written back')
  const c = await serve(t, ['--workers', '1', ...args])
  for (const tok of [token, held.token]) {
    const r = await fetch(`${c.base}/sub/u1`, { headers: { Authorization: `Bearer ${tok}`, Accept: 'text/event-stream' } })
    t.is(r.status, 401)
    t.regex(r.headers.get('www-authenticate') ?? '', /token revoked/)
    await r.body?.cancel()
  }
})
