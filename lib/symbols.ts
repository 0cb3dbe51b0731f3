// Symbol keys for state hung on objects Parkline does not own (net.Socket).

/** The Subscriber parked on a socket. */
export const kSubscriber = Symbol('parkline.subscriber')
