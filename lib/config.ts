// One table of options: name, type, default, doc. Validated and defaulted once, at boot
// (nchan's src/nchan_commands.rb works the same way). conf/parkline.json documents the same keys.
import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { ConfigError, ParklineError } from './errors.ts'
import { canonicalIp } from './http.ts'

type Kind = 'int' | 'string' | 'bool' | 'list' | 'enum'

interface OptionSpec {
  name: keyof ParklineOptions
  kind: Kind
  default: unknown
  doc: string
  values?: readonly string[]
  min?: number
  max?: number
  /** Default when Parkline is embedded as a Fastify plugin, where it differs from the standalone server's. */
  embedded?: unknown
  /** A list given as text that holds no entry is refused (`--api-key "$KEY"` with KEY empty would turn the key off). */
  nonEmpty?: boolean
}

export interface ParklineOptions {
  port: number
  workers: number
  gcThreads: number
  heapGrowth: number
  host: string
  pubPrefix: string
  subPrefix: string
  bufferLength: number
  messageTimeout: number
  maxMessageSize: number
  maxChannelIdLength: number
  maxChannelsPerSubscription: number
  multiplexDelimiter: string
  subscriberTimeout: number
  keepalive: number
  ping: 'comment' | 'event'
  retryMin: number
  retryMax: number
  queueCap: number
  queuePolicy: 'disconnect' | 'drop-oldest'
  coalesce: boolean
  websocketDeflate: boolean
  websocketPublish: boolean
  tcpNoDelay: boolean
  transports: Array<typeof TRANSPORT_NAMES[number]>
  longpollMultipart: boolean
  corsOrigins: string[]
  maxSubscribers: number
  maxSubscribersPerUser: number
  maxChannels: number
  drainWindow: number
  healthPath: string
  statusPath: string
  metricsPath: string
  statusLoopbackOnly: boolean
  trustedProxies: string[]
  demo: boolean
  headersTimeout: number
  keepAliveTimeout: number
  tcpKeepAlive: number
  bodyTimeout: number
  bodyMinRate: number
  maxPublishing: number
  logLevel: string
  redisUrl: string
  redisCluster: string[]
  redisSentinel: string[]
  redisSentinelName: string
  redisUsername: string
  redisPassword: string
  redisCommandTimeout: number
  redisReplicaAck: number
  idempotencyWindow: number
  apiKey: string[]
  jwtSecret: string
  jwtPreviousSecret: string
  jwtPublicKey: string
  jwksUrl: string
  jwtIssuer: string
  jwtAudience: string
  jwtLeeway: number
  jwtMaxLifetime: number
  maxRevocations: number
  authCookie: string
  tokenInQuery: boolean
  anonymousSubscribe: string[]
  authorizeUrl: string
  authorizePublish: boolean
  authorizeTimeout: number
  authorizeCacheTtl: number
  publishUpstreamUrl: string
  publisherOpen: boolean
  revokePath: string
  revocationsFile: string
}

/** A drain ends early only after this long without a publish: a node publishers still use serves them out the window (lib/server.ts). */
export const DRAIN_QUIET_MS = 1000
/** Descriptors each process keeps for itself: stdio, the listening socket, epoll, libuv's eventfd and
 * thread pool, publisher connections, log files, operator requests. A subscriber gets the rest of RLIMIT_NOFILE. */
export const FD_RESERVE = 64

/**
 * Subscribers a process admits when maxSubscribers is 0: 90% of its open-file limit, leaving at
 * least FD_RESERVE descriptors for the rest (publishers, /health, /metrics), where the limit is small.
 */
export function defaultSubscriberCap (fdLimit: number): number {
  return Math.max(1, Math.min(Math.floor(fdLimit * 0.9), fdLimit - FD_RESERVE))
}

/** Once a drain ends, how long requests still under way may take before their connections are cut (lib/server.ts). */
export const FINISH_GRACE_MS = 2000

/** Subscriber transports in negotiation order (PROTOCOL.md §4.1); the registry is transports/index.ts. */
export const TRANSPORT_NAMES = ['websocket', 'eventsource', 'chunked', 'multipart', 'longpoll'] as const

/**
 * The most jwtLeeway may be: a revoked jti's token is accepted until exp plus the leeway, so a list
 * kept outside a process (the primary's for workers forked again, Redis) keeps a jti this much past
 * its exp, whatever leeway each process has.
 */
export const MAX_LEEWAY = 30

/**
 * A token (jti) revoked until `prev` and again until `until` (unix seconds; 0 = for good): held the
 * longer of the two, so that a later revocation never shortens one. The rule of every list that
 * keeps them: a process's own (lib/auth.ts Revocations), the workers primary's (lib/cluster.ts) and
 * Redis's (lib/redis-lua.ts REVOKE, the same rule in Lua).
 */
export function laterUntil (prev: number, until: number): number {
  return prev === 0 || until === 0 ? 0 : Math.max(prev, until)
}

/**
 * The options a running server takes anew, without a restart (SIGHUP; embedded,
 * `app.parkline.reloadCredentials`): the API keys and the JWT checks (lib/access.ts checkReload).
 */
export const CREDENTIALS = ['apiKey', 'jwtSecret', 'jwtPreviousSecret', 'jwtPublicKey', 'jwtIssuer', 'jwtAudience', 'jwtLeeway', 'jwtMaxLifetime'] as const
export type Credentials = Pick<ParklineOptions, typeof CREDENTIALS[number]>

