// EXTENSION e: a subscriber that stops reading never grows the server's memory past its cap and
// never delays anyone else; past the cap, `disconnect` says so and closes, `drop-oldest` signals
// the gap.
import net from 'node:net'
import { once } from 'node:events'
import test from 'ava'
import type { Core } from '../lib/core.ts'
import { SseClient, eventually, publish, startServer } from './helpers/server.ts'
import { coreOf } from '../lib/plugin.ts'

const CAP = 65536
const SIZE = 50_000
const COUNT = 120

/** An SSE connection that reads its head, then stops reading (the kernel buffers fill up). */
async function stalledSubscriber (port: number, channel: string): Promise<{ socket: net.Socket, text: () => string }> {
  const socket = net.connect(port, '127.0.0.1')
  await once(socket, 'connect')
  let text = ''
  socket.on('data', (d: Buffer) => { text += d.toString('latin1') })
  socket.write(`GET /sub/${channel} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`)
  while (!text.includes(': hi')) await once(socket, 'data')
  socket.pause()
  return { socket, text: () => text }
}

function queuedBytes (core: Core): number {
  let max = 0
  for (const sub of core.table.subs) max = Math.max(max, sub.socket.writableLength + (sub.backlog?.bytes ?? 0))
  return max
}

test('disconnect: the stalled subscriber gets parkline-overflow and is closed; the others get everything', async (t) => {
  const { base, port, app } = await startServer(t, { queueCap: CAP, bufferLength: COUNT })
  const stalled = await stalledSubscriber(port, 'ov')
  const healthy = await SseClient.connect(port, '/sub/ov')
  const body = 'x'.repeat(SIZE)
  let maxQueued = 0
  for (let i = 0; i < COUNT; i++) {
    await publish(base, 'ov', `${i}:${body}`)
    maxQueued = Math.max(maxQueued, queuedBytes(coreOf(app)))
  }
  t.true(maxQueued <= CAP + SIZE + 200, `queued ${maxQueued} bytes past the cap`)
  t.true(coreOf(app).stats.overflowDisconnect >= 1)
  await healthy.waitEvents(COUNT, 20000)
  t.deepEqual(healthy.events.map((e) => Number(e.data.split(':')[0])), Array.from({ length: COUNT }, (_, i) => i))
  stalled.socket.resume()
  await once(stalled.socket, 'close')
  t.regex(stalled.text(), /event: parkline-overflow\ndata: \{"policy":"disconnect","limit":65536\}\n\n$/)
  healthy.close()
})

test('drop-oldest: unsent messages are dropped within the cap and the next one carries the gap signal', async (t) => {
  const { base, port, app } = await startServer(t, { queueCap: CAP, queuePolicy: 'drop-oldest', bufferLength: COUNT })
  const stalled = await stalledSubscriber(port, 'dr')
  const body = 'y'.repeat(SIZE)
  let maxQueued = 0
  for (let i = 0; i < COUNT; i++) {
    await publish(base, 'dr', `${i}:${body}`)
    maxQueued = Math.max(maxQueued, queuedBytes(coreOf(app)))
  }
  // bounded: what the socket took (Node's high-water mark, or the cap) and the newest message
  t.true(maxQueued <= Math.max(CAP, stalled.socket.writableHighWaterMark) + 2 * SIZE + 400, `queued ${maxQueued} bytes past the cap`)
  t.true(coreOf(app).stats.gapsDropped >= 1)
  t.is(coreOf(app).table.size, 1)
  // read everything now: ids strictly increase, a gap comment names the last id written, and the
  // newest message arrives with no publish after it (the channel stays quiet)
  stalled.socket.resume()
  const newest = `data: ${COUNT - 1}:`
  const deadline = Date.now() + 20000
  while (!stalled.text().includes(newest) && Date.now() < deadline) await Promise.race([once(stalled.socket, 'data'), new Promise((resolve) => setTimeout(resolve, 500))])
  t.true(stalled.text().includes(newest), 'the newest message was delivered')
  t.true(await eventually(() => queuedBytes(coreOf(app)) === 0, 20000))
  const text = stalled.text()
  const gap = /:parkline-gap \{"requested":"(\d+:\d+)","resumed":"(\d+:\d+)"\}\nid: (\d+:\d+)\n/.exec(text)
  t.truthy(gap, 'no gap signal: ' + [...text.matchAll(/:parkline[^\n]*\n[^\n]*\n/g)].map((m) => m[0]).join(' | ') + ' stats ' + coreOf(app).stats.gapsDropped)
  t.is(gap![2], gap![3])
  const ids = [...text.matchAll(/\nid: (\d+):(\d+)\n/g)].map((m) => [Number(m[1]), Number(m[2])] as const)
  for (let i = 1; i < ids.length; i++) t.true(ids[i]![0] > ids[i - 1]![0] || (ids[i]![0] === ids[i - 1]![0] && ids[i]![1] > ids[i - 1]![1]))
  t.true(ids.length < COUNT + 1, 'nothing was dropped')
  stalled.socket.destroy()
})

