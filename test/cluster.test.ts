// `parkline serve --workers 2`: real processes sharing one port (SO_REUSEPORT). Ids, order,
// counts and buffers must be the same whichever worker a client lands on.
import { spawn, spawnSync, execFileSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import test, { type ExecutionContext } from 'ava'
import { SseClient, eventually, exitedWithOutput, freePort, info, publish, socketOnWorker } from './helpers/server.ts'
import { START_MS, processTree, serve } from './helpers/node.ts'
import { startRedis } from './helpers/redis.ts'
import { SECRET, mint } from './helpers/auth.ts'
import { REPLICA_LINGER_MS, SILENT_MS, SILENT_START_MS, STABLE_MS, ownerOf, quickDeathsAfter, restartDelay, userOwnerOf } from '../lib/cluster.ts'
import { meshPath } from '../lib/mesh.ts'
import net from 'node:net'
import http from 'node:http'
import { encodeBatch } from '../lib/mesh-codec.ts'

const NODE = process.execPath

function workerPids (primary: number): number[] {
  try {
    return execFileSync('ps', ['--ppid', String(primary), '-o', 'pid='], { encoding: 'utf8' }).trim().split(/\s+/).filter(Boolean).map(Number)
  } catch {
    return []
  }
}

/** `parkline serve ARGS` with its output kept (stdout and stderr together); SIGKILLed at teardown if still running. */
function spawnServe (t: ExecutionContext, args: string[]): { child: ChildProcess, out: () => string } {
  const child = spawn(NODE, ['bin/parkline.ts', 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  let out = ''
  child.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr!.on('data', (d: Buffer) => { out += d.toString() })
  return { child, out: () => out }
}

/** The exit code, or null if `child` is still running after `ms`. */
async function exitWithin (child: ChildProcess, ms: number): Promise<number | null | undefined> {
  const exited = await Promise.race([once(child, 'exit'), new Promise((resolve) => setTimeout(resolve, ms, null))]) as [number | null] | null
  return exited === null ? undefined : exited[0]
}

async function startCluster (t: ExecutionContext, workers = 2, drainWindow = 0, detached = false, extra: string[] = []): Promise<{ base: string, port: number, child: ChildProcess }> {
  const port = await freePort()
  const child = spawn(NODE, ['bin/parkline.ts', 'serve', '--workers', String(workers), '--port', String(port), '--host', '127.0.0.1', '--log-level', 'error', '--drain-window', String(drainWindow), ...extra], { stdio: ['ignore', 'pipe', 'pipe'], detached })
  let out = ''
  const keep = (d: Buffer): void => { out = (out + d.toString()).slice(-8000) }
  child.stdout!.on('data', keep)
  child.stderr!.on('data', keep)
  t.teardown(async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM')
      await once(child, 'exit')
    }
    // a process group of its own (detached): whatever is left of it
    if (detached) try { process.kill(-child.pid!, 'SIGKILL') } catch {}
  })
  const base = `http://127.0.0.1:${port}`
  const up = await eventually(async () => {
    if (workerPids(child.pid!).length !== workers) return false
    // every worker must answer: a run of successes across fresh connections
    for (let i = 0; i < 6; i++) {
      try {
        const r = await fetch(`${base}/status`, { headers: { Connection: 'close' } })
        if (r.status !== 200) return false
      } catch { return false }
    }
    return true
  }, START_MS)
  if (!up) throw new Error(`cluster did not start in ${START_MS} ms; its processes:\n${processTree(child.pid!)}\nits output: ${out === '' ? '(none)' : out}`)
  return { base, port, child }
}

test.serial('a publish through any worker reaches every subscriber on every worker, same ids, same order; counts are exact', async (t) => {
  const { base, port, child } = await startCluster(t)
  t.is(workerPids(child.pid!).length, 2)
  const clients: SseClient[] = []
  for (let i = 0; i < 8; i++) {
    clients.push(await SseClient.connect(port, '/sub/cl'))
    await clients[i]!.until(() => clients[i]!.comments.includes(': hi'))
    // §3.2: counted before the head was sent, so the count is exact right after it
    t.is((await info(base, 'cl')).json!.subscribers, i + 1)
  }
  const statuses = new Set<number>()
  for (let i = 0; i < 20; i++) statuses.add((await publish(base, 'cl', `m${i}`)).status)
  t.deepEqual([...statuses], [201])
  const lists = await Promise.all(clients.map(async (c) => (await c.waitEvents(20)).map((e) => `${e.id}=${e.data}`)))
  for (const l of lists) t.deepEqual(l, lists[0])
  t.deepEqual(lists[0]!.map((x) => x.split('=')[1]), Array.from({ length: 20 }, (_, i) => `m${i}`))
  for (const c of clients) c.close()
  t.true(await eventually(async () => (await info(base, 'cl')).json!.subscribers === 0))
})

test.serial('a subscriber that reconnects to any worker resumes with no loss and no duplicate', async (t) => {
  const { base, port } = await startCluster(t)
  for (let i = 0; i < 5; i++) await publish(base, 'rs', `a${i}`)
  const got: string[] = []
  let last = ''
  for (let round = 0; round < 6; round++) {
    const c = await SseClient.connect(port, '/sub/rs', last === '' ? {} : { 'Last-Event-ID': last })
    await publish(base, 'rs', `b${round}`)
    const expected = round === 0 ? 6 : 1
    const evs = await c.waitEvents(expected)
    for (const e of evs) { got.push(e.data); last = e.id! }
    c.close()
  }
  t.deepEqual(got, ['a0', 'a1', 'a2', 'a3', 'a4', 'b0', 'b1', 'b2', 'b3', 'b4', 'b5'])
})

/** The pid of worker `id` (its PARKLINE_WORKER_ID) among the primary's children. */
function workerPid (primary: number, id: number): number {
  for (const pid of workerPids(primary)) {
    try {
      if (readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(`PARKLINE_WORKER_ID=${id}`)) return pid
    } catch {}
  }
  throw new Error(`worker ${id} not found`)
}

test.serial('the owner of a channel dies: it is forked again and takes the buffer back from a worker with subscribers there; nothing is lost', async (t) => {
  const { base, port, child } = await startCluster(t)
  const owner = ownerOf('kd', 2)
  const other = 1 - owner
  await publish(base, 'kd', 'one')
  await publish(base, 'kd', 'two')
  const keep = await SseClient.connectOnWorker(port, '/sub/kd', other)
  const lost = await SseClient.connectOnWorker(port, '/sub/kd', owner)
  const [first] = await keep.waitEvents(2)
  await lost.waitEvents(2)
  const before = workerPid(child.pid!, owner)
  process.kill(before, 'SIGKILL')
  await lost.waitClosed()
  // lands on the surviving worker (or the new owner) and waits for the owner; one that raced the
  // death (sent before the survivor saw it, or to the dying worker's socket) gets 503 or a reset
  // and is retried, as a client would
  let status = 503
  for (let i = 0; i < 5 && status === 503; i++) {
    try {
      status = (await publish(base, 'kd', 'three', { Connection: 'close', 'Idempotency-Key': 'three' })).status
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  t.is(status, 201)
  t.deepEqual((await keep.waitEvents(3)).map((e) => e.data), ['one', 'two', 'three'])
  t.false(keep.closed)
  t.not(workerPid(child.pid!, owner), before)
  // a client of the dead worker resumes where it was: the buffer is the one it left
  const resumed = await SseClient.connect(port, '/sub/kd', { 'Last-Event-ID': first!.id! })
  t.deepEqual((await resumed.waitEvents(2)).map((e) => e.data), ['two', 'three'])
  t.false(resumed.comments.some((c) => c.includes('gap')), JSON.stringify(resumed.comments))
  // counts are exact again: the survivor's subscriber and the resumed one
  t.true(await eventually(async () => (await info(base, 'kd')).json?.subscribers === 2, 5000))
  t.is((await info(base, 'kd')).json!.messages, 3)
  keep.close()
  resumed.close()
})

test.serial('the owner of a channel dies: a retry of a publish it answered (the same Idempotency-Key) is answered as the original by the next owner, not published twice', async (t) => {
  const { base, port, child } = await startCluster(t)
  const key = 'idem-kd'
  const owner = ownerOf(key, 2)
  // published before any other worker holds the channel: its key goes with the buffer ('load')
  t.is((await publish(base, key, 'early', { 'Idempotency-Key': 'k0' })).status, 202)
  // a subscriber on the other worker: that worker holds a replica, and the keys come with it
  const keep = await SseClient.connectOnWorker(port, `/sub/${key}`, 1 - owner)
  t.teardown(() => keep.close())
  t.true(await eventually(async () => (await info(base, key)).json?.subscribers === 1, 5000))
  // published while it does: the key goes with the message ('m')
  t.is((await publish(base, key, 'once', { 'Idempotency-Key': 'k1' })).status, 201)
  const [early, once] = await keep.waitEvents(2)
  t.deepEqual([early!.data, once!.data], ['early', 'once'])
  const before = workerPid(child.pid!, owner)
  process.kill(before, 'SIGKILL')
  // the publisher retries both (it lost their answers, say): 503 while the owner is away
  const retry = async (body: string, k: string): Promise<{ status: number, text: string, headers: Headers }> => {
    let r = { status: 503, text: '', headers: new Headers() }
    for (let i = 0; i < 20 && r.status === 503; i++) {
      try {
        r = await publish(base, key, body, { Connection: 'close', 'Idempotency-Key': k, Accept: 'text/json' })
      } catch {}
      if (r.status === 503) await new Promise((resolve) => setTimeout(resolve, 250))
    }
    return r
  }
  for (const [body, k, ev] of [['once', 'k1', once!], ['early', 'k0', early!]] as const) {
    const r = await retry(body, k)
    t.is(r.status, 201, `${k}: ${r.text}`)
    t.is(r.headers.get('idempotent-replayed'), 'true', `${k}: ${r.text}`)
    t.is(JSON.parse(r.text).last_message_id, ev.id, `${k}: the original's id`)
  }
  t.not(workerPid(child.pid!, owner), before)
  // the same key with another message is still the publisher's mistake at the new owner
  t.is((await publish(base, key, 'another', { 'Idempotency-Key': 'k1' })).status, 422)
  // the subscriber got each message once: the next one follows them
  t.is((await publish(base, key, 'after')).status, 201)
  t.deepEqual((await keep.waitEvents(3)).map((e) => e.data), ['early', 'once', 'after'])
  t.false(keep.closed)
})

/**
 * Two workers (or three); on a worker that does not own `key`, an SSE subscriber of it (so the
 * owner sends it the channel's messages), and a raw publisher connection that has published
 * `first`, answered and delivered: on the owner, or with three workers on the third worker, which
 * forwards each publish to the owner; then the subscriber's worker is stopped (SIGSTOP; SIGCONT at
 * teardown). `answers`: how many publishes that connection has had answered so far. `retry`: a
 * second connection to the publisher's worker.
 */
async function replicaStopped (t: ExecutionContext, key: string, extra: string[] = [], workers: 2 | 3 = 2): Promise<{ child: ChildProcess, owner: number, otherPid: number, sub: SseClient, answers: () => number, send: (body: string, headers?: string) => void, wait: (ok: () => boolean, ms?: number) => Promise<boolean>, retry: RawConnection }> {
  const { port, child } = await startCluster(t, workers, 0, false, extra)
  const owner = ownerOf(key, workers)
  const other = (owner + 1) % workers
  const via = workers === 2 ? owner : (owner + 2) % 3
  const sub = await SseClient.connectOnWorker(port, `/sub/${key}`, other)
  t.teardown(() => sub.close())
  await sub.until(() => sub.comments.includes(': hi'))
  const pub = await rawOnWorker(port, via)
  t.teardown(() => pub.socket.destroy())
  const answers = (): number => pub.got().toString('latin1').split('HTTP/1.1 20').length - 1
  const send = (body: string, headers = ''): void => { pub.socket.write(publishRequest(key, body, headers)) }
  send('first')
  t.true(await pub.wait(() => answers() === 1))
  t.is((await sub.waitEvents(1))[0]!.data, 'first')
  // a second connection to the same worker, for a client's retry: found now, while every worker answers
  const retry = await rawOnWorker(port, via)
  t.teardown(() => retry.socket.destroy())
  const otherPid = workerPid(child.pid!, other)
  process.kill(otherPid, 'SIGSTOP')
  t.teardown(() => { try { process.kill(otherPid, 'SIGCONT') } catch {} })
  return { child, owner, otherPid, sub, answers, send, wait: async (ok, ms) => await pub.wait(ok, ms), retry }
}

function publishRequest (key: string, body: string, headers = ''): string {
  return `POST /pub/${key} HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers}Content-Length: ${body.length}\r\n\r\n${body}`
}

test.serial('an answered publish outlives its owner: the answer waits until the message is in the replica worker\'s socket, which that worker reads before it sees the owner go', async (t) => {
  // the other worker stops reading: its socket from the owner fills after a few 64 KiB messages,
  // and the rest of what the owner writes to it waits in the owner's memory
  const { child, owner, otherPid, sub, answers, send, wait } = await replicaStopped(t, 'ans')
  const ownerPid = workerPid(child.pid!, owner)
  const answered: string[] = []
  for (let i = 0; i < 64; i++) {
    const before = answers()
    send(`m${i}:` + 'x'.repeat(64 * 1024))
    if (!await wait(() => answers() > before, 2500)) break
    answered.push(`m${i}`)
  }
  // some were answered (in the kernel's queue for the stopped worker), then one was not
  t.true(answered.length >= 1 && answered.length < 64, `answered: ${answered.join(', ')}`)
  process.kill(ownerPid, 'SIGKILL')
  process.kill(otherPid, 'SIGCONT')
  // every answered message reaches the subscriber on the worker that was stopped
  await sub.waitEvents(1 + answered.length, 10000).catch(() => {})
  t.deepEqual(sub.events.slice(1, 1 + answered.length).map((e) => e.data.slice(0, e.data.indexOf(':'))), answered)
  t.false(sub.closed)
})

for (const [upstream, workers] of [[false, 2], [true, 2], [false, 3], [true, 3]] as const) {
  const variant = [upstream ? 'a publisher upstream: the retry is found before it would be asked' : '', workers === 3 ? 'publisher and retry on a third worker, which forwards them to the owner' : ''].filter(Boolean).join('; ')
  test.serial(`a retry (the same Idempotency-Key) of a publish whose answer waits for a stopped replica worker waits as well: no answer for a message still only in the owner's memory${variant === '' ? '' : ` (${variant})`}`, async (t) => {
    let asked = 0
    const extra: string[] = []
    if (upstream) {
      // a real upstream that publishes each message unchanged (304), counting what it is asked
      const up = http.createServer((req, res) => { asked++; req.resume(); req.on('end', () => { res.writeHead(304); res.end() }) })
      up.listen(0, '127.0.0.1')
      await once(up, 'listening')
      t.teardown(() => { up.closeAllConnections(); up.close() })
      extra.push('--publish-upstream-url', `http://127.0.0.1:${(up.address() as net.AddressInfo).port}/up`)
    }
    const key = `ans${upstream ? 4 : 3}w${workers}`
    const { child, owner, otherPid, sub, answers, send, wait, retry } = await replicaStopped(t, key, extra, workers)
    const ownerPid = workerPid(child.pid!, owner)
    const answered: string[] = []
    let held = ''
    // the held original and the retry's wait stay well under the 5 s after which the owner may
    // have the stopped worker ended as stuck (that would release both answers)
    for (let i = 0; i < 64 && held === ''; i++) {
      const before = answers()
      send(`m${i}:` + 'x'.repeat(64 * 1024), `Idempotency-Key: k${i}\r\n`)
      if (await wait(() => answers() > before, 2000)) answered.push(`m${i}`)
      else held = `m${i}`
    }
    t.not(held, '', `all ${answered.length} answered with the worker stopped`)
    const upstreamAsked = asked
    // the client gives up on the held answer and retries on another connection to the same worker
    retry.socket.write(publishRequest(key, `${held}:` + 'x'.repeat(64 * 1024), `Idempotency-Key: k${held.slice(1)}\r\n`))
    const retryAnswered = await retry.wait((b) => b.includes('HTTP/1.1 20'), 500)
    t.false(retryAnswered, 'the retry is not answered while the original waits')
    if (retryAnswered) answered.push(held)
    if (upstream) t.is(asked, upstreamAsked, 'the upstream is not asked about the retry')
    process.kill(ownerPid, 'SIGKILL')
    t.notThrows(() => process.kill(otherPid, 'SIGCONT'), 'the stopped worker was not ended as stuck meanwhile')
    // every message a client was told was published reaches the subscriber on the stopped worker
    await sub.waitEvents(1 + answered.length, 10000).catch(() => {})
    t.deepEqual(sub.events.slice(1, 1 + answered.length).map((e) => e.data.slice(0, e.data.indexOf(':'))), answered)
  })
}

test.serial('answers held for a stopped replica worker all come once it reads again, a few small messages behind the full socket included', async (t) => {
  const { otherPid, sub, answers, send, wait } = await replicaStopped(t, 'ans2')
  // 1 KiB messages until one is not answered: the socket to the stopped worker is full, and what
  // waits behind it in the owner stays far under Node's 64 KiB high-water mark (no 'drain' event)
  let sent = 0
  let held = false
  while (sent < 4096 && !held) {
    const before = answers()
    send(`s${sent}:` + 'y'.repeat(1024))
    sent++
    held = !await wait(() => answers() > before, 2500)
  }
  t.true(held, `all ${sent} answered with the worker stopped`)
  for (let i = 0; i < 5; i++, sent++) send(`s${sent}:` + 'y'.repeat(1024))
  process.kill(otherPid, 'SIGCONT')
  // every one is answered, and the subscriber there gets them all
  t.true(await wait(() => answers() === 1 + sent, 10000), `${answers() - 1} of ${sent} answered`)
  await sub.waitEvents(1 + sent, 10000).catch(() => {})
  t.is(sub.events.length, 1 + sent)
})

test.serial('every worker dies: the buffers go with them; a client resuming with its last id gets the gap signal, not silence', async (t) => {
  const { base, port, child } = await startCluster(t)
  await publish(base, 'kd', 'before')
  const c = await SseClient.connect(port, '/sub/kd')
  const [first] = await c.waitEvents(1)
  t.is(first!.data, 'before')
  const pids = workerPids(child.pid!)
  for (const pid of pids) process.kill(pid, 'SIGKILL')
  await c.waitClosed()
  t.true(await eventually(() => { const now = workerPids(child.pid!); return now.length === 2 && now.every((p) => !pids.includes(p)) }, 20000))
  t.true(await eventually(async () => { try { return (await fetch(`${base}/health`)).ok } catch { return false } }, START_MS))
  t.is((await publish(base, 'kd', 'while away')).status, 202)
  const again = await SseClient.connect(port, '/sub/kd', { 'Last-Event-ID': first!.id! })
  const evs = await again.waitEvents(1)
  t.is(evs[0]!.data, 'while away')
  t.true(again.comments.some((x) => x.startsWith(':parkline-gap')) || evs[0]!.comments.some((x) => x.includes('gap')), JSON.stringify([again.comments, evs[0]!.comments]))
  again.close()
})

test.serial('the primary is on no publish\'s path: with it stopped, publishes through either worker reach subscribers on both', async (t) => {
  const { base, port, child } = await startCluster(t)
  const subs = [await SseClient.connectOnWorker(port, '/sub/np', 0), await SseClient.connectOnWorker(port, '/sub/np', 1)]
  process.kill(child.pid!, 'SIGSTOP')
  t.teardown(() => { try { process.kill(child.pid!, 'SIGCONT') } catch {} })
  for (let i = 0; i < 10; i++) t.is((await publish(base, 'np', `n${i}`, { Connection: 'close' })).status, 201)
  for (const s of subs) t.deepEqual((await s.waitEvents(10)).map((e) => e.data), Array.from({ length: 10 }, (_, i) => `n${i}`))
  process.kill(child.pid!, 'SIGCONT')
  for (const s of subs) s.close()
})

test.serial('a subscriber of two channels with different owners is counted by both and gets both', async (t) => {
  const { base, port } = await startCluster(t)
  for (const w of [0, 1]) {
    // two channel ids owned by different workers
    const a = `ma${w}`
    let b = `mb${w}`
    for (let i = 0; ownerOf(b, 2) === ownerOf(a, 2); i++) b = `mb${w}-${i}`
    const s = await SseClient.connectOnWorker(port, `/sub/${a},${b}`, w)
    await s.until(() => s.comments.includes(': hi'))
    t.is((await info(base, a)).json!.subscribers, 1)
    t.is((await info(base, b)).json!.subscribers, 1)
    // each publish waits until the one before arrived: between channels with different owners, live
    // messages arrive in the order they reach this worker (docs/api.md 14.3), as with Redis Cluster
    await publish(base, a, `a${w}`)
    await s.waitEvents(1)
    await publish(base, b, `b${w}`)
    t.deepEqual((await s.waitEvents(2)).map((e) => e.data), [`a${w}`, `b${w}`])
    s.close()
    t.true(await eventually(async () => (await info(base, a)).json!.subscribers === 0 && (await info(base, b)).json!.subscribers === 0))
  }
})

test.serial('the mesh sockets take only this primary\'s workers: a hello without the key is cut before a byte of it is read', async (t) => {
  const { base, child } = await startCluster(t)
  let key = 'inj'
  for (let i = 0; ownerOf(key, 2) !== 0; i++) key = `inj${i}`
  const batch = encodeBatch([['pub', 1, key, Buffer.from('injected '.repeat(8)), null, null, null]])
  const frame = Buffer.concat([Buffer.alloc(4), batch])
  frame.writeUInt32BE(batch.length, 0)
  const hello = (secret: Buffer): Buffer => {
    const h = Buffer.alloc(44)
    h.writeUInt32BE(0x504b4d33, 0)
    h.writeUInt32BE(1, 4)
    h.writeUInt32BE(process.pid, 8)
    secret.copy(h, 12)
    return h
  }
  const environ = readFileSync(`/proc/${workerPid(child.pid!, 0)}/environ`, 'latin1').split('\0')
  const dir = environ.find((e) => e.startsWith('PARKLINE_MESH='))!.slice(14)
  // the sockets live in a directory only this user may enter
  t.is(statSync(dir).mode & 0o777, 0o700)
  const send = async (bytes: Buffer): Promise<boolean> => {
    const s = net.connect(meshPath(dir, 0))
    s.on('error', () => {})
    await once(s, 'connect')
    s.write(bytes)
    const cut = await Promise.race([once(s, 'close').then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 1000))])
    s.destroy()
    return cut
  }
  // a frame with no hello, a wrong key, garbage: each connection is cut, nothing is published
  t.true(await send(frame))
  t.true(await send(Buffer.concat([hello(Buffer.alloc(32, 7)), frame])))
  t.true(await send(Buffer.alloc(64, 0xff)))
  t.is((await info(base, key)).status, 404)
  // the control: the key the worker was given (readable by its own user only) does publish (the
  // connection then stands in for worker 1's, until worker 1 dials again)
  const secret = Buffer.from(environ.find((e) => e.startsWith('PARKLINE_MESH_KEY='))!.slice(18), 'hex')
  // with the key, a frame that does not parse (an entry of an unknown kind) cuts that connection
  // only, before the good frame written right behind it is read: the worker lives on and nothing
  // is published
  const bad = Buffer.from([0, 0, 0, 2, 0x7f, 0])
  const pid = workerPid(child.pid!, 0)
  t.true(await send(Buffer.concat([hello(secret), bad, frame])))
  t.is(workerPid(child.pid!, 0), pid)
  // (the cut takes worker 0's own link to worker 1 down a moment: an answer may be 503 meanwhile)
  t.true(await eventually(async () => (await info(base, key)).status === 404))
  // entries of a known kind in shapes no worker sends ('uc': users' counts; 'ur', 'un': a user's
  // room asked and refused, with nothing waiting for it) are passed over: the worker lives on, and
  // the good frame behind them publishes
  const odd = encodeBatch([['uc', 5], ['uc', [null, 7, ['x', -1], ['y', 1e308], ['z'], [3, 1]]], ['ur', 5], ['ur'], ['ur', 'x', -1], ['ur', 'x', 1.5], ['un', 'x'], ['un']])
  const oddFrame = Buffer.concat([Buffer.alloc(4), odd])
  oddFrame.writeUInt32BE(odd.length, 0)
  await send(Buffer.concat([hello(secret), oddFrame, frame]))
  t.true(await eventually(async () => (await info(base, key)).json?.messages === 1))
  t.is(workerPid(child.pid!, 0), pid)
  // the primary removes the directory when it exits
  child.kill('SIGTERM')
  await once(child, 'exit')
  t.false(existsSync(dir))
})

/** An SSE subscription on worker `worker` with `token`: admitted (held open), refused at maxSubscribersPerUser (`:429:`, closed), or refused otherwise. */
async function userSubscribes (port: number, path: string, worker: number, token: string): Promise<{ c: SseClient, verdict: 'admitted' | 'user_limit' | string }> {
  const c = await SseClient.connectOnWorker(port, path, worker, { Authorization: `Bearer ${token}` })
  // a refusal closes the stream after its `:429:` (or `:503:`); an admitted one stays open
  await c.until(() => c.closed, 1000).catch(() => {})
  if (c.comments.some((x) => x.includes('429 Too Many Requests'))) return { c, verdict: 'user_limit' }
  return { c, verdict: !c.closed && c.status === 200 ? 'admitted' : `${c.status} ${c.comments.join('|')}` }
}

test.serial('maxSubscribersPerUser counts a user on every worker: past it on either, refused; a slot freed on one is free on the other; a worker that dies takes its count with it', async (t) => {
  const { port, child } = await startCluster(t, 2, 0, false, ['--jwt-secret', SECRET, '--max-subscribers-per-user', '2'])
  const alice = (await mint(['u*'], 120, 'alice')).token
  const bob = (await mint(['u*'], 120, 'bob')).token
  const held: SseClient[] = []
  t.teardown(() => { for (const c of held) c.socket.destroy() })
  // Each step waits (bounded) for the answer it expects, as the counts travel between the workers
  // at the end of a turn: a subscription that got the other answer meanwhile is closed, and asked again
  const on = async (path: string, worker: number, token = alice, admit = true): Promise<boolean> => {
    return await eventually(async () => {
      const r = await userSubscribes(port, path, worker, token)
      if (r.verdict !== 'admitted' && r.verdict !== 'user_limit') throw new Error(`${path} on worker ${worker}: ${r.verdict}`)
      if ((r.verdict === 'admitted') === admit) {
        held.push(r.c)
        return true
      }
      r.c.socket.destroy()
      return false
    }, 10000)
  }
  const off = async (path: string, worker: number): Promise<boolean> => await on(path, worker, alice, false)
  // one on each worker: both admitted
  t.true(await on('/sub/ua', 0))
  t.true(await on('/sub/ub', 1))
  // a third, on either worker: refused (each worker held only one of them)
  t.true(await off('/sub/uc', 0))
  t.true(await off('/sub/uc', 1))
  // another user is not disturbed
  t.true(await on('/sub/ua', 0, bob))
  // alice's subscription on worker 1 ends: worker 0 admits one more of hers (once it has heard)
  held[1]!.socket.destroy()
  t.true(await on('/sub/ud', 0))
  t.true(await off('/sub/ue', 1))
  // worker 0, holding both of hers, dies: worker 1 admits two, and the new worker 0 hears of them
  const before = workerPid(child.pid!, 0)
  process.kill(before, 'SIGKILL')
  // (while a worker is away new subscribers get 503: until worker 0 is back, probed with another user)
  const carol = (await mint(['u*'], 120, 'carol')).token
  // (a connection the kernel had queued for the killed worker is reset: that probe is made again)
  t.true(await eventually(async () => {
    let probe: Awaited<ReturnType<typeof userSubscribes>>
    try {
      probe = await userSubscribes(port, '/sub/uprobe', 1, carol)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ECONNRESET') return false
      throw err
    }
    probe.c.socket.destroy()
    return probe.verdict === 'admitted'
  }, 20000))
  t.not(workerPid(child.pid!, 0), before)
  t.true(await on('/sub/uf', 1))
  t.true(await on('/sub/ug', 1))
  t.true(await off('/sub/uh', 0))
})

test.serial('maxSubscribersPerUser holds against a burst spread over the workers: the user\'s owner counts every worker\'s, and grants one at a time', async (t) => {
  const { port } = await startCluster(t, 2, 0, false, ['--jwt-secret', SECRET, '--max-subscribers-per-user', '3'])
  const { token } = await mint(['u*'], 120, 'dave')
  const auth = { Authorization: `Bearer ${token}` }
  const clients: SseClient[] = []
  t.teardown(() => { for (const c of clients) c.socket.destroy() })
  // 12 connections on each worker, then 24 subscriptions of one user written in the same turn:
  // each worker's own count is under the limit when it checks, and the owner's answer decides
  const sockets = [...await connectionsOnWorker(t, port, 0, 12), ...await connectionsOnWorker(t, port, 1, 12)]
  clients.push(...await Promise.all(sockets.map(async (s, i) => await SseClient.over(s, `/sub/uburst${i}`, auth))))
  // a refused one closes after its 429 (SSE: `200` and `:429:`); an admitted one stays open
  const limited = (c: SseClient): boolean => c.comments.some((x) => x.includes('429 Too Many Requests'))
  t.true(await eventually(() => clients.every((c) => c.closed || (c.comments.includes(': hi') && !limited(c))), 10000))
  const admitted = clients.filter((c) => !c.closed)
  const refused = clients.filter(limited)
  t.true(admitted.length <= 3, `${admitted.length} of 24 admitted, limit 3`)
  t.true(admitted.length >= 1)
  t.is(admitted.length + refused.length, 24, 'every other one refused at the limit')
  // the burst over, the user holds exactly the limit: one more on either worker while under it is
  // admitted, and then one on each is refused
  for (let i = admitted.length; i < 3; i++) {
    t.true(await eventually(async () => {
      const r = await userSubscribes(port, `/sub/umore${i}`, i % 2, token)
      clients.push(r.c)
      return r.verdict === 'admitted'
    }, 10000))
  }
  for (const w of [0, 1]) {
    const r = await userSubscribes(port, '/sub/uover', w, token)
    clients.push(r.c)
    t.is(r.verdict, 'user_limit', `worker ${w}`)
  }
})

test.serial('maxSubscribersPerUser: a user\'s owner forked again grants nothing before every worker\'s count of the user is in, in whatever order the workers\' entries reach it', async (t) => {
  const { port, child } = await startCluster(t, 3, 0, false, ['--jwt-secret', SECRET, '--max-subscribers-per-user', '1'])
  // the user's owner A; B holds the user's one subscription; C asks for another
  const A = 2
  const B = 0
  const C = 1
  let user = 'frank'
  for (let i = 0; userOwnerOf(user, 3) !== A; i++) user = `frank${i}`
  // a channel C owns: nothing C's subscriber waits on but the user's owner
  let key = 'ux'
  for (let i = 0; ownerOf(key, 3) !== C; i++) key = `ux${i}`
  const { token } = await mint(['u*'], 120, user)
  const auth = { Authorization: `Bearer ${token}` }
  const held = await userSubscribes(port, '/sub/uheld', B, token)
  t.teardown(() => { held.c.socket.destroy() })
  t.is(held.verdict, 'admitted')
  // (every connection opened before B stops: one the kernel gave B would wait for it)
  const sockets = await connectionsOnWorker(t, port, C, 80)
  // A dies, and B stops (a long turn) before the new A has heard its count
  const pidA = workerPid(child.pid!, A)
  const pidB = workerPid(child.pid!, B)
  process.kill(pidA, 'SIGKILL')
  process.kill(pidB, 'SIGSTOP')
  t.teardown(() => { try { process.kill(pidB, 'SIGCONT') } catch {} })
  // a subscription on C, under C's own count: 503 at once while C has no link to the new A; once
  // it has one, it waits for A's word (no answer at all yet), which A holds until it has every
  // worker's counts
  let asked: Promise<SseClient> | null = null
  for (const s of sockets) {
    const pending = SseClient.over(s, `/sub/${key}`, auth)
    const c = await Promise.race([pending, new Promise<null>((resolve) => setTimeout(resolve, 200, null))])
    if (c === null) { asked = pending; break }
    await c.until(() => c.closed, 1000).catch(() => {})
    t.true(c.comments.some((x) => x.startsWith(':503:')), c.comments.join('|'))
    // (80 tries over about 8 s: the new A's start on a loaded host, and B ended by the primary
    // only at SILENT_MS)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  t.not(asked, null, 'a subscription on C waited for the new A while B was stopped')
  // B goes on: its count reaches the new A after C's ask did; the ask is not granted
  process.kill(pidB, 'SIGCONT')
  const c = await asked!
  await c.until(() => c.closed, 10000).catch(() => {})
  t.true(c.closed && c.comments.some((x) => /^:(429|503):/.test(x)), c.comments.join('|'))
  t.false(held.c.closed)
  // and once B's count is in, one more on C is refused at the limit
  t.true(await eventually(async () => {
    const r = await userSubscribes(port, `/sub/${key}`, C, token)
    r.c.socket.destroy()
    return r.verdict === 'user_limit'
  }, 10000))
})

/** What worker `worker` answers to `request`, up to the connection's close (at most 5 s). */
async function answerOnWorker (port: number, worker: number, request: string): Promise<string> {
  const s = await socketOnWorker(port, worker)
  let got = ''
  s.on('data', (d: Buffer) => { got += d.toString('latin1') })
  s.write(request)
  await Promise.race([once(s, 'close'), new Promise((resolve) => setTimeout(resolve, 5000))])
  s.destroy()
  return got
}

test.serial('maxSubscribersPerUser: a subscription its worker admits and the user\'s owner refuses gets the answer of a refusal at admission (SSE, WebSocket, long-poll), and nothing else', async (t) => {
  const { port } = await startCluster(t, 2, 0, false, ['--jwt-secret', SECRET, '--max-subscribers-per-user', '1'])
  // a user whose owner is worker 1; worker 0 holds none of its subscribers, so it admits by its
  // own count and asks worker 1
  let user = 'erin'
  for (let i = 0; userOwnerOf(user, 2) !== 1; i++) user = `erin${i}`
  const { token } = await mint(['u*'], 120, user)
  const held = await userSubscribes(port, '/sub/uheld', 1, token)
  t.teardown(() => { held.c.socket.destroy() })
  t.is(held.verdict, 'admitted')
  const late = await userSubscribes(port, '/sub/ulate', 0, token)
  late.c.socket.destroy()
  t.is(late.verdict, 'user_limit')
  const ws = await answerOnWorker(port, 0, 'GET /sub/ulate HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer ${token}\r\n\r\n`)
  t.regex(ws, /^HTTP\/1\.1 429 [^]*\r\nRetry-After: \d+\r\n[^]*\r\n\r\nToo Many Requests: this user holds its limit of subscriptions$/)
  t.notRegex(ws, / 101 /)
  const lp = await answerOnWorker(port, 0, `GET /sub/ulate HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\n\r\n`)
  t.regex(lp, /^HTTP\/1\.1 429 [^]*\r\nRetry-After: \d+\r\n[^]*\r\n\r\nToo Many Requests: this user holds its limit of subscriptions$/)
  // the held one ends: worker 0 is granted one (once the owner has heard)
  held.c.socket.destroy()
  t.true(await eventually(async () => {
    const r = await userSubscribes(port, '/sub/unext', 0, token)
    r.c.socket.destroy()
    return r.verdict === 'admitted'
  }, 10000))
})

/** `n` keep-alive connections that landed on worker `worker` (a connection's requests are answered in order, one at a time). */
async function connectionsOnWorker (t: ExecutionContext, port: number, worker: number, n: number): Promise<net.Socket[]> {
  const sockets: net.Socket[] = []
  t.teardown(() => { for (const s of sockets) s.destroy() })
  for (let i = 0; i < 1000 && sockets.length < n; i++) {
    const s = net.connect(port, '127.0.0.1')
    s.on('error', () => {})
    await once(s, 'connect')
    s.write('GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
    const [d] = await once(s, 'data') as [Buffer]
    if (new RegExp(`^worker: ${worker}$`, 'm').test(d.toString('latin1'))) sockets.push(s)
    else s.destroy()
  }
  t.is(sockets.length, n)
  return sockets
}

test.serial('a worker that stops reading its mesh links is ended and forked again; what waited for it gets 503, and the channel works after', async (t) => {
  const { base, port, child } = await startCluster(t)
  let key = 'stuck'
  for (let i = 0; ownerOf(key, 2) !== 0; i++) key = `stuck${i}`
  const stopped = workerPid(child.pid!, 0)
  // 80 publisher connections on worker 1
  const sockets = await connectionsOnWorker(t, port, 1, 80)
  let answers = ''
  for (const s of sockets) s.on('data', (d: Buffer) => { answers += d.toString('latin1') })
  process.kill(stopped, 'SIGSTOP')
  t.teardown(() => { try { process.kill(stopped, 'SIGCONT') } catch {} })
  // 80 MB for worker 0 that it never reads: past the mesh's 64 MiB backlog cap
  const body = Buffer.alloc(1_000_000, 0x61)
  const head = Buffer.from(`POST /pub/${key} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${body.length}\r\n\r\n`)
  for (const s of sockets) s.write(Buffer.concat([head, body]))
  t.true(await eventually(() => !workerPids(child.pid!).includes(stopped), 20000), 'the stopped worker was ended')
  // each connection's answer (a 503 for what the stopped worker held; 202 for a publish that
  // reached the mesh after its death and waited for the new one)
  const statuses = (): string[] => (answers.match(/HTTP\/1\.1 \d{3} /g) ?? []).map((x) => x.slice(9, 12))
  t.true(await eventually(() => statuses().length === 80, 20000), `80 answers: ${statuses().join(',')}`)
  t.true(statuses().includes('503'))
  t.deepEqual(statuses().filter((x) => x !== '503' && x !== '202'), [])
  t.true(await eventually(() => workerPids(child.pid!).length === 2, 20000))
  let status = 503
  for (let i = 0; i < 50 && status === 503; i++) {
    status = (await publish(base, key, 'after', { Connection: 'close' })).status
    if (status === 503) await new Promise((resolve) => setTimeout(resolve, 100))
  }
  t.is(status, 202)
  // what was answered 202 is there, and the last publish; nothing answered 503 is
  t.is((await info(base, key)).json!.messages, 1 + statuses().filter((x) => x === '202').length)
})

test.serial('publishes waiting on a channel\'s owner are bounded: past 16 MiB in flight they get 503 with Retry-After, and an owner that is only slow is not ended', async (t) => {
  const { base, port, child } = await startCluster(t)
  let key = 'slow'
  for (let i = 0; ownerOf(key, 2) !== 0; i++) key = `slow${i}`
  const owner = workerPid(child.pid!, 0)
  const sockets = await connectionsOnWorker(t, port, 1, 80)
  let answers = ''
  for (const s of sockets) s.on('data', (d: Buffer) => { answers += d.toString('latin1') })
  // the owner reads nothing for a moment (shorter than it takes to be found stuck): 80 MB of
  // publishes for it through worker 1
  process.kill(owner, 'SIGSTOP')
  t.teardown(() => { try { process.kill(owner, 'SIGCONT') } catch {} })
  const body = Buffer.alloc(1_000_000, 0x61)
  const head = Buffer.from(`POST /pub/${key} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${body.length}\r\n\r\n`)
  for (const s of sockets) s.write(Buffer.concat([head, body]))
  const statuses = (): string[] => (answers.match(/HTTP\/1\.1 \d{3} /g) ?? []).map((x) => x.slice(9, 12))
  // 16 bodies wait on the owner; the other 64 are refused at once, while it is still stopped
  const refused = await eventually(() => statuses().filter((x) => x === '503').length >= 64, 4000)
  process.kill(owner, 'SIGCONT')
  t.true(refused, `answers while the owner was stopped: ${statuses().join(',')}`)
  t.true(await eventually(() => statuses().length === 80, 20000), `80 answers: ${statuses().join(',')}`)
  t.deepEqual(statuses().filter((x) => x !== '503' && x !== '202'), [])
  t.is(statuses().filter((x) => x === '202').length, 16)
  t.is((answers.match(/\r\nretry-after: [1-5]\r\n/gi) ?? []).length, 64)
  t.is((await info(base, key)).json!.messages, 16)
  // the owner lives on, and so does what it holds
  t.true(workerPids(child.pid!).includes(owner))
})

test.serial('a publish waiting on its channel\'s owner counts in maxPublishing until answered', async (t) => {
  const port = await freePort()
  const child = spawn(NODE, ['bin/parkline.ts', 'serve', '--workers', '2', '--port', String(port), '--host', '127.0.0.1', '--log-level', 'error', '--max-publishing', '2'], { stdio: 'ignore' })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  t.true(await eventually(async () => {
    if (workerPids(child.pid!).length !== 2) return false
    try { return (await fetch(`http://127.0.0.1:${port}/status`, { headers: { Connection: 'close' } })).status === 200 } catch { return false }
  }, 20000))
  let key = 'held'
  for (let i = 0; ownerOf(key, 2) !== 0; i++) key = `held${i}`
  const owner = workerPid(child.pid!, 0)
  const sockets = await connectionsOnWorker(t, port, 1, 3)
  let answers = ''
  for (const s of sockets) s.on('data', (d: Buffer) => { answers += d.toString('latin1') })
  process.kill(owner, 'SIGSTOP')
  t.teardown(() => { try { process.kill(owner, 'SIGCONT') } catch {} })
  for (const s of sockets) {
    s.write(`POST /pub/${key} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\nhi`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  // two wait on the stopped owner; the third is over maxPublishing
  const refused = await eventually(() => /HTTP\/1\.1 503 /.test(answers), 3000)
  process.kill(owner, 'SIGCONT')
  t.true(refused, answers)
  t.true(await eventually(() => (answers.match(/HTTP\/1\.1 \d{3} /g) ?? []).length === 3, 20000), answers)
  t.deepEqual((answers.match(/HTTP\/1\.1 \d{3} /g) ?? []).map((x) => x.slice(9, 12)).sort(), ['202', '202', '503'])
})

test.serial('maxChannels holds at the owner: publishes making new channels through a worker that does not own them get 503 past it', async (t) => {
  const node = await serve(t, ['--workers', '2', '--max-channels', '10'])
  const keys: string[] = []
  for (let i = 0; keys.length < 30; i++) if (ownerOf(`cap${i}`, 2) === 0) keys.push(`cap${i}`)
  let [s] = await connectionsOnWorker(t, node.port, 1, 1)
  const statuses: number[] = []
  for (const key of keys) {
    const answer = new Promise<string>((resolve) => { s!.once('data', (d: Buffer) => { resolve(d.toString('latin1')) }) })
    s!.write(`POST /pub/${key} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\n\r\nx`)
    const a = await answer
    statuses.push(Number(a.slice(9, 12)))
    // a refusal closes the connection: the rest through a new one on worker 1
    if (/\r\nconnection: close\r\n/i.test(a)) { s!.destroy(); [s] = await connectionsOnWorker(t, node.port, 1, 1) }
  }
  t.deepEqual(statuses.slice(0, 10), Array(10).fill(202))
  t.deepEqual(statuses.slice(10), Array(20).fill(503), statuses.join(','))
})

test.serial('maxChannels is the owner\'s: a worker whose own records are full still takes publishes to channels another worker holds', async (t) => {
  const node = await serve(t, ['--workers', '2', '--max-channels', '10'])
  let key = 'held'
  for (let i = 0; ownerOf(key, 2) !== 0; i++) key = `held${i}`
  t.is((await publish(node.base, key, 'first')).status, 202)
  // worker 1's records full: ten channels of its own, each with a subscriber there
  const mine: string[] = []
  for (let i = 0; mine.length < 10; i++) if (ownerOf(`full${i}`, 2) === 1) mine.push(`full${i}`)
  const sub = await SseClient.connectOnWorker(node.port, `/sub/${mine.join(',')}`, 1)
  t.teardown(() => sub.close())
  // a publish through worker 1 to the channel worker 0 holds makes no record on worker 1
  t.is(await publishOnWorker(node.port, key, 'second', 1), 202)
  t.is((await info(node.base, key)).json!.messages, 2)
  // a new channel owned by worker 1 would be its eleventh record: refused before its body is
  // read, the connection closed with the answer (as with one process)
  let extra = 'more'
  for (let i = 0; ownerOf(extra, 2) !== 1; i++) extra = `more${i}`
  const c = await rawOnWorker(node.port, 1)
  t.teardown(() => c.socket.destroy())
  c.socket.write(`POST /pub/${extra} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\r\nx`)
  t.true(await c.wait((b) => b.includes('\r\n\r\n')), 'answered before the body came')
  const head = c.got().toString('latin1')
  t.regex(head, /^HTTP\/1\.1 503 /)
  t.regex(head, /\r\nconnection: close\r\n/i)
})

test.serial('a channel whose messages expired stays at its owner while another worker has subscribers there: its info keeps its last id', async (t) => {
  const node = await serve(t, ['--workers', '2', '--message-timeout', '1'])
  let key = 'kept'
  for (let i = 0; ownerOf(key, 2) !== 0; i++) key = `kept${i}`
  const sub = await SseClient.connectOnWorker(node.port, `/sub/${key}`, 1)
  t.teardown(() => sub.close())
  const r = await publish(node.base, key, 'soon gone')
  t.is(r.status, 201)
  const id = (await info(node.base, key)).json!.last_message_id
  t.regex(String(id), /^\d+:\d+$/)
  t.not(id, '0:0')
  // expired at the owner (its once-a-second timer), with the subscriber still on worker 1
  t.true(await eventually(async () => (await info(node.base, key)).json!.messages === 0, 10000))
  const after = (await info(node.base, key)).json!
  t.is(after.last_message_id, id)
  t.is(after.subscribers, 1)
  t.deepEqual((await sub.waitEvents(1)).map((e) => e.data), ['soon gone'])
})

/** Answers read off `c` in order: status, headers (lower-cased names) and body. */
function responses (c: Awaited<ReturnType<typeof rawOnWorker>>): () => Promise<{ status: number, headers: Map<string, string>, body: string }> {
  let at = 0
  return async () => {
    let parsed: { status: number, headers: Map<string, string>, body: string } | null = null
    const complete = (buf: Buffer): boolean => {
      const end = buf.indexOf('\r\n\r\n', at)
      if (end === -1) return false
      const lines = buf.toString('latin1', at, end).split('\r\n')
      const headers = new Map(lines.slice(1).map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()] as [string, string]))
      const len = Number(headers.get('content-length') ?? 0)
      if (buf.length < end + 4 + len) return false
      parsed = { status: Number(lines[0]!.split(' ')[1]), headers, body: buf.toString('utf8', end + 4, end + 4 + len) }
      at = end + 4 + len
      return true
    }
    if (!await c.wait(complete)) throw new Error('no answer')
    return parsed!
  }
}

/** `--workers 2`, a channel owned by worker 0, a raw connection on worker 1 to poll it from, and the node's replica loads. */
async function pollFromWorker1 (t: ExecutionContext, prefix: string): Promise<{ node: Awaited<ReturnType<typeof serve>>, key: string, c: Awaited<ReturnType<typeof rawOnWorker>>, next: ReturnType<typeof responses>, loads: () => Promise<number> }> {
  const node = await serve(t, ['--workers', '2'])
  let key = prefix
  for (let i = 0; ownerOf(key, 2) !== 0; i++) key = `${prefix}${i}`
  const c = await rawOnWorker(node.port, 1)
  t.teardown(() => c.socket.destroy())
  const loads = async (): Promise<number> => Number(/^parkline_replica_loads_total (\d+)/m.exec(await (await fetch(`${node.base}/metrics`)).text())?.[1] ?? NaN)
  return { node, key, c, next: responses(c), loads }
}

/** The request headers that resume a long-poll after answer `r` (its Last-Modified and Etag). */
function cursorAfter (r: { headers: Map<string, string> }): string {
  return `If-Modified-Since: ${r.headers.get('last-modified')!}\r\nIf-None-Match: ${r.headers.get('etag')!}\r\n`
}

/** A first poll from worker 1, counted at the owner and answered with `body`, one load: worker 1 keeps its replica after. */
async function firstPoll (t: ExecutionContext, s: Awaited<ReturnType<typeof pollFromWorker1>>, body: string): Promise<string> {
  s.c.socket.write(`GET /sub/${s.key} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)
  t.true(await eventually(async () => (await info(s.node.base, s.key)).json?.subscribers === 1, 10000))
  t.is((await publish(s.node.base, s.key, body)).status, 201)
  const r = await s.next()
  t.is(r.body, body)
  t.is(await s.loads(), 1)
  return cursorAfter(r)
}

test.serial('with workers, a long-poll\'s next poll finds its worker\'s replica current: the owner\'s buffer is loaded once, not at every poll, and nothing published between polls is missed', async (t) => {
  const { node, key, c, next, loads } = await pollFromWorker1(t, 'lp')
  let cursor = ''
  const poll = async (): Promise<string> => {
    const r = await next()
    t.is(r.status, 200)
    cursor = cursorAfter(r)
    return r.body
  }
  const got: string[] = []
  for (let i = 0; i < 8; i++) {
    // the poll answered last is uncounted at the owner first (IPC, a moment later): otherwise its
    // count could pass for the next poll's, and a publish in between would find none (202)
    if (i > 0) t.true(await eventually(async () => (await info(node.base, key)).json?.subscribers === 0, 10000))
    c.socket.write(`GET /sub/${key} HTTP/1.1\r\nHost: 127.0.0.1\r\n${cursor}\r\n`)
    // parked on worker 1 and counted at worker 0 (the owner) before the message comes
    t.true(await eventually(async () => (await info(node.base, key)).json?.subscribers === 1, 10000))
    t.is((await publish(node.base, key, `m${i}`)).status, 201)
    got.push(await poll())
    if (i % 2 === 1) {
      // published while no poll is parked (the answered one uncounted at the owner): the replica
      // kept on worker 1 gets it, the next poll too
      t.true(await eventually(async () => (await info(node.base, key)).json?.subscribers === 0, 10000))
      t.is((await publish(node.base, key, `between${i}`)).status, 202)
      c.socket.write(`GET /sub/${key} HTTP/1.1\r\nHost: 127.0.0.1\r\n${cursor}\r\n`)
      got.push(await poll())
    }
  }
  t.deepEqual(got, ['m0', 'm1', 'between1', 'm2', 'm3', 'between3', 'm4', 'm5', 'between5', 'm6', 'm7', 'between7'])
  t.is(await loads(), 1, 'the first poll loaded the replica; every later one found it kept')
  // the replica goes once no poll came for a while (the linger, and up to a second's sweep): a
  // poll then loads it again
  await new Promise((resolve) => setTimeout(resolve, REPLICA_LINGER_MS + 1500))
  t.is((await publish(node.base, key, 'after')).status, 202)
  c.socket.write(`GET /sub/${key} HTTP/1.1\r\nHost: 127.0.0.1\r\n${cursor}\r\n`)
  t.is(await poll(), 'after')
  t.is(await loads(), 2)
})

test.serial('with workers, a multiplexed long-poll keeps its replica of the channel another worker owns between polls; both channels\' messages arrive once, in order', async (t) => {
  const { node, key: a, c, next, loads } = await pollFromWorker1(t, 'mxa')
  let b = 'mxb'
  for (let i = 0; ownerOf(b, 2) !== 1; i++) b = `mxb${i}`
  let cursor = ''
  const got: string[] = []
  for (let i = 0; i < 6; i++) {
    c.socket.write(`GET /sub/${a},${b} HTTP/1.1\r\nHost: 127.0.0.1\r\n${cursor}\r\n`)
    // counted at both owners before the message comes: b's (worker 1, where the poll parks) and
    // a's (worker 0). a's count alone can still be the previous poll's, uncounted at worker 0 a
    // moment after it was answered, while this poll is not parked yet.
    t.true(await eventually(async () => (await info(node.base, b)).json?.subscribers === 1, 10000))
    t.true(await eventually(async () => (await info(node.base, a)).json?.subscribers === 1, 10000))
    const key = i % 2 === 0 ? a : b
    t.is((await publish(node.base, key, `${key === a ? 'a' : 'b'}${i}`)).status, 201)
    const r = await next()
    t.is(r.status, 200)
    cursor = cursorAfter(r)
    got.push(r.body)
  }
  t.deepEqual(got, ['a0', 'b1', 'a2', 'b3', 'a4', 'b5'])
  t.is(await loads(), 1, 'a\'s replica loaded once; b is worker 1\'s own')
})

test.serial('with workers, a DELETE while a worker keeps its replica of the channel ends that replica: a poll after it gets the new channel\'s message, never the deleted one', async (t) => {
  const s = await pollFromWorker1(t, 'kd')
  const { node, key, c, next, loads } = s
  await firstPoll(t, s, 'deleted')
  // the replica on worker 1 is kept now; the DELETE (at the owner) reaches it as a 'd'
  t.is((await fetch(`${node.base}/pub/${key}`, { method: 'DELETE' })).status, 200)
  t.is((await publish(node.base, key, 'after')).status, 202)
  c.socket.write(`GET /sub/${key} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)
  const r = await next()
  t.is(r.status, 200)
  t.is(r.body, 'after')
  t.is(await loads(), 2, 'the deleted channel\'s replica was not kept: the new one was loaded')
})

test.serial('with workers, the owner dies while another worker keeps its replica of a channel with no poll parked: the new owner takes that buffer back, and the next poll resumes with no gap', async (t) => {
  const s = await pollFromWorker1(t, 'ko')
  const { node, key, c, next, loads } = s
  const cursor = await firstPoll(t, s, 'm0')
  // no poll parked: worker 1 keeps its replica, and gets this one too
  t.true(await eventually(async () => (await info(node.base, key)).json?.subscribers === 0, 10000))
  t.is((await publish(node.base, key, 'm1')).status, 202)
  t.is(await loads(), 1)
  const before = workerPid(node.proc.pid!, 0)
  process.kill(before, 'SIGKILL')
  // forked again (however long that takes: the kept replica waits for its owner), and serving
  t.true(await eventually(() => { try { return workerPid(node.proc.pid!, 0) !== before } catch { return false } }, 20000))
  t.true(await eventually(async () => { try { return (await fetch(`${node.base}/health`)).status === 200 } catch { return false } }, START_MS))
  // the new owner's buffer is the kept replica's: the next id follows m1, and m2 goes to the replica
  const i = await info(node.base, key)
  t.is(i.json?.messages, 2, JSON.stringify(i.json))
  let status = 503
  for (let k = 0; k < 5 && status === 503; k++) status = (await publish(node.base, key, 'm2', { 'Idempotency-Key': 'm2' })).status
  t.is(status, 202)
  const got: string[] = []
  let at = cursor
  for (let k = 0; k < 2; k++) {
    c.socket.write(`GET /sub/${key} HTTP/1.1\r\nHost: 127.0.0.1\r\n${at}\r\n`)
    const r = await next()
    t.is(r.status, 200)
    t.is(r.headers.get('parkline-gap'), undefined, 'nothing was lost: no gap')
    at = cursorAfter(r)
    got.push(r.body)
  }
  t.deepEqual(got, ['m1', 'm2'])
})

test('a worker run by hand (no primary, no mesh directory or key) refuses to start', async (t) => {
  const port = await freePort()
  const r = spawnSync(process.execPath, ['bin/parkline.ts', 'worker', '--port', String(port), '--host', '127.0.0.1'], { encoding: 'utf8', timeout: 20000, env: { ...process.env, PARKLINE_WORKER_COUNT: '2', PARKLINE_MESH: '/tmp' } })
  t.is(r.status, 2)
  t.regex(r.stderr, /parkline worker: run by `parkline serve --workers N`/)
})

test('each channel is held by its owner, and by another worker only while that one has subscribers there; a late subscriber gets the owner\'s buffer', async (t) => {
  const node = await serve(t, ['--workers', '2'])
  for (let i = 0; i < 100; i++) t.is((await fetch(`${node.base}/pub/quiet${i}`, { method: 'POST', body: `q${i}` })).status, 202)
  const owned = [0, 0]
  for (let i = 0; i < 100; i++) owned[ownerOf(`quiet${i}`, 2)]!++
  // whichever worker answers: the node-wide totals (once a second), and its own channels only
  t.true(await eventually(async () => /^channels: 100$/m.test(await (await fetch(`${node.base}/status`)).text()), 3000))
  const seen = new Set<number>()
  t.true(await eventually(async () => {
    const status = await (await fetch(`${node.base}/status`, { headers: { Connection: 'close' } })).text()
    const w = Number(/^worker: (\d)$/m.exec(status)![1])
    t.regex(status, /^channels: 100$/m)
    t.regex(status, new RegExp(`^channels this worker: ${owned[w]}$`, 'm'))
    seen.add(w)
    return seen.size === 2
  }, 5000))
  const notOwner = 1 - ownerOf('quiet7', 2)
  const late = await SseClient.connectOnWorker(node.port, '/sub/quiet7', notOwner)
  t.deepEqual((await late.waitEvents(1)).map((e) => e.data), ['q7'])
  t.is((await fetch(`${node.base}/pub/quiet7`, { method: 'POST', body: 'live' })).status, 201)
  t.deepEqual((await late.waitEvents(2)).map((e) => e.data), ['q7', 'live'])
  late.close()
})

test('/status with workers: the per-transport lines are the whole host\'s, as `subscribers` is, whichever worker answers', async (t) => {
  const node = await serve(t, ['--workers', '2'])
  // two EventSource subscribers, one on each worker, and a parked long-poll on worker 0
  const a = await SseClient.connectOnWorker(node.port, '/sub/tr-a', 0)
  const b = await SseClient.connectOnWorker(node.port, '/sub/tr-b', 1)
  const poll = await socketOnWorker(node.port, 0)
  poll.write('GET /sub/tr-c HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
  t.teardown(() => { a.close(); b.close(); poll.destroy() })
  const seen = new Set<number>()
  t.true(await eventually(async () => {
    const status = await (await fetch(`${node.base}/status`, { headers: { Connection: 'close' } })).text()
    const w = Number(/^worker: (\d)$/m.exec(status)![1])
    // the totals come once a second: until then a worker's own figures stand
    if (!/^subscribers: 3$/m.test(status)) return false
    t.regex(status, new RegExp(`^subscribers this worker: ${w === 0 ? 2 : 1}$`, 'm'))
    t.regex(status, /^subscribers eventsource: 2$/m)
    t.regex(status, /^subscribers longpoll: 1$/m)
    t.regex(status, /^subscribers websocket: 0$/m)
    seen.add(w)
    return seen.size === 2
  }, 8000))
})

test('kill -9 of the primary: the workers go with it; after a restart a client resuming with its last id gets the gap signal, not silence', async (t) => {
  const port = await freePort()
  const args = ['bin/parkline.ts', 'serve', '--workers', '2', '--port', String(port), '--host', '127.0.0.1', '--log-level', 'error', '--drain-window', '0']
  const first = spawn(process.execPath, args, { stdio: 'ignore' })
  t.teardown(() => { first.kill('SIGKILL') })
  const base = `http://127.0.0.1:${port}`
  t.true(await eventually(async () => { try { return (await fetch(`${base}/health`)).ok } catch { return false } }, START_MS))
  const children = readFileSync(`/proc/${first.pid}/task/${first.pid}/children`, 'utf8').trim().split(/\s+/).map(Number)
  const sse = await SseClient.connect(port, '/sub/crash')
  t.is((await fetch(`${base}/pub/crash`, { method: 'POST', body: 'one' })).status, 201)
  const last = (await sse.waitEvents(1))[0]!.id!
  t.is((await fetch(`${base}/pub/crash`, { method: 'POST', body: 'two' })).status, 201)
  await sse.waitEvents(2)
  process.kill(first.pid!, 'SIGKILL')
  await sse.until(() => sse.closed)
  // the workers exit with their primary (nothing serves the port with stale state)
  t.true(await eventually(() => children.every((pid) => { try { process.kill(pid, 0); return false } catch { return true } }), 5000))
  // what systemd's Restart=always does: a fresh server on the same port
  const second = spawn(process.execPath, args, { stdio: 'ignore' })
  t.teardown(() => { second.kill('SIGKILL') })
  t.true(await eventually(async () => { try { return (await fetch(`${base}/health`)).ok } catch { return false } }, START_MS))
  const resumed = await SseClient.connect(port, '/sub/crash', { 'Last-Event-ID': last })
  t.is((await fetch(`${base}/pub/crash`, { method: 'POST', body: 'three' })).status, 201)
  const [ev] = await resumed.waitEvents(1)
  t.is(ev!.data, 'three')
  t.true(resumed.comments.some((c) => c.startsWith(':parkline-gap')) || ev!.comments.some((c) => c.includes('gap')), 'the lost message "two" is signalled: ' + JSON.stringify([resumed.comments, ev!.comments]))
  resumed.close()
})

/**
 * POST a message through worker `worker` (a keep-alive connection that /status says reached it);
 * its status. A connection that lands on a stopped worker gets no answer and is given up after 1 s.
 */
/** A kept-alive connection the kernel gave `worker`'s listener (its /status says so): each request's whole answer, or null once it closed or a second passed with no answer. */
async function connectToWorker (port: number, worker: number): Promise<{ request: (req: string) => Promise<string | null>, close: () => void }> {
  for (let i = 0; i < 200; i++) {
    const socket = net.connect(port, '127.0.0.1')
    socket.on('error', () => {})
    await once(socket, 'connect')
    const request = async (req: string): Promise<string | null> => await new Promise((resolve) => {
      let got = ''
      const done = (r: string | null): void => {
        socket.off('data', onData)
        socket.off('close', onClose)
        socket.setTimeout(0)
        resolve(r)
      }
      const onData = (d: Buffer): void => {
        got += d.toString('latin1')
        const end = got.indexOf('\r\n\r\n')
        if (end === -1) return
        const len = Number(/content-length: (\d+)/i.exec(got.slice(0, end))?.[1] ?? 0)
        if (got.length < end + 4 + len) return
        done(got.slice(0, end + 4 + len))
      }
      const onClose = (): void => done(null)
      socket.on('data', onData)
      socket.once('close', onClose)
      // a connection the kernel gave a stopped worker's listener is never answered: try another
      socket.setTimeout(1000, () => socket.destroy())
      socket.write(req)
    })
    const st = await request('GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
    if (st !== null && new RegExp(`^worker: ${worker}$`, 'm').test(st)) return { request, close: () => socket.destroy() }
    socket.destroy()
  }
  throw new Error(`no connection reached worker ${worker}`)
}

/** A publish over `conn`: its status, 0 where it got no answer. */
async function publishOver (conn: { request: (req: string) => Promise<string | null> }, channel: string, body: string): Promise<number> {
  const r = await conn.request(`POST /pub/${channel} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
  return Number(/^HTTP\/1\.1 (\d+)/.exec(r ?? '')?.[1] ?? 0)
}

async function publishOnWorker (port: number, channel: string, body: string, worker: number): Promise<number> {
  const conn = await connectToWorker(port, worker)
  try {
    return await publishOver(conn, channel, body)
  } finally {
    conn.close()
  }
}

test.serial('multiplexed over three owners: a message waits while the owner of another of its channels has not reached its second (stopped), then arrives', async (t) => {
  t.timeout(60000)
  const { port, child } = await startCluster(t, 3)
  // a owned by worker 1, b by worker 2, the subscriber on worker 0
  const [a, b] = fencedPair('f')
  const s = await SseClient.connectOnWorker(port, `/sub/${a},${b}`, 0)
  t.teardown(() => s.close())
  await s.until(() => s.comments.includes(': hi'))
  t.is(await publishOnWorker(port, b, 'b0', 2), 201)
  await s.waitEvents(1)
  // into a second worker 1 has not reached: a message of a it published before may still be on
  // its way, so a message of b from this second must not go first (a resume from its id would skip it)
  await fenceRound(t, port, child, b, () => s.events.length === 1, async () => (await s.waitEvents(2)).map((e) => e.data).join() === 'b0,b1')
  // and the fence is no wait once every owner is past the second
  t.is(await publishOnWorker(port, b, 'b2', 2), 201)
  t.deepEqual((await s.waitEvents(3)).map((e) => e.data), ['b0', 'b1', 'b2'])
})

test.serial('multiplexed: the owner of one channel dies while the subscriber\'s worker is behind; the subscriber is ended (503) before a later second of the other channel, and resumes from its last id with every message, never an id twice', async (t) => {
  t.timeout(90000)
  const { port, child } = await startCluster(t, 3)
  // a owned by worker 1, b by worker 2; the multiplexed subscriber on worker 0; another subscriber
  // of a on worker 2 keeps a replica the next owner takes back
  const [a, b] = fencedPair('od')
  const s = await SseClient.connectOnWorker(port, `/sub/${a},${b}`, 0)
  t.teardown(() => s.close())
  const r = await SseClient.connectOnWorker(port, `/sub/${a}`, 2)
  t.teardown(() => r.close())
  await s.until(() => s.comments.includes(': hi'))
  await r.until(() => r.comments.includes(': hi'))
  t.is(await publishOnWorker(port, a, 'a0', 2), 201)
  t.is(await publishOnWorker(port, b, 'b0', 2), 201)
  await s.waitEvents(2)
  const zero = workerPid(child.pid!, 0)
  const one = workerPid(child.pid!, 1)
  // b1 goes over a connection found before worker 0 stops: one found while it is stopped may take
  // a second per connection the kernel gives worker 0 (or the new worker 1), and a stop past
  // SILENT_MS ends worker 0
  const onTwo = await connectToWorker(port, 2)
  t.teardown(() => onTwo.close())
  // worker 0 behind: its links fill with large messages of a it cannot read
  process.kill(zero, 'SIGSTOP')
  t.teardown(() => { try { process.kill(zero, 'SIGCONT') } catch {} })
  const big = 'x'.repeat(60000)
  const sent: Array<Promise<number>> = []
  for (let k = 1; k <= 16; k++) {
    sent.push(publishOnWorker(port, a, `a${k}|${big}`, 2).catch(() => 0))
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  await new Promise((resolve) => setTimeout(resolve, 700))
  process.kill(one, 'SIGKILL')
  // a later second, then a message of b (its owner is alive)
  await new Promise((resolve) => setTimeout(resolve, 1100))
  t.true([201, 202].includes(await publishOver(onTwo, b, 'b1')))
  await new Promise((resolve) => setTimeout(resolve, 200))
  process.kill(zero, 'SIGCONT')
  await Promise.all(sent)
  await s.until(() => s.closed || s.comments.some((c) => c.startsWith(':503:')), 20000).catch(() => {})
  const ids = s.events.map((e) => e.id)
  t.is(new Set(ids).size, ids.length, `an id came twice: ${ids.join(' ')}`)
  t.true(s.comments.some((c) => c.startsWith(':503:')), 'ended with 503')
  t.false(s.events.some((e) => e.data === 'b1'), 'b1 not delivered ahead of the older messages of a')
  // back: a resume from the last id gets what R (a alone) got after it, and b1
  t.true(await eventually(() => workerPids(child.pid!).length === 3, 20000))
  const last = ids.at(-1)!
  const seenA = s.events.filter((e) => e.data.startsWith('a')).length
  let resumed: SseClient | null = null
  t.true(await eventually(async () => {
    resumed?.close()
    resumed = await SseClient.connect(port, `/sub/${a},${b}`, { 'Last-Event-ID': last })
    return resumed.status === 200 && !resumed.comments.some((c) => c.startsWith(':503:'))
  }, 20000))
  t.teardown(() => resumed?.close())
  const again = resumed!
  await again.until(() => again.events.some((e) => e.data === 'b1'), 20000)
  const got = (): string[] => again.events.map((e) => e.data.split('|')[0]!).filter((d) => d.startsWith('a'))
  // the messages of a after the last one the subscriber had, as the other subscriber of a got them
  const rest = (): string[] => r.events.map((e) => e.data.split('|')[0]!).slice(seenA)
  t.true(await eventually(() => rest().length > 0 && got().join() === rest().join(), 10000), `resumed ${got().join(' ')}; the other subscriber ${rest().join(' ')}`)
  const again2 = again.events.map((e) => e.id)
  t.is(new Set([...ids, ...again2]).size, ids.length + again2.length, 'no id twice across the resume')
})

/** Two workers serving, whose first counts have reached the primary (within a second): the primary, its output, worker 1's pid. */
async function twoWorkersReporting (t: ExecutionContext): Promise<{ port: number, child: ChildProcess, out: () => string, one: number }> {
  const port = await freePort()
  const { child, out } = spawnServe(t, ['--workers', '2', '--port', String(port), '--host', '127.0.0.1', '--log-level', 'warn', '--drain-window', '0'])
  t.true(await eventually(() => workerPids(child.pid!).length === 2, 20000))
  t.true(await eventually(async () => (await fetch(`http://127.0.0.1:${port}/health`).catch(() => null))?.status === 200, START_MS))
  await new Promise((resolve) => setTimeout(resolve, 1500))
  return { port, child, out, one: workerPid(child.pid!, 1) }
}

test.serial('a worker that sends the primary nothing for SILENT_MS (stopped) is ended and forked again; a primary that was the one stopped ends nobody', async (t) => {
  t.timeout(90000)
  const { port, child, out, one } = await twoWorkersReporting(t)
  process.kill(one, 'SIGSTOP')
  t.teardown(() => { try { process.kill(one, 'SIGCONT') } catch {} })
  const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true } catch { return false } }
  t.true(await eventually(() => !alive(one), SILENT_MS + 8000), out())
  t.regex(out(), /worker sent nothing for 10 s/)
  t.true(await eventually(() => { try { return workerPid(child.pid!, 1) !== one } catch { return false } }, 20000), 'forked again')
  t.true(await eventually(async () => (await fetch(`http://127.0.0.1:${port}/health`).catch(() => null))?.status === 200, START_MS))
  // the primary stopped past SILENT_MS: once it runs again it ends no worker for the counts it has
  // not read yet
  await new Promise((resolve) => setTimeout(resolve, 1500))
  const before = workerPids(child.pid!).sort()
  const lines = (out().match(/worker sent nothing/g) ?? []).length
  process.kill(child.pid!, 'SIGSTOP')
  t.teardown(() => { try { process.kill(child.pid!, 'SIGCONT') } catch {} })
  await new Promise((resolve) => setTimeout(resolve, SILENT_MS + 2000))
  process.kill(child.pid!, 'SIGCONT')
  await new Promise((resolve) => setTimeout(resolve, 3000))
  t.deepEqual(workerPids(child.pid!).sort(), before)
  t.is((out().match(/worker sent nothing/g) ?? []).length, lines)
})

test.serial('with Redis too, a worker that sends the primary nothing for SILENT_MS (stopped) is ended and forked again', async (t) => {
  t.timeout(90000)
  const redis = await startRedis(t)
  const port = await freePort()
  const { child, out } = spawnServe(t, ['--workers', '2', '--port', String(port), '--host', '127.0.0.1', '--log-level', 'warn', '--drain-window', '0', '--redis-url', `redis://127.0.0.1:${redis.port}`])
  t.true(await eventually(() => workerPids(child.pid!).length === 2, 20000))
  t.true(await eventually(async () => (await fetch(`http://127.0.0.1:${port}/health`).catch(() => null))?.status === 200, START_MS))
  await new Promise((resolve) => setTimeout(resolve, 1500))
  const one = workerPid(child.pid!, 1)
  process.kill(one, 'SIGSTOP')
  t.teardown(() => { try { process.kill(one, 'SIGCONT') } catch {} })
  const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true } catch { return false } }
  t.true(await eventually(() => !alive(one), SILENT_MS + 8000), out())
  t.regex(out(), /worker sent nothing for 10 s \(its event loop stuck/)
  t.true(await eventually(() => { try { return workerPid(child.pid!, 1) !== one } catch { return false } }, 20000), 'forked again')
  t.true(await eventually(async () => (await fetch(`http://127.0.0.1:${port}/health`, { headers: { Connection: 'close' } }).catch(() => null))?.status === 200, START_MS))
})

/** Worker `pid` of `primary` SIGKILLed: the pid of the incarnation forked in its place, found within milliseconds of its fork. */
async function killedAndForked (t: ExecutionContext, primary: number, pid: number): Promise<number> {
  const before = new Set(workerPids(primary))
  process.kill(pid, 'SIGKILL')
  let next = 0
  const t0 = Date.now()
  while (next === 0 && Date.now() - t0 < 20000) {
    next = workerPids(primary).find((p) => !before.has(p)) ?? 0
    if (next === 0) await new Promise((resolve) => setTimeout(resolve, 2))
  }
  t.not(next, 0, 'forked again')
  return next
}

test.serial('a worker stopped as it was forked, before it ever said a word, is ended SILENT_START_MS after its fork and forked again', async (t) => {
  t.timeout(SILENT_START_MS + 40000)
  const { port, child, out, one } = await twoWorkersReporting(t)
  // the incarnation forked in its place, stopped at once (long before it could have said anything)
  const next = await killedAndForked(t, child.pid!, one)
  process.kill(next, 'SIGSTOP')
  const stoppedAt = Date.now()
  t.teardown(() => { try { process.kill(next, 'SIGCONT') } catch {} })
  const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true } catch { return false } }
  t.true(await eventually(() => !alive(next), SILENT_START_MS + 10000), out())
  t.true(Date.now() - stoppedAt >= SILENT_START_MS - 1000, 'not before SILENT_START_MS')
  t.regex(out(), /worker sent nothing in the 60 s since it was forked/)
  // forked again: a third incarnation serves
  t.true(await eventually(() => { try { const p = workerPid(child.pid!, 1); return p !== one && p !== next } catch { return false } }, 20000), 'forked again')
  t.true(await eventually(async () => {
    for (let i = 0; i < 6; i++) if ((await fetch(`http://127.0.0.1:${port}/health`, { headers: { Connection: 'close' } }).catch(() => null))?.status !== 200) return false
    return true
  }, 20000))
})

/**
 * Worker `pid` (all its threads) on the first core it may run on, at the idle policy, beside one
 * process at nice -20 that never sleeps, for `ms`: it is runnable (its report timer) but gets a
 * core for a few ms a minute, as a worker amid a broadcast to a million subscribers on 2 cores gets
 * too little. Resolves, once the hog is gone, with the worker given back its policy and cores.
 */
async function starve (t: ExecutionContext, pid: number, ms: number): Promise<{ over: Promise<void>, hog: ChildProcess }> {
  t.is(process.getuid?.(), 0, 'needs root (a process at nice -20), as `npm test` is run (README)')
  // the cores it may run on (a container's cpuset need not start at 0), to pin it to the first and give them back
  const cores = /^Cpus_allowed_list:\s*(\S+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]!
  const first = cores.split(/[-,]/)[0]!
  const hog = spawn('taskset', ['-c', first, 'nice', '-n', '-20', process.execPath, '-e', `const end = Date.now() + ${ms}; while (Date.now() < end) {}`], { stdio: 'ignore' })
  t.teardown(() => { if (hog.exitCode === null && hog.signalCode === null) hog.kill('SIGKILL') })
  await once(hog, 'spawn')
  const exited = once(hog, 'exit')
  execFileSync('taskset', ['-a', '-p', '-c', first, String(pid)], { stdio: 'ignore' })
  execFileSync('chrt', ['-a', '-i', '-p', '0', String(pid)], { stdio: 'ignore' })
  const over = exited.then(() => {
    // (a worker ended meanwhile has nothing to give back)
    try {
      execFileSync('chrt', ['-a', '-o', '-p', '0', String(pid)], { stdio: 'ignore' })
      execFileSync('taskset', ['-a', '-p', '-c', cores, String(pid)], { stdio: 'ignore' })
    } catch {}
  })
  return { over, hog }
}

/**
 * Process `pid` (all its threads) held to 1 ms of CPU a second for `ms` by a CPU cgroup's quota, as a
 * container's quota throttles it: runnable but almost never on a core, and the other processes of
 * the host unaffected (a test that runs beside others for a minute must not take a core from them,
 * as `starve`'s hog does). Resolves, once the time is over, with the process back in the root group.
 */
async function throttle (t: ExecutionContext, pid: number, ms: number): Promise<{ over: Promise<void> }> {
  t.is(process.getuid?.(), 0, 'needs root (a CPU cgroup), as `npm test` is run (README)')
  // cgroup v1's cpu controller, or v2's unified hierarchy with the cpu controller
  const v1 = '/sys/fs/cgroup/cpu'
  const v2 = '/sys/fs/cgroup'
  const isV1 = existsSync(`${v1}/cpu.cfs_quota_us`)
  if (!isV1 && !readFileSync(`${v2}/cgroup.subtree_control`, 'utf8').includes('cpu')) throw new Error('no CPU cgroup controller to throttle with')
  const root = isV1 ? v1 : v2
  const dir = join(root, `parkline-test-${process.pid}-${pid}`)
  mkdirSync(dir)
  const quota = (on: boolean): void => {
    if (isV1) {
      writeFileSync(join(dir, 'cpu.cfs_period_us'), '1000000')
      writeFileSync(join(dir, 'cpu.cfs_quota_us'), on ? '1000' : '-1')
    } else writeFileSync(join(dir, 'cpu.max'), on ? '1000 1000000' : 'max 1000000')
  }
  let released = false
  const release = (): void => {
    if (released) return
    released = true
    try { quota(false) } catch {}
    try { writeFileSync(join(root, 'cgroup.procs'), String(pid)) } catch {}
    try { rmdirSync(dir) } catch {}
  }
  t.teardown(release)
  quota(true)
  writeFileSync(join(dir, 'cgroup.procs'), String(pid))
  const over = new Promise<void>((resolve) => setTimeout(() => { release(); resolve() }, ms))
  return { over }
}

test.serial('a worker starved of a core from its fork (throttled by a CPU quota, as on a host busy with many starting workers) is not ended at SILENT_START_MS; it starts and serves once it runs', async (t) => {
  t.timeout(SILENT_START_MS + 60000)
  const { port, child, out, one } = await twoWorkersReporting(t)
  const next = await killedAndForked(t, child.pid!, one)
  const { over } = await throttle(t, next, SILENT_START_MS + 12000)
  t.true(await eventually(() => /worker sent nothing in the 60 s since it was forked, waiting for a core/.test(out()), SILENT_START_MS + 10000), out())
  t.notRegex(out(), /since it was forked \(stuck/)
  await over
  // it runs again: the same process starts, and serves
  t.true(await eventually(async () => {
    for (let i = 0; i < 6; i++) if ((await fetch(`http://127.0.0.1:${port}/health`, { headers: { Connection: 'close' } }).catch(() => null))?.status !== 200) return false
    return true
  }, 30000))
  t.is(workerPid(child.pid!, 1), next, 'not ended')
  t.notRegex(out(), /ending it/)
})

test.serial('a worker silent for SILENT_MS because it waited for a core the whole time (a host with more busy processes than cores) is not ended; it reports and serves once it runs again', async (t) => {
  t.timeout(90000)
  const { port, child, out, one } = await twoWorkersReporting(t)
  const { over } = await starve(t, one, SILENT_MS + 10000)
  t.true(await eventually(() => /worker sent nothing for 10 s, waiting for a core most of that time/.test(out()), SILENT_MS + 8000), out())
  t.is(workerPid(child.pid!, 1), one, 'not ended')
  t.notRegex(out(), /ending it/)
  await over
  // it runs again: the same process serves a subscriber and a publish
  const s = await SseClient.connectOnWorker(port, '/sub/starved', 1)
  t.teardown(() => s.close())
  await s.until(() => s.comments.includes(': hi'))
  t.is((await publish(`http://127.0.0.1:${port}`, 'starved', 'back')).status, 201)
  await s.until(() => s.events.some((e) => e.data === 'back'))
  t.is(workerPid(child.pid!, 1), one)
  t.notRegex(out(), /ending it/)
})

/** A channel worker 0 owns (its name starting with `prefix`), with a subscriber on worker 1: each message goes over the mesh to it. */
async function replicaOnOne (t: ExecutionContext, port: number, prefix: string): Promise<{ key: string, s: SseClient }> {
  let key = prefix
  for (let i = 0; ownerOf(key, 2) !== 0; i++) key = `${prefix}${i}`
  const s = await SseClient.connectOnWorker(port, `/sub/${key}`, 1)
  t.teardown(() => s.close())
  await s.until(() => s.comments.includes(': hi'))
  return { key, s }
}

test.serial('a worker starved of a core while another writes to it over the mesh is reported, judged by its silence and not ended; it gets every message once it runs again', async (t) => {
  t.timeout(90000)
  const { port, child, out, one } = await twoWorkersReporting(t)
  const { key, s } = await replicaOnOne(t, port, 'meshstarved')
  const [publisher] = await connectionsOnWorker(t, port, 0, 1)
  let answers = ''
  publisher!.on('data', (d: Buffer) => { answers += d.toString('latin1') })
  const { over } = await starve(t, one, SILENT_MS + 12000)
  // silent to the primary by now; then 4 MB for it, more than the kernel holds for a Unix socket:
  // the rest waits in worker 0, which finds worker 1 took none of it over a whole check
  await new Promise((resolve) => setTimeout(resolve, 2500))
  for (let i = 0; i < 8; i++) {
    const body = Buffer.alloc(500_000, 0x61 + i)
    publisher!.write(Buffer.concat([Buffer.from(`POST /pub/${key} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${body.length}\r\n\r\n`), body]))
  }
  t.true(await eventually(() => /"worker":1,[^\n]*"reportedBy":0,[^\n]*worker took nothing from a mesh link over a check and sends nothing either/.test(out()), 15000), out())
  t.true(await eventually(() => /waiting for a core most of that time/.test(out()), SILENT_MS + 8000), out())
  t.is(workerPid(child.pid!, 1), one, 'not ended')
  t.notRegex(out(), /ending it/)
  await over
  // it runs again: every message reaches its subscriber, in order, once each
  await s.until(() => s.events.length >= 8, 20000)
  t.deepEqual(s.events.map((e) => e.data.length), Array(8).fill(500_000))
  t.deepEqual(s.events.map((e) => e.data[0]), 'abcdefgh'.split(''))
  t.true(await eventually(() => (answers.match(/HTTP\/1\.1 201 /g) ?? []).length === 8, 10000), answers.slice(0, 200))
  t.is(workerPid(child.pid!, 1), one)
  t.notRegex(out(), /ending it/)
})

test.serial('a worker starved of a core whose queue on a peer fills (64 MiB written it did not read, then 64 MiB queued) is ended at once, starved or not; every publish is answered and the channel works after', async (t) => {
  t.timeout(120000)
  const { port, child, out, one } = await twoWorkersReporting(t)
  const { key } = await replicaOnOne(t, port, 'meshfull')
  // 240 publishers of 1 MB each on the owner itself (none waits on another worker's answer)
  const sockets = await connectionsOnWorker(t, port, 0, 240)
  let answers = ''
  for (const c of sockets) c.on('data', (d: Buffer) => { answers += d.toString('latin1') })
  // starved (its silence is let pass up to 60 s), so only its queue can end it
  const { hog } = await starve(t, one, 60000)
  const body = Buffer.alloc(1_000_000, 0x61)
  const head = Buffer.from(`POST /pub/${key} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${body.length}\r\n\r\n`)
  // in waves, so the link has paused (past the backlog cap) before the rest queues
  for (let i = 0; i < sockets.length; i += 20) {
    for (const c of sockets.slice(i, i + 20)) c.write(Buffer.concat([head, body]))
    await new Promise((resolve) => setTimeout(resolve, 300))
  }
  t.true(await eventually(() => /"worker":1,[^\n]*"reportedBy":0,[^\n]*worker took nothing from a mesh link until its queue there was full; ending it/.test(out()), 50000), out())
  t.notRegex(out(), /worker sent nothing for 10 s \(/)
  // (killed, it still needs a core to exit: the hog goes)
  hog.kill('SIGKILL')
  const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true } catch { return false } }
  t.true(await eventually(() => !alive(one), 20000), out())
  // every publish is answered, and the channel works once worker 1 is back
  const statuses = (): string[] => (answers.match(/HTTP\/1\.1 \d{3} /g) ?? []).map((x) => x.slice(9, 12))
  t.true(await eventually(() => statuses().length === 240, 20000), `240 answers: ${statuses().join(',')}`)
  t.deepEqual(statuses().filter((x) => x !== '201' && x !== '202'), [])
  t.true(await eventually(() => { try { return workerPid(child.pid!, 1) !== one } catch { return false } }, 20000), 'forked again')
  let again: SseClient | null = null
  t.teardown(() => again?.close())
  t.true(await eventually(async () => {
    again = await SseClient.connectOnWorker(port, `/sub/${key}`, 1).catch(() => null)
    return again !== null
  }, 20000), 'the new worker 1 serves')
  const sub = again!
  await sub.until(() => sub.comments.includes(': hi'))
  t.is((await publish(`http://127.0.0.1:${port}`, key, 'after')).status, 201)
  await sub.until(() => sub.events.some((e) => e.data === 'after'), 20000)
})

test.serial('SIGTERM to the whole process group (systemctl stop, Ctrl-C): the workers drain, and every subscriber gets the 503 end', async (t) => {
  t.timeout(60000)
  const { port, child } = await startCluster(t, 2, 2, true)
  const subs: SseClient[] = []
  for (const w of [0, 1, 0, 1]) {
    const s = await SseClient.connectOnWorker(port, '/sub/drained', w)
    t.teardown(() => s.close())
    await s.until(() => s.comments.includes(': hi'))
    subs.push(s)
  }
  // as systemd (KillMode=control-group) and a terminal's Ctrl-C do: every process of the group,
  // and then the primary forwards it to its workers again
  process.kill(-child.pid!, 'SIGTERM')
  for (const s of subs) await s.waitClosed(20000)
  for (const [i, s] of subs.entries()) t.true(s.comments.some((c) => c.startsWith(':503:')), `subscriber ${i} got the drain's end: ${JSON.stringify(s.comments)}`)
  const [code] = await once(child, 'exit') as [number | null]
  t.is(code, 0)
})

test.serial('a worker that cannot be forked (the user\'s process limit reached): said, and tried again as a failed start; past FAILED_STARTS the primary stops, instead of serving on without it', async (t) => {
  t.timeout(60000)
  t.is(process.getuid?.(), 0, 'needs root (it runs the server as another user, whose process limit it lowers), as `npm test` is run (README)')
  const port = await freePort()
  // a user of its own: the limit counts that user's processes (root's would not be limited)
  const child = spawn('setpriv', ['--reuid=61234', '--regid=61234', '--clear-groups', NODE, 'bin/parkline.ts', 'serve', '--workers', '2', '--port', String(port), '--host', '127.0.0.1', '--log-level', 'warn', '--drain-window', '0'], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  let out = ''
  child.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr!.on('data', (d: Buffer) => { out += d.toString() })
  t.true(await eventually(async () => workerPids(child.pid!).length === 2 && (await fetch(`http://127.0.0.1:${port}/health`, { headers: { Connection: 'close' } }).catch(() => null))?.status === 200, START_MS), out)
  // (setpriv execs node: the primary is the child itself)
  execFileSync('setpriv', ['--reuid=61234', '--regid=61234', '--clear-groups', 'prlimit', '--pid', String(child.pid), '--nproc=1:1'])
  process.kill(workerPid(child.pid!, 1), 'SIGKILL')
  t.is(await exitWithin(child, 30000), 1, out)
  t.regex(out, /worker could not be forked/)
  t.regex(out, /"error":"spawn \S+ EAGAIN"/)
  t.regex(out, /worker exited 5 times in a row before it listened: stopping/)
  t.deepEqual(workerPids(child.pid!), [])
})

test.serial('--workers 2 on a port another program holds: the primary says why and exits non-zero, instead of forking workers for ever', async (t) => {
  t.timeout(60000)
  const holder = net.createServer()
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve))
  t.teardown(() => holder.close())
  const port = (holder.address() as net.AddressInfo).port
  const { child, out } = spawnServe(t, ['--workers', '2', '--port', String(port), '--host', '127.0.0.1', '--log-level', 'warn'])
  // 1, not 2: nothing in its configuration is wrong, and a later start may find the port free
  t.is(await exitWithin(child, 30000), 1, `the primary exited 1 (output: ${out()})`)
  t.regex(out(), /EADDRINUSE/)
  t.regex(out(), /exited before it could listen/)
  t.notRegex(out(), /parkline listening on/)
})

