// Where a benchmark writes its report: BENCH_OUT when set (so a trial run does not overwrite a
// committed result), else benchmarks/results/<name>-<today>.md.
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const RESULTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'results')

export function reportFile (name: string, env: NodeJS.ProcessEnv = process.env): string {
  const out = env.BENCH_OUT
  return out !== undefined && out !== '' ? path.resolve(out) : path.join(RESULTS, `${name}-${new Date().toISOString().slice(0, 10)}.md`)
}
