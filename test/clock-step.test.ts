// The server's clock steps forward and back (NTP) while a multiplexed long-poll client walks
// /sub/ca,cb: ids take the highest second the process has seen, so a channel's next id is never of
// an earlier second than another channel's last, which the client's cursor (in that later second)
// would count as delivered: nothing skipped, nothing repeated. The process's Date.now is shifted
// (this file runs in a worker of its own).
import test from 'ava'
import { publish, rawRequest, startServer } from './helpers/server.ts'

const realNow = Date.now.bind(Date)
let offset = 0
test.before(() => { Date.now = () => realNow() + offset })
test.after.always(() => { Date.now = realNow })

test('a multiplexed long-poll across a clock stepped forward then back: every message once, none parked for good', async (t) => {
  const srv = await startServer(t, { messageTimeout: 0 })
  let cursor: Record<string, string> = {}
  const poll = async (): Promise<string | null> => {
    const extra = Object.entries(cursor).map(([k, v]) => `${k}: ${v}\r\n`).join('')
    const r = await rawRequest(srv.port, `GET /sub/ca,cb HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}\r\n`, 800)
    if (r.status !== 200) return null
    cursor = { 'If-Modified-Since': r.headers['last-modified']!, 'If-None-Match': r.headers.etag! }
    return r.body
  }
  // a1 first: published the other way round, the two land in one second (tie: URL order, a1
  // first) or in two (b1 first) as the clock's second turns between them
  await publish(srv.base, 'ca', 'a1')
  await publish(srv.base, 'cb', 'b1')
  const got = [await poll(), await poll()]
  offset += 5000
  await publish(srv.base, 'ca', 'a2')
  got.push(await poll())
  offset -= 5000
  await publish(srv.base, 'cb', 'b2')
  got.push(await poll())
  // nothing more: a re-poll parks (null after its bounded wait), it does not replay
  got.push(await poll())
  t.deepEqual(got, ['a1', 'b1', 'a2', 'b2', null])
})
