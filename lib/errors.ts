// Every error code in one place (fastify lib/errors.js). Codes are part of the API: never reuse one.

export class ParklineError extends Error {
  code: string
  statusCode: number
  constructor (code: string, message: string, statusCode: number) {
    super(message)
    this.name = 'ParklineError'
    this.code = code
    this.statusCode = statusCode
  }
}

export class ConfigError extends ParklineError {
  constructor (message: string) {
    super('PKL_ERR_CONFIG', message, 500)
    this.name = 'ConfigError'
  }
}

export interface ErrorSpec { code: string, statusCode: number, message: string }

/** Answers to bad input: status and short text/plain body (PROTOCOL.md §10). */
export const ERRORS = {
  BAD_MESSAGE_ID: { code: 'PKL_ERR_BAD_MESSAGE_ID', statusCode: 400, message: 'Message ID invalid' },
  NO_CHANNEL_ID: { code: 'PKL_ERR_NO_CHANNEL_ID', statusCode: 404, message: 'No channel id provided.' },
  CHANNEL_ID_TOO_LONG: { code: 'PKL_ERR_CHANNEL_ID_TOO_LONG', statusCode: 403, message: '' },
  TOO_MANY_CHANNELS: { code: 'PKL_ERR_TOO_MANY_CHANNELS', statusCode: 403, message: '' },
  /** One channel at more than MAX_REPEATS positions of a subscription (lib/http.ts parseChannelIds). */
  REPEATED_CHANNEL: { code: 'PKL_ERR_REPEATED_CHANNEL', statusCode: 400, message: 'Bad Request: a channel named more than 4 times in one subscription' },
  BAD_CHANNEL_ID: { code: 'PKL_ERR_BAD_CHANNEL_ID', statusCode: 400, message: 'Invalid channel id' },
  BAD_PATH: { code: 'PKL_ERR_BAD_PATH', statusCode: 400, message: 'Bad Request' },
  /** No route (the standalone server's paths outside the publisher, subscriber and operator ones). */
  NOT_FOUND: { code: 'PKL_ERR_NOT_FOUND', statusCode: 404, message: 'Not Found' },
  PAYLOAD_TOO_LARGE: { code: 'PKL_ERR_PAYLOAD_TOO_LARGE', statusCode: 413, message: 'Request Entity Too Large' },
  URI_TOO_LONG: { code: 'PKL_ERR_URI_TOO_LONG', statusCode: 414, message: 'Request-URI Too Large' },
  HEADER_TOO_LARGE: { code: 'PKL_ERR_HEADER_TOO_LARGE', statusCode: 400, message: 'Request Header Or Cookie Too Large' },
  BAD_REQUEST: { code: 'PKL_ERR_BAD_REQUEST', statusCode: 400, message: 'Bad Request' },
  HTTP_VERSION: { code: 'PKL_ERR_HTTP_VERSION', statusCode: 505, message: 'HTTP Version Not Supported' },
  REQUEST_TIMEOUT: { code: 'PKL_ERR_REQUEST_TIMEOUT', statusCode: 408, message: 'Request Timeout' },
  SUBSCRIBER_READ_ONLY: { code: 'PKL_ERR_SUBSCRIBER_READ_ONLY', statusCode: 403, message: '' },
  METHOD_NOT_ALLOWED: { code: 'PKL_ERR_METHOD_NOT_ALLOWED', statusCode: 405, message: 'Method Not Allowed' },
  ORIGIN_NOT_ALLOWED: { code: 'PKL_ERR_ORIGIN_NOT_ALLOWED', statusCode: 403, message: 'Origin not allowed' },
  /**
   * Embedded: a page of another site, its origin not listed in corsOrigins, sent the user's cookies.
   * The host's own hooks may have admitted it by them (a session cookie), and Parkline echoes any
   * origin with credentials where corsOrigins is empty: that page would read or publish as the user.
   */
  CROSS_SITE_COOKIES: { code: 'PKL_ERR_CROSS_SITE_COOKIES', statusCode: 403, message: 'Forbidden: a page of another site sent cookies; list its origin in corsOrigins' },
  OVER_CAPACITY: { code: 'PKL_ERR_OVER_CAPACITY', statusCode: 503, message: 'Service Unavailable' },
  /** A fault in a handler (lib/server.ts's error handler logs it): the client learns nothing of it. */
  INTERNAL: { code: 'PKL_ERR_INTERNAL', statusCode: 500, message: 'Internal Server Error' },
  /** The token's `sub` holds maxSubscribersPerUser subscribers here (its in-memory workers together: lib/core.ts Core.overUserLimit). */
  USER_LIMIT: { code: 'PKL_ERR_USER_LIMIT', statusCode: 429, message: 'Too Many Requests: this user holds its limit of subscriptions' },
  BODY_ABORTED: { code: 'PKL_ERR_BODY_ABORTED', statusCode: 400, message: 'Request body aborted' },
  NOT_LOOPBACK: { code: 'PKL_ERR_NOT_LOOPBACK', statusCode: 403, message: 'Forbidden' },
  NOT_ACCEPTABLE: { code: 'PKL_ERR_NOT_ACCEPTABLE', statusCode: 406, message: 'Not Acceptable' },
  WS_NO_VERSION: { code: 'PKL_ERR_WS_NO_VERSION', statusCode: 400, message: 'No Sec-Websocket-Version header present' },
  WS_BAD_VERSION: { code: 'PKL_ERR_WS_BAD_VERSION', statusCode: 400, message: 'Unsupported websocket protocol version (only version 13 is supported)' },
  WS_NO_KEY: { code: 'PKL_ERR_WS_NO_KEY', statusCode: 400, message: 'No Sec-Websocket-Key header present' },
  WS_BAD_KEY: { code: 'PKL_ERR_WS_BAD_KEY', statusCode: 400, message: 'Invalid Sec-WebSocket-Key header' },
  BAD_IDEMPOTENCY_KEY: { code: 'PKL_ERR_BAD_IDEMPOTENCY_KEY', statusCode: 400, message: 'Bad Request: Idempotency-Key must be 1 to 255 visible ASCII characters' },
  IDEMPOTENCY_KEY_REUSED: { code: 'PKL_ERR_IDEMPOTENCY_KEY_REUSED', statusCode: 422, message: 'Unprocessable Content: Idempotency-Key already used for a different message' },
  STORE_UNAVAILABLE: { code: 'PKL_ERR_STORE_UNAVAILABLE', statusCode: 503, message: 'Store unavailable' },
  REVOCATION_NOT_SAVED: { code: 'PKL_ERR_REVOCATION_NOT_SAVED', statusCode: 500, message: 'Internal Server Error: the revocation is in force, but revocationsFile could not be written (a restart would forget it); send it again' },
  REVOCATIONS_FULL: { code: 'PKL_ERR_REVOCATIONS_FULL', statusCode: 507, message: 'Insufficient Storage: the revocation list is full (maxRevocations); the revocations held stay in force' },
  BAD_REVOKE: { code: 'PKL_ERR_BAD_REVOKE', statusCode: 400, message: 'Bad Request: send {"sub": "…"} or {"jti": "…"} (and optionally "exp")' },
  // access control (lib/auth.ts, lib/access.ts): refusals written with RFC 6750's WWW-Authenticate
  UNAUTHORIZED: { code: 'PKL_ERR_UNAUTHORIZED', statusCode: 401, message: 'Unauthorized' },
  INVALID_TOKEN: { code: 'PKL_ERR_INVALID_TOKEN', statusCode: 401, message: 'Unauthorized: invalid token' },
  INVALID_AUTH_REQUEST: { code: 'PKL_ERR_INVALID_AUTH_REQUEST', statusCode: 400, message: 'Bad Request: malformed Authorization header' },
  INSUFFICIENT_SCOPE: { code: 'PKL_ERR_INSUFFICIENT_SCOPE', statusCode: 403, message: 'Forbidden: the credential does not grant this channel' },
  PUBLISHER_LOOPBACK_ONLY: { code: 'PKL_ERR_PUBLISHER_LOOPBACK_ONLY', statusCode: 403, message: 'Forbidden: publisher is loopback-only; set apiKey, a JWT key, or publisherOpen' },
  PUBLISHER_PROXIED: { code: 'PKL_ERR_PUBLISHER_PROXIED', statusCode: 403, message: 'Forbidden: publisher is loopback-only, and this request came through a proxy; set apiKey or a JWT key' },
  ADMIN_DISABLED: { code: 'PKL_ERR_ADMIN_DISABLED', statusCode: 403, message: 'Forbidden: revocation needs apiKey or a JWT key' },
  AUTHORIZE_REFUSED: { code: 'PKL_ERR_AUTHORIZE_REFUSED', statusCode: 403, message: 'the authorize request refused (its status and body are passed on)' },
  AUTH_UNAVAILABLE: { code: 'PKL_ERR_AUTH_UNAVAILABLE', statusCode: 503, message: 'Service Unavailable: the authorization server did not answer' },
  /** With workers: the primary process did not answer a worker's request in time (stopped, stalled). */
  PRIMARY_UNAVAILABLE: { code: 'PKL_ERR_PRIMARY_UNAVAILABLE', statusCode: 503, message: 'Service Unavailable: the primary process did not answer' },
  // thrown to server-side consumers (`app.parkline.subscribe`), never written to a socket
  CONSUMER_OVERFLOW: { code: 'PKL_ERR_CONSUMER_OVERFLOW', statusCode: 503, message: 'consumer fell behind its queueLimit; resubscribe from the last id read' },
  CONSUMER_ENDED: { code: 'PKL_ERR_CONSUMER_ENDED', statusCode: 503, message: 'subscription ended by the server' },
  DRAINING: { code: 'PKL_ERR_DRAINING', statusCode: 503, message: 'server shutting down' },
  /** Embedded: `app.parkline` used after `app.close()`: nobody would receive what it publishes, nor end what it opens. */
  CLOSED: { code: 'PKL_ERR_CLOSED', statusCode: 503, message: 'Parkline is closed (app.close())' }
} as const satisfies Record<string, ErrorSpec>
