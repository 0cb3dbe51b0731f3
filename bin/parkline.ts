#!/usr/bin/env node
// parkline serve [--config FILE] [--port N] [--<option> VALUE]…
// parkline doctor [--workers N] [--require N] [--json]: capacity of this host (lib/doctor.ts).
// parkline token --sub ID --subscribe PATTERNS [--publish PATTERNS] [--admin] [--ttl S]: an HS256
//   token signed with the configured jwtSecret (lib/token-cli.ts).
// Options: defaults < conf/parkline.json (or --config) < PARKLINE_* environment < flags.
//
// This file only orders the start: lib/early-signals.ts first (a SIGHUP while starting must not
// end the process), then lib/gc-threads-start.ts before anything else is loaded
// (a single server process may restart itself in place there, and must not have touched stdout
// or stderr: importing node:http alone does), then the command itself (lib/cli.ts).
import '../lib/early-signals.ts'
import { fileURLToPath } from 'node:url'

// the package runs on Node 22.12 or later (package.json's engines): an older Node is refused here
// in one line, not left to fail further on (on Node 20, workers never start and say nothing of why),
// with exit status 2, as a refused configuration: a supervisor's restart cannot mend it
// (conf/systemd/parkline.service does not try again after 2)
const [major = 0, minor = 0] = process.versions.node.split('.').map(Number)
if (major < 22 || (major === 22 && minor < 12)) {
  process.stderr.write(`parkline: Node ${process.version} is not supported: use Node 22.12 or later\n`)
  process.exit(2)
}

// a worker's first word to its primary, before the rest loads: until it comes the primary judges
// the worker as starting (lib/cluster.ts SILENT_START_MS), and loading the rest may take long on a
// slow disk or a host busy with many starting workers
if (process.argv[2] === 'worker' && process.send !== undefined) process.send([['alive']])

// loaded once early-signals ran (a static import would be loaded, with all it imports, before)
await import('../lib/gc-threads-start.ts')
const { main, exitStatusOf } = await import('../lib/cli.ts')
main(fileURLToPath(import.meta.url)).catch((err: unknown) => {
  process.stderr.write(`parkline: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(exitStatusOf(err))
})
