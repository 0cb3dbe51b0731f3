// V8's background threads per server process (lib/gc-threads.ts): chosen for the host, set by
// re-executing the single process in place (same pid), passed to forked workers, and never
// overriding a --v8-pool-size given to Node.
import { execFileSync, fork, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import test from 'ava'
import { gcThreads, gcThreadsFor, poolSizeGiven, restartBlocked, workerExecArgv } from '../lib/gc-threads.ts'
import { resolveOptions } from '../lib/config.ts'
import { ConfigError } from '../lib/errors.ts'
import { eventually, freePort, publish, SseClient } from './helpers/server.ts'
import { serve } from './helpers/node.ts'

function cmdline (pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a.length > 0)
}

/** V8 platform workers: the threads named "V8Worker" (Node 24; "V8 DefaultWorke" in older lines), from /proc/PID/task/TID/comm. */
function v8Workers (pid: number): number {
  const out = execFileSync('sh', ['-c', `cat /proc/${pid}/task/*/comm`], { encoding: 'utf8' })
  return out.split('\n').filter((n) => n === 'V8Worker' || n.startsWith('V8 DefaultWorke')).length
}

test('chosen for the host: cores per server process less one, from 1 to Node\'s 4', (t) => {
  t.is(gcThreadsFor(1, 1), 1)
  t.is(gcThreadsFor(2, 1), 1)
  t.is(gcThreadsFor(2, 2), 1)
  t.is(gcThreadsFor(4, 1), 3)
  t.is(gcThreadsFor(16, 1), 4)
  t.is(gcThreadsFor(16, 16), 1)
  t.is(gcThreadsFor(16, 4), 3)
  t.is(gcThreads({ gcThreads: 6 }, 2, 1), 6)
  t.is(gcThreads({ gcThreads: 0 }, 8, 2), 3)
  t.throws(() => resolveOptions({ gcThreads: 65 }), { instanceOf: ConfigError, message: /gcThreads.*>= 0 and <= 64/ })
  t.throws(() => resolveOptions({ gcThreads: -1 }), { instanceOf: ConfigError })
})

test('a pool size given to Node wins: on its command line or in NODE_OPTIONS', (t) => {
  t.false(poolSizeGiven(['--import', 'x.mjs'], ''))
  t.true(poolSizeGiven(['--v8-pool-size=2'], ''))
  t.true(poolSizeGiven([], '--max-old-space-size=100 --v8-pool-size=3'))
  t.false(poolSizeGiven([], '--v8-pool-sizes=3'))
  t.deepEqual(workerExecArgv(2, ['--cpu-prof']), ['--v8-pool-size=2', '--cpu-prof'])
  t.deepEqual(workerExecArgv(2, ['--v8-pool-size=4']), ['--v8-pool-size=4'])
  // never twice, never under a debugger (command line or NODE_OPTIONS), never with an IPC channel
  // (this test runs in ava's forked worker: it has one)
  t.is(restartBlocked({ PARKLINE_GC_RESTARTED: '1' }), 'restarted already')
  t.is(restartBlocked({ NODE_OPTIONS: '--v8-pool-size=2' }), 'a --v8-pool-size was given to Node')
  t.is(restartBlocked({ NODE_OPTIONS: '--max-old-space-size=512 --inspect=0' }), 'being debugged')
  t.is(restartBlocked({}), 'started with an IPC channel')
})

test('the single process restarts itself in place with the host\'s thread count, and serves', async (t) => {
  const node = await serve(t, ['--workers', '1'])
  const pid = node.proc.pid!
  const want = gcThreadsFor(availableParallelism(), 1)
  // the pid the test spawned is the server: execve kept it (and its stdio)
  t.true(cmdline(pid).includes('--v8-pool-size=' + want), cmdline(pid).join(' '))
  t.is(v8Workers(pid), want)
  const sub = await SseClient.connect(node.port, '/sub/gct')
  await sub.until(() => sub.comments.includes(': hi'))
  t.is((await publish(node.base, 'gct', 'one')).status, 201)
  await sub.until(() => sub.events.length === 1)
  t.is(sub.events[0]!.data, 'one')
  sub.close()
})

