// Guest-side semantics through connectAs(domid): permissions, relative paths, quotas, transactions and
// watches as a guest sees them. (A socket is always dom0, so these cannot be compared with the C daemon;
// the expectations follow its 4.17 source.)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SimXenstored, type SimXenstoredOptions } from '../../src/sim/xenstored/index.js';
import { MsgType } from '../../src/xenstore/wire.js';
import { errnoOf, WireClient } from './wire-client.js';

/** dom0 + guest 5 introduced with the usual home directory owned by the guest. */
async function setup(opts: SimXenstoredOptions = {}) {
  const xs = new SimXenstored(opts);
  const dom0 = new WireClient(xs.connectAs(0));
  await dom0.introduce(5);
  await dom0.mkdir('/local/domain/5');
  await dom0.setPerms('/local/domain/5', ['n5', 'r0']);
  const guest = new WireClient(xs.connectAs(5));
  return {
    xs,
    dom0,
    guest,
    async done() {
      dom0.close();
      guest.close();
      await xs.close();
    },
  };
}

test('a guest writes relative to its home; the nodes it creates are its own', async () => {
  const t = await setup();
  await t.guest.write('data/x', 'v');
  assert.equal(await t.dom0.read('/local/domain/5/data/x'), 'v');
  assert.deepEqual(await t.dom0.getPerms('/local/domain/5/data/x'), ['n5', 'r0']);
  assert.equal(await t.guest.read('/local/domain/5/data/x'), 'v');
  await t.done();
});

test('nodes dom0 creates below a guest-owned node inherit its permissions, owner included', async () => {
  const t = await setup();
  await t.dom0.write('/local/domain/5/device/vif/0/state', '1');
  assert.deepEqual(await t.dom0.getPerms('/local/domain/5/device/vif/0/state'), ['n5', 'r0']);
  await t.done();
});

test('a guest cannot read or learn about nodes it has no access to', async () => {
  const t = await setup();
  await t.dom0.write('/secret/key', 'k');
  assert.equal(await errnoOf(t.guest.read('/secret/key')), 'EACCES');
  // Missing below an unreadable parent: EACCES, not ENOENT.
  assert.equal(await errnoOf(t.guest.read('/secret/nothing')), 'EACCES');
  assert.equal(await errnoOf(t.guest.read('/tool')), 'EACCES');
  // Missing below a readable parent: ENOENT.
  assert.equal(await errnoOf(t.guest.read('nothing')), 'ENOENT');
  assert.equal(await errnoOf(t.guest.write('/secret/key', 'x')), 'EACCES');
  await t.dom0.setPerms('/secret/key', ['n0', 'r5']);
  assert.equal(await t.guest.read('/secret/key'), 'k');
  assert.equal(await errnoOf(t.guest.write('/secret/key', 'x')), 'EACCES');
  await t.dom0.setPerms('/secret/key', ['n0', 'b5']);
  await t.guest.write('/secret/key', 'x');
  assert.equal(await t.dom0.read('/secret/key'), 'x');
  await t.done();
});

test('a guest may change permissions of its own nodes but not give them away', async () => {
  const t = await setup();
  await t.guest.write('mine', '1');
  await t.guest.setPerms('mine', ['n5', 'r7']);
  assert.deepEqual(await t.guest.getPerms('mine'), ['n5', 'r7']);
  assert.equal(await errnoOf(t.guest.setPerms('mine', ['n7'])), 'EPERM');
  assert.equal(await errnoOf(t.guest.setPerms('mine', ['n5', 'r1', 'r2', 'r3', 'r4', 'r6'])), 'ENOSPC');
  await t.dom0.write('/local/domain/5/dom0s', '1');
  await t.dom0.setPerms('/local/domain/5/dom0s', ['n0', 'b5']);
  assert.equal(await errnoOf(t.guest.setPerms('dom0s', ['n0', 'r5'])), 'EACCES');
  await t.done();
});

test('privileged operations are refused to a guest', async () => {
  const t = await setup();
  for (const [type, payload] of [
    [MsgType.INTRODUCE, '6\x001\x001\0'],
    [MsgType.RELEASE, '5\0'],
    [MsgType.CONTROL, 'print\0hi\0'],
    [MsgType.IS_DOMAIN_INTRODUCED, '5\0'],
    [MsgType.SET_TARGET, '5\x006\0'],
    [MsgType.RESUME, '5\0'],
  ] as const) {
    assert.equal(await errnoOf(t.guest.req(type, payload)), 'EACCES', MsgType[type]);
  }
  assert.equal(await t.guest.req(MsgType.GET_DOMAIN_PATH, '5\0'), '/local/domain/5\0');
  await t.done();
});

