// A transaction's private view: every node it touched (in first-touch order, which is also the order
// its watches fire at commit) and the private copies of the nodes it read or wrote. Conflicts are found
// at commit by comparing the generation count each read node had with the one it has now.
import type { Connection } from './connection.js';
import type { NodePerm } from './perms.js';

/** A node as stored: immutable once stored (writers store a new record). */
export interface NodeRecord {
  readonly gen: number;
  readonly perms: readonly NodePerm[];
  readonly data: Buffer;
  readonly children: readonly string[];
  /** Bytes of the children list on the wire (`a\0b\0`). */
  readonly childlen: number;
}

/** xenstored's NO_GENERATION: "this node did not exist when the transaction looked". */
export const NO_GENERATION = -1;

export interface AccessedNode {
  readonly name: string;
  generation: number;
  /** Permissions when first touched, for deciding who may see the commit's watch event. */
  perms: readonly NodePerm[] | undefined;
  checkGen: boolean;
  modified: boolean;
  /** A private copy exists in Transaction.local. */
  taNode: boolean;
  fireWatch: boolean;
  watchExact: boolean;
}

export class Transaction {
  readonly accessed = new Map<string, AccessedNode>();
  /** Private copies, keyed by path (xenstored keys them "<generation>/<path>"). */
  readonly local = new Map<string, NodeRecord>();
  /** Net change in nodes owned, per domid, applied at commit. */
  readonly changedDomains = new Map<number, number>();
  nodeCreated = false;
  fail = false;

  constructor(
    readonly id: number,
    readonly conn: Connection,
    readonly generation: number,
  ) {}

  entryAdd(domid: number, delta: number): void {
    this.changedDomains.set(domid, (this.changedDomains.get(domid) ?? 0) + delta);
  }

  /** queue_watches: a change inside a transaction fires at commit, once per node. */
  queueWatch(name: string, exact: boolean): void {
    const a = this.accessed.get(name);
    if (!a) {
      this.fail = true;
      return;
    }
    if (!a.fireWatch) {
      a.fireWatch = true;
      a.watchExact = exact;
    } else if (!exact) a.watchExact = false;
  }
}