/** Worker processes at most (`workers`): more is a fork bomb, not a deployment. */
export const MAX_WORKERS = 1024

export const OPTIONS: readonly OptionSpec[] = [
  { name: 'port', kind: 'int', default: 8080, min: 0, max: 65535, doc: 'TCP port of the standalone server.' },
  { name: 'workers', kind: 'int', default: 0, min: 0, max: MAX_WORKERS, doc: 'Worker processes sharing the port (parkline serve); 0 = chosen for the host (a single process on 1 or 2 cores, one per core above), 1 = a single process.' },
  { name: 'gcThreads', kind: 'int', default: 0, min: 0, max: 64, doc: 'V8 background threads (Node --v8-pool-size) per standalone server process; 0 = chosen for the host: its cores per server process less one, 1 to 4.' },
  { name: 'heapGrowth', kind: 'int', default: 200, min: 0, max: 1000, doc: 'V8 heap growing percent (Node --heap-growing-percent) per standalone server process: how far the old generation grows past its live size before the next major collection; 0 = V8\'s own choice.' },
  { name: 'host', kind: 'string', default: '0.0.0.0', doc: 'Address the standalone server listens on.' },
  { name: 'pubPrefix', kind: 'string', default: '/pub/', doc: 'Publisher location; the channel id follows it.' },
  { name: 'subPrefix', kind: 'string', default: '/sub/', doc: 'Subscriber location; the channel id(s) follow it.' },
  { name: 'bufferLength', kind: 'int', default: 100, min: 1, doc: 'Messages kept per channel for resume.' },
  { name: 'messageTimeout', kind: 'int', default: 3600, min: 0, doc: 'Seconds a message stays buffered; 0 = forever.' },
  { name: 'maxMessageSize', kind: 'int', default: 1048576, min: 0, doc: 'Largest message body in bytes; above it 413.' },
  { name: 'maxChannelIdLength', kind: 'int', default: 1024, min: 1, doc: 'Longest channel id (or multiplexed list) in bytes; above it 403.' },
  { name: 'maxChannelsPerSubscription', kind: 'int', default: 255, min: 1, doc: 'Channels one multiplexed subscription may name; above it 403.' },
  { name: 'multiplexDelimiter', kind: 'string', default: ',', doc: 'Separates channels in a subscriber URL; empty turns multiplexing off.' },
  { name: 'subscriberTimeout', kind: 'int', default: 0, min: 0, doc: 'Seconds a subscriber may stay; 0 = forever (long-poll 408, SSE :408:).' },
  { name: 'keepalive', kind: 'int', default: 25, min: 0, doc: 'Seconds between keepalives (SSE comments or events, WebSocket pings) from the one shared timer; 0 = off.' },
  { name: 'ping', kind: 'enum', default: 'comment', values: ['comment', 'event'], doc: 'SSE keepalive form: `:` comment or Nchan\'s `event: ping`.' },
  { name: 'retryMin', kind: 'int', default: 1000, min: 0, doc: 'Lower bound (ms) of the random SSE `retry:`; 0 with retryMax 0 = off.' },
  { name: 'retryMax', kind: 'int', default: 5000, min: 0, doc: 'Upper bound (ms) of the random SSE `retry:`.' },
  { name: 'queueCap', kind: 'int', default: 65536, min: 1, doc: 'Bytes queued in user space per streaming subscriber before the overflow policy runs.' },
  { name: 'queuePolicy', kind: 'enum', default: 'disconnect', values: ['disconnect', 'drop-oldest'], doc: 'Past queueCap: disconnect (client resumes from its last id) or drop-oldest (unsent messages dropped, gap signalled).' },
  { name: 'transports', kind: 'list', default: [...TRANSPORT_NAMES], doc: 'Subscriber transports served, of websocket, eventsource, chunked, multipart, longpoll; a request no enabled one claims gets 406.' },
  { name: 'longpollMultipart', kind: 'bool', default: false, doc: 'A long-poll answer carries every buffered message after the cursor, as one multipart/mixed body (Nchan\'s nchan_longpoll_multipart_response).' },
  { name: 'coalesce', kind: 'bool', default: true, doc: 'Send the messages a stream gets in one event-loop turn as one write (fewer syscalls per delivery).' },
  { name: 'websocketDeflate', kind: 'bool', default: false, doc: 'Accept permessage-deflate from WebSocket clients that offer it: each message compressed once, for all of them (no context takeover).' },
  { name: 'websocketPublish', kind: 'bool', default: true, doc: 'Take a WebSocket handshake on the publisher location, as Nchan does: each text or binary message the client sends is published on the channel and answered with a text frame of channel info. Admitted as any publisher request.' },
  { name: 'tcpNoDelay', kind: 'bool', default: true, doc: 'Stream subscribers (SSE, WebSocket, chunked, multipart): each write leaves at once (TCP_NODELAY). false lets the kernel hold a small write while the subscriber has not acknowledged the one before (Nagle): more deliveries per CPU-second when one subscriber gets messages closer together than about 40 ms, for up to the client\'s delayed-ACK time (about 40 ms on Linux) more latency.' },
  { name: 'corsOrigins', kind: 'list', default: [], doc: 'Allowed origins (scheme://host[:port], lower case, no trailing /; "*" or a wildcard stops the start); empty = every origin.' },
  { name: 'maxSubscribers', kind: 'int', default: 0, min: 0, doc: 'Subscribers per process before 503; 0 = 90% of the open-file limit (at most the limit less 64).' },
  { name: 'maxSubscribersPerUser', kind: 'int', default: 0, min: 0, doc: 'Subscribers one token `sub` may hold on this server (its in-memory workers together, or every node sharing a Redis) before 429; 0 = no limit.' },
  { name: 'maxChannels', kind: 'int', default: 500000, min: 1, doc: 'Channel records per process; a publish or subscription that would create more gets 503 with Retry-After.' },
  { name: 'drainWindow', kind: 'int', default: 10, min: 0, max: 86400, doc: 'Seconds over which SIGTERM closes subscribers in waves; sooner once none is left and no publish came for a second.' },
  { name: 'healthPath', kind: 'string', default: '/health', embedded: '/parkline/health', doc: 'Health check for load balancers (200, or 503 while draining, the shared store is down or a worker is away); empty = off. Embedded: /parkline/health under the register prefix.' },
  { name: 'statusPath', kind: 'string', default: '/status', embedded: '/parkline/status', doc: 'Plain-text status page; empty = off. Embedded: /parkline/status under the register prefix.' },
  { name: 'metricsPath', kind: 'string', default: '/metrics', embedded: '/parkline/metrics', doc: 'Prometheus metrics; empty = off. Embedded: /parkline/metrics under the register prefix.' },
  { name: 'statusLoopbackOnly', kind: 'bool', default: true, doc: 'Answer /status and /metrics only to loopback clients.' },
  { name: 'trustedProxies', kind: 'list', default: [], doc: 'IP addresses of the proxies in front of Parkline whose client address (X-Forwarded-For, X-Real-IP, Forwarded and the other client-address headers of docs/api.md 16.1) is believed for the loopback-only publisher and status pages; a request with a proxy\'s header from any other address is not a local client.' },
  { name: 'demo', kind: 'bool', default: false, doc: 'Serve the demo page (subscribe, publish, live log) at /demo/ with the browser client (client/).' },
  { name: 'headersTimeout', kind: 'int', default: 60, min: 1, doc: 'Seconds a client has to send a complete header section.' },
  { name: 'keepAliveTimeout', kind: 'int', default: 75, min: 1, max: 86400, doc: 'Seconds a connection may stay idle between requests before the server closes it (nginx\'s default; a proxy or load balancer in front must close its idle connections sooner).' },
  { name: 'tcpKeepAlive', kind: 'int', default: 60, min: 0, max: 32767, doc: 'Seconds a connection may send and receive nothing before the kernel probes its peer (TCP keepalive); a peer gone without a FIN (a parked long-poll on a quiet channel) is found and its descriptor freed. 0 = off. Standalone server only.' },
  { name: 'bodyTimeout', kind: 'int', default: 30, min: 1, doc: 'Seconds a publisher has to send its whole body; past it 408 and the connection closes.' },
  { name: 'bodyMinRate', kind: 'int', default: 1024, min: 0, doc: 'Bytes per second a publisher body must average after its first 5 s; slower gets 408 and the connection closes; 0 = off.' },
  { name: 'maxPublishing', kind: 'int', default: 256, min: 1, doc: 'Publish bodies read, or waiting on publishUpstreamUrl, the owner worker or Redis, at once per process (each at most maxMessageSize); past it 503 with Retry-After.' },
  { name: 'logLevel', kind: 'enum', default: 'info', values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], doc: 'pino level of the standalone server\'s JSON log (info: lifecycle lines; requests are not logged).' },
  { name: 'redisUrl', kind: 'string', default: '', doc: 'Redis URL (redis://host:port/db) of the store several nodes share; "" = in-memory engine. At most one of redisUrl, redisCluster, redisSentinel.' },
  { name: 'redisCluster', kind: 'list', default: [], doc: 'Seed node URLs of a Redis Cluster (comma-separated in env and flags); the channels spread over its masters by hash tag, with sharded pub/sub on Redis 7+.' },
  { name: 'redisSentinel', kind: 'list', default: [], doc: 'Sentinels (`host:port`, or `rediss://host:port` for TLS to the sentinels and the nodes they name; comma-separated in env and flags) watching the master named by redisSentinelName; Parkline follows its failovers.' },
  { name: 'redisSentinelName', kind: 'string', default: 'mymaster', doc: 'The master\'s name in the sentinels\' configuration.' },
  { name: 'redisUsername', kind: 'string', default: '', doc: 'ACL user Parkline logs in to Redis as (every node: a cluster\'s, a Sentinel set\'s master and replicas); "" = the URL\'s, or `default`. docs/redis.md, Access.' },
  { name: 'redisPassword', kind: 'string', default: '', doc: 'Its password; "" = the URL\'s, or none. A redisUrl or redisCluster seed may carry user:password@ instead (not both).' },
  { name: 'redisCommandTimeout', kind: 'int', default: 2000, min: 1, doc: 'Milliseconds any Redis command may take; past it the store counts as down: publishes answer 503 with Retry-After, /health 503, new subscribers 503, until it answers again.' },
  { name: 'redisReplicaAck', kind: 'int', default: 0, min: 0, doc: 'A publish is acknowledged (2xx) only once this many replicas have it (WAIT), so a failover loses no acknowledged message; 0 = off (a message lost in a failover reaches subscribers as a gap signal).' },
  { name: 'idempotencyWindow', kind: 'int', default: 300, min: 0, doc: 'Seconds an `Idempotency-Key` is remembered per channel: a publish retried with it answers the original id and publishes nothing; 0 = off.' },
  // access control (docs/api.md "Access control"); none set: subscribers open, publisher loopback-only
  { name: 'apiKey', kind: 'list', default: [], nonEmpty: true, doc: 'Server-side publisher keys (16 bytes or more each, of a Bearer token\'s characters: letters, digits, - . _ ~ + / and = at the end), sent as `Authorization: Bearer <key>`: publish, delete, channel info and revoke on every channel.' },
  { name: 'jwtSecret', kind: 'string', default: '', doc: 'HMAC secret for HS256/384/512 tokens, 32 bytes or more (shorter stops the start); "" = off.' },
  { name: 'jwtPreviousSecret', kind: 'string', default: '', doc: 'The HMAC secret jwtSecret replaces, during a rotation: tokens signed with it are still accepted (32 bytes or more; needs jwtSecret); "" = none.' },
  { name: 'jwtPublicKey', kind: 'string', default: '', doc: 'PEM public key (RS*, PS*, ES*, EdDSA tokens), or the path of a PEM file; a private key is refused; "" = off.' },
  { name: 'jwksUrl', kind: 'string', default: '', doc: 'URL of a JWKS, cached; refetched for an unknown kid at most once per 10 s; "" = off.' },
  { name: 'jwtIssuer', kind: 'string', default: '', doc: 'Required token `iss`; "" = not checked.' },
  { name: 'jwtAudience', kind: 'string', default: '', doc: 'Required token `aud`; "" = not checked.' },
  { name: 'jwtLeeway', kind: 'int', default: 0, min: 0, max: MAX_LEEWAY, doc: 'Seconds of clock skew allowed on exp and nbf, and on iat against a revocation by sub (at most 30).' },
  { name: 'jwtMaxLifetime', kind: 'int', default: 0, min: 0, doc: 'A token must carry `exp`, at most this many seconds (plus jwtLeeway) after it is presented; others get 401. 0 = off: a token without exp is good until revoked.' },
  { name: 'maxRevocations', kind: 'int', default: 100000, min: 1, doc: 'Most revocations (POST revokePath) held in force; a revocation past it gets 507 and the ones held stay. A revocation is held until its token\'s exp (a user\'s, and a token\'s whose exp is not given: for good).' },
  { name: 'authCookie', kind: 'string', default: 'parkline_token', doc: 'Cookie a subscriber\'s token may come in (EventSource cannot set headers); never used for publishers.' },
  { name: 'tokenInQuery', kind: 'bool', default: false, doc: 'Accept a subscriber\'s token as `?access_token=` (RFC 6750 §2.3; it then shows in logs).' },
  { name: 'anonymousSubscribe', kind: 'list', default: [], doc: 'Channel patterns (`news`, `public.*`) anyone may subscribe to without a token, when a JWT key or authorizeUrl is set.' },
  { name: 'authorizeUrl', kind: 'string', default: '', doc: 'Nchan\'s authorize request: GET here before a subscriber is accepted; 2xx admits, any other answer is passed to the client; "" = off.' },
  { name: 'authorizePublish', kind: 'bool', default: false, doc: 'Send the authorize request for publisher requests too.' },
  { name: 'authorizeTimeout', kind: 'int', default: 5, min: 1, doc: 'Seconds the authorize request, the publisher upstream and a JWKS fetch may take; past it 503 with Retry-After.' },
  { name: 'authorizeCacheTtl', kind: 'int', default: 5, min: 0, doc: 'Seconds an authorize decision is reused for the same channels and credentials; 0 = ask every time.' },
  { name: 'publishUpstreamUrl', kind: 'string', default: '', doc: 'Nchan\'s publisher upstream request: each message is POSTed here first; 200 publishes its answer, 204 drops, 304 publishes unchanged; "" = off.' },
  { name: 'publisherOpen', kind: 'bool', default: false, doc: 'With neither apiKey nor a JWT key (nor authorizePublish), let any client publish (Nchan\'s open publisher); false = loopback clients only, not through a proxy.' },
  { name: 'revokePath', kind: 'string', default: '/admin/revoke', embedded: '/parkline/revoke', doc: 'POST {"sub"} or {"jti"} here (apiKey or an admin token) ends those subscribers everywhere; "" = off. Embedded: /parkline/revoke under the register prefix.' },
  { name: 'revocationsFile', kind: 'string', default: '', doc: 'File that keeps the revocations across restarts where Redis does not (no redisUrl): read at start, a line appended before each revocation is answered. "" = held in memory: a restart forgets them.' }
]

