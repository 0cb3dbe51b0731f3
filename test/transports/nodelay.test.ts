// Option tcpNoDelay: a stream subscriber's socket gets TCP_NODELAY as the option says (true by
// default, as Node's HTTP server sets on every connection), on Node's path and on the raw
// connections of the standalone server, for SSE and WebSocket. Node has no getsockopt, so the
// server side's setNoDelay calls are recorded; what Nagle does to throughput and latency is
// measured in benchmarks/results/tcp-nodelay-2026-12-04.md.
import net from 'node:net'
import test from 'ava'
import { SseClient, startStandalone, until } from '../helpers/server.ts'
import { RawWs } from '../helpers/websocket.ts'

/** The last setNoDelay value per socket, recorded while the tests run (they run serially). */
const last = new Map<net.Socket, boolean>()
const original = net.Socket.prototype.setNoDelay
net.Socket.prototype.setNoDelay = function (this: net.Socket, noDelay?: boolean) {
  last.set(this, noDelay !== false)
  return original.call(this, noDelay)
}

/** The server's end of the client connection whose local port is `port`. */
function serverSide (port: number): net.Socket | undefined {
  for (const s of last.keys()) if (s.remotePort === port && s.remoteAddress === '127.0.0.1' && s.localPort !== port) return s
  return undefined
}

for (const fast of [true, false]) {
  for (const noDelay of [true, false]) {
    test.serial(`${fast ? 'raw connections' : 'Node\'s path'}: tcpNoDelay ${String(noDelay)} is what SSE and WebSocket subscribers' sockets get`, async (t) => {
      last.clear()
      const opts = noDelay ? {} : { tcpNoDelay: false }
      const { port } = await startStandalone(t, opts, fast)
      const sse = await SseClient.connect(port, '/sub/nd')
      t.teardown(() => sse.close())
      await sse.until(() => sse.comments.includes(': hi'))
      const ws = await RawWs.connect(port, '/sub/nd')
      t.teardown(() => ws.socket.destroy())
      t.is(ws.status, 101)
      for (const [what, local] of [['SSE', sse.socket.localPort!], ['WebSocket', ws.socket.localPort!]] as const) {
        t.true(await until(() => serverSide(local) !== undefined), `${what}: the server's socket set no TCP_NODELAY at all`)
        t.is(last.get(serverSide(local)!), noDelay, what)
      }
    })
  }
}
