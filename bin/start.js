#!/usr/bin/env node
// `npm start` in a clone of the repository. The sources are TypeScript, run as they are on a Node
// that strips types (22.18+, 24: `npm ci` brings Node 24 for npm scripts); elsewhere the build in
// dist/ (`npm run build`) if there is one; otherwise one line saying what to do. An installed
// package needs none of this: its `parkline` command is the build.
import { existsSync } from 'node:fs'

if (process.features.typescript) {
  await import('./parkline.ts')
} else if (existsSync(new URL('../dist/bin/parkline.js', import.meta.url))) {
  await import('../dist/bin/parkline.js')
} else {
  process.stderr.write(`parkline: Node ${process.version} cannot run the TypeScript sources: use Node 22.18 or later, or install with npm ci (not --omit=dev: it brings Node 24 for npm scripts)\n`)
  process.exit(2)
}
