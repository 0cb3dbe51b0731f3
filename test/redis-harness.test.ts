// The real-Redis topologies of test/helpers/redis-cluster.ts: a 3 + 3 Redis Cluster and a
// Sentinel set start, answer as documented, and fail over when their master is killed. Other
// tests time failover with them, so a helper that waits too little (or forever) shows here first.
import test from 'ava'
import { redisCall, redisCalls, startCluster, startSentinel } from './helpers/redis-cluster.ts'

test.serial('cluster: 3 masters, masterOf owns the slot, failover promotes a replica', async (t) => {
  let start = Date.now()
  const cluster = await startCluster(t)
  t.log(`cluster started in ${Date.now() - start} ms`)
  t.is(cluster.nodes.length, 6)
  t.is(cluster.seeds.length, 6)
  t.true(cluster.seeds.every((s) => /^redis:\/\/127\.0\.0\.1:\d+$/.test(s)))
  t.is((await cluster.masters()).length, 3)

  const owner = await cluster.masterOf('{x}')
  const slot = await redisCall(owner.port, ['CLUSTER', 'KEYSLOT', 'x']) as number
  // the owner's own line of CLUSTER NODES lists the slot of x, and it takes a write there (no MOVED)
  const mine = String(await redisCall(owner.port, ['CLUSTER', 'NODES'])).split('\n').find((l) => l.includes('myself'))!
  t.true(mine.split(' ').slice(8).some((r) => { const [a, b = a] = r.split('-').map(Number); return slot >= a! && slot <= b! }))
  // replication is asynchronous: only a write a replica acknowledged survives the failover below.
  // Every replica the owner has must hold it: any of them may win the election (a cluster can
  // migrate a second replica to a master).
  const replicas = Number(/connected_slaves:(\d+)/.exec(String(await redisCall(owner.port, ['INFO', 'replication'])))?.[1] ?? 0)
  t.log(`the owner has ${replicas} replica(s)`)
  t.true(replicas >= 1)
  // WAIT waits for the writes of its own connection: the SET goes on the same one (on another, WAIT
  // had nothing to wait for and answered at once, and the failover lost the key in 1 run of 4)
  t.deepEqual(await redisCalls(owner.port, [['SET', '{x}k', 'v'], ['WAIT', String(replicas), '5000']], 7000), ['OK', replicas])

  start = Date.now()
  const { ms } = await cluster.failover(owner)
  t.log(`cluster failover in ${ms} ms (waited ${Date.now() - start} ms)`)
  t.false(owner.alive())
  await cluster.waitHealthy(1000)
  const next = await cluster.masterOf('{x}')
  t.not(next.port, owner.port)
  t.true(next.alive())
  t.is((await cluster.masters()).length, 3)
  // the write survived: read where the slot is served now (bounded: right after an election the
  // nodes' views of who serves it may still differ, and a node that no longer serves it answers
  // MOVED, not the value)
  let value: unknown = null
  for (const end = Date.now() + 10000; value !== 'v' && Date.now() < end;) {
    value = await redisCall((await cluster.masterOf('{x}')).port, ['GET', '{x}k'])
    if (value !== 'v') await new Promise((resolve) => setTimeout(resolve, 200))
  }
  t.deepEqual(value, 'v')
})

test.serial('sentinel: three sentinels, failover to the replica', async (t) => {
  let start = Date.now()
  const set = await startSentinel(t)
  t.log(`sentinel set started in ${Date.now() - start} ms`)
  t.is(set.sentinels.length, 3)
  t.is(set.sentinelNodes.length, 3)
  t.is(await set.currentMaster(), set.master.port)

  start = Date.now()
  const { ms, newMasterPort } = await set.failover()
  t.log(`sentinel failover in ${ms} ms (waited ${Date.now() - start} ms)`)
  t.is(newMasterPort, set.replica.port)
  t.is(await set.currentMaster(), set.replica.port)
  t.is(await set.failovers(), 1)
  t.false(set.master.alive())
})
