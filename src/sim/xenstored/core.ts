// The node-level operations of xenstored (read, write with implicit parents, recursive remove,
// permission checks, per-domain node counts), transaction-aware. The order of every generation-count
// increment follows the C daemon, because DIRECTORY_PART replies expose it.
import type { Logger } from 'pino';
import type { Connection } from './connection.js';
import { isPrivilegedDomid, type Domain, type DomainState } from './domains.js';
import { PERM_IGNORE, PERM_NONE, PERM_READ, permFor, type NodePerm, type Requester } from './perms.js';
import { RecordStore, recordSize, type Quotas } from './store.js';
import { NO_GENERATION, type NodeRecord } from './transaction.js';
import { fireWatches } from './watches.js';

export { DEFAULT_QUOTAS, type Quotas } from './store.js';

/** A node read out of the store, being looked at or modified by one request. */
export interface XsNode {
  readonly name: string;
  gen: number;
  perms: readonly NodePerm[];
  data: Buffer;
  children: readonly string[];
  childlen: number;
  parent: XsNode | null;
  /** Tree walks: index of the next child to visit. */
  childoff: number;
  /** Where a write goes: the main store or the transaction's private copies. */
  key: Map<string, NodeRecord> | null;
}

const enum Access {
  Read,
  Write,
  Delete,
}

export const WALK_SUCCESS_STOP = -100;
export const WALK_ERROR_STOP = -1;
export const WALK_OK = 0;
export const WALK_SKIP_CHILDREN = 1;
export const WALK_RM_CHILDENTRY = 2;

type WalkFn = (node: XsNode) => number;


const SLASH = 47;
/** Characters allowed in node names besides `/`: [A-Za-z0-9_@-], indexed by char code. */
const NAME_CHAR: readonly boolean[] = Array.from({ length: 128 }, (_, c) => /[A-Za-z0-9_@-]/.test(String.fromCharCode(c)));
const LOCAL_PREFIX = /^\/local\/domain\/(\d{1,5})\//;

export function parentName(name: string): string {
  const slash = name.lastIndexOf('/');
  return slash > 0 ? name.slice(0, slash) : '/';
}

function baseName(name: string): string {
  return name.slice(name.lastIndexOf('/') + 1);
}

export function childName(parent: string, child: string): string {
  return parent === '/' ? `/${child}` : `${parent}/${child}`;
}

export class XsCore extends RecordStore {
  /** Every live connection, in creation order: watch events are generated in this order. */
  readonly connections = new Set<Connection>();
  /**
   * xenstored's own connection list: the clients plus the ring connection each introduced domain has.
   * Only its order matters: it decides when a released domain's connection is really freed (see RELEASE).
   */
  readonly connOrder: (Connection | Domain)[] = [];
  /** Permissions of the special watch paths (SET_PERMS on `@releaseDomain` / `@introduceDomain`). */
  readonly specialPerms = new Map<string, readonly NodePerm[]>([
    ['@releaseDomain', [{ id: 0, bits: PERM_NONE }]],
    ['@introduceDomain', [{ id: 0, bits: PERM_NONE }]],
  ]);

  constructor(quotas: Partial<Quotas>, hypervisor: (domid: number) => DomainState, log: Logger | undefined) {
    super(quotas, hypervisor, log);
    // dom0 is introduced at start-up (dom0_init), before the initial nodes exist.
    const dom0 = this.domains.alloc(0, this.generation);
    dom0.introduced = true;
    this.connOrder.push(dom0);
    this.manualNode('/', ['tool']);
    this.manualNode('/tool', ['xenstored']);
    this.manualNode('/tool/xenstored', []);
    dom0.nbentry += 3;
  }

  private manualNode(name: string, children: string[]): void {
    const childlen = children.reduce((n, c) => n + c.length + 1, 0);
    const rec = { gen: ++this.generation, perms: [{ id: 0, bits: PERM_NONE }], data: Buffer.alloc(0), children, childlen };
    this.storeSet(null, this.db, name, rec, true);
  }

  isUnprivileged(conn: Connection | null): boolean {
    return !!conn && !!conn.domain && !isPrivilegedDomid(conn.domain.domid);
  }

  requester(conn: Connection): Requester {
    return conn.requester;
  }

  permFor(conn: Connection, perms: readonly NodePerm[]): number {
    return permFor(conn.requester, perms);
  }

