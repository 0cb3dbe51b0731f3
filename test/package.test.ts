// What users get is what ships: `npm pack`, then the tarball is installed with fastify@5 and
// @fastify/websocket from the registry into a new app outside the repository, and used there as a
// user would — ESM import on the test's Node and on Node 22, a strict `nodenext` TypeScript check,
// the packed `parkline` command, the host's hooks on every transport, both WebSocket plugins, and
// the facade across two nodes on Redis. Needs the npm registry (or npm's cache).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import test, { type ExecutionContext } from 'ava'
import WebSocket from 'ws'
import { startRedis } from './helpers/redis.ts'
import { SseClient, rawRequest } from './helpers/server.ts'
import { RawWs } from './helpers/websocket.ts'

const ROOT = path.resolve(import.meta.dirname, '..')
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm'
const TOKEN = { 'x-token': 'ok' }

interface Packed { dir: string, app: string, tarball: string, node22: string | null, node20: string }
let packed: Packed | null = null
let failure: string | null = null

function run (cmd: string, args: string[], cwd: string, timeout = 240_000): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout, env: { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' } })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) failed: ${r.status ?? r.signal}\n${r.stdout}\n${r.stderr}`)
  return r.stdout
}

test.before(async (t) => {
  t.timeout(300_000)
  try {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'parkline-pack-'))
    // prepack builds dist/ (tsc); the tarball is what `npm publish` would upload
    const out = JSON.parse(run(NPM, ['pack', '--json', '--pack-destination', dir], ROOT)) as Array<{ filename: string, files: Array<{ path: string }> }>
    const tarball = path.join(dir, out[0]!.filename)
    const files = out[0]!.files.map((f) => f.path)
    const ts = files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    if (ts.length > 0) throw new Error('TypeScript sources in the package: ' + ts.join(', '))
    const app = path.join(dir, 'app')
    mkdirSync(app)
    writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'host-app', private: true, type: 'module' }))
    run(NPM, ['install', '--prefer-offline', tarball, 'fastify@5', '@fastify/websocket@11', '@fastify/sse@0.6', '@types/node@24'], app)
    writeFileSync(path.join(app, 'app.mjs'), readFileSync(path.join(ROOT, 'test', 'package', 'app.mjs')))
    // Node 22 (the other maintained LTS line), from the registry's `node` package, kept apart
    let node22: string | null = null
    const n22 = path.join(dir, 'node22')
    mkdirSync(n22)
    writeFileSync(path.join(n22, 'package.json'), JSON.stringify({ name: 'node22', private: true }))
    run(NPM, ['install', '--prefer-offline', 'node@22'], n22)
    node22 = path.join(n22, 'node_modules', '.bin', 'node')
    // and Node 20, past its end of life, which the package refuses
    const n20 = path.join(dir, 'node20')
    mkdirSync(n20)
    writeFileSync(path.join(n20, 'package.json'), JSON.stringify({ name: 'node20', private: true }))
    run(NPM, ['install', '--prefer-offline', 'node@20'], n20)
    packed = { dir, app, tarball, node22, node20: path.join(n20, 'node_modules', '.bin', 'node') }
  } catch (err) {
    failure = (err as Error).message
  }
})

test.after.always(() => {
  if (packed !== null) rmSync(packed.dir, { recursive: true, force: true })
})

function ready (t: ExecutionContext): Packed {
  if (packed === null) t.fail('packing or installing failed: ' + failure)
  return packed!
}

/** The first group of `re` in what `proc` writes to stdout; an error with all it wrote at its exit, or past 20 s. */
async function outputMatch (proc: ChildProcess, re: RegExp, what: string): Promise<string> {
  let out = ''
  proc.stderr!.on('data', (d: Buffer) => { out += d.toString() })
  return await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start: ${out}`)), 20_000)
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      const m = re.exec(out)
      if (m !== null) { clearTimeout(timer); resolve(m[1]!) }
    })
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`${what} exited ${code}: ${out}`)) })
  })
}

interface HostApp { port: number, node: string, proc: ChildProcess }

async function startApp (t: ExecutionContext, p: Packed, env: Record<string, string> = {}, node = process.execPath): Promise<HostApp> {
  const proc = spawn(node, ['app.mjs'], { cwd: p.app, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL')
      await once(proc, 'exit')
    }
  })
  let out = ''
  proc.stderr.on('data', (d: Buffer) => { out += d.toString() })
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('host app did not start: ' + out)), 20_000)
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString()
      const nl = out.indexOf('\n')
      if (nl !== -1) { clearTimeout(timer); resolve(out.slice(0, nl)) }
    })
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`host app exited ${code}: ${out}`)) })
  })
  const { port, node: version } = JSON.parse(line) as { port: number, node: string }
  return { port, node: version, proc }
}

async function get (port: number, p: string, headers: Record<string, string> = {}): Promise<{ status: number, text: string }> {
  const r = await fetch(`http://127.0.0.1:${port}${p}`, { headers })
  return { status: r.status, text: await r.text() }
}

