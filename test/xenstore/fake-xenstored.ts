// A small scripted xenstored for the client's unit tests: enough of the protocol (a flat node map, coarse
// transactions, watches) to exercise the client, plus knobs to misbehave: never answer, answer out of order,
// drop connections. The real semantics are tested against the sim xenstored (src/sim/xenstored).
import net from 'node:net';
import { rmSync } from 'node:fs';
import { Decoder, MsgType, encode, splitStrings, type Message } from '../../src/xenstore/wire.js';

export interface FakeOptions {
  /** Never answer requests of these types. */
  silentTypes?: Set<MsgType>;
  /** Hold replies and send them in reverse order once this many are held. */
  reverseBatch?: number;
  /** Limit of a DIRECTORY reply in bytes before answering E2BIG (to exercise DIRECTORY_PART). */
  directoryLimit?: number;
  /** Bytes per DIRECTORY_PART slice. */
  partSize?: number;
  /** Answer the next N TRANSACTION_END T with EAGAIN. */
  conflicts?: number;
  /** Answer requests of these types this many ms late. */
  delayMs?: Map<MsgType, number>;
  /** Answer requests of these types with a header announcing a payload over 4096 bytes. */
  corruptTypes?: Set<MsgType>;
}

interface Conn {
  sock: net.Socket;
  watches: Array<{ path: string; token: string }>;
  held: Buffer[];
}

export class FakeXenstored {
  readonly nodes = new Map<string, { value: Buffer; perms: string[] }>([['/', { value: Buffer.alloc(0), perms: ['n0'] }]]);
  readonly received: Message[] = [];
  private readonly conns = new Set<Conn>();
  private server: net.Server | undefined;
  private nextTx = 1;
  private readonly txs = new Map<number, number>(); // tx id -> generation at start
  private generation = 0;

  constructor(public opts: FakeOptions = {}) {}

  async listen(path: string): Promise<this> {
    rmSync(path, { force: true });
    this.server = net.createServer((sock) => this.accept(sock));
    await new Promise<void>((res, rej) => {
      this.server!.once('error', rej);
      this.server!.listen(path, () => res());
    });
    return this;
  }

  /** Stops listening and drops every connection (as a crashing xenstored would). */
  async close(): Promise<void> {
    for (const c of this.conns) c.sock.destroy();
    this.conns.clear();
    if (this.server) await new Promise<void>((res) => this.server!.close(() => res()));
    this.server = undefined;
  }

  get connections(): number {
    return this.conns.size;
  }

  private accept(sock: net.Socket): void {
    const conn: Conn = { sock, watches: [], held: [] };
    this.conns.add(conn);
    const dec = new Decoder();
    sock.on('data', (chunk) => {
      for (const m of dec.push(chunk)) this.handle(conn, m);
    });
    sock.on('error', () => undefined);
    sock.on('close', () => this.conns.delete(conn));
  }

  private reply(conn: Conn, req: Message, type: MsgType, payload: Buffer | string): void {
    const delay = this.opts.delayMs?.get(req.type);
    if (delay !== undefined) setTimeout(() => this.sendReply(conn, req, type, payload), delay);
    else this.sendReply(conn, req, type, payload);
  }

  private sendReply(conn: Conn, req: Message, type: MsgType, payload: Buffer | string): void {
    if (this.opts.corruptTypes?.has(req.type)) {
      const bad = Buffer.alloc(16);
      bad.writeUInt32LE(type, 0);
      bad.writeUInt32LE(req.reqId, 4);
      bad.writeUInt32LE(100_000, 12);
      conn.sock.write(bad);
      return;
    }
    const buf = encode({ type, reqId: req.reqId, txId: req.txId, payload: typeof payload === 'string' ? Buffer.from(payload) : payload });
    const n = this.opts.reverseBatch;
    if (n) {
      conn.held.push(buf);
      if (conn.held.length >= n) {
        const all = conn.held.reverse();
        conn.held = [];
        conn.sock.write(Buffer.concat(all));
      }
      return;
    }
    conn.sock.write(buf);
  }

  private fire(path: string): void {
    for (const c of this.conns) {
      for (const w of c.watches) {
        if (path === w.path || path.startsWith(w.path + '/')) {
          c.sock.write(encode({ type: MsgType.WATCH_EVENT, reqId: 0, txId: 0, payload: Buffer.from(`${path}\0${w.token}\0`) }));
        }
      }
    }
  }

