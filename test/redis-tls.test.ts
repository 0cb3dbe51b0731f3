// Parkline on Redis over TLS (rediss://), real servers started here with a certificate made by
// openssl for this run: one Redis, a Redis Cluster whose nodes speak TLS only (managed Redis
// with encryption in transit is set up like this), and a Sentinel set (master, replica, sentinel)
// that speaks TLS only. node-redis reaches the cluster's other nodes
// from what the seed's CLUSTER SLOTS names, so they must be reached over TLS too.
// openssl, redis-server and redis-cli are required (npm test installs them: bin/test-deps.sh).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import test, { type ExecutionContext } from 'ava'
import { SseClient, eventually, freePort, info, publish } from './helpers/server.ts'
import { pickPort } from './helpers/redis-cluster.ts'
import { START_MS } from './helpers/node.ts'

interface Certs { dir: string, ca: string, cert: string, key: string }

/** A CA and a certificate for 127.0.0.1 signed by it, for this test only. */
function makeCerts (t: ExecutionContext): Certs {
  const dir = mkdtempSync(join(tmpdir(), 'pk-tls-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const ssl = (...args: string[]): void => { execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' }) }
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=parkline-test-ca')
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'srv.key', '-out', 'srv.csr', '-subj', '/CN=127.0.0.1')
  writeFileSync(join(dir, 'ext'), 'subjectAltName=IP:127.0.0.1\n')
  ssl('x509', '-req', '-in', 'srv.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'srv.crt', '-days', '2', '-extfile', 'ext')
  return { dir, ca: join(dir, 'ca.crt'), cert: join(dir, 'srv.crt'), key: join(dir, 'srv.key') }
}

/** A redis-server that speaks TLS only, on `port`. */
function tlsRedis (t: ExecutionContext, certs: Certs, port: number, extra: string[] = []): ChildProcess {
  const proc = spawn('redis-server', ['--port', '0', '--tls-port', String(port), '--bind', '127.0.0.1', '--tls-cert-file', certs.cert, '--tls-key-file', certs.key,
    '--tls-ca-cert-file', certs.ca, '--tls-auth-clients', 'no', '--save', '', '--appendonly', 'no', ...extra], { cwd: certs.dir, stdio: 'ignore' })
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      process.kill(proc.pid!, 'SIGKILL')
      await once(proc, 'exit')
    }
  })
  return proc
}

/**
 * A TLS-only redis-server on a port from `pick`, answering PING as itself (its INFO process_id is
 * our child's): a port another test took between the pick and the bind makes redis exit, and it is
 * started again on another port (as test/helpers/redis-cluster.ts does for plain Redis).
 */
async function tlsRedisUp (t: ExecutionContext, certs: Certs, pick: () => Promise<number>, extra: (port: number) => string[] = () => []): Promise<{ port: number, proc: ChildProcess }> {
  let why = ''
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await pick()
    const proc = tlsRedis(t, certs, port, extra(port))
    const alive = (): boolean => proc.exitCode === null && proc.signalCode === null
    await eventually(() => !alive() || cli(certs, port, 'PING').trim() === 'PONG', 10000)
    if (alive() && cli(certs, port, 'INFO', 'server').includes(`process_id:${proc.pid!}\r\n`)) return { port, proc }
    why = alive() ? 'did not answer PING as itself within 10 s' : `exited (${String(proc.exitCode ?? proc.signalCode)}): port taken?`
    if (alive()) {
      proc.kill('SIGKILL')
      await once(proc, 'exit')
    }
  }
  throw new Error(`TLS redis-server did not start on a loopback port after 3 tries: ${why}`)
}

function cli (certs: Certs, port: number, ...args: string[]): string {
  try {
    return execFileSync('redis-cli', ['--tls', '--cacert', certs.ca, '-p', String(port), ...args], { encoding: 'utf8', timeout: 10000, stdio: ['ignore', 'pipe', 'ignore'] })
  } catch {
    return ''
  }
}

/** Two Parkline nodes on the store, trusting the test's CA (NODE_EXTRA_CA_CERTS, as an operator would). */
async function nodes (t: ExecutionContext, certs: Certs, store: string[]): Promise<Array<{ base: string, port: number }>> {
  return await Promise.all([0, 1].map(async () => {
    const port = await freePort()
    const proc = spawn(process.execPath, ['bin/parkline.ts', 'serve', '--workers', '1', '--port', String(port), '--host', '127.0.0.1', '--log-level', 'error', '--drain-window', '0', ...store],
      { stdio: 'ignore', env: { ...process.env, NODE_EXTRA_CA_CERTS: certs.ca } })
    t.teardown(async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGKILL')
        await once(proc, 'exit')
      }
    })
    const base = `http://127.0.0.1:${port}`
    t.true(await eventually(async () => (await fetch(`${base}/health`).catch(() => null))?.status === 200, START_MS), `parkline ${store.join(' ')} came up`)
    return { base, port }
  }))
}

/** A subscriber on node B gets what node A publishes; 30 channels spread over the masters all take publishes. */
async function exercise (t: ExecutionContext, a: { base: string }, b: { port: number }): Promise<void> {
  const s = await SseClient.connect(b.port, '/sub/tls')
  t.teardown(() => s.socket.destroy())
  t.true(await eventually(async () => (await info(a.base, 'tls')).json?.subscribers === 1, 10000))
  t.is((await publish(a.base, 'tls', 'over tls')).status, 201)
  t.deepEqual((await s.waitEvents(1)).map((e) => e.data), ['over tls'])
  const statuses = new Set<number>()
  for (let i = 0; i < 30; i++) statuses.add((await publish(a.base, `tls-spread-${i}`, 'x')).status)
  t.deepEqual([...statuses], [202])
}

