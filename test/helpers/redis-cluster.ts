// Real Redis topologies on loopback, started and killed by the test that asks for them: a Redis
// Cluster of 3 masters + 3 replicas, and a master + replica watched by 3 Sentinels. Failover is
// real too (SIGKILL, then the cluster or the sentinels promote the replica), so tests can time it.
// redis-server, redis-cli and redis-sentinel are required (npm test installs them: bin/test-deps.sh).
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import fs from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import type { ExecutionContext } from 'ava'
import { redisCommand, redisInstalled } from './redis.ts'
import { eventually, freePort } from './server.ts'

export interface RedisProc {
  port: number
  pid: number
  /** SIGKILL (after a SIGCONT if stopped), resolved once the process has exited. */
  kill: () => Promise<void>
  /** SIGSTOP: the process keeps its sockets but answers nothing, as a hung server would. */
  stop: () => void
  /** SIGCONT. */
  cont: () => void
  /** Not exited (a stopped process is alive). */
  alive: () => boolean
  /**
   * Start it again on its port with its config (a cluster node keeps its nodes.conf: it rejoins,
   * as a replica of whoever took over), resolved once it answers PING.
   */
  restart: () => Promise<void>
}

export interface RedisCluster {
  /** All 6 nodes, in the order given to `redis-cli --cluster create` (masters first, at start). */
  nodes: RedisProc[]
  /** 'redis://127.0.0.1:PORT' of every node. */
  seeds: string[]
  /** The master serving the slot of `key`, as a reachable node's CLUSTER SLOTS says now. */
  masterOf: (key: string) => Promise<RedisProc>
  /** The nodes CLUSTER NODES names as masters (not failed) whose process is alive. */
  masters: () => Promise<RedisProc[]>
  /**
   * Until every reachable node (alive, not stopped) says cluster_state:ok, they all give the same
   * CLUSTER SLOTS, and its 16384 slots are served by reachable nodes that answer ROLE master.
   */
  waitHealthy: (ms?: number) => Promise<void>
  /** SIGKILL `master`, then wait until its slots are served by another master and the cluster is healthy. */
  failover: (master: RedisProc) => Promise<{ ms: number }>
  /**
   * Move the slot of `key` to master `to` as an operator's resharding does (IMPORTING, MIGRATING,
   * MIGRATE of its keys, SETSLOT NODE on the target, then the source, then the other masters).
   * `between` runs once the target serves the slot and before the source learns of it.
   */
  moveSlot: (key: string, to: RedisProc, between?: () => Promise<void>) => Promise<void>
}

export interface RedisSentinelSet {
  /** The master and the replica as started: these do not follow a failover (currentMaster does). */
  master: RedisProc
  replica: RedisProc
  sentinels: RedisProc[]
  /** The monitored master's name (`sentinel monitor NAME …`). */
  name: string
  /** '127.0.0.1:PORT' of every sentinel. */
  sentinelNodes: string[]
  /** The master's port, as the first sentinel that answers says (SENTINEL get-master-addr-by-name). */
  currentMaster: () => Promise<number>
  /**
   * SIGKILL the current master, then wait until every reachable sentinel names another one and it
   * answers ROLE master. The sentinels detect a down master (1 s) only while this runs.
   */
  failover: () => Promise<{ ms: number, newMasterPort: number }>
  /** The failovers the sentinels made since they started (the highest config-epoch they report). */
  failovers: () => Promise<number>
}

/** A RESP2 reply; an error reply is an Error. */
export type Resp = string | number | null | Error | Resp[]

const SLOTS = 16384

// a master's full sync is diskless by default (7.0), and waits 5 s for more replicas to share it:
// replicas would come up in sync 5 s late
const SYNC_AT_ONCE = ['--repl-diskless-sync-delay', '0']

