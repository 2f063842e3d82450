// The watch index: a change only looks at the watches that can match it, and fires exactly what a scan
// of every connection's watches fired (same events, same order across and within connections, same
// permission filtering), including for `/`, `@` paths, relative watches and late-created connections.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Connection } from '../../src/sim/xenstored/connection.js';
import { parentName, WALK_OK, WALK_SKIP_CHILDREN, WALK_SUCCESS_STOP, type XsCore, type XsNode } from '../../src/sim/xenstored/core.js';
import { SimXenstored } from '../../src/sim/xenstored/index.js';
import { PERM_READ, type NodePerm } from '../../src/sim/xenstored/perms.js';
import {
  addWatch,
  clearWatches,
  fireWatches,
  removeWatchAt,
  watchIndexStats,
  watchPath,
  type Watch,
} from '../../src/sim/xenstored/watches.js';
import { WireClient } from './wire-client.js';

function coreOf(xs: SimXenstored): XsCore {
  return (xs as unknown as { core: XsCore }).core;
}

// The scan the index replaced, kept as the oracle: every live connection in creation order, each
// connection's watches in registration order.
function isChild(child: string, parent: string): boolean {
  if (parent === '/') return true;
  if (!child.startsWith(parent)) return false;
  return child.length === parent.length || child.charCodeAt(parent.length) === 47;
}

function permitted(core: XsCore, conn: Connection, name: string, node: XsNode | undefined, perms: readonly NodePerm[] | undefined): boolean {
  if (perms && core.permFor(conn, perms) & PERM_READ) return true;
  const n = node ?? core.readNode(conn, name);
  if (!n) return false;
  if (core.permFor(conn, n.perms) & PERM_READ) return true;
  const parent = n.parent ?? core.readNode(conn, parentName(n.name));
  return !!parent && (core.permFor(conn, parent.perms) & PERM_READ) !== 0;
}

function scanFire(core: XsCore, name: string, exact: boolean, perms: readonly NodePerm[] | undefined): void {
  for (const c of core.connections) {
    let ok: boolean | undefined;
    for (const w of c.watches) {
      if (!(exact ? name === w.node : isChild(name, w.node))) continue;
      ok ??= name[0] === '@' ? core.specialReadable(c, name) : permitted(core, c, name, undefined, perms);
      if (!ok) break;
      c.queueEvent(watchPath(w, name), w.token);
    }
  }
}

/** Records every queueEvent call (before the connection's de-duplication) as "connIndex path token". */
function spy(conns: Connection[], log: string[]): void {
  conns.forEach((c, i) => {
    const original = c.queueEvent.bind(c);
    c.queueEvent = (path: string, token: string) => {
      log.push(`${i} ${path} ${token}`);
      original(path, token);
    };
  });
}

/** Deterministic pseudo-random numbers (the failure must be reproducible). */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

