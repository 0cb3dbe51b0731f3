// Embedded: a host's hook that guards channels reads request.parklineChannels, the channels as
// Parkline serves them; a URL prefix cannot guard one (percent-encoding, multiplexed lists).
import test from 'ava'
import net from 'node:net'
import Fastify from 'fastify'
import parkline from '../lib/plugin.ts'
import { rawRequest } from './helpers/server.ts'

test('request.parklineChannels names the channels of every spelling of a request (escapes, %2F, a multiplexed list), so a host hook can guard one; null off Parkline\'s locations', async (t) => {
  const app = Fastify({ logger: false })
  await app.register(parkline, { prefix: '/rt', logLevel: 'silent', publisherOpen: true })
  const seen: Array<{ url: string, channels: unknown }> = []
  app.addHook('onRequest', async (request, reply) => {
    seen.push({ url: request.url, channels: request.parklineChannels })
    if (request.parklineChannels?.channels.some((c) => c.startsWith('admin/')) === true && request.headers.authorization !== 'Bearer ok') {
      return await reply.code(401).send()
    }
  })
  app.get('/other', async () => 'other')
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as net.AddressInfo).port
  const get = async (path: string, extra = ''): Promise<number> => (await rawRequest(port, `GET ${path} HTTP/1.1\r\nHost: a\r\n${extra}\r\n`)).status
  for (const path of ['/rt/sub/admin/secret', '/rt/sub/%61dmin/secret', '/rt/sub/admin%2Fsecret', '/rt/sub/public,admin/secret', '/rt/sub/public%2Cadmin%2Fsecret']) {
    t.is(await get(path), 401, path)
  }
  t.is((await rawRequest(port, 'POST /rt/pub/%61dmin%2Fx HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx')).status, 401)
  t.is((await rawRequest(port, 'POST /rt/pub/admin%2Fx HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ok\r\nContent-Length: 1\r\n\r\nx')).status, 202)
  t.is((await rawRequest(port, 'POST /rt/pub/caf%C3%A9 HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx')).status, 202)
  t.is(await get('/other'), 200)
  const of = (url: string): unknown => seen.find((s) => s.url === url)?.channels
  t.deepEqual(of('/rt/sub/public%2Cadmin%2Fsecret'), { location: 'subscriber', channels: ['public', 'admin/secret'] })
  t.deepEqual(of('/rt/pub/caf%C3%A9'), { location: 'publisher', channels: ['café'] })
  t.is(of('/other'), null)
})