/** Parse one RESP2 reply at `i` of latin1 text (one char per byte); null while incomplete. */
function parseReply (s: string, i: number): { v: Resp, end: number } | null {
  const nl = s.indexOf('\r\n', i)
  if (nl === -1) return null
  const line = s.slice(i + 1, nl)
  switch (s[i]) {
    case '+': return { v: line, end: nl + 2 }
    case '-': return { v: new Error(line), end: nl + 2 }
    case ':': return { v: Number(line), end: nl + 2 }
    case '$': {
      const n = Number(line)
      if (n < 0) return { v: null, end: nl + 2 }
      if (s.length < nl + 2 + n + 2) return null
      return { v: s.slice(nl + 2, nl + 2 + n), end: nl + 2 + n + 2 }
    }
    case '*': {
      const n = Number(line)
      if (n < 0) return { v: null, end: nl + 2 }
      const a: Resp[] = []
      let p = nl + 2
      for (let k = 0; k < n; k++) {
        const r = parseReply(s, p)
        if (r === null) return null
        a.push(r.v)
        p = r.end
      }
      return { v: a, end: p }
    }
    default: return { v: new Error(`unparsable reply: ${JSON.stringify(s.slice(i, i + 40))}`), end: s.length }
  }
}

/**
 * One command to Redis, its reply parsed; undefined when it cannot connect or no complete reply
 * comes within `ms` (a stopped or dead node). redisCommand's raw text is not enough here: CLUSTER
 * NODES or SENTINEL replicas replies may come in several reads, each of them ending in CRLF.
 */
export async function redisCall (port: number, args: string[], ms = 1000): Promise<Resp | undefined> {
  return (await redisCalls(port, [args], ms))?.[0]
}

/**
 * Commands sent in order on one connection, their replies in that order; undefined if the node
 * did not answer them all within `ms`. One connection matters where a command reads the
 * connection's own state: WAIT waits for the replicas to acknowledge this connection's writes.
 */
export async function redisCalls (port: number, commands: string[][], ms = 1000): Promise<Resp[] | undefined> {
  return await new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    let buf = ''
    const done = (v: Resp[] | undefined): void => { s.destroy(); resolve(v) }
    s.setTimeout(ms, () => done(undefined))
    s.on('error', () => done(undefined))
    s.on('close', () => done(undefined))
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1')
      const replies: Resp[] = []
      for (let at = 0; replies.length < commands.length;) {
        const r = parseReply(buf, at)
        if (r === null) return
        replies.push(r.v)
        at = r.end
      }
      done(replies)
    })
    s.on('connect', () => s.write(commands.map((args) => `*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')).join('')))
  })
}

/** One connection kept open: commands one at a time, each reply parsed (undefined after `ms`). */
export interface RedisSession {
  call: (args: string[], ms?: number) => Promise<Resp | undefined>
  close: () => void
}

/**
 * A connection to `port` that stays open, for a test that makes a node refuse new connections
 * (CONFIG SET maxclients 1) and must still talk to it afterwards to undo that.
 */
export async function redisSession (port: number): Promise<RedisSession> {
  const s = net.connect(port, '127.0.0.1')
  await once(s, 'connect')
  s.on('error', () => {})
  let buf = ''
  let waiting: ((v: Resp | undefined) => void) | null = null
  s.on('data', (d: Buffer) => {
    buf += d.toString('latin1')
    const r = parseReply(buf, 0)
    if (r === null || waiting === null) return
    buf = buf.slice(r.end)
    const w = waiting
    waiting = null
    w(r.v)
  })
  return {
    async call (args, ms = 2000) {
      return await new Promise((resolve) => {
        const timer = setTimeout(() => { waiting = null; resolve(undefined) }, ms)
        waiting = (v) => { clearTimeout(timer); resolve(v) }
        s.write(`*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join(''))
      })
    },
    close () { s.destroy() }
  }
}

async function callText (port: number, args: string[]): Promise<string | undefined> {
  const r = await redisCall(port, args)
  return typeof r === 'string' ? r : undefined
}

/** A flat [k, v, k, v] reply (SENTINEL replicas entries) as a record. */
function fields (r: Resp): Record<string, string> {
  const o: Record<string, string> = {}
  if (!Array.isArray(r)) return o
  for (let i = 0; i + 1 < r.length; i += 2) o[String(r[i])] = String(r[i + 1])
  return o
}

class RedisChild implements RedisProc {
  readonly port: number
  pid: number
  /** SIGSTOPped by stop(): alive but unable to answer, so left out of the health checks. */
  stopped = false
  #child: ChildProcess
  readonly #cmd: string
  readonly #args: string[]

  constructor (child: ChildProcess, port: number, cmd: string, args: string[]) {
    this.#child = child
    this.port = port
    this.pid = child.pid!
    this.#cmd = cmd
    this.#args = args
  }

