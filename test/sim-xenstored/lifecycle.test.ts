// The embedding API: introduction state, release and hypervisor-driven domain death, stats, latency
// injection, and the socket's life (mode 0600, stale socket replaced, removed on close).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { SimXenstored } from '../../src/sim/xenstored/index.js';
import { MsgType } from '../../src/xenstore/wire.js';
import { errnoOf, WireClient } from './wire-client.js';

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'sim-xenstored-'));
}

test('RELEASE closes the guest connections, removes the nodes it owns and fires @releaseDomain', async () => {
  const xs = new SimXenstored();
  const dom0 = new WireClient(xs.connectAs(0));
  await dom0.introduce(4);
  assert.equal(xs.isIntroduced(4), true);
  assert.equal(await dom0.req(MsgType.IS_DOMAIN_INTRODUCED, '4\0'), 'T\0');
  await dom0.mkdir('/local/domain/4');
  await dom0.setPerms('/local/domain/4', ['n4']);
  await dom0.write('/vm/4/owned', 'x');
  await dom0.setPerms('/vm/4/owned', ['n4']);
  const guest = new WireClient(xs.connectAs(4));
  await guest.write('data', '1');
  await dom0.watch('@releaseDomain', 'rel');
  await dom0.watch('/vm', 'vm');
  await dom0.drainEvents();
  await dom0.release(4);
  assert.equal(await guest.waitClosed(), true);
  assert.equal(xs.isIntroduced(4), false);
  assert.equal(await errnoOf(dom0.read('/local/domain/4')), 'ENOENT');
  assert.equal(await errnoOf(dom0.read('/vm/4/owned')), 'ENOENT');
  assert.deepEqual(await dom0.ls('/vm/4'), []);
  assert.deepEqual(await dom0.drainEvents(), [
    { path: '/vm/4/owned', token: 'vm' },
    { path: '@releaseDomain', token: 'rel' },
  ]);
  assert.equal(await errnoOf(dom0.release(4)), 'ENOENT');
  assert.equal(await errnoOf(dom0.release(0)), 'EINVAL');
  dom0.close();
  await xs.close();
});

test('domainStateChanged: shutdown fires @releaseDomain once; a gone domain is forgotten and disconnected', async () => {
  const states = new Map<number, 'running' | 'shutdown' | 'dying' | 'gone'>([[3, 'running']]);
  const xs = new SimXenstored({ domainStatus: (d) => (d === 0 ? 'running' : (states.get(d) ?? 'gone')) });
  const dom0 = new WireClient(xs.connectAs(0));
  await dom0.introduce(3);
  const guest = new WireClient(xs.connectAs(3));
  await guest.sync();
  await dom0.watch('@releaseDomain', 'r');
  await dom0.drainEvents();
  xs.domainStateChanged();
  assert.deepEqual(await dom0.drainEvents(), []);
  states.set(3, 'shutdown');
  xs.domainStateChanged();
  xs.domainStateChanged();
  assert.deepEqual(await dom0.drainEvents(), [{ path: '@releaseDomain', token: 'r' }]);
  assert.equal(xs.isIntroduced(3), true);
  states.set(3, 'gone');
  xs.domainStateChanged();
  assert.deepEqual(await dom0.drainEvents(), [{ path: '@releaseDomain', token: 'r' }]);
  assert.equal(xs.isIntroduced(3), false);
  assert.equal(await guest.waitClosed(), true);
  dom0.close();
  await xs.close();
});

test('stats count nodes, connections, watches and open transactions', async () => {
  const xs = new SimXenstored();
  // A fresh xenstored holds /, /tool and /tool/xenstored.
  assert.deepEqual(xs.stats(), { nodes: 3, connections: 0, watches: 0, transactions: 0 });
  const c = new WireClient(xs.connectAs(0));
  await c.write('/a/b', '1');
  await c.watch('/a', 't');
  const tx = await c.start();
  assert.deepEqual(xs.stats(), { nodes: 5, connections: 1, watches: 1, transactions: 1 });
  await c.end(tx, false);
  c.close();
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(xs.stats(), { nodes: 5, connections: 0, watches: 0, transactions: 0 });
  await xs.close();
});

test('setLatency delays every reply', async () => {
  const xs = new SimXenstored({ latencyMs: 0 });
  const c = new WireClient(xs.connectAs(0));
  let t0 = Date.now();
  await c.sync();
  const fast = Date.now() - t0;
  xs.setLatency(60);
  t0 = Date.now();
  await c.sync();
  assert.ok(Date.now() - t0 >= 55, `reply came after ${Date.now() - t0} ms`);
  assert.ok(fast < 55);
  assert.throws(() => xs.setLatency(-1), /latency/);
  c.close();
  await xs.close();
});

test('the socket is created 0600, replaces a stale one, refuses a non-socket, and is removed on close', async () => {
  const dir = tempDir();
  try {
    const path = join(dir, 'socket');
    // A stale socket left by a dead daemon.
    const stale = createServer();
    await new Promise<void>((r) => stale.listen(path, r));
    await new Promise<void>((r) => stale.close(() => r()));
    writeFileSync(join(dir, 'file'), 'x');
    const xs = new SimXenstored();
    await assert.rejects(xs.listen(join(dir, 'file')), /not a socket/);
    await xs.listen(path);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    const c = await WireClient.socket(path);
    assert.equal(await c.req(MsgType.GET_DOMAIN_PATH, '3\0'), '/local/domain/3\0');
    // A live daemon's socket is not stale: a second one refuses to take it over.
    await assert.rejects(new SimXenstored().listen(path), /in use/);
    await xs.close();
    assert.equal(await c.waitClosed(), true);
    assert.equal(existsSync(path), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('connectAs rejects domids that cannot exist', () => {
  const xs = new SimXenstored();
  assert.throws(() => xs.connectAs(-1), /domid/);
  assert.throws(() => xs.connectAs(0x7ff0), /domid/);
  assert.throws(() => xs.connectAs(1.5), /domid/);
});

test('an in-process client that ends its side gets the stream closed and its watches forgotten', async () => {
  const xs = new SimXenstored();
  const c = new WireClient(xs.connectAs(0));
  await c.watch('/w', 't');
  assert.equal(xs.stats().watches, 1);
  c.stream.end();
  assert.equal(await c.waitClosed(), true);
  assert.deepEqual(xs.stats(), { nodes: 3, connections: 0, watches: 0, transactions: 0 });
  await xs.close();
});