async function post (port: number, p: string, body: string, headers: Record<string, string> = TOKEN): Promise<{ status: number, text: string }> {
  const r = await fetch(`http://127.0.0.1:${port}${p}`, { method: 'POST', body, headers: { 'content-type': 'text/plain', ...headers } })
  return { status: r.status, text: await r.text() }
}

async function echo (port: number, text: string): Promise<string> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/echo`, { headers: TOKEN })
  await once(ws, 'open')
  ws.send(text)
  const [data] = await once(ws, 'message') as [Buffer]
  ws.close()
  return data.toString()
}

/** Subscribers on SSE, long-poll and WebSocket under the prefix, one publish, each gets it. */
async function threeTransports (t: ExecutionContext, port: number, channel: string): Promise<void> {
  const sse = await SseClient.connect(port, `/rt/sub/${channel}`, TOKEN)
  t.is(sse.status, 200)
  const ws = await RawWs.connect(port, `/rt/sub/${channel}`, TOKEN)
  t.is(ws.status, 101)
  const poll = rawRequest(port, `GET /rt/sub/${channel} HTTP/1.1\r\nHost: x\r\nx-token: ok\r\n\r\n`, 5000)
  // the long-poll is parked before the publish: wait until the channel counts three subscribers
  for (let i = 0; i < 50; i++) {
    const info = await fetch(`http://127.0.0.1:${port}/rt/pub/${channel}`, { headers: { ...TOKEN, accept: 'text/json' } })
    if (info.status === 200 && (JSON.parse(await info.text()) as { subscribers: number }).subscribers === 3) break
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  const pub = await post(port, `/rt/pub/${channel}`, 'hello ' + channel)
  t.is(pub.status, 201)
  await sse.until(() => sse.events.length >= 1)
  t.is(sse.events[0]!.data, 'hello ' + channel)
  await ws.until(() => ws.frames.length >= 1)
  t.is(ws.frames[0]!.payload.toString(), 'hello ' + channel)
  const answer = await poll
  t.is(answer.status, 200)
  t.is(answer.body, 'hello ' + channel)
  sse.socket.destroy()
  ws.socket.destroy()
}

for (const order of ['parkline-first', 'websocket-first']) {
  test.serial(`installed tarball (${order}): prefix, SSE/long-poll/WebSocket, host hooks on every transport, @fastify/websocket alongside`, async (t) => {
    const p = ready(t)
    const app = await startApp(t, p, { ORDER: order })
    t.is(app.node, process.version)
    // the host's own /health and /metrics are untouched; Parkline's sit under its prefix
    t.deepEqual(await get(app.port, '/health', TOKEN), { status: 200, text: 'host health' })
    t.deepEqual(await get(app.port, '/metrics', TOKEN), { status: 200, text: 'host metrics' })
    t.deepEqual(await get(app.port, '/rt/parkline/health', TOKEN), { status: 200, text: 'ok\n' })
    t.is((await get(app.port, '/rt/parkline/metrics', TOKEN)).status, 200)
    // no HTTP method added to the host
    t.deepEqual(JSON.parse((await get(app.port, '/host/methods', TOKEN)).text), ['GET', 'HEAD', 'TRACE', 'DELETE', 'OPTIONS', 'PATCH', 'PUT', 'POST', 'QUERY'])
    // the host's hook refuses every transport without the header, the WebSocket handshake included
    const sse = await SseClient.connect(app.port, '/rt/sub/locked')
    t.is(sse.status, 401)
    t.is((await rawRequest(app.port, 'GET /rt/sub/locked HTTP/1.1\r\nHost: x\r\n\r\n')).status, 401)
    const ws = await RawWs.connect(app.port, '/rt/sub/locked')
    t.is(ws.status, 401)
    t.is(ws.body, 'no token')
    await ws.until(() => ws.closed)
    t.is((await post(app.port, '/rt/pub/locked', 'x', {})).status, 401)
    // with it, all three transports receive; the host's own WebSocket route works too
    await threeTransports(t, app.port, 'c-' + order)
    t.is(await echo(app.port, 'hi ' + order), 'hi ' + order)
    // the facade: publish from host code, read back through subscribe()
    const a = JSON.parse((await post(app.port, '/host/publish/f', 'one')).text) as { id: string, status: number }
    const b = JSON.parse((await post(app.port, '/host/publish/f', 'two')).text) as { id: string, status: number }
    t.regex(a.id, /^\d+:\d+$/)
    t.is(b.status, 202)
    t.deepEqual(JSON.parse((await get(app.port, '/host/read/f?n=2', TOKEN)).text), [{ id: a.id, data: 'one' }, { id: b.id, data: 'two' }])
    t.deepEqual(JSON.parse((await get(app.port, `/host/read/f?n=1&after=${a.id}`, TOKEN)).text), [{ id: b.id, data: 'two' }])
  })
}

