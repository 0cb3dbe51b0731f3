// Symbol keys for state hung on objects Parkline does not own (net.Socket).

/** The Subscriber parked on a socket. */
export const kSubscriber = Symbol('parkline.subscriber')

/** Bytes that arrived after a WebSocket handshake routed from Node's 'upgrade' event (plugin.ts). */
export const kUpgradeHead = Symbol('parkline.upgradeHead')

/** The Content-Type as the client sent it, when Fastify would not have accepted it (plugin.ts). */
export const kRawContentType = Symbol('parkline.rawContentType')

/** Subscriber requests on this connection still being admitted (access control is async). */
export const kAdmitting = Symbol('parkline.admitting')

/** Node's own HTTP 'connection' listener, kept on the standalone server (lib/raw-publish.ts): sockets handed back go straight to it. */
export const kNodeConnection = Symbol('parkline.nodeConnection')

/** The standalone server's raw-connection reader (lib/raw-publish.ts RawPublishers), on its http.Server. */
export const kRawPublishers = Symbol('parkline.rawPublishers')

/** A connection read by lib/raw-publish.ts: its state there. */
export const kRawConnection = Symbol('parkline.rawConnection')

/** On the standalone server's http.Server: it checks Host itself (requireHostHeader off, lib/server.ts). */
export const kOwnHostCheck = Symbol('parkline.ownHostCheck')

/**
 * On a request that sent `Expect: 100-continue` to a location whose body Parkline reads (the
 * publisher's, revoke's): its ServerResponse, whose `100 Continue` is sent only when the body is
 * about to be read, after access control (lib/plugin.ts, lib/publisher.ts readBody).
 */
export const kContinueOwed = Symbol('parkline.continueOwed')

/**
 * On a socket handed to Node's server with a publish whose body was cut on the raw path (lib/raw-publish.ts
 * BODY_WAIT_MS): when it began to wait there (Date.now() ms), so that bodyTimeout and bodyMinRate
 * count from then (lib/publisher.ts readBody). Taken by the first body read on that socket.
 */
export const kBodyWaitSince = Symbol('parkline.bodyWaitSince')
