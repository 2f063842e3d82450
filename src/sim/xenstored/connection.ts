// One client of the xenstored: a unix-socket client (always dom0, no domain) or an in-process connection
// speaking as a domain. Frames requests out of the byte stream, queues replies and watch events, and
// writes everything queued in one write per burst.
import { HEADER_SIZE, MsgType, PAYLOAD_MAX } from '../../xenstore/wire.js';
import type { Domain } from './domains.js';
import type { Requester } from './perms.js';
import type { Transaction } from './transaction.js';
import type { Watch } from './watches.js';

export interface ConnectionSink {
  write(data: Buffer): void;
  /** Closes the transport; called once. */
  close(): void;
}

export interface RequestHandler {
  (conn: Connection, type: number, reqId: number, txId: number, payload: Buffer): void;
}

/** A little-endian u32 (of `value >>> 0`, as the header fields are unsigned) at `off`. */
function putU32(buf: Buffer, off: number, value: number): void {
  buf[off] = value;
  buf[off + 1] = value >>> 8;
  buf[off + 2] = value >>> 16;
  buf[off + 3] = value >>> 24;
}

export class Connection implements Requester {
  readonly watches: Watch[] = [];
  readonly transactions = new Map<number, Transaction>();
  nextTxId = 0;
  /** The transaction of the request being processed (set only while processing it). */
  transaction: Transaction | null = null;
  /** No more requests are processed nor replies queued. */
  closed = false;
  private transportClosed = false;

  private pending: Buffer | undefined;
  private out: Buffer[] = [];
  private outBytes = 0;
  /** Watch events queued and not yet written: an identical one is not queued twice. */
  private queuedEvents = new Set<string>();
  /** Header of the request being answered: replies echo its req_id and tx_id. */
  private reqId = 0;
  private txId = 0;

  constructor(
    /** domid the connection acts as (0 for sockets). */
    readonly id: number,
    /** The domain it belongs to; null for socket connections (tools in dom0). */
    readonly domain: Domain | null,
    private readonly sink: ConnectionSink,
    private readonly onDirty: (conn: Connection) => void,
  ) {
    this.privileged = !domain || domain.domid === 0;
  }

  /** Socket connections and dom0's: every permission check passes. */
  readonly privileged: boolean;

  /** The connection is its own Requester: permission checks allocate nothing per request. */
  get requester(): Requester {
    return this;
  }

  /** A domain's SET_TARGET (read live: it may be set after the connection exists). */
  get target(): number | undefined {
    return this.domain?.target;
  }

  /**
   * Feeds received bytes (the first `end` of `chunk`, which is only read until this returns); runs
   * `handle` for each complete request. Returns a reason when the stream is unusable (a length over
   * XENSTORE_PAYLOAD_MAX: it cannot be resynchronised) and the caller drops the connection.
   */
  feed(chunk: Buffer, handle: RequestHandler, end = chunk.length): string | undefined {
    let buf = chunk;
    if (this.pending) {
      buf = Buffer.concat([this.pending, chunk.subarray(0, end)]);
      end = buf.length;
      this.pending = undefined;
    }
    let off = 0;
    while (!this.closed && end - off >= HEADER_SIZE) {
      const len = buf.readUInt32LE(off + 12);
      if (len > PAYLOAD_MAX) return `request payload length ${len} exceeds ${PAYLOAD_MAX}`;
      if (end - off < HEADER_SIZE + len) break;
      const type = buf.readUInt32LE(off);
      this.reqId = buf.readUInt32LE(off + 4);
      this.txId = buf.readUInt32LE(off + 8);
      const payload = buf.subarray(off + HEADER_SIZE, off + HEADER_SIZE + len);
      off += HEADER_SIZE + len;
      handle(this, type, this.reqId, this.txId, payload);
    }
    if (off < end && !this.closed) this.pending = Buffer.from(buf.subarray(off, end));
    return undefined;
  }

  /** Bytes of a request not yet complete. */
  get partialBytes(): number {
    return this.pending?.length ?? 0;
  }

  /** A frame with its header filled in and `len` payload bytes left to fill. */
  private frame(type: number, reqId: number, txId: number, len: number): Buffer {
    const frame = Buffer.allocUnsafe(HEADER_SIZE + len);
    putU32(frame, 0, type);
    putU32(frame, 4, reqId);
    putU32(frame, 8, txId);
    putU32(frame, 12, len);
    return frame;
  }

  private queue(frame: Buffer): void {
    if (this.out.length === 0) this.onDirty(this);
    this.out.push(frame);
    this.outBytes += frame.length;
  }

  private push(type: number, reqId: number, txId: number, payload: string | Buffer): void {
    // Strings are latin1 (one byte per char): their length is their byte length.
    const frame = this.frame(type, reqId, txId, payload.length);
    if (typeof payload === 'string') frame.write(payload, HEADER_SIZE, 'latin1');
    else frame.set(payload, HEADER_SIZE);
    this.queue(frame);
  }

  /** send_reply: answers the current request; a payload over the maximum becomes E2BIG. */
  reply(type: MsgType, payload: string | Buffer): void {
    if (this.closed) return;
    if (payload.length > PAYLOAD_MAX) {
      this.error('E2BIG');
      return;
    }
    this.push(type, this.reqId, this.txId, payload);
  }

  /** reply(type, 'OK\0'), the most common reply, without encoding the string each time. */
  ack(type: MsgType): void {
    if (this.closed) return;
    const frame = this.frame(type, this.reqId, this.txId, 3);
    frame[HEADER_SIZE] = 0x4f; // 'O'
    frame[HEADER_SIZE + 1] = 0x4b; // 'K'
    frame[HEADER_SIZE + 2] = 0;
    this.queue(frame);
  }

  error(errno: string): void {
    this.push(MsgType.ERROR, this.reqId, this.txId, `${errno}\0`);
  }

  /** send_event: queued after whatever is queued already; dropped when too long or already queued. */
  queueEvent(path: string, token: string): void {
    if (this.closed) return;
    const body = `${path}\0${token}\0`;
    if (body.length > PAYLOAD_MAX) return;
    if (path[0] !== '@') {
      if (this.queuedEvents.has(body)) return;
      this.queuedEvents.add(body);
    }
    this.push(MsgType.WATCH_EVENT, 0, 0, body);
  }

  /** Everything queued, as one buffer (and forgets it). */
  takeOutput(): Buffer | undefined {
    if (this.out.length === 0) return undefined;
    const data = this.out.length === 1 ? this.out[0]! : Buffer.concat(this.out, this.outBytes);
    this.out = [];
    this.outBytes = 0;
    if (this.queuedEvents.size) this.queuedEvents.clear();
    return data;
  }

  write(data: Buffer): void {
    if (!this.transportClosed) this.sink.write(data);
  }

  /** Drops queued output (ignore_connection frees buffered data). */
  discardOutput(): void {
    this.out = [];
    this.outBytes = 0;
    this.queuedEvents.clear();
  }

  closeTransport(): void {
    this.closed = true;
    this.pending = undefined;
    if (this.transportClosed) return;
    this.transportClosed = true;
    this.sink.close();
  }
}