test('node quota: a guest gets ENOSPC past its node count; dom0 has no quota', async () => {
  const t = await setup({ quotas: { nodes: 10 } });
  // The home directory already counts as one of the guest's nodes.
  for (let i = 0; i < 9; i++) await t.guest.write(`n${i}`, 'x');
  assert.equal(await errnoOf(t.guest.write('n9', 'x')), 'ENOSPC');
  // Overwriting an existing node needs no new entry.
  await t.guest.write('n0', 'again');
  await t.guest.rm('n0');
  await t.guest.write('n9', 'x');
  for (let i = 0; i < 20; i++) await t.dom0.write(`/d0/n${i}`, 'x');
  await t.done();
});

test('node size quota: ENOSPC for a guest when the stored node would reach valueSize', async () => {
  const t = await setup({ quotas: { valueSize: 100 } });
  // 24-byte header + 8 bytes per permission entry (2 here) + value must stay below 100: 59 bytes fit.
  await t.guest.write('v', 'x'.repeat(59));
  assert.equal(await errnoOf(t.guest.write('v', 'x'.repeat(60))), 'ENOSPC');
  assert.equal((await t.guest.read('v')).length, 59);
  await t.dom0.write('/local/domain/5/big', 'y'.repeat(4000));
  assert.equal((await t.guest.read('big')).length, 4000);
  await t.done();
});

test('memory quota: a guest whose records and watches reach it gets ENOMEM; CONTROL quota reports it', async () => {
  const t = await setup();
  await t.dom0.req(MsgType.CONTROL, 'quota\0set\0memory\x002000\0');
  await t.guest.write('v', 'x'.repeat(1500));
  assert.equal(await errnoOf(t.guest.write('w', 'y'.repeat(500))), 'ENOMEM');
  assert.equal(await errnoOf(t.guest.watch('some/path', 't'.repeat(400))), 'ENOMEM');
  const report = await t.dom0.req(MsgType.CONTROL, 'quota\x005\0');
  const memory = Number(/memory\s*:\s*(\d+)/.exec(report)?.[1]);
  // home (24 + 2 perms + "v\0", key 15) + v (24 + 2 perms + 1500, key 17)
  assert.equal(memory, 24 + 16 + 2 + 15 + (24 + 16 + 1500 + 17));
  await t.guest.rm('v');
  await t.guest.write('w', 'y'.repeat(500));
  await t.done();
});

test('watch quota: E2BIG once a guest holds more than the limit', async () => {
  const t = await setup({ quotas: { watches: 3 } });
  // xenstored checks "more than the quota" before adding, so quota + 1 watches fit.
  for (let i = 0; i < 4; i++) await t.guest.watch(`w${i}`, 't');
  assert.equal(await errnoOf(t.guest.watch('w4', 't')), 'E2BIG');
  await t.guest.unwatch('w0', 't');
  await t.guest.watch('w4', 't');
  for (let i = 0; i < 50; i++) await t.dom0.watch(`/x${i}`, 't');
  await t.done();
});

test('transaction quota: ENOSPC for a guest past the limit of open transactions', async () => {
  const t = await setup({ quotas: { transactions: 2 } });
  const ids = [await t.guest.start(), await t.guest.start(), await t.guest.start()];
  assert.deepEqual(ids, [1, 2, 3]);
  assert.equal(await errnoOf(t.guest.start()), 'ENOSPC');
  await t.guest.end(ids[0]!, false);
  assert.equal(await t.guest.start(), 4);
  await t.done();
});

