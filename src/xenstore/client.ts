// The daemon's pure-Node xenstore client: speaks the wire protocol over a unix socket (or any Duplex, such as the
// sim xenstored's per-domain connections), many requests in flight, watches as async iterators and 'watch'
// events, reconnection with re-registered watches after xenstored restarts.
import { EventEmitter } from 'node:events';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { MsgType, type Perm } from './wire.js';
import {
  XsError,
  defaultSocketPath,
  type CallOptions,
  type Transaction,
  type Watch,
  type WatchEvent,
  type XenstoreClient,
  type XsOps,
} from './types.js';
import { Channel, type ReconnectPolicy } from './channel.js';
import { XsConnectionError, XsProtocolError } from './errors.js';
import { buildFrame, parseDirectoryPart, permString, replyPerms, replyString, replyStrings } from './frame.js';
import { runTransaction, type TxHandle } from './transaction.js';
import { WatchStream } from './watch-stream.js';
import { DelegatingOps, tryReadVia } from './ops-delegate.js';
import { WatchRegistry } from './watch-registry.js';

export interface XsClientOptions {
  /** Unix socket of xenstored; default defaultSocketPath() ($XENSTORED_PATH, $XENSTORED_RUNDIR/socket, /var/run/...). */
  path?: string;
  /** Opens the connection instead of a unix socket (e.g. `() => simXenstored.connectAs(domid)`); used on every reconnect. */
  stream?: () => Duplex | Promise<Duplex>;
  /** Default per-call timeout in ms (30 s). */
  timeoutMs?: number;
  /** Reconnection backoff; false fails every call once the connection is lost. Default 50 ms doubling to 2 s. */
  reconnect?: Partial<ReconnectPolicy> | false;
  logger?: Logger;
}

export const DEFAULT_TIMEOUT_MS = 30_000;

function connectUnix(path: string): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection(path);
    const onError = (err: Error) => {
      s.destroy();
      reject(err);
    };
    s.once('error', onError);
    s.once('connect', () => {
      s.off('error', onError);
      resolve(s);
    });
  });
}

/** XsOps bound to one transaction id (0 = none). */
class Ops implements XsOps {
  constructor(
    protected readonly ch: Channel,
    readonly txId: number,
    /** Channel generation the transaction was opened in; 0 outside transactions. */
    protected readonly txGeneration: number,
  ) {}

