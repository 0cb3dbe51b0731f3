// benchmarks/websocket.ts run small, every kind, each message published over HTTP: Parkline (with
// and without deflate, with and without Nagle), Nchan (with and without its deflated copies) and
// ws. Every client receives every message (the run waits for all frames), and the report has a
// row per kind with a delivery rate, the server's CPU and write calls per delivery, and memory
// where the server is a Node process. Nchan is not optional: without nginx + libnginx-mod-nchan
// this test fails and says how to install them.
import test from 'ava'
import { haveNchan, runBench } from './helpers/bench.ts'

const KINDS = ['parkline', 'parkline-nagle', 'nchan', 'ws', 'parkline-deflate', 'parkline-deflate-nagle', 'nchan-deflate']

test.serial('the WebSocket benchmark runs every kind, Nchan included, over HTTP publishes', async (t) => {
  t.timeout(180000)
  if (!haveNchan(t, 'the WebSocket benchmark needs')) return
  const { code, stdout, stderr, doc } = await runBench(t, 'benchmarks/websocket.ts', {
    SUBSCRIBERS: '100', MESSAGES: '5', SIZE: '1024', BODY: 'json', KINDS: KINDS.join(','), PUBLISH: 'http', RUNS: '1'
  }, 170000)
  t.is(code, 0, stdout + stderr)
  t.regex(doc, /^Command: `SUBSCRIBERS=100 MESSAGES=5 SIZE=1024 BODY=json KINDS=\S+ PUBLISH=http RUNS=1 node benchmarks\/websocket\.ts`$/m)
  t.regex(doc, /, nginx [^,]+, libnginx-mod-nchan /)
  const rows = new Map(doc.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| server')).map((l) => {
    const cells = l.split('|').slice(1, -1).map((c) => c.trim())
    return [cells[0]!, cells.slice(1)] as const
  }))
  t.deepEqual([...rows.keys()], KINDS)
  for (const [kind, cells] of rows) {
    // heap, external, heap+external, RSS, fan-out, end-to-end [runs], CPU µs [runs], writes, frame bytes
    const e2e = Number(cells[5]!.split(' ')[0]!.replace(/,/g, ''))
    t.true(e2e > 0, `${kind}: end-to-end ${cells[5]}`)
    t.regex(cells[6]!, /^[\d.]+ \[[\d.]+\]$/, kind)
    // one write per delivery or fewer (Nagle holds writes, not calls; none is split here)
    const writes = Number(cells[7])
    t.true(writes > 0 && writes < 2, `${kind}: write calls per delivery ${cells[7]}`)
    // memory: measured in the Node servers' own process (a figure, which at this size is within the
    // collector's noise), not for nginx
    if (kind.startsWith('nchan')) t.is(cells[0], 'n/a', kind)
    else t.regex(cells[0]!, /^-?[\d,]+$/, `${kind}: heap per subscriber`)
    // PUBLISH=http: no in-process fan-out figure
    t.is(cells[4], 'n/a', kind)
  }
  // a compressed frame is smaller than the plain one (1 KiB of JSON)
  t.true(Number(rows.get('parkline-deflate')![8]!.replace(/,/g, '')) < Number(rows.get('parkline')![8]!.replace(/,/g, '')))
})
