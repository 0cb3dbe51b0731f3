// Parkline as the Redis user docs/redis.md ("Access") tells operators to create, read from that
// page as written, on one Redis, a Redis Cluster and a Sentinel set (real servers, started here),
// with the `default` user turned off: every node Parkline reaches must be logged in to as that
// user, and nothing it does may be refused (Redis's ACL LOG stays empty).
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import test, { type ExecutionContext } from 'ava'
import { SignJWT } from 'jose'
import { startCluster, startSentinel, redisCalls, type Resp } from './helpers/redis-cluster.ts'
import { startRedis } from './helpers/redis.ts'
import { serve, type Node } from './helpers/node.ts'
import { SseClient, eventually, freePort, info, publish } from './helpers/server.ts'

const PASSWORD = 'acl-test-password'
/** A user of the test's own, to read ACL LOG once `default` is off. */
const PROBE = ['probe', 'probe-password']

/** The ACL SETUSER line of docs/redis.md, its password filled in, as command arguments. */
function documentedUser (): string[] {
  const doc = readFileSync(new URL('../docs/redis.md', import.meta.url), 'utf8')
  const line = /^ACL SETUSER parkline .*$/m.exec(doc)?.[0]
  if (line === undefined) throw new Error('docs/redis.md has no ACL SETUSER parkline line')
  return line.replace('>CHANGE-ME', `>${PASSWORD}`).split(/\s+/)
}

/** On each node: the documented user, a probe user for the test, then `default` off. */
async function lockDown (t: ExecutionContext, ports: number[]): Promise<void> {
  for (const port of ports) {
    const r = await redisCalls(port, [documentedUser(), ['ACL', 'SETUSER', PROBE[0]!, 'on', `>${PROBE[1]!}`, '~*', '&*', '+@all'], ['ACL', 'LOG', 'RESET'], ['ACL', 'SETUSER', 'default', 'off']])
    t.deepEqual(r, ['OK', 'OK', 'OK', 'OK'], `ACL set up on ${port}`)
  }
}

/** ACL LOG of each node: what Redis refused anyone. */
async function refusals (ports: number[]): Promise<string[]> {
  const out: string[] = []
  for (const port of ports) {
    const r = await redisCalls(port, [['AUTH', PROBE[0]!, PROBE[1]!], ['ACL', 'LOG']], 2000)
    const log = r?.[1]
    if (!Array.isArray(log)) { out.push(`${port}: no ACL LOG (${String(r?.[0])})`); continue }
    for (const e of log as Resp[][]) {
      const f = new Map<string, Resp>()
      for (let i = 0; i + 1 < e.length; i += 2) f.set(String(e[i]), e[i + 1]!)
      out.push(`${port}: ${String(f.get('username'))} refused ${String(f.get('reason'))} ${String(f.get('object'))}`)
    }
  }
  return out
}

/** What a deployment does with its store: subscribe, publish (with an Idempotency-Key, replayed), info, resume, delete. */
async function exercise (t: ExecutionContext, a: Node, b: Node): Promise<void> {
  const ch = 'acl-{x}:y'
  const path = `/sub/${encodeURIComponent(ch)}`
  const s = await SseClient.connect(b.port, path)
  t.teardown(() => s.socket.destroy())
  t.is(s.status, 200)
  t.true(await eventually(async () => (await info(a.base, ch)).json?.subscribers === 1, 10000), 'the count crosses nodes')
  t.is((await publish(a.base, ch, 'one', { 'Idempotency-Key': 'k1' })).status, 201)
  t.is((await publish(a.base, ch, 'one', { 'Idempotency-Key': 'k1' })).headers.get('idempotent-replayed'), 'true')
  const [first] = await s.waitEvents(1)
  t.is(first!.data, 'one')
  t.is((await publish(b.base, ch, 'two')).status, 201)
  const resumed = await SseClient.connect(a.port, path, { 'Last-Event-ID': first!.id! })
  t.teardown(() => resumed.socket.destroy())
  t.deepEqual((await resumed.waitEvents(1)).map((e) => e.data), ['two'])
  t.is((await fetch(`${a.base}/pub/${encodeURIComponent(ch)}`, { method: 'DELETE' })).status, 200)
  await s.waitClosed()
  for (const n of [a, b]) t.is((await fetch(`${n.base}/health`)).status, 200)
}

test.serial('one Redis: Parkline as the documented user, in the URL; nothing refused', async (t) => {
  const redis = await startRedis(t)
  await lockDown(t, [redis.port])
  const url = `redis://parkline:${PASSWORD}@127.0.0.1:${redis.port}`
  const [a, b] = await Promise.all([serve(t, ['--workers', '1', '--redis-url', url]), serve(t, ['--workers', '1', '--redis-url', url])])
  await exercise(t, a, b)
  t.deepEqual(await refusals([redis.port]), [])
})