  /** One request in this transaction: `path\0[s2\0][raw]`. */
  send(type: MsgType, op: string, path: string, opts: CallOptions | undefined, s2?: string, raw?: string | Buffer): Promise<Buffer>;
  send<T>(type: MsgType, op: string, path: string, opts: CallOptions | undefined, s2: string | undefined, raw: string | Buffer | undefined, parse: (b: Buffer) => T): Promise<T>;
  send<T>(type: MsgType, op: string, path: string, opts: CallOptions | undefined, s2?: string, raw?: string | Buffer, parse?: (b: Buffer) => T): Promise<T | Buffer> {
    let frame: Buffer;
    try {
      frame = buildFrame(type, this.txId, op, path, s2, raw);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.ch.request(type, this.txGeneration, frame, op, path, opts, parse);
  }

  read(path: string, opts?: CallOptions): Promise<string> {
    return this.send(MsgType.READ, 'read', path, opts, undefined, undefined, asUtf8);
  }

  tryRead(path: string, opts?: CallOptions): Promise<string | undefined> {
    return tryReadVia(this, path, opts);
  }

  write(path: string, value: string | Buffer, opts?: CallOptions): Promise<void> {
    return this.send(MsgType.WRITE, 'write', path, opts, undefined, value, ignore);
  }

  mkdir(path: string, opts?: CallOptions): Promise<void> {
    return this.send(MsgType.MKDIR, 'mkdir', path, opts, undefined, undefined, ignore);
  }

  rm(path: string, opts?: CallOptions): Promise<void> {
    return this.send(MsgType.RM, 'rm', path, opts, undefined, undefined, ignore);
  }

  async directory(path: string, opts?: CallOptions): Promise<string[]> {
    try {
      return replyStrings(await this.send(MsgType.DIRECTORY, 'directory', path, opts));
    } catch (e) {
      // Like libxenstore: a listing too large for one reply is fetched in parts.
      if (e instanceof XsError && e.errno === 'E2BIG') return this.directoryPart(path, opts);
      throw e;
    }
  }

  private async directoryPart(path: string, opts?: CallOptions): Promise<string[]> {
    let children: string[] = [];
    let generation: string | undefined;
    let offset = 0;
    for (let rounds = 0; rounds < 10_000; rounds++) {
      let payload: Buffer;
      try {
        payload = await this.send(MsgType.DIRECTORY_PART, 'directory_part', path, opts, String(offset));
      } catch (e) {
        // A server without DIRECTORY_PART: the listing is simply too big.
        if (e instanceof XsError && e.errno === 'ENOSYS') throw new XsError('E2BIG', 'directory', path);
        throw e;
      }
      const part = parseDirectoryPart(payload, 'directory_part', path);
      if (generation !== undefined && part.generation !== generation) {
        // The directory changed between parts: start again.
        children = [];
        offset = 0;
        generation = undefined;
        continue;
      }
      generation = part.generation;
      for (const c of part.children) children.push(c);
      if (part.done) return children;
      if (part.bytes === 0) throw new XsProtocolError('directory_part', path, 'empty non-final part');
      offset += part.bytes;
    }
    throw new XsProtocolError('directory_part', path, 'too many parts');
  }

  getPerms(path: string, opts?: CallOptions): Promise<Perm[]> {
    return this.send(MsgType.GET_PERMS, 'get_perms', path, opts, undefined, undefined, (p) => replyPerms(p, 'get_perms', path));
  }

  setPerms(path: string, perms: Perm[], opts?: CallOptions): Promise<void> {
    let s: string;
    try {
      s = permString(perms);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.send(MsgType.SET_PERMS, 'set_perms', path, opts, undefined, s + '\0', ignore);
  }
}

class Tx extends Ops implements TxHandle {
  get id(): number {
    return this.txId;
  }

  end(commit: boolean, opts?: CallOptions): Promise<void> {
    return this.send(MsgType.TRANSACTION_END, 'transaction_end', commit ? 'T' : 'F', opts, undefined, undefined, ignore);
  }
}

function asUtf8(b: Buffer): string {
  return b.toString('utf8');
}
function ignore(): void {}

let tokenCounter = 0;

export interface XsClientEvents {
  watch: [WatchEvent];
  reconnected: [];
  closed: [Error];
}

export class XsClient extends DelegatingOps(EventEmitter<XsClientEvents>) implements XenstoreClient {
  private readonly ch: Channel;
  protected readonly root: Ops;
  private readonly watches = new WatchRegistry();
  private readonly logger?: Logger;

  private constructor(opts: XsClientOptions) {
    super();
    this.logger = opts.logger;
    const path = opts.path ?? defaultSocketPath();
    const factory = opts.stream;
    const reconnect: ReconnectPolicy | false =
      opts.reconnect === false ? false : { minDelayMs: 50, maxDelayMs: 2000, ...(opts.reconnect ?? {}) };
    this.ch = new Channel({
      open: factory ? async () => factory() : () => connectUnix(path),
      describe: factory ? 'stream' : path,
      timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      reconnect,
      logger: opts.logger,
      onWatchEvent: (p, t) => this.onWatchEvent(p, t),
      onReconnected: () => this.reregisterWatches(),
      onClosed: (err) => {
        this.watches.endAll();
        this.emit('closed', err);
      },
    });
    this.root = new Ops(this.ch, 0, 0);
  }

  /** Connects (the first attempt's failure is thrown, e.g. ENOENT when no xenstored listens) and returns the client. */
  static async connect(opts: XsClientOptions = {}): Promise<XsClient> {
    const c = new XsClient(opts);
    await c.ch.start();
    return c;
  }

  get connected(): boolean {
    return this.ch.connected;
  }

  // read, tryRead, write, mkdir, rm, directory, getPerms, setPerms: DelegatingOps, to `root`.

  /** Opens a transaction by hand (transaction() is usually what you want: it retries on EAGAIN). */
  async startTransaction(opts?: CallOptions): Promise<TxHandle> {
    const generation = this.ch.generation;
    const payload = await this.ch.request(MsgType.TRANSACTION_START, 0, buildFrame(MsgType.TRANSACTION_START, 0, 'transaction_start', ''), 'transaction_start', undefined, opts);
    const id = Number.parseInt(replyString(payload), 10);
    if (!Number.isInteger(id) || id <= 0) throw new XsProtocolError('transaction_start', undefined, `bad transaction id ${JSON.stringify(replyString(payload))}`);
    // The reply came on the current connection; if it reconnected meanwhile the id is already void.
    return new Tx(this.ch, id, this.ch.generation === generation ? generation : -1);
  }

  transaction<T>(body: (tx: Transaction) => Promise<T>, opts?: CallOptions & { retries?: number }): Promise<T> {
    return runTransaction((o) => this.startTransaction(o), body, opts);
  }

  async watch(path: string, token?: string, opts?: CallOptions): Promise<Watch> {
    const tok = token ?? `xsng-${process.pid}-${++tokenCounter}`;
    const w = new WatchStream(path, tok, (ws) => this.unwatch(ws));
    // Registered locally first: the initial event may arrive before the WATCH reply.
    this.watches.add(w);
    try {
      await this.root.send(MsgType.WATCH, 'watch', path, opts, tok);
    } catch (e) {
      this.watches.forget(w);
      w.end();
      // Timed out or aborted after sending: the server may have registered it, so take it back.
      if (!(e instanceof XsError) && this.ch.connected) {
        this.root.send(MsgType.UNWATCH, 'unwatch', path, undefined, tok).catch(() => undefined);
      }
      throw e;
    }
    return w;
  }

  private async unwatch(w: WatchStream): Promise<void> {
    this.watches.forget(w);
    if (!this.ch.connected) return; // re-registration will simply not include it
    try {
      await this.root.send(MsgType.UNWATCH, 'unwatch', w.path, undefined, w.token);
    } catch (e) {
      // Already gone on the server (reset, restart): nothing left to undo.
      if (!(e instanceof XsError)) throw e;
      this.logger?.debug({ err: e, path: w.path }, 'xenstore: unwatch failed');
    }
  }

  private onWatchEvent(path: string, token: string): void {
    const list = this.watches.get(token);
    const ev: WatchEvent = { path, token };
    if (list) {
      if (list.length === 1) list[0]!.push(ev);
      else {
        // Same token on several paths: deliver to the watches the path falls under (all of them if none match,
        // e.g. relative or special paths).
        const matching = list.filter((w) => isUnder(w.path, path));
        for (const w of matching.length ? matching : list) w.push(ev);
      }
    }
    if (this.listenerCount('watch')) this.emit('watch', ev);
  }

  private reregisterWatches(): void {
    for (const list of this.watches.lists()) {
      for (const w of list) {
        this.root.send(MsgType.WATCH, 'watch', w.path, undefined, w.token).catch((err: unknown) => {
          // Lost again (a server dying as we connected): the next reconnection registers it again.
          if (err instanceof XsConnectionError) return;
          this.logger?.warn({ err, path: w.path, token: w.token }, 'xenstore: re-registering watch after reconnect failed');
          this.watches.forget(w);
          w.end(err);
        });
      }
    }
    this.emit('reconnected');
  }

  async getDomainPath(domid: number, opts?: CallOptions): Promise<string> {
    return replyString(await this.root.send(MsgType.GET_DOMAIN_PATH, 'get_domain_path', domidString(domid), opts));
  }
  async introduceDomain(domid: number, mfn: bigint | number, port: number, opts?: CallOptions): Promise<void> {
    await this.root.send(MsgType.INTRODUCE, 'introduce', domidString(domid), opts, String(mfn), `${port}\0`);
  }
  async releaseDomain(domid: number, opts?: CallOptions): Promise<void> {
    await this.root.send(MsgType.RELEASE, 'release', domidString(domid), opts);
  }
  async isDomainIntroduced(domid: number, opts?: CallOptions): Promise<boolean> {
    return replyString(await this.root.send(MsgType.IS_DOMAIN_INTRODUCED, 'is_domain_introduced', domidString(domid), opts)) !== 'F';
  }
  async resumeDomain(domid: number, opts?: CallOptions): Promise<void> {
    await this.root.send(MsgType.RESUME, 'resume', domidString(domid), opts);
  }
  async setTarget(domid: number, target: number, opts?: CallOptions): Promise<void> {
    await this.root.send(MsgType.SET_TARGET, 'set_target', domidString(domid), opts, domidString(target));
  }
  resetWatches(opts?: CallOptions): Promise<void> {
    return this.root.send(MsgType.RESET_WATCHES, 'reset_watches', '', opts).then(() => {
      // The server dropped every watch of this connection: end the local iterators too.
      this.watches.endAll();
    });
  }
  /** CONTROL: `args[0]\0args[1]\0...`; the reply string (e.g. "OK"). */
  control(args: string[], opts?: CallOptions): Promise<string> {
    if (args.length === 0) return Promise.reject(new XsError('EINVAL', 'control'));
    const rest = args.slice(1);
    return this.root.send(MsgType.CONTROL, 'control', args[0]!, opts, undefined, rest.length ? rest.join('\0') + '\0' : undefined, replyString);
  }

  close(): Promise<void> {
    return this.ch.close();
  }
}

function domidString(domid: number): string {
  if (!Number.isInteger(domid) || domid < 0 || domid > 0xffff) throw new XsError('EINVAL', 'domid', String(domid));
  return String(domid);
}

function isUnder(watchPath: string, path: string): boolean {
  return path === watchPath || (path.startsWith(watchPath) && (watchPath.endsWith('/') || path[watchPath.length] === '/'));
}