/** The README's embedding example, exactly as written there (the js block after "Inside your Fastify app"). */
function readmeExample (): string {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  const section = readme.slice(readme.indexOf('## Inside your Fastify app'))
  const m = /```js\n(\/\/ app\.mjs[\s\S]*?)```/.exec(section)
  if (m === null) throw new Error('README: no app.mjs example under "Inside your Fastify app"')
  return m[1]!
}

test.serial('the README embedding example runs as written from the installed tarball, @fastify/sse feed included', async (t) => {
  const p = ready(t)
  writeFileSync(path.join(p.app, 'readme.mjs'), readmeExample())
  const proc = spawn(process.execPath, ['readme.mjs'], { cwd: p.app, env: { ...process.env, PORT: '0', PUBLISH_KEY: 's3cret' }, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { proc.kill('SIGKILL') })
  const port = Number(await outputMatch(proc, /Server listening at http:\/\/127\.0\.0\.1:(\d+)/, 'README example'))
  const parklineSse = await SseClient.connect(port, '/rt/sub/orders')
  t.is(parklineSse.status, 200)
  const feed = await SseClient.connect(port, '/orders/feed')
  t.is(feed.status, 200)
  t.is((await fetch(`http://127.0.0.1:${port}/rt/pub/orders`, { method: 'POST', body: 'x' })).status, 401)
  const r = await fetch(`http://127.0.0.1:${port}/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sku: 'a1' }) })
  const { id } = await r.json() as { id: string }
  t.regex(id, /^\d+:0$/)
  await parklineSse.until(() => parklineSse.events.length >= 1)
  t.deepEqual([parklineSse.events[0]!.id, parklineSse.events[0]!.data], [id, '{"sku":"a1"}'])
  await feed.until(() => feed.events.length >= 1)
  t.deepEqual([feed.events[0]!.id, feed.events[0]!.event, feed.events[0]!.data], [id, 'order', '{"sku":"a1"}'])
  // a body that is no JSON, published with the key: skipped by the feed, which goes on
  t.is((await fetch(`http://127.0.0.1:${port}/rt/pub/orders`, { method: 'POST', headers: { authorization: 'Bearer s3cret' }, body: 'x' })).status, 201)
  const authorized = await fetch(`http://127.0.0.1:${port}/rt/pub/orders`, { method: 'POST', headers: { authorization: 'Bearer s3cret' }, body: '{"sku":"b2"}' })
  t.is(authorized.status, 201)
  await feed.until(() => feed.events.length >= 2)
  t.is(feed.events[1]!.data, '{"sku":"b2"}')
  parklineSse.socket.destroy()
  feed.socket.destroy()
})

test.serial('installed tarball on Node 22: imports with no loader and serves all three transports', async (t) => {
  const p = ready(t)
  const app = await startApp(t, p, {}, p.node22!)
  t.regex(app.node, /^v22\./)
  await threeTransports(t, app.port, 'node22')
  t.is(await echo(app.port, 'hi 22'), 'hi 22')
})

test.serial('the packed `parkline` command on Node 20 (below the engines range) refuses to start, in one line naming the versions it runs on', async (t) => {
  const p = ready(t)
  const bin = path.join(p.app, 'node_modules', 'parkline', 'dist', 'bin', 'parkline.js')
  t.regex(spawnSync(p.node20, ['--version'], { encoding: 'utf8' }).stdout, /^v20\./)
  for (const args of [['serve', '--port', '0', '--host', '127.0.0.1'], ['serve', '--port', '0', '--host', '127.0.0.1', '--workers', '2'], ['help']]) {
    const r = spawnSync(p.node20, [bin, ...args], { cwd: p.app, encoding: 'utf8', timeout: 20_000 })
    // 2, as a refused configuration: a supervisor does not restart it in a loop
    t.is(r.status, 2, `${args.join(' ')}: ${r.stderr}`)
    t.regex(r.stderr, /^parkline: Node v20\.\d+\.\d+ is not supported: use Node 22\.12 or later\n$/)
    t.is(r.stdout, '')
  }
})

test.serial('the operator files ship in the package as they are in the repository (the nginx site test/nginx-proxy.test.ts runs, the systemd unit, the kernel drop-ins)', async (t) => {
  const p = ready(t)
  const installed = path.join(p.app, 'node_modules', 'parkline')
  for (const f of ['conf/nginx/parkline.conf', 'conf/systemd/parkline.service', 'conf/sysctl.d/90-parkline.conf', 'conf/limits.d/90-parkline.conf', 'conf/parkline.json', 'conf/README.md']) {
    t.is(readFileSync(path.join(installed, f), 'utf8'), readFileSync(path.join(ROOT, f), 'utf8'), f)
  }
})

test.serial('a strict nodenext TypeScript app type-checks against the package, with typed options and facade', async (t) => {
  const p = ready(t)
  writeFileSync(path.join(p.app, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { target: 'es2024', module: 'nodenext', moduleResolution: 'nodenext', strict: true, noEmit: true, skipLibCheck: false, types: ['node'] },
    files: ['check.ts']
  }))
  writeFileSync(path.join(p.app, 'check.ts'), `import Fastify from 'fastify'
import parkline, { type ChannelInfo, type ParklineMessage, type ParklinePluginOptions, type Published } from 'parkline'
import { Parkline as Client } from 'parkline/client'

const app = Fastify()
const options: ParklinePluginOptions = { prefix: '/rt', bufferLength: 10, transports: ['eventsource', 'longpoll'], metricsPath: '' }
await app.register(parkline, options)
const published: Published = await app.parkline.publish('news', 'hello', { contentType: 'text/plain', event: 'note' })
const id: string = published.id
const status: 201 | 202 = published.status
const info: ChannelInfo | null = await app.parkline.info('news')
for await (const m of app.parkline.subscribe(['news', 'alerts'], { lastEventId: id, signal: AbortSignal.timeout(10) })) {
  const msg: ParklineMessage = m
  const data: Buffer = msg.data
  console.log(msg.channel, msg.id, data.length, msg.gap)
}
await app.parkline.delete('news')
// @ts-expect-error a misspelt option is a type error
await app.register(parkline, { bufferLenght: 10 })
// @ts-expect-error publish takes a channel id string
await app.parkline.publish(42, 'x')
// @ts-expect-error a transport that does not exist is a type error, not only a start-up one
await app.register(parkline, { transports: ['websocet'] })
// @ts-expect-error options only the standalone server reads are not the plugin's
await app.register(parkline, { gcThreads: 2 })
const client = new Client('/rt/sub/news', { transports: ['websocket', 'eventsource'] })
client.on('message', (data: string | ArrayBuffer) => console.log(data, status, info))
`)
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
  const r = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: p.app, encoding: 'utf8' })
  t.is(r.status, 0, r.stdout + r.stderr)
})

