// Frames of one streaming subscriber not yet handed to its socket: exists only while the socket is
// backed up (EXTENSION e). Shared by the HTTP streams (http-stream.ts) and WebSocket.

export class Backlog {
  frames: Buffer[]
  ids: string[]
  bytes: number
  /** Id of the last frame handed to the socket: the `requested` of a drop gap. */
  lastSentId: string
  gapFrom: string | null
  constructor (lastSentId: string) {
    this.frames = []
    this.ids = []
    this.bytes = 0
    this.lastSentId = lastSentId
    this.gapFrom = null
  }
}
