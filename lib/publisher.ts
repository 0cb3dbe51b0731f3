// The publisher location (PROTOCOL.md §3): POST/PUT publish, GET info, DELETE, OPTIONS, 405.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { infoFormat, renderInfo, type ChannelInfo } from './channel-info.ts'
import type { Socket } from 'node:net'
import { asPost, isRefusal, sendRefusal, type Access, type Grant, type PublishRequestLike, type Refusal } from './access.ts'
import type { UpstreamPublishResult } from './auth.ts'
import { droppedBehindSubscriber } from './pipelined.ts'
import { kBodyWaitSince, kContinueOwed, kRawContentType } from './symbols.ts'
import { Core } from './core.ts'
import type { PublishResult } from './engine.ts'
import { ERRORS, ParklineError } from './errors.ts'
import { PUB_ALLOW, PUB_ALLOW_HEADERS, originAllowed, randomBetween, requestOrigin } from './http.ts'
import { fingerprint, scopedIdempotencyKey, validIdempotencyKey } from './idempotency.ts'
import { percentDecode } from './message-id.ts'
import { HeadersReply, closeIfBodyUnread, sendError, withCors, type Reply } from './reply.ts'
import { wantsWebSocket } from '../transports/websocket.ts'
import { servePublisherSocket } from '../transports/websocket-publisher.ts'


const TOO_LARGE = Symbol('too large')
const ABORTED = Symbol('aborted')
const TIMED_OUT = Symbol('timed out')
const EMPTY = Buffer.alloc(0)
/** A body is held to bodyMinRate only after this long (a slow start is not a slowloris). */
const MIN_RATE_GRACE_MS = 5000

/**
 * Read a request body up to `limit` bytes within `timeoutMs`; stops at once when the limit is
 * passed or the time is up (a stalled or trickling publisher holds memory and an fd otherwise).
 */
function readBody (req: IncomingMessage, limit: number, timeoutMs = 0, minRate = 0): Promise<Buffer | typeof TOO_LARGE | typeof ABORTED | typeof TIMED_OUT> | Buffer {
  // a body that waited on the raw path first is timed from when it began to wait there
  const socket = req.socket as (IncomingMessage['socket'] & { [kBodyWaitSince]?: number }) | null
  const since = socket?.[kBodyWaitSince]
  if (since !== undefined) socket![kBodyWaitSince] = undefined
  // The usual publish: the whole body came with the head, Node's parser has it buffered already.
  // Taken as it is: no listeners, no timer, no promise.
  if (req.complete && req.readableLength <= limit && !req.readableFlowing) {
    const body = req.read() as Buffer | null
    return body ?? EMPTY
  }
  // the client waits for this before it sends the body: only now, admitted (lib/plugin.ts)
  const owed = (req as { [kContinueOwed]?: ServerResponse })[kContinueOwed]
  if (owed !== undefined) {
    (req as { [kContinueOwed]?: ServerResponse })[kContinueOwed] = undefined
    if (!owed.headersSent && !owed.writableEnded) owed.writeContinue()
  }
  const started = since ?? Date.now()
  if (timeoutMs > 0 && Date.now() - started >= timeoutMs) {
    req.pause()
    return Promise.resolve(TIMED_OUT)
  }
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let size = 0
    // once a second: past the deadline, or (after a grace of MIN_RATE_GRACE_MS) slower than
    // minRate bytes/s on average, the body has taken too long
    const timer = timeoutMs > 0
      ? setInterval(() => {
        const elapsed = Date.now() - started
        if (elapsed < timeoutMs && (minRate === 0 || elapsed < MIN_RATE_GRACE_MS || size * 1000 >= minRate * elapsed)) return
        cleanup()
        req.pause()
        resolve(TIMED_OUT)
      }, Math.min(1000, timeoutMs))
      : null
    const onData = (chunk: Buffer): void => {
      size += chunk.length
      if (size > limit) {
        cleanup()
        req.pause()
        resolve(TOO_LARGE)
        return
      }
      chunks.push(chunk)
    }
    const onEnd = (): void => { cleanup(); resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)) }
    const onAbort = (): void => { cleanup(); resolve(ABORTED) }
    const cleanup = (): void => {
      if (timer !== null) clearInterval(timer)
      req.removeListener('data', onData)
      req.removeListener('end', onEnd)
      req.removeListener('error', onAbort)
      req.removeListener('aborted', onAbort)
    }
    req.on('data', onData)
    req.on('end', onEnd)
    req.on('error', onAbort)
    req.on('aborted', onAbort)
  })
}

