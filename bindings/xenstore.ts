// XenstoreClient over Debian's libxenstore.so.4 through koffi. Every libxenstore call runs through `.async` on a
// libuv worker (each is a blocking round trip to xenstored); calls spread over a small pool of handles because a
// handle serves one request at a time. Watches live on their own handle: libxenstore's reader thread queues
// events and makes xs_fileno() readable; that fd is polled with koffi.node.poll and drained with xs_check_watch.
//
// libxenstore never reconnects by itself. When xenstored goes away, a handle's next call fails (EPIPE when the
// request could not be written: it is retried once on a reopened handle; otherwise XsConnectionError), and the
// watch handle is checked every `healthCheckMs` (xs_check_watch reports EINVAL once its reader thread has seen the
// socket close): then it is reopened with backoff and every watch is registered again (which fires each once).
import { EventEmitter } from 'node:events';
import koffi from 'koffi';
import type { Logger } from 'pino';
import type { Perm, PermLetter } from '../src/xenstore/wire.js';
import { PAYLOAD_MAX } from '../src/xenstore/wire.js';
import {
  XsError,
  XsTimeoutError,
  type CallOptions,
  type Transaction,
  type Watch,
  type WatchEvent,
  type XenstoreClient,
  type XsOps,
} from '../src/xenstore/types.js';
import { XsConnectionError, abortReason, errnoName } from '../src/xenstore/errors.js';
import { runTransaction, type TxHandle } from '../src/xenstore/transaction.js';
import { WatchStream } from '../src/xenstore/watch-stream.js';
import {
  XS_PERM_READ,
  XS_PERM_WRITE,
  callAsync,
  copyBytes,
  decodeCString,
  decodeStrings,
  freeBlock,
  loadLibxenstore,
  type LibXenstore,
} from './xenstore-lib.js';
import { HandleSlot, openHandle } from './xenstore-handles.js';

export { LibxenstoreUnavailableError, loadLibxenstore } from './xenstore-lib.js';

export interface LibXenstoreOptions {
  /** Socket path; default: libxenstore's own lookup ($XENSTORED_PATH, $XENSTORED_RUNDIR/socket, /var/run/...). */
  path?: string;
  /** Handles in the pool for ordinary calls (default 4; each blocked call also holds one of libuv's worker threads). */
  handles?: number;
  timeoutMs?: number;
  /** How often the watch handle is checked for a lost connection, in ms (default 1000). */
  healthCheckMs?: number;
  reconnect?: { minDelayMs?: number; maxDelayMs?: number } | false;
  logger?: Logger;
  /** Library to load (default libxenstore.so.4). */
  library?: string;
}

/** errno values of a handle whose connection is gone. */
const CONNECTION_ERRNOS = new Set(['EBADF', 'EPIPE', 'ECONNRESET', 'ENOTCONN', 'ESHUTDOWN', 'ECONNREFUSED']);
const PERM_BITS: Record<PermLetter, number> = { n: 0, r: XS_PERM_READ, w: XS_PERM_WRITE, b: XS_PERM_READ | XS_PERM_WRITE };
const PERM_LETTERS: PermLetter[] = ['n', 'r', 'w', 'b'];

let tokenCounter = 0;

class Cancelled {
  done = false;
}

export class LibXenstoreClient extends EventEmitter implements XenstoreClient {
  private readonly lib: LibXenstore;
  private readonly pool: HandleSlot[] = [];
  private watchSlot: HandleSlot | undefined;
  private poller: ReturnType<typeof koffi.node.poll> | undefined;
  private pollGeneration = -1;
  private draining = false;
  private healthTimer: NodeJS.Timeout | undefined;
  private readonly watches = new Map<string, WatchStream[]>();
  private readonly timeoutMs: number;
  private readonly minDelay: number;
  private readonly maxDelay: number;
  private readonly reconnectEnabled: boolean;
  private reconnectingWatches = false;
  private closed = false;
  private readonly root: LibOps;
  readonly errnoTable: Record<string, number>;