/**
 * `workers: 0`: a single process on a host of 1 or 2 cores, one worker per core above. On 2 cores
 * one process measured better than two workers in latency and memory (benchmarks/results/
 * workers-2026-11-30.md), and no worker count beats it where server and load share two cores
 * (benchmarks/results/workers-scaling-2026-11-30.md: publishes per server core-second 111k with
 * one process, 77k with two owner workers, whose other worker's publishes take one hop). The one
 * row two owner workers win on 2 cores is a large open-loop fan-out, which they split between the
 * cores: 10 msgs/s to 10,000 subscribers, p99 87 ms against one process's 169 ms; one process won
 * one-to-one p99 (5.6 against 49 ms), long-poll (8,000 against 4,000 msgs/s clean), closed-loop
 * broadcast p99, publishes/s and memory in the same run (benchmarks/results/
 * suite-2026-11-30-workers-1-vs-2.md). On more cores each worker brings its own core;
 * `npm run bench:workers` measures a host.
 */
export function defaultWorkers (cores: number): number {
  return cores <= 2 ? 1 : cores
}

/** Server processes of `parkline serve` on `cores` cores (`workers`, or chosen for the host). */
export function workerCount (opts: Pick<ParklineOptions, 'workers'>, cores: number): number {
  // (the option's bound holds for the host's choice too)
  return opts.workers === 0 ? Math.min(defaultWorkers(cores), MAX_WORKERS) : opts.workers
}

