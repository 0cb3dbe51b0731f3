// JWT verification for lib/auth.ts, all of it done by jose: which keys, which algorithms, and a
// JWKS cache fetched with undici. The answer is the payload or a short reason; lib/auth.ts turns
// that into RFC 6750 answers and grants.
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto'
import { createLocalJWKSet, jwtVerify, type CryptoKey, type FlattenedJWSInput, type JSONWebKeySet, type JWSHeaderParameters, type JWTPayload, type JWTVerifyOptions } from 'jose'
import { request, type Dispatcher } from 'undici'
import { readCapped, why, type AuthStats, type AuthTrouble } from './auth-authorize.ts'

const HMAC_ALGS = ['HS256', 'HS384', 'HS512']
const RSA_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']
const PSS_ALGS = ['PS256', 'PS384', 'PS512']
const EC_ALGS: Record<string, string> = { prime256v1: 'ES256', secp384r1: 'ES384', secp521r1: 'ES512' }
const ED_ALGS = ['EdDSA', 'Ed25519']
/**
 * What a JWKS may sign with: asymmetric algorithms only (jose's local set refuses `oct` keys for
 * HS* as well). Which key serves which token is then jose's match of alg/kty/crv/kid.
 */
const JWKS_ALGS = [...RSA_ALGS, 'ES256', 'ES384', 'ES512', ...ED_ALGS]

/** A JWKS larger than this is refused (a set of a few keys is a few KiB). */
const JWKS_MAX_BYTES = 1048576
/** After a failed JWKS fetch, wait this long before the next try (a dead IdP is not hammered). */
const JWKS_FAILURE_BACKOFF_MS = 1000

/**
 * The algorithms a PEM public key may verify, from the key's own type: never from a token. An
 * RSA key allows RS* and PS*, an EC key the one ES* of its curve, an Ed25519 key EdDSA. Throws
 * for a type jose cannot verify with (Ed448, secp256k1, DSA, DH...).
 */
export function publicKeyAlgorithms (key: KeyObject): string[] {
  switch (key.asymmetricKeyType) {
    case 'rsa': return RSA_ALGS
    case 'rsa-pss': return PSS_ALGS
    case 'ec': {
      const alg = EC_ALGS[key.asymmetricKeyDetails?.namedCurve ?? '']
      if (alg === undefined) throw new Error(`unsupported EC curve ${key.asymmetricKeyDetails?.namedCurve ?? '?'}`)
      return [alg]
    }
    case 'ed25519': return ED_ALGS
    default: throw new Error(`unsupported key type ${key.asymmetricKeyType ?? '?'}`)
  }
}

/**
 * Parse jwtPublicKey (PEM: a public key, or a certificate). Throws on bad input, and on a private
 * key: node would take its public half, but the issuer's signing key has no place on a server that
 * only verifies (whoever reads it there can mint every token the issuer's key signs).
 */
export function parsePublicKey (pem: string): { key: KeyObject, algorithms: string[] } {
  if (PRIVATE_PEM.test(pem) || isPrivateKey(pem)) throw new Error('this is a private key: give Parkline only its public half (`openssl pkey -in key.pem -pubout`), and keep the private key with the issuer')
  const key = createPublicKey(pem)
  return { key, algorithms: publicKeyAlgorithms(key) }
}

/** A PEM private key block: PKCS#8 (`PRIVATE KEY`, `ENCRYPTED PRIVATE KEY`) or traditional (`RSA PRIVATE KEY`, `EC PRIVATE KEY`). */
const PRIVATE_PEM = /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----/

/** OpenSSL also reads a private key under another label (`EC PARAMETERS`, `DH PARAMETERS`). */
function isPrivateKey (pem: string): boolean {
  try {
    createPrivateKey(pem)
    return true
  } catch {
    return false
  }
}

/** Thrown by the key resolver when no JWKS could be had at all: answered 503, not 401. */
export class JwksUnavailable extends Error {
  code = 'PKL_JWKS_UNAVAILABLE'
}

type LocalSet = ReturnType<typeof createLocalJWKSet>

export interface JwksOptions {
  url: string
  dispatcher: Dispatcher
  now: () => number
  /** Least time between two fetches caused by an unknown `kid`. */
  cooldownMs: number
  /** Age after which the set is fetched again before use (kept if that fetch fails). */
  maxAgeMs: number
  timeoutMs: number
  stats: AuthStats
  trouble?: AuthTrouble
}

/**
 * A JWKS kept in memory and matched by jose's createLocalJWKSet. Fetched on first use, again when
 * older than maxAgeMs, and when a token names a `kid` the set lacks, but then at most once per
 * cooldownMs (counted from the last fetch, so a stream of made-up kids costs one fetch per
 * cooldown). Concurrent callers share one fetch. jose's createRemoteJWKSet would do much the same
 * with fetch; this one goes through our undici Agent, backs off after failures, and lets a failure
 * with no keys at all be told apart (503) from a bad token (401).
 */
export class JwksCache {
  #o: JwksOptions
  #set: LocalSet | null = null
  #fetchedAt = -Infinity
  #attemptAt = -Infinity
  #failedAt = -Infinity
  #pending: Promise<void> | null = null

