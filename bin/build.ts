// `npm run build` (also `prepack`): the package as published — compiled ESM JavaScript and .d.ts
// under dist/, so an installed Parkline runs on Node 22 and 24 with no loader and no .ts source
// on its runtime path. The clone keeps running from the sources (type stripping).
//
//   node bin/build.ts
import { execFileSync } from 'node:child_process'
import { chmodSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const DIST = path.join(ROOT, 'dist')

function walk (dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name)
    if (statSync(p).isDirectory()) walk(p, out)
    else out.push(p)
  }
  return out
}

rmSync(DIST, { recursive: true, force: true })
const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
execFileSync(process.execPath, [tsc, '-p', path.join(ROOT, 'tsconfig.build.json')], { stdio: ['ignore', 2, 2] }) // stdout stays clean for `npm pack --json`
let files = 0
for (const file of walk(DIST)) {
  if (file.endsWith('.d.ts')) {
    // tsc rewrites `.ts` specifiers in the JavaScript it emits, not in declarations
    const text = readFileSync(file, 'utf8')
    const fixed = text.replace(/((?:from|import)\s*\(?\s*'\.{1,2}\/[^']*?)\.ts'/g, "$1.js'")
    if (fixed !== text) writeFileSync(file, fixed)
  } else if (file.startsWith(path.join(DIST, 'client') + path.sep)) {
    // the client's runtime is the browser build in client/dist/ (one file set for browsers and
    // Node); only its declarations come from here
    rmSync(file)
    continue
  }
  files++
}
chmodSync(path.join(DIST, 'bin', 'parkline.js'), 0o755)
process.stderr.write(`wrote ${files} files to dist/\n`)