/** Environment variable of an option: bufferLength -> PARKLINE_BUFFER_LENGTH. */
export function envName (name: string): string {
  return 'PARKLINE_' + name.replace(/[A-Z]/g, (c) => '_' + c).toUpperCase()
}

/**
 * PARKLINE_* variables that are not options: the server's own between its processes, and the
 * switches docs/api.md and the benchmarks name. Any other PARKLINE_* variable is refused at start
 * (checkEnvNames): a misspelt option would otherwise fall back to its default unseen.
 */
const INTERNAL_ENV = new Set(['PARKLINE_WORKER_ID', 'PARKLINE_WORKER_COUNT', 'PARKLINE_MESH', 'PARKLINE_MESH_KEY',
  'PARKLINE_GC_RESTARTED', 'PARKLINE_NO_FAST_PATH', 'PARKLINE_NO_RAW_PUBLISH', 'PARKLINE_NO_HEAP_TRIM', 'PARKLINE_NO_DETACH', 'PARKLINE_NODE_ARGS'])

function checkEnvNames (env: NodeJS.ProcessEnv): void {
  const known = new Map(OPTIONS.map((o) => [envName(o.name), o.name]))
  for (const k of Object.keys(env)) {
    if (!k.toUpperCase().startsWith('PARKLINE_') || known.has(k) || INTERNAL_ENV.has(k)) continue
    // PARKLINE_JWTSECRET, parkline_jwt_secret...: the same letters as an option's variable
    const squash = (n: string): string => n.replace(/_/g, '').toUpperCase()
    const near = [...known.keys()].find((n) => squash(n) === squash(k))
    throw new ConfigError(`unknown environment variable ${k}${near !== undefined ? ` (did you mean ${near}?)` : ''}: option variables are PARKLINE_ and the option's name in upper snake case (docs/configuration.md)`)
  }
}