  private constructor(private readonly opts: LibXenstoreOptions) {
    super();
    this.lib = loadLibxenstore(opts.library);
    this.errnoTable = koffi.os.errno;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.reconnectEnabled = opts.reconnect !== false;
    this.minDelay = (opts.reconnect || undefined)?.minDelayMs ?? 50;
    this.maxDelay = (opts.reconnect || undefined)?.maxDelayMs ?? 2000;
    const n = Math.max(1, Math.min(opts.handles ?? 4, 64));
    for (let i = 0; i < n; i++) this.pool.push(new HandleSlot(`pool${i}`, this.lib, opts.logger));
    this.root = new LibOps(this, undefined, 0);
  }

  /** Loads the library (LibxenstoreUnavailableError when missing) and opens one handle to check the server answers. */
  static async open(opts: LibXenstoreOptions = {}): Promise<LibXenstoreClient> {
    const c = new LibXenstoreClient(opts);
    const first = c.pool[0]!;
    const r = await openHandle(c.lib, opts.path);
    if (!r.ptr) {
      const where = opts.path ?? process.env.XENSTORED_PATH ?? 'the default xenstored socket';
      throw new XsError(errnoName(r.errno, c.errnoTable), 'xs_open', where);
    }
    first.adopt(r.ptr);
    return c;
  }

  // ---- handle management ----------------------------------------------------------------------------------

  private pickSlot(): HandleSlot {
    let best = this.pool[0]!;
    for (const s of this.pool) {
      if (s.stuck !== best.stuck ? !s.stuck : s.load < best.load) best = s;
    }
    return best;
  }

  /** Inside a job: makes sure the slot has a live handle, reopening with backoff until `deadline`. */
  private async ensureOpen(slot: HandleSlot, deadline: number, cancelled: Cancelled, op: string, path?: string): Promise<void> {
    let delay = this.minDelay;
    while (slot.ptr === undefined) {
      if (this.closed) throw new XsConnectionError(op, path, 'client closed');
      const r = await openHandle(this.lib, this.opts.path);
      if (r.ptr) {
        slot.adopt(r.ptr);
        return;
      }
      if (!this.reconnectEnabled) throw new XsConnectionError(op, path, `cannot connect to xenstored: ${errnoName(r.errno, this.errnoTable)}`);
      if (cancelled.done || Date.now() + delay > deadline) {
        throw new XsConnectionError(op, path, `cannot reconnect to xenstored: ${errnoName(r.errno, this.errnoTable)}`);
      }
      // Referenced: the caller is waiting for this call, so the process must not exit under it.
      await new Promise((res) => setTimeout(res, delay));
      delay = Math.min(delay * 2, this.maxDelay);
    }
  }

