// The memory benchmarks run small: benchmarks/connections.ts in smoke mode (200 connections, one run):
// every server starts, takes its connections and reports a positive per-connection figure, and the
// results file is written; benchmarks/message-memory.ts with 4,000 messages.
import test from 'ava'
import { runBench } from './helpers/bench.ts'

const SERVERS = ['Parkline', 'bare node:net (floor)', 'Fastify 5, reply.raw kept open', 'Fastify 5, reply.hijack()', 'Parkline, PARKLINE_NO_DETACH=1']

/** Table rows (label -> numeric cells) of each `**title**` section of the Markdown output. */
function tables (text: string): Map<string, Map<string, number[]>> {
  const out = new Map<string, Map<string, number[]>>()
  let rows: Map<string, number[]> | null = null
  for (const line of text.split('\n')) {
    const title = /^\*\*(.+?)\*\*/.exec(line)
    if (title !== null) {
      rows = new Map()
      out.set(title[1]!, rows)
    } else if (rows !== null && line.startsWith('| ') && !line.startsWith('| server')) {
      const cells = line.split('|').slice(1, -1).map((c) => c.trim())
      rows.set(cells[0]!, cells.slice(1).map((c) => Number(c.replace(/,/g, ''))))
    }
  }
  return out
}

test.serial('the memory benchmark runs in smoke mode and reports every server', async (t) => {
  t.timeout(50000)
  const { code, stdout, stderr, doc } = await runBench(t, 'benchmarks/connections.ts', { SUBSCRIBERS: '200', RUNS: '1', CONCURRENCY: '100' }, 45000)
  t.is(code, 0, stderr)
  const found = tables(stdout)
  t.deepEqual([...found.keys()], ['Idle SSE subscribers', 'Parked long-polls'])
  for (const [title, rows] of found) {
    t.deepEqual([...rows.keys()], SERVERS, title)
    for (const [label, cells] of rows) {
      // columns: RSS gc(), RSS reducing gc, V8 heap used, kernel, baseline; the heap is the steady one.
      // The bare node:net floor keeps almost nothing on the V8 heap per socket: at 200 its figure is
      // within the collector's noise and may read below zero; every other server holds objects.
      t.true(Number.isFinite(cells[2]), `${title}, ${label}: V8 heap per connection ${cells[2]}`)
      if (label !== 'bare node:net (floor)') t.true(cells[2]! > 0, `${title}, ${label}: V8 heap per connection ${cells[2]}`)
    }
  }
  t.regex(doc, /- commit: \S+/)
  t.regex(doc, /- command: `SUBSCRIBERS=200 RUNS=1 CONCURRENCY=100 node benchmarks\/connections\.ts`/)
  t.true(doc.includes('| Parkline |'))
})

test.serial('the message-memory benchmark runs small and reports a positive cost per message held', async (t) => {
  t.timeout(50000)
  const { code, stderr, doc } = await runBench(t, 'benchmarks/message-memory.ts', { MESSAGES: '4000', CHANNELS: '200', SIZE: '512' }, 45000)
  t.is(code, 0, stderr)
  t.regex(doc, /Command: `MESSAGES=4000 CHANNELS=200 SIZE=512 TRANSPORT=eventsource node benchmarks\/message-memory\.ts`/)
  const row = doc.split('\n').find((l) => l.startsWith('| eventsource | 4,000 |'))
  t.truthy(row, doc)
  const cells = row!.split('|').slice(2, -1).map((c) => Number(c.trim().replace(/,/g, '')))
  // messages, channels, body bytes, held, delivered, RSS, heap, ArrayBuffer bytes per message, seconds
  t.is(cells[3], 4000, 'every message held (200 channels x 20, under bufferLength)')
  t.is(cells[4], 4000, 'every message delivered live')
  // a 512-byte body is held in off-heap bytes of at least its own size
  t.true(cells[7]! >= 512, `ArrayBuffer bytes per message ${cells[7]}`)
})

test.serial('the WebSocket publishing benchmark runs small against Parkline and Nchan and reports publishes on both ways', async (t) => {
  t.timeout(60000)
  // (3 s a way: on a loaded host a 1 s window once ended before Nchan's first WebSocket publish was answered)
  const { code, stderr, doc } = await runBench(t, 'benchmarks/websocket-publish.ts', { DURATION: '3', ROUNDS: '1', CONNECTIONS: '2', WINDOW: '4' }, 55000)
  t.is(code, 0, stderr)
  t.regex(doc, /- command: `SERVERS=parkline,nchan CONNECTIONS=2 WINDOW=4 SIZE=512 DURATION=3 ROUNDS=1 node benchmarks\/websocket-publish\.ts`/)
  for (const server of ['parkline', 'nchan']) {
    for (const way of ['websocket', 'http']) {
      const row = doc.split('\n').find((l) => l.startsWith(`| ${server} | ${way} |`))
      t.truthy(row, `${server} ${way}: ${doc}`)
      const [perSecond, cpu] = row!.split('|').slice(3, -1).map((c) => Number(c.trim()))
      t.true(perSecond! > 0 && cpu! > 0, row)
    }
  }
  t.regex(doc, /\| websocket \| \d+\.\d\d× \|/)
})
