// What `parkline serve` refuses at start (exit 2, one line naming the option): settings that would
// leave access unchecked while looking in force, and values docs/configuration.md does not allow.
import { spawnSync } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import test from 'ava'

function serve (args: string[], env: Record<string, string> = {}): { status: number | null, out: string } {
  // (one process: the access checks run where the server is built, and on a host of more than 2
  // cores the default would be workers, whose port must not be 0)
  const r = spawnSync(process.execPath, ['bin/parkline.ts', 'serve', '--port', '0', '--host', '127.0.0.1', '--workers', '1', ...args], { encoding: 'utf8', timeout: 20000, env: { ...process.env, ...env } })
  return { status: r.status, out: r.stdout + r.stderr }
}

const CASES: Array<[string, string[], Record<string, string>, RegExp]> = [
  ['anonymousSubscribe with no credential', ['--anonymous-subscribe', 'public.*'], {}, /anonymousSubscribe has no effect.*every channel is open to anyone/],
  ['jwtAudience with no credential', ['--jwt-audience', 'myapp'], {}, /jwtIssuer\/jwtAudience have no effect/],
  ['tokenInQuery with no credential', ['--token-in-query', 'true'], {}, /tokenInQuery has no effect/],
  ['jwtAudience with an API key but no JWT key', ['--api-key', 'k-0123456789abcdef', '--jwt-audience', 'myapp'], {}, /jwtIssuer\/jwtAudience have no effect without a JWT key/],
  ['an empty --api-key', ['--api-key', ''], {}, /apiKey \(command line\) is empty/],
  ['PARKLINE_API_KEY of commas only', [], { PARKLINE_API_KEY: ',' }, /apiKey \(environment\) is empty/],
  ['an integer in exponent form', ['--buffer-length', '1e3'], {}, /bufferLength \(command line\) must be an integer/],
  ['an integer in hex', ['--buffer-length', '0x10'], {}, /bufferLength \(command line\) must be an integer/],
  ['an integer with a space', ['--buffer-length', ' 5'], {}, /bufferLength \(command line\) must be an integer/],
  // 2^53 and past: no exact number (taken as 1e20 before)
  ['an integer past 2^53', [], { PARKLINE_BUFFER_LENGTH: '99999999999999999999' }, /bufferLength \(environment\) must be an integer >= 1 and <= 9007199254740991, got "99999999999999999999"/],
  // a fork bomb, and a timer Node would cut to 1 ms
  ['more than 1024 workers', ['--workers', '1000000'], {}, /workers \(command line\) must be an integer >= 0 and <= 1024, got "1000000"/],
  ['a drain window past a day', ['--drain-window', '2200000'], {}, /drainWindow \(command line\) must be an integer >= 0 and <= 86400, got "2200000"/],
  // an address that can never be: refused (2), not failed at listen (1, retried for ever by systemd)
  ['a host that is no IPv4 address', ['--host', '999.1.1.1'], {}, /host: "999\.1\.1\.1" is not an IPv4 address/],
  ['a host of four numbers, one past 255', ['--host', '127.0.0.256'], {}, /host: "127\.0\.0\.256" is not an IPv4 address/],
  ['a host that is no IPv6 address', ['--host', '::1::2'], {}, /host: "::1::2" is not an IPv6 address/],
  ['a Redis URL on port 0', ['--redis-url', 'redis://127.0.0.1:0/0'], {}, /redisUrl: "redis:\/\/127\.0\.0\.1:0\/0": port 0 is no port to connect to/],
  // (the helper's --port 0): each worker would listen on a port of its own
  ['port 0 with workers', ['--workers', '2'], {}, /^parkline: port 0 \(a port of the kernel's choosing\) with 2 worker processes: each would be given a port of its own\. Give a port, or --workers 1$/m]
]

for (const [name, args, env, message] of CASES) {
  test(`refused at start: ${name}`, (t) => {
    const r = serve(args, env)
    t.is(r.status, 2, r.out)
    t.regex(r.out, message)
  })
}

test('refused at start: a jwtPublicKey file that is there but cannot be read is said so, not "no file"', (t) => {
  t.is(process.getuid?.(), 0, 'needs root (it runs the server as nobody), as `npm test` is run (README)')
  const dir = mkdtempSync(join(tmpdir(), 'parkline-key-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'public.pem')
  writeFileSync(file, '-----BEGIN PUBLIC KEY-----\n')
  // as the user nobody, who may not read it
  chmodSync(dir, 0o755)
  chmodSync(file, 0o600)
  const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, 'bin/parkline.ts', 'serve', '--port', '0', '--host', '127.0.0.1', '--workers', '1', '--jwt-public-key', file], { encoding: 'utf8', timeout: 20000 })
  t.is(r.status, 2, r.stdout + r.stderr)
  t.regex(r.stderr, /jwtPublicKey: the file ".*public\.pem" cannot be read \(EACCES/)
  const gone = serve(['--jwt-public-key', join(dir, 'absent.pem')])
  t.is(gone.status, 2, gone.out)
  t.regex(gone.out, /jwtPublicKey: not a PEM key, and no file ".*absent\.pem" to read \(ENOENT/)
})

test('refused at start: a URL option that is not http(s) is named without the password it holds', (t) => {
  const r = serve(['--authorize-url', 'ftp://u:AuthPwSECRET@h.example/x'])
  t.is(r.status, 2, r.out)
  t.regex(r.out, /authorizeUrl must be an http\(s\) URL/)
  t.false(r.out.includes('AuthPwSECRET'), r.out)
})

test('refused at start: a jwtPublicKey file that holds the private key, never its contents in the message', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'parkline-key-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'issuer.pem')
  const pem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
  writeFileSync(file, pem)
  const r = serve(['--jwt-public-key', file])
  t.is(r.status, 2, r.out)
  t.regex(r.out, /jwtPublicKey: this is a private key: give Parkline only its public half \(`openssl pkey -in key\.pem -pubout`\)/)
  t.false(r.out.includes(pem.split('\n')[1]!))
})

test('refused at start: a jwtPublicKey that is neither PEM text nor a path (a key body without its PEM lines) is not repeated in the message', (t) => {
  const pem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
  const body = pem.split('\n').filter((l) => l !== '' && !l.startsWith('-----')).join('')
  const r = serve(['--jwt-public-key', body])
  t.is(r.status, 2, r.out)
  t.regex(r.out, /jwtPublicKey: not a PEM key \(no -----BEGIN line\), nor a file to read \(ENOENT\); the value is not shown, as it may be a secret/)
  t.false(r.out.includes(body.slice(0, 40)))
})