test('transactions: private view, EAGAIN on conflict, watches fire at commit', async () => {
  const t = await setup();
  await t.guest.write('a', '1');
  await t.dom0.watch('/local/domain/5/a', 'tok');
  assert.deepEqual(await t.dom0.drainEvents(), [{ path: '/local/domain/5/a', token: 'tok' }]);

  const tx = await t.guest.start();
  assert.equal(await t.guest.read('a', tx), '1');
  await t.guest.write('a', '2', tx);
  assert.equal(await t.guest.read('a', tx), '2');
  assert.equal(await t.guest.read('a'), '1');
  assert.deepEqual(await t.dom0.drainEvents(), []);
  await t.guest.end(tx);
  assert.equal(await t.guest.read('a'), '2');
  assert.deepEqual(await t.dom0.drainEvents(), [{ path: '/local/domain/5/a', token: 'tok' }]);

  const tx2 = await t.guest.start();
  assert.equal(await t.guest.read('a', tx2), '2');
  await t.guest.write('b', 'x', tx2);
  await t.dom0.write('/local/domain/5/a', 'other');
  assert.equal(await errnoOf(t.guest.end(tx2)), 'EAGAIN');
  assert.equal(await errnoOf(t.guest.read('b')), 'ENOENT');
  // The transaction is gone after a failed commit.
  assert.equal(await errnoOf(t.guest.read('a', tx2)), 'ENOENT');
  await t.done();
});

test('watches: initial event, relative paths reported relative, RM of a parent, unreadable nodes hidden', async () => {
  const t = await setup();
  await t.guest.watch('dev', 'g');
  await t.guest.watch('/local/domain/5/dev/sub', 'abs');
  assert.deepEqual(await t.guest.drainEvents(), [
    { path: 'dev', token: 'g' },
    { path: '/local/domain/5/dev/sub', token: 'abs' },
  ]);
  await t.dom0.write('/local/domain/5/dev/sub/x', '1');
  assert.deepEqual(await t.guest.drainEvents(), [
    { path: 'dev/sub/x', token: 'g' },
    { path: '/local/domain/5/dev/sub/x', token: 'abs' },
  ]);
  // Removing a parent fires, bottom-up, the watches set exactly on the nodes below it, then the
  // watches on the parent and above.
  await t.dom0.rm('/local/domain/5/dev');
  assert.deepEqual(await t.guest.drainEvents(), [
    { path: '/local/domain/5/dev/sub', token: 'abs' },
    { path: 'dev', token: 'g' },
  ]);
  // A watch on a node the guest cannot read registers, fires once, then stays silent.
  await t.dom0.write('/hidden/n', '1');
  await t.guest.watch('/hidden', 'h');
  assert.deepEqual(await t.guest.drainEvents(), [{ path: '/hidden', token: 'h' }]);
  await t.dom0.write('/hidden/n', '2');
  assert.deepEqual(await t.guest.drainEvents(), []);
  await t.done();
});

test('the writer gets its own watch event before the reply, as xenstored queues them', async () => {
  const t = await setup();
  await t.dom0.watch('/order', 'o');
  await t.dom0.drainEvents();
  const before = t.dom0.frames.length;
  await t.dom0.write('/order/x', '1');
  const frames = t.dom0.frames.slice(before).map((f) => f.type);
  assert.deepEqual(frames, [MsgType.WATCH_EVENT, MsgType.WRITE]);
  await t.done();
});

test('@introduceDomain and @releaseDomain reach dom0 only, unless permitted', async () => {
  const t = await setup();
  await t.dom0.watch('@introduceDomain', 'i');
  await t.dom0.watch('@releaseDomain', 'r');
  await t.guest.watch('@releaseDomain', 'gr');
  await t.dom0.drainEvents();
  await t.guest.drainEvents();
  await t.dom0.introduce(7);
  assert.deepEqual(await t.dom0.drainEvents(), [{ path: '@introduceDomain', token: 'i' }]);
  await t.dom0.release(7);
  assert.deepEqual(await t.dom0.drainEvents(), [{ path: '@releaseDomain', token: 'r' }]);
  assert.deepEqual(await t.guest.drainEvents(), []);
  await t.dom0.setPerms('@releaseDomain', ['n0', 'r5']);
  await t.dom0.introduce(8);
  await t.dom0.release(8);
  assert.deepEqual(await t.guest.drainEvents(), [{ path: '@releaseDomain', token: 'gr' }]);
  await t.done();
});

test('SET_TARGET lets a device-model domain act on its target\'s nodes', async () => {
  const t = await setup();
  await t.dom0.introduce(9);
  const dm = new WireClient(t.xs.connectAs(9));
  await t.guest.write('for-dm', 'v');
  assert.equal(await errnoOf(dm.read('/local/domain/5/for-dm')), 'EACCES');
  await t.dom0.req(MsgType.SET_TARGET, '9\x005\0');
  assert.equal(await dm.read('/local/domain/5/for-dm'), 'v');
  await dm.write('/local/domain/5/for-dm', 'w');
  dm.close();
  await t.done();
});