  /** is_valid_nodename: absolute, allowed characters, no `//`, no trailing `/`, length within path-max past the home prefix. */
  isValidNodeName(name: string): boolean {
    if (name.charCodeAt(0) !== SLASH) return false;
    const last = name.length - 1;
    if (last > 0 && name.charCodeAt(last) === SLASH) return false;
    // One pass for the character set and `//` (the common case, run on every request).
    let prev = 0;
    for (let i = 0; i <= last; i++) {
      const c = name.charCodeAt(i);
      if (c === SLASH) {
        if (prev === SLASH) return false;
      } else if (!(c < 128 && NAME_CHAR[c])) return false;
      prev = c;
    }
    if (name.length <= this.quotas.pathMax) return true;
    const m = LOCAL_PREFIX.exec(name);
    const localOff = m ? m[0].length : 0;
    return name.length <= localOff + this.quotas.pathMax;
  }

  implicitPath(conn: Connection): string {
    return conn.domain ? conn.domain.path : '/local/domain/0';
  }

  canonicalize(conn: Connection, name: string): string {
    if (name[0] === '/' || name[0] === '@') return name;
    return `${this.implicitPath(conn)}/${name}`;
  }

  // ---- records and domain checks ----

  /** chk_domain_generation / domain_adjust_node_perms: entries naming domains newer than the node are ignored. */
  private adjustPerms(node: XsNode): void {
    const perms = node.perms;
    let out: NodePerm[] | undefined;
    for (let i = 1; i < perms.length; i++) {
      const p = perms[i]!;
      if (p.bits & PERM_IGNORE) continue;
      const d = this.domains.find(p.id);
      if (d && d.generation <= node.gen) continue;
      out ??= perms.slice();
      out[i] = { id: p.id, bits: p.bits | PERM_IGNORE };
    }
    if (out) node.perms = out;
  }

  private lookup(conn: Connection | null, name: string): NodeRecord | undefined {
    const tx = conn?.transaction;
    if (tx && tx.accessed.has(name)) return tx.local.get(name);
    return this.db.get(name);
  }

  readNode(conn: Connection | null, name: string): XsNode | null {
    const rec = this.lookup(conn, name);
    if (!rec) {
      const ghost: XsNode = { name, gen: NO_GENERATION, perms: [], data: EMPTY, children: [], childlen: 0, parent: null, childoff: 0, key: null };
      const err = this.access(conn, ghost, Access.Read);
      if (err <= 0) this.errno = 'ENOENT';
      return null;
    }
    const node: XsNode = {
      name,
      gen: rec.gen,
      perms: rec.perms,
      data: rec.data,
      children: rec.children,
      childlen: rec.childlen,
      parent: null,
      childoff: 0,
      key: null,
    };
    this.adjustPerms(node);
    if (this.access(conn, node, Access.Read) > 0) return null;
    return node;
  }

  private static record(node: XsNode): NodeRecord {
    return { gen: node.gen, perms: node.perms, data: node.data, children: node.children, childlen: node.childlen };
  }

  /**
   * access_node: bumps the generation on modification and, inside a transaction, records the access
   * (a read takes a private copy). Returns 0, -1 (first access is a delete: nothing private to delete)
   * or 1 with errno set.
   */
  private access(conn: Connection | null, node: XsNode, type: Access): number {
    if (type !== Access.Read) node.gen = ++this.generation;
    const tx = conn?.transaction;
    if (!conn || !tx) {
      node.key = this.db;
      return 0;
    }
    let a = tx.accessed.get(node.name);
    let introduce = false;
    if (!a) {
      if (tx.accessed.size >= this.quotas.transactionNodes && this.isUnprivileged(conn)) {
        tx.fail = true;
        this.errno = 'ENOSPC';
        return 1;
      }
      a = {
        name: node.name,
        generation: 0,
        perms: node.gen !== NO_GENERATION && node.perms.length ? node.perms : undefined,
        checkGen: false,
        modified: false,
        taNode: false,
        fireWatch: false,
        watchExact: false,
      };
      introduce = true;
      if (type === Access.Read) {
        a.generation = node.gen;
        a.checkGen = true;
        if (node.gen !== NO_GENERATION) {
          this.storeSet(conn, tx.local, node.name, XsCore.record(node), true);
          a.taNode = true;
        }
      }
      tx.accessed.set(node.name, a);
    }
    if (type !== Access.Read) a.modified = true;
    if (introduce && type === Access.Delete) return -1;
    node.key = tx.local;
    if (type === Access.Write) a.taNode = true;
    if (type === Access.Delete) a.taNode = false;
    return 0;
  }

  private writeRaw(conn: Connection | null, node: XsNode, noQuotaCheck: boolean): boolean {
    this.adjustPerms(node);
    const size = recordSize(node);
    if (!noQuotaCheck && this.isUnprivileged(conn) && size >= this.quotas.valueSize) {
      this.errno = 'ENOSPC';
      return false;
    }
    return this.storeSet(conn, node.key!, node.name, XsCore.record(node), noQuotaCheck);
  }

