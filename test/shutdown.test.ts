// SIGTERM on a lone `parkline serve` (docs/api.md 12.4, 14.1): the drain ends its subscribers, and
// requests still under way when it ends do not hold the process past a short grace.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import net from 'node:net'
import { readFileSync, readdirSync } from 'node:fs'
import test from 'ava'
import { SseClient, eventually, exitedWithOutput, freePort } from './helpers/server.ts'

async function start (t: import('ava').ExecutionContext, args: string[]): Promise<{ port: number, proc: ReturnType<typeof spawn>, log: () => string }> {
  const port = await freePort()
  const proc = spawn(process.execPath, ['bin/parkline.ts', 'serve', '--port', String(port), '--host', '127.0.0.1', '--log-level', 'info', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  proc.stderr!.on('data', (d: Buffer) => { out += d.toString() })
  t.teardown(() => { if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL') })
  const up = await eventually(async () => {
    try { return (await fetch(`http://127.0.0.1:${port}/health`)).status === 200 } catch { return false }
  }, 20000)
  if (!up) throw new Error(`did not start: ${out}`)
  return { port, proc, log: () => out }
}

/** A socket that sends `head` now and one more byte every 200 ms (bounded: 40 s), never finishing. */
async function trickle (t: import('ava').ExecutionContext, port: number, head: string): Promise<net.Socket> {
  const s = net.connect(port, '127.0.0.1')
  s.on('error', () => {})
  await once(s, 'connect')
  s.write(head)
  let n = 0
  const timer = setInterval(() => { if (n++ < 200 && !s.destroyed) s.write('x') }, 200)
  s.on('close', () => { clearInterval(timer) })
  t.teardown(() => { clearInterval(timer); s.destroy() })
  return s
}

for (const workers of [[], ['--workers', '2']]) {
  test(`SIGTERM${workers.length > 0 ? ' (' + workers.join(' ') + ')' : ''}: requests still under way when the drain ends (a head, a publish body sent a byte at a time) are cut after a short grace, and the process exits 1`, async (t) => {
    const { port, proc, log } = await start(t, ['--drain-window', '1', '--headers-timeout', '60', ...workers])
    const sse = await SseClient.connect(port, '/sub/news')
    t.teardown(() => sse.close())
    await sse.until(() => sse.comments.includes(': hi'))
    const head = await trickle(t, port, 'GET /sub/h HTTP/1.1\r\nHost: a\r\nX-Slow: ')
    const body = await trickle(t, port, 'POST /pub/news HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n')
    await new Promise((resolve) => setTimeout(resolve, 300))
    proc.kill('SIGTERM')
    // (the test's own bound, far past the drain window and the grace: a process that stays is the failure)
    const exited = await Promise.race([exitedWithOutput(proc).then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 20000))])
    t.true(exited, `the process stayed: ${log()}`)
    t.is(proc.exitCode, 1, 'a drain that had to cut requests exits 1')
    t.true(sse.comments.some((c) => c.startsWith(':503:')), 'the subscriber got the drain\'s end')
    t.true(head.destroyed || head.readableEnded)
    t.true(body.destroyed || body.readableEnded)
    t.regex(log(), /the close did not finish after the drain/)
  })
}

for (const workers of [[], ['--workers', '2']]) {
  test(`a second SIGTERM during the drain${workers.length > 0 ? ' (' + workers.join(' ') + ')' : ''}: exit 1 at once, logged, no process left`, async (t) => {
    const { port, proc, log } = await start(t, ['--drain-window', '60', ...workers])
    const sse = await SseClient.connect(port, '/sub/held')
    t.teardown(() => sse.close())
    await sse.until(() => sse.comments.includes(': hi'))
    const pid = proc.pid!
    const children = (): number[] => {
      try { return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter((x) => x !== '').map(Number) } catch { return [] }
    }
    const kids = children()
    t.is(kids.length, workers.length > 0 ? 2 : 0)
    proc.kill('SIGTERM')
    t.true(await eventually(() => (log().match(/drain begun/g) ?? []).length >= 1 + kids.length, 10000), log())
    // with workers, each process's lines say which it is
    if (workers.length > 0) {
      t.regex(log(), /"role":"primary",[^\n]*"msg":"drain begun"/)
      for (const w of [0, 1]) t.regex(log(), new RegExp(`"role":"worker","worker":${w},[^\\n]*"msg":"drain begun"`))
    }
    proc.kill('SIGTERM')
    // (bounded far below the 60 s window: a process that waits for the drain is the failure)
    const exited = await Promise.race([exitedWithOutput(proc).then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 20000))])
    t.true(exited, `the process waited for the drain: ${log()}`)
    t.is(proc.exitCode, 1)
    t.regex(log(), /second signal/)
    const alive = (p: number): boolean => { try { process.kill(p, 0); return true } catch { return false } }
    t.true(await eventually(() => kids.every((k) => !alive(k)), 5000), 'the workers are gone')
  })
}