test.serial('a host on the oldest Fastify 5 (5.0.0): Fastify is a peer, so the app has one copy, the host\'s, which Parkline\'s types augment; the three transports and `parkline serve` work on it', async (t) => {
  t.timeout(300_000)
  const p = ready(t)
  const dir = path.join(p.dir, 'fastify-5.0.0')
  mkdirSync(dir)
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'old-host', private: true, type: 'module' }))
  run(NPM, ['install', '--prefer-offline', p.tarball, 'fastify@5.0.0', '@types/node@24'], dir)
  t.is((JSON.parse(readFileSync(path.join(dir, 'node_modules', 'fastify', 'package.json'), 'utf8')) as { version: string }).version, '5.0.0')
  t.throws(() => readFileSync(path.join(dir, 'node_modules', 'parkline', 'node_modules', 'fastify', 'package.json')), undefined, 'no copy of Fastify of Parkline\'s own')
  writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { target: 'es2024', module: 'nodenext', moduleResolution: 'nodenext', strict: true, noEmit: true, skipLibCheck: true, types: ['node'] },
    files: ['check.ts']
  }))
  writeFileSync(path.join(dir, 'check.ts'), `import Fastify from 'fastify'
import parkline from 'parkline'
const app = Fastify()
await app.register(parkline, { prefix: '/rt', bufferLength: 10 })
const r: { id: string } = await app.parkline.publish('news', 'hello')
console.log(r.id)
`)
  const tsc = spawnSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: dir, encoding: 'utf8' })
  t.is(tsc.status, 0, tsc.stdout + tsc.stderr)
  writeFileSync(path.join(dir, 'app.mjs'), `import Fastify from 'fastify'
import parkline from 'parkline'
const app = Fastify()
await app.register(parkline, { prefix: '/rt' })
await app.listen({ port: 0, host: '127.0.0.1' })
console.log(JSON.stringify({ port: app.server.address().port, node: process.version }))
`)
  const host = await startApp(t, { ...p, app: dir })
  await threeTransports(t, host.port, 'old-fastify')
  const proc = spawn(process.execPath, [path.join(dir, 'node_modules', 'parkline', 'dist', 'bin', 'parkline.js'), 'serve', '--port', '0', '--host', '127.0.0.1', '--workers', '1'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { proc.kill('SIGKILL') })
  let err = ''
  proc.stderr.on('data', (d: Buffer) => { err += d.toString() })
  const address = await outputMatch(proc, /"address":"(http:[^"]+)"/, 'parkline serve')
  t.is((await fetch(`${address}/pub/cli`, { method: 'POST', body: 'hi' })).status, 202)
  t.notRegex(err, /FSTDEP|DeprecationWarning/, 'no deprecation warning from Fastify')
})