  writeNode(conn: Connection | null, node: XsNode, noQuotaCheck: boolean): boolean {
    if (this.access(conn, node, Access.Write) > 0) return false;
    const ok = this.writeRaw(conn, node, noQuotaCheck);
    if (!ok && conn?.transaction) conn.transaction.fail = true;
    return ok;
  }

  // ---- permission-checked lookup ----

  /** ask_parents: the caller's access to the nearest existing ancestor. */
  private askParents(conn: Connection, name: string): number | null {
    let node: XsNode | null = null;
    do {
      name = parentName(name);
      node = this.readNode(conn, name);
      if (node) break;
      if (this.errno === 'ENOSPC' || this.errno === 'ENOMEM') return null;
    } while (name !== '/');
    if (!node) return PERM_NONE;
    return this.permFor(conn, node.perms);
  }

  /** errno_from_parents: do not tell a caller that a node exists (or not) unless the parent would. */
  private errnoFromParents(conn: Connection, name: string, errnum: string, perm: number): string {
    const parentPerm = this.askParents(conn, name);
    if (parentPerm === null) return this.errno;
    return parentPerm & perm ? errnum : 'EACCES';
  }

  /** get_node: validates the name, reads it and checks `perm`; null with errno otherwise. */
  getNode(conn: Connection, name: string | undefined, perm: number): XsNode | null {
    if (name === undefined || !this.isValidNodeName(name)) {
      this.errno = 'EINVAL';
      return null;
    }
    let node = this.readNode(conn, name);
    if (node && (this.permFor(conn, node.perms) & perm) !== perm) {
      this.errno = 'EACCES';
      node = null;
    }
    if (!node && this.errno !== 'ENOSPC' && this.errno !== 'ENOMEM') {
      this.errno = this.errnoFromParents(conn, name, this.errno, perm);
    }
    return node;
  }

  // ---- node accounting ----

  private ownerDomain(conn: Connection | null, domid: number): Domain | undefined {
    if (conn && conn.domain && domid === conn.id) return conn.domain;
    return this.domains.findOrAllocExisting(domid, this.generation);
  }

  entryInc(conn: Connection | null, node: XsNode): void {
    if (!node.perms.length) return;
    const domid = node.perms[0]!.id;
    if (conn?.transaction) conn.transaction.entryAdd(domid, 1);
    else {
      const d = this.ownerDomain(conn, domid);
      if (d) d.nbentry++;
    }
  }

  entryDec(conn: Connection | null, node: XsNode): void {
    if (!node.perms.length) return;
    const domid = node.perms[0]!.id;
    if (conn?.transaction) conn.transaction.entryAdd(domid, -1);
    else {
      const d = conn && conn.domain && domid === conn.id ? conn.domain : this.domains.find(domid);
      if (d) d.nbentry--;
      else this.log?.warn({ node: node.name, domid }, 'node owned by a non-existing domain');
    }
  }

  /** domain_entry: nodes the caller owns, for the quota check (privileged callers have no quota). */
  entryCount(conn: Connection): number {
    return this.isUnprivileged(conn) ? conn.domain!.nbentry : 0;
  }

  // ---- create ----

  /** construct_node: the missing path down from the nearest existing ancestor, permissions inherited. */
  private constructNode(conn: Connection, name: string): XsNode | null {
    const names: string[] = [];
    let parent: XsNode | null = null;
    let parentname = name;
    while (!parent) {
      names.push(parentname);
      parentname = parentName(parentname);
      parent = this.readNode(conn, parentname);
      if (!parent && (this.errno !== 'ENOENT' || parentname === '/')) return null;
    }
    let node: XsNode | null = null;
    const unpriv = this.isUnprivileged(conn);
    for (let level = names.length; level > 0; level--) {
      const child = names[level - 1]!;
      const base = baseName(child);
      parent!.children = [...parent!.children, base];
      parent!.childlen += base.length + 1;
      let perms: readonly NodePerm[] = parent!.perms;
      if (unpriv) perms = [{ id: conn.id, bits: perms[0]!.bits }, ...perms.slice(1)];
      node = { name: child, gen: 0, perms, data: EMPTY, children: [], childlen: 0, parent, childoff: 0, key: null };
      parent = node;
    }
    return node;
  }

  private destroyNode(conn: Connection, node: XsNode): void {
    if (node.key) this.storeDelete(conn, node.key, node.name);
    this.entryDec(conn, node);
    if (conn.transaction) conn.transaction.fail = true;
  }