  /**
   * Runs one libxenstore call on a slot's queue with timeout and abort. `fn` returns the call's value, or a
   * FailedCall carrying errno. `txGeneration` pins a transaction's call to the handle generation it began in.
   */
  exec<T>(
    op: string,
    path: string | undefined,
    opts: CallOptions | undefined,
    fn: (h: bigint) => Promise<T | FailedCall>,
    slot?: HandleSlot,
    txGeneration?: number,
  ): Promise<T> {
    if (this.closed) return Promise.reject(new XsConnectionError(op, path, 'client is closed'));
    const signal = opts?.signal;
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    const timeoutMs = opts?.timeoutMs ?? this.timeoutMs;
    const deadline = Date.now() + timeoutMs;
    const s = slot ?? this.pickSlot();
    const cancelled = new Cancelled();
    const job = async (): Promise<T> => {
      if (cancelled.done) throw new XsConnectionError(op, path, 'cancelled');
      for (let attempt = 0; ; attempt++) {
        if (txGeneration !== undefined) {
          if (s.ptr === undefined || s.generation !== txGeneration) {
            throw new XsConnectionError(op, path, 'transaction lost: the connection to xenstored was reset');
          }
        } else {
          await this.ensureOpen(s, deadline, cancelled, op, path);
        }
        const r = await fn(s.ptr!);
        if (!(r instanceof FailedCall)) return r;
        const name = errnoName(r.errno, this.errnoTable);
        if (!CONNECTION_ERRNOS.has(name)) throw new XsError(name, op, path);
        this.opts.logger?.warn({ handle: s.name, errno: name, op }, 'xenstore(libxenstore): connection lost');
        await s.kill();
        if (s === this.watchSlot) {
          // Its watches went with it: reopen and register them all again (after this job, on the same queue).
          this.onWatchHandleLost();
          throw new XsConnectionError(op, path, `connection to xenstored lost (${name})`);
        }
        // EPIPE: the request never reached a server, so sending it again on a fresh handle cannot apply it twice.
        if (name !== 'EPIPE' || txGeneration !== undefined || attempt > 0 || !this.reconnectEnabled) {
          throw new XsConnectionError(op, path, `connection to xenstored lost (${name})`);
        }
      }
    };
    const running = s.run(job);
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const finish = (err: Error | undefined, v?: T) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(v as T);
      };
      const timer = setTimeout(() => {
        cancelled.done = true;
        // The call may still be blocked in libxenstore: steer new calls to other handles until it returns.
        s.stuck = true;
        running.finally(() => (s.stuck = false)).catch(() => undefined);
        finish(new XsTimeoutError(path !== undefined ? `${op} ${path}` : op, timeoutMs));
      }, timeoutMs);
      timer.unref();
      const onAbort = () => {
        cancelled.done = true;
        finish(abortReason(signal!));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      running.then(
        (v) => finish(undefined, v),
        (e: Error) => finish(e),
      );
    });
  }

  // ---- XsOps ----------------------------------------------------------------------------------------------

  read(path: string, opts?: CallOptions): Promise<string> {
    return this.root.read(path, opts);
  }
  tryRead(path: string, opts?: CallOptions): Promise<string | undefined> {
    return this.root.tryRead(path, opts);
  }
  write(path: string, value: string | Buffer, opts?: CallOptions): Promise<void> {
    return this.root.write(path, value, opts);
  }
  mkdir(path: string, opts?: CallOptions): Promise<void> {
    return this.root.mkdir(path, opts);
  }
  rm(path: string, opts?: CallOptions): Promise<void> {
    return this.root.rm(path, opts);
  }
  directory(path: string, opts?: CallOptions): Promise<string[]> {
    return this.root.directory(path, opts);
  }
  getPerms(path: string, opts?: CallOptions): Promise<Perm[]> {
    return this.root.getPerms(path, opts);
  }
  setPerms(path: string, perms: Perm[], opts?: CallOptions): Promise<void> {
    return this.root.setPerms(path, perms, opts);
  }

  async startTransaction(opts?: CallOptions): Promise<TxHandle> {
    const slot = this.pickSlot();
    let generation = 0;
    const id = await this.exec(
      'transaction_start',
      undefined,
      opts,
      async (h) => {
        const r = await callAsync<number>(this.lib.xs_transaction_start, h);
        generation = slot.generation;
        return r.value === 0 ? new FailedCall(r.errno) : r.value;
      },
      slot,
    );
    return new LibTx(this, slot, generation, id);
  }

  transaction<T>(body: (tx: Transaction) => Promise<T>, opts?: CallOptions & { retries?: number }): Promise<T> {
    return runTransaction((o) => this.startTransaction(o), body, opts);
  }

  // ---- watches --------------------------------------------------------------------------------------------

  async watch(path: string, token?: string, opts?: CallOptions): Promise<Watch> {
    const tok = token ?? `xsng-${process.pid}-${++tokenCounter}`;
    const slot = (this.watchSlot ??= new HandleSlot('watch', this.lib, this.opts.logger));
    const w = new WatchStream(path, tok, (ws) => this.unwatch(ws));
    const list = this.watches.get(tok);
    if (list) list.push(w);
    else this.watches.set(tok, [w]);
    try {
      await this.exec('watch', path, opts, (h) => this.boolCall(this.lib.xs_watch, h, path, tok), slot);
      await this.startPolling(slot);
    } catch (e) {
      this.forget(w);
      w.end();
      throw e;
    }
    this.armHealthCheck();
    return w;
  }

  private forget(w: WatchStream): void {
    const list = this.watches.get(w.token);
    if (!list) return;
    const i = list.indexOf(w);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.watches.delete(w.token);
  }

  private async unwatch(w: WatchStream): Promise<void> {
    this.forget(w);
    const slot = this.watchSlot;
    if (!slot || this.closed) return;
    try {
      await this.exec('unwatch', w.path, undefined, (h) => this.boolCall(this.lib.xs_unwatch, h, w.path, w.token), slot);
    } catch (e) {
      if (!(e instanceof XsError)) throw e;
      this.opts.logger?.debug({ err: e, path: w.path }, 'xenstore(libxenstore): unwatch failed');
    }
  }

  /** Polls the watch handle's xs_fileno() (once per handle generation). */
  private async startPolling(slot: HandleSlot): Promise<void> {
    let generation = 0;
    const fd = await this.exec(
      'xs_fileno',
      undefined,
      undefined,
      async (h) => {
        generation = slot.generation;
        return (await callAsync<number>(this.lib.xs_fileno, h)).value;
      },
      slot,
    );
    // Keyed by handle generation, not fd number: a reopened handle's pipe may reuse the old descriptor number.
    if (this.poller && this.pollGeneration === generation) return;
    this.poller?.close();
    this.poller = undefined;
    if (fd < 0) throw new XsError('EIO', 'xs_fileno');
    this.pollGeneration = generation;
    this.poller = koffi.node.poll(fd, { readable: true }, () => this.drain());
  }

  /** Takes every queued event off the watch handle; the poll is paused meanwhile (the fd stays readable until then). */
  private drain(): void {
    if (this.draining || !this.watchSlot) return;
    this.draining = true;
    this.poller?.stop();
    const slot = this.watchSlot;
    slot
      .run(async () => {
        for (;;) {
          const h = slot.ptr;
          if (h === undefined) return 'dead';
          const r = await callAsync<bigint | null>(this.lib.xs_check_watch, h);
          if (!r.value) {
            // EAGAIN: nothing more queued. Anything else: the reader thread saw the connection close.
            return errnoName(r.errno, this.errnoTable) === 'EAGAIN' ? 'empty' : 'dead';
          }
          let ev: string[];
          try {
            ev = decodeStrings(r.value, 2);
          } finally {
            freeBlock(this.lib, r.value);
          }
          this.dispatch(ev[0]!, ev[1]!);
        }
      })
      .then(
        (state) => {
          this.draining = false;
          if (state === 'dead') this.onWatchHandleLost();
          else if (!this.closed) this.poller?.start({ readable: true }, () => this.drain());
        },
        (err: unknown) => {
          this.draining = false;
          this.opts.logger?.error({ err }, 'xenstore(libxenstore): reading watch events failed');
        },
      );
  }

  private dispatch(path: string, token: string): void {
    const list = this.watches.get(token);
    const ev: WatchEvent = { path, token };
    if (list) {
      if (list.length === 1) list[0]!.push(ev);
      else {
        const matching = list.filter((w) => path === w.path || path.startsWith(w.path + '/'));
        for (const w of matching.length ? matching : list) w.push(ev);
      }
    }
    if (this.listenerCount('watch')) this.emit('watch', ev);
  }

  private armHealthCheck(): void {
    if (this.healthTimer || this.opts.healthCheckMs === 0) return;
    this.healthTimer = setInterval(() => {
      if (this.watches.size > 0 && !this.reconnectingWatches) this.drain();
    }, this.opts.healthCheckMs ?? 1000);
    this.healthTimer.unref();
  }

  private onWatchHandleLost(): void {
    if (this.closed || this.reconnectingWatches) return;
    this.opts.logger?.warn('xenstore(libxenstore): watch connection lost, reconnecting');
    this.poller?.close();
    this.poller = undefined;
    this.pollGeneration = -1;
    // The whole daemon most likely restarted: every pooled handle is stale too; they reopen on their next call.
    for (const s of this.pool) void s.run(async () => s.kill());
    if (!this.reconnectEnabled) {
      for (const list of this.watches.values()) for (const w of list) w.end(new XsConnectionError('watch', w.path, 'connection to xenstored lost'));
      this.watches.clear();
      return;
    }
    void this.reconnectWatches();
  }

  private async reconnectWatches(): Promise<void> {
    const slot = this.watchSlot!;
    this.reconnectingWatches = true;
    let delay = this.minDelay;
    try {
      while (!this.closed) {
        await slot.run(async () => slot.kill());
        const opened = await slot.run(async () => {
          // A watch() call may have reopened it meanwhile (its job runs ensureOpen).
          if (slot.ptr === undefined) {
            const r = await openHandle(this.lib, this.opts.path);
            if (r.ptr) slot.adopt(r.ptr);
          }
          return slot.ptr !== undefined;
        });
        if (opened && (await this.reregister(slot))) {
          await this.startPolling(slot);
          this.opts.logger?.info('xenstore(libxenstore): reconnected, watches re-registered');
          this.emit('reconnected');
          return;
        }
        // Not up yet, or it went down again while we registered: wait (referenced: the watches' owner expects them
        // back, as a live watch connection would keep the process up) and start over.
        await new Promise((res) => setTimeout(res, delay));
        delay = Math.min(delay * 2, this.maxDelay);
      }
    } catch (err) {
      this.opts.logger?.error({ err }, 'xenstore(libxenstore): reconnecting watches failed');
    } finally {
      this.reconnectingWatches = false;
    }
  }

  /** Registers every watch on the (new) watch handle; false when the connection was lost meanwhile. */
  private async reregister(slot: HandleSlot): Promise<boolean> {
    const generation = slot.generation;
    for (const list of [...this.watches.values()]) {
      for (const w of [...list]) {
        try {
          await this.exec('watch', w.path, undefined, (h) => this.boolCall(this.lib.xs_watch, h, w.path, w.token), slot);
          if (slot.generation !== generation) return false; // reopened under us: the earlier ones are gone
        } catch (err) {
          if (err instanceof XsConnectionError) return false;
          if (err instanceof XsError && err.errno === 'EEXIST') continue; // registered by a concurrent watch()
          this.opts.logger?.warn({ err, path: w.path }, 'xenstore(libxenstore): re-registering watch failed');
          this.forget(w);
          w.end(err);
        }
      }
    }
    return true;
  }

  // ---- domains and control -------------------------------------------------------------------------------

  getDomainPath(domid: number, opts?: CallOptions): Promise<string> {
    return this.exec('get_domain_path', String(domid), opts, (h) => this.stringCall(this.lib.xs_get_domain_path, h, checkDomid(domid)));
  }
  introduceDomain(domid: number, mfn: bigint | number, port: number, opts?: CallOptions): Promise<void> {
    return this.exec('introduce', String(domid), opts, (h) => this.boolCall(this.lib.xs_introduce_domain, h, checkDomid(domid), BigInt(mfn), port));
  }
  releaseDomain(domid: number, opts?: CallOptions): Promise<void> {
    return this.exec('release', String(domid), opts, (h) => this.boolCall(this.lib.xs_release_domain, h, checkDomid(domid)));
  }
  isDomainIntroduced(domid: number, opts?: CallOptions): Promise<boolean> {
    // libxenstore answers false both for "F" and for a failed call; it cannot tell them apart.
    return this.exec('is_domain_introduced', String(domid), opts, async (h) => (await callAsync<boolean>(this.lib.xs_is_domain_introduced, h, checkDomid(domid))).value);
  }
  resumeDomain(domid: number, opts?: CallOptions): Promise<void> {
    return this.exec('resume', String(domid), opts, (h) => this.boolCall(this.lib.xs_resume_domain, h, checkDomid(domid)));
  }
  setTarget(domid: number, target: number, opts?: CallOptions): Promise<void> {
    return this.exec('set_target', String(domid), opts, (h) => this.boolCall(this.lib.xs_set_target, h, checkDomid(domid), checkDomid(target)));
  }
  /** libxenstore has no RESET_WATCHES call: this removes every watch this client registered. */
  async resetWatches(_opts?: CallOptions): Promise<void> {
    const all = [...this.watches.values()].flat();
    await Promise.all(all.map((w) => w.close()));
  }
  control(args: string[], opts?: CallOptions): Promise<string> {
    if (args.length === 0) return Promise.reject(new XsError('EINVAL', 'control'));
    const rest = args.slice(1);
    const data = rest.length ? Buffer.from(rest.map((a) => a + '\0').join('')) : null;
    return this.exec('control', args[0], opts, (h) => this.stringCall(this.lib.xs_control_command, h, args[0], data, data ? data.length : 0));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.healthTimer) clearInterval(this.healthTimer);
    this.poller?.close();
    this.poller = undefined;
    for (const list of this.watches.values()) for (const w of list) w.end();
    this.watches.clear();
    const slots = [...this.pool, ...(this.watchSlot ? [this.watchSlot] : [])];
    // Closing waits behind each handle's queue; a call blocked forever (a server that never answers) must not hold
    // close() forever, so give up waiting after a short while.
    await Promise.race([
      Promise.all(slots.map((s) => s.run(async () => s.kill()))),
      new Promise((r) => setTimeout(r, 500).unref()),
    ]);
  }

  // ---- call helpers (used by LibOps) ----------------------------------------------------------------------

  async boolCall(fn: LibXenstore['xs_read'], ...args: unknown[]): Promise<void | FailedCall> {
    const r = await callAsync<boolean>(fn, ...args);
    return r.value ? undefined : new FailedCall(r.errno);
  }

  async stringCall(fn: LibXenstore['xs_read'], ...args: unknown[]): Promise<string | FailedCall> {
    const r = await callAsync<bigint | null>(fn, ...args);
    if (!r.value) return new FailedCall(r.errno);
    try {
      return decodeCString(r.value);
    } finally {
      freeBlock(this.lib, r.value);
    }
  }

  get library(): LibXenstore {
    return this.lib;
  }
}