test('indexed fireWatches fires exactly what the full scan fired, in the same order', async () => {
  const xs = new SimXenstored();
  const core = coreOf(xs);
  const dom0 = new WireClient(xs.connectAs(0));
  await dom0.introduce(5);
  await dom0.introduce(7);
  for (const p of ['/a/b/c', '/a/bc', '/local/domain/5/data/x', '/local/domain/7/data', '/vm/5/secret']) await dom0.write(p, 'v');
  await dom0.setPerms('/local/domain/5', ['n5']);
  await dom0.setPerms('/local/domain/5/data', ['n5']);
  await dom0.setPerms('/local/domain/7', ['n7', 'r5']);
  await dom0.setPerms('/vm/5/secret', ['n0']);
  await dom0.setPerms('/vm/5', ['n0']);
  const clients: WireClient[] = [];
  const open = async (domid: number): Promise<Connection> => {
    const before = new Set(core.connections);
    const c = new WireClient(xs.connectAs(domid));
    clients.push(c);
    await c.sync();
    return [...core.connections].find((x) => !before.has(x))!;
  };
  const conns: Connection[] = [];
  for (const d of [0, 5, 0, 7, 5]) conns.push(await open(d));

  const paths = ['/', '/a', '/a/b', '/a/b/c', '/a/bc', '/a/b/c/d', '/local/domain/5', '/local/domain/5/data', '/local/domain/7/data',
    '/vm', '/vm/5/secret', '@releaseDomain', '@introduceDomain'];
  const rand = prng(42);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const register = (conn: Connection, n: number): void => {
    for (let i = 0; i < n; i++) {
      const relative = conn.id === 5 && rand() < 0.3;
      const node = relative ? pick(['/local/domain/5', '/local/domain/5/data']) : pick(paths);
      const w: Watch = { node, token: `t${i}`, relativePath: relative ? '/local/domain/5' : undefined };
      addWatch(core, conn, w);
    }
  };
  // Registered out of creation order: the last-created connections first.
  for (const c of [...conns].reverse()) register(c, 12);
  for (const c of conns) register(c, 8);
  for (const c of conns) for (let i = 0; i < 4; i++) removeWatchAt(core, c, Math.floor(rand() * c.watches.length));
  // Connections created after the index numbered the others; the newer one registers first.
  const late = [await open(0), await open(5)];
  register(late[1]!, 10);
  register(late[0]!, 10);
  conns.push(...late);
  // A connection whose watches are all forgotten (what a reset does).
  clearWatches(core, conns[2]!);
  register(conns[2]!, 5);

  const names = [...paths, '/a/b/c/d/e', '/local', '/local/domain/7', '/nowhere/x', '/a/b/', '@other'];
  const permsChoices: (readonly NodePerm[] | undefined)[] = [undefined, [{ id: 5, bits: PERM_READ }], [{ id: 0, bits: 0 }]];
  const log: string[] = [];
  spy(conns, log);
  let fired = 0;
  for (const name of names) {
    for (const exact of [false, true]) {
      for (const perms of permsChoices) {
        log.length = 0;
        fireWatches(core, null, name, undefined, exact, perms);
        const got = log.slice();
        log.length = 0;
        scanFire(core, name, exact, perms);
        assert.deepEqual(got, log, `${name} exact=${exact} perms=${JSON.stringify(perms)}`);
        fired += got.length;
      }
    }
  }
  // The comparison covered events from several connections, including filtered-out ones.
  assert.ok(fired > 100, `only ${fired} events compared`);
  for (const c of clients) c.close();
  dom0.close();
  await xs.close();
});

test('a write looks only at the watches on its path and ancestors, not at 3,000 unrelated ones', async () => {
  const xs = new SimXenstored();
  const core = coreOf(xs);
  const dom0 = new WireClient(xs.connectAs(0));
  const watcher = new WireClient(xs.connectAs(0));
  const watches: Promise<void>[] = [];
  for (let d = 1; d <= 1000; d++) {
    for (const leaf of ['control/shutdown', 'device', 'memory/target']) watches.push(watcher.watch(`/local/domain/${d}/${leaf}`, `w${d}`));
  }
  await Promise.all(watches);
  assert.equal(xs.stats().watches, 3000);
  await watcher.drainEvents();

  const before = watchIndexStats(core).visited;
  for (let i = 0; i < 100; i++) await dom0.write(`/vm/x${i}/name`, 'v');
  assert.equal(watchIndexStats(core).visited - before, 0, 'writes with no watch on their path looked at watches');

  const mid = watchIndexStats(core).visited;
  await dom0.write('/local/domain/17/device/vif/0/state', '4');
  await dom0.rm('/local/domain/17/device');
  // The write (creating 4 nodes fires once, for the node written) and the rm (device, vif, 0, state)
  // each see only /local/domain/17/device's watch.
  assert.ok(watchIndexStats(core).visited - mid <= 5, `visited ${watchIndexStats(core).visited - mid}`);
  await watcher.sync();
  assert.deepEqual(await watcher.drainEvents(), [
    { path: '/local/domain/17/device/vif/0/state', token: 'w17' },
    { path: '/local/domain/17/device', token: 'w17' },
  ]);

  // Unwatch and a dropped connection take their watches out of the index.
  await watcher.unwatch('/local/domain/17/device', 'w17');
  const paths = watchIndexStats(core).paths;
  assert.equal(paths, 2999);
  watcher.close();
  await dom0.sync();
  assert.equal(watchIndexStats(core).paths, 0);
  await dom0.write('/local/domain/18/device', 'x');
  dom0.close();
  await xs.close();
});

