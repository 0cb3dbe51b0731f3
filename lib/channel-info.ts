// Channel info on the publisher URL (PROTOCOL.md §3.2), in the four formats Nchan answers.
import type { Channel } from './channel-registry.ts'
import { formatId } from './message-id.ts'

export type InfoFormat = 'plain' | 'json' | 'yaml' | 'xml'

export interface ChannelInfo { messages: number, requested: number, subscribers: number, lastMessageId: string }

/** First Accept entry naming text/… or application/… followed by a known subtype wins (by how it starts, as Nchan); else plain. */
export function infoFormat (accept: string | undefined): InfoFormat {
  if (accept === undefined) return 'plain'
  for (const entry of accept.split(',')) {
    let i = entry.indexOf('text/')
    let skip = 5
    if (i === -1) {
      i = entry.indexOf('application/')
      skip = 12
    }
    if (i === -1) continue
    // what follows the slash starts with the subtype, as Nchan compares it (nchan_output_info.c):
    // `application/jsonp` and `text/json; charset=utf-8` are JSON, `application/ json` is not
    const sub = entry.slice(i + skip)
    for (const [name, format] of SUBTYPES) if (sub.startsWith(name)) return format
  }
  return 'plain'
}

/** In Nchan's order. */
const SUBTYPES: ReadonlyArray<readonly [string, InfoFormat]> = [['plain', 'plain'], ['json', 'json'], ['x-json', 'json'], ['yaml', 'yaml'], ['x-yaml', 'yaml'], ['xml', 'xml']]

export function channelInfo (ch: Channel, nowMs: number): ChannelInfo {
  return {
    messages: ch.buffer.size,
    requested: ch.lastRequested < 0 ? -1 : Math.floor((nowMs - ch.lastRequested) / 1000),
    subscribers: ch.subs.length,
    lastMessageId: ch.lastTime === 0 ? '0:0' : formatId(ch.lastTime, ch.lastTag)
  }
}

export function renderInfo (info: ChannelInfo, format: InfoFormat): { contentType: string, body: string } {
  const { messages, requested, subscribers, lastMessageId } = info
  switch (format) {
    case 'json':
      return { contentType: 'text/json', body: `{"messages": ${messages}, "requested": ${requested}, "subscribers": ${subscribers}, "last_message_id": "${lastMessageId}" }` }
    case 'yaml':
      return { contentType: 'text/yaml', body: `---\r\nmessages: ${messages}\r\nrequested: ${requested}\r\nsubscribers: ${subscribers}\r\nlast_message_id: "${lastMessageId}"\r\n\r\n` }
    case 'xml':
      return {
        contentType: 'text/xml',
        body: `<?xml version="1.0" encoding="UTF-8" ?>\r\n<channel>\r\n  <messages>${messages}</messages>\r\n  <requested>${requested}</requested>\r\n  <subscribers>${subscribers}</subscribers>\r\n  <last_message_id>${lastMessageId}</last_message_id>\r\n</channel>`
      }
    default:
      return { contentType: 'text/plain', body: `queued messages: ${messages}\r\nlast requested: ${requested} sec. ago\r\nactive subscribers: ${subscribers}\r\nlast message id: ${lastMessageId}` }
  }
}