/** Command-line flag of an option: bufferLength -> --buffer-length. */
export function flagName (name: string): string {
  return '--' + name.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())
}

function coerce (spec: OptionSpec, value: unknown, from: string): unknown {
  switch (spec.kind) {
    case 'int': {
      // (an empty string is no number: `--port=` is refused, not port 0)
      // decimal digits only, as docs/configuration.md says: no `1e3`, `0x10`, ` 5` or `5.0`
      const n = typeof value === 'string' ? (/^-?[0-9]+$/.test(value) ? Number(value) : NaN) : value
      // (one past 2^53 is no exact number: `99999999999999999999` would be taken as 1e20)
      if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < (spec.min ?? -Infinity) || n > (spec.max ?? Infinity)) {
        const max = spec.max ?? (typeof n === 'number' && Number.isInteger(n) && !Number.isSafeInteger(n) ? Number.MAX_SAFE_INTEGER : undefined)
        const bounds = (spec.min !== undefined ? ' >= ' + spec.min : '') + (spec.min !== undefined && max !== undefined ? ' and' : '') + (max !== undefined ? ' <= ' + max : '')
        throw new ConfigError(`${spec.name} (${from}) must be an integer${bounds}, got ${JSON.stringify(value)}`)
      }
      return n
    }
    case 'bool':
      if (value === true || value === '1' || (typeof value === 'string' && value.toLowerCase() === 'true')) return true
      if (value === false || value === '0' || (typeof value === 'string' && value.toLowerCase() === 'false')) return false
      throw new ConfigError(`${spec.name} (${from}) must be true or false, got ${JSON.stringify(value)}`)
    case 'list':
      if (Array.isArray(value) && value.every((x) => typeof x === 'string')) return value
      if (typeof value === 'string') {
        const list = value.split(',').map((s) => s.trim()).filter((s) => s.length > 0)
        if (list.length === 0 && spec.nonEmpty === true) throw new ConfigError(`${spec.name} (${from}) is empty: give a value, or leave it out`)
        return list
      }
      throw new ConfigError(`${spec.name} (${from}) must be a list of strings`)
    case 'enum':
      if (typeof value === 'string' && spec.values!.includes(value)) return value
      throw new ConfigError(`${spec.name} (${from}) must be one of ${spec.values!.join(', ')}, got ${JSON.stringify(value)}`)
    default:
      if (typeof value !== 'string') throw new ConfigError(`${spec.name} (${from}) must be a string`)
      return value
  }
}

/**
 * Resolve options: defaults < config file < environment < explicit (flags / plugin options).
 * Unknown keys are an error, so a typo never silently falls back to a default.
 */
