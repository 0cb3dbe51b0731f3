// revocationsFile (docs/api.md 16.5): revocations of a deployment without Redis survive a restart,
// in one process and with workers; a file that holds anything but revocations stops the start; a
// revocation the file could not take is in force all the same, and its answer says it was not kept.
import { spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import test, { type ExecutionContext } from 'ava'
import { SignJWT, type JWTPayload } from 'jose'
import { serve, type Node } from '../helpers/node.ts'
import { freePort } from '../helpers/server.ts'
import { ConfigError } from '../../lib/errors.ts'
import { loadRevocations } from '../../lib/revocation-file.ts'

const SECRET = 'revocations-file-secret-of-32-bytes!!'
const KEY = 'publisher-key-0001'
const enc = new TextEncoder()
const now = (): number => Math.floor(Date.now() / 1000)

/** A publisher token (no exp unless given: one that is good until revoked). */
async function token (claims: JWTPayload): Promise<string> {
  return await new SignJWT({ iat: now(), parkline: { subscribe: ['*'], publish: ['*'] }, ...claims })
    .setProtectedHeader({ alg: 'HS256' }).sign(enc.encode(SECRET))
}

function tempDir (t: ExecutionContext): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'parkline-revocations-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  return dir
}

async function publishWith (node: Node, tok: string): Promise<number> {
  return (await fetch(`${node.base}/pub/news`, { method: 'POST', body: 'x', headers: { authorization: 'Bearer ' + tok } })).status
}

async function revoke (node: Node, body: object): Promise<Response> {
  return await fetch(`${node.base}/admin/revoke`, { method: 'POST', body: JSON.stringify(body), headers: { authorization: 'Bearer ' + KEY } })
}

/** kill -9, the workers first: nothing is written at a drain, what was answered is on disk already. */
async function kill (node: Node): Promise<void> {
  spawnSync('pkill', ['-KILL', '-P', String(node.proc.pid)])
  node.proc.kill('SIGKILL')
  if (node.proc.exitCode === null && node.proc.signalCode === null) await once(node.proc, 'exit')
  // its workers gone too: the port is the next server's alone
  while (spawnSync('pgrep', ['-P', String(node.proc.pid)]).status === 0) await new Promise((resolve) => setTimeout(resolve, 50))
}

test('the file: merged per user or token, lapsed tokens dropped, written back whole; a torn last line dropped, any other bad line refused', (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'revoked.jsonl')
  t.deepEqual(loadRevocations(file, 1000), [], 'no file yet: none')
  writeFileSync(file, [
    '["sub","carol",500,0]',
    '["jti","tok-1",500,900]',
    '["jti","tok-1",600,0]',
    '["jti","old",500,950]',
    '["jti","recent",500,990]',
    '["sub","carol",700,0]',
    '["jti","to'
  ].join('\n'))
  const rows = loadRevocations(file, 1000)
  // carol: the later second; tok-1: held for good (0 wins); old: lapsed (950 + 30 <= 1000); recent: 990 + 30 > 1000
  t.deepEqual(rows, [['sub', 'carol', 700, 0], ['jti', 'tok-1', 500, 0], ['jti', 'recent', 500, 990]])
  t.is(readFileSync(file, 'utf8'), '["sub","carol",700,0]\n["jti","tok-1",500,0]\n["jti","recent",500,990]\n')
  writeFileSync(file, '["sub","carol",700,0]\nnot a revocation\n["jti","x",1,0]\n')
  const err = t.throws(() => loadRevocations(file, 1000))
  t.true(err instanceof ConfigError)
  t.regex(err!.message, /line 2 .* is not a revocation/)
  // a last line that is whole JSON but no revocation was not cut short: refused, not dropped
  writeFileSync(file, '["sub","carol",700,0]\n["sub","x",1.5,0]')
  t.throws(() => loadRevocations(file, 1000), { message: /line 2 .* is not a revocation/ })
})

