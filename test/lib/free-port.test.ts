// The test helpers' freePort: the port of a server a test spawns (`parkline serve --workers N`
// binds it seconds later, with SO_REUSEPORT) must not be one that a server listening on port 0,
// or an outgoing connection, can be given in between: so it lies outside the kernel's ephemeral
// range. One CI run lost a `--workers 2` server mid-file in a way this explains (CHANGELOG).
import { readFileSync } from 'node:fs'
import net from 'node:net'
import { once } from 'node:events'
import test from 'ava'
import { freePort } from '../helpers/server.ts'

test('freePort hands out distinct ports outside the ephemeral range, each free to bind', async (t) => {
  const [first, last] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number) as [number, number]
  const ports = await Promise.all(Array.from({ length: 20 }, async () => await freePort()))
  t.is(new Set(ports).size, ports.length)
  for (const port of ports) {
    t.true(port < first || port > last, `${port} is inside ${first}-${last}`)
    const s = net.createServer()
    s.listen(port, '127.0.0.1')
    await once(s, 'listening')
    s.close()
    await once(s, 'close')
  }
})
