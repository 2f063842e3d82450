// A minimal raw-protocol client for the sim xenstored tests: works over a unix socket or over an
// in-process connectAs() stream, pipelines with distinct req_ids, and keeps watch events in order.
import { connect } from 'node:net';
import type { Duplex } from 'node:stream';
import { Decoder, encode, MsgType, type Message } from '../../src/xenstore/wire.js';

export class XsError extends Error {
  constructor(readonly errno: string, what: string) {
    super(`${what}: ${errno}`);
  }
}

export interface Event {
  path: string;
  token: string;
}

export class WireClient {
  private readonly decoder = new Decoder({ maxPayload: 1 << 20 });
  private readonly waiting = new Map<number, (m: Message) => void>();
  private nextReq = 1;
  readonly events: Event[] = [];
  private eventWaiters: (() => void)[] = [];
  closed = false;
  private closeWaiters: (() => void)[] = [];
  /** Every frame received, in order (replies and events). */
  readonly frames: Message[] = [];

  constructor(readonly stream: Duplex) {
    stream.on('data', (chunk: Buffer) => {
      for (const m of this.decoder.push(chunk)) {
        this.frames.push(m);
        if (m.type === MsgType.WATCH_EVENT) {
          const [path = '', token = ''] = m.payload.toString('latin1').split('\0');
          this.events.push({ path, token });
          for (const w of this.eventWaiters.splice(0)) w();
          continue;
        }
        const w = this.waiting.get(m.reqId);
        if (w) {
          this.waiting.delete(m.reqId);
          w(m);
        }
      }
    });
    const onClose = () => {
      this.closed = true;
      for (const w of this.closeWaiters.splice(0)) w();
      for (const w of this.eventWaiters.splice(0)) w();
    };
    stream.on('end', onClose);
    stream.on('close', onClose);
    stream.on('error', () => undefined);
  }

  static socket(path: string): Promise<WireClient> {
    return new Promise((resolve, reject) => {
      const sock = connect(path);
      sock.once('connect', () => resolve(new WireClient(sock)));
      sock.once('error', reject);
    });
  }

  /** Sends one request and resolves with the raw reply frame. */
  raw(type: number, payload: Buffer | string, txId = 0, timeoutMs = 2000): Promise<Message> {
    const reqId = this.nextReq++;
    const body = typeof payload === 'string' ? Buffer.from(payload, 'latin1') : payload;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(reqId);
        reject(new Error(`no reply to type ${type} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(reqId, (m) => {
        clearTimeout(timer);
        resolve(m);
      });
      this.stream.write(encode({ type, reqId, txId, payload: body }));
    });
  }

  /** Request whose reply payload is returned as a latin1 string; ERROR replies reject with XsError. */
  async req(type: MsgType, payload: string, txId = 0): Promise<string> {
    const m = await this.raw(type, payload, txId);
    const text = m.payload.toString('latin1');
    if (m.type === MsgType.ERROR) throw new XsError(text.replace(/\0$/, ''), `${MsgType[type]} ${JSON.stringify(payload)}`);
    return text;
  }

  read(path: string, tx = 0): Promise<string> {
    return this.req(MsgType.READ, `${path}\0`, tx);
  }
  async write(path: string, value: string, tx = 0): Promise<void> {
    await this.req(MsgType.WRITE, `${path}\0${value}`, tx);
  }
  async mkdir(path: string, tx = 0): Promise<void> {
    await this.req(MsgType.MKDIR, `${path}\0`, tx);
  }
  async rm(path: string, tx = 0): Promise<void> {
    await this.req(MsgType.RM, `${path}\0`, tx);
  }
  async ls(path: string, tx = 0): Promise<string[]> {
    return splitList(await this.req(MsgType.DIRECTORY, `${path}\0`, tx));
  }
  async getPerms(path: string, tx = 0): Promise<string[]> {
    return splitList(await this.req(MsgType.GET_PERMS, `${path}\0`, tx));
  }
  async setPerms(path: string, perms: string[], tx = 0): Promise<void> {
    await this.req(MsgType.SET_PERMS, `${path}\0${perms.map((p) => `${p}\0`).join('')}`, tx);
  }
  async watch(path: string, token: string): Promise<void> {
    await this.req(MsgType.WATCH, `${path}\0${token}\0`);
  }
  async unwatch(path: string, token: string): Promise<void> {
    await this.req(MsgType.UNWATCH, `${path}\0${token}\0`);
  }
  async start(): Promise<number> {
    return Number((await this.req(MsgType.TRANSACTION_START, '\0')).replace(/\0$/, ''));
  }
  async end(tx: number, commit = true): Promise<void> {
    await this.req(MsgType.TRANSACTION_END, commit ? 'T\0' : 'F\0', tx);
  }
  async introduce(domid: number): Promise<void> {
    await this.req(MsgType.INTRODUCE, `${domid}\0${1000 + domid}\0${1}\0`);
  }
  async release(domid: number): Promise<void> {
    await this.req(MsgType.RELEASE, `${domid}\0`);
  }

  /** A round trip: every event queued before it has arrived once it resolves. */
  async sync(): Promise<void> {
    await this.req(MsgType.GET_DOMAIN_PATH, '0\0');
  }

  /** Takes the events received so far (after a sync). */
  async drainEvents(): Promise<Event[]> {
    await this.sync();
    return this.events.splice(0);
  }

  waitClosed(timeoutMs = 2000): Promise<boolean> {
    if (this.closed) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.closeWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  close(): void {
    this.stream.destroy();
  }
}

export function splitList(payload: string): string[] {
  const parts = payload.split('\0');
  parts.pop();
  return parts;
}

export async function errnoOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    if (err instanceof XsError) return err.errno;
    throw err;
  }
}