  createNode(conn: Connection, name: string, data: Buffer): XsNode | null {
    const node = this.constructNode(conn, name);
    if (!node) return null;
    if (conn.transaction) conn.transaction.nodeCreated = true;
    node.data = data;
    let i: XsNode | null = node;
    let failure: string | undefined;
    for (; i; i = i.parent) {
      if (i.parent && this.entryCount(conn) >= this.quotas.nodes) {
        failure = 'ENOSPC';
        break;
      }
      if (!this.writeNode(conn, i, false)) {
        failure = this.errno;
        break;
      }
      if (i.parent) this.entryInc(conn, i);
    }
    if (failure === undefined) return node;
    for (let j: XsNode | null = node; j && j !== i; j = j.parent) this.destroyNode(conn, j);
    this.errno = failure;
    return null;
  }

  // ---- remove ----

  private removeChildAt(conn: Connection | null, parent: XsNode, index: number): boolean {
    const children = parent.children.slice();
    const [gone] = children.splice(index, 1);
    parent.children = children;
    parent.childlen -= gone!.length + 1;
    return this.writeNode(conn, parent, true);
  }

  private deleteChild(conn: Connection | null, parent: XsNode, child: string): boolean {
    const index = parent.children.indexOf(child);
    if (index < 0) {
      this.log?.error({ parent: parent.name, child }, 'corrupt store: child entry missing');
      this.errno = 'EIO';
      return false;
    }
    if (!this.removeChildAt(conn, parent, index)) {
      this.errno = 'EIO';
      return false;
    }
    return true;
  }

  /** walk_node_tree: depth first from `root`; `enter` before a node's children, `exit` after. */
  walk(conn: Connection | null, root: string, enter: WalkFn | undefined, exit: WalkFn | undefined): number {
    let ret = WALK_OK;
    let node: XsNode | null = null;
    let parent: XsNode | null = null;
    let name = root;
    while (ret >= 0) {
      if (node) {
        if (ret || node.childoff >= node.children.length) {
          parent = node.parent;
          ret = this.walkCall(conn, node, parent, exit);
          if (!parent) break;
          node = parent;
          continue;
        }
        name = childName(node.name, node.children[node.childoff]!);
        node.childoff++;
        parent = node;
      }
      const next = this.readNode(conn, name);
      if (!next) {
        ret = WALK_ERROR_STOP;
        break;
      }
      next.parent = parent;
      next.childoff = 0;
      node = next;
      ret = this.walkCall(conn, node, parent, enter);
    }
    return ret < 0 ? ret : WALK_OK;
  }

  private walkCall(conn: Connection | null, node: XsNode, parent: XsNode | null, fn: WalkFn | undefined): number {
    if (!fn) return WALK_OK;
    let ret = fn(node);
    if (ret === WALK_RM_CHILDENTRY && parent) {
      // The child just visited sits right before the walk's cursor.
      parent.childoff--;
      ret = this.removeChildAt(conn, parent, parent.childoff) ? WALK_OK : WALK_ERROR_STOP;
    }
    return ret;
  }

  /** rm_node: removes `name` and everything below it, firing watches bottom-up. */
  rmNode(conn: Connection | null, name: string): string | undefined {
    const parent = this.readNode(conn, parentName(name));
    if (!parent) return this.errno === 'ENOSPC' || this.errno === 'ENOMEM' ? this.errno : 'EINVAL';
    const ret = this.walk(conn, name, undefined, (node) => {
      const r = this.access(conn, node, Access.Delete);
      if (r > 0) return WALK_SUCCESS_STOP;
      if (r === 0) this.storeDelete(conn, node.key!, node.name);
      fireWatches(this, conn, node.name, node, node.name !== name, undefined);
      this.entryDec(conn, node);
      return WALK_RM_CHILDENTRY;
    });
    if (ret < 0) {
      if (ret === WALK_ERROR_STOP) {
        this.log?.error({ name }, 'corrupt store: error deleting sub-nodes');
        this.errno = 'EIO';
      }
      return this.errno;
    }
    if (!this.deleteChild(conn, parent, baseName(name))) return this.errno;
    return undefined;
  }

  /** Permission check for the special watch paths. */
  specialReadable(conn: Connection, name: string): boolean {
    const perms = this.specialPerms.get(name);
    return !!perms && (this.permFor(conn, perms) & PERM_READ) !== 0;
  }

  /** The entry after `conn` in xenstored's connection list. */
  nextInOrder(conn: Connection): Connection | Domain | undefined {
    const i = this.connOrder.indexOf(conn);
    return i < 0 ? undefined : this.connOrder[i + 1];
  }

  removeFromOrder(entry: Connection | Domain): void {
    const i = this.connOrder.indexOf(entry);
    if (i >= 0) this.connOrder.splice(i, 1);
  }

  /** Nodes in the main store. */
  get nodeCount(): number {
    return this.db.size;
  }
}

const EMPTY = Buffer.alloc(0);
