// A flood of pipelined publishes (benchmarks/publish-flood.ts, test/flood.test.ts): `n` keep-alive
// connections, opened one after another, each keeping `inflight` requests outstanding: one more is
// sent for each answer, until stop(). Answers are counted by their status lines.
import net from 'node:net'
import { once } from 'node:events'

export interface Flood {
  /** Answers received so far, every connection together. */
  answered: () => number
  /** No more requests; every connection closed. */
  stop: () => void
}

export async function openFlood (port: number, n: number, inflight: number, request: (i: number) => string): Promise<Flood> {
  let answered = 0
  let stopped = false
  const sockets: net.Socket[] = []
  const stop = (): void => {
    stopped = true
    for (const s of sockets) s.destroy()
  }
  for (let i = 0; i < n && !stopped; i++) {
    const s = net.connect(port, '127.0.0.1')
    s.on('error', () => {})
    s.setNoDelay(true)
    sockets.push(s)
    await once(s, 'connect')
    // (a tail keeps a status line cut over two reads)
    let tail = ''
    s.on('data', (d: Buffer) => {
      const text = tail + d.toString('latin1')
      let k = 0
      for (let at = text.indexOf('HTTP/1.1 '); at !== -1; at = text.indexOf('HTTP/1.1 ', at + 9)) k++
      tail = text.slice(-8)
      answered += k
      if (!stopped && k > 0) s.write(Array.from({ length: k }, (_, j) => request(i + j)).join(''))
    })
    s.write(Array.from({ length: inflight }, (_, j) => request(i + j)).join(''))
  }
  return { answered: () => answered, stop }
}
