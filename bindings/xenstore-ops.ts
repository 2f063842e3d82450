// XsOps over libxenstore (ordinary and transaction calls): each turns one operation into one libxenstore call
// run by the client's exec() on a handle's queue, decodes the malloc'ed result and frees it.
import type { Perm, PermLetter } from '../src/xenstore/wire.js';
import { PAYLOAD_MAX } from '../src/xenstore/wire.js';
import { XsError, type CallOptions, type XsOps } from '../src/xenstore/types.js';
import type { TxHandle } from '../src/xenstore/transaction.js';
import { tryReadVia } from '../src/xenstore/ops-delegate.js';
import { XS_PERM_READ, XS_PERM_WRITE, callAsync, copyBytes, decodeStrings, freeBlock, type LibXenstore } from './xenstore-lib.js';
import type { HandleSlot } from './xenstore-handles.js';
import type { LibXenstoreClient } from './xenstore.js';

/** One libxenstore call on handle `h`: its value, or a FailedCall carrying errno. */
export type LibCall<T> = (h: bigint) => Promise<T | FailedCall>;

/** What the ops need from the client (bindings/xenstore.ts): its call runner and result helpers. */
export type OpsHost = Pick<LibXenstoreClient, 'library' | 'exec' | 'boolCall'>;

const PERM_BITS: Record<PermLetter, number> = { n: 0, r: XS_PERM_READ, w: XS_PERM_WRITE, b: XS_PERM_READ | XS_PERM_WRITE };
const PERM_LETTERS: PermLetter[] = ['n', 'r', 'w', 'b'];
/** A libxenstore call that returned NULL/false, with its errno. */
export class FailedCall {
  constructor(readonly errno: number) {}
}

export function checkDomid(domid: number): number {
  if (!Number.isInteger(domid) || domid < 0 || domid > 0xffff) throw new XsError('EINVAL', 'domid', String(domid));
  return domid;
}

function checkPath(op: string, path: string): void {
  if (path.includes('\0')) throw new XsError('EINVAL', op, path.replace(/\0/g, '\\0'));
}

/** XsOps over libxenstore for one transaction id (0 = none). */
export class LibOps implements XsOps {
  constructor(
    protected readonly c: OpsHost,
    protected readonly slot: HandleSlot | undefined,
    readonly txId: number,
    protected readonly txGeneration?: number,
  ) {}

  protected run<T>(op: string, path: string, opts: CallOptions | undefined, fn: LibCall<T>): Promise<T> {
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

  tryRead(path: string, opts?: CallOptions): Promise<string | undefined> {
    return tryReadVia(this, path, opts);
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

export class LibTx extends LibOps implements TxHandle {
  constructor(c: OpsHost, slot: HandleSlot, generation: number, id: number) {
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
