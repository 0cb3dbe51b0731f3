// lib/proc-sched.ts against real processes: one asleep, one stopped, one that shares a core with
// three others that never sleep (each gets about a quarter of it, so it waits for the core about
// three quarters of the time, in waits the kernel counts as each ends), one that gets almost no
// core (idle policy beside a process at nice -20: a wait that has not ended is not counted, so the
// kernel may count none; its main thread may sleep meanwhile, waiting for V8's helper threads, which
// wait for a core in turn), and one that never sleeps on a core no other test pins to. Serial: each
// test's processes would be the others' neighbours. Every child ends by itself within 8 s and
// is killed in teardown. Needs Linux, util-linux's taskset and chrt, and root (nice -20), as the
// README's `npm test` is run; the cores used are the first and last this process may run on
// (Cpus_allowed_list: a container's cpuset need not start at 0).
import test from 'ava'
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import { readSched, starved, type Sched } from '../../lib/proc-sched.ts'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** The cores this process may run on (/proc/self/status Cpus_allowed_list: "0-1", "2,4-6"). */
function allowedCores (): number[] {
  const list = /^Cpus_allowed_list:\s*(\S+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]!
  const cores: number[] = []
  for (const part of list.split(',')) {
    const [a, b] = part.split('-').map(Number) as [number, number | undefined]
    for (let c = a; c <= (b ?? a); c++) cores.push(c)
  }
  return cores
}
const CORES = allowedCores()
/** Where the tests that share a core pin their processes. */
const FIRST = String(CORES[0])
/** Where the one that wants a core of its own pins its process. */
const LAST = String(CORES[CORES.length - 1])

test.before(() => {
  // said plainly, rather than failing later for a reason that is not the code's
  if (process.getuid?.() !== 0) throw new Error('these tests need root (a process at nice -20), as `npm test` is run (README)')
})

function child (t: { teardown: (fn: () => void) => void }, script: string, core: string | null = null): ChildProcess {
  const argv = [process.execPath, '-e', script]
  const c = core === null ? spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'ignore'] }) : spawn('taskset', ['-c', core, ...argv], { stdio: ['ignore', 'pipe', 'ignore'] })
  t.teardown(() => { if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL') })
  return c
}

/** Says `ready` once started (node loaded: no more reading files), then never sleeps for 8 s. */
const BUSY = 'process.stdout.write("ready\\n"); const end = Date.now() + 8000; while (Date.now() < end) {}'
/** Says `ready` once started, then sleeps for 8 s. */
const ASLEEP = 'process.stdout.write("ready\\n"); setTimeout(() => {}, 8000)'

/** Its `ready` line came. */
async function started (c: ChildProcess): Promise<void> {
  let out = ''
  for await (const d of c.stdout!) {
    out += String(d)
    if (out.includes('ready')) return
  }
  throw new Error('no ready line')
}

test.serial('a process asleep waits for no core: not starved', async (t) => {
  const c = child(t, ASLEEP)
  await started(c)
  const from = readSched(c.pid!, performance.now())
  t.not(from, null, 'Linux with /proc/<pid>/schedstat')
  await sleep(1200)
  const to = readSched(c.pid!, performance.now())
  t.false(to!.stopped)
  t.false(to!.runnable)
  t.false(starved(from, to, false))
})

test.serial('a stopped process is never starved, whatever it waited before', async (t) => {
  const c = child(t, ASLEEP)
  await started(c)
  c.kill('SIGSTOP')
  await sleep(200)
  const from = readSched(c.pid!, performance.now())
  await sleep(800)
  const to = readSched(c.pid!, performance.now())
  t.true(to!.stopped)
  t.false(starved(from, to, true))
  // a reading made before it stopped, with all the time since counted as waiting, still says stopped
  t.false(starved({ at: from!.at - 1000, stopped: false, runnable: true, runMs: 0, waitMs: 0 }, to, true))
  c.kill('SIGCONT')
})

test.serial('a busy process sharing its core with three others that never sleep waits for it most of the time: starved', async (t) => {
  const hogs = [child(t, BUSY, FIRST), child(t, BUSY, FIRST), child(t, BUSY, FIRST)]
  const c = child(t, BUSY, FIRST)
  // (taskset has exec'd node by then: the pid is the busy process itself)
  await Promise.all([...hogs, c].map(started))
  const from = readSched(c.pid!, performance.now())
  await sleep(1500)
  const to = readSched(c.pid!, performance.now())
  t.false(to!.stopped)
  t.true(starved(from, to, false), `waited ${(to!.waitMs - from!.waitMs).toFixed(0)} of ${(to!.at - from!.at).toFixed(0)} ms`)
})

test.serial('a pid that is gone reads as null, and null is never starved', async (t) => {
  const c = child(t, 'process.exit(0)')
  await once(c, 'exit')
  t.is(readSched(c.pid!, performance.now()), null)
  t.false(starved(null, null, true))
})

/** Readings every 250 ms for `ms`: the first, the last, and whether it was runnable at each. */
async function watch (pid: number, ms: number): Promise<{ from: Sched, to: Sched, runnable: boolean }> {
  const from = readSched(pid, performance.now())!
  let runnable = from.runnable
  let to = from
  for (let waited = 0; waited < ms; waited += 250) {
    await sleep(250)
    to = readSched(pid, performance.now())!
    runnable &&= to.runnable
  }
  return { from, to, runnable }
}

test.serial('a process that gets almost no core (idle policy beside a process at nice -20 that never sleeps): runnable throughout, on a core almost never, starved', async (t) => {
  const c = child(t, BUSY, FIRST)
  await started(c)
  // started, it reads no more files: from now on it only ever waits for a core
  const hog = spawn('taskset', ['-c', FIRST, 'nice', '-n', '-20', process.execPath, '-e', BUSY], { stdio: ['ignore', 'pipe', 'ignore'] })
  t.teardown(() => { if (hog.exitCode === null && hog.signalCode === null) hog.kill('SIGKILL') })
  await started(hog)
  execFileSync('chrt', ['-a', '-i', '-p', '0', String(c.pid)], { stdio: 'ignore' })
  await sleep(500)
  const w = await watch(c.pid!, 2000)
  t.true(w.runnable)
  t.true(w.to.runMs - w.from.runMs < 500, `on a core ${(w.to.runMs - w.from.runMs).toFixed(0)} ms`)
  t.true(starved(w.from, w.to, w.runnable))
  // (the kernel may have counted none of its wait: one that has not ended is not in schedstat)
  t.log(`on a core ${(w.to.runMs - w.from.runMs).toFixed(0)} ms, waited ${(w.to.waitMs - w.from.waitMs).toFixed(0)} ms of ${(w.to.at - w.from.at).toFixed(0)} ms`)
})

test.serial('a process that never sleeps, at nice -20 on a core no other test here pins to: runnable throughout, on a core most of the time, not starved', async (t) => {
  // the last core: the other tests here pin to the first; at nice -20, so that other processes on
  // that core (a CI run's other test files) take little of it
  const c = spawn('taskset', ['-c', LAST, 'nice', '-n', '-20', process.execPath, '-e', BUSY], { stdio: ['ignore', 'pipe', 'ignore'] })
  t.teardown(() => { if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL') })
  await started(c)
  const w = await watch(c.pid!, 2000)
  t.true(w.runnable)
  t.false(starved(w.from, w.to, w.runnable), `on a core ${(w.to.runMs - w.from.runMs).toFixed(0)} ms, waited ${(w.to.waitMs - w.from.waitMs).toFixed(0)} ms of ${(w.to.at - w.from.at).toFixed(0)} ms`)
})
