// Browser tests: Debian's Chromium driven by playwright-core (never a downloaded browser), and a
// real Parkline that also serves the test pages. The page is loaded through one test proxy (same
// origin) and cross-origin requests go through a second one (another port, so another origin);
// both forward to the same Parkline, record what they forward, and can drop every connection.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ExecutionContext } from 'ava'
import type { FastifyInstance } from 'fastify'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import { resolveOptions, type ParklineOptions } from '../../lib/config.ts'
import { buildServer } from '../../lib/server.ts'
import { TestProxy } from './proxy.ts'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
export const CHROMIUM_APT = 'apt-get install -y chromium'
/** Screenshots and other artefacts (gitignored). */
export const OUTPUT = path.join(ROOT, 'test', 'browser', 'output')

const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'
]

export interface Browser {
  context: BrowserContext
  close (): Promise<void>
}

/**
 * Start Chromium with a fresh profile; fails (never skips) when it is not installed.
 * `thirdPartyCookies`: the profile sends cookies on cross-site requests (SameSite=None), as
 * browsers did by default and many still do; Debian's Chromium blocks them unless told.
 */
export async function launchChromium (o: { thirdPartyCookies?: boolean } = {}): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium is not installed at ${CHROMIUM}: browser tests need Debian's chromium (${CHROMIUM_APT}), or set CHROMIUM_PATH`)
  }
  const profile = mkdtempSync(path.join(os.tmpdir(), 'parkline-chromium-'))
  if (o.thirdPartyCookies === true) {
    mkdirSync(path.join(profile, 'Default'))
    writeFileSync(path.join(profile, 'Default', 'Preferences'), JSON.stringify({ profile: { cookie_controls_mode: 0, block_third_party_cookies: false } }))
  }
  // launchPersistentContext passes the profile as --user-data-dir (playwright refuses it in args)
  const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS, viewport: { width: 1100, height: 760 } })
  return {
    context,
    close: async () => {
      await context.close().catch(() => {})
      rmSync(profile, { recursive: true, force: true })
    }
  }
}

const FILES: Record<string, [string, string]> = {
  'nchan.js': ['node_modules/nchan/NchanSubscriber.js', 'text/javascript'],
  'parkline.js': ['client/dist/parkline.js', 'text/javascript'],
  'transports.js': ['client/dist/transports.js', 'text/javascript'],
  'wire.js': ['client/dist/wire.js', 'text/javascript']
}

/** The test page: an empty document with a log the tests read; scripts come with page.evaluate. */
const PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>parkline test</title>
<script src="/t/nchan.js"></script>
<script>window.log = []</script></head><body><pre id="out"></pre></body></html>`

export interface PageServer {
  app: FastifyInstance
  port: number
  /** Parkline directly (publishing from the test). */
  base: string
  /** Proxy the page is loaded from (same origin). */
  same: TestProxy
  /** Proxy on another port: another origin, same Parkline. */
  cross: TestProxy
  opts: ParklineOptions
  pageUrl: string
}

/** A Parkline that also serves /t/page.html and the client files, with both proxies in front. */
export async function startPageServer (t: ExecutionContext, options: Partial<Record<keyof ParklineOptions, unknown>> = {}): Promise<PageServer> {
  // a short retry: keeps EventSource reconnects quick
  const opts = resolveOptions({ port: 0, host: '127.0.0.1', logLevel: 'silent', retryMin: 300, retryMax: 300, ...options })
  const app = await buildServer(opts)
  app.get('/t/page.html', { exposeHeadRoute: false }, async (_req, reply) => reply.header('Content-Type', 'text/html; charset=utf-8').send(PAGE))
  app.get('/t/:file', { exposeHeadRoute: false }, async (req, reply) => {
    const f = FILES[(req.params as { file: string }).file]
    if (f === undefined) return reply.code(404).send()
    return reply.header('Content-Type', f[1]).header('Cache-Control', 'no-store').send(readFileSync(path.join(ROOT, f[0])))
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as net.AddressInfo).port
  const same = await TestProxy.start(port)
  const cross = await TestProxy.start(port)
  t.teardown(async () => {
    await same.close()
    await cross.close()
    // idle keep-alive sockets (the test's own publishes) would hold close() for seconds
    app.server.closeIdleConnections()
    await app.close()
  })
  return { app, port, base: `http://127.0.0.1:${port}`, same, cross, opts, pageUrl: `${same.base}/t/page.html` }
}

/** A new page on the test page, closed at teardown; page errors go to the test's log. */
export async function openPage (t: ExecutionContext, browser: Browser, url: string, expose: Record<string, (...args: unknown[]) => unknown> = {}): Promise<Page> {
  const page = await browser.context.newPage()
  t.teardown(() => page.close().catch(() => {}))
  // logged while the test runs; errors during teardown (pages torn from their server) are noise,
  // and t.log() after the end would itself throw
  page.on('pageerror', (err) => { try { t.log('page error: ' + err.message) } catch {} })
  // functions the page calls back into the test: exposed before the page loads (once, in a CI
  // run, four exposed after the load at the same moment each failed with "Target page, context or
  // browser has been closed" while the rest of the file ran on)
  for (const [name, fn] of Object.entries(expose)) await page.exposeFunction(name, fn)
  await page.goto(url)
  return page
}

/** Wait until `window.log.length >= n` in the page; on timeout, fail with the log. */
export async function waitLog (page: Page, n: number, ms = 10000): Promise<Array<Record<string, unknown>>> {
  try {
    await page.waitForFunction(`window.log.length >= ${n}`, undefined, { timeout: ms, polling: 50 })
  } catch {
    throw new Error(`page log has fewer than ${n} entries after ${ms} ms: ${JSON.stringify(await page.evaluate('window.log'))}`)
  }
  return await page.evaluate('window.log') as Array<Record<string, unknown>>
}
