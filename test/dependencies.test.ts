// Dependencies are honest: every runtime dependency is imported by code that ships (lib/,
// transports/, bin/parkline.ts), and shipped code imports nothing that is only a dev dependency.
import { readFileSync, readdirSync } from 'node:fs'
import test from 'ava'

const root = new URL('../', import.meta.url)
const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { dependencies: Record<string, string>, peerDependencies: Record<string, string>, devDependencies: Record<string, string> }
/** What the installed package gets: its dependencies, and Fastify as the host's (a peer: one copy, the host's, whose types Parkline's augment). */
const runtime = { ...pkg.dependencies, ...pkg.peerDependencies }

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
  for (const dep of Object.keys(runtime)) t.true(used.has(dep), `dependency ${dep} is imported by no shipped file`)
  for (const s of used) t.true(s in runtime, `shipped code imports ${s}, which is not a runtime dependency`)
  // a peer is not also a dependency: npm would then install a copy of its own beside the host's
  for (const peer of Object.keys(pkg.peerDependencies)) t.false(peer in pkg.dependencies || peer in pkg.devDependencies, `${peer} is a peer and also a (dev) dependency`)
})