test('SIGTERM while the primary is still forking its 64 workers: the ones forked so far drain, no more are forked, the exit is 0 and no worker is left behind', async (t) => {
  t.timeout(60000)
  const port = await freePort()
  const proc = spawn(process.execPath, ['bin/parkline.ts', 'serve', '--port', String(port), '--host', '127.0.0.1', '--log-level', 'info', '--workers', '64'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  proc.stderr!.on('data', (d: Buffer) => { out += d.toString() })
  const pid = proc.pid!
  // its workers, wherever they are now (one left behind by a primary that died is init's child):
  // each carries the primary's socket directory, parkline-<primary pid>-…, in its environment
  const workers = (): number[] => {
    const found: number[] = []
    for (const p of readdirSync('/proc')) {
      if (!/^\d+$/.test(p)) continue
      try {
        if (readFileSync(`/proc/${p}/environ`, 'latin1').split('\0').some((e) => e.startsWith('PARKLINE_MESH=') && e.includes(`/parkline-${pid}-`))) found.push(Number(p))
      } catch {}
    }
    return found
  }
  t.teardown(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
    for (const w of workers()) { try { process.kill(w, 'SIGKILL') } catch {} }
  })
  const children = (): number => {
    try { return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter((x) => x !== '').length } catch { return 0 }
  }
  // the first worker forked: the rest are being forked
  for (const end = Date.now() + 20000; children() === 0 && Date.now() < end;) await new Promise((resolve) => setTimeout(resolve, 2))
  t.true(children() > 0, out)
  proc.kill('SIGTERM')
  const exited = await Promise.race([exitedWithOutput(proc).then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 30000))])
  t.true(exited, `the process stayed: ${out}`)
  t.is(proc.signalCode, null, `ended by the signal itself, not by its drain: ${out}`)
  t.is(proc.exitCode, 0, out)
  t.regex(out, /drain begun/)
  // (a fork takes milliseconds; 64 of them far longer than the signal took to come)
  const forked = (out.match(/"msg":"worker forked"/g) ?? []).length
  t.log(`${forked} of 64 forked before the stop`)
  t.true(forked > 0 && forked < 64, `${forked} forked`)
  t.true(await eventually(() => workers().length === 0, 10000), `workers left behind: ${workers().join(' ')}`)
})

test('SIGTERM on an idle server: exit 0, about a second after the signal', async (t) => {
  const { proc, log } = await start(t, [])
  proc.kill('SIGTERM')
  const exited = await Promise.race([exitedWithOutput(proc).then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 20000))])
  t.true(exited, log())
  t.is(proc.exitCode, 0)
  t.regex(log(), /drain finished/)
})

test('SIGTERM with a subscriber that stopped reading: its ended stream is let go of after the grace, and the exit is 0 (no request was cut)', async (t) => {
  const { port, proc, log } = await start(t, ['--drain-window', '1'])
  const s = net.connect(port, '127.0.0.1')
  s.on('error', () => {})
  t.teardown(() => s.destroy())
  await once(s, 'connect')
  s.write('GET /sub/stalled HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n')
  await once(s, 'data')
  s.pause()
  // enough to fill both ends' socket buffers: the stream's end cannot reach the client
  const body = 'x'.repeat(512 * 1024)
  for (let i = 0; i < 16; i++) await fetch(`http://127.0.0.1:${port}/pub/stalled`, { method: 'POST', body })
  proc.kill('SIGTERM')
  const exited = await Promise.race([exitedWithOutput(proc).then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 20000))])
  t.true(exited, log())
  t.is(proc.exitCode, 0, log())
})

