// Length-prefixed frames: 4-byte big-endian length, then a MessagePack body.
import { Encoder } from '@msgpack/msgpack';

export const MAX_FRAME = 2 ** 30; // replies: PostgreSQL's own limit for one value is the same
// Requests the sidecar takes: a frame whose header says more is refused before any of its body
// is buffered (timestep/store/protocol.py checks the same limit before sending).
export const MAX_REQUEST_FRAME = 64 * 2 ** 20;

const encoder = new Encoder({ ignoreUndefined: true }); // one, reused: encode(x, options) builds one per call

/** Encode one message as a frame. */
export function encodeFrame(message) {
  const body = encoder.encode(message);
  const frame = new Uint8Array(4 + body.length);
  new DataView(frame.buffer).setUint32(0, body.length);
  frame.set(body, 4);
  return frame;
}

/** Reassembles frame bodies from chunks split at arbitrary byte boundaries. */
export class FrameReader {
  #chunks = [];
  #length = 0;
  #max;

  constructor(max = MAX_FRAME) {
    this.#max = max;
  }

  /** Add a chunk; return the bodies of every frame now complete, in order. */
  feed(chunk) {
    this.#chunks.push(chunk);
    this.#length += chunk.length;
    const bodies = [];
    while (this.#length >= 4) {
      const head = this.#peek(4);
      const size = new DataView(head.buffer, head.byteOffset, 4).getUint32(0);
      if (size > this.#max) throw new Error(`a frame of ${size} bytes exceeds the ${this.#max}-byte limit`);
      if (this.#length < 4 + size) break;
      bodies.push(this.#take(4 + size).subarray(4));
    }
    return bodies;
  }

  #peek(n) {
    if (this.#chunks[0].length >= n) return this.#chunks[0].subarray(0, n);
    return Buffer.concat(this.#chunks).subarray(0, n);
  }

  #take(n) {
    const all = this.#chunks.length === 1 ? this.#chunks[0] : Buffer.concat(this.#chunks);
    const taken = all.subarray(0, n);
    const rest = all.subarray(n);
    this.#chunks = rest.length ? [rest] : [];
    this.#length = rest.length;
    return taken;
  }
}
