// `parkline token`: mint an HS256 token with the configured jwtSecret, for trying access control
// out and for scripts (a real deployment's login issues its own tokens with any JWT library).
//   parkline token --sub user-42 --subscribe 'user.42.*,news' [--publish 'chat.42'] [--admin]
//                  [--ttl 3600] [--jti ID] [--config FILE]   (jwtSecret, jwtIssuer, jwtAudience from
//                  the config file, PARKLINE_* environment or --jwt-secret…)
import { randomUUID } from 'node:crypto'
import { SignJWT } from 'jose'
import { checkJwtSecret } from './auth.ts'
import { resolveOptions } from './config.ts'
import { ConfigError } from './errors.ts'

const OWN = ['--sub', '--subscribe', '--publish', '--admin', '--ttl', '--jti']

export async function mintToken (argv: string[], defaultConfig: string | undefined): Promise<string> {
  const own: Record<string, string> = {}
  const rest: Record<string, string> = {}
  let config = defaultConfig
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a === '--admin') { own.admin = 'true'; continue }
    const value = argv[i + 1]
    if (!a.startsWith('--') || value === undefined) throw new ConfigError(`token: ${a} needs a value`)
    i++
    if (a === '--config') config = value
    else if (OWN.includes(a)) own[a.slice(2)] = value
    else rest[a.slice(2).replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase())] = value
  }
  const opts = resolveOptions(rest, { file: config, env: process.env })
  if (opts.jwtSecret === '') throw new ConfigError('token: no jwtSecret configured (PARKLINE_JWT_SECRET, --jwt-secret or the config file)')
  // the server refuses to start with a shorter one
  checkJwtSecret(opts.jwtSecret)
  const ttl = Number(own.ttl ?? 3600)
  if (!Number.isInteger(ttl) || ttl < 1) throw new ConfigError('token: --ttl must be a positive number of seconds')
  const list = (v: string | undefined): string[] => (v ?? '').split(',').map((s) => s.trim()).filter((s) => s.length > 0)
  const claims = { parkline: { subscribe: list(own.subscribe), publish: list(own.publish), admin: own.admin === 'true' } }
  let jwt = new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuedAt().setExpirationTime(`${ttl}s`).setJti(own.jti ?? randomUUID())
  if (own.sub !== undefined) jwt = jwt.setSubject(own.sub)
  if (opts.jwtIssuer !== '') jwt = jwt.setIssuer(opts.jwtIssuer)
  if (opts.jwtAudience !== '') jwt = jwt.setAudience(opts.jwtAudience)
  return await jwt.sign(new TextEncoder().encode(opts.jwtSecret))
}
