import test from 'ava'
import { serve } from './helpers/node.ts'
import { longpollDriver, pub } from './helpers/conformance.ts'
import { eventually } from './helpers/server.ts'

const info = async (base: string, ch: string) => { const r = await fetch(`${base}/pub/${ch}`, { headers: { Accept: 'text/json' } }); return r.status === 200 ? JSON.parse(await r.text()) : null }

test('chain', async (t) => {
  const n = await serve(t, ['--workers', '2'])
  const fails: string[] = []
  await Promise.all(Array.from({ length: 150 }, async (_, k) => {
    const ch = 'chain' + k
    const s = await longpollDriver.open(n, `/sub/${ch}`)
    const ids: string[] = []
    for (let i = 0; i < 3; i++) ids.push((await pub(n.base, ch, 'm' + i)).id)
    try { await s.wait(3, 3000) } catch (e) { fails.push(`${ch}: published ${ids.join(' ')} got ${s.got.map((g) => g.id + '=' + g.data).join(' ')}; info ${JSON.stringify(await info(n.base, ch))}`) }
    s.close()
  }))
  t.log(fails.length + ' of 150 failed'); for (const f of fails) t.log(f)
  t.pass()
})

test('dup', async (t) => {
  const n = await serve(t, ['--workers', '2'])
  const fails: string[] = []
  await Promise.all(Array.from({ length: 150 }, async (_, k) => {
    const ch = 'dup' + k
    const s = await longpollDriver.open(n, `/sub/${ch},${ch}`)
    await eventually(async () => (await info(n.base, ch))?.subscribers === 2, 5000)
    const ids: string[] = []
    for (let i = 0; i < 3; i++) ids.push((await pub(n.base, ch, 'm' + i)).id)
    await s.wait(6, 3000).catch(() => {})
    const got = s.got.map((g) => g.id + '=' + g.data).join(' ')
    if (s.got.map((g) => String(g.data)).join() !== 'm0,m0,m1,m1,m2,m2') fails.push(`${ch}: published ${ids.join(' ')} got ${got}`)
    s.close()
  }))
  t.log(fails.length + ' of 150 failed'); for (const f of fails) t.log(f)
  t.pass()
})
