// Metrics an operator can trust, and logs they can read: /metrics parsed by a Prometheus text
// parser, HELP and TYPE on every family, process and runtime metrics, node-wide sums with
// workers (counters never go backwards between scrapes, whichever worker answers), the
// publish-to-write histogram in seconds, worker restarts and Redis state in metrics and logs.
import { readFileSync } from 'node:fs'
import type { Socket } from 'node:net'
import test, { type ExecutionContext } from 'ava'
import parsePrometheusTextFormat from 'parse-prometheus-text-format'
import { startRedis } from './helpers/redis.ts'
import { serve } from './helpers/node.ts'
import { ownerOf } from '../lib/cluster.ts'
import { SseClient, eventually, socketOnWorker, startServer } from './helpers/server.ts'

interface Family { name: string, help: string, type: string, metrics: Array<{ labels?: Record<string, string>, value?: string, buckets?: Record<string, string>, count?: string, sum?: string }> }

function parse (text: string): Map<string, Family> {
  const out = new Map<string, Family>()
  for (const f of parsePrometheusTextFormat(text) as Family[]) out.set(f.name, f)
  return out
}

/** A sample's value, summed over the samples matching `labels`. */
function value (m: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  const f = m.get(name)
  if (f === undefined) return NaN
  let sum = 0
  for (const s of f.metrics) {
    if (Object.entries(labels).every(([k, v]) => s.labels?.[k] === v)) sum += Number(s.value ?? s.count)
  }
  return sum
}

async function scrape (base: string): Promise<{ text: string, families: Map<string, Family> }> {
  const r = await fetch(`${base}/metrics`)
  const text = await r.text()
  return { text, families: parse(text) }
}

test('one process: every family has HELP and TYPE, process and runtime metrics, exact counts, latency in seconds', async (t) => {
  const srv = await startServer(t)
  const subs = [await SseClient.connect(srv.port, '/sub/m'), await SseClient.connect(srv.port, '/sub/m')]
  for (let i = 0; i < 3; i++) t.is((await fetch(`${srv.base}/pub/m`, { method: 'POST', body: `m${i}` })).status, 201)
  for (const s of subs) await s.waitEvents(3)
  const { text, families } = await scrape(srv.base)
  // every family in the text has both lines
  const declared = [...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!)
  for (const name of declared) t.regex(text, new RegExp(`^# HELP ${name} \\S`, 'm'), name)
  t.true(declared.length === families.size)
  t.true([...families.keys()].some((n) => n.startsWith('process_')))
  t.true([...families.keys()].some((n) => n.startsWith('nodejs_')))
  t.is(value(families, 'parkline_messages_published_total'), 3)
  t.is(value(families, 'parkline_messages_delivered_total', { transport: 'eventsource' }), 6)
  t.is(value(families, 'parkline_subscribers', { transport: 'eventsource' }), 2)
  t.is(value(families, 'parkline_messages_stored'), 3)
  t.is(value(families, 'parkline_message_bytes_stored'), 6, 'the bodies m0, m1, m2')
  t.is(families.get('parkline_messages_delivered_total')!.type, 'COUNTER')
  const h = families.get('parkline_publish_delivery_seconds')!
  t.is(h.type, 'HISTOGRAM')
  t.is(Number(h.metrics[0]!.count), 3, 'once per message, not per subscriber')
  t.true(Number(h.metrics[0]!.sum) > 0 && Number(h.metrics[0]!.sum) < 1)
  t.true('0.0001' in h.metrics[0]!.buckets!, 'buckets from 100 µs')
  // no label takes its values from users: no channel id anywhere
  t.false(text.includes('"m"'))
  // families of what this server does not have (Redis, a JWKS) have no sample: not a 0 an alert
  // would read as "down"
  for (const name of ['parkline_store_up', 'parkline_jwks_up', 'parkline_store_faults_total', 'parkline_store_failovers_total', 'parkline_store_slots_covered']) t.notRegex(text, new RegExp(`^${name} `, 'm'), name)
  // a counter at 0 that this server does have is there
  t.regex(text, /^parkline_heap_trims_total 0$/m)
  for (const s of subs) s.close()
})

