// The demo page (`parkline serve --demo`, option `demo`): client/demo.html at /demo/ and the
// browser build of the client (client/dist/*.js) next to it. A few static files, read once at boot.
import { readFileSync } from 'node:fs'
import type { FastifyInstance } from 'fastify'
import { packageFile } from './paths.ts'

const SCRIPTS = ['parkline.js', 'transports.js', 'wire.js']

/**
 * `paths`: the publisher's and subscriber's locations as clients reach them (the host's and the
 * register prefix included), written into the page.
 */
export function registerDemo (fastify: FastifyInstance, paths: { pub: string, sub: string }, prefix = '/demo/'): void {
  const html = readFileSync(packageFile('client/demo.html'), 'utf8')
  const marker = /const PATHS = \{[^\n]*\} \/\/ parkline:paths/
  if (!marker.test(html)) throw new Error('client/demo.html: no `// parkline:paths` line')
  const page = Buffer.from(html.replace(marker, `const PATHS = ${JSON.stringify(paths)} // parkline:paths`))
  const scripts = new Map(SCRIPTS.map((name) => [name, readFileSync(packageFile('client/dist/' + name))]))
  // relative: under a prefix (`/rt/demo`), `/demo/` would leave it
  const dir = prefix.slice(0, -1)
  const toDir = dir.slice(dir.lastIndexOf('/') + 1) + '/'
  // a host whose router ignores trailing slashes has one route for both (a second is a duplicate
  // that stops its start): the page's own route sends `/demo` on to `/demo/`, where the page's
  // relative script paths resolve
  const config = fastify.initialConfig as { ignoreTrailingSlash?: boolean, routerOptions?: { ignoreTrailingSlash?: boolean } }
  const oneRoute = config.ignoreTrailingSlash === true || config.routerOptions?.ignoreTrailingSlash === true
  if (!oneRoute) fastify.get(dir, { exposeHeadRoute: false }, async (_request, reply) => reply.redirect(toDir))
  fastify.get(prefix, { exposeHeadRoute: false }, async (request, reply) => {
    const path = request.url.split('?', 1)[0]!
    if (!path.endsWith('/')) return reply.redirect(toDir)
    return reply.header('Content-Type', 'text/html; charset=utf-8').header('Cache-Control', 'no-cache').send(page)
  })
  fastify.get(prefix + ':file', { exposeHeadRoute: false }, async (request, reply) => {
    const body = scripts.get((request.params as { file: string }).file)
    if (body === undefined) return reply.code(404).send()
    return reply.header('Content-Type', 'text/javascript; charset=utf-8').header('Cache-Control', 'no-cache').send(body)
  })
}
