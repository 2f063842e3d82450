// What both XenstoreClient transports (src/xenstore/client.ts, bindings/xenstore.ts) share about XsOps: the client
// object answers the eight XsOps calls by forwarding them to its transaction-less ops object, and tryRead is read
// with ENOENT turned into undefined whatever the transport.
import type { Perm } from './wire.js';
import { XsError, type CallOptions, type XsOps } from './types.js';

/** read() that answers undefined for ENOENT instead of throwing (XsOps.tryRead for any transport). */
export async function tryReadVia(ops: Pick<XsOps, 'read'>, path: string, opts?: CallOptions): Promise<string | undefined> {
  try {
    return await ops.read(path, opts);
  } catch (e) {
    if (e instanceof XsError && e.errno === 'ENOENT') return undefined;
    throw e;
  }
}

type AbstractCtor = abstract new (...args: any[]) => object;

/**
 * Mixin: a client class whose XsOps calls go to `root`, its ops outside any transaction. A mixin rather than a base
 * class because each transport already extends its own (typed) EventEmitter.
 */
export function DelegatingOps<TBase extends AbstractCtor>(Base: TBase) {
  abstract class Delegating extends Base implements XsOps {
    /** The ops outside any transaction (transaction id 0). */
    protected abstract readonly root: XsOps;

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
  }
  return Delegating;
}