test.serial('a worker killed: /health answers 503 `worker unavailable` on the others until it is forked again, then 200', async (t) => {
  t.timeout(60000)
  const { base, child } = await startCluster(t)
  t.is((await fetch(`${base}/health`)).status, 200)
  process.kill(workerPid(child.pid!, 1), 'SIGKILL')
  let body = ''
  t.true(await eventually(async () => {
    const r = await fetch(`${base}/health`, { headers: { Connection: 'close' } }).catch(() => null)
    body = r === null ? '' : await r.text()
    return r?.status === 503
  }, 5000), 'a load balancer sees the node refuse new subscribers')
  t.is(body, 'worker unavailable\n')
  t.true(await eventually(async () => (await fetch(`${base}/health`, { headers: { Connection: 'close' } }).catch(() => null))?.status === 200, START_MS), '200 once the worker is back')
})

test('the crash-loop backoff: 100 ms more per quick death in a row, up to 5 s; a worker that lived STABLE_MS starts the count again', (t) => {
  // a death just after a second began: the backoff, not the wait for the next second, decides
  const at = 1_700_000_000_050
  t.is(restartDelay(0, at), 951, 'no backoff: only the wait for a later second')
  t.is(restartDelay(3, 1_700_000_000_950), 300)
  t.is(restartDelay(12, at), 1200)
  t.is(restartDelay(500, at), 5000)
  let quick = 0
  for (let i = 0; i < 60; i++) quick = quickDeathsAfter(quick, 200)
  t.is(quick, 60)
  t.is(restartDelay(quick, at), 5000)
  t.is(quickDeathsAfter(quick, STABLE_MS), 0, 'weeks of rare crashes do not keep the 5 s wait')
  t.is(quickDeathsAfter(quick, STABLE_MS - 1), 61)
})

