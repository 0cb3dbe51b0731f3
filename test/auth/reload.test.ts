// Credentials taken without a restart: SIGHUP to `parkline serve` (one process, and a primary
// with two workers) reads the configuration again; `app.parkline.reloadCredentials` embedded.
// Real processes, a real config file, real requests.
import { execFileSync, spawn } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import type net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import test, { type ExecutionContext } from 'ava'
import Fastify from 'fastify'
import { SignJWT, importPKCS8 } from 'jose'
import { serve, type Node } from '../helpers/node.ts'
import { SseClient, eventually, freePort, parseResponse, publish, socketOnWorker } from '../helpers/server.ts'
import { RawWs } from '../helpers/websocket.ts'
import { OP_TEXT } from '../../transports/websocket-frame.ts'
import parkline from '../../lib/plugin.ts'
import { poolSizeGiven } from '../../lib/gc-threads.ts'

const KEY1 = 'first-publisher-key-0001'
const KEY2 = 'second-publisher-key-0002'
const SECRET1 = 'first-secret-that-is-32-bytes-long!!'
const SECRET2 = 'second-secret-that-is-32-bytes-long!'
const now = (): number => Math.floor(Date.now() / 1000)

async function token (secret: string, claims: Record<string, unknown> = {}): Promise<string> {
  return await new SignJWT({ sub: 'u1', exp: now() + 300, parkline: { subscribe: ['room.*'], publish: ['room.*'] }, ...claims })
    .setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(secret))
}

