import { existsSync, readFileSync, readdirSync } from 'node:fs'
import test from 'ava'
import { OPTIONS, envName, flagName, parseCliArgs, resolveOptions } from '../../lib/config.ts'
import { ConfigError } from '../../lib/errors.ts'
import { redisTarget } from '../../lib/engines.ts'

test('the shipped config file documents every option and says 100 messages and 1 h', (t) => {
  const file = JSON.parse(readFileSync(new URL('../../conf/parkline.json', import.meta.url), 'utf8'))
  for (const o of OPTIONS) {
    t.true(o.name in file, `conf/parkline.json lacks ${o.name}`)
    t.true(('$' + o.name) in file || o.name === 'retryMax', `conf/parkline.json does not document ${o.name}`)
  }
  t.is(file.bufferLength, 100)
  t.is(file.messageTimeout, 3600)
  const resolved = resolveOptions({}, { file: 'conf/parkline.json' })
  for (const o of OPTIONS) t.deepEqual(resolved[o.name], o.default, `${o.name}: shipped value differs from the default`)
})

test('flags beat environment beats file', (t) => {
  const env = { PARKLINE_PORT: '9001', PARKLINE_BUFFER_LENGTH: '7' }
  const o = resolveOptions({ port: '9002' }, { file: 'conf/parkline.json', env })
  t.is(o.port, 9002)
  t.is(o.bufferLength, 7)
  t.is(envName('bufferLength'), 'PARKLINE_BUFFER_LENGTH')
  t.is(flagName('bufferLength'), '--buffer-length')
})