test('SIGTERM: answers given while the server drains say Connection: close and end their connection, on the raw publish path and Node\'s', async (t) => {
  const { port, proc, log } = await start(t, ['--drain-window', '5'])
  /** A kept-alive connection: send a request, read one whole answer (head and Content-Length body). */
  const conn = async (): Promise<{ ask: (req: string) => Promise<string>, ended: () => boolean }> => {
    const s = net.connect(port, '127.0.0.1')
    s.on('error', () => {})
    await once(s, 'connect')
    t.teardown(() => s.destroy())
    let buf = ''
    let ended = false
    s.on('end', () => { ended = true })
    s.on('close', () => { ended = true })
    let waiter: (() => void) | null = null
    s.on('data', (d: Buffer) => { buf += d.toString('latin1'); waiter?.() })
    const whole = (): string | null => {
      const end = buf.indexOf('\r\n\r\n')
      if (end === -1) return null
      const len = Number(/\r\ncontent-length: *(\d+)/i.exec(buf.slice(0, end))?.[1] ?? 0)
      if (buf.length < end + 4 + len) return null
      const out = buf.slice(0, end + 4 + len)
      buf = buf.slice(end + 4 + len)
      return out
    }
    const ask = async (req: string): Promise<string> => {
      s.write(req)
      for (let i = 0; i < 100; i++) {
        const got = whole()
        if (got !== null) return got
        await new Promise<void>((resolve) => { waiter = resolve; setTimeout(resolve, 50) })
      }
      return ''
    }
    return { ask, ended: () => ended }
  }
  const publish = 'POST /pub/d HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx'
  const notFound = 'GET /not-parkline HTTP/1.1\r\nHost: a\r\n\r\n'
  const raw = await conn()
  const node = await conn()
  const polled = await conn()
  t.regex(await raw.ask(publish), /^HTTP\/1\.1 202 [^]*\r\nConnection: keep-alive\r\n/)
  t.regex(await node.ask(notFound), /^HTTP\/1\.1 404 [^]*\r\nConnection: keep-alive\r\n/)
  t.regex(await (await conn()).ask('GET /status HTTP/1.1\r\nHost: a\r\n\r\n'), /^raw publisher requests: 1$/m, 'the publish went on the raw path')
  // a long-poll parked on a connection Node's parser holds (its first request was Node's)
  t.regex(await polled.ask(notFound), /^HTTP\/1\.1 404 /)
  const pollAnswer = polled.ask('GET /sub/lp HTTP/1.1\r\nHost: a\r\n\r\n')
  // subscribers keep the drain going for its window (each is ended in a wave within it)
  const subs: SseClient[] = []
  for (let i = 0; i < 5; i++) {
    const sse = await SseClient.connect(port, '/sub/other')
    t.teardown(() => sse.close())
    await sse.until(() => sse.comments.includes(': hi'))
    subs.push(sse)
  }
  proc.kill('SIGTERM')
  t.true(await eventually(() => /drain begun/.test(log()), 5000), log())
  const a = await raw.ask(publish.replace('/pub/d', '/pub/lp'))
  t.regex(a, /^HTTP\/1\.1 20[12] /, 'publishers are still served while the server drains')
  t.regex(a, /\r\nConnection: close\r\n/)
  const b = await node.ask(notFound)
  t.regex(b, /^HTTP\/1\.1 404 /)
  t.regex(b, /\r\nConnection: close\r\n/)
  // the parked poll: the message (or, if its wave came first, the drain's 503), closing either way
  const c = await pollAnswer
  t.regex(c, /^HTTP\/1\.1 (200|503) /)
  t.regex(c, /\r\nConnection: close\r\n/)
  t.true(await eventually(() => raw.ended() && node.ended() && polled.ended(), 3000), 'the connections ended after their answer')
  // a publish pipelined on Node's path behind a request not yet answered: its answer could never
  // be sent on a connection that closes, so it is not applied (the client sends it again)
  const pipelined = await conn()
  const first = await pipelined.ask(notFound + 'POST /pub/pp HTTP/1.1\r\nHost: a\r\nX-Twice: 1\r\nX-Twice: 2\r\nContent-Length: 1\r\n\r\ny')
  t.regex(first, /^HTTP\/1\.1 404 [^]*\r\nConnection: close\r\n/)
  t.true(await eventually(() => pipelined.ended(), 3000))
  const info = await (await conn()).ask('GET /pub/pp HTTP/1.1\r\nHost: a\r\nAccept: text/json\r\n\r\n')
  t.regex(info, /^HTTP\/1\.1 404 /, 'the pipelined publish was not applied')
  await once(proc, 'exit')
})
