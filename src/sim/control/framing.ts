// Frames of the sim host's control socket: a 4-byte big-endian length, then one msgpackr-encoded value — the same
// framing and codec as the hypervisor socket (src/hypervisor/rpc-frames.ts), whose encoder and decoder this reuses;
// only the size limit and the error type are the control socket's own. A frame longer than MAX_FRAME cannot be a
// control request; the reader reports it and the server drops that connection (the stream cannot be
// resynchronised), never the process.
import { FrameDecoder, FrameError } from '../../hypervisor/rpc-frames.js';

export { encodeFrame } from '../../hypervisor/rpc-frames.js';

// Large enough for the status of a host with thousands of domains and devices.
export const MAX_FRAME = 16 << 20;

export class ControlFrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ControlFrameError';
  }
}

/** Incremental frame reader: push socket chunks, take decoded values out. */
export class FrameReader {
  private readonly decoder = new FrameDecoder(MAX_FRAME);

  /**
   * Returns every complete frame's value. An undecodable body yields a ControlFrameError in place of its
   * value (the framing is intact, so the connection can go on); an oversized length throws.
   */
  push(chunk: Buffer): Array<unknown | ControlFrameError> {
    let values: unknown[];
    try {
      values = this.decoder.push(chunk);
    } catch (err) {
      throw err instanceof FrameError ? new ControlFrameError(err.message) : err;
    }
    return values.map((v) => (v instanceof FrameError ? new ControlFrameError(v.message) : v));
  }
}