/** A libxenstore call that returned NULL/false, with its errno. */
export class FailedCall {
  constructor(readonly errno: number) {}
}

function checkDomid(domid: number): number {
  if (!Number.isInteger(domid) || domid < 0 || domid > 0xffff) throw new XsError('EINVAL', 'domid', String(domid));
  return domid;
}

function checkPath(op: string, path: string): void {
  if (path.includes('\0')) throw new XsError('EINVAL', op, path.replace(/\0/g, '\\0'));
}

/** XsOps over libxenstore for one transaction id (0 = none). */
class LibOps implements XsOps {
  constructor(
    protected readonly c: LibXenstoreClient,
    protected readonly slot: HandleSlot | undefined,
    readonly txId: number,
    protected readonly txGeneration?: number,
  ) {}

  protected run<T>(op: string, path: string, opts: CallOptions | undefined, fn: (h: bigint) => Promise<T | FailedCall>): Promise<T> {
    try {
      checkPath(op, path);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.c.exec(op, path, opts, fn, this.slot, this.txGeneration);
  }

  read(path: string, opts?: CallOptions): Promise<string> {
    const lib = this.c.library;
    return this.run('read', path, opts, async (h) => {
      const len = [0];
      const r = await callAsync<bigint | null>(lib.xs_read, h, this.txId, path, len);
      if (!r.value) return new FailedCall(r.errno);
      try {
        return copyBytes(r.value, len[0]!).toString('utf8');
      } finally {
        freeBlock(lib, r.value);
      }
    });
  }

  async tryRead(path: string, opts?: CallOptions): Promise<string | undefined> {
    try {
      return await this.read(path, opts);
    } catch (e) {
      if (e instanceof XsError && e.errno === 'ENOENT') return undefined;
      throw e;
    }
  }

  write(path: string, value: string | Buffer, opts?: CallOptions): Promise<void> {
    const data = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
    return this.run('write', path, opts, (h) => this.c.boolCall(this.c.library.xs_write, h, this.txId, path, data, data.length));
  }

  mkdir(path: string, opts?: CallOptions): Promise<void> {
    return this.run('mkdir', path, opts, (h) => this.c.boolCall(this.c.library.xs_mkdir, h, this.txId, path));
  }

  rm(path: string, opts?: CallOptions): Promise<void> {
    return this.run('rm', path, opts, (h) => this.c.boolCall(this.c.library.xs_rm, h, this.txId, path));
  }

  directory(path: string, opts?: CallOptions): Promise<string[]> {
    const lib = this.c.library;
    // xs_directory itself falls back to DIRECTORY_PART on E2BIG.
    return this.run('directory', path, opts, async (h) => {
      const num = [0];
      const r = await callAsync<bigint | null>(lib.xs_directory, h, this.txId, path, num);
      if (!r.value) return new FailedCall(r.errno);
      try {
        return decodeStrings(r.value, num[0]!);
      } finally {
        freeBlock(lib, r.value);
      }
    });
  }

  getPerms(path: string, opts?: CallOptions): Promise<Perm[]> {
    const lib = this.c.library;
    return this.run('get_perms', path, opts, async (h) => {
      const num = [0];
      const r = await callAsync<bigint | null>(lib.xs_get_permissions, h, this.txId, path, num);
      if (!r.value) return new FailedCall(r.errno);
      try {
        const raw = copyBytes(r.value, num[0]! * 8);
        const out: Perm[] = [];
        for (let i = 0; i < num[0]!; i++) {
          out.push({ id: raw.readUInt32LE(i * 8), perm: PERM_LETTERS[raw.readUInt32LE(i * 8 + 4) & 3]! });
        }
        return out;
      } finally {
        freeBlock(lib, r.value);
      }
    });
  }

  setPerms(path: string, perms: Perm[], opts?: CallOptions): Promise<void> {
    if (perms.length === 0 || perms.length * 11 > PAYLOAD_MAX) return Promise.reject(new XsError('EINVAL', 'set_perms', path));
    const raw = Buffer.alloc(perms.length * 8);
    for (let i = 0; i < perms.length; i++) {
      const p = perms[i]!;
      const bits = PERM_BITS[p.perm];
      if (bits === undefined || !Number.isInteger(p.id) || p.id < 0) return Promise.reject(new XsError('EINVAL', 'set_perms', path));
      raw.writeUInt32LE(p.id, i * 8);
      raw.writeUInt32LE(bits, i * 8 + 4);
    }
    return this.run('set_perms', path, opts, (h) => this.c.boolCall(this.c.library.xs_set_permissions, h, this.txId, path, raw, perms.length));
  }
}

class LibTx extends LibOps implements TxHandle {
  constructor(c: LibXenstoreClient, slot: HandleSlot, generation: number, id: number) {
    super(c, slot, id, generation);
  }
  get id(): number {
    return this.txId;
  }
  end(commit: boolean, opts?: CallOptions): Promise<void> {
    return this.c.exec(
      'transaction_end',
      undefined,
      opts,
      (h) => this.c.boolCall(this.c.library.xs_transaction_end, h, this.txId, !commit),
      this.slot,
      this.txGeneration,
    );
  }
}
