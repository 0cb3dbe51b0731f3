// RFC 6455 framing for a push-only server (PROTOCOL.md §7), modelled on ws lib/sender.js and
// lib/receiver.js (MIT, Einar Otto Stangvik and contributors).
//
// Encoding is a pure function: a message is framed once and the same Buffer is written to every
// subscriber (ws `Sender.frame`). Decoding is header-first: the subscriber location never accepts
// data frames, so a data frame is rejected from its header alone and its payload is never buffered;
// only control frames (≤ 125 bytes) are ever read whole. What a connection may hold between two
// reads is therefore bounded by MAX_CONTROL_FRAME.
import { isUtf8 } from 'node:buffer'
import { createHash } from 'node:crypto'
import { constants as zlibConstants, deflateRawSync } from 'node:zlib'

export const OP_CONTINUATION = 0x0
export const OP_TEXT = 0x1
export const OP_BINARY = 0x2
export const OP_CLOSE = 0x8
export const OP_PING = 0x9
export const OP_PONG = 0xa

export const CLOSE_NORMAL = 1000
export const CLOSE_GOING_AWAY = 1001
export const CLOSE_PROTOCOL_ERROR = 1002
export const CLOSE_INVALID_PAYLOAD = 1007
export const CLOSE_POLICY = 1008
export const CLOSE_TOO_BIG = 1009
export const CLOSE_INTERNAL_ERROR = 1011
export const CLOSE_TRY_AGAIN_LATER = 1013

/** Largest client frame header (2 + 8 length + 4 mask) plus the largest control payload. */
export const MAX_CONTROL_FRAME = 14 + 125

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

/** `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2). */
export function acceptKey (key: string): string {
  return createHash('sha1').update(key + GUID).digest('base64')
}

/** Header of an unmasked, unfragmented server frame (FIN set) carrying `length` payload bytes. */
export function frameHeader (opcode: number, length: number): Buffer {
  const size = length < 126 ? 2 : length < 65536 ? 4 : 10
  const h = Buffer.allocUnsafe(size)
  writeHeader(h, opcode, length)
  return h
}

function writeHeader (h: Buffer, opcode: number, length: number): number {
  h[0] = 0x80 | opcode
  if (length < 126) {
    h[1] = length
    return 2
  }
  if (length < 65536) {
    h[1] = 126
    h.writeUInt16BE(length, 2)
    return 4
  }
  h[1] = 127
  // payloads stay far below 2^53 (1 MiB messages): the high word is 0 or small
  h.writeUInt32BE(Math.floor(length / 0x100000000), 2)
  h.writeUInt32BE(length >>> 0, 6)
  return 10
}

/**
 * One whole server frame (header + payload) in a single Buffer: frame once, write to many. `alloc`:
 * Buffer.allocUnsafeSlow for a frame a buffered message keeps (lib/message.ts, owned).
 */
export function frame (opcode: number, payload: Buffer, alloc: (size: number) => Buffer = Buffer.allocUnsafe): Buffer {
  const length = payload.length
  const size = (length < 126 ? 2 : length < 65536 ? 4 : 10) + length
  const out = alloc(size)
  const o = writeHeader(out, opcode, length)
  payload.copy(out, o)
  return out
}

/** RSV1 of a message's first frame: its payload is compressed (RFC 7692 §6). */
const RSV1 = 0x40
/** A payload shorter than this is sent as it is: deflate's own bytes leave little or nothing to gain. */
export const DEFLATE_MIN = 128
/**
 * Nor one longer than this: compressing is synchronous, about 0.1 ms for 16 KiB and 0.6 ms for
 * 64 KiB (benchmarks/results/ws-deflate-2026-12-04.md), and a message read back from a buffer for
 * a catch-up is compressed again for that subscriber unless the read cache still holds it.
 */
export const DEFLATE_MAX = 16 * 1024
const SYNC_FLUSH = { finishFlush: zlibConstants.Z_SYNC_FLUSH }

/**
 * permessage-deflate (RFC 7692) without context takeover: `payload` compressed on its own (a raw
 * deflate stream, sync-flushed, its trailing 00 00 ff ff taken off, §7.2.1) in a frame with RSV1
 * set, built once and written to every subscriber that negotiated it. Null where that is not
 * smaller than the frame as it is (a short or incompressible payload), or the payload is past
 * DEFLATE_MAX: they get the frame as it is, as the extension allows for any message (§6.1).
 * `alloc` as for frame.
 */
export function deflatedFrame (opcode: number, payload: Buffer, alloc: (size: number) => Buffer = Buffer.allocUnsafe): Buffer | null {
  if (payload.length < DEFLATE_MIN || payload.length > DEFLATE_MAX) return null
  const z = deflateRawSync(payload, SYNC_FLUSH)
  const length = z.length - 4
  // a sync flush ends with an empty stored block, 00 00 ff ff, which the receiver adds back
  if (length >= payload.length || z.readUInt32BE(length) !== 0xffff) return null
  return frame(RSV1 | opcode, z.subarray(0, length), alloc)
}

/**
 * Header plus `prefix` of a frame whose payload is `prefix` then `bodyLength` more bytes: write it
 * and then the (shared) body, so a large body is not copied per subscriber.
 */
export function framePrefixHead (opcode: number, prefix: string, bodyLength: number): Buffer {
  const plen = Buffer.byteLength(prefix, 'latin1')
  const length = plen + bodyLength
  const out = Buffer.allocUnsafe((length < 126 ? 2 : length < 65536 ? 4 : 10) + plen)
  const o = writeHeader(out, opcode, length)
  out.write(prefix, o, 'latin1')
  return out
}