/** A store with nodes owned by dom0, 3, 4 and 5 in and under one another, and a watcher on everything. */
async function ownedTree(seed: number): Promise<{ xs: SimXenstored; dom0: WireClient; watcher: WireClient }> {
  const xs = new SimXenstored();
  const dom0 = new WireClient(xs.connectAs(0));
  const rand = prng(seed);
  for (const d of [3, 4, 5]) await dom0.introduce(d);
  const names: string[] = [];
  for (let i = 0; i < 300; i++) {
    const top = ['/local/domain/3', '/local/domain/4', '/local/domain/5', '/local/domain/0/backend/vbd', '/vm', '/tool/x'][Math.floor(rand() * 6)]!;
    let name = top;
    const depth = 1 + Math.floor(rand() * 4);
    for (let k = 0; k < depth; k++) name += `/${'abcd'[Math.floor(rand() * 4)]}`;
    names.push(name);
    await dom0.write(name, 'v');
  }
  for (const name of names) {
    if (rand() < 0.4) await dom0.setPerms(name, [`n${[0, 3, 4, 5][Math.floor(rand() * 4)]}`]);
  }
  await dom0.setPerms('/local/domain/4', ['n4']);
  // A subtree with nothing of domain 4 in it: release has no reason to enter it.
  await Promise.all(Array.from({ length: 200 }, (_, i) => dom0.write(`/local/domain/3/big/${i}`, 'v')));
  const watcher = new WireClient(xs.connectAs(0));
  await watcher.watch('/', 'all');
  await watcher.watch('@releaseDomain', 'rel');
  await watcher.drainEvents();
  return { xs, dom0, watcher };
}

function dump(core: XsCore): string[] {
  return [...core.db].map(([name, rec]) => `${name} ${JSON.stringify(rec.perms)} ${rec.children.join(',')}`).sort();
}

test('release removes the same nodes in the same order as the walk of the whole tree, entering far fewer nodes', async () => {
  for (const seed of [1, 2, 3]) {
    const a = await ownedTree(seed);
    const b = await ownedTree(seed);
    const coreA = coreOf(a.xs);
    const coreB = coreOf(b.xs);
    assert.deepEqual(dump(coreA), dump(coreB));
    const domainB = coreB.domains.find(4)!;
    assert.ok(domainB.nbentry > 1);
    // The oracle: xenstored's walk over every node, then a release with nothing left to remove.
    let oracleReads = 0;
    const readNodeB = coreB.readNode.bind(coreB);
    coreB.readNode = (conn, name) => {
      oracleReads++;
      return readNodeB(conn, name);
    };
    coreB.walk(null, '/', (node) => {
      if (node.perms[0]!.id !== 4) return WALK_OK;
      assert.equal(coreB.rmNode(null, node.name), undefined);
      return domainB.nbentry > 0 ? WALK_SKIP_CHILDREN : WALK_SUCCESS_STOP;
    }, undefined);
    coreB.readNode = readNodeB;
    await b.dom0.release(4);

    let reads = 0;
    const readNode = coreA.readNode.bind(coreA);
    coreA.readNode = (conn, name) => {
      reads++;
      return readNode(conn, name);
    };
    await a.dom0.release(4);
    coreA.readNode = readNode;

    await a.watcher.sync();
    await b.watcher.sync();
    const eventsA = await a.watcher.drainEvents();
    assert.deepEqual(eventsA, await b.watcher.drainEvents(), `seed ${seed}`);
    assert.ok(eventsA.length > 5, `seed ${seed}: only ${eventsA.length} events`);
    assert.equal(eventsA.at(-1)?.token, 'rel');
    assert.deepEqual(dump(coreA), dump(coreB), `seed ${seed}`);
    // The 200 nodes of /local/domain/3/big are read by the oracle and not by the release.
    assert.ok(reads + 200 <= oracleReads, `seed ${seed}: release read ${reads} nodes, the whole walk ${oracleReads}`);
    for (const { xs, dom0, watcher } of [a, b]) {
      watcher.close();
      dom0.close();
      await xs.close();
    }
  }
});
