// A multiplexed subscription learns of every channel's loss, each signalled once, naming that
// channel (docs/api.md 12.1), when it resumes over real sockets: a channel whose unread message
// expired and whose record was dropped meanwhile, a restart of the server (every record new), and
// a multipart long-poll answer whose parts come from two channels that both lost messages.
import test, { type ExecutionContext } from 'ava'
import { serve } from './helpers/node.ts'
import { redisCommand, startRedis } from './helpers/redis.ts'
import { SseClient, eventually, publish as publishOnce, rawRequest, startServer, type Running } from './helpers/server.ts'

/**
 * A publish, retried while it is answered 503 as a publisher does (a Redis node not up yet, or a
 * store command past its deadline on a loaded host), for at most 20 s; anything but 2xx then
 * throws. Unchecked, a 503 left a message out that the test went on to count as published.
 */
async function publish (base: string, channel: string, body: string): Promise<Awaited<ReturnType<typeof publishOnce>>> {
  const until = Date.now() + 20000
  for (;;) {
    const r = await publishOnce(base, channel, body)
    if (r.status === 503 && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 200))
      continue
    }
    if (r.status < 200 || r.status > 299) throw new Error(`publish ${body} to ${channel}: ${r.status} ${r.text}`)
    return r
  }
}

/** Every `Parkline-Gap` header line of a raw answer, in order. */
function gapLines (raw: string): string[] {
  const head = raw.slice(0, raw.indexOf('\r\n\r\n'))
  return head.split('\r\n').filter((l) => /^parkline-gap:/i.test(l)).map((l) => l.slice(l.indexOf(':') + 1).trim())
}

/** The position a requested id's bracket names (`T:0,[1]` → 1). */
function bracketAt (requested: string): number {
  return requested.slice(requested.indexOf(':') + 1).split(',').findIndex((x) => x.startsWith('['))
}

interface Poll { status: number, body: string, gaps: string[], cursor: string }

/** One long-poll from `cursor` (If-Modified-Since and If-None-Match, '' for none). */
async function poll (port: number, path: string, cursor: string): Promise<Poll> {
  const [lm, etag] = cursor === '' ? ['', ''] : cursor.split('|') as [string, string]
  const extra = cursor === '' ? '' : `If-Modified-Since: ${lm}\r\nIf-None-Match: ${etag}\r\n`
  const r = await rawRequest(port, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}\r\n`, 4000)
  return { status: r.status, body: r.body, gaps: gapLines(r.raw), cursor: `${r.headers['last-modified']}|${r.headers.etag}` }
}

/** A real Redis and two Parkline nodes on it (in this process). */
async function twoRedisNodes (t: ExecutionContext, options: Record<string, unknown> = {}): Promise<{ redisPort: number, one: Running, two: Running }> {
  const redis = await startRedis(t)
  const redisUrl = `redis://127.0.0.1:${redis.port}`
  return { redisPort: redis.port, one: await startServer(t, { ...options, redisUrl }), two: await startServer(t, { ...options, redisUrl }) }
}

/** `<a>1` published on `a` and `<b>1` on `b`, read by two long-polls of `/sub/a,b`: what they read, and the cursor after both. */
async function readPair (srv: { base: string, port: number }, a: string, b: string): Promise<{ read: string[], cursor: string }> {
  await publish(srv.base, a, a[1] + '1')
  await publish(srv.base, b, b[1] + '1')
  let cursor = ''
  const read: string[] = []
  for (let i = 0; i < 2; i++) {
    const p = await poll(srv.port, `/sub/${a},${b}`, cursor)
    read.push(p.body)
    cursor = p.cursor
  }
  return { read, cursor }
}

const expired = test.macro({
  async exec (t: ExecutionContext, deployment: 'one process' | '--workers 2') {
    // (a timeout of a few seconds: the first two messages must not expire before they are read on
    // a machine busy with other tests)
    const srv = deployment === 'one process' ? await startServer(t, { messageTimeout: 4 }) : await serve(t, ['--workers', '2', '--message-timeout', '4'])
    await expiredWalk(t, srv)
  },
  title: (_, deployment: string) => `long-poll, ${deployment}: a channel whose unread message expired with its record signals its gap when the other channel publishes next; once`
})
test(expired, 'one process')
test(expired, '--workers 2')

