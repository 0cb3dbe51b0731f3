// What one channel record costs (heap), to size maxChannels and the worst case of a multiplexed
// subscription (255 channels).   node --expose-gc benchmarks/channel-records.ts   N=100000
import { writeFileSync } from 'node:fs'
import os from 'node:os'
import { resolveOptions } from '../lib/config.ts'
import { Core } from '../lib/core.ts'
import { reportFile } from './suite/out.ts'

const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error('run with node --expose-gc')
const N = Number(process.env.N ?? 100000)
const core = new Core(resolveOptions({ logLevel: 'silent' }), [], 1000)
const keys: string[] = []
for (let i = 0; i < N; i++) keys.push('channel-' + i)
gc(); gc()
const before = process.memoryUsage().heapUsed
core.channelsFor(keys)
gc(); gc()
const per = Math.round((process.memoryUsage().heapUsed - before) / N)
const day = new Date().toISOString().slice(0, 10)
const md = `# Channel record cost — ${day}\n\nCommand: \`N=${N} node --expose-gc benchmarks/channel-records.ts\`, Node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'}.\n\n` +
  `| channel records | heap per record (ids not counted) | one 255-channel subscription | maxChannels 500,000 |\n|--:|--:|--:|--:|\n` +
  `| ${N.toLocaleString('en')} | ${per} B | ${(per * 255 / 1024).toFixed(0)} KiB | ${(per * 500000 / 1048576).toFixed(0)} MiB |\n\n` +
  'A record holds no message until one is published (the buffer grows with its messages). With `--workers N` the primary holds one too, and a worker only while it has subscribers on the channel.\n'
process.stdout.write(md)
writeFileSync(reportFile('channel-records'), md)
