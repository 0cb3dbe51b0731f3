// permessage-deflate (RFC 7692, PROTOCOL.md §7, option `websocketDeflate`): negotiation, frames
// compressed once per message for every subscriber that negotiated it, against the `ws` library,
// Node's global WebSocket (undici) and a raw client for exact bytes; on Fastify's path and the
// standalone server's raw one.
import { constants as zlibConstants, inflateRawSync } from 'node:zlib'
import { randomBytes } from 'node:crypto'
import test, { type ExecutionContext } from 'ava'
import { pub } from '../helpers/conformance.ts'
import { eventually, startServer, startStandalone, type Running } from '../helpers/server.ts'
import { KINDS, RawWs, openClient, parseMeta, type WsFrame } from '../helpers/websocket.ts'
import { Message } from '../../lib/message.ts'
import { acceptDeflate } from '../../transports/websocket.ts'
import { DEFLATE_MAX } from '../../transports/websocket-frame.ts'
import { coreOf } from '../../lib/plugin.ts'

const OFFER = 'permessage-deflate; client_max_window_bits'
/** 4 KB of JSON-like text: compresses well. */
const BIG = JSON.stringify(Array.from({ length: 120 }, (_, i) => ({ id: i, name: `item ${i % 7}`, ok: i % 3 === 0 }))).slice(0, 4096)
const SMALL = 'short one'

/** The payload of a compressed frame, inflated as a receiver does (RFC 7692 §7.2.2): the tail the sender took off (§7.2.1) added back. */
function inflate (f: WsFrame): Buffer {
  if (f.payload.length >= 4 && f.payload.readUInt32BE(f.payload.length - 4) === 0xffff) throw new Error('the sync flush tail was left on the payload')
  return inflateRawSync(Buffer.concat([f.payload, Buffer.from([0x00, 0x00, 0xff, 0xff])]), { finishFlush: zlibConstants.Z_SYNC_FLUSH })
}

/** What a raw client's data frame carries, inflated where RSV1 says it is compressed. */
function body (f: WsFrame): Buffer {
  return f.rsv === 0x40 ? inflate(f) : f.payload
}

const servers: Array<[string, (t: ExecutionContext, o: Record<string, unknown>) => Promise<Running>]> = [
  ['Fastify path', async (t, o) => await startServer(t, o)],
  ['standalone raw path', async (t, o) => await startStandalone(t, o, true)]
]