function sendInfo (request: PublishRequestLike, reply: Reply, status: number, info: ChannelInfo, origin: string | null): Reply {
  const { contentType, body } = renderInfo(info, infoFormat(request.headers.accept))
  // ASCII. Our own replies write a string as it is (the raw connections' in one latin1 write, no
  // Buffer); Fastify's would add `; charset=utf-8` to the type, so it gets the bytes
  return withCors(reply, origin).code(status).header('Content-Type', contentType).send(reply instanceof HeadersReply ? body : Buffer.from(body))
}

export async function handlePublisher (core: Core, access: Access, request: PublishRequestLike, reply: Reply, rawId: string, origin: string | null): Promise<Reply | undefined> {
  const socket = request.socket as PipelinedSocket
  // A request pipelined behind a subscriber's (a parked long-poll, a stream, one still being
  // admitted) is not applied at all, and not answered (lib/pipelined.ts)
  const res = (reply as { raw?: ServerResponse }).raw ?? null
  if (droppedBehindSubscriber(socket, res)) {
    reply.hijack()
    return undefined
  }
  // Requests pipelined on one connection are applied in the order they were sent (as nginx does):
  // one waits for the one before it, even when that one is still reading its body.
  const before = socket[kPublishing]
  let done!: () => void
  const mine = new Promise<void>((resolve) => { done = resolve })
  socket[kPublishing] = mine
  if (before !== undefined) await before
  try {
    // the one before closes the connection (`Connection: close`, a refusal before its body was
    // read): Node's parser read this one already, but its answer could never be written, so it is
    // not applied either (a client would retry a publish it never heard of)
    if (closingBefore(socket, res)) {
      reply.hijack()
      return undefined
    }
    return await publisherRequest(core, access, request, reply, rawId, origin)
  } finally {
    done()
    if (socket[kPublishing] === mine) socket[kPublishing] = undefined
  }
}

const kPublishing = Symbol('parkline.publishing')
type PipelinedSocket = Socket & { [kPublishing]?: Promise<void>, _httpMessage?: (ServerResponse & { _last?: boolean }) | null }

/**
 * Does an answer before `res` on `socket` end the connection? Node's own: ended after it (its
 * `_last`, set by `Connection: close`), or ended already.
 */
function closingBefore (socket: PipelinedSocket, res: ServerResponse | null): boolean {
  if (res === null) return false
  const current = socket._httpMessage
  // the connection is the first answer's: this is the first request, whatever its client does next
  if (current === res) return false
  // an answer before this one that ends the connection: under way, or done and the socket ended
  // (`=== true`: light-my-request's socket, app.inject's, has neither)
  return current != null ? current._last === true : socket.destroyed === true || socket.writableEnded === true
}

/**
 * One publisher request, applied and answered. Through handlePublisher on Node's requests; called
 * directly by lib/raw-publish.ts, whose connection takes one request at a time (busy until this
 * one is answered, and bytes behind a parked or admitting poll are refused there), so the order
 * handlePublisher keeps is kept already.
 *
 * Answered at once, without a promise, when nothing on the way waits (no access-control or
 * upstream request, a body already read, the memory engine): the usual publish. A step that
 * waits continues from there in a promise; an error is thrown or rejected accordingly.
 */