test('bad values and unknown keys are clear errors', (t) => {
  t.throws(() => resolveOptions({ bufferLength: 0 }), { instanceOf: ConfigError, message: /bufferLength.*>= 1/ })
  t.throws(() => resolveOptions({ nope: 1 }), { instanceOf: ConfigError, message: /unknown option "nope"/ })
  t.throws(() => resolveOptions({ queuePolicy: 'maybe' }), { instanceOf: ConfigError, message: /queuePolicy/ })
  t.throws(() => resolveOptions({ pubPrefix: '/same/', subPrefix: '/same/' }), { instanceOf: ConfigError })
  // exactly one Redis store
  t.throws(() => resolveOptions({ redisUrl: 'redis://a:1', redisCluster: 'redis://b:2' }), { instanceOf: ConfigError, message: 'set only one of redisUrl, redisCluster, redisSentinel (got redisUrl and redisCluster)' })
  t.throws(() => resolveOptions({ redisSentinel: 'nope' }), { instanceOf: ConfigError, message: /redisSentinel: "nope" is not host:port/ })
  // rediss:// entries: TLS to the sentinels and the nodes they name, all of them or none
  t.is(redisTarget(resolveOptions({ redisSentinel: 'rediss://10.0.0.5:26379,rediss://10.0.0.6:26380' }))?.mode, 'sentinel')
  t.like(redisTarget(resolveOptions({ redisSentinel: 'rediss://10.0.0.5:26379,rediss://10.0.0.6:26380' })), { tls: true, sentinels: [{ host: '10.0.0.5', port: 26379 }, { host: '10.0.0.6', port: 26380 }] })
  t.like(redisTarget(resolveOptions({ redisSentinel: '10.0.0.5:26379' })), { tls: false, sentinels: [{ host: '10.0.0.5', port: 26379 }] })
  t.throws(() => resolveOptions({ redisSentinel: 'rediss://10.0.0.5:26379,10.0.0.6:26379' }), { instanceOf: ConfigError, message: /redisSentinel: the entries mix rediss:\/\/ and plain host:port/ })
  t.throws(() => resolveOptions({ redisSentinel: '10.0.0.5:70000' }), { instanceOf: ConfigError, message: /the port is not 1-65535/ })
  const withPassword = t.throws(() => resolveOptions({ redisSentinel: 'rediss://u:secret@10.0.0.5:26379' }), { instanceOf: ConfigError, message: /is not host:port/ })
  t.false(withPassword?.message.includes('secret'), withPassword?.message)
  const bare = t.throws(() => resolveOptions({ redisSentinel: 'u:secret@10.0.0.5:26379' }), { instanceOf: ConfigError, message: /is not host:port/ })
  t.false(bare?.message.includes('secret'), bare?.message)
  // a password with a comma, split into two entries by the list syntax: neither half is shown
  for (const half of ['se', 'cret']) {
    const split = t.throws(() => resolveOptions({ redisSentinel: 'rediss://u:se,cret@10.0.0.5:26379' }), { instanceOf: ConfigError })
    t.false(new RegExp(`\\b${half}\\b`).test(split?.message ?? ''), split?.message)
  }
  t.like(redisTarget(resolveOptions({ redisSentinel: 'redis://10.0.0.5:26379' })), { tls: false, sentinels: [{ host: '10.0.0.5', port: 26379 }] })
  // an empty value is no number (`--port=`), and booleans are read whatever their case
  t.throws(() => resolveOptions(parseCliArgs(['--port=']).flags), { instanceOf: ConfigError, message: /port \(options\) must be an integer/ })
  t.is(resolveOptions(parseCliArgs(['--coalesce', 'FALSE']).flags).coalesce, false)
  t.deepEqual(parseCliArgs(['serve', '--coalesce', 'False']), { command: 'serve', config: undefined, flags: { coalesce: 'False' } })
  t.throws(() => resolveOptions({ redisUrl: 'localhost:6379' }), { instanceOf: ConfigError, message: /redisUrl: "localhost:6379" is not a redis:\/\/ or rediss:\/\/ URL/ })
  t.is(resolveOptions({ redisUrl: 'rediss://cache.example:6380' }).redisUrl, 'rediss://cache.example:6380')
  t.is(resolveOptions({ redisUrl: 'redis://u:p%25w@cache.example:6380/3' }).redisUrl, 'redis://u:p%25w@cache.example:6380/3')
  // what node-redis would only refuse once the store is built (a start already under way, exit 1):
  // refused with the options, and no password in the message
  for (const [url, why] of [
    ['redis://:se%zzcret@h:6379', /redisUrl: the user or password in "redis:\/\/…@h:6379" holds a % that is no escape/],
    ['redis://h:99999', /redisUrl: "redis:\/\/h:99999" is not a URL/],
    ['redis://my host:6379', /is not a URL/],
    ['redis://[::1', /is not a URL/],
    ['redis://:se/cr?et#x@host:6379', /redisUrl: "redis:\/\/…@host:6379" is not a URL|redisUrl: "redis:\/\/…@host:6379"/],
    ['redis://:secret@host:6379/abc', /redisUrl: "redis:\/\/…@host:6379\/abc": its path must be a database number \(\/0\), got "\/abc"/]
  ] as const) {
    const e = t.throws(() => resolveOptions({ redisUrl: url }), { instanceOf: ConfigError, message: why }, url)
    t.false(e.message.includes('secret') || e.message.includes('se%zz') || e.message.includes('cr?et'), `no password in ${e.message}`)
    t.throws(() => resolveOptions({ redisCluster: url }), { instanceOf: ConfigError }, url)
  }
  t.throws(() => resolveOptions({ port: 65536 }), { instanceOf: ConfigError, message: /port .* <= 65535/ })
  t.is(resolveOptions({ port: 65535 }).port, 65535)
  for (const [name, value] of [['pubPrefix', '/p*/'], ['subPrefix', '/s:id/'], ['healthPath', '/he(a)lth'], ['statusPath', '/st atus'], ['metricsPath', '/m?x'], ['revokePath', '/r%20']] as const) {
    t.throws(() => resolveOptions({ [name]: value }), { instanceOf: ConfigError, message: new RegExp(`^${name} ".*" holds a character a path here cannot`) }, `${name} ${value}`)
  }
  // ids are split as bytes: a delimiter past ASCII (or a control) would split inside characters
  for (const d of ['é', '€', '\t', ';;']) t.throws(() => resolveOptions({ multiplexDelimiter: d }), { instanceOf: ConfigError, message: /multiplexDelimiter must be one printable ASCII character/ }, JSON.stringify(d))
  for (const d of ['', ';', '|']) t.is(resolveOptions({ multiplexDelimiter: d }).multiplexDelimiter, d)
  t.throws(() => resolveOptions({ redisCluster: '127.0.0.1:7000' }), { instanceOf: ConfigError, message: /not a redis:\/\/ URL/ })
  t.deepEqual(resolveOptions({}, { env: { PARKLINE_REDIS_CLUSTER: 'redis://a:1, redis://b:2' } }).redisCluster, ['redis://a:1', 'redis://b:2'])
})

