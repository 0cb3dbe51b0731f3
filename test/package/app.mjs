// A host app as a user writes it, run from a temporary folder where the packed Parkline, fastify@5
// and @fastify/websocket were installed from the registry (test/package.test.ts). Plain ESM: it
// runs on Node 22 and 24 as it is.
//   ORDER=parkline-first|websocket-first   which plugin is registered first
//   REDIS_URL=redis://…                    two such apps share channels through Redis
// Prints one JSON line {"port": N} when listening.
import Fastify from 'fastify'
import websocket from '@fastify/websocket'
import parkline from 'parkline'

const app = Fastify()
// the host's own auth: every request needs `x-token: ok`, Parkline's WebSocket handshake included
app.addHook('onRequest', async (request, reply) => {
  if (request.headers['x-token'] !== 'ok') return reply.code(401).header('content-type', 'text/plain').send('no token')
})
const options = { prefix: '/rt', ...(process.env.REDIS_URL ? { redisUrl: process.env.REDIS_URL } : {}) }
if (process.env.ORDER === 'websocket-first') {
  await app.register(websocket)
  await app.register(parkline, options)
} else {
  await app.register(parkline, options)
  await app.register(websocket)
}
// the host's own WebSocket route (served by @fastify/websocket) and its own /health and /metrics
app.register(async (scope) => {
  scope.get('/echo', { websocket: true }, (socket) => {
    socket.on('message', (m) => socket.send(String(m)))
  })
})
app.get('/health', async () => 'host health')
app.get('/metrics', async () => 'host metrics')
// publish and consume from the host's code through the facade
app.post('/host/publish/:channel', async (request) => {
  const r = await app.parkline.publish(request.params.channel, String(request.body ?? ''), { contentType: 'text/plain' })
  return { id: r.id, status: r.status }
})
app.get('/host/read/:channel', async (request) => {
  const out = []
  const ac = new AbortController()
  const timer = setTimeout(() => ac.abort(), 2000)
  for await (const m of app.parkline.subscribe(request.params.channel, { lastEventId: request.query.after, signal: ac.signal })) {
    out.push({ id: m.id, data: m.data.toString() })
    if (out.length >= Number(request.query.n ?? 1)) break
  }
  clearTimeout(timer)
  return out
})
app.get('/host/methods', async () => app.supportedMethods)

await app.listen({ port: 0, host: '127.0.0.1' })
process.stdout.write(JSON.stringify({ port: app.server.address().port, node: process.version }) + '\n')
process.on('SIGTERM', () => { app.close().then(() => process.exit(0)) })