export function publisherRequest (core: Core, access: Access, request: PublishRequestLike, reply: Reply, rawId: string, origin: string | null): Reply | Promise<Reply> {
  const method = request.method
  if (method === 'OPTIONS') {
    closeIfBodyUnread(reply.code(200).header('Allow', PUB_ALLOW).header('Content-Length', '0'), request)
    if (origin !== null) {
      withCors(reply, origin)
        .header('Access-Control-Allow-Methods', PUB_ALLOW)
        .header('Access-Control-Allow-Headers', PUB_ALLOW_HEADERS)
    }
    return reply.send()
  }
  if (method !== 'GET' && method !== 'POST' && method !== 'PUT' && method !== 'DELETE') {
    return sendError(closeIfBodyUnread(reply.header('Allow', PUB_ALLOW), request), ERRORS.METHOD_NOT_ALLOWED, origin)
  }
  // On the publisher `,` is an ordinary byte: one channel (§1).
  const key = percentDecode(rawId)
  if (key.indexOf('\0') !== -1) return sendError(closeIfBodyUnread(reply, request), ERRORS.BAD_CHANNEL_ID, origin)
  if (key.length === 0) return sendError(closeIfBodyUnread(reply, request), ERRORS.NO_CHANNEL_ID, origin)
  if (key.length > core.opts.maxChannelIdLength) return sendError(closeIfBodyUnread(reply, request), ERRORS.CHANNEL_ID_TOO_LONG, origin)
  // access control (the secure default included) before the body is read or anything changes;
  // a refused body stays unread, so the connection closes with the answer. A WebSocket handshake
  // that would publish is asked about as a POST (an authorize request sees that method), not as
  // the GET of channel info it is on the wire
  const ws = method === 'GET' && core.opts.websocketPublish && wantsWebSocket(request.headers)
  const pending = access.publisher(ws ? asPost(request) : request, key)
  if (pending instanceof Promise) return pending.then((grant) => granted(core, access, request, reply, key, origin, grant))
  return granted(core, access, request, reply, key, origin, pending)
}

function granted (core: Core, access: Access, request: PublishRequestLike, reply: Reply, key: string, origin: string | null, grant: Grant | Refusal | null): Reply | Promise<Reply> {
  const method = request.method
  if (isRefusal(grant)) {
    if (method === 'POST' || method === 'PUT') reply.header('Connection', 'close')
    return sendRefusal(closeIfBodyUnread(reply, request), grant, origin)
  }
  // a WebSocket handshake: a publisher connection of its own (transports/websocket-publisher.ts)
  if (method === 'GET' && core.opts.websocketPublish && wantsWebSocket(request.headers)) {
    const res = (reply as { raw?: ServerResponse }).raw
    if (request.raw !== null && res !== undefined) {
      reply.hijack()
      servePublisherSocket(core, access, request, request.raw, res, key, origin, grant)
      return reply
    }
  }
  // (a body sent with either is never read)
  if (method === 'GET' || method === 'DELETE') return infoOrDelete(core, request, closeIfBodyUnread(reply, request), key, origin)

  // POST / PUT
  const idem = request.headers['idempotency-key']
  const sent = typeof idem === 'string' && core.opts.idempotencyWindow > 0 ? idem : null
  if (sent !== null && !validIdempotencyKey(sent)) return sendError(closeIfBodyUnread(reply, request), ERRORS.BAD_IDEMPOTENCY_KEY, origin)
  // each token user's keys apart from everyone else's
  const idempotencyKey = sent === null ? null : scopedIdempotencyKey(sent, grant?.kind === 'jwt' ? grant.sub : null)
  const limit = core.opts.maxMessageSize
  const declared = request.headers['content-length']
  if (declared !== undefined && Number(declared) > limit) return tooLarge(reply, origin)
  // with workers a channel owned by another worker is checked there (no record is made here)
  if (core.overChannelCap([key]) && core.engine.recordsElsewhere?.(key) !== true) {
    return sendError(reply.header('Retry-After', String(randomBetween(1, 10))).header('Connection', 'close'), ERRORS.OVER_CAPACITY, origin)
  }
  // bounded: bodies being read at once per process (each at most maxMessageSize)
  if (core.publishing >= core.opts.maxPublishing) {
    return sendError(reply.header('Retry-After', String(randomBetween(1, 5))).header('Connection', 'close'), ERRORS.OVER_CAPACITY, origin)
  }
  if (request.wholeBody !== undefined) return bodyRead(core, access, request, reply, key, origin, idempotencyKey, request.wholeBody)
  core.publishing++
  let body
  try {
    body = readBody(request.raw!, limit, core.opts.bodyTimeout * 1000, core.opts.bodyMinRate)
  } catch (err) {
    core.publishing--
    throw err
  }
  if (!(body instanceof Promise)) {
    core.publishing--
    return bodyRead(core, access, request, reply, key, origin, idempotencyKey, body)
  }
  return body.then((b) => {
    core.publishing--
    return bodyRead(core, access, request, reply, key, origin, idempotencyKey, b)
  }, (err: unknown) => {
    core.publishing--
    throw err
  })
}