/** `explicitFrom`: what errors in `explicit` name as its source (the command line's flags, the plugin's options). */
export function resolveOptions (explicit: Partial<Record<string, unknown>> = {}, opts: { file?: string, env?: NodeJS.ProcessEnv, embedded?: boolean, explicitFrom?: string } = {}): ParklineOptions {
  const out: Record<string, unknown> = {}
  const byName = new Map(OPTIONS.map((o) => [o.name as string, o]))
  for (const o of OPTIONS) {
    const d = opts.embedded === true && 'embedded' in o ? o.embedded : o.default
    out[o.name] = Array.isArray(d) ? [...d] : d
  }
  const layers: Array<[string, Record<string, unknown>]> = []
  if (opts.file !== undefined) {
    let parsed: unknown
    try {
      parsed = JSON.parse(readFileSync(opts.file, 'utf8'))
    } catch (err) {
      // without the text around the fault that V8 quotes: a config file holds secrets
      const why = err instanceof SyntaxError ? err.message.replace(/, (?:\.\.\.)?".*"(?:\.\.\.)? is not valid JSON$/s, ' (not valid JSON)') : (err as Error).message
      throw new ConfigError(`cannot read config file ${opts.file}: ${why}`)
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new ConfigError(`config file ${opts.file} must hold a JSON object`)
    const obj: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(parsed)) if (!k.startsWith('$') && !k.startsWith('//')) obj[k] = v
    layers.push([opts.file, obj])
  }
  if (opts.env !== undefined) {
    const env: Record<string, unknown> = {}
    for (const o of OPTIONS) {
      const v = opts.env[envName(o.name)]
      if (v !== undefined && v !== '') env[o.name] = v
    }
    layers.push(['environment', env])
    checkEnvNames(opts.env)
  }
  layers.push([opts.explicitFrom ?? 'options', explicit])
  for (const [from, layer] of layers) {
    for (const [k, v] of Object.entries(layer)) {
      if (v === undefined) continue
      const spec = byName.get(k)
      if (spec === undefined) throw new ConfigError(`unknown option "${k}" (${from})`)
      out[k] = coerce(spec, v, from)
    }
  }
  const o = out as unknown as ParklineOptions
  if (!o.pubPrefix.startsWith('/') || !o.pubPrefix.endsWith('/')) throw new ConfigError('pubPrefix must start and end with "/"')
  if (!o.subPrefix.startsWith('/') || !o.subPrefix.endsWith('/')) throw new ConfigError('subPrefix must start and end with "/"')
  if (o.pubPrefix === o.subPrefix) throw new ConfigError('pubPrefix and subPrefix must differ')
  if (o.retryMax < o.retryMin) throw new ConfigError('retryMax must be >= retryMin')
  // four dotted numbers that are no IPv4 address (999.1.1.1) can never be: refused here (exit 2),
  // not failed at listen (exit 1, which a supervisor retries for ever). Shorter numeric forms
  // (0, 127.1) are the resolver's to read, as they always were
  if (/^\d+\.\d+\.\d+\.\d+$/.test(o.host) && isIP(o.host) === 0) throw new ConfigError(`host: "${o.host}" is not an IPv4 address (four numbers of 0 to 255)`)
  if (o.host.includes(':') && isIP(o.host) === 0) throw new ConfigError(`host: "${o.host}" is not an IPv6 address`)
  for (const name of o.transports) {
    if (!(TRANSPORT_NAMES as readonly string[]).includes(name)) throw new ConfigError(`transports: unknown transport "${name}" (known: ${TRANSPORT_NAMES.join(', ')})`)
  }
  for (const name of ['healthPath', 'statusPath', 'metricsPath', 'revokePath'] as const) {
    if (o[name] !== '' && !o[name].startsWith('/')) throw new ConfigError(`${name} must start with "/" (or be "" to turn it off)`)
  }
  // a path is matched as written: the router would read `*`, `:` and `(` as its own syntax, and
  // a client never sends a space, `?` or `#` inside one
  for (const name of ['pubPrefix', 'subPrefix', 'healthPath', 'statusPath', 'metricsPath', 'revokePath'] as const) {
    if (/[*:()?#\s%]/.test(o[name])) throw new ConfigError(`${name} "${o[name]}" holds a character a path here cannot: * : ( ) ? # % or a space`)
  }
  checkPaths(o)
  for (const origin of o.corsOrigins) {
    if (origin === '*') throw new ConfigError('corsOrigins: "*" is not an origin; leave corsOrigins empty to allow every origin')
    if (origin.includes('*')) throw new ConfigError(`corsOrigins: "${origin}" is not an origin: wildcards are not read, list each origin`)
    if (origin === 'null') continue // the Origin of a sandboxed frame or a file: page, listed on purpose
    let serialized: string | null = null
    try { serialized = new URL(origin).origin } catch {}
    // an app's own scheme (capacitor://localhost, chrome-extension://<id>) has no URL origin: its
    // Origin header is scheme://host as written, in lower case
    if (serialized === 'null' && /^[a-z][a-z0-9+.-]*:\/\/[a-z0-9.-]+(:\d+)?$/.test(origin)) continue
    if (serialized !== origin) throw new ConfigError(`corsOrigins: "${origin}" is not an origin (scheme://host[:port], in lower case, no path, no trailing /)${serialized !== null && serialized !== 'null' ? `: did you mean "${serialized}"?` : ''}`)
  }
  for (const p of o.trustedProxies) {
    if (isIP(p) === 0) throw new ConfigError(`trustedProxies: "${p}" is not an IP address (one address per entry: ranges and host names are not read)`)
  }
  // as Node writes a peer's address (2001:DB8::1 -> 2001:db8::1, ::ffff:10.0.0.2 -> 10.0.0.2)
  o.trustedProxies = o.trustedProxies.map(canonicalIp)
  // ids are split as bytes (lib/http.ts parseChannelIds): a character past ASCII would be one
  // byte of many characters' UTF-8, or none at all
  if (o.multiplexDelimiter.length > 1 || !/^[!-~]?$/.test(o.multiplexDelimiter)) throw new ConfigError(`multiplexDelimiter must be one printable ASCII character or empty, got ${JSON.stringify(o.multiplexDelimiter)}`)
  const stores = [o.redisUrl !== '' && 'redisUrl', o.redisCluster.length > 0 && 'redisCluster', o.redisSentinel.length > 0 && 'redisSentinel'].filter((x) => x !== false)
  if (stores.length > 1) throw new ConfigError(`set only one of redisUrl, redisCluster, redisSentinel (got ${stores.join(' and ')})`)
  if (stores.length > 0 && o.revocationsFile !== '') throw new ConfigError(`revocationsFile has no effect with ${stores[0]}: the revocations are kept in Redis`)
  for (const s of o.redisSentinel) {
    const m = /^(?:rediss?:\/\/)?[^:/@\s]+:(\d+)$/.exec(s)
    // (credentials go in redisUsername/redisPassword; one written here is not shown, nor what
    // follows a scheme: a password with a comma in it is split into two entries)
    if (m === null) throw new ConfigError(`redisSentinel: "${/^[a-z]+:\/\//i.test(s) ? s.replace(/^([a-z]+:\/\/).*/i, '$1…') : s.replace(/^.*@/, '…@')}" is not host:port (or rediss://host:port for TLS)`)
    if (Number(m[1]) < 1 || Number(m[1]) > 65535) throw new ConfigError(`redisSentinel: "${s}": the port is not 1-65535`)
  }
  // TLS (rediss://) reaches the sentinels and the master and replicas they name; one way for all
  if (new Set(o.redisSentinel.map((s) => s.startsWith('rediss:'))).size > 1) throw new ConfigError('redisSentinel: the entries mix rediss:// and plain host:port; the sentinels and the nodes they name are all reached with TLS (rediss://) or all without')
  if (o.redisUrl !== '' && !/^rediss?:\/\//.test(o.redisUrl)) throw new ConfigError(`redisUrl: "${masked(o.redisUrl)}" is not a redis:// or rediss:// URL`)
  if (o.redisUrl !== '') checkRedisUrl('redisUrl', o.redisUrl)
  for (const u of o.redisCluster) {
    if (!/^rediss?:\/\//.test(u)) throw new ConfigError(`redisCluster: "${masked(u)}" is not a redis:// URL`)
    checkRedisUrl('redisCluster', u)
  }
  // every node of a cluster is reached the same way: TLS (rediss://) or not
  if (new Set(o.redisCluster.map((u) => u.startsWith('rediss:'))).size > 1) throw new ConfigError('redisCluster: the seeds mix redis:// and rediss://; every node of a cluster is reached the same way')
  redisCredentials(o) // throws on credentials given twice, seeds that differ, a user without a password
  return o
}

/**
 * Every path is one thing's: a request under subPrefix is a subscription and one under pubPrefix
 * a publisher's (the fast paths take them before any route), so neither prefix may hold the other,
 * and no operator path (health, status, metrics, revoke, the demo page) may lie under either or
 * equal another.
 */
function checkPaths (o: ParklineOptions): void {
  const [pub, sub] = [o.pubPrefix, o.subPrefix]
  if (sub.startsWith(pub) || pub.startsWith(sub)) throw new ConfigError(`pubPrefix "${pub}" and subPrefix "${sub}" overlap: one lies under the other, so its requests would be taken for the other's`)
  const named: Array<[string, string]> = (['healthPath', 'statusPath', 'metricsPath', 'revokePath'] as const).filter((n) => o[n] !== '').map((n) => [n, o[n]])
  if (o.demo) named.push(['demo', '/demo/'])
  const seen = new Map<string, string>()
  for (const [name, path] of named) {
    for (const [prefix, which] of [[pub, 'pubPrefix'], [sub, 'subPrefix']] as const) {
      if (path.startsWith(prefix)) throw new ConfigError(`${name} "${path}" lies under ${which} "${prefix}": it would be taken for a ${which === 'pubPrefix' ? 'publisher\'s request' : 'subscription'}`)
    }
    const other = seen.get(path)
    if (other !== undefined) throw new ConfigError(`${name} and ${other} are both "${path}"`)
    seen.set(path, name)
  }
}

/** `url` with any user:password@ masked: what an error message may show. */
function masked (url: string): string {
  // to the last @: a password may hold / ? # (base64), and a URL that does not parse is shown too
  return url.replace(/\/\/.*@/, '//…@')
}

/**
 * A redis:// or rediss:// URL node-redis can use: a host, an optional port, a database number as
 * its path, and a user and password that decode. Refused here (exit 2) rather than where the store
 * is built, after the start has begun; the message never shows the password.
 */
function checkRedisUrl (name: string, url: string): void {
  let u: URL
  try { u = new URL(url) } catch { throw new ConfigError(`${name}: "${masked(url)}" is not a URL`) }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new ConfigError(`${name}: "${masked(url)}" is not a redis:// or rediss:// URL`)
  if (u.hostname === '') throw new ConfigError(`${name}: "${masked(url)}" names no host`)
  if (u.port === '0') throw new ConfigError(`${name}: "${masked(url)}": port 0 is no port to connect to`)
  if (u.pathname !== '' && u.pathname !== '/' && !/^\/\d+$/.test(u.pathname)) throw new ConfigError(`${name}: "${masked(url)}": its path must be a database number (/0), got "${u.pathname}"`)
  try {
    decodeURIComponent(u.username)
    decodeURIComponent(u.password)
  } catch {
    throw new ConfigError(`${name}: the user or password in "${masked(url)}" holds a % that is no escape (write %25 for %)`)
  }
}

/** The user and password a redis:// URL carries (decoded; '' where absent), or null where it carries neither. */
export function urlCredentials (url: string): { username: string, password: string } | null {
  let u: URL
  try { u = new URL(url) } catch { return null }
  if (u.username === '' && u.password === '') return null
  return { username: decodeURIComponent(u.username), password: decodeURIComponent(u.password) }
}

/** `url` without its user:password@ (node-redis is then given them as options). */
export function withoutCredentials (url: string): string {
  const u = new URL(url)
  u.username = ''
  u.password = ''
  return u.toString()
}

/**
 * The Redis user and password every node is logged in to with: from the URL (redisUrl, or the
 * redisCluster seeds, which must agree) or from redisUsername/redisPassword, each part from one
 * place only: a user in the URL with the password from PARKLINE_REDIS_PASSWORD is fine, a password
 * in both is refused. A user without a password is refused: node-redis would log in as `default`.
 */
export function redisCredentials (o: Pick<ParklineOptions, 'redisUrl' | 'redisCluster' | 'redisUsername' | 'redisPassword'>): { username?: string, password?: string } {
  const inUrls = [o.redisUrl, ...o.redisCluster].filter((u) => u !== '').map(urlCredentials).filter((c) => c !== null)
  if (new Set(inUrls.map((c) => JSON.stringify(c))).size > 1) throw new ConfigError('redisCluster: the seeds carry different credentials; every node is logged in to as one user')
  const url = inUrls[0] ?? { username: '', password: '' }
  if (url.username !== '' && o.redisUsername !== '') throw new ConfigError('the Redis user is set twice: in the URL (user@) and in redisUsername; keep one')
  if (url.password !== '' && o.redisPassword !== '') throw new ConfigError('the Redis password is set twice: in the URL (:password@) and in redisPassword; keep one')
  const username = url.username !== '' ? url.username : o.redisUsername
  const password = url.password !== '' ? url.password : o.redisPassword
  if (username !== '' && password === '') throw new ConfigError(`the Redis user ${JSON.stringify(username)} has no password (redisPassword, or user:password@ in the URL): node-redis would log in as default`)
  const out: { username?: string, password?: string } = {}
  if (username !== '') out.username = username
  if (password !== '') out.password = password
  return out
}

/** `parkline <command> [--config FILE] [--<option> VALUE]…` (bin/parkline.ts). */
export function parseCliArgs (argv: string[]): { command: string, config: string | undefined, flags: Record<string, string> } {
  const byFlag = new Map(OPTIONS.map((o) => [flagName(o.name), o.name as string]))
  byFlag.set('--redis', 'redisUrl')
  let command: string | undefined
  let config: string | undefined
  const flags: Record<string, string> = {}
  /** The boolean flag standing alone just before (a word after it is no command but a value it cannot take). */
  let bareBefore: string | null = null
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (!a.startsWith('--')) {
      if (bareBefore !== null && !COMMANDS.includes(a)) throw new ParklineError('PKL_ERR_CONFIG', `${bareBefore} takes true, false, 1 or 0, not ${JSON.stringify(a)}`, 2)
      // help wins wherever it is (as --help), and a command said twice is one (`npm start` says
      // serve, `npm start -- serve --port 9000` says it again)
      if (a === 'help') command = 'help'
      else if (command !== undefined && command !== 'help' && a !== command) throw new ParklineError('PKL_ERR_CONFIG', `unexpected argument ${JSON.stringify(a)} (the command is ${JSON.stringify(command)})`, 2)
      command ??= a
      bareBefore = null
      continue
    }
    bareBefore = null
    const eq = a.indexOf('=')
    const name = eq === -1 ? a : a.slice(0, eq)
    // a boolean flag may stand alone (`--demo`): true unless an explicit true/false/1/0 follows
    const bare = eq === -1 && OPTIONS.some((o) => o.kind === 'bool' && flagName(o.name) === name) && !/^(true|false|1|0)$/i.test(argv[i + 1] ?? '')
    if (bare) bareBefore = name
    // (the next flag is no value: `--buffer-length --host x` misses one; a value that looks like
    // a flag is written `--name=value`)
    const next = argv[i + 1]
    const value = eq === -1 ? (bare ? 'true' : (next !== undefined && isFlag(next, byFlag) ? undefined : argv[++i])) : a.slice(eq + 1)
    if (name === '--help') { command = 'help'; continue }
    const key = byFlag.get(name)
    if (key === undefined && name !== '--config') throw new ParklineError('PKL_ERR_CONFIG', `unknown flag ${name}`, 2)
    if (value === undefined) throw new ParklineError('PKL_ERR_CONFIG', `${name} needs a value`, 2)
    if (key === undefined) { config = value; continue }
    flags[key] = value
  }
  return { command: command ?? 'serve', config, flags }
}

/** The words parseCliArgs takes for a command (doctor and token are read before it: lib/cli.ts). */
const COMMANDS = ['serve', 'worker', 'help']

/** `arg` is one of parkline's flags (as written, or `--flag=value`). */
function isFlag (arg: string, byFlag: Map<string, string>): boolean {
  const eq = arg.indexOf('=')
  const name = eq === -1 ? arg : arg.slice(0, eq)
  return byFlag.has(name) || name === '--config' || name === '--help'
}