  private handle(conn: Conn, m: Message): void {
    this.received.push(m);
    if (this.opts.silentTypes?.has(m.type)) return;
    const err = (e: string) => this.reply(conn, m, MsgType.ERROR, `${e}\0`);
    const ok = () => this.reply(conn, m, m.type, 'OK\0');
    const args = splitStrings(m.payload);
    const path = args[0] ?? '';
    switch (m.type) {
      case MsgType.READ: {
        const n = this.nodes.get(path);
        return n ? this.reply(conn, m, m.type, n.value) : err('ENOENT');
      }
      case MsgType.WRITE: {
        const nul = m.payload.indexOf(0);
        this.nodes.set(path, { value: Buffer.from(m.payload.subarray(nul + 1)), perms: this.nodes.get(path)?.perms ?? ['n0'] });
        if (m.txId === 0) this.changed(path);
        return ok();
      }
      case MsgType.MKDIR:
        if (!this.nodes.has(path)) this.nodes.set(path, { value: Buffer.alloc(0), perms: ['n0'] });
        this.changed(path);
        return ok();
      case MsgType.RM: {
        if (!this.nodes.has(path)) return err('ENOENT');
        for (const k of [...this.nodes.keys()]) if (k === path || k.startsWith(path + '/')) this.nodes.delete(k);
        this.changed(path);
        return ok();
      }
      case MsgType.DIRECTORY:
      case MsgType.DIRECTORY_PART: {
        const prefix = path === '/' ? '/' : path + '/';
        const kids = [...this.nodes.keys()].filter((k) => k.startsWith(prefix) && k !== '/' && !k.slice(prefix.length).includes('/')).map((k) => k.slice(prefix.length));
        const all = Buffer.from(kids.map((k) => k + '\0').join(''));
        if (m.type === MsgType.DIRECTORY) {
          if (this.opts.directoryLimit !== undefined && all.length > this.opts.directoryLimit) return err('E2BIG');
          return this.reply(conn, m, m.type, all);
        }
        const off = Number(args[1]);
        const size = this.opts.partSize ?? 64;
        // Slices end on a child boundary; the last one carries an extra NUL.
        let end = off;
        while (end < all.length) {
          const next = all.indexOf(0, end) + 1;
          if (next - off > size && end > off) break;
          end = next;
        }
        const slice = all.subarray(off, end);
        const last = end >= all.length;
        return this.reply(conn, m, m.type, Buffer.concat([Buffer.from(`${this.generation}\0`), slice, last ? Buffer.from([0]) : Buffer.alloc(0)]));
      }
      case MsgType.GET_PERMS: {
        const n = this.nodes.get(path);
        return n ? this.reply(conn, m, m.type, n.perms.map((p) => p + '\0').join('')) : err('ENOENT');
      }
      case MsgType.SET_PERMS: {
        const n = this.nodes.get(path);
        if (!n) return err('ENOENT');
        n.perms = args.slice(1);
        return ok();
      }
      case MsgType.TRANSACTION_START: {
        const id = this.nextTx++;
        this.txs.set(id, this.generation);
        return this.reply(conn, m, m.type, `${id}\0`);
      }
      case MsgType.TRANSACTION_END: {
        if (!this.txs.has(m.txId)) return err('ENOENT');
        this.txs.delete(m.txId);
        if (path === 'T' && this.opts.conflicts) {
          this.opts.conflicts--;
          return err('EAGAIN');
        }
        return ok();
      }
      case MsgType.WATCH: {
        conn.watches.push({ path, token: args[1] ?? '' });
        ok();
        conn.sock.write(encode({ type: MsgType.WATCH_EVENT, reqId: 0, txId: 0, payload: Buffer.from(`${path}\0${args[1]}\0`) }));
        return;
      }
      case MsgType.UNWATCH: {
        const i = conn.watches.findIndex((w) => w.path === path && w.token === args[1]);
        if (i < 0) return err('ENOENT');
        conn.watches.splice(i, 1);
        return ok();
      }
      case MsgType.GET_DOMAIN_PATH:
        return this.reply(conn, m, m.type, `/local/domain/${path}\0`);
      case MsgType.IS_DOMAIN_INTRODUCED:
        return this.reply(conn, m, m.type, path === '0' ? 'T\0' : 'F\0');
      case MsgType.CONTROL:
        return this.reply(conn, m, m.type, 'OK\0');
      case MsgType.RESET_WATCHES:
        conn.watches = [];
        return ok();
      default:
        return err('ENOSYS');
    }
  }

  private changed(path: string): void {
    this.generation++;
    this.fire(path);
  }
}