async function infoOrDelete (core: Core, request: PublishRequestLike, reply: Reply, key: string, origin: string | null): Promise<Reply> {
  let info: ChannelInfo | null
  try {
    info = request.method === 'GET' ? await core.engine.info(key) : await core.engine.delete(key)
  } catch (err) {
    return storeUnavailable(reply, err, origin)
  }
  if (info === null) return withCors(reply.code(404), origin).send()
  return sendInfo(request, reply, 200, info, origin)
}

function bodyRead (core: Core, access: Access, request: PublishRequestLike, reply: Reply, key: string, origin: string | null, idempotencyKey: string | null, body: Buffer | typeof TOO_LARGE | typeof ABORTED | typeof TIMED_OUT): Reply | Promise<Reply> {
  if (body === TOO_LARGE) return tooLarge(reply, origin)
  if (body === ABORTED) return sendError(reply.header('Connection', 'close'), ERRORS.BODY_ABORTED, origin)
  if (body === TIMED_OUT) return sendError(reply.header('Connection', 'close'), ERRORS.REQUEST_TIMEOUT, origin)
  if (!access.hasUpstream) {
    const out = upstreamDone(core, request, reply, key, origin, idempotencyKey, body, null)
    if (!(out instanceof Promise)) return out
    // a body waiting on the channel's owner (another worker) or on Redis is held as one being
    // read is: it counts in maxPublishing until answered
    core.publishing++
    return out.finally(() => { core.publishing-- })
  }
  // a body waiting on the upstream is held as one being read is: it counts in maxPublishing
  core.publishing++
  return withUpstream(core, access, request, reply, key, origin, idempotencyKey, body).finally(() => { core.publishing-- })
}

/** The publish's Content-Type, verbatim, even a value that is no media type (lib/plugin.ts keeps it aside for Fastify). */
function requestContentType (request: PublishRequestLike): string | null {
  return (request.raw as { [kRawContentType]?: string } | null)?.[kRawContentType] ?? request.headers['content-type'] ?? null
}

function requestEvent (request: PublishRequestLike): string | null {
  const ev = request.headers['x-eventsource-event']
  return typeof ev === 'string' && ev.length > 0 ? ev : null
}

/**
 * Nchan's publisher upstream request: the application may rewrite, drop or refuse the message. A
 * retry (an Idempotency-Key the channel saw inside the window) is answered as the original was,
 * without asking the upstream again: it could answer otherwise now (a time it stamps, a refusal).
 */
async function withUpstream (core: Core, access: Access, request: PublishRequestLike, reply: Reply, key: string, origin: string | null, idempotencyKey: string | null, body: Buffer): Promise<Reply> {
  let requestFp: string | undefined
  if (idempotencyKey !== null) {
    requestFp = fingerprint(body, requestContentType(request), requestEvent(request))
    let seen: PublishResult | null
    try {
      seen = await core.engine.replay(key, idempotencyKey, requestFp)
    } catch (err) {
      return storeUnavailable(reply, err, origin)
    }
    if (seen !== null) return publishedInfo(request, reply, seen, origin)
  }
  const up = await access.upstream(request, key, body)
  return await upstreamDone(core, request, reply, key, origin, idempotencyKey, body, up, requestFp)
}