  async restart (): Promise<void> {
    await this.kill()
    const child = spawn(this.#cmd, this.#args, { stdio: 'ignore' })
    child.on('error', () => {})
    this.#child = child
    this.pid = child.pid!
    this.stopped = false
    if (!await eventually(async () => (await redisCommand(this.port, 'PING')) === '+PONG\r\n', 10000)) throw new Error(`redis on ${this.port} did not answer after a restart`)
  }

  alive (): boolean {
    return this.#child.exitCode === null && this.#child.signalCode === null
  }

  reachable (): boolean {
    return this.alive() && !this.stopped
  }

  stop (): void {
    if (!this.alive()) return
    process.kill(this.pid, 'SIGSTOP')
    this.stopped = true
  }

  cont (): void {
    if (this.alive()) process.kill(this.pid, 'SIGCONT')
    this.stopped = false
  }

  async kill (): Promise<void> {
    if (!this.alive()) return
    // listening before the signal: an exit that comes at once is not missed
    const exited = once(this.#child, 'exit')
    if (this.stopped) this.cont()
    process.kill(this.pid, 'SIGKILL')
    await exited
  }
}

function installed (cmd: string): boolean {
  return spawnSync(cmd, ['--version'], { encoding: 'utf8' }).status === 0
}

function requireRedis (): void {
  if (!redisInstalled() || !installed('redis-cli')) throw new Error('redis-server and redis-cli are not installed; these tests need them: apt-get install -y redis-server')
}

/** A temporary folder for nodes.conf and sentinel configs, and the teardown that kills every process started in it, then removes it. */
async function workspace (t: ExecutionContext, prefix: string): Promise<{ dir: string, children: RedisChild[] }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix))
  const children: RedisChild[] = []
  // one teardown for all, registered before the first spawn: a process whose start failed half-way
  // is killed too, and the folder goes only once nothing writes in it any more
  t.teardown(async () => {
    await Promise.all(children.map(async (c) => await c.kill()))
    await fs.rm(dir, { recursive: true, force: true })
  })
  return { dir, children }
}

async function portFree (port: number): Promise<boolean> {
  const s = net.createServer()
  return await new Promise((resolve) => {
    s.once('error', () => resolve(false))
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)))
  })
}

/**
 * A free loopback port, not in `taken`; with `bus`, one whose cluster bus port (port + 10000) is
 * free and not taken too, so below 55535 (freePort draws from Linux's ephemeral range, up to 60999).
 */
export async function pickPort (taken: Set<number>, bus: boolean): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const p = await freePort()
    if (taken.has(p)) continue
    if (bus) {
      if (p >= 55535 || taken.has(p + 10000) || !await portFree(p + 10000)) continue
      // checked again after the await: another node's pick may have taken it meanwhile
      if (taken.has(p) || taken.has(p + 10000)) continue
      taken.add(p + 10000)
    }
    taken.add(p)
    return p
  }
  throw new Error(`no free loopback port${bus ? ' P with P+10000 free too' : ''} after 200 tries`)
}

/**
 * Spawn a Redis process on a port from `pick` and wait until it answers PING as itself (its INFO
 * process_id is our child's pid, not a process of another test on the same port). A port taken
 * between the pick and the bind makes redis exit: then it is tried again on another port.
 */
async function spawnRedis (children: RedisChild[], what: string, cmd: string, argv: (port: number) => Promise<string[]>, pick: () => Promise<number>): Promise<RedisChild> {
  let why = ''
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await pick()
    const args = await argv(port)
    const child = spawn(cmd, args, { stdio: 'ignore' })
    child.on('error', () => {})
    if (child.pid === undefined) throw new Error(`${what}: ${cmd} could not be started (is it installed?)`)
    const p = new RedisChild(child, port, cmd, args)
    children.push(p)
    await eventually(async () => !p.alive() || (await redisCommand(port, 'PING')) === '+PONG\r\n', 10000)
    const info = p.alive() ? await callText(port, ['INFO', 'server']) : undefined
    if (info?.includes(`process_id:${p.pid}\r\n`) === true) return p
    why = p.alive() ? 'did not answer PING as itself within 10 s' : `exited (${String(child.exitCode ?? child.signalCode)}): port taken?`
    await p.kill()
  }
  throw new Error(`${what} did not start on a loopback port after 3 tries: ${why}`)
}