test.serial('the packed `parkline` command: help, doctor, and serve answering a publish', async (t) => {
  const p = ready(t)
  const help = spawnSync(NPM, ['exec', '--no', '--', 'parkline', 'help'], { cwd: p.app, encoding: 'utf8' })
  t.is(help.status, 0, help.stderr)
  t.regex(help.stdout, /usage: parkline serve/)
  // each option with its flag and its environment variable
  t.regex(help.stdout, /^ {2}--buffer-length +PARKLINE_BUFFER_LENGTH +100 /m)
  const doctor = spawnSync(NPM, ['exec', '--no', '--', 'parkline', 'doctor', '--json'], { cwd: p.app, encoding: 'utf8' })
  t.true(doctor.status === 0 || doctor.status === 1, doctor.stderr)
  t.truthy((JSON.parse(doctor.stdout) as { subscribers?: unknown }) !== null)
  const proc = spawn(NPM, ['exec', '--no', '--', 'parkline', 'serve', '--port', '0', '--host', '127.0.0.1', '--workers', '1'], { cwd: p.app, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  t.teardown(() => { try { process.kill(-proc.pid!, 'SIGKILL') } catch {} })
  let out = ''
  proc.stderr.on('data', (d: Buffer) => { out += d.toString() })
  const listening = await new Promise<{ address: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('parkline serve did not start: ' + out)), 20_000)
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString()
      for (const line of out.split('\n')) {
        if (!line.startsWith('{')) continue
        const j = JSON.parse(line) as { msg?: string, address?: string }
        if (j.msg?.startsWith('parkline listening') === true) { clearTimeout(timer); resolve(j as { address: string }) }
      }
    })
  })
  // every line is pino JSON: no plain text in the log
  for (const line of out.trim().split('\n')) t.notThrows(() => JSON.parse(line), line)
  const r = await fetch(`${listening.address}/pub/cli`, { method: 'POST', body: 'hi' })
  t.is(r.status, 202)
})

test.serial('two nodes on Redis: app.parkline.publish on node A reaches an SSE subscriber on node B with the id A returned', async (t) => {
  const p = ready(t)
  const redis = await startRedis(t)
  const env = { REDIS_URL: `redis://127.0.0.1:${redis.port}` }
  const a = await startApp(t, p, env)
  const b = await startApp(t, p, env)
  const sse = await SseClient.connect(b.port, '/rt/sub/shared', TOKEN)
  t.is(sse.status, 200)
  const r = JSON.parse((await post(a.port, '/host/publish/shared', 'across nodes')).text) as { id: string, status: number }
  t.is(r.status, 201)
  await sse.until(() => sse.events.length >= 1)
  t.is(sse.events[0]!.id, r.id)
  t.is(sse.events[0]!.data, 'across nodes')
  const onB = JSON.parse((await post(b.port, '/host/publish/shared', 'back')).text) as { id: string }
  t.deepEqual(JSON.parse((await get(a.port, `/host/read/shared?n=1&after=${r.id}`, TOKEN)).text), [{ id: onB.id, data: 'back' }])
  sse.socket.destroy()
})