function upstreamDone (core: Core, request: PublishRequestLike, reply: Reply, key: string, origin: string | null, idempotencyKey: string | null, body: Buffer, up: UpstreamPublishResult | null, requestFp?: string): Reply | Promise<Reply> {
  const requestCt = requestContentType(request)
  let ct = requestCt
  const event = requestEvent(request)
  let message = body
  if (up !== null) {
    if (up.action === 'drop') return withCors(reply.code(204), origin).send()
    if (up.action === 'reply') {
      if (up.retryAfter !== null) reply.header('Retry-After', String(up.retryAfter))
      if (up.contentType !== null) reply.header('Content-Type', up.contentType)
      return withCors(reply.code(up.status), origin).send(up.body)
    }
    message = up.body
    if (up.contentType !== null) ct = up.contentType
  }
  let published
  try {
    // a retry is the same request, whatever the upstream makes of it (a time or an id it stamps):
    // its Idempotency-Key is matched against the message as the publisher sent it
    const fp = idempotencyKey !== null && up !== null ? requestFp ?? fingerprint(body, requestCt, event) : undefined
    published = core.engine.publish(key, message, ct, event, idempotencyKey, fp)
  } catch (err) {
    return storeUnavailable(reply, err, origin)
  }
  if (published instanceof Promise) {
    return published.then((result) => publishedInfo(request, reply, result, origin), (err: unknown) => storeUnavailable(reply, err, origin))
  }
  return publishedInfo(request, reply, published, origin)
}

function publishedInfo (request: PublishRequestLike, reply: Reply, result: PublishResult, origin: string | null): Reply {
  if (result.conflict === true) return sendError(reply, ERRORS.IDEMPOTENCY_KEY_REUSED, origin)
  // a retry inside the window: nothing was published, the answer names the original message
  if (result.replayed === true) reply.header('Idempotent-Replayed', 'true')
  return sendInfo(request, reply, result.status, result.info, origin)
}

/**
 * The shared store (Redis) or the channel's owner worker is away, or the owner has as many
 * publishes waiting on it as it may (over capacity): 503 with a short Retry-After; any other
 * error is rethrown.
 */
function storeUnavailable<R extends Reply> (reply: R, err: unknown, origin: string | null): R {
  if (!(err instanceof ParklineError)) throw err
  const spec = err.code === ERRORS.STORE_UNAVAILABLE.code ? ERRORS.STORE_UNAVAILABLE : err.code === ERRORS.OVER_CAPACITY.code ? ERRORS.OVER_CAPACITY : null
  if (spec === null) throw err
  reply.header('Retry-After', String(randomBetween(1, 5)))
  return sendError(reply, spec, origin)
}

function tooLarge<R extends Reply> (reply: R, origin: string | null): R {
  reply.header('Connection', 'close')
  return sendError(reply, ERRORS.PAYLOAD_TOO_LARGE, origin)
}

/** Largest revoke request body: `{"sub": "…"}` or `{"jti": "…", "exp": …}`. */
const REVOKE_BODY_LIMIT = 4096

/**
 * POST revokePath (Parkline extension): `{"sub": "…"}` or `{"jti": "…"}` (with the token's `exp`
 * if known) ends every live subscriber admitted with that user or token on every worker and node
 * (401, reason `revoked`), and refuses that jti until its exp (for good if not given) and that
 * user's tokens issued before now (for good). Needs apiKey or an admin token in `Authorization` (never a cookie). Answers how many ended.
 */
