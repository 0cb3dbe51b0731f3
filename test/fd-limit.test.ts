// A small open-file limit (ulimit -n 256): the default subscriber cap leaves descriptors for
// publishers and /health, and the server outlives connections past the limit.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import net from 'node:net'
import test from 'ava'
import { eventually, freePort, publish } from './helpers/server.ts'
import { START_MS } from './helpers/node.ts'

test('ulimit -n 256: subscribers are capped below the limit (503 past it), /health and publishers still answer; past the limit itself it lives, and serves again once connections close', async (t) => {
  t.timeout(60000)
  const port = await freePort()
  const proc = spawn('bash', ['-c', `ulimit -n 256 && exec "${process.execPath}" bin/parkline.ts serve --port ${port} --host 127.0.0.1 --log-level warn`], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  proc.stderr!.on('data', (d: Buffer) => { out += d.toString() })
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL')
      await once(proc, 'exit')
    }
  })
  const base = `http://127.0.0.1:${port}`
  t.true(await eventually(async () => { try { return (await fetch(`${base}/health`)).status === 200 } catch { return false } }, START_MS), out)
  t.regex(out, /caps this process at 192 subscribers/)
  const sockets: net.Socket[] = []
  t.teardown(() => { for (const s of sockets) s.destroy() })
  const statuses: string[] = []
  // 200 SSE subscribers, 25 at a time: 192 are admitted, the rest answered 503 (SSE: 200 + `:503:`)
  for (let i = 0; i < 200; i += 25) {
    await Promise.all(Array.from({ length: 25 }, async () => {
      const s = net.connect(port, '127.0.0.1')
      sockets.push(s)
      s.on('error', () => {})
      await once(s, 'connect')
      s.write('GET /sub/many HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n')
      let text = ''
      s.on('data', (d: Buffer) => { text += d.toString('latin1') })
      await eventually(() => text.includes(': hi') || text.includes(':503:') || s.destroyed, 5000)
      statuses.push(text.includes(':503:') ? '503' : text.includes(': hi') ? 'ok' : 'none')
    }))
  }
  t.is(statuses.filter((s) => s === 'ok').length, 192, JSON.stringify(statuses))
  t.is(statuses.filter((s) => s === '503').length, 8)
  // the operator is told why clients are turned away: one warning for the first refusal, the rest
  // of the 10 s counted into the next one
  t.true(await eventually(() => /new subscribers refused \(503\): this process holds its limit of 192 connections/.test(out), 3000), out)
  const warned = out.split('\n').filter((l) => l.includes('new subscribers refused'))
  t.is(warned.length, 1, out)
  t.like(JSON.parse(warned[0]!) as object, { level: 40, refused: 1, maxSubscribers: 192 })
  // the reserve: operator requests and publishers still get descriptors
  t.is((await fetch(`${base}/health`, { headers: { Connection: 'close' } })).status, 200)
  t.is((await publish(base, 'many', 'hello')).status, 201)
  // past the limit itself: plain connections the process cannot accept (libuv closes them)
  for (let i = 0; i < 80; i++) {
    const s = net.connect(port, '127.0.0.1')
    s.on('error', () => {})
    sockets.push(s)
  }
  await new Promise((resolve) => setTimeout(resolve, 500))
  for (const s of sockets) s.destroy()
  t.true(await eventually(async () => { try { return (await fetch(`${base}/health`, { headers: { Connection: 'close' } })).status === 200 } catch { return false } }, 10000))
  t.is((await publish(base, 'again', 'x')).status, 202)
  t.is(proc.exitCode, null, 'the server lives')
})