function configFile (t: ExecutionContext): { path: string, write: (o: object) => void } {
  const dir = mkdtempSync(join(tmpdir(), 'parkline-reload-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const path = join(dir, 'parkline.json')
  return { path, write: (o) => { writeFileSync(path, JSON.stringify(o)) } }
}

/** SIGHUP to `node`, then its log's next line saying how the reload went (one of `says`). */
async function hup (t: ExecutionContext, node: Node, says: RegExp, count = 1): Promise<void> {
  const before = node.log().split('\n').filter((l) => says.test(l)).length
  node.proc.kill('SIGHUP')
  t.true(await eventually(() => node.log().split('\n').filter((l) => says.test(l)).length >= before + count, 10000), node.log().slice(-3000))
}

const pubStatus = async (base: string, auth: string): Promise<number> => (await publish(base, 'room.1', 'x', { authorization: 'Bearer ' + auth })).status

test('one process: SIGHUP takes new API keys and a new JWT secret; the old ones (a token verified a moment before included) are refused from then on; a configuration it cannot take is refused whole and said', async (t) => {
  const conf = configFile(t)
  conf.write({ apiKey: [KEY1], jwtSecret: SECRET1 })
  const node = await serve(t, ['--config', conf.path], 'info')
  const old = await token(SECRET1)
  t.is(await pubStatus(node.base, KEY1), 202)
  t.is(await pubStatus(node.base, old), 202)
  // a stream admitted with the old token
  const stream = await SseClient.connect(node.port, '/sub/room.2', { Authorization: 'Bearer ' + old })
  t.teardown(() => stream.close())
  t.is(stream.status, 200)

  conf.write({ apiKey: [KEY2], jwtSecret: SECRET2, messageTimeout: 60 })
  await hup(t, node, /credentials reloaded: apiKey, jwtSecret/)
  t.regex(node.log(), /changed in the configuration, taken at the next restart: messageTimeout/)
  t.is(await pubStatus(node.base, KEY1), 401)
  t.is(await pubStatus(node.base, old), 401, 'the token verified under the old secret is verified again')
  t.is(await pubStatus(node.base, KEY2), 202)
  t.is(await pubStatus(node.base, await token(SECRET2)), 202)
  // nothing in the log gives a credential away
  for (const secret of [KEY1, KEY2, SECRET1, SECRET2]) t.false(node.log().includes(secret))
  // a stream admitted before keeps its grant until its token's exp (docs/api.md 16.9)
  t.is((await publish(node.base, 'room.2', 'still here', { authorization: 'Bearer ' + KEY2 })).status, 201)
  t.is((await stream.waitEvents(1))[0]!.data, 'still here')

  // refused whole: a key too short, the last API key removed, a JWT key removed
  for (const [bad, says] of [
    [{ apiKey: ['short'], jwtSecret: SECRET1 }, /reload refused: apiKey: each key must be 16 bytes or more/],
    [{ jwtSecret: SECRET1 }, /reload refused: apiKey: removing every API key takes a restart/],
    [{ apiKey: [KEY1] }, /reload refused: jwtSecret\/jwtPublicKey: removing the last JWT key takes a restart/],
    [{ apiKey: [KEY1], jwtSecret: SECRET1, jwtMaxLifetime: -5 }, /reload refused: jwtMaxLifetime \(.*\) must be an integer >= 0/]
  ] as const) {
    conf.write(bad)
    await hup(t, node, says)
    t.is(await pubStatus(node.base, KEY2), 202, JSON.stringify(bad))
    t.is(await pubStatus(node.base, KEY1), 401, JSON.stringify(bad))
  }
  // a file that is not JSON: refused, the server goes on
  writeFileSync(conf.path, '{ "apiKey": [')
  await hup(t, node, /reload refused: /)
  t.is(await pubStatus(node.base, KEY2), 202)
  t.is(node.proc.exitCode, null)
})

test('without access control at start, a SIGHUP cannot turn it on: refused, and said', async (t) => {
  const conf = configFile(t)
  conf.write({})
  const node = await serve(t, ['--config', conf.path], 'info')
  conf.write({ apiKey: [KEY1] })
  await hup(t, node, /reload refused: no access control was configured at start: turning it on takes a restart/)
  // nor is what would be refused at start without a key taken in silence
  conf.write({ jwtIssuer: 'https://login.example' })
  await hup(t, node, /reload refused: jwtIssuer\/jwtAudience have no effect without a JWT key: no access control was configured at start/)
})

/** The pid of worker `id` of the primary `primary` (its PARKLINE_WORKER_ID). */
function workerPid (primary: number, id: number): number {
  for (const pid of execFileSync('ps', ['--ppid', String(primary), '-o', 'pid='], { encoding: 'utf8' }).trim().split(/\s+/).map(Number)) {
    try {
      if (readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(`PARKLINE_WORKER_ID=${id}`)) return pid
    } catch {}
  }
  throw new Error(`worker ${id} not found`)
}

/** `POST /pub/room.1` with `auth` on a connection to `worker`: the answer's status. */
async function pubOnWorker (t: ExecutionContext, port: number, worker: number, auth: string): Promise<number> {
  const socket: net.Socket = await socketOnWorker(port, worker)
  t.teardown(() => socket.destroy())
  let got = ''
  socket.on('data', (d: Buffer) => { got += d.toString('latin1') })
  socket.write(`POST /pub/room.1 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${auth}\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx`)
  await once(socket, 'close')
  return parseResponse(got).status
}

test('--workers 2: the primary reads the configuration at a SIGHUP and every worker takes the credentials (what a key taken out opened ends on each), one forked again after it too', async (t) => {
  const conf = configFile(t)
  conf.write({ apiKey: [KEY1], jwtSecret: SECRET1 })
  const node = await serve(t, ['--config', conf.path, '--workers', '2'], 'info')
  t.true(await eventually(() => /with 2 worker processes/.test(node.log()), 20000))
  for (const w of [0, 1]) t.is(await pubOnWorker(t, node.port, w, KEY1), 202, `worker ${w}`)
  // on each worker, a stream opened with KEY1; and a WebSocket publisher with it
  const streams = [await SseClient.connectOnWorker(node.port, '/sub/room.5', 0, { Authorization: 'Bearer ' + KEY1 }), await SseClient.connectOnWorker(node.port, '/sub/room.5', 1, { Authorization: 'Bearer ' + KEY1 })]
  for (const c of streams) t.teardown(() => c.close())
  const ws = await RawWs.connect(node.port, '/pub/room.5', { Authorization: 'Bearer ' + KEY1 })
  t.teardown(() => ws.close())
  t.is(ws.status, 101)
  conf.write({ apiKey: [KEY2], jwtSecret: SECRET2 })
  // the primary's line and each worker's
  await hup(t, node, /credentials reloaded: apiKey, jwtSecret/, 3)
  for (const c of streams) {
    await c.until(() => c.closed)
    t.true(c.comments.some((x) => x.startsWith(':401:') && x.includes('key withdrawn')), JSON.stringify(c.comments))
  }
  ws.send(OP_TEXT, 'after')
  await ws.waitClosed()
  t.deepEqual(ws.closeFrame, { code: 1008, reason: 'key withdrawn' })
  const fresh = await token(SECRET2)
  for (const w of [0, 1]) {
    t.is(await pubOnWorker(t, node.port, w, KEY1), 401, `worker ${w}, old key`)
    t.is(await pubOnWorker(t, node.port, w, KEY2), 202, `worker ${w}, new key`)
    t.is(await pubOnWorker(t, node.port, w, fresh), 202, `worker ${w}, new secret`)
  }
  // a worker that does not read (stopped): the reload is said not confirmed by it, then taken late
  const stopped = workerPid(node.proc.pid!, 0)
  process.kill(stopped, 'SIGSTOP')
  conf.write({ apiKey: [KEY1, KEY2], jwtSecret: SECRET2 })
  await hup(t, node, /credentials sent, not yet confirmed by worker 0/)
  t.regex(node.log(), /credentials reloaded: apiKey/)
  process.kill(stopped, 'SIGCONT')
  t.true(await eventually(() => /worker 0 took the credentials, late/.test(node.log()), 10000))
  t.is(await pubOnWorker(t, node.port, 0, KEY1), 202)
  conf.write({ apiKey: [KEY2], jwtSecret: SECRET2 })
  await hup(t, node, /credentials reloaded: apiKey/, 3)
  // worker 1 dies and is forked again: with the credentials of the reload, not the start's
  const pid = workerPid(node.proc.pid!, 1)
  process.kill(pid, 'SIGKILL')
  t.true(await eventually(() => { try { return workerPid(node.proc.pid!, 1) !== pid } catch { return false } }, 20000))
  for (const w of [0, 1]) {
    t.true(await eventually(async () => { try { return await pubOnWorker(t, node.port, w, KEY2) === 202 } catch { return false } }, 20000), `worker ${w} after the restart, new key`)
    t.is(await pubOnWorker(t, node.port, w, KEY1), 401, `worker ${w} after the restart, old key`)
  }
})

test('--workers 2 with 3,000 API keys (more than one environment string may hold): every worker serves, takes 1,000 more at a SIGHUP, and one forked again has them; no secret in a worker\'s environment', async (t) => {
  const conf = configFile(t)
  // 3,000 keys of 48 characters: about 150 KB of options, past Linux's 128 KiB for one string of a
  // process's environment, where the primary once handed them (every fork failed with E2BIG)
  const keys = (from: number, n: number): string[] => Array.from({ length: n }, (_, i) => `publisher-key-${String(from + i).padStart(34, '0')}`)
  const start = keys(0, 3000)
  conf.write({ apiKey: start })
  t.true(readFileSync(conf.path).length > 128 * 1024)
  // a secret in the primary's environment too (an option's variable)
  const node = await serve(t, ['--config', conf.path, '--workers', '2'], 'info', { ...process.env, PARKLINE_JWT_SECRET: SECRET1 })
  t.true(await eventually(() => /with 2 worker processes/.test(node.log()), 20000), node.log().slice(-3000))
  for (const w of [0, 1]) {
    t.is(await pubOnWorker(t, node.port, w, start[2999]!), 202, `worker ${w}, the last key`)
    t.is(await pubOnWorker(t, node.port, w, keys(5000, 1)[0]!), 401, `worker ${w}, a key not given`)
    t.is(await pubOnWorker(t, node.port, w, await token(SECRET1)), 202, `worker ${w}, the secret from the environment`)
    // the options (secrets among them) reach a worker over IPC, not in its environment
    const environ = readFileSync(`/proc/${workerPid(node.proc.pid!, w)}/environ`, 'latin1')
    t.false(environ.includes('publisher-key-') || environ.includes(SECRET1) || environ.includes('PARKLINE_JWT_SECRET'), `worker ${w} environment`)
  }
  const more = [...start, ...keys(3000, 1000)]
  conf.write({ apiKey: more })
  await hup(t, node, /credentials reloaded: apiKey/, 3)
  for (const w of [0, 1]) t.is(await pubOnWorker(t, node.port, w, more[3999]!), 202, `worker ${w}, a key of the reload`)
  // worker 1 dies and is forked again: with the 4,000 keys of the reload
  const pid = workerPid(node.proc.pid!, 1)
  process.kill(pid, 'SIGKILL')
  t.true(await eventually(() => { try { return workerPid(node.proc.pid!, 1) !== pid } catch { return false } }, 20000))
  t.true(await eventually(async () => { try { return await pubOnWorker(t, node.port, 1, more[3999]!) === 202 } catch { return false } }, 20000), node.log().slice(-3000))
  t.is(await pubOnWorker(t, node.port, 1, start[0]!), 202)
  t.notRegex(node.log(), /could not be forked/)
})

test('embedded: app.parkline.reloadCredentials takes new keys and says what changed; what a key taken out opened ends; other options and bad values throw, nothing applied', async (t) => {
  const app = Fastify()
  t.teardown(async () => { await app.close() })
  await app.register(parkline, { apiKey: [KEY1], jwtSecret: SECRET1 })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const base = `http://127.0.0.1:${(app.server.address() as net.AddressInfo).port}`
  t.is(await pubStatus(base, KEY1), 202)
  t.deepEqual(await app.parkline.reloadCredentials({ apiKey: [KEY1, KEY2] }), ['apiKey'])
  t.is(await pubStatus(base, KEY1), 202)
  t.is(await pubStatus(base, KEY2), 202)
  // opened with KEY1: a stream, and a WebSocket publisher; and a WebSocket publisher with KEY2
  const port = (app.server.address() as net.AddressInfo).port
  const stream = await SseClient.connect(port, '/sub/room.9', { Authorization: 'Bearer ' + KEY1 })
  t.teardown(() => stream.close())
  t.is(stream.status, 200)
  const ws1 = await RawWs.connect(port, '/pub/room.9', { Authorization: 'Bearer ' + KEY1 })
  t.teardown(() => ws1.close())
  const ws2 = await RawWs.connect(port, '/pub/room.9', { Authorization: 'Bearer ' + KEY2 })
  t.teardown(() => ws2.close())
  t.is(ws1.status, 101)
  t.is(ws2.status, 101)
  t.deepEqual(await app.parkline.reloadCredentials({ apiKey: [KEY2], jwtSecret: SECRET2 }), ['apiKey', 'jwtSecret'])
  // KEY1 is out: its stream ends now, its publisher at its next message; KEY2's goes on
  await stream.until(() => stream.closed)
  t.true(stream.comments.some((c) => c.startsWith(':401:') && c.includes('key withdrawn')), JSON.stringify(stream.comments))
  ws1.send(OP_TEXT, 'after')
  await ws1.waitClosed()
  t.deepEqual(ws1.closeFrame, { code: 1008, reason: 'key withdrawn' })
  ws2.send(OP_TEXT, 'by the new key')
  await ws2.waitMessages(1)
  t.is(await pubStatus(base, KEY1), 401)
  t.is(await pubStatus(base, await token(SECRET1)), 401)
  t.is(await pubStatus(base, await token(SECRET2)), 202)
  t.deepEqual(await app.parkline.reloadCredentials({ apiKey: [KEY2] }), [])
  // a secret rotated with an overlap: the old one as jwtPreviousSecret, then gone
  const SECRET3 = 'third-secret-that-is-32-bytes-long!!'
  t.deepEqual(await app.parkline.reloadCredentials({ jwtSecret: SECRET3, jwtPreviousSecret: SECRET2 }), ['jwtSecret', 'jwtPreviousSecret'])
  const handedOut = await token(SECRET2)
  t.is(await pubStatus(base, handedOut), 202)
  t.is(await pubStatus(base, await token(SECRET3)), 202)
  t.deepEqual(await app.parkline.reloadCredentials({ jwtPreviousSecret: '' }), ['jwtPreviousSecret'])
  t.is(await pubStatus(base, handedOut), 401)
  t.is(await pubStatus(base, await token(SECRET3)), 202)
  t.deepEqual(await app.parkline.reloadCredentials({ jwtSecret: SECRET2 }), ['jwtSecret'])
  await t.throwsAsync(app.parkline.reloadCredentials({ messageTimeout: 5 } as never), { code: 'PKL_ERR_CONFIG', message: /not messageTimeout/ })
  await t.throwsAsync(app.parkline.reloadCredentials({ apiKey: 'one-key-as-a-string-01' } as never), { code: 'PKL_ERR_CONFIG', message: /apiKey must be an array of strings/ })
  await t.throwsAsync(app.parkline.reloadCredentials({ apiKey: [] }), { code: 'PKL_ERR_CONFIG', message: /removing every API key/ })
  await t.throwsAsync(app.parkline.reloadCredentials({ jwtSecret: 'too-short' }), { code: 'PKL_ERR_CONFIG' })
  // nothing of those applied
  t.is(await pubStatus(base, KEY2), 202)
  t.is(await pubStatus(base, await token(SECRET2)), 202)
})

/** SIGHUP is caught by `pid` (its SigCgt mask in /proc): a handler of its own is in place. */
function catchesHangup (pid: number): boolean {
  try {
    const m = /^SigCgt:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'))
    return m !== null && (BigInt('0x' + m[1]!) & 1n) === 1n
  } catch { return false }
}

for (const workers of [1, 2]) {
  test(`SIGHUPs while the server starts (${workers === 1 ? 'one process' : 'to the process group of a primary and its 2 workers'}) do not end it: it serves, and reads the configuration again once it can`, async (t) => {
    const conf = configFile(t)
    conf.write({ apiKey: [KEY1], jwtSecret: SECRET1 })
    const port = await freePort()
    const proc = spawn(process.execPath, ['bin/parkline.ts', 'serve', '--config', conf.path, '--port', String(port), '--host', '127.0.0.1', '--log-level', 'info', '--drain-window', '0', '--workers', String(workers)], { stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    let out = ''
    proc.stdout!.on('data', (d: Buffer) => { out += d.toString() })
    proc.stderr!.on('data', (d: Buffer) => { out += d.toString() })
    t.teardown(() => { try { process.kill(-proc.pid!, 'SIGKILL') } catch {} })
    // from the moment the process can take one (before that, Node's default would end it: the
    // first milliseconds of any Node process), every 300 ms until it says it listens (to the group,
    // some reach a worker in its own first milliseconds, which ends it: it is forked again); one process
    // first starts itself again in place with V8's thread count (lib/gc-threads-start.ts), whose
    // first milliseconds are those of a new process
    const cmdline = (): string => { try { return readFileSync(`/proc/${proc.pid!}/cmdline`, 'latin1') } catch { return '' } }
    // (CI once sent the first SIGHUP before a loaded host had re-executed within the 3 s this
    // waited: the new image's first milliseconds took it and ended. Where this Node has execve and
    // the child's environment gives Node no pool size or debugger (lib/gc-threads.ts
    // restartBlocked: the child has no IPC channel and no Node flags), the restart is awaited.)
    const nodeOptions = process.env.NODE_OPTIONS ?? ''
    const restarts = typeof process.execve === 'function' && !poolSizeGiven([], nodeOptions) && !/(^|\s)--inspect/.test(nodeOptions)
    if (workers === 1 && restarts) {
      t.true(await eventually(() => cmdline().includes('--v8-pool-size='), 20000), 'restarted in place with its pool size')
    }
    t.true(await eventually(() => catchesHangup(proc.pid!), 10000))
    conf.write({ apiKey: [KEY2], jwtSecret: SECRET1 })
    let sent = 0
    const listening = workers === 1 ? /parkline listening on/ : /with 2 worker processes/
    // at most 8 (a worker just forked that one ends is forked again: a flood for as long as the
    // start takes could end every new one, on a loaded host)
    while (!listening.test(out) && proc.exitCode === null && sent < 8) {
      try { process.kill(workers === 1 ? proc.pid! : -proc.pid!, 'SIGHUP') } catch { break }
      sent++
      await new Promise((resolve) => setTimeout(resolve, 300))
    }
    // (ended by a signal: exitCode stays null, signalCode says which)
    t.true(await eventually(() => listening.test(out) || proc.exitCode !== null || proc.signalCode !== null, 30000))
    t.true(listening.test(out), `exit ${proc.exitCode} signal ${proc.signalCode}: ${out.slice(-3000)}`)
    t.is(proc.exitCode, null)
    t.is(proc.signalCode, null)
    t.true(sent > 0)
    // read again for them (whether the start read the first file or the second)
    t.true(await eventually(() => /credentials reloaded|configuration read again/.test(out), 10000), out.slice(-3000))
    // (a worker a SIGHUP ended in its first milliseconds may still be forked again: a connection
    // the kernel gave it can be reset, and is tried again; CI once saw `fetch failed` here)
    const status = async (key: string): Promise<number> => await pubStatus(`http://127.0.0.1:${port}`, key).catch(() => 0)
    t.true(await eventually(async () => await status(KEY2) === 202, 10000))
    let old = 0
    t.true(await eventually(async () => (old = await status(KEY1)) !== 0, 10000))
    t.is(old, 401)
  })
}

/** A file path for a public key, in a directory removed with the test. */
function keyFileIn (t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'parkline-reload-key-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  return join(dir, 'public.pem')
}

/** A P-256 key pair, PEM. */
function pair (): { pub: string, priv: string } {
  const k = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  return { pub: k.publicKey.export({ type: 'spki', format: 'pem' }) as string, priv: k.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string }
}

/** An ES256 publish token for room.* signed with `priv`. */
async function es (priv: string): Promise<string> {
  return await new SignJWT({ sub: 'u1', exp: now() + 300, parkline: { publish: ['room.*'] } }).setProtectedHeader({ alg: 'ES256' }).sign(await importPKCS8(priv, 'ES256'))
}

test('--workers 2, a jwtPublicKey file replaced without a SIGHUP: a worker forked again keeps the key the deployment started with (every worker agrees), until a SIGHUP reads the file for all', async (t) => {
  t.timeout(90000)
  const keyFile = keyFileIn(t)
  const first = pair()
  const second = pair()
  writeFileSync(keyFile, first.pub)
  const node = await serve(t, ['--jwt-public-key', keyFile, '--workers', '2'], 'info')
  t.true(await eventually(() => /with 2 worker processes/.test(node.log()), 20000))
  const [old, next] = [await es(first.priv), await es(second.priv)]
  for (const w of [0, 1]) t.is(await pubOnWorker(t, node.port, w, old), 202, `worker ${w}`)
  // the file replaced, no SIGHUP; worker 1 dies and is forked again
  writeFileSync(keyFile, second.pub)
  const pid = workerPid(node.proc.pid!, 1)
  process.kill(pid, 'SIGKILL')
  t.true(await eventually(() => { try { return workerPid(node.proc.pid!, 1) !== pid } catch { return false } }, 20000), 'worker 1 forked again')
  for (const w of [0, 1]) {
    t.true(await eventually(async () => await pubOnWorker(t, node.port, w, old).catch(() => 0) === 202, 10000), `worker ${w} takes the start's key`)
    t.is(await pubOnWorker(t, node.port, w, next), 401, `worker ${w} refuses the file's new key before a SIGHUP`)
  }
  await hup(t, node, /credentials reloaded: jwtPublicKey/)
  for (const w of [0, 1]) {
    t.is(await pubOnWorker(t, node.port, w, next), 202, `worker ${w} after the SIGHUP`)
    t.is(await pubOnWorker(t, node.port, w, old), 401)
  }
})

test('--workers 2: revocations made before a worker is forked again reach it: a user\'s (revoked twice), a token\'s without exp', async (t) => {
  const node = await serve(t, ['--jwt-secret', SECRET1, '--api-key', KEY1, '--workers', '2'], 'info')
  t.true(await eventually(() => /with 2 worker processes/.test(node.log()), 20000))
  const erin = await token(SECRET1, { sub: 'erin' })
  const frank = await token(SECRET1, { sub: 'frank', jti: 'jti-frank' })
  const revoke = async (what: object): Promise<number> => (await fetch(`${node.base}/admin/revoke`, { method: 'POST', body: JSON.stringify(what), headers: { Authorization: `Bearer ${KEY1}` } })).status
  t.is(await revoke({ sub: 'erin' }), 200)
  t.is(await revoke({ sub: 'erin' }), 200)
  t.is(await revoke({ jti: 'jti-frank' }), 200)
  const pid = workerPid(node.proc.pid!, 1)
  process.kill(pid, 'SIGKILL')
  t.true(await eventually(() => { try { return workerPid(node.proc.pid!, 1) !== pid } catch { return false } }, 20000), 'worker 1 forked again')
  const other = await token(SECRET1, { sub: 'gina' })
  t.true(await eventually(async () => await pubOnWorker(t, node.port, 1, other).catch(() => 0) === 202, 20000), 'worker 1 serves again')
  for (const w of [0, 1]) {
    t.is(await pubOnWorker(t, node.port, w, erin), 401, `worker ${w}: the user's token`)
    t.is(await pubOnWorker(t, node.port, w, frank), 401, `worker ${w}: the token revoked without exp`)
  }
})

test('a jwtPublicKey file rotated: a SIGHUP takes its new key (tokens of the old one refused); a file that holds no PEM key, or a private key, is refused without its contents in the log', async (t) => {
  const keyFile = keyFileIn(t)
  const first = pair()
  writeFileSync(keyFile, first.pub)
  const conf = configFile(t)
  conf.write({ jwtPublicKey: keyFile })
  const node = await serve(t, ['--config', conf.path], 'info')
  const old = await es(first.priv)
  t.is(await pubStatus(node.base, old), 202)
  // the file's contents replaced by something that is not a key: refused, the key kept
  const notAKey = 'eyJhbGciOiJIUzI1NiJ9.not-a-key-but-maybe-a-secret'
  writeFileSync(keyFile, notAKey)
  await hup(t, node, /reload refused: jwtPublicKey: the file \S*public\.pem\S* holds no PEM key/)
  t.false(node.log().includes(notAKey))
  t.is(await pubStatus(node.base, old), 202)
  // the issuer's private key put there by mistake: refused too, never in the log
  writeFileSync(keyFile, first.priv)
  await hup(t, node, /reload refused: jwtPublicKey: this is a private key: give Parkline only its public half/)
  t.false(node.log().includes(first.priv.split('\n')[1]!))
  t.is(await pubStatus(node.base, old), 202)
  // a new key in the same file
  const second = pair()
  writeFileSync(keyFile, second.pub)
  await hup(t, node, /credentials reloaded: jwtPublicKey/)
  t.is(await pubStatus(node.base, old), 401)
  t.is(await pubStatus(node.base, await es(second.priv)), 202)
})
