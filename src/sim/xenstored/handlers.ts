// The request handlers (xenstored's wire_funcs): each returns an errno name to send as ERROR, or
// undefined after replying itself. Argument checks, their order and the resulting errors follow the
// C daemon of Xen 4.17.
import { MsgType } from '../../xenstore/wire.js';
import type { Connection } from './connection.js';
import { doControl } from './control.js';
import { childName, parentName, type XsCore } from './core.js';
import { DOMID_SELF } from './domains.js';
import { destroyDomain, introduceDomain, resetConnection, type ConnectionCloser } from './lifecycle.js';
import { atoi, atou, countNuls, cStrings, firstString, oneArg } from './payload.js';
import { formatPerms, parsePerms, PERM_IGNORE, PERM_OWNER, PERM_READ, PERM_WRITE } from './perms.js';
import { commitTransaction, startTransaction } from './transactions.js';
import { addWatch, fireWatches, removeWatchAt, watchPath } from './watches.js';

export interface HandlerContext {
  core: XsCore;
  closer: ConnectionCloser;
}

/** Children lists are immutable and shared between records: their wire form is computed once. */
const wireChildren = new WeakMap<readonly string[], string>();
function childrenWire(children: readonly string[]): string {
  let s = wireChildren.get(children);
  if (s === undefined) {
    s = children.length ? children.join('\0') + '\0' : '';
    wireChildren.set(children, s);
  }
  return s;
}

type Handler = (ctx: HandlerContext, conn: Connection, payload: Buffer) => string | undefined;

const REL_PATH_MAX = 2048;

/** The request's path made absolute (relative paths are under the caller's home). */
function canonical(core: XsCore, conn: Connection, name: string | undefined): string | undefined {
  return name === undefined ? undefined : core.canonicalize(conn, name);
}

const directory: Handler = ({ core }, conn, payload) => {
  const node = core.getNode(conn, canonical(core, conn, oneArg(payload)), PERM_READ);
  if (!node) return core.errno;
  if (node.childlen > 4096) return 'E2BIG';
  conn.reply(MsgType.DIRECTORY, childrenWire(node.children));
  return undefined;
};

const directoryPart: Handler = ({ core }, conn, payload) => {
  if (countNuls(payload) !== 2) return 'EINVAL';
  const [name, offStr] = cStrings(payload);
  const node = core.getNode(conn, canonical(core, conn, name), PERM_READ);
  if (!node) return core.errno;
  const off = atou(offStr!);
  const gen = `${node.gen}\0`;
  if (off >= node.childlen) {
    conn.reply(MsgType.DIRECTORY_PART, `${gen}\0`);
    return undefined;
  }
  // Byte offsets into the `a\0b\0` list: names are ASCII, so string indices are byte offsets.
  const all = childrenWire(node.children);
  const maxlen = 4096 - gen.length - 1;
  let len = 0;
  for (;;) {
    const nul = all.indexOf('\0', off + len);
    const childLen = nul - (off + len);
    if (!(len + childLen < maxlen)) break;
    len += childLen + 1;
    if (off + len === node.childlen) break;
  }
  let out = gen + all.slice(off, off + len);
  if (off + len === node.childlen) out += '\0';
  conn.reply(MsgType.DIRECTORY_PART, out);
  return undefined;
};

const read: Handler = ({ core }, conn, payload) => {
  const node = core.getNode(conn, canonical(core, conn, oneArg(payload)), PERM_READ);
  if (!node) return core.errno;
  conn.reply(MsgType.READ, node.data);
  return undefined;
};

const getPerms: Handler = ({ core }, conn, payload) => {
  const node = core.getNode(conn, canonical(core, conn, oneArg(payload)), PERM_READ);
  if (!node) return core.errno;
  conn.reply(MsgType.GET_PERMS, formatPerms(node.perms));
  return undefined;
};

