// Where a one-to-one message's latency goes, read off the wire (loopback capture): for every
// publish in a tcpdump capture of the server's port, the time from the publisher's timestamp (the
// body starts with it, as benchmarks/publisher.ts writes it) to the POST on the wire, from the
// POST to the server's answer on the same connection, and from the POST to the SSE frame that
// carries the same body. The server's share is the last two; the first is the publisher's.
//
//   node benchmarks/wire-latency.ts <capture.pcap> <server port>
//
// The capture (tcpdump, apt-get install tcpdump), during a one-to-one step of the suite:
//   SCENARIOS=one2one SERVERS=parkline ONE2ONE_RATES=2000 npm run bench &
//   tcpdump -i lo -s 400 -w /tmp/cap.pcap "tcp port <the server's port> and greater 80"
// Results: benchmarks/results/wire-latency-*.md.
import { readFileSync } from 'node:fs'

interface Packet { t: number, sport: number, dport: number, payload: Buffer }

/** Classic pcap (little-endian, microseconds), Ethernet framing as Linux gives for `lo`. */
export function readPcap (buf: Buffer): Packet[] {
  if (buf.readUInt32LE(0) !== 0xa1b2c3d4) throw new Error('not a little-endian microsecond pcap file')
  const out: Packet[] = []
  for (let o = 24; o + 16 <= buf.length;) {
    const t = buf.readUInt32LE(o) + buf.readUInt32LE(o + 4) / 1e6
    const incl = buf.readUInt32LE(o + 8)
    const frame = buf.subarray(o + 16, o + 16 + incl)
    o += 16 + incl
    if (frame.length < 14 + 20 || frame.readUInt16BE(12) !== 0x0800) continue
    const ip = frame.subarray(14)
    const tcp = ip.subarray((ip[0]! & 15) * 4)
    if (tcp.length < 20) continue
    out.push({ t, sport: tcp.readUInt16BE(0), dport: tcp.readUInt16BE(2), payload: tcp.subarray((tcp[12]! >> 4) * 4) })
  }
  return out
}

const STAMP = /^\d+\.\d+/

export function segments (packets: Packet[], port: number): Record<'publisher' | 'answer' | 'delivery', number[]> {
  const postAt = new Map<string, number>()
  const lastPost = new Map<number, number>()
  const publisher: number[] = []
  const answer: number[] = []
  const delivery: number[] = []
  for (const p of packets) {
    const head = p.payload.subarray(0, 400).toString('latin1')
    if (p.dport === port && (head.startsWith('POST ') || head.startsWith('PUT '))) {
      const body = head.indexOf('\r\n\r\n')
      const m = body === -1 ? null : STAMP.exec(head.slice(body + 4))
      if (m === null) continue
      postAt.set(m[0], p.t)
      lastPost.set(p.sport, p.t)
      publisher.push((p.t - Number(m[0]) / 1000) * 1000)
    } else if (p.sport === port && head.startsWith('HTTP/1.1 2') && lastPost.has(p.dport)) {
      answer.push((p.t - lastPost.get(p.dport)!) * 1000)
      lastPost.delete(p.dport)
    } else if (p.sport === port) {
      const d = head.indexOf('data: ')
      const m = d === -1 ? null : STAMP.exec(head.slice(d + 6))
      const at = m === null ? undefined : postAt.get(m[0])
      if (at !== undefined) delivery.push((p.t - at) * 1000)
    }
  }
  return { publisher, answer, delivery }
}

function summary (xs: number[]): string {
  if (xs.length === 0) return 'none'
  const s = xs.slice().sort((a, b) => a - b)
  const q = (f: number): string => s[Math.min(s.length - 1, Math.floor(s.length * f))]!.toFixed(2)
  return `n ${s.length} | p50 ${q(0.5)} | p99 ${q(0.99)} | p99.9 ${q(0.999)} | max ${s[s.length - 1]!.toFixed(2)}`
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [file, port] = [process.argv[2], Number(process.argv[3])]
  if (file === undefined || !Number.isInteger(port)) {
    console.error('usage: node benchmarks/wire-latency.ts <capture.pcap> <server port>')
    process.exit(2)
  }
  const seg = segments(readPcap(readFileSync(file)), port)
  console.log(`publisher's stamp -> POST on the wire (ms): ${summary(seg.publisher)}`)
  console.log(`POST on the wire -> answer on the wire (ms): ${summary(seg.answer)}`)
  console.log(`POST on the wire -> SSE frame on the wire (ms): ${summary(seg.delivery)}`)
}
