// XenstoreClient over Debian's libxenstore.so.4 through koffi. Every libxenstore call runs through `.async` on a
// libuv worker (each is a blocking round trip to xenstored); calls spread over a small pool of handles because a
// handle serves one request at a time. Watches live on a handle of their own (bindings/xenstore-watches.ts).
//
// libxenstore never reconnects by itself. When xenstored goes away, a handle's next call fails (EPIPE when the
// request could not be written: it is retried once on a reopened handle; otherwise XsConnectionError); the watch
// handle notices on its own and comes back with every watch registered again (which fires each once).
// A call blocked in libxenstore holds one of libuv's worker threads (UV_THREADPOOL_SIZE, default 4): at most
// `handles` + 1 can be held at once, and only while xenstored does not answer.
import { EventEmitter } from 'node:events';
import koffi from 'koffi';
import type { Logger } from 'pino';
import {
  XsError,
  XsTimeoutError,
  type CallOptions,
  type Transaction,
  type Watch,
  type XenstoreClient,
} from '../src/xenstore/types.js';
import { XsConnectionError, abortReason, errnoName } from '../src/xenstore/errors.js';
import { runTransaction, type TxHandle } from '../src/xenstore/transaction.js';
import { DelegatingOps } from '../src/xenstore/ops-delegate.js';
import { callAsync, decodeCString, freeBlock, loadLibxenstore, type LibXenstore } from './xenstore-lib.js';
import { HandleSlot, openHandle } from './xenstore-handles.js';
import { FailedCall, LibOps, LibTx, checkDomid, type LibCall } from './xenstore-ops.js';
import { LibWatches } from './xenstore-watches.js';

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


class Cancelled {
  done = false;
}

export class LibXenstoreClient extends DelegatingOps(EventEmitter) implements XenstoreClient {
  private readonly lib: LibXenstore;
  private readonly pool: HandleSlot[] = [];
  private readonly watchSet: LibWatches;
  private readonly timeoutMs: number;
  private readonly minDelay: number;
  private readonly maxDelay: number;
  private readonly reconnectEnabled: boolean;
  private _closed = false;
  protected readonly root: LibOps;
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
    this.watchSet = new LibWatches(this, {
      path: opts.path,
      healthCheckMs: opts.healthCheckMs ?? 1000,
      reconnectEnabled: this.reconnectEnabled,
      minDelay: this.minDelay,
      maxDelay: this.maxDelay,
      logger: opts.logger,
      onEvent: (ev) => {
        if (this.listenerCount('watch')) this.emit('watch', ev);
      },
      onReconnected: () => this.emit('reconnected'),
      onConnectionLost: () => {
        for (const s of this.pool) void s.run(async () => s.kill());
      },
    });
  }

  get closed(): boolean {
    return this._closed;
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
  exec<T>(op: string, path: string | undefined, opts: CallOptions | undefined, fn: LibCall<T>, slot?: HandleSlot, txGeneration?: number): Promise<T> {
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
        if (s === this.watchSet.slot) {
          // Its watches went with it: reopen and register them all again (after this job, on the same queue).
          this.watchSet.onHandleLost();
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

  // ---- XsOps: read, tryRead, write, mkdir, rm, directory, getPerms, setPerms (DelegatingOps, to `root`) ----

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

  // ---- watches (bindings/xenstore-watches.ts) ---------------------------------------------------------------

  watch(path: string, token?: string, opts?: CallOptions): Promise<Watch> {
    return this.watchSet.watch(path, token, opts);
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
  resetWatches(_opts?: CallOptions): Promise<void> {
    return this.watchSet.closeAll();
  }
  control(args: string[], opts?: CallOptions): Promise<string> {
    if (args.length === 0) return Promise.reject(new XsError('EINVAL', 'control'));
    const rest = args.slice(1);
    const data = rest.length ? Buffer.from(rest.map((a) => a + '\0').join('')) : null;
    return this.exec('control', args[0], opts, (h) => this.stringCall(this.lib.xs_control_command, h, args[0], data, data ? data.length : 0));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this._closed = true;
    this.watchSet.shutdown();
    const slots = [...this.pool, ...(this.watchSet.slot ? [this.watchSet.slot] : [])];
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
