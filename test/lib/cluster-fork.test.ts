// lib/cluster.ts Primary: a fork that Node refuses at once (it throws, where for EAGAIN and a few
// other errors it emits 'error') is a failed start like a worker that dies before it listens, not
// an exception that ends the primary and every worker with it. Node throws at once for E2BIG,
// ENOMEM and ETXTBSY, which a test cannot bring about on demand; it also throws, at the same place,
// for a Node flag holding a NUL byte, which is what this test gives the primary.
import pino from 'pino'
import test from 'ava'
import { Primary } from '../../lib/cluster.ts'

test('a fork that throws at once is logged and counted as a failed start: the primary gives up, it does not crash', async (t) => {
  const lines: Array<Record<string, unknown>> = []
  const log = pino({ level: 'info' }, { write: (s: string) => { lines.push(JSON.parse(s) as Record<string, unknown>) } })
  const primary = new Primary('bin/parkline.ts', log, ['--max-old-space-size=64\0'])
  const gaveUp = new Promise<number | null>((resolve) => { primary.onGiveUp = resolve })
  primary.start(2)
  const status = await gaveUp
  await primary.stop('SIGTERM', 1000)
  t.is(status, null, 'no process, so no exit status')
  const failed = lines.find((l) => l.msg === 'worker could not be forked')
  t.truthy(failed, JSON.stringify(lines))
  t.is(failed!.worker, 0)
  t.regex(String(failed!.error), /null bytes/)
  t.truthy(lines.find((l) => l.msg === 'worker exited before it listened: stopping' && l.failedStarts === 1), JSON.stringify(lines))
  // the second worker was never forked: the deployment stopped at the first failure
  t.falsy(lines.find((l) => l.worker === 1), JSON.stringify(lines))
  t.deepEqual(primary.workers.map((w) => w.child), [null, null])
})
