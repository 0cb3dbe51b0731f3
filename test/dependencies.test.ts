// Dependencies are honest: every runtime dependency is imported by code that ships (lib/,
// transports/, bin/parkline.ts), and shipped code imports nothing that is only a dev dependency.
import { readFileSync, readdirSync } from 'node:fs'
import test from 'ava'

const root = new URL('../', import.meta.url)
const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { dependencies: Record<string, string>, devDependencies: Record<string, string> }

function shipped (): string[] {
  const files = ['bin/parkline.ts']
  for (const dir of ['lib/', 'transports/']) {
    for (const f of readdirSync(new URL(dir, root))) if (f.endsWith('.ts')) files.push(dir + f)
  }
  return files
}

function importsOf (file: string): Set<string> {
  // comments may quote import lines; only code counts
  const text = readFileSync(new URL(file, root), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '')
  const out = new Set<string>()
  for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*)'([^'.][^']*)'/g)) {
    const spec = m[1]!
    if (spec.startsWith('node:') || spec === 'parkline' || spec.startsWith('parkline/')) continue
    out.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!)
  }
  return out
}

test('every runtime dependency is imported by shipped code, and shipped code imports no dev dependency', (t) => {
  const used = new Set<string>()
  for (const f of shipped()) for (const s of importsOf(f)) used.add(s)
  for (const dep of Object.keys(pkg.dependencies)) t.true(used.has(dep), `dependency ${dep} is imported by no shipped file`)
  for (const s of used) t.true(s in pkg.dependencies, `shipped code imports ${s}, which is not a runtime dependency`)
})