test('drop-oldest, multiplexed SSE: queued frames leave whole, in order, the gap signal on the next one', async (t) => {
  const { base, port, app } = await startServer(t, { queueCap: CAP, queuePolicy: 'drop-oldest', bufferLength: COUNT })
  const stalled = await stalledSubscriber(port, 'dm,other')
  const body = 'y'.repeat(SIZE)
  for (let i = 0; i < COUNT; i++) await publish(base, 'dm', `${i}:${body}`)
  t.true(coreOf(app).stats.gapsDropped >= 1)
  stalled.socket.resume()
  // the newest event whole
  const newest = `data: ${COUNT - 1}:${body}\n\n`
  const deadline = Date.now() + 20000
  while (!stalled.text().includes(newest) && Date.now() < deadline) await Promise.race([once(stalled.socket, 'data'), new Promise((resolve) => setTimeout(resolve, 500))])
  t.true(stalled.text().includes(newest), 'the newest message was delivered')
  const text = stalled.text()
  const gap = /:parkline-gap \{"requested":"([^"]+)","resumed":"([^"]+)"\}\nid: ([^\n]+)\n/.exec(text)
  t.truthy(gap, 'no gap signal')
  t.is(gap![2], gap![3])
  // every event whole: its multiplexed id line, then its data line
  const events = [...text.matchAll(/(?<=\n)id: (\d+:[^\n]*\[\d+\][^\n]*)\ndata: (\d+):y+\n\n/g)]
  t.true(events.length > 1 && events.length < COUNT, `${events.length} events`)
  t.is(events.length, text.split('\ndata: ').length - 1, 'an event that is not whole')
  const numbers = events.map((m) => Number(m[2]))
  for (let i = 1; i < numbers.length; i++) t.true(numbers[i]! > numbers[i - 1]!)
  stalled.socket.destroy()
})

for (const transport of ['eventsource', 'websocket'] as const) {
  test(`a burst published within one event-loop turn (coalesced, ${transport}): the stalled subscriber still holds no more than the cap and two messages (the one written, the one held), and gets parkline-overflow`, async (t) => {
    const { port, app } = await startServer(t, { queueCap: 1024, bufferLength: 40 })
    const socket = net.connect(port, '127.0.0.1')
    await once(socket, 'connect')
    let text = ''
    socket.on('data', (d: Buffer) => { text += d.toString('latin1') })
    const head = transport === 'eventsource' ? 'Accept: text/event-stream' : 'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13'
    socket.write(`GET /sub/burst HTTP/1.1\r\nHost: x\r\n${head}\r\n\r\n`)
    t.true(await eventually(() => coreOf(app).table.size === 1 && text.includes('\r\n\r\n'), 10000))
    socket.pause()
    // 20 messages of 1 MB, each await a microtask: one turn, which the coalescer would hold whole
    const big = 'x'.repeat(1_000_000)
    let maxQueued = 0
    for (let i = 0; i < 20; i++) {
      await app.parkline.publish('burst', big)
      maxQueued = Math.max(maxQueued, queuedBytes(coreOf(app)))
    }
    await new Promise((resolve) => setImmediate(resolve))
    maxQueued = Math.max(maxQueued, queuedBytes(coreOf(app)))
    t.true(maxQueued <= 1024 + 2 * 1_000_200, `queued ${maxQueued} bytes`)
    t.true(coreOf(app).stats.overflowDisconnect >= 1)
    t.true(await eventually(() => coreOf(app).table.size === 0, 10000))
    socket.destroy()
  })
}