async function expiredWalk (t: ExecutionContext, srv: { base: string, port: number }): Promise<void> {
  await publish(srv.base, 'ea', 'a1')
  await publish(srv.base, 'eb', 'b1')
  let cursor = ''
  const read: string[] = []
  for (let i = 0; i < 2; i++) {
    const p = await poll(srv.port, '/sub/ea,eb', cursor)
    read.push(p.body)
    cursor = p.cursor
  }
  t.deepEqual(read, ['a1', 'b1'])
  // published while the client is between polls, never read: it expires, and with it (no
  // subscriber, nothing buffered) the channel's record; b1 expires too
  await publish(srv.base, 'ea', 'a2')
  // (the expiry runs on the server's second tick: bounded wait for the record to go)
  let gone = false
  for (let i = 0; i < 120 && !gone; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    gone = (await fetch(`${srv.base}/pub/ea`, { headers: { Accept: 'text/json' } })).status === 404
  }
  t.true(gone, 'the record is gone')
  await publish(srv.base, 'eb', 'b2')
  const next = await poll(srv.port, '/sub/ea,eb', cursor)
  t.is(next.body, 'b2')
  t.deepEqual(next.gaps.map(bracketAt), [0], 'one signal, naming ea: ' + next.gaps.join(' | '))
  // and not again: the cursor the answer gave is past the loss
  await publish(srv.base, 'ea', 'a3')
  const after = await poll(srv.port, '/sub/ea,eb', next.cursor)
  t.is(after.body, 'a3')
  t.deepEqual(after.gaps, [])
}

test('two Redis nodes: a channel whose unread message expired, record and all, in the store signals its gap on a node that never held it when the other channel publishes next', async (t) => {
  const { redisPort, one, two } = await twoRedisNodes(t, { messageTimeout: 4 })
  const { read, cursor } = await readPair(one, 'ra', 'rb')
  t.deepEqual(read, ['a1', 'b1'])
  // never read: it expires, and the store's record with it (the record's ttl is the messages')
  await publish(one.base, 'ra', 'a2')
  let gone = false
  for (let i = 0; i < 120 && !gone; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    gone = (await redisCommand(redisPort, 'EXISTS pk:{ra}:m')) === ':0\r\n'
  }
  t.true(gone, 'the store no longer holds ra')
  await publish(one.base, 'rb', 'b2')
  // the other node never held ra: all it can learn is that the store has no record of it
  const next = await poll(two.port, '/sub/ra,rb', cursor)
  t.is(next.body, 'b2')
  // (rb's b1 expired too: rb's own signal is the conservative one for a record made again)
  t.true(next.gaps.map(bracketAt).includes(0), 'a signal naming ra: ' + next.gaps.join(' | '))
  // and not again: the cursor the answer gave is past the loss
  await publish(one.base, 'ra', 'a3')
  const after = await poll(two.port, '/sub/ra,rb', next.cursor)
  t.is(after.body, 'a3')
  t.deepEqual(after.gaps, [])
})

test('Redis: a multiplexed long-poll on a node that holds one channel\'s copy but not the other\'s gets the other\'s earlier message first, not skipped', async (t) => {
  const { one, two } = await twoRedisNodes(t)
  await publish(one.base, 'xb', 'b0')
  const first = await poll(one.port, '/sub/xa,xb', '')
  t.is(first.body, 'b0')
  // the second node holds xb's copy (a poll there keeps it a while), not xa's
  t.is((await poll(two.port, '/sub/xb', '')).body, 'b0')
  // xa's message, then xb's in a later second
  await new Promise((resolve) => setTimeout(resolve, 1100))
  await publish(one.base, 'xa', 'a1')
  await new Promise((resolve) => setTimeout(resolve, 1100))
  await publish(one.base, 'xb', 'b1')
  await eventually(async () => (await fetch(`${two.base}/pub/xb`, { headers: { Accept: 'text/json' } })).status === 200)
  const got: string[] = []
  let cursor = first.cursor
  for (let i = 0; i < 2; i++) {
    const p = await poll(two.port, '/sub/xa,xb', cursor)
    got.push(p.body)
    cursor = p.cursor
  }
  t.deepEqual(got, ['a1', 'b1'])
})