for (const [path, start] of servers) {
  test(`[raw] (${path}) negotiation: an offer it can take gets permessage-deflate; server_no_context_takeover, others none`, async (t) => {
    const srv = await start(t, { websocketDeflate: true })
    const ANSWER = 'permessage-deflate; server_no_context_takeover'
    const cases: Array<[string, string | null]> = [
      [OFFER, ANSWER],
      ['permessage-deflate', ANSWER],
      ['permessage-deflate; client_no_context_takeover; server_no_context_takeover; client_max_window_bits=10', ANSWER],
      // accepted by echoing it (RFC 7692 §7.1.2.1)
      ['permessage-deflate; server_max_window_bits=15', ANSWER + '; server_max_window_bits=15'],
      ['permessage-deflate; server_max_window_bits=10', null],
      ['permessage-deflate; server_max_window_bits=10, permessage-deflate', ANSWER],
      ['permessage-deflate; client_max_window_bits=16', null],
      ['permessage-deflate; client_no_context_takeover; client_no_context_takeover', null],
      ['permessage-deflate; unknown_param', null],
      ['x-webkit-deflate-frame', null],
      ['', null]
    ]
    for (const [offer, answer] of cases) {
      const c = await RawWs.connect(srv.port, '/sub/neg', offer === '' ? {} : { 'Sec-WebSocket-Extensions': offer })
      t.is(c.status, 101, offer)
      t.is<string | null, string | null>(c.headers['sec-websocket-extensions'] ?? null, answer, offer)
      c.close()
    }
  })

  test(`[raw] (${path}) a message is compressed once for all: RSV1 set, the same bytes on every socket, inflating to the body; a short one goes as it is`, async (t) => {
    const srv = await start(t, { websocketDeflate: true })
    const a = await RawWs.connect(srv.port, '/sub/z', { 'Sec-WebSocket-Extensions': OFFER })
    const b = await RawWs.connect(srv.port, '/sub/z', { 'Sec-WebSocket-Extensions': OFFER })
    const plain = await RawWs.connect(srv.port, '/sub/z')
    const meta = await RawWs.connect(srv.port, '/sub/z', { 'Sec-WebSocket-Extensions': OFFER, 'Sec-WebSocket-Protocol': 'ws+meta.nchan' })
    t.teardown(() => { for (const c of [a, b, plain, meta]) c.close() })
    t.true(await eventually(() => coreOf(srv.app).table.size === 4))
    await pub(srv.base, 'z', BIG, { 'Content-Type': 'application/json' })
    await pub(srv.base, 'z', SMALL)
    const [fa, fb, fp, fm] = await Promise.all([a, b, plain, meta].map(async (c) => await c.waitMessages(2)))
    // compressed, shared, and smaller
    t.is(fa![0]!.rsv, 0x40)
    t.is(fa![0]!.opcode, 1)
    t.true(fa![0]!.payload.equals(fb![0]!.payload))
    t.true(fa![0]!.payload.length < BIG.length / 3, `${fa![0]!.payload.length} bytes`)
    t.is(inflate(fa![0]!).toString(), BIG)
    // too short to pay: sent as it is, to them too
    t.is(fa![1]!.rsv, 0)
    t.is(fa![1]!.payload.toString(), SMALL)
    // a client that did not offer it gets frames as before
    t.deepEqual(fp!.map((f) => [f.rsv, f.payload.toString()]), [[0, BIG], [0, SMALL]])
    // ws+meta: the meta lines are compressed with the body
    t.is(fm![0]!.rsv, 0x40)
    const m = parseMeta(inflate(fm![0]!))
    t.is(m.meta['content-type'], 'application/json')
    t.is(m.body.toString(), BIG)
    t.is(parseMeta(body(fm![1]!)).body.toString(), SMALL)
  })
}

test('[raw] without the option (the default) nothing is negotiated and no frame is compressed', async (t) => {
  const srv = await startServer(t)
  const c = await RawWs.connect(srv.port, '/sub/off', { 'Sec-WebSocket-Extensions': OFFER })
  t.teardown(() => c.close())
  t.false('sec-websocket-extensions' in c.headers)
  t.true(await eventually(() => coreOf(srv.app).table.size === 1))
  await pub(srv.base, 'off', BIG)
  const [f] = await c.waitMessages(1)
  t.is(f!.rsv, 0)
  t.is(f!.payload.toString(), BIG)
})

test('[raw] multiplexed ws+meta frames carry ids of their own: sent uncompressed, and read right', async (t) => {
  const srv = await startServer(t, { websocketDeflate: true })
  const c = await RawWs.connect(srv.port, '/sub/ma,mb', { 'Sec-WebSocket-Extensions': OFFER, 'Sec-WebSocket-Protocol': 'ws+meta.parkline' })
  t.teardown(() => c.close())
  t.true(await eventually(() => coreOf(srv.app).table.size === 1))
  await pub(srv.base, 'mb', BIG)
  const [f] = await c.waitMessages(1)
  t.is(f!.rsv, 0)
  t.is(parseMeta(f!.payload).body.toString(), BIG)
})

test('[raw] with deflate negotiated, a compressed message from the client is refused as publishing (1008); RSV1 on a control frame, or RSV2, is still malformed (1002)', async (t) => {
  const srv = await startServer(t, { websocketDeflate: true })
  const cases: Array<[string, (w: RawWs) => void, number]> = [
    ['compressed text', (w) => w.send(0x1, Buffer.from([0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]), { rsv: 0x40 }), 1008],
    ['RSV1 on a ping', (w) => w.send(0x9, 'x', { rsv: 0x40 }), 1002],
    ['RSV2 on text', (w) => w.send(0x1, 'x', { rsv: 0x20 }), 1002]
  ]
  for (const [name, act, code] of cases) {
    const w = await RawWs.connect(srv.port, '/sub/in', { 'Sec-WebSocket-Extensions': OFFER })
    t.is(w.headers['sec-websocket-extensions'], 'permessage-deflate; server_no_context_takeover')
    act(w)
    await w.waitClosed()
    t.is(w.closeFrame?.code, code, name)
  }
  // without it, RSV1 on a data frame is malformed, as before
  const off = await startServer(t)
  const w = await RawWs.connect(off.port, '/sub/in', { 'Sec-WebSocket-Extensions': OFFER })
  w.send(0x1, 'x', { rsv: 0x40 })
  await w.waitClosed()
  t.is(w.closeFrame?.code, 1002)
})