test.serial('a Redis Cluster: the seeds\' user:password@ logs in to every node, the ones found from the seeds too; nothing refused', async (t) => {
  t.timeout(120000)
  const cluster = await startCluster(t)
  const ports = cluster.nodes.map((n) => n.port)
  await lockDown(t, ports)
  // one seed: node-redis finds the other masters from it and must log in to them as well
  const seed = `redis://parkline:${PASSWORD}@127.0.0.1:${ports[0]!}`
  const [a, b] = await Promise.all([serve(t, ['--workers', '1', '--redis-cluster', seed]), serve(t, ['--workers', '1', '--redis-cluster', seed])])
  await exercise(t, a, b)
  // channels on every master: each one is logged in to
  for (let i = 0; i < 30; i++) t.is((await publish(a.base, `acl-spread-${i}`, 'x')).status, 202)
  t.deepEqual(await refusals(ports), [])
})

test.serial('a Sentinel set: redisUsername and redisPassword log in to the master the sentinels name; nothing refused', async (t) => {
  t.timeout(120000)
  const set = await startSentinel(t)
  const ports = [set.master.port, set.replica.port]
  await lockDown(t, ports)
  const args = ['--workers', '1', '--redis-sentinel', set.sentinelNodes.join(','), '--redis-sentinel-name', set.name, '--redis-username', 'parkline', '--redis-password', PASSWORD]
  const [a, b] = await Promise.all([serve(t, args), serve(t, args)])
  await exercise(t, a, b)
  t.deepEqual(await refusals(ports), [])
})

test('Redis credentials: each part from one place; seeds that differ, or a user without a password, are refused at start', async (t) => {
  const { resolveOptions, redisCredentials } = await import('../lib/config.ts')
  const creds = (o: Record<string, unknown>): unknown => redisCredentials(resolveOptions(o))
  t.throws(() => resolveOptions({ redisUrl: 'redis://u:p@127.0.0.1:6379', redisPassword: 'q' }), { message: /password is set twice/ })
  t.throws(() => resolveOptions({ redisUrl: 'redis://u:p@127.0.0.1:6379', redisUsername: 'v' }), { message: /user is set twice/ })
  t.throws(() => resolveOptions({ redisCluster: ['redis://u:p@127.0.0.1:7000', 'redis://v:p@127.0.0.1:7001'] }), { message: /different credentials/ })
  t.throws(() => resolveOptions({ redisSentinel: ['127.0.0.1:26379'], redisUsername: 'u' }), { message: /has no password/ })
  t.throws(() => resolveOptions({ redisUrl: 'redis://u@127.0.0.1:6379' }), { message: /has no password/ })
  t.deepEqual(creds({ redisCluster: ['redis://u:p@127.0.0.1:7000', 'redis://127.0.0.1:7001'] }), { username: 'u', password: 'p' })
  // a password alone (the default user's): no empty user name sent with it
  t.deepEqual(creds({ redisCluster: ['redis://:p%40ss@127.0.0.1:7000'] }), { password: 'p@ss' })
  // the user in the URL, the password from the environment (out of the config file)
  t.deepEqual(creds({ redisUrl: 'redis://u@127.0.0.1:6379', redisPassword: 'p' }), { username: 'u', password: 'p' })
  t.deepEqual(creds({ redisSentinel: ['127.0.0.1:26379'], redisUsername: 'u', redisPassword: 'p' }), { username: 'u', password: 'p' })
  t.deepEqual(creds({ redisUrl: 'redis://127.0.0.1:6379' }), {})
})

test.serial('a Redis Cluster whose default user has a password, given as redis://:password@ seeds: every node logged in to', async (t) => {
  t.timeout(120000)
  const cluster = await startCluster(t)
  const ports = cluster.nodes.map((n) => n.port)
  for (const port of ports) {
    t.deepEqual(await redisCalls(port, [['ACL', 'SETUSER', PROBE[0]!, 'on', `>${PROBE[1]!}`, '~*', '&*', '+@all'], ['ACL', 'SETUSER', 'default', 'resetpass', `>${PASSWORD}`]]), ['OK', 'OK'])
  }
  const seed = `redis://:${PASSWORD}@127.0.0.1:${ports[0]!}`
  const [a, b] = await Promise.all([serve(t, ['--workers', '1', '--redis-cluster', seed]), serve(t, ['--workers', '1', '--redis-cluster', seed])])
  await exercise(t, a, b)
  t.deepEqual(await refusals(ports), [])
})

interface LogLine { level: number, msg: string, redisError?: string, lastError?: string }