test('several instances in one process (an app that makes and closes them): each scrape has the process metrics once', async (t) => {
  const first = await startServer(t)
  await first.app.close()
  const a = await startServer(t)
  const b = await startServer(t)
  for (const srv of [a, b]) {
    const { text, families } = await scrape(srv.base)
    const declared = [...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!)
    t.is(new Set(declared).size, declared.length, 'no family twice')
    t.true(families.has('process_cpu_user_seconds_total'))
    t.true(families.has('nodejs_eventloop_lag_seconds'))
    t.true(families.has('parkline_subscribers'))
  }
})

test('the standalone server trims its start-up heap once idle, and counts it (parkline serve: one process, and two workers)', async (t) => {
  for (const args of [['--workers', '1'], ['--workers', '2']]) {
    const node = await serve(t, args)
    // start-up counts as busy: the trim runs after two quiet seconds. Scraped every 3 s, as a
    // scraper would (a tight poll would keep the server busy); bounded wait, no timing asserted
    let trims = 0
    let seconds = 0
    for (let i = 0; i < 10 && trims < Number(args[1]); i++) {
      await new Promise((resolve) => setTimeout(resolve, 3000))
      const { families } = await scrape(node.base)
      trims = value(families, 'parkline_heap_trims_total')
      seconds = value(families, 'parkline_heap_trim_seconds_total')
    }
    // one per worker (the primary's own is not in the workers' sum)
    t.true(trims >= Number(args[1]), `${args.join(' ')}: ${trims} trims`)
    t.true(seconds > 0)
  }
})

/** Every JSON log line; fails the test on a line that is not JSON. */
function logLines (t: ExecutionContext, out: string): Array<Record<string, unknown>> {
  return out.trim().split('\n').filter((l) => l.length > 0).map((l) => {
    try { return JSON.parse(l) as Record<string, unknown> } catch { t.fail('not a JSON log line: ' + l); return {} }
  })
}

test('--workers 2: 20 scrapes while publishing give node-wide sums, equal to what the test counted, never going backwards', async (t) => {
  const node = await serve(t, ['--workers', '2'], 'info')
  const subs: SseClient[] = []
  for (let i = 0; i < 4; i++) subs.push(await SseClient.connect(node.port, '/sub/w'))
  let last = new Map<string, number>()
  for (let i = 0; i < 20; i++) {
    t.is((await fetch(`${node.base}/pub/w`, { method: 'POST', body: `m${i}` })).status, 201)
    const { families } = await scrape(node.base)
    t.is(value(families, 'parkline_messages_published_total'), i + 1, 'published: the sum over the workers, exact')
    t.is(value(families, 'parkline_subscribers', { transport: 'eventsource' }), 4)
    const now = new Map<string, number>()
    for (const f of families.values()) {
      if (f.type !== 'COUNTER' || !f.name.startsWith('parkline_')) continue
      now.set(f.name, value(families, f.name))
      t.true(now.get(f.name)! >= (last.get(f.name) ?? 0), `${f.name} went backwards`)
    }
    last = now
  }
  for (const s of subs) t.is((await s.waitEvents(20)).length, 20)
  t.true(await eventually(async () => value((await scrape(node.base)).families, 'parkline_messages_delivered_total', { transport: 'eventsource' }) === 80))
  // merged over the workers, an absent family stays absent
  const { text, families } = await scrape(node.base)
  // process families as an operator reads them: the file limit one process has (not the sum of
  // three, primary included), and the start, which prom-client leaves out of a merge
  const child = Number(readFileSync(`/proc/${node.proc.pid}/task/${node.proc.pid}/children`, 'utf8').trim().split(/\s+/)[0])
  const limit = Number(/^Max open files\s+(\d+)/m.exec(readFileSync(`/proc/${child}/limits`, 'utf8'))![1])
  t.is(value(families, 'process_max_fds'), limit)
  t.true(value(families, 'process_open_fds') < limit)
  t.true(value(families, 'process_start_time_seconds') > 0, 'the node\'s start is there')
  for (const name of ['parkline_store_up', 'parkline_jwks_up', 'parkline_store_faults_total', 'parkline_store_failovers_total']) t.notRegex(text, new RegExp(`^${name} `, 'm'), name)
  for (const s of subs) s.close()
})

