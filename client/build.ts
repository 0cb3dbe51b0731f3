// Build the browser ESM of the client: client/*.ts → client/dist/*.js with Node 24's own type
// stripper (module.stripTypeScriptTypes: types become whitespace, so line and column numbers stay
// those of the source) and relative `.ts` imports renamed `.js`. No bundler, no new dependency.
//
//   node client/build.ts           write client/dist/
//   node client/build.ts --check   exit 1 when client/dist/ differs from what the sources give
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { stripTypeScriptTypes } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const DIR = path.dirname(fileURLToPath(import.meta.url))
export const DIST = path.join(DIR, 'dist')
/** The modules of the client; build.ts itself is a Node script, not part of it. */
export const SOURCES = ['wire.ts', 'transports.ts', 'parkline.ts']

/** One source file as browser JavaScript. */
export function compile (source: string, file: string): string {
  const js = stripTypeScriptTypes(source, { mode: 'strip' })
  // trailing blanks (where types were) go; lines stay where they were
  const out = js.replace(/(from\s+'\.\/[\w-]+)\.ts'/g, "$1.js'").replace(/[ \t]+$/gm, '')
  return `// Generated from client/${file} by client/build.ts: edit the .ts file, then run \`node client/build.ts\`.\n` + out
}

/** Every dist file and its content, built in memory. */
export function buildAll (): Map<string, string> {
  const out = new Map<string, string>()
  for (const file of SOURCES) {
    out.set(file.replace(/\.ts$/, '.js'), compile(readFileSync(path.join(DIR, file), 'utf8'), file))
  }
  return out
}

/** The dist files that are missing or differ from a fresh build. */
export function staleFiles (): string[] {
  const stale: string[] = []
  for (const [name, content] of buildAll()) {
    const file = path.join(DIST, name)
    if (!existsSync(file) || readFileSync(file, 'utf8') !== content) stale.push(name)
  }
  for (const name of existsSync(DIST) ? readdirSync(DIST) : []) {
    if (!SOURCES.includes(name.replace(/\.js$/, '.ts'))) stale.push(name + ' (no source)')
  }
  return stale
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--check')) {
    const stale = staleFiles()
    if (stale.length > 0) {
      process.stderr.write(`client/dist is out of date: ${stale.join(', ')}; run node client/build.ts\n`)
      process.exit(1)
    }
  } else {
    mkdirSync(DIST, { recursive: true })
    for (const [name, content] of buildAll()) writeFileSync(path.join(DIST, name), content)
    process.stdout.write(`wrote ${SOURCES.length} files to client/dist/\n`)
  }
}
