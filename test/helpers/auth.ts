// Helpers for access-control tests of the client: tokens signed the way the server checks them
// (HS256 with the test secret, jose), publishing with the server's API key, and a promise on the
// client's `auth` event.
import { SignJWT } from 'jose'
import type { AuthInfo, Parkline } from '../../client/parkline.ts'
import { publish } from './server.ts'

export const SECRET = 'a-secret-of-at-least-32-bytes-long!!'
/** The publisher's key: with jwtSecret set, publishing needs a credential. */
export const API_KEY = 'test-publisher-key'
/** Server options for these tests: JWTs, an API key for the publisher and for /admin/revoke. */
export const AUTH_SERVER = { jwtSecret: SECRET, apiKey: [API_KEY] }

let serial = 0

export interface Minted { token: string, jti: string, exp: number }

/** A subscriber token for `channels`, valid `ttl` seconds (exp = now + ttl, in whole seconds). */
export async function mint (channels: string[], ttl = 60, sub = 'user-1'): Promise<Minted> {
  const now = Math.floor(Date.now() / 1000)
  const jti = `jti-${process.pid}-${++serial}`
  const exp = now + ttl
  const token = await new SignJWT({ sub, jti, iat: now, exp, parkline: { subscribe: channels } })
    .setProtectedHeader({ alg: 'HS256' })
    .sign(new TextEncoder().encode(SECRET))
  return { token, jti, exp }
}

/** Publish with the API key; throws unless the server took it. */
export async function pubKey (base: string, channel: string, body: string): Promise<void> {
  const r = await publish(base, channel, body, { Authorization: 'Bearer ' + API_KEY })
  if (r.status !== 201 && r.status !== 202) throw new Error(`publish ${channel} answered ${r.status}: ${r.text}`)
}

/** POST /admin/revoke with the API key. */
export async function revoke (base: string, what: { jti: string, exp?: number } | { sub: string }): Promise<{ status: number, ended: number }> {
  const res = await fetch(`${base}/admin/revoke`, {
    method: 'POST', headers: { Authorization: 'Bearer ' + API_KEY, 'Content-Type': 'application/json' }, body: JSON.stringify(what)
  })
  const text = await res.text()
  return { status: res.status, ended: res.status === 200 ? (JSON.parse(text) as { ended: number }).ended : -1 }
}

/** Every `auth` event of a client, and a wait for the first one. */
export class AuthEvents {
  readonly list: AuthInfo[] = []
  #waiters: Array<() => void> = []

  constructor (client: Parkline) {
    client.on('auth', (info) => {
      this.list.push(info)
      for (const w of this.#waiters.splice(0)) w()
    })
  }

  async first (ms = 8000): Promise<AuthInfo> {
    if (this.list.length > 0) return this.list[0]!
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no auth event within ${ms} ms`)), ms)
      this.#waiters.push(() => { clearTimeout(timer); resolve() })
    })
    return this.list[0]!
  }
}

/**
 * Publish `count` numbered messages (`prefix0`, `prefix1`, …) about every `every` ms; resolves
 * with the bodies in publish order.
 */
export async function publishNumbered (base: string, channel: string, count: number, every: number, prefix = 'm'): Promise<string[]> {
  const sent: string[] = []
  const start = Date.now()
  for (let i = 0; i < count; i++) {
    const body = prefix + i
    await pubKey(base, channel, body)
    sent.push(body)
    // paced against the clock, so slow publishes do not stretch the run
    const wait = start + (i + 1) * every - Date.now()
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
  }
  return sent
}

/** A raw subscription request's transport headers (net.connect tests of access control). */
export type SubscribeTransport = 'eventsource' | 'longpoll' | 'websocket'
export const TRANSPORT_HEADERS: Record<SubscribeTransport, string> = {
  eventsource: 'Accept: text/event-stream\r\n',
  longpoll: '',
  websocket: 'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n'
}