  constructor (o: JwksOptions) {
    this.#o = o
  }

  async resolve (header: JWSHeaderParameters, token: FlattenedJWSInput): Promise<CryptoKey> {
    const now = this.#o.now()
    if (this.#set === null || now - this.#fetchedAt >= this.#o.maxAgeMs) {
      if (this.#pending !== null || now - this.#failedAt >= JWKS_FAILURE_BACKOFF_MS) await this.#refresh()
      if (this.#set === null) throw new JwksUnavailable('no JWKS')
    }
    try {
      return await this.#set(header, token)
    } catch (err) {
      if ((err as { code?: string }).code !== 'ERR_JWKS_NO_MATCHING_KEY') throw err
      // Unknown kid: perhaps the keys rotated. Join a fetch under way, or start one past the cooldown.
      if (this.#pending === null && this.#o.now() - this.#attemptAt < this.#o.cooldownMs) throw err
      await this.#refresh()
      return await this.#set(header, token)
    }
  }

  #refresh (): Promise<void> {
    if (this.#pending === null) {
      this.#attemptAt = this.#o.now()
      this.#pending = this.#load().finally(() => { this.#pending = null })
    }
    return this.#pending
  }

  async #load (): Promise<void> {
    this.#o.stats.jwksFetches++
    try {
      const res = await request(this.#o.url, {
        dispatcher: this.#o.dispatcher,
        method: 'GET',
        headers: { accept: 'application/jwk-set+json, application/json' },
        signal: AbortSignal.any([AbortSignal.timeout(this.#o.timeoutMs), this.#closed.signal])
      })
      if (res.statusCode !== 200) {
        await res.body.dump()
        throw new Error(`JWKS answered ${res.statusCode}`)
      }
      const { buf, over } = await readCapped(res.body, JWKS_MAX_BYTES)
      if (over) throw new Error('JWKS too large')
      // createLocalJWKSet validates the shape (JWKSInvalid); keys are imported lazily per alg.
      this.#set = createLocalJWKSet(JSON.parse(buf.toString('utf8')) as JSONWebKeySet)
      this.#fetchedAt = this.#o.now()
    } catch (err) {
      // Keep a set we had: stale keys beat none. resolve() decides what a missing set means.
      this.#failedAt = this.#o.now()
      this.#o.trouble?.('jwks', (this.#set === null ? 'no keys yet: ' : 'keeping the keys fetched before: ') + why(err))
      // a server (prefetch) tries again on its own, each cooldown, until a fetch succeeds: else a
      // process no token reaches would keep its failure (parkline_jwks_up 0) for good
      if (this.#background && this.#retry === null && !this.#closed.signal.aborted) {
        this.#retry = setTimeout(() => {
          this.#retry = null
          this.#refresh().catch(() => {})
        }, this.#o.cooldownMs)
        this.#retry.unref()
      }
    }
  }

  #background = false
  #retry: NodeJS.Timeout | null = null

  /** Keys are held and the last fetch got them: what parkline_jwks_up says (a failed refetch keeps the old keys, but is 0). */
  get up (): boolean {
    return this.#set !== null && this.#fetchedAt >= this.#failedAt
  }

  /** Fetch the set now (at start: a JWKS that cannot be had is said then, not at the first token), and again after each failure. */
  prefetch (): void {
    this.#background = true
    this.#refresh().catch(() => {})
  }

  /** Aborted at close: a fetch under way (one that hangs) does not hold the server's close. */
  readonly #closed = new AbortController()

  close (): void {
    this.#closed.abort()
    if (this.#retry !== null) clearTimeout(this.#retry)
    this.#retry = null
  }
}

export interface JwtVerifierOptions {
  jwtSecret: string
  jwtPreviousSecret: string
  jwtPublicKey: string
  jwtIssuer: string
  jwtAudience: string
  jwtLeeway: number
  jwtMaxLifetime: number
  jwks: JwksCache | null
  now: () => number
}

export type JwtOutcome =
  | { ok: true, payload: JWTPayload }
  | { ok: false, unavailable: boolean, reason: string }

/**
 * Verifies compact JWS tokens against whichever of secret, public key and JWKS is configured.
 * The `algorithms` allowlist is the union of what those keys allow, fixed at construction; jose
 * checks a token's `alg` against it before any key is chosen, so `alg: none` and HS* against a
 * public key (the key-confusion attack) fail there. The key for an allowed alg is then picked by
 * the alg's family: HS* takes only the secret, never key material of another kind.
 */
export class JwtVerifier {
  readonly algorithms: string[]
  #secret: Uint8Array | null
  /** jwtPreviousSecret: an HS token whose signature the secret refuses is tried with it. */
  #previous: Uint8Array | null
  #publicKey: KeyObject | null
  #publicAlgs: string[]
  #jwks: JwksCache | null
  #base: JWTVerifyOptions
  #now: () => number
  /** jwtMaxLifetime (s): a token must carry `exp`, at most this far ahead; 0 = not checked. */
  #maxLifetime: number
  #leeway: number
  #getKey: (header: JWSHeaderParameters, token: FlattenedJWSInput) => Promise<CryptoKey | KeyObject | Uint8Array>

  constructor (o: JwtVerifierOptions) {
    this.#secret = o.jwtSecret.length > 0 ? new TextEncoder().encode(o.jwtSecret) : null
    this.#previous = o.jwtPreviousSecret.length > 0 && this.#secret !== null ? new TextEncoder().encode(o.jwtPreviousSecret) : null
    const pk = o.jwtPublicKey.length > 0 ? parsePublicKey(o.jwtPublicKey) : null
    this.#publicKey = pk === null ? null : pk.key
    this.#publicAlgs = pk === null ? [] : pk.algorithms
    this.#jwks = o.jwks
    const algs = new Set<string>()
    if (this.#secret !== null) for (const a of HMAC_ALGS) algs.add(a)
    for (const a of this.#publicAlgs) algs.add(a)
    if (this.#jwks !== null) for (const a of JWKS_ALGS) algs.add(a)
    this.algorithms = [...algs]
    this.#base = {
      algorithms: this.algorithms,
      clockTolerance: o.jwtLeeway,
      ...(o.jwtIssuer.length > 0 ? { issuer: o.jwtIssuer } : {}),
      ...(o.jwtAudience.length > 0 ? { audience: o.jwtAudience } : {})
    }
    this.#now = o.now
    this.#maxLifetime = o.jwtMaxLifetime
    this.#leeway = o.jwtLeeway
    // One resolver for the verifier's life (jose calls it only for an alg already allowed).
    this.#getKey = (header, token) => this.#resolveKey(header, token)
  }

  async #resolveKey (header: JWSHeaderParameters, token: FlattenedJWSInput): Promise<CryptoKey | KeyObject | Uint8Array> {
    const alg = header.alg ?? ''
    if (HMAC_ALGS.includes(alg)) {
      if (this.#secret !== null) return this.#secret
    } else if (this.#jwks !== null && (header.kid !== undefined || !this.#publicAlgs.includes(alg))) {
      // A token naming a kid is for the JWKS; one without goes to the static key when it fits.
      return await this.#jwks.resolve(header, token)
    } else if (this.#publicKey !== null && this.#publicAlgs.includes(alg)) {
      return this.#publicKey
    }
    throw Object.assign(new Error('no key for this algorithm'), { code: 'ERR_JOSE_ALG_NOT_ALLOWED' })
  }

  /** With the keys; an HS token whose signature they refuse, with jwtPreviousSecret. */
  async #verifyEither (token: string, currentDate: Date): Promise<{ payload: JWTPayload }> {
    try {
      return await jwtVerify(token, this.#getKey, { ...this.#base, currentDate })
    } catch (err) {
      if (this.#previous === null || (err as { code?: string }).code !== 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED') throw err
      try {
        return await jwtVerify(token, this.#previous, { ...this.#base, algorithms: HMAC_ALGS, currentDate })
      } catch (again) {
        // signed with the previous secret, but expired (or of another issuer…): that is the answer;
        // otherwise (not HS, or not that secret either) the first one
        const code = (again as { code?: string }).code
        throw code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' || code === 'ERR_JOSE_ALG_NOT_ALLOWED' ? err : again
      }
    }
  }

  async verify (token: string): Promise<JwtOutcome> {
    try {
      const now = this.#now()
      const { payload } = await this.#verifyEither(token, new Date(now))
      if (this.#maxLifetime > 0) {
        // a token that never expires, or lives longer than the operator allows, is refused (a
        // leaked one would be good until revoked); checked after the signature, so the reason
        // says nothing of a forged token
        if (typeof payload.exp !== 'number') return { ok: false, unavailable: false, reason: 'token without exp' }
        if (payload.exp - Math.floor(now / 1000) > this.#maxLifetime + this.#leeway) return { ok: false, unavailable: false, reason: 'token lives too long' }
      }
      return { ok: true, payload }
    } catch (err) {
      if (err instanceof JwksUnavailable) return { ok: false, unavailable: true, reason: 'signing keys unavailable' }
      return { ok: false, unavailable: false, reason: describe(err) }
    }
  }
}

/**
 * A short reason for error_description (RFC 6750 §3: no `"` or `\`): enough for a client to
 * know whether to renew the token, no more.
 */
function describe (err: unknown): string {
  const e = err as { code?: string, claim?: string }
  switch (e.code) {
    case 'ERR_JWT_EXPIRED': return 'token expired'
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      switch (e.claim) {
        case 'nbf': return 'token not yet valid'
        case 'iss': return 'wrong issuer'
        case 'aud': return 'wrong audience'
        default: return 'invalid claims'
      }
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED': return 'bad signature'
    case 'ERR_JOSE_ALG_NOT_ALLOWED': return 'algorithm not allowed'
    case 'ERR_JOSE_NOT_SUPPORTED': return 'algorithm not supported'
    case 'ERR_JWKS_NO_MATCHING_KEY': return 'unknown key'
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS': return 'ambiguous key'
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID': return 'malformed token'
    default: return 'invalid token'
  }
}