/** Poll `check` (a reason while not done, null once done) until done, or throw naming what did not happen. */
async function until (what: string, ms: number, check: () => Promise<string | null>): Promise<void> {
  let reason: string | null = 'not checked yet'
  const ok = await eventually(async () => (reason = await check()) === null, ms)
  if (!ok) throw new Error(`${what} did not happen within ${ms} ms: ${String(reason)}`)
}

interface ClusterNode { id: string, port: number, flags: string[], masterId: string, slots: string[] }

/** CLUSTER NODES text, one entry a line: `id ip:port@bus flags master ping pong epoch link slot…`. */
function parseNodes (text: string): ClusterNode[] {
  return text.split('\n').filter((l) => l.trim() !== '').map((l) => {
    const f = l.trim().split(' ')
    return { id: f[0]!, port: Number(/:(\d+)@/.exec(f[1]!)?.[1]), flags: f[2]!.split(','), masterId: f[3]!, slots: f.slice(8) }
  })
}

const failed = (n: ClusterNode): boolean => n.flags.some((f) => f === 'fail' || f === 'fail?' || f === 'noaddr' || f === 'handshake')

/** CLUSTER SLOTS as sorted [start, end, master port] ranges; null when unreadable. */
function parseSlots (r: Resp | undefined): Array<[number, number, number]> | null {
  if (!Array.isArray(r)) return null
  const ranges: Array<[number, number, number]> = []
  for (const e of r) {
    if (!Array.isArray(e) || !Array.isArray(e[2])) return null
    ranges.push([Number(e[0]), Number(e[1]), Number(e[2][1])])
  }
  return ranges.sort((a, b) => a[0] - b[0])
}

