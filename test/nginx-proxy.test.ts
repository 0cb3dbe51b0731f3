// The shipped nginx configuration (conf/nginx/parkline.conf) in front of a real Parkline, as an
// operator would run it: nginx started on loopback with that file, its three "yours" lines set for
// the test (the ports, a server name) and nothing else changed. Subscribers of every kind and
// publishers go through nginx. nginx is what the Nchan tests install (bin/test-deps.sh); without it this fails and says
// which packages to install.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import test, { type ExecutionContext } from 'ava'
import { APT_LINE, nginxBinary, nginxTempPaths, waitReady } from '../benchmarks/suite/servers.ts'
import { eventually, freePort, rawRequest, SseClient, startStandalone, until, type HttpAnswer, type Standalone } from './helpers/server.ts'
import { RawWs } from './helpers/websocket.ts'

const SHIPPED = readFileSync(new URL('../conf/nginx/parkline.conf', import.meta.url), 'utf8')

/** nginx with the shipped file included in its `http` block; its port. */
async function startNginx (t: ExecutionContext, parklinePort: number, more: number[] = []): Promise<number> {
  const bin = nginxBinary()
  if (bin === null) throw new Error(`nginx is not installed; install it with: ${APT_LINE}`)
  const port = await freePort()
  // the three lines the file marks "yours", and nothing else
  const site = SHIPPED
    .replace(/^(\s*)server 127\.0\.0\.1:8080;(\s*# yours.*)$/m, `$1server 127.0.0.1:${parklinePort};$2${more.map((p) => `\n$1server 127.0.0.1:${p};`).join('')}`)
    .replace(/^(\s*)listen 80;(\s*# yours)/m, `$1listen 127.0.0.1:${port};$2`)
    .replace(/^(\s*)server_name push\.example\.com;(\s*# yours)/m, '$1server_name push.example;$2')
  t.not(site.indexOf(`server 127.0.0.1:${parklinePort};`), -1, 'the upstream line is where the file says')
  t.not(site.indexOf(`listen 127.0.0.1:${port};`), -1, 'the listen line is where the file says')
  t.not(site.indexOf('server_name push.example;'), -1, 'the server_name line is where the file says')
  t.is(site.split('# yours').length, 4, 'three lines are marked yours')
  for (const p of more) t.not(site.indexOf(`server 127.0.0.1:${p};`), -1)
  const dir = mkdtempSync(path.join(os.tmpdir(), 'parkline-nginx-'))
  writeFileSync(path.join(dir, 'parkline.conf'), site)
  writeFileSync(path.join(dir, 'nginx.conf'), `daemon off;
master_process off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
${nginxTempPaths(dir)}  include ${dir}/parkline.conf;
}
`)
  const child: ChildProcess = spawn(bin, ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'error.log')], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString() })
  t.teardown(() => {
    child.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  })
  // answered through nginx (by Parkline, behind it) a few times in a row
  await waitReady(port, child, 15000, () => {
    try { return stderr + readFileSync(path.join(dir, 'error.log'), 'utf8') } catch { return stderr }
  })
  return port
}

async function setup (t: ExecutionContext, options: Record<string, unknown> = {}): Promise<{ srv: Standalone, proxy: number }> {
  const srv = await startStandalone(t, { keepalive: 1, ...options }, true)
  const proxy = await startNginx(t, srv.port)
  return { srv, proxy }
}

/** Subscribers Parkline holds on `channel`. */
async function held (srv: Standalone, channel: string, n: number): Promise<boolean> {
  return await eventually(async () => ((await srv.app.parkline.info(channel))?.subscribers ?? 0) >= n, 5000)
}

function get (port: number, target: string, headers = ''): Promise<HttpAnswer> {
  return rawRequest(port, `GET ${target} HTTP/1.1\r\nHost: push.example\r\n${headers}\r\n`, 8000)
}

function post (port: number, target: string, body: string, headers = ''): Promise<HttpAnswer> {
  return rawRequest(port, `POST ${target} HTTP/1.1\r\nHost: push.example\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${headers}\r\n${body}`, 8000)
}

test('EventSource, long-poll and WebSocket subscribers behind the shipped nginx config get each message as it is published, and resume', async (t) => {
  const { srv, proxy } = await setup(t)
  const idle = /^\s*keepalive_timeout (\d+)s;/m.exec(SHIPPED)
  t.truthy(idle, 'the upstream sets keepalive_timeout')
  t.true(Number(idle![1]) * 1000 < srv.app.server.keepAliveTimeout, 'nginx lets go of an idle upstream connection before Parkline closes it')
  const sse = await SseClient.connect(proxy, '/sub/room', { Accept: 'text/event-stream' })
  t.is(sse.status, 200)
  const ws = await RawWs.connect(proxy, '/sub/room')
  t.is(ws.status, 101, 'the WebSocket handshake passes nginx')
  // a long-poll parks in Parkline (nothing published yet) through nginx
  const parked = get(proxy, '/sub/room')
  t.true(await held(srv, 'room', 3), 'three subscribers reached Parkline')

  // published on Parkline's own port, from this host: the publisher's usual path
  const first = await post(srv.port, '/pub/room', 'm1')
  t.is(first.status, 201)
  const lp = await parked
  t.is(lp.status, 200)
  t.is(lp.body, 'm1')
  await sse.waitEvents(1)
  t.is(sse.events[0]!.data, 'm1', 'the event came through while the stream stays open')
  t.true(await until(() => ws.messages.length >= 1, 5000))
  t.is(ws.messages[0]!.payload.toString(), 'm1')

  // the long-poll client resumes with what the answer gave it, through nginx
  const next = get(proxy, '/sub/room', `If-Modified-Since: ${lp.headers['last-modified']!}\r\nIf-None-Match: ${lp.headers.etag!}\r\n`)
  t.true(await held(srv, 'room', 3))
  t.is((await post(srv.port, '/pub/room', 'm2')).status, 201)
  const lp2 = await next
  t.is(lp2.status, 200)
  t.is(lp2.body, 'm2')
  await sse.waitEvents(2)
  t.is(sse.events[1]!.data, 'm2')
  // an EventSource reconnecting with Last-Event-ID gets what it missed
  const again = await SseClient.connect(proxy, '/sub/room', { Accept: 'text/event-stream', 'Last-Event-ID': sse.events[0]!.id! })
  await again.waitEvents(1)
  t.is(again.events[0]!.data, 'm2')
  // a quiet stream hears Parkline's keepalive through nginx (keepalive: 1 here)
  const comments = sse.comments.length
  t.true(await until(() => sse.comments.length > comments, 4000), 'keepalive comments pass nginx')
  sse.close()
  again.close()
  ws.socket.destroy()
})

test('behind the shipped nginx config a channel id is decoded once, by Parkline: escaped slashes name the same channel as on Parkline\'s own port', async (t) => {
  const { srv, proxy } = await setup(t)
  // nginx decoding it (a proxy_pass with a path) would merge the slashes: the channel "a/b"
  const parked = get(proxy, '/sub/a%2F%2Fb')
  t.true(await held(srv, 'a//b', 1), 'the subscriber through nginx is on the channel "a//b"')
  t.is((await post(srv.port, '/pub/a%2F%2Fb', 'one')).status, 201)
  const lp = await parked
  t.is(lp.status, 200)
  t.is(lp.body, 'one')
})

test('behind the shipped nginx config the publisher stays loopback-only: a request through the proxy is refused, trustedProxies lets a local one through, a key works from anywhere', async (t) => {
  const { srv, proxy } = await setup(t)
  const refused = await post(proxy, '/pub/p', 'x')
  t.is(refused.status, 403, 'nginx\'s proxy headers mark the request as relayed')
  t.regex(refused.body, /came through a proxy/)
  t.not((await get(proxy, '/status')).status, 200, 'the site does not pass the status page on')
  t.is((await get(proxy, '/health')).status, 200, 'the health check passes nginx')
  t.is((await post(srv.port, '/pub/p', 'x')).status, 202, 'the same publish on Parkline\'s own port')

  const trusted = await setup(t, { trustedProxies: ['127.0.0.1'] })
  t.is((await post(trusted.proxy, '/pub/p', 'x')).status, 202, 'a local client through a trusted nginx')

  const key = 'k-' + 'a'.repeat(30)
  const keyed = await setup(t, { apiKey: [key] })
  t.is((await post(keyed.proxy, '/pub/p', 'x')).status, 401, 'with an apiKey, no key is refused through nginx too')
  t.is((await post(keyed.proxy, '/pub/p', 'x', `Authorization: Bearer ${key}\r\n`)).status, 202, 'the key admits a publisher through nginx')
  // the revoke path passes nginx, its credential judged by Parkline
  const revoke = (headers: string): Promise<HttpAnswer> => rawRequest(keyed.proxy, `POST /admin/revoke HTTP/1.1\r\nHost: push.example\r\nContent-Type: application/json\r\nContent-Length: 11\r\n${headers}\r\n{"sub":"u"}`, 8000)
  t.is((await revoke('')).status, 401, 'a revoke without the key is refused through nginx')
  t.is((await revoke(`Authorization: Bearer ${key}\r\n`)).status, 200, 'the key revokes through nginx')
})

test('behind the shipped nginx config a too large publish gets Parkline\'s own 413, not nginx\'s page', async (t) => {
  const { proxy } = await setup(t, { maxMessageSize: 1024 * 1024, trustedProxies: ['127.0.0.1'] })
  const big = await post(proxy, '/pub/big', 'x'.repeat(1024 * 1024 + 1))
  t.is(big.status, 413)
  t.notRegex(big.body, /<html>/i)
  t.is((await post(proxy, '/pub/big', 'x'.repeat(1024 * 1024))).status, 202, 'a body of maxMessageSize passes')
})

test('behind the shipped nginx config requests share kept-alive upstream connections: one Parkline connection carries a run of them', async (t) => {
  const { srv, proxy } = await setup(t, { trustedProxies: ['127.0.0.1'] })
  let opened = 0
  srv.app.server.on('connection', () => { opened++ })
  for (let i = 0; i < 6; i++) {
    t.is((await get(proxy, '/health')).status, 200)
    t.is((await post(proxy, '/pub/ka', String(i))).status, 202)
  }
  // (the start-up probes through nginx may have opened the one they all use)
  t.true(opened <= 1, `twelve requests, one after another, on at most one new upstream connection (${opened})`)
})

test('behind the shipped nginx config with two Parkline servers, a long-poll or WebSocket handshake one of them refuses 503 (full, or draining) goes to the other', async (t) => {
  const full = await startStandalone(t, { keepalive: 1, maxSubscribers: 1 }, true)
  const open = await startStandalone(t, { keepalive: 1 }, true)
  const occupant = await SseClient.connect(full.port, '/sub/occupant')
  t.teardown(() => occupant.close())
  const proxy = await startNginx(t, full.port, [open.port])
  // round-robin over both: without a second try every other handshake would be the full one's 503
  for (let i = 0; i < 6; i++) {
    const ws = await RawWs.connect(proxy, '/sub/rr', { Host: 'push.example' })
    t.is(ws.status, 101, `websocket ${i}: ${ws.head}`)
    ws.socket.destroy()
  }
  // long-polls that park: all four end up on the open server, and get its message
  const polls = Array.from({ length: 4 }, () => get(proxy, '/sub/lp'))
  t.true(await eventually(async () => ((await open.app.parkline.info('lp'))?.subscribers ?? 0) === 4, 5000), 'every poll parked on the server with room')
  await open.app.parkline.publish('lp', 'm')
  for (const p of await Promise.all(polls)) t.is(p.status, 200)
})
