// The xenstore wire protocol of Xen 4.17 (xen/io/xs_wire.h): a 16-byte little-endian header
// {type, req_id, tx_id, len} followed by `len` payload bytes. Shared by the client and the sim xenstored.

export const HEADER_SIZE = 16;
/** XENSTORE_PAYLOAD_MAX: the largest payload either side may send. */
export const PAYLOAD_MAX = 4096;
export const ABS_PATH_MAX = 3072;
export const REL_PATH_MAX = 2048;

export enum MsgType {
  CONTROL = 0,
  DIRECTORY = 1,
  READ = 2,
  GET_PERMS = 3,
  WATCH = 4,
  UNWATCH = 5,
  TRANSACTION_START = 6,
  TRANSACTION_END = 7,
  INTRODUCE = 8,
  RELEASE = 9,
  GET_DOMAIN_PATH = 10,
  WRITE = 11,
  MKDIR = 12,
  RM = 13,
  SET_PERMS = 14,
  WATCH_EVENT = 15,
  ERROR = 16,
  IS_DOMAIN_INTRODUCED = 17,
  RESUME = 18,
  SET_TARGET = 19,
  // 20 (RESTRICT) was removed from the protocol.
  RESET_WATCHES = 21,
  DIRECTORY_PART = 22,
}

export function isKnownType(t: number): t is MsgType {
  return t >= 0 && t <= 22 && t !== 20;
}

/** Errno names xenstored sends in ERROR payloads, with their Linux values (xs_wire.h xsd_errors). */
export const ERRNO: Readonly<Record<string, number>> = {
  EINVAL: 22,
  EACCES: 13,
  EEXIST: 17,
  EISDIR: 21,
  ENOENT: 2,
  ENOMEM: 12,
  ENOSPC: 28,
  EIO: 5,
  ENOTEMPTY: 39,
  ENOSYS: 38,
  EROFS: 30,
  EBUSY: 16,
  EAGAIN: 11,
  EISCONN: 106,
  E2BIG: 7,
  EPERM: 1,
  EQUOTA: 122, // Xen maps EQUOTA to EDQUOT
};
export type XsErrno = keyof typeof ERRNO & string;

export interface Message {
  type: MsgType;
  reqId: number;
  txId: number;
  payload: Buffer;
}

export function encode(msg: Message): Buffer {
  const out = Buffer.allocUnsafe(HEADER_SIZE + msg.payload.length);
  out.writeUInt32LE(msg.type, 0);
  out.writeUInt32LE(msg.reqId >>> 0, 4);
  out.writeUInt32LE(msg.txId >>> 0, 8);
  out.writeUInt32LE(msg.payload.length, 12);
  msg.payload.copy(out, HEADER_SIZE);
  return out;
}

/** Payload made of NUL-terminated strings, as most requests are: `path\0token\0`. */
export function strings(...parts: string[]): Buffer {
  return Buffer.from(parts.map((p) => p + '\0').join(''), 'utf8');
}

/** Splits `a\0b\0` into ['a','b']; a trailing part without NUL is kept (WRITE's value). */
export function splitStrings(payload: Buffer): string[] {
  if (payload.length === 0) return [];
  const s = payload.toString('utf8');
  const parts = s.split('\0');
  if (s.endsWith('\0')) parts.pop();
  return parts;
}

export class FrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FrameError';
  }
}

/**
 * Incremental decoder: feed it socket chunks, take whole messages out. A header whose length exceeds
 * PAYLOAD_MAX (or whose type is unknown, when strict) raises FrameError: the stream cannot be resynchronised,
 * so the caller closes that connection.
 */
export class Decoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(private readonly opts: { strictTypes?: boolean; maxPayload?: number } = {}) {}

  push(chunk: Buffer): Message[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const out: Message[] = [];
    let buf = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
    let off = 0;
    while (buf.length - off >= HEADER_SIZE) {
      const type = buf.readUInt32LE(off);
      const len = buf.readUInt32LE(off + 12);
      if (len > (this.opts.maxPayload ?? PAYLOAD_MAX)) throw new FrameError(`payload length ${len} exceeds ${PAYLOAD_MAX}`);
      if (this.opts.strictTypes && !isKnownType(type)) throw new FrameError(`unknown message type ${type}`);
      if (buf.length - off < HEADER_SIZE + len) break;
      out.push({
        type: type as MsgType,
        reqId: buf.readUInt32LE(off + 4),
        txId: buf.readUInt32LE(off + 8),
        payload: Buffer.from(buf.subarray(off + HEADER_SIZE, off + HEADER_SIZE + len)),
      });
      off += HEADER_SIZE + len;
    }
    const rest = buf.subarray(off);
    this.chunks = rest.length ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }

  /** Bytes of a message not yet complete. */
  get pending(): number {
    return this.buffered;
  }
}

/** Permissions as the wire writes them: first entry is the owner and the default for everyone else. */
export type PermLetter = 'n' | 'r' | 'w' | 'b';
export interface Perm {
  id: number;
  perm: PermLetter;
}

export function formatPerm(p: Perm): string {
  return `${p.perm}${p.id}`;
}

export function parsePerm(s: string): Perm {
  const m = /^([nrwb])(\d+)$/.exec(s);
  if (!m) throw new FrameError(`bad permission ${JSON.stringify(s)}`);
  return { perm: m[1] as PermLetter, id: Number(m[2]) };
}

/** Xen's path rules: absolute under '/', or '@'-special; chars [A-Za-z0-9/_@-]; no '//' nor trailing '/'. */
export function isValidPath(path: string, allowRelative = true): boolean {
  if (path.length === 0) return false;
  if (path.startsWith('@')) return /^@[A-Za-z0-9_\-/@]*$/.test(path);
  if (!allowRelative && !path.startsWith('/')) return false;
  if (!/^[A-Za-z0-9/_@\-]*$/.test(path)) return false;
  if (path.includes('//')) return false;
  if (path.length > 1 && path.endsWith('/')) return false;
  return true;
}

export const XS_STATE = {
  Unknown: 0,
  Initialising: 1,
  InitWait: 2,
  Initialised: 3,
  Connected: 4,
  Closing: 5,
  Closed: 6,
  Reconfiguring: 7,
  Reconfigured: 8,
} as const;
