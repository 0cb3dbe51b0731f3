// The demo page (`parkline serve --demo`, option `demo`): client/demo.html at /demo/ and the
// browser build of the client (client/dist/*.js) next to it. A few static files, read once at boot.
import { readFileSync } from 'node:fs'
import type { FastifyInstance } from 'fastify'
import { packageFile } from './paths.ts'

const SCRIPTS = ['parkline.js', 'transports.js', 'wire.js']

export function registerDemo (fastify: FastifyInstance, prefix = '/demo/'): void {
  const page = readFileSync(packageFile('client/demo.html'))
  const scripts = new Map(SCRIPTS.map((name) => [name, readFileSync(packageFile('client/dist/' + name))]))
  fastify.get(prefix.slice(0, -1), { exposeHeadRoute: false }, async (_request, reply) => reply.redirect(prefix))
  fastify.get(prefix, { exposeHeadRoute: false }, async (_request, reply) =>
    reply.header('Content-Type', 'text/html; charset=utf-8').header('Cache-Control', 'no-cache').send(page))
  fastify.get(prefix + ':file', { exposeHeadRoute: false }, async (request, reply) => {
    const body = scripts.get((request.params as { file: string }).file)
    if (body === undefined) return reply.code(404).send()
    return reply.header('Content-Type', 'text/javascript; charset=utf-8').header('Cache-Control', 'no-cache').send(body)
  })
}
