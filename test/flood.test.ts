// A pipelined publish flood on one process does not shut everybody else out (lib/raw-publish.ts,
// TURN_BUDGET_MS). libuv accepts one new connection per turn of the event loop; a turn that took
// every pipelined publish of every flooding connection grew with their number, so connections
// queued behind them in the kernel's accept queue waited seconds (a health check failed). A turn
// takes a bounded share now and the rest waits for later turns, first come first served.
//
// No clock in the assertion: what is counted is how many flood publishes were answered while a
// new connection waited for its `/health`, against how many the flood's own structure would have
// made the server take had every turn taken them all (each accepted flooding connection's INFLIGHT
// publishes, every turn).
import net from 'node:net'
import test from 'ava'
import { serve } from './helpers/node.ts'
import { openFlood } from '../benchmarks/suite/flood.ts'

const C = 400
const INFLIGHT = 16

test('a new connection is answered while a pipelined publish flood saturates the process: the flood gets a bounded share of each turn', async (t) => {
  t.timeout(90000)
  const node = await serve(t, ['--workers', '1'])
  const req = (i: number): string => `POST /pub/flood${i % 50} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nxx`
  // the flood: C connections, each with INFLIGHT publishes always outstanding
  const flood = await openFlood(node.port, C, INFLIGHT, req)
  t.teardown(flood.stop)
  // the probe waits behind the flood's connections not accepted yet. Had every turn taken every
  // pipelined publish, the n-th accept would come after a turn of n × INFLIGHT publishes: a queue
  // of C connections costs about INFLIGHT × C² / 2 (1,280,000 here; with C = 300 the code before
  // the budget answered 585,000-670,000 before it let the probe in, against 97,000-123,000 since).
  // A bounded turn costs about what two budgets hold per accept (here 171,000-181,000 in all).
  const bound = INFLIGHT * C * C / 5
  const before = flood.answered()
  const probe = net.connect(node.port, '127.0.0.1')
  probe.on('error', () => {})
  let health = ''
  const answeredProbe = new Promise<number>((resolve) => {
    probe.on('data', (d: Buffer) => {
      health += d.toString('latin1')
      if (health.includes('\r\n\r\n')) resolve(flood.answered() - before)
    })
  })
  probe.write('GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  // bounded: the flood stops once the bound is passed (then the probe is let in, and fails the test)
  const guard = setInterval(() => {
    if (flood.answered() - before > bound) flood.stop()
  }, 20)
  const during = await answeredProbe
  clearInterval(guard)
  const total = flood.answered()
  flood.stop()
  probe.destroy()
  t.regex(health, /^HTTP\/1\.1 200 /)
  t.true(during <= bound, `${during} flood publishes answered while a new connection waited for /health (bound ${bound})`)
  t.true(total > before, 'the flood was served meanwhile')
  t.log(`flood publishes answered while the probe waited: ${during} (bound ${bound}); answered before it: ${before}`)
})
