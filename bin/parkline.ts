#!/usr/bin/env node
// parkline serve [--config FILE] [--port N] [--<option> VALUE]…
// Options: defaults < conf/parkline.json (or --config) < PARKLINE_* environment < flags.
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { OPTIONS, flagName, resolveOptions } from '../lib/config.ts'
import { ParklineError } from '../lib/errors.ts'
import { buildServer, installShutdown } from '../lib/server.ts'

const DEFAULT_CONFIG = fileURLToPath(new URL('../conf/parkline.json', import.meta.url))

function usage (): string {
  let s = 'usage: parkline serve [--config FILE] [options]\n\noptions (flag, env, default):\n'
  for (const o of OPTIONS) s += `  ${flagName(o.name).padEnd(32)} ${JSON.stringify(o.default).padEnd(12)} ${o.doc}\n`
  return s
}

function parseArgs (argv: string[]): { command: string, config: string | undefined, flags: Record<string, string> } {
  const byFlag = new Map(OPTIONS.map((o) => [flagName(o.name), o.name as string]))
  let command = 'serve'
  let config: string | undefined
  const flags: Record<string, string> = {}
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (!a.startsWith('--')) { command = a; continue }
    const eq = a.indexOf('=')
    const name = eq === -1 ? a : a.slice(0, eq)
    const value = eq === -1 ? argv[++i] : a.slice(eq + 1)
    if (name === '--help') { command = 'help'; continue }
    if (value === undefined) throw new ParklineError('PKL_ERR_CONFIG', `${name} needs a value`, 2)
    if (name === '--config') { config = value; continue }
    const key = byFlag.get(name)
    if (key === undefined) throw new ParklineError('PKL_ERR_CONFIG', `unknown flag ${name}`, 2)
    flags[key] = value
  }
  return { command, config, flags }
}

async function main (): Promise<void> {
  const { command, config, flags } = parseArgs(process.argv.slice(2))
  if (command === 'help') { process.stdout.write(usage()); return }
  if (command !== 'serve') throw new ParklineError('PKL_ERR_CONFIG', `unknown command "${command}"\n${usage()}`, 2)
  const file = config ?? (existsSync(DEFAULT_CONFIG) ? DEFAULT_CONFIG : undefined)
  const opts = resolveOptions(flags, { file, env: process.env })
  const app = await buildServer(opts)
  installShutdown(app, opts)
  const address = await app.listen({ port: opts.port, host: opts.host })
  process.stdout.write(`parkline listening on ${address} (publisher ${opts.pubPrefix}<channel>, subscriber ${opts.subPrefix}<channel>)\n`)
}

main().catch((err: unknown) => {
  process.stderr.write(`parkline: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(2)
})