/** A frame whose payload is `prefix` (latin1 text, e.g. meta lines) followed by `body`; `alloc` as for frame. */
export function framePrefixed (opcode: number, prefix: string, body: Buffer, alloc: (size: number) => Buffer = Buffer.allocUnsafe): Buffer {
  const plen = Buffer.byteLength(prefix, 'latin1')
  const length = plen + body.length
  const size = (length < 126 ? 2 : length < 65536 ? 4 : 10) + length
  const out = alloc(size)
  let o = writeHeader(out, opcode, length)
  o += out.write(prefix, o, 'latin1')
  body.copy(out, o)
  return out
}

/** A close frame with a status code and an optional UTF-8 reason (≤ 123 bytes). */
export function closeFrame (code: number, reason = ''): Buffer {
  const r = Buffer.from(reason, 'utf8')
  const payload = Buffer.allocUnsafe(2 + r.length)
  payload.writeUInt16BE(code, 0)
  r.copy(payload, 2)
  return frame(OP_CLOSE, payload)
}

// ---- decoding -------------------------------------------------------------------------------------

/** What `readHeader` found; one shared instance per caller, reused for every frame (no allocation). */
export class FrameHeader {
  fin: boolean
  opcode: number
  /** Payload length (a 64-bit length is kept as a double; any value over 2^53 is a protocol error). */
  length: number
  /** Offset of the payload in the buffer. */
  payloadStart: number
  /** Offset of the 4-byte mask key. */
  maskStart: number
  constructor () {
    this.fin = false
    this.opcode = 0
    this.length = 0
    this.payloadStart = 0
    this.maskStart = 0
  }
}

/** readHeader: the header is not complete yet. */
export const NEED_MORE = 0

/**
 * Read the header of one client frame at `off`. Returns the header length (> 0) with `out`
 * filled, NEED_MORE, or a negative close code for a malformed frame: RSV bits set (but RSV1 on a
 * message's first frame with `deflate`, permessage-deflate negotiated), an unknown opcode, an
 * unmasked frame, a fragmented or over-long control frame, a 64-bit length with its top bit set
 * (RFC 6455 §5.2, §5.5).
 */
export function readHeader (buf: Buffer, off: number, out: FrameHeader, deflate = false): number {
  const avail = buf.length - off
  if (avail < 2) return NEED_MORE
  const b0 = buf[off]!
  const b1 = buf[off + 1]!
  const opcode = b0 & 0x0f
  const fin = (b0 & 0x80) !== 0
  const control = (opcode & 0x08) !== 0
  // RSV1 marks a compressed message's first frame where permessage-deflate was negotiated
  if ((b0 & (deflate && !control && opcode !== OP_CONTINUATION ? 0x30 : 0x70)) !== 0) return -CLOSE_PROTOCOL_ERROR
  if (control) {
    if (opcode > OP_PONG) return -CLOSE_PROTOCOL_ERROR
    if (!fin) return -CLOSE_PROTOCOL_ERROR
  } else if (opcode > OP_BINARY) {
    return -CLOSE_PROTOCOL_ERROR
  }
  if ((b1 & 0x80) === 0) return -CLOSE_PROTOCOL_ERROR
  let length = b1 & 0x7f
  let size = 2
  if (length === 126) {
    if (control) return -CLOSE_PROTOCOL_ERROR
    if (avail < 4) return NEED_MORE
    length = buf.readUInt16BE(off + 2)
    size = 4
  } else if (length === 127) {
    if (control) return -CLOSE_PROTOCOL_ERROR
    if (avail < 10) return NEED_MORE
    const hi = buf.readUInt32BE(off + 2)
    // the most significant bit must be 0 (RFC 6455 §5.2); any other 63-bit length is well formed,
    // only too big: past 2^53 it is taken as the largest exact number, which every limit refuses (1009)
    if (hi > 0x7fffffff) return -CLOSE_PROTOCOL_ERROR
    length = hi > 0x1fffff ? Number.MAX_SAFE_INTEGER : hi * 0x100000000 + buf.readUInt32BE(off + 6)
    size = 10
  }
  if (avail < size + 4) return NEED_MORE
  out.fin = fin
  out.opcode = opcode
  out.length = length
  out.maskStart = off + size
  out.payloadStart = off + size + 4
  return size + 4
}

/** The unmasked payload of a frame whose bytes are all in `buf` (a copy: control frames are tiny). */
export function unmaskPayload (buf: Buffer, h: FrameHeader): Buffer {
  const out = Buffer.allocUnsafe(h.length)
  const m = h.maskStart
  const p = h.payloadStart
  for (let i = 0; i < h.length; i++) out[i] = buf[p + i]! ^ buf[m + (i & 3)]!
  return out
}

/**
 * Check a close frame's payload (RFC 6455 §5.5.1, §7.4): returns its code, 1005 when it has none,
 * or a negative close code when it is malformed (1 byte, a reserved code, a reason that is not UTF-8).
 */
export function closeCode (payload: Buffer): number {
  if (payload.length === 0) return 1005
  if (payload.length === 1) return -CLOSE_PROTOCOL_ERROR
  const code = payload.readUInt16BE(0)
  const valid = (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999)
  if (!valid) return -CLOSE_PROTOCOL_ERROR
  if (payload.length > 2 && !isUtf8(payload.subarray(2))) return -CLOSE_INVALID_PAYLOAD
  return code
}