test('multiplexed SSE subscribers that never read share the message\'s bytes: no copy of a 1 MiB message each, replayed or live', async (t) => {
  // a child with --expose-gc (test/helpers/mux-pin-child.ts): 60 such subscribers, the Buffer
  // memory they added. Each once kept a copy of a message (its id line and data joined), ~60 MiB.
  const run = async (kind: string): Promise<{ held: boolean, written: boolean, addedMiB: number }> => {
    const { spawn } = await import('node:child_process')
    const proc = spawn(process.execPath, ['--expose-gc', 'test/helpers/mux-pin-child.ts', kind], { stdio: ['ignore', 'pipe', 'inherit'] })
    t.teardown(() => { proc.kill('SIGKILL') })
    let out = ''
    proc.stdout.on('data', (d: Buffer) => { out += d.toString() })
    await once(proc, 'exit')
    return JSON.parse(out.trim()) as { held: boolean, written: boolean, addedMiB: number }
  }
  for (const kind of ['single', 'multi', 'live']) {
    const r = await run(kind)
    t.true(r.held && r.written, `${kind}: ${JSON.stringify(r)}`)
    // a copy each would be 60 MiB; one copy for all of them (Node's queuedCopy) and the sockets' own buffers are a few
    t.true(r.addedMiB < 15, `${kind}: ${JSON.stringify(r)}`)
  }
})

test('multiplexed SSE, bodies over 4 KiB (written uncopied): a resume past evicted messages gets the gap comment, then each event whole', async (t) => {
  const { base, port } = await startServer(t, { bufferLength: 3 })
  const body = 'z'.repeat(8192)
  const first = await stalledSubscriber(port, 'g,h')
  first.socket.resume()
  await publish(base, 'g', `0:${body}`)
  const deadline = Date.now() + 10000
  while (!first.text().includes(`0:${body}\n\n`) && Date.now() < deadline) await Promise.race([once(first.socket, 'data'), new Promise((resolve) => setTimeout(resolve, 200))])
  const cursor = /\nid: ([^\n]+)\ndata: 0:/.exec(first.text())![1]!
  first.socket.destroy()
  for (let i = 1; i <= 5; i++) await publish(base, 'g', `${i}:${body}`)
  // messages 1 and 2 left the buffer (3 kept): the resume is told, then gets 3, 4 and 5
  const socket = net.connect(port, '127.0.0.1')
  await once(socket, 'connect')
  let text = ''
  socket.on('data', (d: Buffer) => { text += d.toString('latin1') })
  socket.write(`GET /sub/g,h HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nLast-Event-ID: ${cursor}\r\n\r\n`)
  const end = Date.now() + 10000
  while (!text.includes(`5:${body}\n\n`) && Date.now() < end) await Promise.race([once(socket, 'data'), new Promise((resolve) => setTimeout(resolve, 200))])
  socket.destroy()
  const events = [...text.matchAll(/(?<=\n)id: ([^\n]+)\ndata: (\d):z{8192}\n\n/g)]
  t.deepEqual(events.map((m) => m[2]), ['3', '4', '5'])
  t.regex(text, new RegExp(`\\n:parkline-gap \\{"requested":"${cursor.replace(/[[\]]/g, '\\$&')}","resumed":"${events[0]![1]!.replace(/[[\]]/g, '\\$&')}"\\}\\nid: `))
  t.is(text.split('\ndata: ').length - 1, 3, 'no other data line')
})