test('--workers 2, in memory: parkline_channels and parkline_messages_stored count each channel once, at its owner, as /status does', async (t) => {
  const node = await serve(t, ['--workers', '2'])
  const names = Array.from({ length: 10 }, (_, i) => `owned${i}`)
  t.true(new Set(names.map((n) => ownerOf(n, 2))).size === 2, 'both workers own some')
  for (const n of names) t.is((await fetch(`${node.base}/pub/${n}`, { method: 'POST', body: 'x' })).status, 202)
  // a subscriber on each worker for one channel: a replica on the worker that does not own it
  const subs: SseClient[] = []
  for (let i = 0; i < 6; i++) subs.push(await SseClient.connect(node.port, '/sub/owned0'))
  t.true(await eventually(async () => {
    const { families } = await scrape(node.base)
    return value(families, 'parkline_channels') === 10 && value(families, 'parkline_messages_stored') === 10
  }, 5000), JSON.stringify([...(await scrape(node.base)).families.entries()].filter(([k]) => /channels|stored/.test(k))))
  // (/status's node totals come from the workers' reports, once a second)
  t.true(await eventually(async () => /^channels: 10$/m.test(await (await fetch(`${node.base}/status`)).text()), 5000))
  for (const s of subs) s.close()
})

test('--workers 2: a killed worker shows in the log and in parkline_worker_restarts_total; no counter of the node goes down', async (t) => {
  const node = await serve(t, ['--workers', '2'], 'info')
  const children = readFileSync(`/proc/${node.proc.pid}/task/${node.proc.pid}/children`, 'utf8').trim().split(/\s+/).map(Number)
  t.is(children.length, 2)
  // deliveries on both workers (SO_REUSEPORT spreads the connections), counted by a scrape
  const subs: SseClient[] = []
  for (let i = 0; i < 8; i++) subs.push(await SseClient.connect(node.port, '/sub/k'))
  for (let i = 0; i < 3; i++) t.is((await fetch(`${node.base}/pub/k`, { method: 'POST', body: `k${i}` })).status, 201)
  for (const s of subs) await s.waitEvents(3)
  let before = new Map<string, number>()
  t.true(await eventually(async () => {
    const { families } = await scrape(node.base)
    before = new Map([...families.values()].filter((f) => f.type === 'COUNTER' && f.name.startsWith('parkline_')).map((f) => [f.name, value(families, f.name)]))
    return before.get('parkline_messages_delivered_total') === 24
  }, 5000), 'the deliveries counted')
  process.kill(children[0]!, 'SIGKILL')
  t.true(await eventually(() => node.log().includes('worker died'), 5000))
  t.true(await eventually(async () => {
    try { return value((await scrape(node.base)).families, 'parkline_worker_restarts_total') === 1 } catch { return false }
  }, 8000))
  // the dead worker's counters stay in the sum: none reads as a reset
  const { families } = await scrape(node.base)
  for (const [name, was] of before) t.true(value(families, name) >= was, `${name}: ${value(families, name)} after, ${was} before`)
  for (const s of subs) s.close()
  const lines = logLines(t, node.log())
  const died = lines.find((l) => l.msg === 'worker died; forking it again')!
  t.is(died.signal, 'SIGKILL')
  t.true(lines.some((l) => typeof l.msg === 'string' && l.msg.startsWith('parkline listening on')))
})

