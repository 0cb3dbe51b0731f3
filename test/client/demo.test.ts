// Option `demo`: off by default; on, /demo/ serves client/demo.html and the client's browser build.
import { readFileSync } from 'node:fs'
import test from 'ava'
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
  t.is(redirect.headers.get('location'), '/demo/')
})