/** Parkline started on `store` that Redis will not serve: its output once it said so and /health answers 503, and its whole log lines then. */
async function unready (t: ExecutionContext, store: string[]): Promise<{ out: string, lines: LogLine[] }> {
  const port = await freePort()
  const proc = spawn(process.execPath, ['bin/parkline.ts', 'serve', '--workers', '1', '--port', String(port), '--host', '127.0.0.1', '--log-level', 'warn', ...store], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(async () => { if (proc.exitCode === null) { proc.kill('SIGKILL'); await once(proc, 'exit') } })
  let out = ''
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  proc.stderr!.on('data', (d: Buffer) => { out += d.toString() })
  t.true(await eventually(() => out.includes('redis not reachable yet'), 20000), out)
  t.true(await eventually(async () => (await fetch(`http://127.0.0.1:${port}/health`).catch(() => null))?.status === 503, 10000))
  // whole lines only (the last may still be arriving)
  const lines = out.slice(0, out.lastIndexOf('\n')).split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as LogLine)
  return { out, lines }
}

/** Parkline started with a wrong password: one error line naming Redis's refusal, the start's warning with it, /health 503. */
async function wrongPassword (t: ExecutionContext, store: string[]): Promise<void> {
  const { out, lines } = await unready(t, store)
  const refused = lines.filter((l) => l.msg.startsWith('redis refused'))
  t.true(refused.length >= 1, out)
  t.is(new Set(refused.map((l) => /(WRONGPASS|NOAUTH|NOPERM)/.exec(l.redisError ?? '')?.[1])).size, refused.length, 'one line per kind, not one per retry')
  t.is(refused[0]!.level, 50)
  t.regex(refused[0]!.redisError!, /WRONGPASS/)
  t.regex(lines.find((l) => l.msg.startsWith('redis not reachable yet'))?.lastError ?? '', /WRONGPASS/)
}

test.serial('a Redis URL naming a database past the server\'s: one error line saying so, and /health stays 503', async (t) => {
  t.timeout(60000)
  const redis = await startRedis(t)
  const { out, lines } = await unready(t, ['--redis-url', `redis://127.0.0.1:${redis.port}/99`])
  const refused = lines.filter((l) => l.msg.startsWith('redis refused the database'))
  t.is(refused.length, 1, out)
  t.is(refused[0]!.level, 50)
  t.regex(refused[0]!.redisError!, /DB index is out of range/)
})

test.serial('a wrong Redis password: the log says Redis refused the login and why, and /health stays 503', async (t) => {
  t.timeout(60000)
  const redis = await startRedis(t)
  await lockDown(t, [redis.port])
  await wrongPassword(t, ['--redis-url', `redis://parkline:not-the-password@127.0.0.1:${redis.port}`])
})

test.serial('a wrong password for the master a Sentinel set names: logged the same way', async (t) => {
  t.timeout(90000)
  const set = await startSentinel(t)
  await lockDown(t, [set.master.port, set.replica.port])
  await wrongPassword(t, ['--redis-sentinel', set.sentinelNodes.join(','), '--redis-sentinel-name', set.name, '--redis-username', 'parkline', '--redis-password', 'not-the-password'])
})

/** On each node: the documented user with its channels narrowed to the replicas' own (`&pk:*:c`), a probe user, `default` off. */
async function narrowDown (t: ExecutionContext, ports: number[]): Promise<void> {
  const narrow = documentedUser().map((a) => a === '&pk:*' ? '&pk:*:c' : a)
  t.true(narrow.includes('&pk:*:c'), 'the documented line has &pk:*')
  for (const port of ports) {
    t.deepEqual(await redisCalls(port, [narrow, ['ACL', 'SETUSER', PROBE[0]!, 'on', `>${PROBE[1]!}`, '~*', '&*', '+@all'], ['ACL', 'SETUSER', 'default', 'off']]), ['OK', 'OK', 'OK'])
  }
}

/** A node on `store` (log level warn): its port and everything it wrote. */
function startLogged (t: ExecutionContext, port: number, store: string[]): () => string {
  const proc = spawn(process.execPath, ['bin/parkline.ts', 'serve', '--workers', '1', '--port', String(port), '--host', '127.0.0.1', '--log-level', 'warn', ...store], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(async () => { if (proc.exitCode === null) { proc.kill('SIGKILL'); await once(proc, 'exit') } })
  let out = ''
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  proc.stderr!.on('data', (d: Buffer) => { out += d.toString() })
  return () => out
}

/** The error lines saying the recovery's subscriptions are refused (whole lines only). */
function recoveryRefusals (out: string): Array<{ level: number, redisError?: string }> {
  return out.slice(0, out.lastIndexOf('\n')).split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level: number, msg: string, redisError?: string }).filter((l) => l.msg.includes('may not subscribe to the pk:{…}:q… and pk:{…}:p… channels'))
}

