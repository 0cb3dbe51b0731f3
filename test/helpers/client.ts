// Helpers for tests of the Parkline client (client/): record what a client emits and wait on it.
import type { ExecutionContext } from 'ava'
import {
  Parkline, type DisconnectInfo, type GapInfo, type MessageMeta, type ParklineClientOptions, type RetryInfo,
  type TransportName
} from '../../client/parkline.ts'

export interface Received { data: string | ArrayBuffer, meta: MessageMeta }

/** A started client plus everything it emitted, in order. */
export class Recorder {
  readonly client: Parkline
  readonly messages: Received[] = []
  readonly gaps: GapInfo[] = []
  readonly connects: TransportName[] = []
  readonly disconnects: DisconnectInfo[] = []
  readonly retries: RetryInfo[] = []
  readonly transports: TransportName[] = []
  /** Every event name in order, for checks such as "gap came before its message". */
  readonly log: string[] = []
  #waiters = new Set<() => void>()

  constructor (client: Parkline) {
    this.client = client
    client.on('message', (data, meta) => { this.messages.push({ data, meta }); this.log.push('message ' + String(meta.id)); this.#wake() })
    client.on('gap', (g) => { this.gaps.push(g); this.log.push('gap ' + g.requested); this.#wake() })
    client.on('connect', ({ transport }) => { this.connects.push(transport); this.log.push('connect ' + transport); this.#wake() })
    client.on('disconnect', (d) => { this.disconnects.push(d); this.log.push('disconnect ' + d.reason); this.#wake() })
    client.on('retry', (r) => { this.retries.push(r); this.log.push(`retry ${r.next} in ${r.delay} (${r.reason})`); this.#wake() })
    client.on('transport', (name) => { this.transports.push(name); this.log.push('transport ' + name); this.#wake() })
  }

  get texts (): string[] {
    return this.messages.map((m) => typeof m.data === 'string' ? m.data : new TextDecoder().decode(m.data))
  }

  get ids (): Array<string | undefined> {
    return this.messages.map((m) => m.meta.id)
  }

  #wake (): void {
    for (const w of [...this.#waiters]) w()
  }

  /** Wait until `pred` holds; throws (with the event log) after `ms`. */
  async until (pred: () => boolean, ms = 8000, what = 'condition'): Promise<void> {
    if (pred()) return
    await new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (!pred()) return
        clearTimeout(timer)
        this.#waiters.delete(check)
        resolve()
      }
      const timer = setTimeout(() => {
        this.#waiters.delete(check)
        reject(new Error(`timed out after ${ms} ms waiting for ${what}; events: ${this.log.join(' | ')}`))
      }, ms)
      this.#waiters.add(check)
    })
  }

  async waitMessages (n: number, ms = 8000): Promise<string[]> {
    await this.until(() => this.messages.length >= n, ms, `${n} messages`)
    return this.texts
  }

  async waitConnected (transport?: TransportName, ms = 8000): Promise<void> {
    await this.until(() => this.client.connected && (transport === undefined || this.client.transport === transport), ms, `connected${transport === undefined ? '' : ' on ' + transport}`)
  }
}

/** A client on `url`, started, stopped at teardown. */
export function subscribe (t: ExecutionContext, url: string, options: ParklineClientOptions = {}): Recorder {
  const client = new Parkline(url, { minDelay: 50, maxDelay: 1000, connectTimeout: 1500, ...options })
  const rec = new Recorder(client)
  t.teardown(() => { client.stop() })
  client.start()
  return rec
}

/** The `last message id` of a publisher answer (plain channel info). */
export function publishedId (info: string): string {
  const m = /last message id: (\S+)/.exec(info)
  if (m === null) throw new Error('no id in publisher answer: ' + info)
  return m[1]!
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
