// A real redis-server on a free loopback port, started and killed by the test that asks for it.
// redis-server is required (npm test installs it: bin/test-deps.sh).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import net from 'node:net'
import { once } from 'node:events'
import type { ExecutionContext } from 'ava'
import { eventually, freePort } from './server.ts'

export function redisInstalled (): boolean {
  const r = spawnSync('redis-server', ['--version'], { encoding: 'utf8' })
  return r.status === 0
}

/** One inline command to Redis; resolves with the raw reply, or null when it cannot connect. */
export async function redisCommand (port: number, command: string): Promise<string | null> {
  return await new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    let buf = ''
    const done = (v: string | null): void => { s.destroy(); resolve(v) }
    s.setTimeout(1000, () => done(null))
    s.on('error', () => done(null))
    s.on('data', (d: Buffer) => { buf += d.toString(); if (buf.endsWith('\r\n')) done(buf) })
    s.on('connect', () => s.write(command + '\r\n'))
  })
}

/**
 * What the Redis on `port` is sent from now on, in the order it runs it (MONITOR), as the text
 * read so far; the connection ends with the test.
 */
export async function monitorRedis (t: ExecutionContext, port: number): Promise<{ seen: () => string, stop: () => void }> {
  const monitor = net.connect(port, '127.0.0.1')
  monitor.on('error', () => {})
  t.teardown(() => monitor.destroy())
  await once(monitor, 'connect')
  let seen = ''
  monitor.on('data', (d: Buffer) => { seen += d.toString('latin1') })
  monitor.write('MONITOR\r\n')
  if (!await eventually(() => seen.startsWith('+OK'), 5000)) throw new Error('MONITOR was not answered')
  return { seen: () => seen, stop: () => monitor.destroy() }
}

export interface Redis { port: number, proc: ChildProcess, restart: () => Promise<void>, kill: () => Promise<void> }

/** `dir`: where a `SAVE` writes its snapshot, read again by restart() (none: nothing survives a restart). */
export async function startRedis (t: ExecutionContext, port?: number, dir?: string): Promise<Redis> {
  if (!redisInstalled()) throw new Error('redis-server is not installed; these tests need it: apt-get install -y redis-server')
  const p = port ?? await freePort()
  const r: Redis = { port: p, proc: null as unknown as ChildProcess, restart: async () => {}, kill: async () => {} }
  const launch = async (): Promise<void> => {
    const proc = spawn('redis-server', ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      ...(dir === undefined ? [] : ['--dir', dir, '--dbfilename', 'snapshot.rdb'])], { stdio: 'ignore' })
    r.proc = proc
    const up = await eventually(async () => (await redisCommand(p, 'PING')) === '+PONG\r\n', 10000)
    if (!up) throw new Error(`redis-server did not start on port ${p}`)
  }
  r.kill = async () => {
    const proc = r.proc
    if ((proc as ChildProcess | null) === null || proc.exitCode !== null || proc.signalCode !== null) return
    process.kill(proc.pid!, 'SIGKILL')
    await once(proc, 'exit')
  }
  r.restart = launch
  // the teardown first: a redis-server that started but never answered is killed too
  t.teardown(() => r.kill())
  await launch()
  return r
}

