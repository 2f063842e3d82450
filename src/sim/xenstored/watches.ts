// Watch registration and event generation. Events are generated per connection in creation order and,
// within a connection, in registration order; a connection only gets events for nodes it may read
// (or whose parent it may read), and `@` events only with read access to that special path.
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

function isChild(child: string, parent: string): boolean {
  if (parent === '/') return true;
  if (!child.startsWith(parent)) return false;
  return child.length === parent.length || child.charCodeAt(parent.length) === 47; /* '/' */
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
  const special = name[0] === '@';
  for (const i of core.connections) {
    if (i.watches.length === 0) continue;
    // Permission is only worked out once a watch matches (it has no side effects).
    let permitted: boolean | undefined;
    for (const w of i.watches) {
      if (!(exact ? name === w.node : isChild(name, w.node))) continue;
      permitted ??= special ? core.specialReadable(i, name) : watchPermitted(core, i, name, node, perms);
      if (!permitted) break;
      i.queueEvent(watchPath(w, name), w.token);
    }
  }
}
