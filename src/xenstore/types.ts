// The one xenstore client interface of the daemon. Two transports implement it: the pure-Node socket
// client (src/xenstore/client.ts) and libxenstore through koffi (bindings/xenstore.ts).
import type { Perm, XsErrno } from './wire.js';

/** A xenstored ERROR reply, typed by its errno name (ENOENT, EACCES, EAGAIN, E2BIG, EQUOTA, ...). */
export class XsError extends Error {
  constructor(
    readonly errno: XsErrno | string,
    readonly op: string,
    readonly path?: string,
  ) {
    super(`xenstore ${op}${path !== undefined ? ` ${path}` : ''}: ${errno}`);
    this.name = 'XsError';
  }
}

/** The call did not get an answer within its timeout. */
export class XsTimeoutError extends Error {
  constructor(readonly op: string, readonly timeoutMs: number) {
    super(`xenstore ${op}: no reply within ${timeoutMs} ms`);
    this.name = 'XsTimeoutError';
  }
}

export interface CallOptions {
  /** Milliseconds before the call fails with XsTimeoutError (default: the client's). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface WatchEvent {
  path: string;
  token: string;
}

/** Operations available both outside and inside a transaction. */
export interface XsOps {
  read(path: string, opts?: CallOptions): Promise<string>;
  /** read() that answers undefined for ENOENT instead of throwing. */
  tryRead(path: string, opts?: CallOptions): Promise<string | undefined>;
  write(path: string, value: string | Buffer, opts?: CallOptions): Promise<void>;
  mkdir(path: string, opts?: CallOptions): Promise<void>;
  rm(path: string, opts?: CallOptions): Promise<void>;
  directory(path: string, opts?: CallOptions): Promise<string[]>;
  getPerms(path: string, opts?: CallOptions): Promise<Perm[]>;
  setPerms(path: string, perms: Perm[], opts?: CallOptions): Promise<void>;
}

export interface Transaction extends XsOps {
  readonly id: number;
}

export interface Watch extends AsyncIterable<WatchEvent> {
  readonly path: string;
  readonly token: string;
  /** Unregisters the watch and ends the iterator. */
  close(): Promise<void>;
}

export interface XenstoreClient extends XsOps {
  /**
   * Runs body in a transaction and commits; on EAGAIN at commit the whole body runs again (up to
   * `retries` times). An error thrown by body aborts the transaction and is rethrown.
   */
  transaction<T>(body: (tx: Transaction) => Promise<T>, opts?: CallOptions & { retries?: number }): Promise<T>;
  /** Registers a watch; it fires once at once, then for every change at or below path. */
  watch(path: string, token?: string, opts?: CallOptions): Promise<Watch>;
  getDomainPath(domid: number, opts?: CallOptions): Promise<string>;
  introduceDomain(domid: number, mfn: bigint | number, port: number, opts?: CallOptions): Promise<void>;
  releaseDomain(domid: number, opts?: CallOptions): Promise<void>;
  isDomainIntroduced(domid: number, opts?: CallOptions): Promise<boolean>;
  resumeDomain(domid: number, opts?: CallOptions): Promise<void>;
  setTarget(domid: number, target: number, opts?: CallOptions): Promise<void>;
  resetWatches(opts?: CallOptions): Promise<void>;
  control(args: string[], opts?: CallOptions): Promise<string>;
  close(): Promise<void>;
}

/** libxenstore's socket lookup: $XENSTORED_PATH, else $XENSTORED_RUNDIR/socket, else /var/run/xenstored/socket. */
export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.XENSTORED_PATH) return env.XENSTORED_PATH;
  if (env.XENSTORED_RUNDIR) return `${env.XENSTORED_RUNDIR}/socket`;
  return '/var/run/xenstored/socket';
}
