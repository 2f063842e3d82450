// Frames of the sim host's control socket: a 4-byte big-endian length, then one msgpackr-encoded value.
// A frame longer than MAX_FRAME cannot be a control request; the reader reports it and the server drops
// that connection (the stream cannot be resynchronised), never the process.
import { Packr, Unpackr } from 'msgpackr';

// Large enough for the status of a host with thousands of domains and devices.
export const MAX_FRAME = 16 << 20;

const packr = new Packr({ useRecords: false, moreTypes: false });
const unpackr = new Unpackr({ useRecords: false, moreTypes: false });

export class ControlFrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ControlFrameError';
  }
}

export function encodeFrame(value: unknown): Buffer {
  const body = packr.pack(value);
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  body.copy(out, 4);
  return out;
}

/** Incremental frame reader: push socket chunks, take decoded values out. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);

  /**
   * Returns every complete frame's value. An undecodable body yields a ControlFrameError in place of its
   * value (the framing is intact, so the connection can go on); an oversized length throws.
   */
  push(chunk: Buffer): Array<unknown | ControlFrameError> {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out: Array<unknown | ControlFrameError> = [];
    let off = 0;
    while (this.buf.length - off >= 4) {
      const len = this.buf.readUInt32BE(off);
      if (len > MAX_FRAME) throw new ControlFrameError(`frame length ${len} exceeds ${MAX_FRAME}`);
      if (this.buf.length - off < 4 + len) break;
      const body = this.buf.subarray(off + 4, off + 4 + len);
      off += 4 + len;
      try {
        out.push(unpackr.unpack(body));
      } catch (err) {
        out.push(new ControlFrameError(`undecodable frame: ${err instanceof Error ? err.message : String(err)}`));
      }
    }
    this.buf = this.buf.subarray(off);
    return out;
  }
}