test('--workers 2: a worker that cannot answer a scrape (stopped) counts with its last part; the node\'s counters stay whole', async (t) => {
  t.timeout(180000)
  const node = await serve(t, ['--workers', '2'])
  const children = readFileSync(`/proc/${node.proc.pid}/task/${node.proc.pid}/children`, 'utf8').trim().split(/\s+/).map(Number)
  t.is(children.length, 2)
  const subs: SseClient[] = []
  for (let i = 0; i < 8; i++) subs.push(await SseClient.connect(node.port, '/sub/stale'))
  for (let i = 0; i < 3; i++) t.is((await fetch(`${node.base}/pub/stale`, { method: 'POST', body: `s${i}` })).status, 201)
  for (const s of subs) await s.waitEvents(3)
  // a scrape both workers answered: the primary holds each one's part
  t.true(await eventually(async () => value((await scrape(node.base)).families, 'parkline_messages_delivered_total') === 24, 5000))
  // each worker stopped in turn (SO_REUSEPORT placed the subscribers: one of the two holds some)
  let socketOnWorkerBefore: Array<Promise<Socket>> = []
  for (const pid of children) {
    socketOnWorkerBefore = [socketOnWorker(node.port, 0), socketOnWorker(node.port, 1)]
    await Promise.all(socketOnWorkerBefore)
    process.kill(pid, 'SIGSTOP')
    let stopped = true
    t.teardown(() => { if (stopped) process.kill(pid, 'SIGCONT') })
    // a scrape the other worker answers (the primary waits 2 s for the stopped one's part): asked
    // on a connection to each worker in turn, so the stop stays well under the 10 s after which
    // the primary ends a worker that sent it nothing (lib/cluster.ts SILENT_MS)
    let families: Map<string, Family> | null = null
    for (let w = 0; w < 2 && families === null; w++) {
      const socket = await socketOnWorkerBefore[w]!
      const text = await scrapeOn(socket, 3000)
      socket.destroy()
      if (text !== null) families = parse(text)
    }
    t.not(families, null, 'a scrape answered while a worker was stopped')
    t.is(value(families!, 'parkline_messages_delivered_total'), 24, 'the stopped worker\'s deliveries are in the sum (its last part)')
    t.is(value(families!, 'parkline_messages_published_total'), 3)
    t.is(value(families!, 'parkline_subscribers', { transport: 'eventsource' }), 8)
    process.kill(pid, 'SIGCONT')
    stopped = false
    // the tries it held are answered now; a full scrape again before the other one stops
    t.true(await eventually(async () => value((await scrape(node.base)).families, 'parkline_messages_delivered_total') === 24, 10000))
  }
  // each was only slow, not replaced
  t.is(value((await scrape(node.base)).families, 'parkline_worker_restarts_total'), 0)
  t.is(readFileSync(`/proc/${node.proc.pid}/task/${node.proc.pid}/children`, 'utf8').trim().split(/\s+/).map(Number).sort().join(), [...children].sort().join())
  for (const s of subs) s.close()
})

test('Redis stopped and started: the log says lost and recovered, and why, parkline_store_up goes 0 then 1; a hung Redis is said to be one', async (t) => {
  const redis = await startRedis(t)
  const node = await serve(t, ['--workers', '1', '--redis-url', `redis://127.0.0.1:${redis.port}`, '--redis-command-timeout', '1000'], 'info')
  t.true(await eventually(() => node.log().includes('redis connected'), 5000))
  t.is(value((await scrape(node.base)).families, 'parkline_store_up'), 1)
  await redis.kill()
  t.true(await eventually(() => node.log().includes('redis unavailable'), 5000))
  t.is(value((await scrape(node.base)).families, 'parkline_store_up'), 0)
  await redis.restart()
  t.true(await eventually(() => node.log().includes('redis recovered'), 10000))
  t.true(await eventually(async () => value((await scrape(node.base)).families, 'parkline_store_up') === 1, 5000))
  const lines = logLines(t, node.log())
  const lost = lines.filter((l) => l.msg === 'redis unavailable: publishes answer 503 until it is back')
  t.is(lost.length, 1, 'one line per outage')
  t.regex(String(lost[0]!.cause), /connection (failed|closed)/)
  // alive but answering nothing (SIGSTOP): a command without an answer, not a lost connection
  const pid = redis.proc.pid!
  process.kill(pid, 'SIGSTOP')
  try {
    t.true(await eventually(() => logLines(t, node.log()).filter((l) => l.msg === lost[0]!.msg).length === 2, 15000), node.log())
  } finally {
    process.kill(pid, 'SIGCONT')
  }
  const hung = logLines(t, node.log()).filter((l) => l.msg === lost[0]!.msg)[1]!
  t.regex(String(hung.cause), /no answer within 1000 ms/)
})

