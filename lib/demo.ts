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
  fastify.get(dir, { exposeHeadRoute: false }, async (_request, reply) => reply.redirect(dir.slice(dir.lastIndexOf('/') + 1) + '/'))
  fastify.get(prefix, { exposeHeadRoute: false }, async (_request, reply) =>
    reply.header('Content-Type', 'text/html; charset=utf-8').header('Cache-Control', 'no-cache').send(page))
  fastify.get(prefix + ':file', { exposeHeadRoute: false }, async (request, reply) => {
    const body = scripts.get((request.params as { file: string }).file)
    if (body === undefined) return reply.code(404).send()
    return reply.header('Content-Type', 'text/javascript; charset=utf-8').header('Cache-Control', 'no-cache').send(body)
  })
}
