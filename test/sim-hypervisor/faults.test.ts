import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { HypervisorError } from '../../src/hypervisor/types.js';
import { buildGuest, startHarness, uuid, type Harness } from './harness.js';

const rejectsWith = (p: Promise<unknown>, call: string, errno: string) =>
  assert.rejects(p, (err: unknown) => err instanceof HypervisorError && err.call === call && err.errno === errno && /injected/.test(err.message));

describe('sim hypervisor: injected hypercall faults seen through the RPC', { timeout: 20_000 }, () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(async () => h.close());

  test('once: the next call fails with the chosen errno, the one after succeeds', async () => {
    h.sim.injectFault({ call: 'createDomain', errno: 'ENOMEM', times: 1 });
    await rejectsWith(h.hv.createDomain({ handle: uuid(), flags: 0, maxVcpus: 1 }), 'createDomain', 'ENOMEM');
    const domid = await h.hv.createDomain({ handle: uuid(), flags: 0, maxVcpus: 1 });
    assert.ok(domid > 0);
    assert.deepEqual(h.sim.listFaults(), []);
    await h.hv.destroy(domid);
  });

  test('times: 2 fails twice; other calls are unaffected', async () => {
    const domid = await buildGuest(h.hv);
    h.sim.injectFault({ call: 'unpause', errno: 'EBUSY', times: 2 });
    await rejectsWith(h.hv.unpause(domid), 'unpause', 'EBUSY');
    assert.ok(await h.hv.getDomainInfo(domid));
    await rejectsWith(h.hv.unpause(domid), 'unpause', 'EBUSY');
    await h.hv.unpause(domid);
    assert.equal((await h.hv.getDomainInfo(domid))!.running, true);
    await h.hv.destroy(domid);
  });

  test('always: every call fails until the fault is cleared', async () => {
    h.sim.injectFault({ call: 'getDomainInfoList', errno: 'EPERM' });
    for (let i = 0; i < 3; i++) await rejectsWith(h.hv.getDomainInfoList(0, 10), 'getDomainInfoList', 'EPERM');
    assert.deepEqual(h.sim.listFaults(), [{ call: 'getDomainInfoList', errno: 'EPERM' }]);
    h.sim.clearFaults();
    assert.ok((await h.hv.getDomainInfoList(0, 10)).length >= 1);
  });

  test('a fault in build leaves no memory taken; a fault in save or restore fails it cleanly', async () => {
    const free = (await h.hv.physinfo()).freePages;
    h.sim.injectFault({ call: 'build', errno: 'EFAULT', times: 1 });
    await assert.rejects(buildGuest(h.hv), (err: unknown) => err instanceof HypervisorError && err.errno === 'EFAULT');
    assert.equal((await h.hv.physinfo()).freePages, free);

    const domid = await buildGuest(h.hv);
    h.sim.injectFault({ call: 'save', errno: 'EIO', times: 1 });
    const fd = openSync(join(h.dir, 'fault.stream'), 'w');
    try {
      await rejectsWith(h.hv.save(domid, fd, { live: false }, { suspend: async () => h.sim.shutdownFromGuest(domid, 2) }), 'save', 'EIO');
    } finally {
      closeSync(fd);
    }
    const fd2 = openSync(join(h.dir, 'fault.stream'), 'w');
    try {
      await h.hv.save(domid, fd2, { live: false }, { suspend: async () => h.sim.shutdownFromGuest(domid, 2) });
    } finally {
      closeSync(fd2);
    }
    h.sim.injectFault({ call: 'restore', errno: 'ENOMEM', times: 1 });
    const target = await h.hv.createDomain({ handle: uuid(), flags: 0, maxVcpus: 1 });
    const rfd = openSync(join(h.dir, 'fault.stream'), 'r');
    try {
      await rejectsWith(h.hv.restore(target, rfd, { storePort: 1, consolePort: 2 }), 'restore', 'ENOMEM');
    } finally {
      closeSync(rfd);
    }
    await h.hv.destroy(domid);
    await h.hv.destroy(target);
  });

  test('fault specs are checked', () => {
    assert.throws(() => h.sim.injectFault({ call: 'pause', errno: 'nope' }), /errno/);
    assert.throws(() => h.sim.injectFault({ call: '', errno: 'EIO' }), /call/);
    assert.throws(() => h.sim.injectFault({ call: 'pause', errno: 'EIO', times: 0 }), /times/);
  });
});
