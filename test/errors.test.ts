import { readFileSync } from 'node:fs'
import test from 'ava'
import { ERRORS } from '../lib/errors.ts'

test('every error code is unique, prefixed, and listed in the CHANGELOG', (t) => {
  const changelog = readFileSync(new URL('../CHANGELOG.md', import.meta.url), 'utf8')
  const codes = Object.values(ERRORS).map((e) => e.code)
  t.is(new Set(codes).size, codes.length)
  for (const [name, e] of Object.entries(ERRORS)) {
    t.is(e.code as string, 'PKL_ERR_' + name)
    t.true(changelog.includes(e.code), `${e.code} missing from CHANGELOG.md`)
    t.true(e.statusCode >= 400 && e.statusCode < 600)
  }
})