test.serial('one Redis over TLS: a rediss:// redisUrl', async (t) => {
  t.timeout(60000)
  const certs = makeCerts(t)
  const { port } = await tlsRedisUp(t, certs, freePort)
  const [a, b] = await nodes(t, certs, ['--redis-url', `rediss://127.0.0.1:${port}`])
  await exercise(t, a!, b!)
})

test.serial('a Redis Cluster over TLS: the nodes found from a rediss:// seed are reached over TLS too', async (t) => {
  t.timeout(90000)
  const certs = makeCerts(t)
  // each with its cluster bus port (port + 10000) free too, as the cluster helper picks them
  const taken = new Set<number>()
  const ports: number[] = []
  for (let i = 0; i < 3; i++) {
    const dir = join(certs.dir, `n${i}`)
    execFileSync('mkdir', ['-p', dir])
    ports.push((await tlsRedisUp(t, certs, async () => await pickPort(taken, true),
      () => ['--cluster-enabled', 'yes', '--cluster-config-file', join(dir, 'nodes.conf'), '--tls-cluster', 'yes', '--tls-replication', 'yes', '--dir', dir])).port)
  }
  execFileSync('redis-cli', ['--tls', '--cacert', certs.ca, '--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], { stdio: 'ignore', timeout: 20000 })
  t.true(await eventually(() => ports.every((p) => cli(certs, p, 'CLUSTER', 'INFO').includes('cluster_state:ok')), 20000))
  // one seed: the other two masters are found from it
  const [a, b] = await nodes(t, certs, ['--redis-cluster', `rediss://127.0.0.1:${ports[0]!}`])
  await exercise(t, a!, b!)
  // every master took some of the publishes
  for (const port of ports) t.regex(cli(certs, port, 'INFO', 'commandstats'), /cmdstat_evalsha:calls=[1-9]/, `master ${port}`)
})

test.serial('Sentinel over TLS: rediss:// sentinels, and the master and replica they name reached over TLS, across a failover', async (t) => {
  t.timeout(120000)
  const certs = makeCerts(t)
  const { port: master, proc: masterProc } = await tlsRedisUp(t, certs, freePort, () => ['--tls-replication', 'yes'])
  const { port: replica } = await tlsRedisUp(t, certs, freePort, () => ['--tls-replication', 'yes', '--replicaof', '127.0.0.1', String(master)])
  const sentinel = await freePort()
  t.true(await eventually(() => cli(certs, replica, 'INFO', 'replication').includes('master_link_status:up'), 15000), 'the replica syncs over TLS')
  // one sentinel (quorum 1), TLS only, reaching the master and the replica over TLS too
  const conf = join(certs.dir, 'sentinel.conf')
  writeFileSync(conf, [`port 0`, `tls-port ${sentinel}`, 'bind 127.0.0.1', `tls-cert-file ${certs.cert}`, `tls-key-file ${certs.key}`, `tls-ca-cert-file ${certs.ca}`,
    'tls-auth-clients no', 'tls-replication yes', `sentinel monitor tlsmaster 127.0.0.1 ${master} 1`, 'sentinel down-after-milliseconds tlsmaster 1000',
    'sentinel failover-timeout tlsmaster 5000', ''].join('\n'))
  const sentinelProc = spawn('redis-server', [conf, '--sentinel'], { cwd: certs.dir, stdio: 'ignore' })
  t.teardown(async () => {
    if (sentinelProc.exitCode === null && sentinelProc.signalCode === null) {
      sentinelProc.kill('SIGKILL')
      await once(sentinelProc, 'exit')
    }
  })
  t.true(await eventually(() => /slaves=1|num-slaves\n1/.test(cli(certs, sentinel, 'SENTINEL', 'MASTER', 'tlsmaster')) ||
    cli(certs, sentinel, 'SENTINEL', 'REPLICAS', 'tlsmaster').includes(String(replica)), 15000), 'the sentinel sees the replica')
  const [a, b] = await nodes(t, certs, ['--redis-sentinel', `rediss://127.0.0.1:${sentinel}`, '--redis-sentinel-name', 'tlsmaster'])
  await exercise(t, a!, b!)
  t.regex(cli(certs, master, 'INFO', 'commandstats'), /cmdstat_evalsha:calls=[1-9]/, 'the master took the publishes')

  // the master dies; the sentinel promotes the replica, and both nodes follow it, over TLS
  const s = await SseClient.connect(b!.port, '/sub/tls-failover')
  t.teardown(() => s.socket.destroy())
  t.true(await eventually(async () => (await info(a!.base, 'tls-failover')).json?.subscribers === 1, 10000))
  process.kill(masterProc.pid!, 'SIGKILL')
  t.true(await eventually(() => cli(certs, sentinel, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'tlsmaster').includes(String(replica)), 30000), 'the sentinel promoted the replica')
  let after = 0
  t.true(await eventually(async () => {
    after = (await publish(a!.base, 'tls-failover', 'after the failover')).status
    return after === 201
  }, 30000), `a publish is taken by the new master (last status ${after})`)
  t.deepEqual((await s.waitEvents(1, 15000)).map((e) => e.data), ['after the failover'])
  t.regex(cli(certs, replica, 'INFO', 'commandstats'), /cmdstat_evalsha:calls=[1-9]/, 'the promoted replica took it')
})
