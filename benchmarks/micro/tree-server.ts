// A standalone Parkline server from a tree of the source, for the micro benchmarks that compare
// trees (publish-cpu.ts, sse-connect.ts, keyed-publish.ts): on a free loopback port, ready once it
// accepts a connection. With the trees to compare (ROOTS) and autocannon, typed; and the floor
// (bare node:net) of a tree, for the benchmarks that measure it beside them (FLOOR=1).
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process'
import { once } from 'node:events'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

/** The trees to compare: ROOTS (comma-separated paths), or this checkout. */
export function treeRoots (): string[] {
  return (process.env.ROOTS ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')).split(',')
}

export { autocannon, type AutocannonResult } from '../suite/autocannon.ts'

async function freePort (): Promise<number> {
  const s = net.createServer().listen(0, '127.0.0.1')
  await once(s, 'listening')
  const port = (s.address() as net.AddressInfo).port
  s.close()
  return port
}

/** `node <nodeFlags> bin/parkline.ts serve` in `root` (one process unless `workers`); killed and an error if it does not listen within 10 s. */
export async function startTree (root: string, opts: { nodeFlags?: string[], env?: NodeJS.ProcessEnv, stdio?: StdioOptions, workers?: number } = {}): Promise<{ child: ChildProcess, port: number }> {
  const port = await freePort()
  const child = spawn(process.execPath, [...(opts.nodeFlags ?? []), 'bin/parkline.ts', 'serve', '--port', String(port), '--host', '127.0.0.1', '--workers', String(opts.workers ?? 1)],
    { cwd: root, stdio: opts.stdio ?? 'ignore', env: opts.env ?? process.env })
  for (let i = 0; i < 200; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50))
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true) })
      s.on('error', () => resolve(false))
    })
    if (ok) return { child, port }
  }
  child.kill('SIGKILL')
  throw new Error(`no server from ${root}`)
}

/** The floor (benchmarks/suite/floor-server.ts) of the tree `root`, on a port of the kernel's choosing. */
export async function startFloor (root: string): Promise<{ child: ChildProcess, port: number }> {
  const child = spawn(process.execPath, [path.join(root, 'benchmarks/suite/floor-server.ts'), '0'], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] })
  const port = await new Promise<number>((resolve, reject) => {
    let out = ''
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      const m = /listening on (\d+)/.exec(out)
      if (m !== null) resolve(Number(m[1]))
    })
    child.once('exit', () => reject(new Error('floor exited')))
  })
  return { child, port }
}
