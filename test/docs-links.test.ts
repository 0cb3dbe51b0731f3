// User-facing docs live in the repository: every link in them resolves to a file here (and an
// anchor to a heading of it), and no URL names a host outside it other than the example ones
// (example.com, *.example, localhost and loopback, the names the nginx site gives its upstream).
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import path from 'node:path'
import test from 'ava'

const DOCS = ['README.md', 'CHANGELOG.md', 'conf/README.md', ...readdirSync('docs').filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)]
const LOCAL_HOST = /^(localhost|127\.\d+\.\d+\.\d+|0\.0\.0\.0|\[::1\]|host|parkline|([\w*-]+\.)*example(\.com|\.org|\.net)?)$/

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function anchor (heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-')
}

test('every link in the user docs points inside the repository, at a file and heading that exist', (t) => {
  let links = 0
  for (const doc of DOCS) {
    const text = readFileSync(doc, 'utf8').replace(/```[^]*?```/g, '')
    for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      links++
      const target = m[1]!
      t.false(/^[a-z][a-z+.-]*:/i.test(target), `${doc}: ${target} points outside the repository`)
      const [file, hash] = target.split('#') as [string, string | undefined]
      const resolved = file === '' ? doc : path.join(path.dirname(doc), file)
      t.true(existsSync(resolved), `${doc}: ${target}: no ${resolved}`)
      if (hash !== undefined && resolved.endsWith('.md')) {
        const headings = readFileSync(resolved, 'utf8').split('\n').filter((l) => /^#{1,6} /.test(l)).map((l) => anchor(l.replace(/^#+ /, '')))
        t.true(headings.includes(hash), `${doc}: ${target}: no heading #${hash} in ${resolved}`)
      }
    }
    for (const m of readFileSync(doc, 'utf8').matchAll(/\bhttps?:\/\/([^/:\s)`"'<>,;]+)/g)) {
      t.regex(m[1]!, LOCAL_HOST, `${doc}: ${m[0]} names a host outside the repository's examples`)
    }
  }
  t.true(links > 10, 'the docs hold links (the pattern reads them)')
})
