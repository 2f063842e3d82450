// Wire format of the sim host's hypervisor socket (DIR/hypervisor.sock), shared by the server
// (src/sim/hypervisor/server.ts) and the daemon's sim backend (src/hypervisor/sim.ts).
//
// FRAMES. Every frame is a 4-byte big-endian body length, then the body: one msgpack map
// (msgpackr, plain maps, no records). A length above MAX_FRAME cannot be resynchronised:
// the receiver answers with an `error` message and closes the connection. An undecodable
// body of a sane length gets an `error` message and the connection goes on.
//
// CONTROL CONNECTION messages (field `t` names the kind):
//   client → server
//     { t:'call', id, call, args: [...] }      a Hypervisor interface call; args as in
//                                              src/hypervisor/types.ts, except that save and
//                                              restore take a stream token instead of an fd
//     { t:'cancel', id }                       abort call `id` (its AbortSignal fires)
//     { t:'cbres', id, ok?: true, error?: string }   answer to a server callback
//   server → client
//     { t:'res', id, ok: value }               or { t:'res', id, error: WireError }
//     { t:'cb', id, call, name:'suspend' }     callback for call `call` (save's suspend())
//     { t:'progress', call, sent, total, round }   save progress (no answer)
//     { t:'error', error: WireError }          a frame that could not be answered by id
//   bigints: storeMfn/consoleMfn travel as numbers (MFNs fit in 2^53).
//
// STREAM CONNECTIONS carry a migration stream (save/restore). The client opens a second
// connection to the same socket and sends { t:'stream' }; the server answers
// { t:'stream', token } and from then on the connection carries raw stream bytes, no frames.
// The client passes the token to save (server → client bytes; the server half-closes the
// connection after the END record) or restore (client → server bytes, exactly one libxc
// stream: the client stops reading its fd after the END record, so whatever follows in the
// daemon's fd stays there). An unused token expires after STREAM_TOKEN_TTL_MS.
import { Packr, Unpackr } from 'msgpackr';

export const MAX_FRAME = 8 * 1024 * 1024;
export const STREAM_TOKEN_TTL_MS = 30_000;

export interface WireError {
  call: string;
  errno: string;
  detail?: string;
}

export type ClientMessage =
  | { t: 'call'; id: number; call: string; args: unknown[] }
  | { t: 'cancel'; id: number }
  | { t: 'cbres'; id: number; ok?: true; error?: string }
  | { t: 'stream' };

export type ServerMessage =
  | { t: 'res'; id: number; ok?: unknown; error?: WireError }
  | { t: 'cb'; id: number; call: number; name: 'suspend' }
  | { t: 'progress'; call: number; sent: number; total: number; round: number }
  | { t: 'error'; error: WireError }
  | { t: 'stream'; token: string };

const packr = new Packr({ useRecords: false, moreTypes: false });
const unpackr = new Unpackr({ useRecords: false, moreTypes: false, mapsAsObjects: true });

export function encodeFrame(value: unknown): Buffer {
  const body = packr.pack(value);
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  body.copy(out, 4);
  return out;
}

export class FrameError extends Error {
  override name = 'FrameError';
  constructor(
    message: string,
    /** false when the byte stream cannot be resynchronised (the connection must close). */
    readonly recoverable: boolean,
  ) {
    super(message);
  }
}

/** Incremental frame decoder: push socket chunks, get decoded values (or FrameErrors) out. */
export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0);

  constructor(private readonly maxFrame = MAX_FRAME) {}

  /** Bytes received after the last complete frame (a stream connection's first raw bytes). */
  takeRest(): Buffer {
    const rest = this.buf;
    this.buf = Buffer.alloc(0);
    return rest;
  }

  /** Throws a non-recoverable FrameError on an oversized length; returns values and recoverable errors. */
  push(chunk: Buffer, stopAfter?: (value: unknown) => boolean): (unknown | FrameError)[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out: (unknown | FrameError)[] = [];
    let off = 0;
    while (this.buf.length - off >= 4) {
      const len = this.buf.readUInt32BE(off);
      if (len > this.maxFrame) throw new FrameError(`frame length ${len} exceeds ${this.maxFrame}`, false);
      if (this.buf.length - off < 4 + len) break;
      const body = this.buf.subarray(off + 4, off + 4 + len);
      off += 4 + len;
      let value: unknown;
      try {
        value = unpackr.unpack(body);
      } catch (err) {
        out.push(new FrameError(`undecodable frame: ${(err as Error).message}`, true));
        continue;
      }
      out.push(value);
      if (stopAfter?.(value)) break;
    }
    this.buf = this.buf.subarray(off);
    return out;
  }
}

// ─── libxc stream framing, for relaying exactly one stream ────────────────────────────────────

const IHDR_SIZE = 24;
const DHDR_SIZE = 16;
const XENF = 0x58454e46;
const MAX_RECORD = 16 * 1024 * 1024;

/**
 * Copies exactly one libxc migration stream (image header, domain header, records up to and
 * including END) from `readExact` to `write`, never reading past END.
 */
export async function relayLibxcStream(readExact: (n: number) => Promise<Buffer>, write: (chunk: Buffer) => Promise<void>): Promise<number> {
  const headers = await readExact(IHDR_SIZE + DHDR_SIZE);
  if (headers.readBigUInt64BE(0) !== 0xffffffffffffffffn || headers.readUInt32BE(8) !== XENF) {
    throw new Error('not a libxc migration stream (bad image header)');
  }
  await write(headers);
  let bytes = headers.length;
  for (;;) {
    const rh = await readExact(8);
    const type = rh.readUInt32LE(0);
    const length = rh.readUInt32LE(4);
    if (length > MAX_RECORD) throw new Error(`stream record 0x${type.toString(16)} of ${length} bytes is too long`);
    const body = await readExact((length + 7) & ~7);
    await write(Buffer.concat([rh, body]));
    bytes += 8 + body.length;
    if (type === 0) return bytes;
  }
}
