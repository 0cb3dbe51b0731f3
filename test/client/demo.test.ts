// Option `demo`: off by default; on, /demo/ serves client/demo.html and the client's browser build.
import { readFileSync } from 'node:fs'
import test from 'ava'
import Fastify from 'fastify'
import parkline from '../../lib/plugin.ts'
import { startServer } from '../helpers/server.ts'

test('demo off (the default): no /demo/ route', async (t) => {
  const { base } = await startServer(t)
  t.is((await fetch(`${base}/demo/`)).status, 404)
})

test('demo on: the page, its scripts (the committed build) and a redirect from /demo', async (t) => {
  const { base } = await startServer(t, { demo: true })
  const page = await fetch(`${base}/demo/`)
  t.is(page.status, 200)
  t.regex(page.headers.get('content-type')!, /^text\/html/)
  t.regex(await page.text(), /import \{ Parkline \} from '\.\/parkline\.js'/)
  for (const name of ['parkline.js', 'transports.js', 'wire.js']) {
    const res = await fetch(`${base}/demo/${name}`)
    t.is(res.status, 200)
    t.regex(res.headers.get('content-type')!, /^text\/javascript/)
    t.is(await res.text(), readFileSync(new URL(`../../client/dist/${name}`, import.meta.url), 'utf8'))
  }
  t.is((await fetch(`${base}/demo/../package.json`)).status, 404)
  t.is((await fetch(`${base}/demo/nope.js`)).status, 404)
  const redirect = await fetch(`${base}/demo`, { redirect: 'manual' })
  t.is(redirect.status, 302)
  t.is(redirect.headers.get('location'), 'demo/')
  t.is(new URL(redirect.headers.get('location')!, `${base}/demo`).pathname, '/demo/')
})

test('demo embedded under a prefix, with its own subscriber prefix: the page publishes and subscribes there, and /rt/demo leads to /rt/demo/', async (t) => {
  const app = Fastify()
  await app.register(parkline, { prefix: '/rt', demo: true, subPrefix: '/s/' })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  const html = await (await fetch(`${base}/rt/demo/`)).text()
  t.true(html.includes('const PATHS = {"pub":"/rt/pub/","sub":"/rt/s/"} // parkline:paths'), html.slice(0, 4000))
  const redirect = await fetch(`${base}/rt/demo`, { redirect: 'manual' })
  t.is(redirect.status, 302)
  t.is(new URL(redirect.headers.get('location')!, `${base}/rt/demo`).pathname, '/rt/demo/')
  // the page's paths are the live ones
  t.is((await fetch(`${base}/rt/pub/d`, { method: 'POST', body: 'x' })).status, 202)
  t.is((await fetch(`${base}/rt/s/d`, { headers: { 'If-Modified-Since': 'Thu, 01 Jan 1970 00:00:00 GMT' } })).status, 200)
})

for (const config of [{ ignoreTrailingSlash: true }, { routerOptions: { ignoreTrailingSlash: true } }]) {
  test(`demo embedded in a host whose router ignores trailing slashes (${JSON.stringify(config)}): the host starts, /rt/demo leads to /rt/demo/, the page is served there`, async (t) => {
    const app = Fastify(config)
    await app.register(parkline, { prefix: '/rt', demo: true })
    await app.listen({ port: 0, host: '127.0.0.1' })
    t.teardown(() => app.close())
    const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
    const redirect = await fetch(`${base}/rt/demo`, { redirect: 'manual' })
    t.is(redirect.status, 302)
    t.is(new URL(redirect.headers.get('location')!, `${base}/rt/demo`).pathname, '/rt/demo/')
    const page = await fetch(`${base}/rt/demo/`)
    t.is(page.status, 200)
    t.regex(await page.text(), /parkline:paths/)
    t.is((await fetch(`${base}/rt/demo/parkline.js`)).status, 200)
  })
}
