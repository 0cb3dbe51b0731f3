// Parkline beside Nchan itself (nginx + libnginx-mod-nchan, started on loopback by the benchmark
// suite's helper): the same requests to both, and what a client or publisher reads of the answers
// compared. Each case here is one where Parkline once answered otherwise. Without nginx and the
// module this fails and says which packages to install.
import os from 'node:os'
import path from 'node:path'
import { mkdtempSync, rmSync } from 'node:fs'
import test from 'ava'
import { APT_LINE, nchanModule, startServer, type ServerHandle } from '../benchmarks/suite/servers.ts'
import { nextSecond, pub, splitId } from './helpers/conformance.ts'

let nchan: ServerHandle | null = null
let parkline: ServerHandle | null = null
let tmp = ''

test.before(async () => {
  if (nchanModule() === null) throw new Error(`Nchan is not installed; install it with: ${APT_LINE}`)
  tmp = mkdtempSync(path.join(os.tmpdir(), 'parkline-nchan-diff-'))
  nchan = await startServer('nchan', { workers: 1, tmp })
  parkline = await startServer('parkline1', { workers: 1, tmp })
})

test.after.always(async () => {
  await nchan?.stop()
  await parkline?.stop()
  if (tmp !== '') rmSync(tmp, { recursive: true, force: true })
})

const servers = (): Array<[string, string]> => [['nchan', `http://127.0.0.1:${nchan!.port}`], ['parkline', `http://127.0.0.1:${parkline!.port}`]]

/** Three messages, m0 to m2, published in one second on a new channel (tried again, up to 3 times, if a second boundary fell between them). */
async function threeInOneSecond (base: string, prefix: string): Promise<{ channel: string, seconds: number }> {
  for (let attempt = 0; attempt < 3; attempt++) {
    await nextSecond()
    const channel = `${prefix}-${attempt}`
    const seconds: number[] = []
    for (const body of ['m0', 'm1', 'm2']) seconds.push(splitId((await pub(base, channel, body)).id).seconds)
    if (seconds.every((s) => s === seconds[0])) return { channel, seconds: seconds[0]! }
  }
  throw new Error('no three publishes in one second')
}

test.serial('a long-poll\'s If-Modified-Since written back in another form (another zone, none, junk after the time) walks the buffer as with Nchan: not the oldest message again', async (t) => {
  const forms: Array<[string, (d: Date) => string]> = [
    ['IMF-fixdate', (d) => d.toUTCString()],
    ['PHP date(\'r\')', (d) => d.toUTCString().replace('GMT', '+0000')],
    ['Python formatdate()', (d) => d.toUTCString().replace('GMT', '-0000')],
    ['zone UTC', (d) => d.toUTCString().replace('GMT', 'UTC')],
    ['no zone', (d) => d.toUTCString().replace(' GMT', '')],
    ['junk after it', (d) => d.toUTCString() + ' junk'],
    ['asctime', (d) => d.toUTCString().replace(/^(\w{3}), (\d{2}) (\w{3}) (\d{4}) (\S+) GMT$/, (_, w: string, day: string, mon: string, y: string, hms: string) => `${w} ${mon} ${day.replace(/^0/, ' ')} ${hms} ${y}`)]
  ]
  const got: Record<string, Record<string, string>> = {}
  for (const [name, base] of servers()) {
    const { channel, seconds } = await threeInOneSecond(base, `ims-${process.pid}`)
    const answers: Record<string, string> = {}
    for (const [form, fmt] of forms) {
      // the client had m1 (tag 1 of that second) and asks for what follows it
      const res = await fetch(`${base}/sub/${channel}`, { headers: { 'If-Modified-Since': fmt(new Date(seconds * 1000)), 'If-None-Match': '1' }, signal: AbortSignal.timeout(5000) })
      answers[form] = `${res.status} ${await res.text()}`
    }
    got[name] = answers
  }
  t.deepEqual(got.parkline, got.nchan)
  for (const [form] of forms) t.is(got.parkline![form], '200 m2', form)
})
