// The record store under the node tree (xenstored keeps it in a TDB): records keyed by path, the
// global generation count, the domain table, and the per-domain memory each record, key and watch is
// accounted to (the "memory" quota; CONTROL quota <domid> reports it).
import type { Logger } from 'pino';
import type { Connection } from './connection.js';
import { DomainTable, isPrivilegedDomid, type DomainState } from './domains.js';
import type { NodeRecord, Transaction } from './transaction.js';

export interface Quotas {
  nodes: number;
  watches: number;
  transactions: number;
  /** quota_max_entry_size: the stored record (header, permissions, value, children) must stay below it. */
  valueSize: number;
  pathMax: number;
  permissions: number;
  transactionNodes: number;
  outstanding: number;
  memory: number;
  memorySoft: number;
}

export const DEFAULT_QUOTAS: Quotas = {
  nodes: 1000,
  watches: 128,
  transactions: 10,
  valueSize: 2048,
  pathMax: 2048,
  permissions: 5,
  transactionNodes: 1024,
  outstanding: 20,
  memory: 2 * 1024 * 1024 + 512 * 1024,
  memorySoft: 2 * 1024 * 1024,
};

/** sizeof(struct xs_tdb_record_hdr) and sizeof(struct xs_permissions) in the C daemon's records. */
const RECORD_HEADER = 24;
const RECORD_PERM = 8;

/** Size of a record as the C daemon stores it: header, permissions, value, children. */
export function recordSize(rec: NodeRecord): number {
  return RECORD_HEADER + rec.perms.length * RECORD_PERM + rec.data.length + rec.childlen;
}

export class RecordStore {
  readonly db = new Map<string, NodeRecord>();
  generation = 0;
  readonly domains: DomainTable;
  readonly quotas: Quotas;
  /** The errno of the last failed operation (C style: failures return null/false and set this). */
  errno = 'EINVAL';

  constructor(
    quotas: Partial<Quotas>,
    hypervisor: (domid: number) => DomainState,
    readonly log: Logger | undefined,
  ) {
    this.quotas = { ...DEFAULT_QUOTAS, ...quotas };
    this.domains = new DomainTable(hypervisor);
  }

  /** domain_memory_add: false when an unprivileged domain would reach the memory quota. */
  memoryAdd(domid: number, delta: number, noQuotaCheck: boolean): boolean {
    const d = this.domains.find(domid);
    // Orphaned records (owner gone) are simply not accounted.
    if (!d) return true;
    if (delta > 0 && !noQuotaCheck && !isPrivilegedDomid(domid) && this.quotas.memory && d.memory + delta >= this.quotas.memory) {
      return false;
    }
    d.memory += delta;
    return true;
  }

  /** The domain a record in `map` is accounted to: main-store records count for their owner, a
   *  transaction's private copies (keyed "<generation>/<path>") for the transaction's connection. */
  private accountedTo(conn: Connection | null, map: Map<string, NodeRecord>, rec: NodeRecord): number {
    return map === this.db ? rec.perms[0]!.id : conn!.id;
  }

  /** Length of the key a record in `map` is stored under. */
  private keyLength(conn: Connection | null, map: Map<string, NodeRecord>, name: string): number {
    return map === this.db ? name.length : String(conn!.transaction!.generation).length + 1 + name.length;
  }

  /** do_tdb_write: stores a record, moving its memory from the old owner to the new one. */
  storeSet(conn: Connection | null, map: Map<string, NodeRecord>, name: string, rec: NodeRecord, noQuotaCheck: boolean): boolean {
    const old = map.get(name);
    const keyLen = this.keyLength(conn, map, name);
    let oldOwner = 0;
    if (old) {
      oldOwner = this.accountedTo(conn, map, old);
      this.memoryAdd(oldOwner, -(recordSize(old) + keyLen), true);
    }
    if (!this.memoryAdd(this.accountedTo(conn, map, rec), recordSize(rec) + keyLen, noQuotaCheck)) {
      if (old) this.memoryAdd(oldOwner, recordSize(old) + keyLen, true);
      this.errno = 'ENOMEM';
      return false;
    }
    map.set(name, rec);
    return true;
  }

  /** do_tdb_delete. */
  storeDelete(conn: Connection | null, map: Map<string, NodeRecord>, name: string): void {
    const old = map.get(name);
    if (!old) return;
    this.memoryAdd(this.accountedTo(conn, map, old), -(recordSize(old) + this.keyLength(conn, map, name)), true);
    map.delete(name);
  }

  /** destroy_transaction: the private copies go, and the memory they were accounted. */
  discardTransaction(tx: Transaction): void {
    const prefix = String(tx.generation).length + 1;
    for (const [name, rec] of tx.local) this.memoryAdd(tx.conn.id, -(recordSize(rec) + prefix + name.length), true);
    tx.local.clear();
  }
}
