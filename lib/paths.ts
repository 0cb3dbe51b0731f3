// Where the package's own files are (package.json, conf/, client/), whether the code runs from
// the sources (lib/) or from the build (dist/lib/): the nearest folder above with a package.json.
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

let root: URL | null = null

export function packageRoot (): URL {
  if (root !== null) return root
  let dir = new URL('.', import.meta.url)
  for (let i = 0; i < 4; i++) {
    if (existsSync(new URL('package.json', dir))) return (root = dir)
    dir = new URL('..', dir)
  }
  throw new Error('parkline: package.json not found above ' + import.meta.url)
}

/** A file of the package, by its path from the package root. */
export function packageFile (path: string): URL {
  return new URL(path, packageRoot())
}

/** The shipped conf/parkline.json the `parkline` command reads by default, if the package has it. */
export function shippedConfig (): string | undefined {
  const file = fileURLToPath(packageFile('conf/parkline.json'))
  return existsSync(file) ? file : undefined
}