test('the command line: a flag missing its value, a word after a boolean flag, or a second command is named, not taken for a command', (t) => {
  const refused = (argv: string[], message: RegExp): void => {
    t.throws(() => parseCliArgs(argv), { message }, argv.join(' '))
  }
  refused(['serve', '--buffer-length', '--host', '127.0.0.1'], /^--buffer-length needs a value$/)
  refused(['serve', '--port', '--config=x.json'], /^--port needs a value$/)
  refused(['serve', '--buffer-length'], /^--buffer-length needs a value$/)
  refused(['serve', '--prot'], /^unknown flag --prot$/)
  refused(['serve', '--prot', '--port', '1'], /^unknown flag --prot$/)
  refused(['serve', '--demo', 'maybe'], /^--demo takes true, false, 1 or 0, not "maybe"$/)
  refused(['serve', 'extra'], /^unexpected argument "extra" \(the command is "serve"\)$/)
  refused(['nonsense', 'serve'], /^unexpected argument "serve" \(the command is "nonsense"\)$/)
  // what was right stays right: a command after a boolean flag, the command anywhere, a value
  // that looks like a flag written with =, a bare flag at the end
  t.deepEqual(parseCliArgs(['--demo', 'serve', '--port', '9000']), { command: 'serve', config: undefined, flags: { demo: 'true', port: '9000' } })
  t.deepEqual(parseCliArgs(['--port', '9000', 'serve']), { command: 'serve', config: undefined, flags: { port: '9000' } })
  t.deepEqual(parseCliArgs(['--api-key=--odd-but-allowed-key-0123456789']), { command: 'serve', config: undefined, flags: { apiKey: '--odd-but-allowed-key-0123456789' } })
  t.deepEqual(parseCliArgs(['--api-key', '--not-a-flag-0123456789']), { command: 'serve', config: undefined, flags: { apiKey: '--not-a-flag-0123456789' } })
  t.deepEqual(parseCliArgs(['serve', '--demo']), { command: 'serve', config: undefined, flags: { demo: 'true' } })
  t.deepEqual(parseCliArgs(['help', 'serve']).command, 'help')
  t.deepEqual(parseCliArgs(['serve', '--help']).command, 'help')
  // help wherever it is; the same command twice (`npm start -- serve …`: npm start says serve)
  t.deepEqual(parseCliArgs(['serve', 'help']).command, 'help')
  t.deepEqual(parseCliArgs(['serve', 'serve', '--port', '9000']), { command: 'serve', config: undefined, flags: { port: '9000' } })
  refused(['serve', 'worker'], /^unexpected argument "worker" \(the command is "serve"\)$/)
})

test('docs/configuration.md documents every option', (t) => {
  const doc = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8')
  for (const o of OPTIONS) t.true(doc.includes('`' + o.name + '`'), `docs/configuration.md lacks ${o.name}`)
})

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function anchorOf (heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-')
}

// hosts a doc may name: the examples (example.com, *.example), loopback, and the nginx site's upstream
const EXAMPLE_HOST = /^(localhost|127\.\d+\.\d+\.\d+|0\.0\.0\.0|\[::1\]|host|parkline|([\w*-]+\.)*example(\.com|\.org|\.net)?)$/

