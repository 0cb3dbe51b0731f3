// Which Redis client for the Redis engine: ioredis vs node-redis, measured against a local
// redis-server. Three figures per client, one client at a time, same server:
//   rtt   sequential EVALSHA round-trips/s (one in flight: latency-bound, like one publisher)
//   conc  EVALSHA/s with WINDOW in flight (auto-pipelining: many publishers on one node)
//   pubsub SPUBLISH -> SSUBSCRIBE deliveries/s, 200-byte binary payloads received as Buffers
// Usage: redis-server --port 6390 --save '' --appendonly no &
//        node benchmarks/redis-client.ts redis://127.0.0.1:6390
// (needs both clients next to each other: `npm install --no-save ioredis redis`; Parkline itself
// depends on @redis/client only, the client inside node-redis)
import { readFileSync } from 'node:fs'

/** Loaded by name at run time: neither is a dependency of its own in every checkout. */
async function load (name: string): Promise<any> {
  return await import(name)
}

function version (name: string): string {
  try {
    return JSON.parse(readFileSync(`node_modules/${name}/package.json`, 'utf8')).version
  } catch {
    return '?'
  }
}

const url = process.argv[2] ?? 'redis://127.0.0.1:6390'
const N = Number(process.env.N ?? 20000)
const WINDOW = Number(process.env.WINDOW ?? 200)
const SCRIPT = "local t = redis.call('TIME') local n = redis.call('HINCRBY', KEYS[1], 'n', 1) return {tonumber(t[1]), n}"
const payload = Buffer.alloc(200, 0xfe)

interface Client {
  name: string
  evalsha (sha: string, key: string): Promise<unknown>
  load (script: string): Promise<string>
  spublish (ch: string, msg: Buffer): Promise<unknown>
  ssubscribe (ch: string, onMessage: (msg: Buffer) => void): Promise<void>
  close (): Promise<void>
}

async function ioredisClient (): Promise<Client> {
  const { Redis } = await load('ioredis')
  const cmd = new Redis(url, { enableAutoPipelining: true, lazyConnect: true })
  const sub = new Redis(url, { lazyConnect: true })
  await cmd.connect(); await sub.connect()
  return {
    name: 'ioredis ' + version('ioredis'),
    evalsha: (sha, key) => cmd.evalsha(sha, 1, key),
    load: async (s) => String(await cmd.script('LOAD', s)),
    spublish: (ch, m) => cmd.spublish(ch, m),
    ssubscribe: async (ch, on) => { sub.on('smessageBuffer', (_c: Buffer, m: Buffer) => on(m)); await sub.ssubscribe(ch) },
    close: async () => { cmd.disconnect(); sub.disconnect() }
  }
}

async function nodeRedisClient (): Promise<Client> {
  const { createClient } = await load('redis')
  const cmd = createClient({ url })
  const sub = createClient({ url })
  await cmd.connect(); await sub.connect()
  return {
    name: 'redis (node-redis) ' + version('redis'),
    evalsha: (sha, key) => cmd.sendCommand(['EVALSHA', sha, '1', key]),
    load: async (s) => String(await cmd.sendCommand(['SCRIPT', 'LOAD', s])),
    spublish: (ch, m) => cmd.sendCommand(['SPUBLISH', ch, m]),
    ssubscribe: async (ch, on) => { await sub.sSubscribe(ch, (m: Buffer) => on(m), true) },
    close: async () => { cmd.destroy(); sub.destroy() }
  }
}

async function windowed (n: number, window: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  const t0 = performance.now()
  let next = 0
  const lane = async (): Promise<void> => { while (next < n) await fn(next++) }
  await Promise.all(Array.from({ length: window }, lane))
  return n / ((performance.now() - t0) / 1000)
}

async function measure (c: Client): Promise<Record<string, number>> {
  const sha = await c.load(SCRIPT)
  await windowed(2000, 50, () => c.evalsha(sha, 'warm')) // warm-up
  const rtt = await windowed(N / 4, 1, () => c.evalsha(sha, 'k'))
  const conc = await windowed(N, WINDOW, () => c.evalsha(sha, 'k'))
  let got = 0
  let done: () => void = () => {}
  const all = new Promise<void>((resolve) => { done = resolve })
  await c.ssubscribe('bench', (m) => { if (m.length === payload.length && ++got === N) done() })
  const t0 = performance.now()
  await windowed(N, WINDOW, () => c.spublish('bench', payload))
  await all
  const pubsub = N / ((performance.now() - t0) / 1000)
  await c.close()
  return { rtt: Math.round(rtt), conc: Math.round(conc), pubsub: Math.round(pubsub) }
}

const rounds = Number(process.env.ROUNDS ?? 3)
for (let r = 0; r < rounds; r++) {
  for (const make of [ioredisClient, nodeRedisClient]) {
    const c = await make()
    const name = c.name
    const m = await measure(c)
    process.stdout.write(`${name.padEnd(28)} round ${r + 1}: rtt ${m.rtt}/s  evalsha x${WINDOW} ${m.conc}/s  spublish->ssubscribe ${m.pubsub}/s\n`)
  }
}