export async function handleRevoke (core: Core, access: Access, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  const origin = requestOrigin(request.headers)
  // a page of a site corsOrigins does not list learns nothing and changes nothing (§10)
  if (!originAllowed(origin, core.opts.corsOrigins)) return sendError(closeIfBodyUnread(reply, request), ERRORS.ORIGIN_NOT_ALLOWED, null)
  if (request.method === 'OPTIONS') {
    reply.code(200).header('Allow', 'POST, OPTIONS').header('Content-Length', '0')
    if (origin !== null) withCors(reply, origin).header('Access-Control-Allow-Methods', 'POST, OPTIONS').header('Access-Control-Allow-Headers', 'Authorization, Content-Type')
    return reply.send()
  }
  const grant = await access.admin(request)
  if (isRefusal(grant)) return sendRefusal(reply.header('Connection', 'close'), grant, origin)
  const body = await readBody(request.raw, REVOKE_BODY_LIMIT, core.opts.bodyTimeout * 1000)
  if (body === TOO_LARGE) return tooLarge(reply, origin)
  if (body === TIMED_OUT) return sendError(reply.header('Connection', 'close'), ERRORS.REQUEST_TIMEOUT, origin)
  if (body === ABORTED) return sendError(reply.header('Connection', 'close'), ERRORS.BODY_ABORTED, origin)
  let what: { sub?: unknown, jti?: unknown, exp?: unknown }
  try {
    what = JSON.parse(body.toString('utf8')) as typeof what
  } catch {
    what = {}
  }
  const sub = typeof what?.sub === 'string' && what.sub.length > 0 ? what.sub : null
  const jti = typeof what?.jti === 'string' && what.jti.length > 0 ? what.jti : null
  // (an exp is a unix second: one past 2^53, or not finite, is no second a token can carry)
  if ((sub === null) === (jti === null) || (what.exp !== undefined && (typeof what.exp !== 'number' || !Number.isSafeInteger(Math.floor(what.exp))))) {
    return sendError(reply, ERRORS.BAD_REVOKE, origin)
  }
  const now = Math.floor(Date.now() / 1000)
  // a jti is held until its token's exp (and jwtLeeway past it: lib/auth.ts Revocations); one whose
  // exp is not given, for good (0): a guess would make a token that outlives it good again. An exp
  // already past is held as given (1 at least: not 0), so it lapses at once, not for good
  const until = typeof what.exp === 'number' ? Math.max(1, Math.floor(what.exp)) : 0
  // past maxRevocations a new one is refused, never made by un-revoking an older one
  if (core.revocations !== null && !core.revocations.room(sub !== null ? 'sub' : 'jti', sub ?? jti!, now)) {
    request.log.error({ revoked: sub !== null ? { sub } : { jti }, held: core.revocations.size, maxRevocations: core.revocations.max }, 'revocation refused: the revocation list is full (maxRevocations)')
    return sendError(reply, ERRORS.REVOCATIONS_FULL, origin)
  }
  let ended: { ended: number, complete: boolean }
  try {
    ended = sub !== null ? await core.engine.revoke('sub', sub, now, until) : await core.engine.revoke('jti', jti!, now, until)
  } catch (err) {
    if (err instanceof ParklineError && err.code === ERRORS.REVOCATION_NOT_SAVED.code) {
      request.log.error({ revoked: sub !== null ? { sub } : { jti }, error: err.message }, 'revocation in force but not saved: revocationsFile could not be written, so a restart would forget it')
      return sendError(reply, ERRORS.REVOCATION_NOT_SAVED, origin)
    }
    return storeUnavailable(reply, err, origin)
  }
  const revoked = sub !== null ? { sub } : { jti }
  // an admin's act: said in the log, with who did it (an API key, or an admin token's sub)
  request.log.info({ revoked, until: sub !== null ? undefined : until, ended: ended.ended, complete: ended.complete, by: grant.kind === 'jwt' ? { sub: grant.sub, jti: grant.jti } : grant.kind }, 'revocation')
  return withCors(reply.code(200), origin).header('Content-Type', 'application/json').send(JSON.stringify({ revoked, ended: ended.ended, complete: ended.complete }))
}