const deleted = test.macro({
  async exec (t: ExecutionContext, engine: 'in memory' | 'Redis') {
    const redisUrl = engine === 'Redis' ? `redis://127.0.0.1:${(await startRedis(t)).port}` : undefined
    const srv = await startServer(t, redisUrl === undefined ? {} : { redisUrl })
    await publish(srv.base, 'da', 'a1')
    await publish(srv.base, 'db', 'b1')
    let cursor = ''
    for (let i = 0; i < 2; i++) cursor = (await poll(srv.port, '/sub/da,db', cursor)).cursor
    // unread, then deleted with its channel
    await publish(srv.base, 'da', 'a2')
    t.is((await fetch(`${srv.base}/pub/da`, { method: 'DELETE' })).status, 200)
    // a second later, so that db's message is in a later second than the cursor's
    await new Promise((resolve) => setTimeout(resolve, 1100))
    await publish(srv.base, 'db', 'b2')
    const next = await poll(srv.port, '/sub/da,db', cursor)
    t.is(next.body, 'b2')
    t.deepEqual(next.gaps.map(bracketAt), [0], 'one signal, naming da: ' + next.gaps.join(' | '))
    // a client that read everything before the DELETE lost nothing
    await publish(srv.base, 'dc', 'c1')
    await publish(srv.base, 'dd', 'd1')
    let read = ''
    for (let i = 0; i < 2; i++) read = (await poll(srv.port, '/sub/dc,dd', read)).cursor
    const c1 = (await poll(srv.port, '/sub/dc', '')).cursor
    t.is((await fetch(`${srv.base}/pub/dc`, { method: 'DELETE' })).status, 200)
    await new Promise((resolve) => setTimeout(resolve, 1100))
    await publish(srv.base, 'dd', 'd2')
    const clean = await poll(srv.port, '/sub/dc,dd', read)
    t.is(clean.body, 'd2')
    t.deepEqual(clean.gaps, [])
    // nor when the deleted channel itself is published again, a second later: multiplexed, or
    // alone from its last message's id
    await new Promise((resolve) => setTimeout(resolve, 1100))
    await publish(srv.base, 'dc', 'c2')
    const again = await poll(srv.port, '/sub/dc,dd', clean.cursor)
    t.is(again.body, 'c2')
    t.deepEqual(again.gaps, [])
    const alone = await poll(srv.port, '/sub/dc', c1)
    t.is(alone.body, 'c2')
    t.deepEqual(alone.gaps, [])
  },
  title: (_, engine: string) => `${engine}: a multiplexed resume after a DELETE of one of its channels signals what the DELETE took unread, and nothing when it had read all`
})
test(deleted, 'in memory')
test(deleted, 'Redis')

test('two Redis nodes: after a DELETE and the channel published again a second later, a node that never held it signals nothing to a client that had read everything, alone or multiplexed', async (t) => {
  const { one, two } = await twoRedisNodes(t)
  const { cursor } = await readPair(one, 'ha', 'hb')
  const a1 = (await poll(one.port, '/sub/ha', '')).cursor
  t.is((await fetch(`${one.base}/pub/ha`, { method: 'DELETE' })).status, 200)
  await new Promise((resolve) => setTimeout(resolve, 1100))
  await publish(one.base, 'ha', 'a2')
  await new Promise((resolve) => setTimeout(resolve, 1100))
  await publish(one.base, 'hb', 'b2')
  const multiplexed = await poll(two.port, '/sub/ha,hb', cursor)
  t.deepEqual([multiplexed.body, multiplexed.gaps], ['a2', []])
  const alone = await poll(two.port, '/sub/ha', a1)
  t.deepEqual([alone.body, alone.gaps], ['a2', []])
})