const write: Handler = ({ core }, conn, payload) => {
  const nul = payload.indexOf(0);
  if (nul < 0) return 'EINVAL';
  const path = payload.toString('latin1', 0, nul);
  // A copy: the payload lives in the read buffer only while this request is handled.
  const value = Buffer.allocUnsafe(payload.length - nul - 1);
  value.set(payload.subarray(nul + 1));
  const name = canonical(core, conn, path);
  const existing = core.getNode(conn, name, PERM_WRITE);
  let node = existing;
  if (!node) {
    if (core.errno !== 'ENOENT') return core.errno;
    node = core.createNode(conn, name!, value);
    if (!node) return core.errno;
  } else {
    node.data = value;
    if (!core.writeNode(conn, node, false)) return core.errno;
  }
  fireWatches(core, conn, name!, node, false, undefined);
  conn.ack(MsgType.WRITE);
  return undefined;
};

const mkdir: Handler = ({ core }, conn, payload) => {
  const name = canonical(core, conn, oneArg(payload));
  const node = core.getNode(conn, name, PERM_WRITE);
  if (!node) {
    if (core.errno !== 'ENOENT') return core.errno;
    const created = core.createNode(conn, name!, Buffer.alloc(0));
    if (!created) return core.errno;
    fireWatches(core, conn, name!, created, false, undefined);
  }
  conn.ack(MsgType.MKDIR);
  return undefined;
};

const rm: Handler = ({ core }, conn, payload) => {
  const name = canonical(core, conn, oneArg(payload));
  const node = core.getNode(conn, name, PERM_WRITE);
  if (!node) {
    if (core.errno === 'ENOENT') {
      const parent = core.readNode(conn, parentName(name!));
      if (parent) {
        conn.ack(MsgType.RM);
        return undefined;
      }
      const why: string = core.errno;
      if (why !== 'ENOSPC' && why !== 'ENOMEM') core.errno = 'ENOENT';
    }
    return core.errno;
  }
  if (name === '/') return 'EINVAL';
  const err = core.rmNode(conn, name!);
  if (err) return err;
  conn.ack(MsgType.RM);
  return undefined;
};

const setPerms: Handler = ({ core }, conn, payload) => {
  const num = countNuls(payload) - 1;
  if (num < 1) return 'EINVAL';
  const unpriv = core.isUnprivileged(conn);
  if (unpriv && num > core.quotas.permissions) return 'ENOSPC';
  const strings = cStrings(payload);
  const target = strings[0]!;
  const parsed = parsePerms(strings.slice(1), num);
  if (!parsed) return 'EINVAL';
  // domain_alloc_permrefs: entries naming domains the hypervisor does not know are kept but ignored.
  const perms = parsed.map((p) => {
    if (core.domains.find(p.id)) return p;
    if (!core.domains.exists(p.id)) return { id: p.id, bits: p.bits | PERM_IGNORE };
    core.domains.alloc(p.id, core.generation);
    return p;
  });
  if (perms[0]!.bits & PERM_IGNORE) return 'ENOENT';
  if (target[0] === '@') {
    const current = core.specialPerms.get(target);
    if (!current) return 'EINVAL';
    if ((core.permFor(conn, current) & (PERM_WRITE | PERM_OWNER)) !== (PERM_WRITE | PERM_OWNER)) return 'EACCES';
    core.specialPerms.set(target, perms);
    conn.ack(MsgType.SET_PERMS);
    return undefined;
  }
  const name = canonical(core, conn, target);
  const node = core.getNode(conn, name, PERM_WRITE | PERM_OWNER);
  if (!node) return core.errno;
  if (unpriv && perms[0]!.id !== node.perms[0]!.id) return 'EPERM';
  const oldPerms = node.perms;
  core.entryDec(conn, node);
  node.perms = perms;
  core.entryInc(conn, node);
  if (!core.writeNode(conn, node, false)) {
    const saved = core.errno;
    core.entryDec(conn, node);
    node.perms = oldPerms;
    core.entryInc(conn, node);
    return saved;
  }
  fireWatches(core, conn, name!, node, false, oldPerms);
  conn.ack(MsgType.SET_PERMS);
  return undefined;
};