export async function startCluster (t: ExecutionContext, opts: { nodeTimeoutMs?: number } = {}): Promise<RedisCluster> {
  requireRedis()
  const nodeTimeout = opts.nodeTimeoutMs ?? 1000
  const { dir, children } = await workspace(t, 'parkline-cluster-')
  const taken = new Set<number>()
  const argv = async (p: number): Promise<string[]> => ['--port', String(p), '--bind', '127.0.0.1', '--cluster-enabled', 'yes',
    '--cluster-config-file', path.join(dir, `nodes-${p}.conf`), '--cluster-node-timeout', String(nodeTimeout),
    '--save', '', '--appendonly', 'no', '--dir', dir, ...SYNC_AT_ONCE,
    // a replica is always eligible (however stale), and a cluster that is down answers nothing
    '--cluster-replica-validity-factor', '0', '--cluster-allow-reads-when-down', 'no']
  const nodes = await Promise.all(Array.from({ length: 6 }, async (_, i) =>
    await spawnRedis(children, `cluster node ${i + 1}`, 'redis-server', argv, async () => await pickPort(taken, true))))

  const create = await new Promise<{ ok: boolean, out: string }>((resolve) => {
    execFile('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '1', '--cluster-yes'],
      { encoding: 'utf8', timeout: 30000 }, (err, stdout, stderr) => resolve({ ok: err === null, out: stdout + stderr }))
  })
  if (!create.ok || !create.out.includes('[OK] All 16384 slots covered')) {
    throw new Error(`redis-cli --cluster create failed: ${create.out.slice(-2000)}`)
  }

  const byPort = (port: number): RedisChild | undefined => nodes.find((n) => n.port === port)
  const reachable = (): RedisChild[] => nodes.filter((n) => n.reachable())

  /** The first reachable node's answer to `args`. */
  const ask = async (args: string[]): Promise<Resp> => {
    for (const n of reachable()) {
      const r = await redisCall(n.port, args)
      if (r !== undefined && !(r instanceof Error)) return r
    }
    throw new Error(`no reachable cluster node answered ${args.join(' ')}`)
  }

  /** Why the cluster is not healthy, or null when it is; `also` adds a condition on the agreed slots. */
  const unhealthy = async (also?: (ranges: Array<[number, number, number]>) => string | null): Promise<string | null> => {
    const live = reachable()
    if (live.length === 0) return 'no reachable node'
    const views = await Promise.all(live.map(async (n) => {
      const [info, slots] = await Promise.all([callText(n.port, ['CLUSTER', 'INFO']), redisCall(n.port, ['CLUSTER', 'SLOTS'])])
      return { n, info, ranges: parseSlots(slots) }
    }))
    let agreed: string | null = null
    for (const { n, info, ranges } of views) {
      if (info === undefined || ranges === null) return `node ${n.port} did not answer CLUSTER INFO/SLOTS`
      if (!info.includes('cluster_state:ok')) return `node ${n.port} says ${/cluster_state:\w+/.exec(info)?.[0] ?? 'no cluster_state'}`
      const key = JSON.stringify(ranges)
      if (agreed !== null && key !== agreed) return `nodes disagree on CLUSTER SLOTS (${n.port}: ${key}, others: ${agreed})`
      agreed = key
    }
    const ranges = views[0]!.ranges!
    const covered = ranges.reduce((sum, [a, b]) => sum + b - a + 1, 0)
    if (covered !== SLOTS) return `CLUSTER SLOTS covers ${covered} of ${SLOTS} slots`
    for (const port of new Set(ranges.map((r) => r[2]))) {
      const m = byPort(port)
      if (m === undefined || !m.reachable()) return `slots are served by ${port}, which is not reachable`
      const role = await redisCall(port, ['ROLE'])
      if (!Array.isArray(role) || role[0] !== 'master') return `${port} serves slots but does not answer ROLE master`
    }
    return also?.(ranges) ?? null
  }

  const cluster: RedisCluster = {
    nodes,
    seeds: nodes.map((n) => `redis://127.0.0.1:${n.port}`),
    async masterOf (key) {
      const slot = await ask(['CLUSTER', 'KEYSLOT', key])
      const ranges = parseSlots(await ask(['CLUSTER', 'SLOTS']))
      const range = ranges?.find(([a, b]) => typeof slot === 'number' && slot >= a && slot <= b)
      const m = range === undefined ? undefined : byPort(range[2])
      if (m === undefined) throw new Error(`no cluster node serves slot ${String(slot)} of ${key}`)
      return m
    },
    async masters () {
      const text = await ask(['CLUSTER', 'NODES'])
      if (typeof text !== 'string') throw new Error('CLUSTER NODES gave no text')
      return parseNodes(text).filter((n) => n.flags.includes('master') && !failed(n))
        .map((n) => byPort(n.port)).filter((p): p is RedisChild => p !== undefined && p.alive())
    },
    async waitHealthy (ms = 15000) {
      await until('a healthy cluster', ms, async () => await unhealthy())
    },
    async failover (master) {
      const before = parseSlots(await ask(['CLUSTER', 'SLOTS']))?.filter((r) => r[2] === master.port) ?? []
      if (before.length === 0) throw new Error(`cluster node ${master.port} serves no slots: it is not a master`)
      const start = Date.now()
      await master.kill()
      // node timeout to PFAIL, gossip to FAIL, the replica's election delay (0.5-1 s), its election
      await until(`failover of master ${master.port}`, Math.max(20000, nodeTimeout * 20), async () => await unhealthy((ranges) => {
        const now = ranges.find(([a, b]) => before[0]![0] >= a && before[0]![0] <= b)
        return now === undefined || now[2] === master.port ? `slot ${before[0]![0]} is still served by ${master.port}` : null
      }))
      return { ms: Date.now() - start }
    },
    async moveSlot (key, to, between) {
      const slot = String(await ask(['CLUSTER', 'KEYSLOT', key]))
      const from = await cluster.masterOf(key)
      if (from === to) throw new Error(`slot ${slot} is already served by ${to.port}`)
      const idOf = async (n: RedisProc): Promise<string> => String(await redisCall(n.port, ['CLUSTER', 'MYID']))
      const [fromId, toId] = [await idOf(from), await idOf(to)]
      const ok = async (port: number, args: string[]): Promise<void> => {
        const r = await redisCall(port, args, 5000)
        if (r !== 'OK') throw new Error(`${args.join(' ')} on ${port}: ${String(r)}`)
      }
      await ok(to.port, ['CLUSTER', 'SETSLOT', slot, 'IMPORTING', fromId])
      await ok(from.port, ['CLUSTER', 'SETSLOT', slot, 'MIGRATING', toId])
      for (let i = 0; i < 100; i++) {
        const keys = await redisCall(from.port, ['CLUSTER', 'GETKEYSINSLOT', slot, '100'])
        if (!Array.isArray(keys)) throw new Error(`CLUSTER GETKEYSINSLOT on ${from.port}: ${String(keys)}`)
        if (keys.length === 0) break
        await ok(from.port, ['MIGRATE', '127.0.0.1', String(to.port), '', '0', '5000', 'KEYS', ...keys.map(String)])
      }
      await ok(to.port, ['CLUSTER', 'SETSLOT', slot, 'NODE', toId])
      await between?.()
      await ok(from.port, ['CLUSTER', 'SETSLOT', slot, 'NODE', toId])
      for (const m of await cluster.masters()) if (m !== from && m !== to) await ok(m.port, ['CLUSTER', 'SETSLOT', slot, 'NODE', toId])
      await cluster.waitHealthy()
    }
  }

  // healthy, and every replica in sync and known as such by every node: a master's replica can
  // only win the failover election if the other masters know whose replica it is
  await cluster.waitHealthy(20000)
  await until('3 replicas in sync with 3 masters, known by every node', 20000, async () => {
    for (const n of nodes) {
      const text = await callText(n.port, ['CLUSTER', 'NODES'])
      if (text === undefined) return `node ${n.port} did not answer CLUSTER NODES`
      const view = parseNodes(text)
      const replicas = view.filter((v) => v.flags.includes('slave') && v.masterId !== '-' && !failed(v))
      if (replicas.length !== 3) return `node ${n.port} knows ${replicas.length} replicas`
      if (view.some((v) => v.flags.includes('myself') && v.flags.includes('slave'))) {
        const repl = await callText(n.port, ['INFO', 'replication'])
        if (repl?.includes('master_link_status:up') !== true) return `replica ${n.port} has no link up to its master`
      }
    }
    return null
  })
  return cluster
}