test.serial('a worker killed twice in a row: each restart is logged with its backoff, the second one longer', async (t) => {
  t.timeout(60000)
  const port = await freePort()
  const { child, out } = spawnServe(t, ['--workers', '2', '--port', String(port), '--host', '127.0.0.1', '--log-level', 'warn'])
  // whole lines only (the last may still be arriving)
  const restarts = (): Array<{ quickDeaths: number, delayMs: number, restarts: number }> =>
    out().slice(0, out().lastIndexOf('\n')).split('\n').filter((l) => l.includes('worker died; forking it again')).map((l) => JSON.parse(l))
  const healthy = async (): Promise<boolean> => (await fetch(`http://127.0.0.1:${port}/health`, { headers: { Connection: 'close' } }).catch(() => null))?.status === 200
  t.true(await eventually(async () => workerPids(child.pid!).length === 2 && await healthy(), 20000))
  for (let n = 1; n <= 2; n++) {
    const before = workerPid(child.pid!, 1)
    process.kill(before, 'SIGKILL')
    t.true(await eventually(() => restarts().length === n, 10000))
    t.true(await eventually(async () => { try { return workerPid(child.pid!, 1) !== before && await healthy() } catch { return false } }, 20000))
  }
  const [first, second] = restarts()
  t.like(first, { quickDeaths: 1, restarts: 1 })
  t.like(second, { quickDeaths: 2, restarts: 2 })
  t.true(first!.delayMs >= 100 && second!.delayMs >= 200, JSON.stringify(restarts()))
})

