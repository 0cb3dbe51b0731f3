// Heap snapshots of a server process and what is new between two of them, for the micro
// benchmarks (longpoll-heap.ts, sse-connect.ts). The server runs with
// `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=<dir>`; snapshot() signals it and waits for the
// file. newObjects() lists the objects of the second snapshot that were not in the first (V8 keeps
// an object's snapshot id), grouped by type and name: what the work between them left reachable.
import type { ChildProcess } from 'node:child_process'
import { readdirSync, readFileSync, renameSync, statSync } from 'node:fs'
import path from 'node:path'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Signal `server` for a snapshot, wait until it is written to `dir`, and name it `<name>.heapsnapshot`. */
export async function snapshot (server: ChildProcess, dir: string, name: string): Promise<string> {
  const before = new Set(readdirSync(dir))
  server.kill('SIGUSR2')
  for (let i = 0; i < 600; i++) {
    await sleep(200)
    const f = readdirSync(dir).filter((x) => !before.has(x) && x.endsWith('.heapsnapshot'))
    if (f.length === 0) continue
    // written once its size stops changing
    let size = -1
    for (;;) {
      await sleep(500)
      const now = statSync(path.join(dir, f[0]!)).size
      if (now === size) break
      size = now
    }
    const file = path.join(dir, name + '.heapsnapshot')
    renameSync(path.join(dir, f[0]!), file)
    return file
  }
  throw new Error('no heap snapshot')
}

export interface NewObjects {
  /** Bytes of every new object. */
  total: number
  /** `<type> <name>` → [count, bytes], largest first. */
  groups: Array<[string, [count: number, bytes: number]]>
}

/** Objects in snapshot file `second` that were not in `first`. */
export function newObjects (first: string, second: string): NewObjects {
  interface Snapshot { snapshot: { meta: { node_fields: string[], node_types: [string[]] } }, nodes: number[], strings: string[] }
  const read = (f: string): Snapshot => JSON.parse(readFileSync(f, 'utf8')) as Snapshot
  const a = read(first)
  const fields = a.snapshot.meta.node_fields
  const nf = fields.length
  const ID = fields.indexOf('id')
  const seen = new Set<number>()
  for (let i = 0; i < a.nodes.length; i += nf) seen.add(a.nodes[i + ID]!)
  const b = read(second)
  const TYPE = fields.indexOf('type')
  const NAME = fields.indexOf('name')
  const SIZE = fields.indexOf('self_size')
  const types = b.snapshot.meta.node_types[0]
  const groups = new Map<string, [count: number, bytes: number]>()
  let total = 0
  for (let i = 0; i < b.nodes.length; i += nf) {
    if (seen.has(b.nodes[i + ID]!)) continue
    const type = types[b.nodes[i + TYPE]!]!
    // native objects get new ids in every snapshot: not new objects, left out
    if (type === 'native' || type === 'code' || type === 'synthetic') continue
    const name = type.endsWith('string') ? '' : b.strings[b.nodes[i + NAME]!]!.slice(0, 60)
    const g = groups.get(`${type} ${name}`) ?? [0, 0]
    g[0]++
    g[1] += b.nodes[i + SIZE]!
    groups.set(`${type} ${name}`, g)
    total += b.nodes[i + SIZE]!
  }
  return { total, groups: [...groups].sort((x, y) => y[1][1] - x[1][1]) }
}

/** The largest groups, per `unit` (N subscribers, N re-polls), as a markdown table. */
export function table (objects: NewObjects, n: number, unit: string, top: number): string {
  let out = `| objects per ${unit} | bytes per ${unit} | type and name |\n|--:|--:|---|\n`
  for (const [k, [count, bytes]] of objects.groups.slice(0, top)) out += `| ${(count / n).toFixed(2)} | ${(bytes / n).toFixed(1)} | ${k} |\n`
  return out
}