/** A master and one replica of it (no sentinels), resolved once the replica is in sync. */
export async function startReplicated (t: ExecutionContext): Promise<{ master: RedisProc, replica: RedisProc }> {
  const { master, replica } = await replicated(t, 'parkline-replicated-', 'replicated')
  return { master, replica }
}

async function replicated (t: ExecutionContext, prefix: string, what: string): Promise<{ master: RedisChild, replica: RedisChild, dir: string, children: RedisChild[], pick: () => Promise<number> }> {
  requireRedis()
  const { dir, children } = await workspace(t, prefix)
  const taken = new Set<number>()
  const pick = async (): Promise<number> => await pickPort(taken, false)
  const data = (extra: string[]) => async (p: number): Promise<string[]> =>
    ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...SYNC_AT_ONCE, ...extra]
  const master = await spawnRedis(children, `${what} master`, 'redis-server', data([]), pick)
  const replica = await spawnRedis(children, `${what} replica`, 'redis-server', data(['--replicaof', '127.0.0.1', String(master.port)]), pick)
  await until(`replica ${replica.port} in sync with master ${master.port}`, 10000, async () =>
    (await callText(replica.port, ['INFO', 'replication']))?.includes('master_link_status:up') === true ? null : 'link not up')
  return { master, replica, dir, children, pick }
}

/** A sentinel's down-after-milliseconds while no test fails a master over, and while one does. */
const IDLE_DOWN_AFTER_MS = 60000
const FAILOVER_DOWN_AFTER_MS = 1000