test('--workers 2 on Redis: parkline_store_up is 1 for the node, not the sum of its workers; one outage is one fault, not one per worker', async (t) => {
  const redis = await startRedis(t)
  const node = await serve(t, ['--workers', '2', '--redis-url', `redis://127.0.0.1:${redis.port}`, '--redis-command-timeout', '1000'])
  t.true(await eventually(async () => value((await scrape(node.base)).families, 'parkline_store_up') === 1, 10000))
  // every scrape (each answered by either worker, merging both): never 2
  for (let i = 0; i < 6; i++) t.is(value((await scrape(node.base)).families, 'parkline_store_up'), 1)
  // Redis hangs past redisCommandTimeout: each worker's commands go unanswered, a fault for each
  const pid = redis.proc.pid!
  process.kill(pid, 'SIGSTOP')
  let stopped = true
  t.teardown(() => { if (stopped) process.kill(pid, 'SIGCONT') })
  // publishes on new connections, so that both workers (SO_REUSEPORT) send a command
  for (let i = 0; i < 8; i++) void fetch(`${node.base}/pub/hang`, { method: 'POST', body: 'x', headers: { connection: 'close' } }).catch(() => null)
  t.true(await eventually(async () => (await fetch(`${node.base}/health`, { headers: { connection: 'close' } })).status === 503, 10000))
  await new Promise((resolve) => setTimeout(resolve, 2500))
  process.kill(pid, 'SIGCONT')
  stopped = false
  t.true(await eventually(async () => value((await scrape(node.base)).families, 'parkline_store_up') === 1, 15000))
  // each worker saw the one outage (each is a node of the store): the node's figure is 1, not 2
  t.is(value((await scrape(node.base)).families, 'parkline_store_faults_total'), 1)
})

test('a subscriber refused at the connection limit is counted with reason="capacity"; /health stays 200 there (publishers are served)', async (t) => {
  const srv = await startServer(t, { maxSubscribers: 1 })
  const first = await SseClient.connect(srv.port, '/sub/cap')
  t.teardown(() => first.socket.destroy())
  // (a long-poll: its refusal is the status itself)
  const second = await fetch(`${srv.base}/sub/cap`)
  t.is(second.status, 503)
  await second.body?.cancel()
  const { families } = await scrape(srv.base)
  t.is(value(families, 'parkline_connections_refused_total', { reason: 'capacity' }), 1)
  t.is(value(families, 'parkline_connections_refused_total'), 1, 'no other reason')
  t.is((await fetch(`${srv.base}/health`)).status, 200)
  t.is((await fetch(`${srv.base}/pub/cap`, { method: 'POST', body: 'x' })).status, 201)
})

/** GET /metrics on an open connection; its body, or null with no whole answer within `ms`. */
async function scrapeOn (socket: Socket, ms: number): Promise<string | null> {
  return await new Promise((resolve) => {
    let got = ''
    const done = (v: string | null): void => { clearTimeout(timer); socket.off('data', onData); resolve(v) }
    const timer = setTimeout(() => { done(null) }, ms)
    const onData = (d: Buffer): void => {
      got += d.toString('latin1')
      const end = got.indexOf('\r\n\r\n')
      if (end === -1) return
      const len = Number(/content-length: (\d+)/i.exec(got.slice(0, end))?.[1] ?? -1)
      if (len >= 0 && got.length >= end + 4 + len) done(Buffer.from(got.slice(end + 4, end + 4 + len), 'latin1').toString('utf8'))
    }
    socket.on('data', onData)
    socket.write('GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
  })
}