for (const workers of ['1', '2']) {
  test(`--workers ${workers}: revocations by token and by user are refused again after a restart`, async (t) => {
    const dir = tempDir(t)
    const file = path.join(dir, 'revoked.jsonl')
    const args = ['--workers', workers, '--jwt-secret', SECRET, '--api-key', KEY, '--revocations-file', file]
    const byJti = await token({ sub: 'carol', jti: 'tok-a' })
    const bySub = await token({ sub: 'dave' })
    const other = await token({ sub: 'erin', jti: 'tok-e' })
    const a = await serve(t, args)
    for (const tok of [byJti, bySub, other]) t.is(await publishWith(a, tok), 202)
    t.is((await revoke(a, { jti: 'tok-a' })).status, 200)
    t.is((await revoke(a, { sub: 'dave' })).status, 200)
    // an exp that is no second a token carries is refused, not written
    t.is((await revoke(a, { jti: 'tok-x', exp: 1e300 })).status, 400)
    t.is(readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').length, 2, 'both on disk when answered')
    t.is(await publishWith(a, byJti), 401)
    t.is(await publishWith(a, bySub), 401)
    await kill(a)
    const b = await serve(t, args)
    t.is(await publishWith(b, byJti), 401, 'the token revoked by its jti, after the restart')
    t.is(await publishWith(b, bySub), 401, 'the user revoked, after the restart')
    t.is(await publishWith(b, other), 202, 'another user\'s token')
    // a user's token issued after the revocation is good
    await new Promise((resolve) => setTimeout(resolve, 1100))
    t.is(await publishWith(b, await token({ sub: 'dave' })), 202)
    await kill(b)
  })
}

test('a file that holds anything but revocations stops the start (exit status 2), naming the line', async (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'revoked.jsonl')
  writeFileSync(file, '["sub","carol",700,0]\n{"sub":"x"}\n')
  for (const workers of ['1', '2']) {
    const r = spawnSync(process.execPath, ['bin/parkline.ts', 'serve', '--port', String(await freePort()), '--host', '127.0.0.1', '--workers', workers, '--jwt-secret', SECRET, '--revocations-file', file], { encoding: 'utf8', timeout: 30_000 })
    t.is(r.status, 2, `--workers ${workers}: ${r.stdout}${r.stderr}`)
    t.regex(r.stderr, /revocationsFile: line 2 of ".*" is not a revocation/)
  }
  // a path the server cannot write: refused at start, not at the first revocation
  const nowhere = spawnSync(process.execPath, ['bin/parkline.ts', 'serve', '--port', String(await freePort()), '--host', '127.0.0.1', '--jwt-secret', SECRET, '--revocations-file', path.join(dir, 'no-such-folder', 'revoked.jsonl')], { encoding: 'utf8', timeout: 30_000 })
  t.is(nowhere.status, 2, nowhere.stderr)
  t.regex(nowhere.stderr, /revocationsFile: cannot write/)
  const redis = spawnSync(process.execPath, ['bin/parkline.ts', 'serve', '--port', '0', '--redis-url', 'redis://127.0.0.1:6379', '--revocations-file', file], { encoding: 'utf8', timeout: 30_000 })
  t.is(redis.status, 2)
  t.regex(redis.stderr, /revocationsFile has no effect with redisUrl/)
})

for (const workers of ['1', '2']) {
  test(`--workers ${workers}: a revocation the file cannot take is in force, answered 500 PKL_ERR_REVOCATION_NOT_SAVED`, async (t) => {
    const dir = tempDir(t)
    const file = path.join(dir, 'gone', 'revoked.jsonl')
    const { mkdirSync } = await import('node:fs')
    mkdirSync(path.dirname(file))
    const node = await serve(t, ['--workers', workers, '--jwt-secret', SECRET, '--api-key', KEY, '--revocations-file', file], 'error')
    const tok = await token({ sub: 'frank', jti: 'tok-f' })
    t.is(await publishWith(node, tok), 202)
    // the folder goes: the next append cannot open the file
    rmSync(path.dirname(file), { recursive: true })
    const r = await revoke(node, { jti: 'tok-f' })
    t.is(r.status, 500)
    t.regex(await r.text(), /revocationsFile could not be written/)
    t.is(await publishWith(node, tok), 401, 'in force all the same')
    t.regex(node.log(), /revocation in force but not saved/)
  })
}

test('--workers 2: a revocation the primary does not answer for in time is answered 500, not known to be on disk', async (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'revoked.jsonl')
  const node = await serve(t, ['--workers', '2', '--jwt-secret', SECRET, '--api-key', KEY, '--revocations-file', file], 'error')
  const tok = await token({ sub: 'gina', jti: 'tok-g' })
  t.is(await publishWith(node, tok), 202)
  node.proc.kill('SIGSTOP')
  t.teardown(() => { node.proc.kill('SIGCONT') })
  const r = await revoke(node, { jti: 'tok-g' })
  node.proc.kill('SIGCONT')
  t.is(r.status, 500)
  t.regex(await r.text(), /revocationsFile could not be written/)
})