export async function startSentinel (t: ExecutionContext, opts: { name?: string } = {}): Promise<RedisSentinelSet> {
  const name = opts.name ?? 'mymaster'
  // sentinels learn the replica from the master's INFO: in sync first, so they see it at once
  const { master, replica, dir, children, pick } = await replicated(t, 'parkline-sentinel-', 'sentinel set')

  // Debian ships redis-sentinel as its own package; without it, redis-server runs as one
  const [cmd, flag] = installed('redis-sentinel') ? ['redis-sentinel', []] : ['redis-server', ['--sentinel']]
  const sentinelArgv = async (p: number): Promise<string[]> => {
    // a file of its own, in the workspace: a sentinel rewrites its config as it learns
    const conf = path.join(dir, `sentinel-${p}.conf`)
    await fs.writeFile(conf, [`port ${p}`, 'bind 127.0.0.1', `dir ${dir}`,
      `sentinel monitor ${name} 127.0.0.1 ${master.port} 2`, `sentinel down-after-milliseconds ${name} ${IDLE_DOWN_AFTER_MS}`,
      `sentinel failover-timeout ${name} 5000`, `sentinel parallel-syncs ${name} 1`, ''].join('\n'))
    return [conf, ...flag]
  }
  const sentinels = await Promise.all([1, 2, 3].map(async (i) => await spawnRedis(children, `sentinel ${i}`, cmd, sentinelArgv, pick)))
  // hello messages (every 2 s, through the master) introduce the sentinels to each other
  await until('3 sentinels that know the master, the replica and each other', 15000, async () => {
    for (const s of sentinels) {
      const m = fields(await redisCall(s.port, ['SENTINEL', 'MASTER', name]) ?? [])
      if (m.flags !== 'master') return `sentinel ${s.port} sees the master as ${m.flags ?? 'unknown'}`
      const rs = await redisCall(s.port, ['SENTINEL', 'REPLICAS', name])
      const r = Array.isArray(rs) ? rs.map(fields).find((f) => f.port === String(replica.port)) : undefined
      if (r?.flags !== 'slave' || r['master-link-status'] !== 'ok') return `sentinel ${s.port} does not see replica ${replica.port} in sync`
      const others = await redisCall(s.port, ['SENTINEL', 'SENTINELS', name])
      if (!Array.isArray(others) || others.length !== 2) return `sentinel ${s.port} knows ${Array.isArray(others) ? others.length : 'no'} other sentinels`
    }
    return null
  })

  // A sentinel fails a master over once it has not answered for down-after: 1 s only while a test
  // fails one over, else a pause of a loaded machine fails the master over unasked, or fails the
  // promoted one back to the old master as it restarts (CI saw both: a node that never saw the
  // promoted master, one that counted two failovers)
  const downAfter = async (ms: number): Promise<void> => {
    await Promise.all(sentinels.filter((s) => s.reachable()).map(async (s) => {
      const r = await redisCall(s.port, ['SENTINEL', 'SET', name, 'down-after-milliseconds', String(ms)])
      if (r !== 'OK') throw new Error(`sentinel ${s.port}: SENTINEL SET down-after-milliseconds: ${String(r)}`)
    }))
  }
  const masterPort = async (s: RedisChild): Promise<number | undefined> => {
    const r = await redisCall(s.port, ['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name])
    return Array.isArray(r) && r.length === 2 ? Number(r[1]) : undefined
  }
  const set: RedisSentinelSet = {
    master,
    replica,
    sentinels,
    name,
    sentinelNodes: sentinels.map((s) => `127.0.0.1:${s.port}`),
    async currentMaster () {
      for (const s of sentinels.filter((s) => s.reachable())) {
        const p = await masterPort(s)
        if (p !== undefined) return p
      }
      throw new Error(`no reachable sentinel named the master of ${name}`)
    },
    async failover () {
      const oldPort = await set.currentMaster()
      const old = [master, replica].find((p) => p.port === oldPort)
      if (old === undefined) throw new Error(`the sentinels name ${oldPort} as master, which this set did not start`)
      const start = Date.now()
      await downAfter(FAILOVER_DOWN_AFTER_MS)
      await old.kill()
      let newMasterPort = 0
      // down-after (1 s), quorum, leader election, promotion; then the hello messages carry the
      // new master to the sentinels that did not lead the failover
      await until(`sentinel failover away from ${oldPort}`, 30000, async () => {
        const ports = await Promise.all(sentinels.filter((s) => s.reachable()).map(masterPort))
        if (ports.length === 0) return 'no reachable sentinel'
        if (ports.some((p) => p === undefined || p === oldPort) || new Set(ports).size !== 1) return `sentinels name ${ports.join(', ')}`
        const role = await redisCall(ports[0]!, ['ROLE'])
        if (!Array.isArray(role) || role[0] !== 'master') return `${ports[0]!} does not answer ROLE master yet`
        newMasterPort = ports[0]!
        return null
      })
      await downAfter(IDLE_DOWN_AFTER_MS)
      return { ms: Date.now() - start, newMasterPort }
    },
    async failovers () {
      const epochs = await Promise.all(sentinels.filter((s) => s.reachable()).map(async (s) => Number(fields(await redisCall(s.port, ['SENTINEL', 'MASTER', name]) ?? [])['config-epoch'] ?? 0)))
      return Math.max(0, ...epochs)
    }
  }
  return set
}
