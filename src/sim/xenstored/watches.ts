// Watch registration and event generation. Events are generated per connection in creation order and,
// within a connection, in registration order; a connection only gets events for nodes it may read
// (or whose parent it may read), and `@` events only with read access to that special path.
//
// A connection's `watches` array is the source of truth (EEXIST/ENOENT checks, quota, memory). Beside it,
// an index per store maps each watched path to its watches, so a change at N only looks at the watches
// on N, on each ancestor of N and on `/`: the only ones that can match. Without it every write scanned
// every watch of every connection (thousands with a thousand guests). Register and forget watches only
// through addWatch / removeWatchAt / clearWatches so the two stay in step.
import type { Connection } from './connection.js';
import type { XsCore, XsNode } from './core.js';
import { parentName } from './core.js';
import { PERM_READ, type NodePerm } from './perms.js';

export interface Watch {
  /** Absolute path (or `@name`). */
  readonly node: string;
  readonly token: string;
  /** Home path the watch was registered relative to: events are reported relative to it. */
  readonly relativePath: string | undefined;
}

interface IndexedWatch {
  readonly conn: Connection;
  readonly watch: Watch;
  /** Registration order across the store: within a connection it is the order of `conn.watches`. */
  readonly seq: number;
}

class WatchIndex {
  readonly byPath = new Map<string, IndexedWatch[]>();
  /** Position of each watching connection in `core.connections` (creation order), as last numbered. */
  readonly connRank = new WeakMap<Connection, number>();
  nextSeq = 0;
  /** Index entries looked at by fireWatches since the store started (tests assert on it). */
  visited = 0;
}

const indexes = new WeakMap<XsCore, WatchIndex>();

function indexOf(core: XsCore): WatchIndex {
  let index = indexes.get(core);
  if (!index) {
    index = new WatchIndex();
    indexes.set(core, index);
  }
  return index;
}

/**
 * Numbers every live connection in iteration order. New connections are appended to the set and
 * removals keep the others' relative order, so ranks from one pass stay comparable; a connection with
 * no rank was created after the last pass, and numbering again (once per connection's first watch)
 * puts it after the older ones and in order with other new ones.
 */
function rankConnections(core: XsCore, index: WatchIndex): void {
  let rank = 0;
  for (const c of core.connections) index.connRank.set(c, rank++);
}

/** Registers `watch` on `conn` (after the caller's EEXIST/quota/memory checks). */
export function addWatch(core: XsCore, conn: Connection, watch: Watch): void {
  const index = indexOf(core);
  if (!index.connRank.has(conn)) rankConnections(core, index);
  conn.watches.push(watch);
  const entry: IndexedWatch = { conn, watch, seq: index.nextSeq++ };
  const bucket = index.byPath.get(watch.node);
  if (bucket) bucket.push(entry);
  else index.byPath.set(watch.node, [entry]);
}

function unindex(index: WatchIndex, watch: Watch): void {
  const bucket = index.byPath.get(watch.node);
  if (!bucket) return;
  const i = bucket.findIndex((e) => e.watch === watch);
  if (i < 0) return;
  if (bucket.length === 1) index.byPath.delete(watch.node);
  else bucket.splice(i, 1);
}

/** Forgets `conn.watches[at]`. */
export function removeWatchAt(core: XsCore, conn: Connection, at: number): void {
  const [watch] = conn.watches.splice(at, 1);
  if (watch) unindex(indexOf(core), watch);
}

/** Forgets every watch of `conn`. */
export function clearWatches(core: XsCore, conn: Connection): void {
  const index = indexOf(core);
  for (const w of conn.watches) unindex(index, w);
  conn.watches.length = 0;
}

/** Index entries fireWatches has looked at, and distinct watched paths (for tests and benchmarks). */
export function watchIndexStats(core: XsCore): { visited: number; paths: number } {
  const index = indexOf(core);
  return { visited: index.visited, paths: index.byPath.size };
}

export function watchPath(watch: Watch, name: string): string {
  if (watch.relativePath === undefined) return name;
  let path = name.slice(watch.relativePath.length);
  if (path[0] === '/') path = path.slice(1);
  return path;
}

function watchPermitted(core: XsCore, conn: Connection, name: string, node: XsNode | undefined, perms: readonly NodePerm[] | undefined): boolean {
  if (perms && core.permFor(conn, perms) & PERM_READ) return true;
  let n: XsNode | null | undefined = node;
  if (!n) {
    n = core.readNode(conn, name);
    if (!n) return false;
  }
  if (core.permFor(conn, n.perms) & PERM_READ) return true;
  const parent = n.parent ?? core.readNode(conn, parentName(n.name));
  if (!parent) return false;
  return (core.permFor(conn, parent.perms) & PERM_READ) !== 0;
}

function collect(index: WatchIndex, key: string, into: IndexedWatch[] | undefined): IndexedWatch[] | undefined {
  const bucket = index.byPath.get(key);
  if (!bucket) return into;
  index.visited += bucket.length;
  if (!into) return bucket.slice();
  for (const e of bucket) into.push(e);
  return into;
}

/**
 * The watches that fire for a change at `name`: with `exact`, those on `name` itself; otherwise those
 * on `/` (which matches everything, `@` names included), on `name` and on every prefix of `name` that
 * ends right before a `/` — exactly the paths W for which `name` is W or lies below it.
 */
function matching(index: WatchIndex, name: string, exact: boolean): IndexedWatch[] | undefined {
  if (exact) return collect(index, name, undefined);
  let found = collect(index, '/', undefined);
  if (name !== '/') found = collect(index, name, found);
  for (let i = name.indexOf('/'); i >= 0; i = name.indexOf('/', i + 1)) {
    if (i === 1 && name.charCodeAt(0) === 47) continue; // the prefix "/" was looked at first
    found = collect(index, name.slice(0, i), found);
  }
  return found;
}

/**
 * fire_watches: inside a transaction the change is only noted (it fires at commit); `exact` restricts to
 * watches on exactly `name` (used for the children of a removed node).
 */
export function fireWatches(
  core: XsCore,
  conn: Connection | null,
  name: string,
  node: XsNode | undefined,
  exact: boolean,
  perms: readonly NodePerm[] | undefined,
): void {
  if (conn?.transaction) {
    conn.transaction.queueWatch(name, exact);
    return;
  }
  const index = indexes.get(core);
  if (!index) return;
  const found = matching(index, name, exact);
  if (!found) return;
  const rank = index.connRank;
  if (found.length > 1) found.sort((a, b) => rank.get(a.conn)! - rank.get(b.conn)! || a.seq - b.seq);
  const special = name[0] === '@';
  let current: Connection | undefined;
  // Permission is only worked out once a watch of the connection matches (it has no side effects).
  let permitted = false;
  for (const { conn: i, watch: w } of found) {
    if (i !== current) {
      current = i;
      // Only live connections get events (a forgotten one has no watches left anyway).
      permitted = core.connections.has(i) && (special ? core.specialReadable(i, name) : watchPermitted(core, i, name, node, perms));
    }
    if (permitted) i.queueEvent(watchPath(w, name), w.token);
  }
}