const watch: Handler = ({ core }, conn, payload) => {
  if (countNuls(payload) !== 2) return 'EINVAL';
  const [rawPath, token] = cStrings(payload) as [string, string];
  let path = rawPath;
  let relative: string | undefined;
  if (path[0] === '@') {
    if (path.length > REL_PATH_MAX) return 'EINVAL';
  } else {
    if (path[0] !== '/') relative = core.implicitPath(conn);
    path = core.canonicalize(conn, path);
    if (!core.isValidNodeName(path)) return 'EINVAL';
  }
  for (const w of conn.watches) if (w.node === path && w.token === token) return 'EEXIST';
  if (core.isUnprivileged(conn) && conn.domain!.nbwatch > core.quotas.watches) return 'E2BIG';
  if (!core.memoryAdd(conn.id, path.length + token.length, false)) return 'ENOMEM';
  const w = { node: path, token, relativePath: relative };
  addWatch(core, conn, w);
  if (conn.domain) conn.domain.nbwatch++;
  conn.ack(MsgType.WATCH);
  conn.queueEvent(watchPath(w, w.node), token);
  return undefined;
};

const unwatch: Handler = ({ core }, conn, payload) => {
  if (countNuls(payload) !== 2) return 'EINVAL';
  const [rawPath, token] = cStrings(payload) as [string, string];
  const path = core.canonicalize(conn, rawPath);
  const index = conn.watches.findIndex((w) => w.node === path && w.token === token);
  if (index < 0) return 'ENOENT';
  removeWatchAt(core, conn, index);
  core.memoryAdd(conn.id, -(path.length + token.length), true);
  if (conn.domain && conn.domain.nbwatch) conn.domain.nbwatch--;
  conn.ack(MsgType.UNWATCH);
  return undefined;
};

const transactionStart: Handler = ({ core }, conn) => startTransaction(core, conn);
const transactionEnd: Handler = ({ core }, conn, payload) => commitTransaction(core, conn, payload);

const introduce: Handler = ({ core }, conn, payload) => {
  const strings = cStrings(payload);
  if (strings.length < 3) return 'EINVAL';
  const domid = atou(strings[0]!);
  const port = atou(strings[2]!);
  if (port === 0) return 'EINVAL';
  introduceDomain(core, domid);
  conn.ack(MsgType.INTRODUCE);
  return undefined;
};

/** onearg_domain + find_connected_domain. */
function argDomain(core: XsCore, payload: Buffer) {
  const arg = oneArg(payload);
  if (arg === undefined) return 'EINVAL';
  const domid = atou(arg);
  if (!domid) return 'EINVAL';
  const d = core.domains.find(domid);
  if (!d || !d.introduced) return 'ENOENT';
  return d;
}

const release: Handler = ({ core, closer }, conn, payload) => {
  const d = argDomain(core, payload);
  if (typeof d === 'string') return d;
  if (d.heldBy.length) {
    d.heldBy.shift();
    conn.ack(MsgType.RELEASE);
    return undefined;
  }
  // xenstored's main loop holds a reference on the connection after the one being served: when that
  // is the released domain's, it is freed (orphans removed, @releaseDomain fired) only after the reply.
  if (core.nextInOrder(conn) === d) {
    conn.ack(MsgType.RELEASE);
    destroyDomain(core, closer, d);
  } else {
    destroyDomain(core, closer, d);
    conn.ack(MsgType.RELEASE);
  }
  return undefined;
};

const resume: Handler = ({ core }, conn, payload) => {
  const d = argDomain(core, payload);
  if (typeof d === 'string') return d;
  d.shutdown = false;
  conn.ack(MsgType.RESUME);
  return undefined;
};

const getDomainPath: Handler = (_ctx, conn, payload) => {
  const arg = oneArg(payload);
  if (arg === undefined) return 'EINVAL';
  conn.reply(MsgType.GET_DOMAIN_PATH, `/local/domain/${atou(arg)}\0`);
  return undefined;
};

