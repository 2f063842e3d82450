// A bare xenstore connection speaking raw frames through the project's codec (src/xenstore/wire.ts):
// no retries, no parsing beyond the header, so two servers can be compared byte for byte.
import { connect, type Socket } from 'node:net';
import { Decoder, encode, MsgType, type Message } from '../../../src/xenstore/wire.js';

export interface Reply {
  type: MsgType;
  reqId: number;
  txId: number;
  payload: Buffer;
}

export class RawConn {
  private readonly decoder = new Decoder({ maxPayload: 1 << 20 });
  private readonly waiting = new Map<number, { resolve: (m: Message) => void; reject: (e: Error) => void }>();
  private nextReqId = 1;
  private closedError: Error | undefined;
  /** Unsolicited WATCH_EVENT messages, in arrival order; the owner drains it. */
  events: Message[] = [];

  private constructor(private readonly sock: Socket) {
    sock.on('data', (chunk: Buffer) => {
      let msgs: Message[];
      try {
        msgs = this.decoder.push(chunk);
      } catch (err) {
        this.fail(err as Error);
        return;
      }
      for (const m of msgs) {
        if (m.type === MsgType.WATCH_EVENT) {
          this.events.push(m);
          continue;
        }
        const waiter = this.waiting.get(m.reqId);
        if (!waiter) {
          this.fail(new Error(`reply with unknown req_id ${m.reqId} (type ${m.type})`));
          return;
        }
        this.waiting.delete(m.reqId);
        waiter.resolve(m);
      }
    });
    sock.on('error', (err) => this.fail(err));
    sock.on('close', () => this.fail(new Error('connection closed by server')));
  }

  /**
   * Connects, retrying EAGAIN: the C xenstored listens with a backlog of 1, so a burst of connects
   * finds the queue full until it accepts.
   */
  static async connect(path: string, timeoutMs = 5000): Promise<RawConn> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await RawConn.connectOnce(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 1));
      }
    }
  }

  private static connectOnce(path: string): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const sock = connect(path);
      sock.once('connect', () => {
        sock.removeListener('error', reject);
        resolve(new RawConn(sock));
      });
      sock.once('error', reject);
    });
  }

  private fail(err: Error): void {
    if (this.closedError) return;
    this.closedError = err;
    const waiters = [...this.waiting.values()];
    this.waiting.clear();
    for (const w of waiters) w.reject(err);
  }

  get closed(): boolean {
    return this.closedError !== undefined;
  }

  /** Sends one request and resolves with the reply carrying its req_id. */
  request(type: MsgType, payload: Buffer, txId = 0, reqId = this.nextReqId++): Promise<Reply> {
    if (this.closedError) return Promise.reject(this.closedError);
    return new Promise<Reply>((resolve, reject) => {
      this.waiting.set(reqId >>> 0, { resolve, reject });
      this.sock.write(encode({ type, reqId, txId, payload }));
    });
  }

  /** Writes bytes as they are (malformed frames, pipelined batches). */
  writeRaw(bytes: Buffer): void {
    this.sock.write(bytes);
  }

  takeEvents(): Message[] {
    const out = this.events;
    this.events = [];
    return out;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.sock.destroyed) return resolve();
      this.sock.once('close', () => resolve());
      this.sock.end();
      this.sock.destroy();
    });
  }
}
