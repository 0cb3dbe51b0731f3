// Symbol keys for state hung on objects Parkline does not own (net.Socket).

/** The Subscriber parked on a socket. */
export const kSubscriber = Symbol('parkline.subscriber')

/** Bytes that arrived after a WebSocket handshake routed from Node's 'upgrade' event (plugin.ts). */
export const kUpgradeHead = Symbol('parkline.upgradeHead')
