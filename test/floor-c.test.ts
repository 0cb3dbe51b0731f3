// The suite's two floors answer the same traffic with the same bytes: the C floor
// (benchmarks/suite/floor.c, built with the machine's `cc` as the suite builds it) and the Node
// floor (benchmarks/suite/floor-server.ts). A target the C floor misses is one no server reached
// on the host only if the C floor does the same work per message as the others: these are the
// exchanges the suite's scenarios make (SSE subscribe and broadcast, a long-poll parked and one
// answered from the kept window, publishes with and without subscribers, the readiness probe).
// The compiler comes from bin/test-deps.sh (`gcc`).
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import test from 'ava'
import { startServer, type ServerHandle } from '../benchmarks/suite/servers.ts'

/** One raw connection: what it received so far, and a wait (5 s at most) until that satisfies a predicate. */
async function connect (port: number): Promise<{ socket: net.Socket, got: () => string, until: (pred: (s: string) => boolean) => Promise<string> }> {
  const socket = net.connect(port, '127.0.0.1')
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  let buf = ''
  const waiters: Array<() => void> = []
  socket.on('data', (d: Buffer) => { buf += d.toString('latin1'); for (const w of waiters.splice(0)) w() })
  const until = async (pred: (s: string) => boolean): Promise<string> => {
    const deadline = Date.now() + 5000
    while (!pred(buf)) {
      if (Date.now() > deadline) throw new Error(`no such answer in 5 s; got ${JSON.stringify(buf)}`)
      await new Promise<void>((resolve) => { waiters.push(resolve); setTimeout(resolve, 100) })
    }
    return buf
  }
  return { socket, got: () => buf, until }
}

/** The whole exchange against one floor, every byte each client got, in order. */
async function exchange (server: ServerHandle): Promise<string[]> {
  const out: string[] = []
  const pub = await connect(server.port)
  const post = async (channel: string, body: string): Promise<string> => {
    const before = pub.got().length
    pub.socket.write(`POST /pub/${channel} HTTP/1.1\r\nHost: x\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
    const all = await pub.until((s) => s.length > before && s.endsWith('\r\n\r\n'))
    return all.slice(before)
  }
  // the readiness probe, then a publish nobody hears
  pub.socket.write('GET /pub/a HTTP/1.1\r\nHost: x\r\n\r\n')
  out.push(await pub.until((s) => s.endsWith('\r\n\r\n')))
  out.push(await post('a', 'nobody'))
  // two SSE subscribers of one channel, a broadcast of two messages (the second with a UTF-8 body)
  const subs = [await connect(server.port), await connect(server.port)]
  for (const s of subs) s.socket.write('GET /sub/b HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n')
  for (const s of subs) await s.until((x) => x.endsWith(': hi\n\n'))
  out.push(await post('b', 'one'))
  out.push(await post('b', 'two\u00e9'))
  for (const s of subs) out.push(await s.until((x) => x.endsWith('data: two\u00c3\u00a9\n\n')))
  // a long-poll: parked, answered by the next publish; then one from the kept window at once
  const lp = await connect(server.port)
  lp.socket.write('GET /sub/c HTTP/1.1\r\nHost: x\r\n\r\n')
  // until the poll is parked the channel does not exist on either floor: such a publish keeps
  // nothing and is answered 202, so it is sent again until it is answered 201
  let first = ''
  for (let i = 0; i < 250 && first !== 'HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n'; i++) {
    if (i > 0) await new Promise((resolve) => setTimeout(resolve, 20))
    first = await post('c', 'first')
  }
  out.push(first)
  out.push(await lp.until((s) => s.endsWith('first')))
  out.push(await post('c', 'second'))
  const at = lp.got().length
  lp.socket.write('GET /sub/c HTTP/1.1\r\nHost: x\r\nIf-None-Match: 1\r\n\r\n')
  out.push((await lp.until((s) => s.endsWith('second'))).slice(at))
  // an SSE subscriber gone: the channel's publish is answered 202
  for (const s of subs) s.socket.destroy()
  let last = ''
  for (let i = 0; i < 250 && last !== 'HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n'; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20))
    last = await post('b', 'late')
  }
  out.push(last)
  pub.socket.destroy()
  lp.socket.destroy()
  return out
}

test('the C floor serves the suite\'s exchanges byte for byte as the Node floor does', async (t) => {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'parkline-floorc-'))
  t.teardown(() => { rmSync(tmp, { recursive: true, force: true }) })
  const servers: ServerHandle[] = []
  t.teardown(async () => { for (const s of servers) await s.stop() })
  const c = await startServer('floorc', { workers: 1, tmp })
  servers.push(c)
  t.regex(c.describe, /^cc -O2 benchmarks\/suite\/floor\.c && floor-c \d+ 127\.0\.0\.1$/)
  const node = await startServer('floor', { workers: 1, tmp })
  servers.push(node)
  const fromC = await exchange(c)
  const fromNode = await exchange(node)
  t.deepEqual(fromC, fromNode)
  // what they agree on is the protocol the suite's load generator reads
  t.is(fromC[0], 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n')
  t.is(fromC[1], 'HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n')
  t.is(fromC[2], 'HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n')
  t.true(fromC[4]!.endsWith('\r\n\r\n: hi\n\ndata: one\n\ndata: two\u00c3\u00a9\n\n'), fromC[4])
  t.regex(fromC[7]!, /Etag: 1\r\nContent-Length: 5\r\n\r\nfirst$/)
  t.regex(fromC[9]!, /^HTTP\/1\.1 200 OK\r\n.*Etag: 2\r\nContent-Length: 6\r\n\r\nsecond$/s)
  t.is(fromC[10], 'HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n')
})
