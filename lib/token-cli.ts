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

export const TOKEN_USAGE = 'usage: parkline token --sub ID [--subscribe PATTERNS] [--publish PATTERNS] [--admin] [--ttl S] [--jti ID] [--config FILE]\n' +
  '  An HS256 token signed with the configured jwtSecret (and its jwtIssuer, jwtAudience), printed on stdout.\n' +
  '  --sub ID              the user (required: a revocation by user names it)\n' +
  '  --subscribe PATTERNS  channels it may subscribe to, comma-separated (`user.42.*,news`)\n' +
  '  --publish PATTERNS    channels it may publish on\n' +
  '  --admin               it may revoke (POST revokePath)\n' +
  '  --ttl S               seconds until it expires (default 3600, or jwtMaxLifetime when shorter)\n' +
  '  --jti ID              its id (default a random UUID; a revocation by token names it)\n' +
  '  at least one of --subscribe, --publish, --admin; jwtSecret from the config file, PARKLINE_JWT_SECRET or --jwt-secret\n'

/** The token, or null where `--help` (or `help`) asked for the usage instead. */
export async function mintToken (argv: string[], defaultConfig: string | undefined): Promise<string | null> {
  if (argv.includes('--help') || argv[0] === 'help') return null
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
  const max = opts.jwtMaxLifetime
  const ttl = Number(own.ttl ?? (max > 0 ? Math.min(3600, max) : 3600))
  if (!Number.isInteger(ttl) || ttl < 1) throw new ConfigError('token: --ttl must be a positive number of seconds')
  // the server would refuse it: said now, not at its first use
  if (max > 0 && ttl > max) throw new ConfigError(`token: --ttl ${ttl} is longer than jwtMaxLifetime (${max} s): the server would refuse it`)
  const list = (v: string | undefined): string[] => (v ?? '').split(',').map((s) => s.trim()).filter((s) => s.length > 0)
  if (own.sub === undefined || own.sub === '') throw new ConfigError(`token: --sub is required (the user the token is for)\n${TOKEN_USAGE}`)
  const claims = { parkline: { subscribe: list(own.subscribe), publish: list(own.publish), admin: own.admin === 'true' } }
  if (claims.parkline.subscribe.length === 0 && claims.parkline.publish.length === 0 && !claims.parkline.admin) {
    throw new ConfigError(`token: it would grant nothing: give --subscribe, --publish or --admin\n${TOKEN_USAGE}`)
  }
  let jwt = new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuedAt().setExpirationTime(`${ttl}s`).setJti(own.jti ?? randomUUID())
  jwt = jwt.setSubject(own.sub)
  if (opts.jwtIssuer !== '') jwt = jwt.setIssuer(opts.jwtIssuer)
  if (opts.jwtAudience !== '') jwt = jwt.setAudience(opts.jwtAudience)
  return await jwt.sign(new TextEncoder().encode(opts.jwtSecret))
}
