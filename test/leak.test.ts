// Detached subscribers and drained channels are collected: a child process (node --expose-gc)
// holds only WeakRefs to every Subscriber and Channel after its clients left and its channels were
// deleted or expired (test/helpers/leak-child.ts).
import { spawn } from 'node:child_process'
import test from 'ava'
import { exitedWithOutput } from './helpers/server.ts'

test('after 400 subscribers of every transport left and their 50 channels were deleted or expired, none of their objects is reachable', async (t) => {
  const proc = spawn(process.execPath, ['--expose-gc', 'test/helpers/leak-child.ts'], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { proc.kill('SIGKILL') })
  let out = ''
  proc.stdout.on('data', (d: Buffer) => { out += d.toString() })
  const code = await exitedWithOutput(proc)
  t.is(code, 0, out)
  const r = JSON.parse(out.trim()) as Record<string, number>
  t.is(r.counted, 400)
  t.is(r.subscribers, 400)
  t.is(r.channels, 50)
  t.is(r.table, 0)
  t.is(r.registry, 0)
  t.is(r.subscribersAlive, 0, 'Subscriber records still reachable')
  t.is(r.channelsAlive, 0, 'Channel records still reachable')
})
