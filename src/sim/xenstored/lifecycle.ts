// Domain lifecycle: INTRODUCE, RELEASE and the hypervisor's domain-state changes (VIRQ_DOM_EXC in Xen).
// Destroying a domain removes the nodes it still owns and fires @releaseDomain.
import type { Connection } from './connection.js';
import { parentName, WALK_OK, WALK_SKIP_CHILDREN, WALK_SUCCESS_STOP, type XsCore } from './core.js';
import type { Domain } from './domains.js';
import type { NodePerm } from './perms.js';
import { clearWatches, fireWatches } from './watches.js';

export interface ConnectionCloser {
  /** Forgets a connection's watches and transactions and closes its transport. */
  dropConnection(conn: Connection, reason: string): void;
}

/** conn_delete_all_watches + conn_delete_all_transactions. */
export function resetConnection(core: XsCore, conn: Connection): void {
  if (conn.domain) conn.domain.nbwatch = Math.max(0, conn.domain.nbwatch - conn.watches.length);
  for (const w of conn.watches) core.memoryAdd(conn.id, -(w.node.length + w.token.length), true);
  clearWatches(core, conn);
  for (const tx of conn.transactions.values()) core.discardTransaction(tx);
  conn.transactions.clear();
  conn.transaction = null;
}

/** introduce_domain + domain_conn_reset (a re-introduction resets the domain's connections). */
export function introduceDomain(core: XsCore, domid: number): void {
  const domain = core.domains.findOrAlloc(domid, core.generation);
  if (!domain.introduced) {
    // Connections the sim opened for this domain before its introduction keep their state: in Xen
    // the ring only starts to exist here.
    domain.introduced = true;
    domain.shutdown = false;
    core.connOrder.push(domain);
    if (domid !== 0) fireWatches(core, null, '@introduceDomain', undefined, true, undefined);
    return;
  }
  // Re-introduction resets the domain's ring. dom0's in-process connections stand for the toolstack
  // (a socket in Xen, which INTRODUCE never touches), so they are left alone.
  if (domid === 0) return;
  for (const conn of domain.conns) resetConnection(core, conn);
}

function removeDomidFromPerms(perms: readonly NodePerm[], domid: number): NodePerm[] {
  const out: NodePerm[] = [perms[0]!.id === domid ? { id: 0, bits: perms[0]!.bits } : perms[0]!];
  for (let i = 1; i < perms.length; i++) if (perms[i]!.id !== domid) out.push(perms[i]!);
  return out;
}

/**
 * The nodes above some node `domid` owns: the only ones whose children destroy's walk must look at.
 * One pass over the records (owners never change during the walk: removing a subtree only rewrites
 * its parent's children list), instead of reading and entering every node of the store.
 */
function ancestorsOfOwned(core: XsCore, domid: number): Set<string> {
  const above = new Set<string>();
  for (const [name, rec] of core.db) {
    if (rec.perms[0]?.id !== domid || name === '/') continue;
    for (let p = parentName(name); !above.has(p); p = parentName(p)) {
      above.add(p);
      if (p === '/') break;
    }
  }
  return above;
}

/**
 * destroy_domain: remove orphaned nodes, forget the domain, tell @releaseDomain watchers. The walk is
 * xenstored's (depth first from `/`, removing each owned node with its subtree, stopping once the
 * domain owns nothing more) except that it does not enter a subtree holding no owned node: nothing in
 * there would be removed, so what is removed, in which order, and the watch events are the same.
 */
export function destroyDomain(core: XsCore, closer: ConnectionCloser, domain: Domain): void {
  for (const conn of [...domain.conns]) closer.dropConnection(conn, 'domain released');
  if (domain.nbentry > 0) {
    const above = ancestorsOfOwned(core, domain.domid);
    core.walk(null, '/', (node) => {
      if (node.perms[0]!.id !== domain.domid) return above.has(node.name) ? WALK_OK : WALK_SKIP_CHILDREN;
      const err = core.rmNode(null, node.name);
      if (err) core.log?.error({ node: node.name, err }, 'could not delete orphaned node');
      return domain.nbentry > 0 ? WALK_SKIP_CHILDREN : WALK_SUCCESS_STOP;
    }, undefined);
  }
  for (const [name, perms] of core.specialPerms) core.specialPerms.set(name, removeDomidFromPerms(perms, domain.domid));
  core.domains.remove(domain);
  for (const other of core.domains.list()) {
    if (other.heldBy.includes(domain)) other.heldBy = other.heldBy.filter((h) => h !== domain);
  }
  core.removeFromOrder(domain);
  if (domain.introduced) fireWatches(core, null, '@releaseDomain', undefined, true, undefined);
}

/** check_domains: shutdown and death as the hypervisor reports them. */
export function checkDomains(core: XsCore, closer: ConnectionCloser): void {
  let notify = false;
  for (;;) {
    let again = false;
    for (const domain of core.domains.list()) {
      const state = core.domains.state(domain.domid);
      const valid = state !== 'gone';
      if (!domain.introduced) {
        if (!valid) {
          destroyDomain(core, closer, domain);
          again = true;
          break;
        }
        continue;
      }
      if (valid) {
        if (state === 'shutdown' && !domain.shutdown) {
          domain.shutdown = true;
          notify = true;
        }
        if (state !== 'dying') continue;
      }
      if (domain.domid === 0) continue;
      destroyDomain(core, closer, domain);
      notify = false;
      again = true;
      break;
    }
    if (!again) break;
  }
  if (notify) fireWatches(core, null, '@releaseDomain', undefined, true, undefined);
}
