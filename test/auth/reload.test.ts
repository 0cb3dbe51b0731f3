// Credentials taken without a restart: SIGHUP to `parkline serve` (one process, and a primary
// with two workers) reads the configuration again; `app.parkline.reloadCredentials` embedded.
// Real processes, a real config file, real requests.
import { execFileSync } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import type net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import test, { type ExecutionContext } from 'ava'
import Fastify from 'fastify'
import { SignJWT } from 'jose'
import { serve, type Node } from '../helpers/node.ts'
import { SseClient, eventually, parseResponse, publish, socketOnWorker } from '../helpers/server.ts'
import parkline from '../../lib/plugin.ts'

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

test('--workers 2: the primary reads the configuration at a SIGHUP and every worker takes the credentials, one forked again after it too', async (t) => {
  const conf = configFile(t)
  conf.write({ apiKey: [KEY1], jwtSecret: SECRET1 })
  const node = await serve(t, ['--config', conf.path, '--workers', '2'], 'info')
  t.true(await eventually(() => /with 2 worker processes/.test(node.log()), 20000))
  for (const w of [0, 1]) t.is(await pubOnWorker(t, node.port, w, KEY1), 202, `worker ${w}`)
  conf.write({ apiKey: [KEY2], jwtSecret: SECRET2 })
  // the primary's line and each worker's
  await hup(t, node, /credentials reloaded: apiKey, jwtSecret/, 3)
  const fresh = await token(SECRET2)
  for (const w of [0, 1]) {
    t.is(await pubOnWorker(t, node.port, w, KEY1), 401, `worker ${w}, old key`)
    t.is(await pubOnWorker(t, node.port, w, KEY2), 202, `worker ${w}, new key`)
    t.is(await pubOnWorker(t, node.port, w, fresh), 202, `worker ${w}, new secret`)
  }
  // worker 1 dies and is forked again: with the credentials of the reload, not the start's
  const pid = workerPid(node.proc.pid!, 1)
  process.kill(pid, 'SIGKILL')
  t.true(await eventually(() => { try { return workerPid(node.proc.pid!, 1) !== pid } catch { return false } }, 20000))
  for (const w of [0, 1]) {
    t.true(await eventually(async () => { try { return await pubOnWorker(t, node.port, w, KEY2) === 202 } catch { return false } }, 20000), `worker ${w} after the restart, new key`)
    t.is(await pubOnWorker(t, node.port, w, KEY1), 401, `worker ${w} after the restart, old key`)
  }
})

test('embedded: app.parkline.reloadCredentials takes new keys and says what changed; other options and bad values throw, nothing applied', async (t) => {
  const app = Fastify()
  t.teardown(async () => { await app.close() })
  await app.register(parkline, { apiKey: [KEY1], jwtSecret: SECRET1 })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const base = `http://127.0.0.1:${(app.server.address() as net.AddressInfo).port}`
  t.is(await pubStatus(base, KEY1), 202)
  t.deepEqual(await app.parkline.reloadCredentials({ apiKey: [KEY1, KEY2] }), ['apiKey'])
  t.is(await pubStatus(base, KEY1), 202)
  t.is(await pubStatus(base, KEY2), 202)
  t.deepEqual(await app.parkline.reloadCredentials({ apiKey: [KEY2], jwtSecret: SECRET2 }), ['apiKey', 'jwtSecret'])
  t.is(await pubStatus(base, KEY1), 401)
  t.is(await pubStatus(base, await token(SECRET1)), 401)
  t.is(await pubStatus(base, await token(SECRET2)), 202)
  t.deepEqual(await app.parkline.reloadCredentials({ apiKey: [KEY2] }), [])
  await t.throwsAsync(app.parkline.reloadCredentials({ messageTimeout: 5 } as never), { code: 'PKL_ERR_CONFIG', message: /not messageTimeout/ })
  await t.throwsAsync(app.parkline.reloadCredentials({ apiKey: 'one-key-as-a-string-01' } as never), { code: 'PKL_ERR_CONFIG', message: /apiKey must be an array of strings/ })
  await t.throwsAsync(app.parkline.reloadCredentials({ apiKey: [] }), { code: 'PKL_ERR_CONFIG', message: /removing every API key/ })
  await t.throwsAsync(app.parkline.reloadCredentials({ jwtSecret: 'too-short' }), { code: 'PKL_ERR_CONFIG' })
  // nothing of those applied
  t.is(await pubStatus(base, KEY2), 202)
  t.is(await pubStatus(base, await token(SECRET2)), 202)
})
