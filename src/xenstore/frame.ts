// Request frames built in one allocation (header + payload written in place), and reply payload parsers.
// The client sends many small requests; building them without intermediate Buffers matters for throughput.
import { HEADER_SIZE, PAYLOAD_MAX, MsgType, parsePerm, type Perm } from './wire.js';
import { XsError } from './types.js';
import { XsProtocolError } from './errors.js';

/**
 * A request frame with req_id 0 (the channel stamps the real one): `s1\0` then `s2\0` when given, then `raw`
 * without a terminator (WRITE's value, CONTROL's argument block). Rejects NULs inside strings and payloads over
 * XENSTORE_PAYLOAD_MAX, as libxenstore does before sending.
 */
export function buildFrame(
  type: MsgType,
  txId: number,
  op: string,
  s1: string,
  s2?: string,
  raw?: string | Buffer,
): Buffer {
  if (s1.includes('\0') || (s2 !== undefined && s2.includes('\0'))) throw new XsError('EINVAL', op, s1.replace(/\0/g, '\\0'));
  const l1 = Buffer.byteLength(s1);
  const l2 = s2 === undefined ? -1 : Buffer.byteLength(s2);
  const lr = raw === undefined ? 0 : typeof raw === 'string' ? Buffer.byteLength(raw) : raw.length;
  const len = l1 + 1 + (l2 + 1) + lr;
  if (len > PAYLOAD_MAX) throw new XsError('E2BIG', op, s1.length > 200 ? s1.slice(0, 200) + '...' : s1);
  const buf = Buffer.allocUnsafe(HEADER_SIZE + len);
  buf.writeUInt32LE(type, 0);
  buf.writeUInt32LE(0, 4);
  buf.writeUInt32LE(txId >>> 0, 8);
  buf.writeUInt32LE(len, 12);
  let off = HEADER_SIZE;
  off += buf.write(s1, off, 'utf8');
  buf[off++] = 0;
  if (s2 !== undefined) {
    off += buf.write(s2, off, 'utf8');
    buf[off++] = 0;
  }
  if (raw !== undefined) {
    if (typeof raw === 'string') buf.write(raw, off, 'utf8');
    else raw.copy(buf, off);
  }
  return buf;
}

/** `value\0` or `value` (servers differ on the terminator of single-string replies) to `value`. */
export function replyString(payload: Buffer): string {
  const end = payload.length > 0 && payload[payload.length - 1] === 0 ? payload.length - 1 : payload.length;
  return payload.toString('utf8', 0, end);
}

/** `a\0b\0` to ['a','b']. */
export function replyStrings(payload: Buffer): string[] {
  if (payload.length === 0) return [];
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i < payload.length; i++) {
    if (payload[i] === 0) {
      out.push(payload.toString('utf8', start, i));
      start = i + 1;
    }
  }
  if (start < payload.length) out.push(payload.toString('utf8', start));
  return out;
}

export function replyPerms(payload: Buffer, op: string, path: string): Perm[] {
  try {
    return replyStrings(payload).map(parsePerm);
  } catch (e) {
    throw new XsProtocolError(op, path, (e as Error).message);
  }
}

/**
 * One DIRECTORY_PART reply: `generation\0` then a slice of the `child\0child\0` list; the last slice ends with an
 * extra `\0`. Returns the generation, the children in this slice, and whether it was the last.
 */
export function parseDirectoryPart(payload: Buffer, op: string, path: string): { generation: string; children: string[]; done: boolean; bytes: number } {
  const genEnd = payload.indexOf(0);
  if (genEnd < 0) throw new XsProtocolError(op, path, 'DIRECTORY_PART reply without generation');
  const generation = payload.toString('utf8', 0, genEnd);
  const data = payload.subarray(genEnd + 1);
  // Final slice: empty data (empty directory), a lone NUL, or data ending in two NULs.
  const done = data.length <= 1 || (data[data.length - 1] === 0 && data[data.length - 2] === 0);
  const list = done && data.length >= 1 ? data.subarray(0, data.length - 1) : data;
  return { generation, children: replyStrings(list), done, bytes: data.length };
}

export function permString(perms: Perm[]): string {
  if (perms.length === 0) throw new XsError('EINVAL', 'set_perms');
  let s = '';
  for (let i = 0; i < perms.length; i++) {
    const p = perms[i]!;
    if (!/^[nrwb]$/.test(p.perm) || !Number.isInteger(p.id) || p.id < 0) throw new XsError('EINVAL', 'set_perms');
    s += (i ? '\0' : '') + p.perm + p.id;
  }
  return s;
}