test.serial('a second `serve --workers 2` on the port a running deployment holds: refused before it forks, exit 1; the first keeps serving alone', async (t) => {
  t.timeout(60000)
  const { base, port, child } = await startCluster(t)
  // at info level, so that a fork would show ("worker forked")
  const second = spawnServe(t, ['--workers', '2', '--port', String(port), '--host', '127.0.0.1', '--log-level', 'info'])
  t.is(await exitWithin(second.child, 30000), 1, `the second primary exited 1 (output: ${second.out()})`)
  t.regex(second.out(), new RegExp(`another parkline with workers already serves 127\\.0\\.0\\.1:${port}`))
  t.notRegex(second.out(), /worker forked/)
  // every connection still lands on the first deployment: one channel, one count
  const c = await SseClient.connect(port, '/sub/one-deployment')
  await c.until(() => c.comments.includes(': hi'))
  for (let i = 0; i < 6; i++) {
    const r = await publish(base, 'one-deployment', `m${i}`, { Connection: 'close' })
    t.is(r.status, 201)
  }
  t.deepEqual((await c.waitEvents(6)).map((e) => e.data), ['m0', 'm1', 'm2', 'm3', 'm4', 'm5'])
  c.close()
  t.is(workerPids(child.pid!).length, 2)
})

test.serial('a worker forked again takes the options the deployment started with, not a config file broken since', async (t) => {
  t.timeout(90000)
  const dir = mkdtempSync(join(tmpdir(), 'pk-conf-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'parkline.json')
  writeFileSync(file, JSON.stringify({ statusPath: '/started-with' }))
  const port = await freePort()
  const child = spawn(NODE, ['bin/parkline.ts', 'serve', '--config', file, '--workers', '2', '--port', String(port), '--host', '127.0.0.1', '--log-level', 'error'], { stdio: 'ignore' })
  t.teardown(async () => { if (child.exitCode === null) { child.kill('SIGTERM'); await once(child, 'exit') } })
  const base = `http://127.0.0.1:${port}`
  // every worker answers at the path the file named: a run across fresh connections
  const allAt = async (path: string): Promise<boolean> => {
    for (let i = 0; i < 8; i++) {
      const r = await fetch(`${base}${path}`, { headers: { Connection: 'close' } }).catch(() => null)
      if (r?.status !== 200) return false
    }
    return true
  }
  t.true(await eventually(async () => workerPids(child.pid!).length === 2 && await allAt('/started-with'), 20000))
  writeFileSync(file, '{ "statusPath": "/edited", ') // edited, and broken, while the deployment runs
  const before = workerPid(child.pid!, 1)
  process.kill(before, 'SIGKILL')
  t.true(await eventually(async () => { try { return workerPid(child.pid!, 1) !== before && await allAt('/health') } catch { return false } }, 30000), 'the worker came back')
  t.true(await allAt('/started-with'))
  t.is(child.exitCode, null)
})

/** A connection that landed on worker `worker` (its /status said so), and what it received after that. */
interface RawConnection { socket: net.Socket, got: () => Buffer, wait: (ok: (b: Buffer) => boolean, ms?: number) => Promise<boolean> }

async function rawOnWorker (port: number, worker: number): Promise<RawConnection> {
  for (let i = 0; i < 200; i++) {
    const socket = net.connect(port, '127.0.0.1')
    socket.on('error', () => {})
    await once(socket, 'connect')
    let buf = Buffer.alloc(0)
    let status: string | null = null
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      if (status !== null) return
      const end = buf.indexOf('\r\n\r\n')
      if (end === -1) return
      const len = Number(/content-length: (\d+)/i.exec(buf.toString('latin1', 0, end))?.[1] ?? 0)
      if (buf.length < end + 4 + len) return
      status = buf.toString('latin1', end + 4, end + 4 + len)
      buf = buf.subarray(end + 4 + len)
    })
    socket.write('GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
    if (await eventually(() => status !== null || socket.destroyed, 2000) && status !== null && new RegExp(`^worker: ${worker}$`, 'm').test(status)) {
      return { socket, got: () => buf, wait: async (ok, ms = 10000) => await eventually(() => ok(buf), ms) }
    }
    socket.destroy()
  }
  throw new Error(`no connection reached worker ${worker}`)
}

/** Channels owned by workers 1 and 2 of 3 (the subscriber goes on worker 0). */
function fencedPair (prefix: string): [string, string] {
  let a = `${prefix}a`
  for (let i = 0; ownerOf(a, 3) !== 1; i++) a = `${prefix}a${i}`
  let b = `${prefix}b`
  for (let i = 0; ownerOf(b, 3) !== 2; i++) b = `${prefix}b${i}`
  return [a, b]
}

/** Three workers; on worker 0 a raw connection that sent `request(/sub/a,b)`, a owned by worker 1 and b by worker 2. */
async function fencedSubscriber (t: ExecutionContext, prefix: string, request: (path: string) => string): Promise<{ port: number, child: ChildProcess, a: string, b: string, c: Awaited<ReturnType<typeof rawOnWorker>> }> {
  const { port, child } = await startCluster(t, 3)
  const [a, b] = fencedPair(prefix)
  const c = await rawOnWorker(port, 0)
  t.teardown(() => c.socket.destroy())
  c.socket.write(request(`/sub/${a},${b}`))
  return { port, child, a, b, c }
}

/** Worker 1 stopped into a second it has not reached, b1 published by worker 2: `held` must stay true for 500 ms, then b1 arrives on SIGCONT. */
async function fenceRound (t: ExecutionContext, port: number, child: ChildProcess, b: string, held: () => boolean, arrived: () => Promise<boolean>): Promise<void> {
  // the publisher's connection reaches worker 2 before worker 1 stops: looking for it afterwards, a
  // connection the kernel gives the stopped worker waits a second each, and a worker silent for
  // long is ended by the primary (a busy host made that happen)
  const pub = await rawOnWorker(port, 2)
  t.teardown(() => pub.socket.destroy())
  const one = workerPid(child.pid!, 1)
  process.kill(one, 'SIGSTOP')
  t.teardown(() => { try { process.kill(one, 'SIGCONT') } catch {} })
  await new Promise((resolve) => setTimeout(resolve, 1100))
  pub.socket.write(`POST /pub/${b} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\nb1`)
  t.true(await pub.wait((buf) => /^HTTP\/1\.1 \d+ /.test(buf.toString('latin1'))))
  t.regex(pub.got().toString('latin1'), /^HTTP\/1\.1 201 /)
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.true(held(), 'b1 waits while worker 1 is behind')
  process.kill(one, 'SIGCONT')
  t.true(await arrived(), 'b1 arrives once worker 1 is past the second')
}

test.serial('multiplexed long-poll over three owners: a parked poll is not answered with a message while the owner of another of its channels is behind, then is', async (t) => {
  t.timeout(60000)
  const { port, child, a, b, c } = await fencedSubscriber(t, 'lf', (path) => `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.is(await publishOnWorker(port, b, 'b0', 2), 201)
  t.true(await c.wait((buf) => buf.includes('b0')))
  const head = c.got().toString('latin1')
  const lm = /\r\nlast-modified: ([^\r]+)/i.exec(head)?.[1]
  const etag = /\r\netag: ([^\r]+)/i.exec(head)?.[1]
  t.truthy(lm)
  t.truthy(etag)
  const seen = c.got().length
  // the next poll, parked before b1 is published
  c.socket.write(`GET /sub/${a},${b} HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-Modified-Since: ${lm!}\r\nIf-None-Match: ${etag!}\r\n\r\n`)
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.is(c.got().length, seen, 'parked')
  await fenceRound(t, port, child, b, () => c.got().length === seen, async () => await c.wait((buf) => buf.subarray(seen).includes('b1')))
  t.regex(c.got().subarray(seen).toString('latin1'), /^HTTP\/1\.1 200 /)
})

test.serial('multiplexed WebSocket over three owners: a message waits while the owner of another of its channels is behind, then arrives', async (t) => {
  t.timeout(60000)
  const { port, child, b, c } = await fencedSubscriber(t, 'wf', (path) => `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`)
  t.true(await c.wait((buf) => buf.includes('\r\n\r\n')))
  t.regex(c.got().toString('latin1'), /^HTTP\/1\.1 101 /)
  t.is(await publishOnWorker(port, b, 'b0', 2), 201)
  t.true(await c.wait((buf) => buf.includes('b0')))
  const seen = c.got().length
  await fenceRound(t, port, child, b, () => c.got().length === seen, async () => await c.wait((buf) => buf.subarray(seen).includes('b1')))
  // one unmasked text frame
  t.is(c.got()[seen], 0x81)
})

test.serial('with Redis, a second `serve --workers 2` on the same port joins (a rolling restart): both deployments share the channels', async (t) => {
  t.timeout(90000)
  const redis = await startRedis(t)
  const port = await freePort()
  const args = ['bin/parkline.ts', 'serve', '--workers', '2', '--port', String(port), '--host', '127.0.0.1', '--log-level', 'error', '--drain-window', '0', '--redis-url', `redis://127.0.0.1:${redis.port}`]
  const first = spawn(NODE, args, { stdio: 'ignore' })
  t.teardown(async () => { if (first.exitCode === null) { first.kill('SIGTERM'); await once(first, 'exit') } })
  t.true(await eventually(async () => workerPids(first.pid!).length === 2 && (await fetch(`http://127.0.0.1:${port}/health`, { headers: { Connection: 'close' } }).catch(() => null))?.status === 200, START_MS))
  const second = spawn(NODE, args, { stdio: 'ignore' })
  t.teardown(async () => { if (second.exitCode === null) { second.kill('SIGTERM'); await once(second, 'exit') } })
  t.true(await eventually(() => workerPids(second.pid!).length === 2, 20000), 'the second deployment forked its workers')
  // stop the first: the second serves the channel, its buffer included (Redis keeps it)
  await publish(`http://127.0.0.1:${port}`, 'rolled', 'before')
  first.kill('SIGTERM')
  await once(first, 'exit')
  t.is(second.exitCode, null)
  t.true(await eventually(async () => (await fetch(`http://127.0.0.1:${port}/health`, { headers: { Connection: 'close' } }).catch(() => null))?.status === 200, START_MS))
  const c = await SseClient.connect(port, '/sub/rolled', { 'Last-Event-ID': '0:0' })
  t.teardown(() => c.close())
  t.deepEqual((await c.waitEvents(1)).map((e) => e.data), ['before'])
})

for (const workers of ['1', '2']) {
  test.serial(`SIGTERM to an idle server (--workers ${workers}, drainWindow 120 s): nothing to spread, it closes and exits 0 a quiet second later, not at the window's end`, async (t) => {
    t.timeout(60000)
    const port = await freePort()
    const { child, out } = spawnServe(t, ['--workers', workers, '--port', String(port), '--host', '127.0.0.1', '--log-level', 'info', '--drain-window', '120'])
    t.true(await eventually(async () => (await fetch(`http://127.0.0.1:${port}/health`, { headers: { Connection: 'close' } }).catch(() => null))?.status === 200, START_MS))
    // a subscriber that came and went: the table is empty again
    const s = await SseClient.connect(port, '/sub/idle')
    await s.until(() => s.comments.includes(': hi'))
    s.close()
    t.true(await eventually(async () => ((await info(`http://127.0.0.1:${port}`, 'idle')).json?.subscribers ?? 0) === 0, 5000))
    child.kill('SIGTERM')
    // the test's own timeout (60 s) is half the window: only an early close passes
    const code = await exitedWithOutput(child)
    t.is(code, 0)
    t.regex(out(), /drain finished/)
  })
}

test.serial('SIGTERM with publishers still publishing to an idle server: it serves them out, and stops once they stop', async (t) => {
  t.timeout(60000)
  const port = await freePort()
  const child = spawn(NODE, ['bin/parkline.ts', 'serve', '--workers', '1', '--port', String(port), '--host', '127.0.0.1', '--log-level', 'error', '--drain-window', '120'], { stdio: 'ignore' })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  const base = `http://127.0.0.1:${port}`
  t.true(await eventually(async () => (await fetch(`${base}/health`, { headers: { Connection: 'close' } }).catch(() => null))?.status === 200, START_MS))
  child.kill('SIGTERM')
  const statuses: number[] = []
  for (let i = 0; i < 15; i++) {
    statuses.push((await publish(base, 'still-used', `m${i}`, { Connection: 'close' }).catch(() => ({ status: 0 }))).status)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  t.deepEqual(statuses, Array<number>(15).fill(202), 'every publish during the drain was answered')
  t.is(child.exitCode, null)
  const [code] = await once(child, 'exit') as [number | null]
  t.is(code, 0)
})

test.serial('an in-memory deployment drains as one: an idle worker stays while another still has subscribers on channels it owns, and all stop together once they are gone', async (t) => {
  t.timeout(90000)
  const { port, child } = await startCluster(t, 2, 120)
  let ch = 'owned-by-0'
  for (let i = 0; ownerOf(ch, 2) !== 0; i++) ch = `owned-by-0-${i}`
  // five subscribers on worker 1 of a channel worker 0 owns; worker 0 holds none
  const subs: SseClient[] = []
  for (let i = 0; i < 5; i++) {
    const s = await SseClient.connectOnWorker(port, `/sub/${ch}`, 1)
    t.teardown(() => s.close())
    await s.until(() => s.comments.includes(': hi'))
    subs.push(s)
  }
  const owner = workerPid(child.pid!, 0)
  child.kill('SIGTERM')
  await new Promise((resolve) => setTimeout(resolve, 3000))
  // each subscriber's wave is a random moment of the 120 s window: some are still open
  const open = subs.filter((s) => !s.closed)
  t.true(open.length > 0)
  t.notThrows(() => process.kill(owner, 0), 'the idle owner is still there')
  // (on whichever worker takes the connection: while they drain, answers close their connection,
  // so one cannot be steered to a worker by its /status first; from either, the message needs the
  // owner, worker 0)
  t.is((await publish(`http://127.0.0.1:${port}`, ch, 'during the drain', { Connection: 'close' })).status, 201)
  for (const s of open) t.deepEqual((await s.waitEvents(1)).map((e) => e.data), ['during the drain'])
  for (const s of subs) s.close()
  const [code] = await once(child, 'exit') as [number | null]
  t.is(code, 0)
})

test.serial('a refused configuration exits 2, which the shipped systemd unit does not restart: one process, the primary, and a worker that parses a key; a held port exits 1', async (t) => {
  t.timeout(60000)
  const port = String(await freePort())
  const cases: Array<[string, string[], RegExp]> = [
    ['one process, a short jwtSecret', ['--workers', '1', '--port', port, '--jwt-secret', 'short'], /jwtSecret must be 32 bytes or more/],
    ['the command line, an unknown flag', ['--workers', '2', '--port', port, '--no-such-option', '1'], /unknown flag --no-such-option/],
    ['the primary, a prefix that is no path', ['--workers', '2', '--port', port, '--pub-prefix', 'pub'], /pubPrefix must start and end with "\/"/],
    // a key is parsed where the server is built: in each worker, whose status the primary carries
    ['a worker, a jwtPublicKey that is no key', ['--workers', '2', '--port', port, '--jwt-public-key', 'not-a-key'], /jwtPublicKey: not a PEM key/]
  ]
  for (const [name, args, why] of cases) {
    const p = spawnServe(t, [...args, '--host', '127.0.0.1', '--log-level', 'warn'])
    t.is(await exitWithin(p.child, 30000), 2, `${name}: ${p.out()}`)
    t.regex(p.out(), why, name)
    t.notRegex(p.out(), /parkline listening on/, name)
  }
  // and a port another program holds is no configuration fault: 1, which systemd retries
  const holder = net.createServer()
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve))
  t.teardown(() => holder.close())
  const held = spawnServe(t, ['--workers', '1', '--port', String((holder.address() as net.AddressInfo).port), '--host', '127.0.0.1', '--log-level', 'warn'])
  t.is(await exitWithin(held.child, 30000), 1, held.out())
  t.regex(held.out(), /EADDRINUSE/)
  const unit = readFileSync('conf/systemd/parkline.service', 'utf8')
  t.regex(unit, /^Restart=always$/m)
  t.regex(unit, /^RestartPreventExitStatus=2$/m)
})

test.serial('a deployment on Redis and one without on the same port refuse each other, whichever starts first', async (t) => {
  t.timeout(90000)
  const redis = await startRedis(t)
  for (const first of ['memory', 'redis'] as const) {
    const port = await freePort()
    const args = (store: 'memory' | 'redis', level: string): string[] => ['--workers', '2', '--port', String(port), '--host', '127.0.0.1', '--log-level', level, '--drain-window', '0',
      ...(store === 'redis' ? ['--redis-url', `redis://127.0.0.1:${redis.port}`] : [])]
    const a = spawn(NODE, ['bin/parkline.ts', 'serve', ...args(first, 'error')], { stdio: 'ignore' })
    t.teardown(async () => { if (a.exitCode === null) { a.kill('SIGTERM'); await once(a, 'exit') } })
    t.true(await eventually(async () => workerPids(a.pid!).length === 2 && (await fetch(`http://127.0.0.1:${port}/health`, { headers: { Connection: 'close' } }).catch(() => null))?.status === 200, START_MS))
    const other = first === 'memory' ? 'redis' : 'memory'
    const b = spawnServe(t, args(other, 'info'))
    t.is(await exitWithin(b.child, 30000), 1, b.out())
    t.regex(b.out(), first === 'memory' ? /a parkline deployment without Redis serves port/ : /a parkline deployment on Redis serves port/)
    t.notRegex(b.out(), /worker forked/)
    a.kill('SIGTERM')
    await once(a, 'exit')
  }
})

test.serial('the owner of a channel dies while another worker waits for its buffer: the waiting subscriber is ended (:503:), and a multiplexed resume after the restart still signals what the owner lost', async (t) => {
  const { base, port, child } = await startCluster(t)
  // x owned by worker 0 (lost with it), y by worker 1 (kept)
  let x = 'wx'
  for (let i = 0; ownerOf(x, 2) !== 0; i++) x = `wx${i}`
  let y = 'wy'
  for (let i = 0; ownerOf(y, 2) !== 1; i++) y = `wy${i}`
  await publish(base, x, 'x1')
  await publish(base, y, 'y1')
  // read on the owner of x: worker 1 holds no copy of x
  const reader = await SseClient.connectOnWorker(port, `/sub/${x},${y}?last_event_id=0:0`, 0)
  const read = await reader.waitEvents(2)
  t.deepEqual(read.map((e) => e.data), ['x1', 'y1'])
  const last = read[1]!.id!
  reader.close()
  // never read, and lost with the owner
  await publish(base, x, 'x2')
  // worker 0 stops; on worker 1 a subscriber of x waits for its buffer ('load'); then worker 0 dies
  const w1 = await rawOnWorker(port, 1)
  t.teardown(() => w1.socket.destroy())
  const ownerPid = workerPid(child.pid!, 0)
  process.kill(ownerPid, 'SIGSTOP')
  t.teardown(() => { try { process.kill(ownerPid, 'SIGCONT') } catch {} })
  const start = w1.got().length
  w1.socket.write(`GET /sub/${x} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`)
  // nothing for it while the owner is stopped
  t.false(await w1.wait((b) => b.length > start, 500))
  process.kill(ownerPid, 'SIGKILL')
  // (an EventSource is told as at the connection limit: 200, retry:, :503:)
  t.true(await w1.wait((b) => /^:503: /m.test(b.subarray(start).toString('latin1'))), w1.got().subarray(start).toString('latin1'))
  t.true(await eventually(() => { try { return workerPid(child.pid!, 0) !== ownerPid } catch { return false } }, 20000))
  // until the new worker 0 serves
  t.true(await eventually(async () => { try { (await rawOnWorker(port, 0)).socket.destroy(); return true } catch { return false } }, 20000))
  // y published after the restart; a resume from before it, on each worker, gets x's gap signal
  let status = 503
  for (let i = 0; i < 50 && status !== 201 && status !== 202; i++) {
    try { status = (await publish(base, y, 'y2', { Connection: 'close' })).status } catch {}
    if (status !== 201 && status !== 202) await new Promise((resolve) => setTimeout(resolve, 100))
  }
  t.true(status === 201 || status === 202, String(status))
  for (const worker of [0, 1]) {
    const resumed = await SseClient.connectOnWorker(port, `/sub/${x},${y}`, worker, { 'Last-Event-ID': last })
    t.teardown(() => resumed.close())
    const [y2] = await resumed.waitEvents(1)
    t.is(y2!.data, 'y2')
    const gaps = y2!.comments.filter((c) => c.startsWith(':parkline-gap ')).map((c) => JSON.parse(c.slice(':parkline-gap '.length)) as { requested: string })
    const at = gaps.map((g) => g.requested.slice(g.requested.indexOf(':') + 1).split(',').findIndex((p) => p.startsWith('[')))
    t.true(at.includes(0), `worker ${worker}: x's loss is signalled: ${JSON.stringify(y2)}`)
  }
})