test.serial('--gc-threads sets the count; a --v8-pool-size given to Node is left as it is', async (t) => {
  const three = await serve(t, ['--workers', '1', '--gc-threads', '3'])
  t.true(cmdline(three.proc.pid!).includes('--v8-pool-size=3'))
  t.is(v8Workers(three.proc.pid!), 3)
  // serial: NODE_OPTIONS reaches every process this file spawns meanwhile
  const prev = process.env.NODE_OPTIONS
  process.env.NODE_OPTIONS = '--v8-pool-size=2'
  try {
    const given = await serve(t, ['--workers', '1', '--gc-threads', '3'])
    t.false(cmdline(given.proc.pid!).some((a) => a.startsWith('--v8-pool-size')))
    t.is(v8Workers(given.proc.pid!), 2)
  } finally {
    if (prev === undefined) delete process.env.NODE_OPTIONS
    else process.env.NODE_OPTIONS = prev
  }
})

test('workers are forked with the thread count for their share of the host', async (t) => {
  const node = await serve(t, ['--workers', '2'])
  const want = gcThreadsFor(availableParallelism(), 2)
  const kids = execFileSync('ps', ['--ppid', String(node.proc.pid), '-o', 'pid='], { encoding: 'utf8' }).trim().split(/\s+/).filter(Boolean).map(Number)
  t.is(kids.length, 2)
  for (const pid of kids) {
    t.true(cmdline(pid).includes('--v8-pool-size=' + want), cmdline(pid).join(' '))
    t.is(v8Workers(pid), want)
  }
})

test('a server started with an IPC channel (fork, PM2, node:cluster) keeps it: no restart', async (t) => {
  const port = await freePort()
  const child = fork('bin/parkline.ts', ['serve', '--workers', '1', '--port', String(port), '--host', '127.0.0.1', '--log-level', 'error', '--drain-window', '0'], { stdio: 'ignore' })
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await once(child, 'exit')
    }
  })
  let disconnected = false
  child.on('disconnect', () => { disconnected = true })
  const up = await eventually(async () => {
    try { return (await fetch(`http://127.0.0.1:${port}/health`)).status === 200 } catch { return false }
  }, 20000)
  t.true(up)
  t.false(cmdline(child.pid!).some((a) => a.startsWith('--v8-pool-size')))
  t.false(disconnected)
  t.true(child.connected)
})

test('the restart leaves a shared stdout pipe blocking, as it found it', async (t) => {
  t.timeout(120000)
  // stdout and stderr are one pipe; the server writes to it and exits on SIGINT once it listens
  // (bounded: 60 s, a busy host's start); then grep, on the same pipe, reads its flags
  const port = await freePort()
  const script = `exec 2>&1; node bin/parkline.ts serve --workers 1 --port ${port} --host 127.0.0.1 --log-level info --drain-window 0 & pid=$!; ` +
    `for i in $(seq 1 600); do (exec 3<>/dev/tcp/127.0.0.1/${port}) 2>/dev/null && break; sleep 0.1; done; ` +
    'kill -INT $pid; wait $pid; grep ^flags /proc/self/fdinfo/1'
  const r = spawnSync('bash', ['-c', script], { encoding: 'utf8', env: { ...process.env, PATH: `${process.execPath.replace(/\/node$/, '')}:${process.env.PATH}` }, timeout: 90000 })
  t.regex(r.stdout, /parkline listening/)
  const flags = /^flags:\s+(\d+)/m.exec(r.stdout)
  t.truthy(flags, r.stdout + r.stderr)
  // O_NONBLOCK is 04000 (octal)
  t.is(parseInt(flags![1]!, 8) & 0o4000, 0)
})
