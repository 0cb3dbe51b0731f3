// Imported first by bin/parkline.ts, so that it runs before any other module is loaded: a single
// `parkline serve` process restarts itself in place with V8's thread count for the host
// (lib/gc-threads.ts). Nothing here writes to stdout or stderr (see restartWithPoolSize); a bad
// argument is left for bin/parkline.ts to report. The outcome is kept for the start-up log.
import { availableParallelism } from 'node:os'
import { parseCliArgs, resolveOptions, workerCount } from './config.ts'
import { RESTARTED, gcThreads, restartWithPoolSize } from './gc-threads.ts'
import { shippedConfig } from './paths.ts'

/** This process's V8 thread count as set at start (null: Node's own), and why it was not set if not. */
export const gcStart: { threads: number | null, skipped: string | null } = { threads: null, skipped: null }

function start (): void {
  const restarted = process.env[RESTARTED]
  if (restarted !== undefined) {
    // a child of this server (a worker, a tool it runs) decides for itself
    delete process.env[RESTARTED]
    gcStart.threads = Number(restarted)
    return
  }
  let parsed
  try {
    parsed = parseCliArgs(process.argv.slice(2))
  } catch {
    return
  }
  if (parsed.command !== 'serve') return
  let opts
  try {
    opts = resolveOptions(parsed.flags, { file: parsed.config ?? shippedConfig(), env: process.env })
  } catch {
    return
  }
  const cores = availableParallelism()
  if (workerCount(opts, cores) !== 1) return
  gcStart.skipped = restartWithPoolSize(gcThreads(opts, cores, 1))
}

start()