const isDomainIntroduced: Handler = ({ core }, conn, payload) => {
  const arg = oneArg(payload);
  if (arg === undefined) return 'EINVAL';
  const domid = atou(arg);
  const d = core.domains.find(domid);
  conn.reply(MsgType.IS_DOMAIN_INTRODUCED, domid === DOMID_SELF || (d && d.introduced) ? 'T\0' : 'F\0');
  return undefined;
};

const setTarget: Handler = ({ core }, conn, payload) => {
  const strings = cStrings(payload);
  if (strings.length < 2) return 'EINVAL';
  const domain = core.domains.find(atou(strings[0]!));
  if (!domain || !domain.introduced) return 'ENOENT';
  const target = core.domains.find(atou(strings[1]!));
  if (!target || !target.introduced) return 'ENOENT';
  domain.target = target.domid;
  target.heldBy.unshift(domain);
  conn.ack(MsgType.SET_TARGET);
  return undefined;
};

const resetWatches: Handler = ({ core }, conn) => {
  resetConnection(core, conn);
  conn.ack(MsgType.RESET_WATCHES);
  return undefined;
};

const control: Handler = ({ core }, conn, payload) => doControl(core, conn, payload);

interface WireFunc {
  fn: Handler;
  /** Ignores the header's transaction id. */
  noTx?: boolean;
  /** Privileged callers only. */
  priv?: boolean;
}

const WIRE: (WireFunc | undefined)[] = [];
WIRE[MsgType.CONTROL] = { fn: control, priv: true };
WIRE[MsgType.DIRECTORY] = { fn: directory };
WIRE[MsgType.READ] = { fn: read };
WIRE[MsgType.GET_PERMS] = { fn: getPerms };
WIRE[MsgType.WATCH] = { fn: watch, noTx: true };
WIRE[MsgType.UNWATCH] = { fn: unwatch, noTx: true };
WIRE[MsgType.TRANSACTION_START] = { fn: transactionStart };
WIRE[MsgType.TRANSACTION_END] = { fn: transactionEnd };
WIRE[MsgType.INTRODUCE] = { fn: introduce, priv: true };
WIRE[MsgType.RELEASE] = { fn: release, priv: true };
WIRE[MsgType.GET_DOMAIN_PATH] = { fn: getDomainPath };
WIRE[MsgType.WRITE] = { fn: write };
WIRE[MsgType.MKDIR] = { fn: mkdir };
WIRE[MsgType.RM] = { fn: rm };
WIRE[MsgType.SET_PERMS] = { fn: setPerms };
WIRE[MsgType.IS_DOMAIN_INTRODUCED] = { fn: isDomainIntroduced, priv: true };
WIRE[MsgType.RESUME] = { fn: resume, priv: true };
WIRE[MsgType.SET_TARGET] = { fn: setTarget, priv: true };
WIRE[MsgType.RESET_WATCHES] = { fn: resetWatches };
WIRE[MsgType.DIRECTORY_PART] = { fn: directoryPart };

/** process_message: dispatch, privilege check, transaction lookup, then the handler. */
export function processMessage(ctx: HandlerContext, conn: Connection, type: number, txId: number, payload: Buffer): void {
  const wf = type < WIRE.length ? WIRE[type] : undefined;
  if (!wf) {
    conn.error('ENOSYS');
    return;
  }
  if (wf.priv && ctx.core.isUnprivileged(conn)) {
    conn.error('EACCES');
    return;
  }
  let tx = null;
  if (!wf.noTx && txId !== 0) {
    tx = conn.transactions.get(txId);
    if (!tx) {
      conn.error('ENOENT');
      return;
    }
  }
  conn.transaction = tx;
  try {
    const err = wf.fn(ctx, conn, payload);
    if (err) conn.error(err);
  } finally {
    conn.transaction = null;
  }
}

export { childName };
