// The Parkline client against Nchan itself (nginx + libnginx-mod-nchan, started on loopback by the
// benchmark suite's helper): every transport receives with Nchan's ids and resumes after a dropped
// connection with no loss and no duplicate. Without nginx and the module this fails and says
// which packages to install.
import os from 'node:os'
import path from 'node:path'
import { mkdtempSync, rmSync } from 'node:fs'
import test, { type ExecutionContext } from 'ava'
import type { TransportName } from '../../client/parkline.ts'
import { APT_LINE, nchanModule, startServer, type ServerHandle } from '../../benchmarks/suite/servers.ts'
import { publishedId, subscribe } from '../helpers/client.ts'
import { TestProxy } from '../helpers/proxy.ts'

let nchan: ServerHandle | null = null
let tmp = ''

test.before(async () => {
  if (nchanModule() === null) throw new Error(`Nchan is not installed; install it with: ${APT_LINE}`)
  tmp = mkdtempSync(path.join(os.tmpdir(), 'parkline-nchan-'))
  nchan = await startServer('nchan', { workers: 1, tmp })
})

test.after.always(async () => {
  await nchan?.stop()
  if (tmp !== '') rmSync(tmp, { recursive: true, force: true })
})

function base (): string {
  return `http://127.0.0.1:${nchan!.port}`
}

async function pub (channel: string, body: string): Promise<string> {
  const res = await fetch(`${base()}/pub/${channel}`, { method: 'POST', body: Buffer.from(body) })
  return publishedId(await res.text())
}

const receives = test.macro({
  async exec (t: ExecutionContext, transport: TransportName) {
    const ch = `nc-${transport}-${process.pid}`
    const ids = [await pub(ch, 'before')]
    const proxy = await TestProxy.start(nchan!.port)
    t.teardown(() => proxy.close())
    const rec = subscribe(t, `${proxy.base}/sub/${ch}`, { transports: [transport] })
    await rec.waitConnected(transport)
    ids.push(await pub(ch, 'live'))
    await rec.waitMessages(2)
    t.deepEqual(rec.ids, ids, 'ids equal Nchan\'s publisher ids')
    proxy.dropAll()
    ids.push(await pub(ch, 'while down'))
    await rec.waitMessages(3)
    ids.push(await pub(ch, 'after'))
    await rec.waitMessages(4)
    await new Promise((resolve) => setTimeout(resolve, 200))
    t.deepEqual(rec.texts, ['before', 'live', 'while down', 'after'])
    t.deepEqual(rec.ids, ids, 'no loss, no duplicate across the drop')
    t.true(rec.connects.length >= 2)
    t.true(rec.connects.every((c) => c === transport))
  },
  title: (_, transport: TransportName) => `Nchan: the client's ${transport} receives and resumes after a drop`
})

for (const transport of ['websocket', 'eventsource', 'longpoll'] as const) test.serial(receives, transport)

test.serial('Nchan: the default order lands on websocket (ws+meta.nchan negotiated)', async (t) => {
  const ch = `nc-default-${process.pid}`
  const rec = subscribe(t, `${base()}/sub/${ch}`)
  await rec.waitConnected()
  t.is(rec.client.transport, 'websocket')
  const id = await pub(ch, 'x')
  await rec.waitMessages(1)
  t.deepEqual(rec.ids, [id])
  t.is(rec.retries.length, 0)
})