test('two Redis nodes: after the store lost everything (FLUSHALL), a channel\'s loss is signalled on a node that never held it when the other channel publishes next', async (t) => {
  const { redisPort, one, two } = await twoRedisNodes(t)
  const { cursor } = await readPair(one, 'wa', 'wb')
  // never read, then lost with everything else, a second later
  await publish(one.base, 'wa', 'a2')
  await new Promise((resolve) => setTimeout(resolve, 1100))
  t.is(await redisCommand(redisPort, 'FLUSHALL'), '+OK\r\n')
  // (the next heartbeat makes the store's epoch again, and each node reads it with its own: a
  // little over the heartbeat's 2 s)
  await new Promise((resolve) => setTimeout(resolve, 3000))
  await publish(one.base, 'wb', 'b2')
  const next = await poll(two.port, '/sub/wa,wb', cursor)
  t.is(next.body, 'b2')
  t.true(next.gaps.map(bracketAt).includes(0), 'a signal naming wa: ' + next.gaps.join(' | '))
})

test('Redis: a store that nodes ran on before the store kept an epoch (an upgrade) gets none that would count its history as lost', async (t) => {
  const { redisPort, one } = await twoRedisNodes(t)
  await publish(one.base, 'ua', 'a1')
  const first = await poll(one.port, '/sub/ua,ub', '')
  t.is(first.body, 'a1')
  // as a store that an earlier version ran on: nodes, no epoch
  await new Promise((resolve) => setTimeout(resolve, 1100))
  t.is(await redisCommand(redisPort, 'DEL pk:{pk:nodes}:epoch'), ':1\r\n')
  await new Promise((resolve) => setTimeout(resolve, 3000))
  t.is(await redisCommand(redisPort, 'GET pk:{pk:nodes}:epoch'), '$1\r\n0\r\n')
  const three = await startServer(t, { redisUrl: `redis://127.0.0.1:${redisPort}` })
  await publish(one.base, 'ua', 'a2')
  const next = await poll(three.port, '/sub/ua,ub', first.cursor)
  t.deepEqual([next.body, next.gaps], ['a2', []])
})

test('two Redis nodes: a channel that never published, beside one that does, gets no gap signal on a node that never held it', async (t) => {
  const { one, two } = await twoRedisNodes(t, { messageTimeout: 60 })
  await publish(one.base, 'qb', 'b1')
  const first = await poll(one.port, '/sub/qa,qb', '')
  t.is(first.body, 'b1')
  // a second later: the store has no record of qa, and nothing can have expired since the cursor
  await new Promise((resolve) => setTimeout(resolve, 1100))
  await publish(one.base, 'qb', 'b2')
  const next = await poll(two.port, '/sub/qa,qb', first.cursor)
  t.is(next.body, 'b2')
  t.deepEqual(next.gaps, [])
  await publish(one.base, 'qa', 'a1')
  const after = await poll(two.port, '/sub/qa,qb', next.cursor)
  t.is(after.body, 'a1')
  t.deepEqual(after.gaps, [])
})

interface Restartable { base: string, port: number, stop: () => Promise<void> }