test.serial('a Redis Cluster whose user may subscribe to pk:*:c alone: it serves, and an error line at start says a recovery would be refused', async (t) => {
  t.timeout(120000)
  const cluster = await startCluster(t)
  await narrowDown(t, cluster.nodes.map((n) => n.port))
  const port = await freePort()
  const out = startLogged(t, port, ['--redis-cluster', `redis://parkline:${PASSWORD}@127.0.0.1:${cluster.nodes[0]!.port}`])
  t.true(await eventually(async () => (await fetch(`http://127.0.0.1:${port}/health`).catch(() => null))?.status === 200, 30000), out())
  t.true(await eventually(() => recoveryRefusals(out()).length === 1, 10000), out())
  t.is(recoveryRefusals(out())[0]!.level, 50)
  t.regex(recoveryRefusals(out())[0]!.redisError ?? '', /NOPERM/)
})

test.serial('a Sentinel set whose user may subscribe to pk:*:c alone: an error line names the recovery channels it refuses, and the node stays unready', async (t) => {
  t.timeout(90000)
  const set = await startSentinel(t)
  await narrowDown(t, [set.master.port, set.replica.port])
  const port = await freePort()
  const out = startLogged(t, port, ['--redis-sentinel', set.sentinelNodes.join(','), '--redis-sentinel-name', set.name, '--redis-username', 'parkline', '--redis-password', PASSWORD])
  // with Sentinel the start's own catch-up makes such a subscription: the node stays unready, and
  // says why (once a minute, not once per probe)
  t.true(await eventually(() => recoveryRefusals(out()).length > 0, 20000), out())
  t.true(await eventually(async () => (await fetch(`http://127.0.0.1:${port}/health`).catch(() => null))?.status === 503, 20000), out())
  await new Promise((resolve) => setTimeout(resolve, 1500))
  const lines = recoveryRefusals(out())
  t.is(lines.length, 1, 'one line, not one per probe')
  t.is(lines[0]!.level, 50)
  t.regex(lines[0]!.redisError ?? '', /NOPERM/)
})

test.serial('one Redis whose user may subscribe to pk:*:c alone, with tokens checked: the node stays down (503) and an error line says it would hear no revocation; once the channel is allowed it comes up, and a revocation made on another node ends its stream', async (t) => {
  t.timeout(90000)
  const secret = 'acl-test-jwt-secret-of-32-bytes-or-more'
  const key = 'acl-test-api-key-0001'
  const redis = await startRedis(t)
  await narrowDown(t, [redis.port])
  const auth = ['--jwt-secret', secret, '--api-key', key]
  // node A as a user with every channel; node C as the narrowed one
  const a = await serve(t, ['--workers', '1', '--redis-url', `redis://${PROBE[0]!}:${PROBE[1]!}@127.0.0.1:${redis.port}`, ...auth])
  const port = await freePort()
  const out = startLogged(t, port, ['--redis-url', `redis://parkline:${PASSWORD}@127.0.0.1:${redis.port}`, ...auth])
  const said = (): Array<{ level: number, redisError?: string }> => out().split('\n').filter((l) => l.startsWith('{') && l.includes('revocation channel pk:ctl')).map((l) => JSON.parse(l) as { level: number, redisError?: string })
  t.true(await eventually(() => said().length > 0, 20000), out())
  t.is(said()[0]!.level, 50)
  t.regex(said()[0]!.redisError ?? '', /NOPERM/)
  const health = async (): Promise<number> => (await fetch(`http://127.0.0.1:${port}/health`).catch(() => null))?.status ?? 0
  // (the line may come before the node listens: it waits for the store a while first)
  t.true(await eventually(async () => await health() === 503, 20000), out())
  // still down a few ticks later, and said once, not once per try
  await new Promise((resolve) => setTimeout(resolve, 4500))
  t.is(await health(), 503)
  t.is(said().length, 1)
  t.deepEqual(await redisCalls(redis.port, [['AUTH', PROBE[0]!, PROBE[1]!], ['ACL', 'SETUSER', 'parkline', '&pk:*']], 5000), ['OK', 'OK'])
  t.true(await eventually(async () => await health() === 200, 15000), out())
  const erin = await new SignJWT({ sub: 'erin', parkline: { subscribe: ['*'] } }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('5m').sign(new TextEncoder().encode(secret))
  const s = await SseClient.connect(port, '/sub/acl-ctl', { authorization: 'Bearer ' + erin })
  t.teardown(() => s.socket.destroy())
  t.is(s.status, 200)
  const r = await fetch(`${a.base}/admin/revoke`, { method: 'POST', body: JSON.stringify({ sub: 'erin' }), headers: { authorization: 'Bearer ' + key } })
  t.deepEqual(await r.json(), { revoked: { sub: 'erin' }, ended: 1, complete: true })
  await s.waitClosed(10000)
})