for (const kind of KINDS) {
  test(`[${kind}] a client that offers permessage-deflate gets every message whole, text and binary, large and short, on both paths`, async (t) => {
    for (const [, start] of servers) {
      const srv = await start(t, { websocketDeflate: true })
      const c = await openClient(kind, srv, '/sub/cl')
      t.teardown(() => c.close())
      t.regex(c.extensions, /^permessage-deflate/)
      t.true(await eventually(() => coreOf(srv.app).table.size === 1))
      const bin = Buffer.alloc(3000, 7)
      await pub(srv.base, 'cl', BIG)
      await pub(srv.base, 'cl', SMALL)
      await pub(srv.base, 'cl', bin, { 'Content-Type': 'application/octet-stream' })
      const got = await c.wait(3)
      t.deepEqual(got.map((g) => [g.binary, g.data.toString('base64')]), [[false, Buffer.from(BIG).toString('base64')], [false, Buffer.from(SMALL).toString('base64')], [true, bin.toString('base64')]])
    }
  })
}

test('acceptDeflate(): several headers, quoted values, case', (t) => {
  t.is(acceptDeflate(['x-other', 'Permessage-Deflate; Client_Max_Window_Bits="12"']), 'permessage-deflate; server_no_context_takeover')
  t.is(acceptDeflate(undefined), null)
  t.is(acceptDeflate('permessage-deflate; server_max_window_bits'), null)
})

for (const coalesce of [true, false]) {
  test(`[raw] (coalesce ${String(coalesce)}) live and catch-up frames: a subscriber resuming from a cursor gets the buffered messages compressed, then live ones; past ${DEFLATE_MAX} bytes a message goes as it is`, async (t) => {
    const srv = await startServer(t, { websocketDeflate: true, coalesce })
    const huge = BIG.repeat(Math.ceil((DEFLATE_MAX + 1) / BIG.length))
    const first = await pub(srv.base, 'cu', 'first')
    await pub(srv.base, 'cu', BIG)
    await pub(srv.base, 'cu', huge)
    const c = await RawWs.connect(srv.port, `/sub/cu?last_event_id=${encodeURIComponent(first.id)}`, { 'Sec-WebSocket-Extensions': OFFER })
    t.teardown(() => c.close())
    await c.waitMessages(2)
    await pub(srv.base, 'cu', BIG + '!')
    const got = await c.waitMessages(3)
    t.deepEqual(got.map((f) => f.rsv), [0x40, 0, 0x40])
    t.deepEqual(got.map((f) => body(f).toString()), [BIG, huge, BIG + '!'])
  })
}

test('a message\'s compressed frames are built once (shared by every subscriber), the plain frame where compressing does not pay', (t) => {
  const big = new Message(1, 0, Buffer.from(BIG), null, null, Date.now())
  t.is(big.wsDeflateFrame(), big.wsDeflateFrame())
  t.not(big.wsDeflateFrame(), big.wsFrame())
  t.is(big.wsDeflateMetaFrame(), big.wsDeflateMetaFrame())
  const small = new Message(1, 1, Buffer.from(SMALL), null, null, Date.now())
  t.is(small.wsDeflateFrame(), small.wsFrame())
  t.is(small.wsDeflateMetaFrame(), small.wsMetaFrame())
  // random bytes do not compress: sent as they are
  const noise = new Message(1, 2, randomBytes(2000), 'application/octet-stream', null, Date.now())
  t.is(noise.wsDeflateFrame(), noise.wsFrame())
})
