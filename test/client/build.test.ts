// client/dist/ is committed (browsers cannot load .ts): it must be exactly what client/build.ts
// makes of the sources, and it must load as plain ESM.
import test from 'ava'
import { buildAll, staleFiles } from '../../client/build.ts'

test('client/dist is up to date with client/*.ts (run `node client/build.ts` after editing)', (t) => {
  t.deepEqual(staleFiles(), [])
})

test('the built client is plain JavaScript that loads and exports the same API', async (t) => {
  const files = buildAll()
  t.deepEqual([...files.keys()].sort(), ['parkline.js', 'transports.js', 'wire.js'])
  for (const [name, js] of files) {
    t.false(/from '\.\/[\w-]+\.ts'/.test(js), `${name} imports .ts`)
    t.false(/\binterface\s+\w+\s*\{/.test(js.replace(/\/\/.*$/gm, '')), `${name} still has an interface`)
  }
  const built = '../../client/dist/parkline.js' // a variable: type-check against the source, load the build
  const dist = await import(built) as typeof import('../../client/parkline.ts')
  const src = await import('../../client/parkline.ts')
  t.deepEqual(Object.keys(dist).sort(), Object.keys(src).sort())
  const c = new dist.Parkline('http://127.0.0.1:1/sub/a,b')
  t.deepEqual(c.channels, ['a', 'b'])
})
