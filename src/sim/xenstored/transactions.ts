// TRANSACTION_START / TRANSACTION_END: ids per connection, the open-transaction quota, and the commit
// that checks every node the transaction read against the store, then publishes its private copies
// and fires the watches it queued.
import { MsgType } from '../../xenstore/wire.js';
import type { Connection } from './connection.js';
import type { XsCore } from './core.js';
import { isPrivilegedDomid } from './domains.js';
import { oneArg } from './payload.js';
import { NO_GENERATION, Transaction } from './transaction.js';
import { fireWatches } from './watches.js';

export function startTransaction(core: XsCore, conn: Connection): string | undefined {
  if (conn.transaction) return 'EBUSY';
  if (core.isUnprivileged(conn) && conn.transactions.size > core.quotas.transactions) return 'ENOSPC';
  let id: number;
  do {
    id = conn.nextTxId;
    conn.nextTxId = (conn.nextTxId + 1) >>> 0;
  } while (id === 0 || conn.transactions.has(id));
  const tx = new Transaction(id, conn, ++core.generation);
  conn.transactions.set(id, tx);
  conn.reply(MsgType.TRANSACTION_START, `${id}\0`);
  return undefined;
}

/** transaction_fix_domains: the owners' node counts after the commit (quota check, then update). */
function fixDomains(core: XsCore, tx: Transaction, checkQuota: boolean): string | undefined {
  for (const [domid, delta] of tx.changedDomains) {
    const d = core.domains.findOrAllocExisting(domid, core.generation);
    if (!d) return 'ENOMEM';
    let cnt = d.nbentry + delta;
    if (cnt < 0) cnt = 0;
    if (!isPrivilegedDomid(domid) && checkQuota && cnt >= core.quotas.nodes) return 'ENOSPC';
  }
  return undefined;
}

function finalize(core: XsCore, conn: Connection, tx: Transaction): string | undefined {
  for (const a of tx.accessed.values()) {
    if (a.checkGen) {
      const current = core.db.get(a.name);
      if (a.generation !== (current ? current.gen : NO_GENERATION)) return 'EAGAIN';
    }
  }
  for (const a of tx.accessed.values()) {
    if (!a.modified) continue;
    if (a.taNode) {
      const rec = tx.local.get(a.name);
      if (rec) core.storeSet(conn, core.db, a.name, { ...rec, gen: ++core.generation }, true);
      else core.log?.error({ node: a.name }, 'transaction inconsistency');
    } else if (a.generation !== NO_GENERATION) {
      core.storeDelete(conn, core.db, a.name);
    }
    if (a.fireWatch) fireWatches(core, conn, a.name, undefined, a.watchExact, a.perms);
  }
  return undefined;
}

export function commitTransaction(core: XsCore, conn: Connection, payload: Buffer): string | undefined {
  const arg = oneArg(payload);
  if (arg !== 'T' && arg !== 'F') return 'EINVAL';
  const tx = conn.transaction;
  if (!tx) return 'ENOENT';
  conn.transaction = null;
  // Whatever the outcome, the transaction is over.
  conn.transactions.delete(tx.id);
  try {
    if (arg === 'T') {
      if (tx.fail) return 'ENOMEM';
      const err = fixDomains(core, tx, tx.nodeCreated && core.isUnprivileged(conn)) ?? finalize(core, conn, tx);
      if (err) return err;
      for (const [domid, delta] of tx.changedDomains) {
        const d = core.domains.find(domid);
        if (d) d.nbentry = Math.max(0, d.nbentry + delta);
      }
    }
  } finally {
    core.discardTransaction(tx);
  }
  conn.ack(MsgType.TRANSACTION_END);
  return undefined;
}