const restart = test.macro({
  async exec (t: ExecutionContext, deployment: 'one process' | '--workers 2') {
    const start = async (): Promise<Restartable> => {
      if (deployment === 'one process') {
        const s = await startServer(t)
        return { base: s.base, port: s.port, stop: async () => { await s.app.close() } }
      }
      const s = await serve(t, ['--workers', '2'])
      return { base: s.base, port: s.port, stop: async () => { s.proc.kill('SIGKILL') } }
    }
    const first = await start()
    await publish(first.base, 'ra', 'a1')
    await publish(first.base, 'rb', 'b1')
    const c = await SseClient.connect(first.port, '/sub/ra,rb?last_event_id=0:0')
    const got = await c.waitEvents(2)
    t.deepEqual(got.map((e) => e.data), ['a1', 'b1'])
    const last = got[1]!.id!
    c.close()
    // never read, and lost with the restart
    await publish(first.base, 'ra', 'a2')
    await first.stop()
    const second = await start()
    await publish(second.base, 'rb', 'b2')
    // with workers, on each: the one that owns ra and the one that holds a copy of it
    const clients = deployment === 'one process'
      ? [await SseClient.connect(second.port, '/sub/ra,rb', { 'Last-Event-ID': last })]
      : [await SseClient.connectOnWorker(second.port, '/sub/ra,rb', 0, { 'Last-Event-ID': last }), await SseClient.connectOnWorker(second.port, '/sub/ra,rb', 1, { 'Last-Event-ID': last })]
    for (const resumed of clients) {
      t.teardown(() => resumed.close())
      const [b2] = await resumed.waitEvents(1)
      t.is(b2!.data, 'b2')
      const gaps = b2!.comments.filter((x) => x.startsWith(':parkline-gap ')).map((x) => JSON.parse(x.slice(':parkline-gap '.length)) as { requested: string, resumed: string })
      t.deepEqual(gaps.map((g) => bracketAt(g.requested)).sort(), [0, 1], 'a signal for ra and one for rb: ' + JSON.stringify(b2))
      t.true(gaps.every((g) => g.resumed === b2!.id))
    }
    await publish(second.base, 'ra', 'a3')
    for (const resumed of clients) {
      const [a3] = await resumed.waitEvents(2).then((e) => e.slice(1))
      t.is(a3!.data, 'a3')
      t.deepEqual(a3!.comments.filter((x) => x.startsWith(':parkline-gap')), [], 'once')
    }
  },
  title: (_, deployment: string) => `SSE across a restart, ${deployment}: both channels' records are new, and each gets its own gap signal with the first message; a message published before the restart and never read is not lost silently`
})
test(restart, 'one process')
test(restart, '--workers 2')

test('longpollMultipart: an answer whose parts come from two channels that both lost messages carries a Parkline-Gap for each', async (t) => {
  const srv = await startServer(t, { longpollMultipart: true, bufferLength: 2 })
  await publish(srv.base, 'xa', 'a1')
  await publish(srv.base, 'xb', 'b1')
  const p = await poll(srv.port, '/sub/xa,xb', '')
  t.true(p.body.includes('a1') && p.body.includes('b1'))
  // three more on each: the oldest of them leaves each buffer of two, after the cursor
  for (const m of ['2', '3', '4']) {
    await publish(srv.base, 'xa', 'a' + m)
    await publish(srv.base, 'xb', 'b' + m)
  }
  const q = await poll(srv.port, '/sub/xa,xb', p.cursor)
  for (const m of ['a3', 'a4', 'b3', 'b4']) t.true(q.body.includes(m), m)
  t.deepEqual(q.gaps.map(bracketAt).sort(), [0, 1], q.gaps.join(' | '))
})

test('two Redis nodes: a channel\'s first message, after a multiplexed cursor of an earlier second, carries no gap signal (nothing was published on it before: its record is new, and that is no loss), on either node', async (t) => {
  const { one, two } = await twoRedisNodes(t)
  await publish(one.base, 'na', 'a1')
  const r1 = await poll(two.port, '/sub/na,nb', '')
  t.is(r1.body, 'a1')
  t.deepEqual(r1.gaps, [])
  // nb's record is made in a later second than the cursor's
  const second = Date.parse(r1.cursor.split('|')[0]!) / 1000
  t.true(await eventually(() => Math.floor(Date.now() / 1000) > second, 3000))
  await publish(one.base, 'nb', 'b1')
  for (const node of [one, two]) {
    const r2 = await poll(node.port, '/sub/na,nb', r1.cursor)
    t.is(r2.body, 'b1')
    t.deepEqual(r2.gaps, [], 'no gap signal: ' + r2.gaps.join(' | '))
  }
})