test('user-facing docs point only inside the repository', (t) => {
  const root = new URL('../../', import.meta.url)
  const docs = ['README.md', 'CHANGELOG.md', 'conf/README.md', ...readdirSync(new URL('docs/', root)).map((f) => 'docs/' + f)]
  let links = 0
  for (const file of docs) {
    const text = readFileSync(new URL(file, root), 'utf8')
    t.false(/\.\.\/shared|PROTOCOL\.md|of the protocol\)/.test(text), `${file} points outside the repository`)
    t.false(/node bin\/parkline\.ts/.test(text), `${file} uses a bare node bin/parkline.ts`)
    // links (outside code blocks) resolve to files that exist, and anchors to their headings
    for (const m of text.replace(/```[^]*?```/g, '').matchAll(/\]\(([^)\s]+)\)/g)) {
      links++
      const target = m[1]!
      t.false(/^[a-z][a-z+.-]*:/i.test(target), `${file}: ${target} points outside the repository`)
      const [path, hash] = target.split('#') as [string, string | undefined]
      const url = path === '' ? new URL(file, root) : new URL(path, new URL(file, root))
      t.true(existsSync(url), `${file} links to missing ${path}`)
      if (hash !== undefined && url.pathname.endsWith('.md') && existsSync(url)) {
        const headings = readFileSync(url, 'utf8').split('\n').filter((l) => /^#{1,6} /.test(l)).map((l) => anchorOf(l.replace(/^#+ /, '')))
        t.true(headings.includes(hash), `${file}: ${target}: no such heading`)
      }
    }
    // and no URL names a host outside the examples
    for (const m of text.matchAll(/\bhttps?:\/\/([^/:\s)`"'<>,;]+)/g)) t.regex(m[1]!, EXAMPLE_HOST, `${file}: ${m[0]} names a host outside the repository's examples`)
  }
  t.true(links > 10, 'the docs hold links (the pattern reads them)')
})

test('paths that overlap are refused at start, naming both', (t) => {
  t.throws(() => resolveOptions({ subPrefix: '/' }), { instanceOf: ConfigError, message: /pubPrefix "\/pub\/" and subPrefix "\/" overlap/ })
  t.throws(() => resolveOptions({ pubPrefix: '/sub/pub/' }), { instanceOf: ConfigError, message: /overlap/ })
  t.throws(() => resolveOptions({ healthPath: '/sub/health' }), { instanceOf: ConfigError, message: 'healthPath "/sub/health" lies under subPrefix "/sub/": it would be taken for a subscription' })
  t.throws(() => resolveOptions({ statusPath: '/pub/status' }), { instanceOf: ConfigError, message: /statusPath "\/pub\/status" lies under pubPrefix/ })
  t.throws(() => resolveOptions({ metricsPath: '/health' }), { instanceOf: ConfigError, message: 'metricsPath and healthPath are both "/health"' })
  t.throws(() => resolveOptions({ subPrefix: '/demo/', demo: true }), { instanceOf: ConfigError, message: /demo "\/demo\/" lies under subPrefix/ })
  t.notThrows(() => resolveOptions({ subPrefix: '/demo/' }), 'no demo page, no clash')
  t.notThrows(() => resolveOptions({ pubPrefix: '/p/', subPrefix: '/s/', statusPath: '/pstatus' }))
  t.notThrows(() => resolveOptions({ metricsPath: '', statusPath: '' }))
})

test('an unknown PARKLINE_* environment variable is refused at start, with the option it likely meant', (t) => {
  t.throws(() => resolveOptions({}, { env: { PARKLINE_JWTSECRET: 'x' } }), { instanceOf: ConfigError, message: /^unknown environment variable PARKLINE_JWTSECRET \(did you mean PARKLINE_JWT_SECRET\?\)/ })
  t.throws(() => resolveOptions({}, { env: { PARKLINE_CORS_ORIGIN: 'https://a.example' } }), { instanceOf: ConfigError, message: /^unknown environment variable PARKLINE_CORS_ORIGIN: / })
  // the server's own, and the documented switches, pass; so does anything not PARKLINE_*
  t.throws(() => resolveOptions({}, { env: { parkline_jwt_secret: 'x' } }), { instanceOf: ConfigError, message: /^unknown environment variable parkline_jwt_secret \(did you mean PARKLINE_JWT_SECRET\?\)/ })
  t.notThrows(() => resolveOptions({}, { env: { PARKLINE_NO_FAST_PATH: '1', PARKLINE_WORKER_ID: '0', PATH: '/bin', PARKLINEX: '1' } }))
})

test('corsOrigins entries must be origins, trustedProxies entries IP addresses', (t) => {
  t.throws(() => resolveOptions({ corsOrigins: ['*'] }), { instanceOf: ConfigError, message: 'corsOrigins: "*" is not an origin; leave corsOrigins empty to allow every origin' })
  t.throws(() => resolveOptions({ corsOrigins: ['https://app.example/'] }), { instanceOf: ConfigError, message: /"https:\/\/app.example\/" is not an origin .*did you mean "https:\/\/app.example"\?/ })
  t.throws(() => resolveOptions({ corsOrigins: ['https://App.Example'] }), { instanceOf: ConfigError, message: /did you mean "https:\/\/app.example"/ })
  t.throws(() => resolveOptions({ corsOrigins: ['https://*.example.com'] }), { instanceOf: ConfigError, message: /is not an origin/ })
  t.throws(() => resolveOptions({ corsOrigins: ['app.example'] }), { instanceOf: ConfigError, message: /is not an origin/ })
  t.deepEqual(resolveOptions({ corsOrigins: ['https://app.example', 'http://localhost:8080', 'null'] }).corsOrigins, ['https://app.example', 'http://localhost:8080', 'null'])
  // an app's own scheme has no URL origin; its Origin header is scheme://host
  t.deepEqual(resolveOptions({ corsOrigins: ['capacitor://localhost', 'chrome-extension://abcdefghijklmnop'] }).corsOrigins, ['capacitor://localhost', 'chrome-extension://abcdefghijklmnop'])
  t.throws(() => resolveOptions({ corsOrigins: ['capacitor://localhost/'] }), { instanceOf: ConfigError })
  t.deepEqual(resolveOptions({ trustedProxies: ['2001:DB8::1', '::ffff:10.0.0.2', '0:0:0:0:0:0:0:1'] }).trustedProxies, ['2001:db8::1', '10.0.0.2', '::1'])
  t.throws(() => resolveOptions({ trustedProxies: ['10.0.0.0/8'] }), { instanceOf: ConfigError, message: /trustedProxies: "10.0.0.0\/8" is not an IP address/ })
  t.throws(() => resolveOptions({ trustedProxies: ['proxy.internal'] }), { instanceOf: ConfigError })
  t.deepEqual(resolveOptions({ trustedProxies: ['10.0.0.2', '::1'] }).trustedProxies, ['10.0.0.2', '::1'])
})

test('a trusted IPv4 proxy is recognised when the server listens on :: (its address then reads ::ffff:a.b.c.d)', async (t) => {
  const { localClient } = await import('../../lib/http.ts')
  const h = { 'x-forwarded-for': '127.0.0.1' }
  t.true(localClient('::ffff:10.0.0.2', h, ['10.0.0.2']))
  t.true(localClient('10.0.0.2', h, ['10.0.0.2']))
  t.false(localClient('::ffff:10.0.0.3', h, ['10.0.0.2']))
  t.false(localClient('::ffff:10.0.0.2', { 'x-forwarded-for': '203.0.113.7' }, ['10.0.0.2']))
  t.true(localClient('127.0.0.1', {}, []))
  t.false(localClient('127.0.0.1', { via: '1.1 nginx' }, []))
  // a proxy that passes the client's own X-Forwarded-For on and sets X-Real-IP: every address it gives must be loopback
  t.false(localClient('10.0.0.2', { 'x-forwarded-for': '127.0.0.1', 'x-real-ip': '203.0.113.7' }, ['10.0.0.2']))
  t.true(localClient('10.0.0.2', { 'x-forwarded-for': '127.0.0.1', 'x-real-ip': '127.0.0.1' }, ['10.0.0.2']))
  // every hop counts, not only the one the trusted proxy added (a relay in front of it on its host)
  t.false(localClient('10.0.0.2', { forwarded: 'for=203.0.113.7, for="[::1]:4711"' }, ['10.0.0.2']))
  t.true(localClient('10.0.0.2', { forwarded: 'for=127.0.0.1, for="[::1]:4711"' }, ['10.0.0.2']))
  t.false(localClient('10.0.0.2', { 'x-forwarded-for': '203.0.113.7, 127.0.0.1' }, ['10.0.0.2']))
  t.true(localClient('10.0.0.2', { 'x-forwarded-for': '127.0.0.2, 127.0.0.1' }, ['10.0.0.2']))
  // a proxy that gives the client in a header of its own and passes the client's X-Forwarded-For on
  for (const h of ['x-client-ip', 'true-client-ip', 'cf-connecting-ip', 'x-cluster-client-ip', 'fastly-client-ip', 'client-ip']) {
    t.false(localClient('10.0.0.2', { 'x-forwarded-for': '127.0.0.1', [h]: '203.0.113.7' }, ['10.0.0.2']), h)
    t.true(localClient('10.0.0.2', { 'x-forwarded-for': '127.0.0.1', [h]: '127.0.0.1' }, ['10.0.0.2']), h)
  }
  t.false(localClient('10.0.0.2', { forwarded: 'for=127.0.0.1;proto=http, for=203.0.113.7' }, ['10.0.0.2']))
  t.false(localClient('10.0.0.2', { forwarded: 'proto=https' }, ['10.0.0.2']), 'no for=: no client address')
  t.false(localClient('10.0.0.2', { via: '1.1 nginx' }, ['10.0.0.2']), 'no client address given at all')
  // what other proxies and CDNs set: a loopback peer carrying one is relayed, not a local process
  for (const h of ['x-cluster-client-ip', 'fastly-client-ip', 'client-ip', 'x-forwarded']) {
    t.false(localClient('127.0.0.1', { [h]: '127.0.0.1' }, []), h)
  }
  t.false(localClient('10.0.0.2', { 'x-forwarded': 'for=127.0.0.1' }, ['10.0.0.2']), 'X-Forwarded alone gives no address read')
})

test('a client address a trusted proxy writes with a port, in quotes or brackets, or in another IPv6 spelling is read as that address', async (t) => {
  const { localClient, headerAddress } = await import('../../lib/http.ts')
  const P = ['10.0.0.2']
  // RFC 7239 §6: a quoted IPv4 or bracketed IPv6 with a port
  t.true(localClient('10.0.0.2', { forwarded: 'for="127.0.0.1:8080"' }, P))
  t.true(localClient('10.0.0.2', { forwarded: 'for="[::1]:4711";proto=https, for=127.0.0.2' }, P))
  t.false(localClient('10.0.0.2', { forwarded: 'for="203.0.113.7:8080"' }, P))
  t.false(localClient('10.0.0.2', { forwarded: 'for="[2001:db8::7]:4711"' }, P))
  // load balancers that write X-Forwarded-For hops with the client's port
  t.true(localClient('10.0.0.2', { 'x-forwarded-for': '127.0.0.1:5555' }, P))
  t.true(localClient('10.0.0.2', { 'x-forwarded-for': '[::1]:5555, 127.0.0.1' }, P))
  t.false(localClient('10.0.0.2', { 'x-forwarded-for': '203.0.113.7:5555, 127.0.0.1' }, P))
  // other spellings of loopback
  t.true(localClient('10.0.0.2', { 'x-forwarded-for': '::ffff:7f00:1' }, P))
  t.true(localClient('10.0.0.2', { 'x-real-ip': '0:0:0:0:0:0:0:1' }, P))
  t.true(localClient('10.0.0.2', { forwarded: 'for="[::ffff:127.0.0.1]"' }, P))
  // not addresses: never loopback
  for (const v of ['unknown', '_hidden', 'localhost', '127.0.0.1.example', '"127.0.0.1', '127.0.0.1:', '[::1', '::1]:80', '']) {
    t.false(localClient('10.0.0.2', { forwarded: `for=${v}` }, P), `for=${v}`)
    t.false(localClient('10.0.0.2', { 'x-forwarded-for': v }, P), `x-forwarded-for: ${v}`)
  }
  // every for= of an element counts, and one inside a quoted value is not a for=
  t.false(localClient('10.0.0.2', { forwarded: 'for=127.0.0.1;for=203.0.113.5' }, P))
  t.false(localClient('10.0.0.2', { forwarded: 'host="x;for=127.0.0.1;";for=203.0.113.5' }, P))
  t.false(localClient('10.0.0.2', { forwarded: 'for="127.0.0.1, for=127.0.0.1";proto=http' }, P))
  t.true(localClient('10.0.0.2', { forwarded: 'host="a,b;for=203.0.113.5";for=127.0.0.1, for=[::1]' }, P))
  t.is(headerAddress(' "[::1]:80" '), '::1')
  t.is(headerAddress('127.0.0.9:1'), '127.0.0.9')
})
