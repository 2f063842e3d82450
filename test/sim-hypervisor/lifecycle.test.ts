import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CreateFlag, DomInfoFlag, HypervisorError, ShutdownReason } from '../../src/hypervisor/types.js';
import { buildGuest, sleep, startHarness, uuid, waitFor, type Harness } from './harness.js';

const rejectsWith = (p: Promise<unknown>, call: string, errno: string) =>
  assert.rejects(p, (err: unknown) => err instanceof HypervisorError && err.call === call && err.errno === errno);

describe('sim hypervisor: domain lifecycle over the RPC', { timeout: 20_000 }, () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ destroyDelayMs: 30 });
  });
  after(async () => h.close());

  test('version, physinfo and dom0', async () => {
    assert.deepEqual(await h.hv.version(), { major: 4, minor: 17, extra: '.0-sim' });
    const phys = await h.hv.physinfo();
    assert.equal(phys.nrCpus, 8);
    assert.equal(phys.pageSize, 4096);
    assert.equal(phys.totalPages, 16 * 1024 * 256);
    const dom0 = await h.hv.getDomainInfo(0);
    assert.ok(dom0);
    assert.equal(dom0.domid, 0);
    assert.equal(dom0.totPages, 1024 * 256);
    assert.equal(phys.freePages, phys.totalPages - dom0.totPages);
    assert.ok(dom0.running);
    await rejectsWith(h.hv.destroy(0), 'destroy', 'EPERM');
    await rejectsWith(h.hv.pause(0), 'pause', 'EINVAL');
  });

  test('a created domain: handle, flags, paused, no memory until built', async () => {
    const handle = uuid();
    const domid = await h.hv.createDomain({ handle, flags: CreateFlag.hvm | CreateFlag.hap | CreateFlag.xs_domain, maxVcpus: 4 });
    assert.ok(domid >= 1);
    const info = await h.hv.getDomainInfo(domid);
    assert.ok(info);
    assert.equal(info.handle, handle);
    assert.equal(info.hvm, true);
    assert.equal(info.paused, true);
    assert.equal(info.running, false);
    assert.equal(info.totPages, 0);
    assert.equal(info.maxPages, 0);
    assert.equal(info.maxVcpuId, 3);
    assert.equal(info.flags, DomInfoFlag.hvm_guest | DomInfoFlag.paused | DomInfoFlag.xs_domain | DomInfoFlag.hap);
    await rejectsWith(h.hv.setMaxVcpus(domid, 5), 'setMaxVcpus', 'EINVAL');
    await h.hv.setMaxVcpus(domid, 2);
    await h.hv.setMaxMem(domid, 8 * 1024);
    assert.equal((await h.hv.getDomainInfo(domid))!.maxPages, 2048);
    await rejectsWith(h.hv.build(domid, { type: 'pv', kernel: 'k', memoryMib: 8, storePort: 1, consolePort: 2 }), 'build', 'EINVAL');
    const built = await h.hv.build(domid, { type: 'hvm', kernel: 'hvmloader', memoryMib: 8, storePort: 1, consolePort: 2 });
    assert.equal(typeof built.storeMfn, 'bigint');
    const after = (await h.hv.getDomainInfo(domid))!;
    assert.equal(after.totPages, 2048);
    assert.equal(after.onlineVcpus, 2);
    await rejectsWith(h.hv.build(domid, { type: 'hvm', kernel: 'k', memoryMib: 8, storePort: 1, consolePort: 2 }), 'build', 'EEXIST');
    await h.hv.destroy(domid);
  });

  test('bad create configs are refused with EINVAL', async () => {
    await rejectsWith(h.hv.createDomain({ handle: 'not-a-uuid', flags: 0, maxVcpus: 1 }), 'createDomain', 'EINVAL');
    await rejectsWith(h.hv.createDomain({ handle: uuid(), flags: 0, maxVcpus: 0 }), 'createDomain', 'EINVAL');
  });

  test('pause counts nest; unpause at count 0 is EINVAL; cpu time grows only while running', async () => {
    const domid = await buildGuest(h.hv);
    await h.hv.unpause(domid);
    let info = (await h.hv.getDomainInfo(domid))!;
    assert.equal(info.paused, false);
    assert.equal(info.running, true);
    assert.ok(info.flags & DomInfoFlag.running);
    await rejectsWith(h.hv.unpause(domid), 'unpause', 'EINVAL');
    await sleep(30);
    const t1 = (await h.hv.getDomainInfo(domid))!.cpuTimeNs;
    assert.ok(t1 >= 20e6, `cpu time ${t1} after 30 ms running`);
    await h.hv.pause(domid);
    await h.hv.pause(domid);
    await h.hv.unpause(domid);
    info = (await h.hv.getDomainInfo(domid))!;
    assert.equal(info.paused, true, 'paused twice, unpaused once: still paused');
    const t2 = info.cpuTimeNs;
    await sleep(30);
    assert.equal((await h.hv.getDomainInfo(domid))!.cpuTimeNs, t2, 'no cpu time while paused');
    await h.hv.unpause(domid);
    assert.equal((await h.hv.getDomainInfo(domid))!.running, true);
    await h.hv.destroy(domid);
  });

  for (const [name, code] of Object.entries(ShutdownReason)) {
    test(`shutdown with reason ${name} sets the shutdown flag and code ${code}`, async () => {
      const domid = await buildGuest(h.hv);
      await h.hv.unpause(domid);
      const events: unknown[] = [];
      const onShutdown = (d: number, r: number) => d === domid && events.push(['shutdown', d, r]);
      const onExc = (d: number) => d === domid && events.push(['domExc', d]);
      h.sim.on('shutdown', onShutdown);
      h.sim.on('domExc', onExc);
      try {
        await h.hv.shutdown(domid, code);
        const info = (await h.hv.getDomainInfo(domid))!;
        assert.equal(info.shutdown, true);
        assert.equal(info.shutdownReason, code);
        assert.equal((info.flags >> 16) & 0xff, code);
        assert.ok(info.flags & DomInfoFlag.shutdown);
        assert.equal(info.running, false);
        // Xen keeps the first reason.
        await h.hv.shutdown(domid, code === 0 ? 1 : 0);
        assert.equal((await h.hv.getDomainInfo(domid))!.shutdownReason, code);
        assert.deepEqual(events, [['shutdown', domid, code], ['domExc', domid]]);
      } finally {
        h.sim.off('shutdown', onShutdown);
        h.sim.off('domExc', onExc);
      }
      await h.hv.destroy(domid);
    });
  }

  test('a guest shutting itself down (SCHEDOP_shutdown) is seen through getinfo', async () => {
    const domid = await buildGuest(h.hv);
    await h.hv.unpause(domid);
    h.sim.shutdownFromGuest(domid, ShutdownReason.crash);
    const info = (await h.hv.getDomainInfo(domid))!;
    assert.equal(info.shutdownReason, ShutdownReason.crash);
    await rejectsWith(h.hv.shutdown(domid, 6), 'shutdown', 'EINVAL');
    await h.hv.destroy(domid);
  });

  test('destroy: dying with memory returned, then gone; a dying domid is not reused', async () => {
    const before = (await h.hv.physinfo()).freePages;
    const domid = await buildGuest(h.hv, { memoryMib: 32 });
    assert.equal((await h.hv.physinfo()).freePages, before - 32 * 256);
    const gone = new Promise<number>((resolve) => {
      const onDestroyed = (d: number) => {
        if (d !== domid) return;
        h.sim.off('destroyed', onDestroyed);
        resolve(d);
      };
      h.sim.on('destroyed', onDestroyed);
    });
    await h.hv.destroy(domid);
    const dying = (await h.hv.getDomainInfo(domid))!;
    assert.equal(dying.dying, true);
    assert.ok(dying.flags & DomInfoFlag.dying);
    assert.equal(dying.totPages, 0);
    assert.equal((await h.hv.physinfo()).freePages, before);
    await h.hv.destroy(domid); // destroying a dying domain is not an error
    await rejectsWith(h.hv.unpause(domid), 'unpause', 'ESRCH');
    // Wrap the domid rover round: while `domid` is dying, new domains never get it.
    const fresh: number[] = [];
    for (let i = 0; i < 3; i++) fresh.push(await h.hv.createDomain({ handle: uuid(), flags: 0, maxVcpus: 1 }));
    assert.ok(!fresh.includes(domid));
    assert.equal(await gone, domid);
    assert.equal(await h.hv.getDomainInfo(domid), undefined);
    await rejectsWith(h.hv.destroy(domid), 'destroy', 'ESRCH');
    for (const d of fresh) await h.hv.destroy(d);
  });

  test('getDomainInfoList: from a first domid, bounded by max, dom0 included', async () => {
    const a = await h.hv.createDomain({ handle: uuid(), flags: 0, maxVcpus: 1 });
    const b = await h.hv.createDomain({ handle: uuid(), flags: 0, maxVcpus: 1 });
    const all = await h.hv.getDomainInfoList(0, 1000);
    assert.equal(all[0]!.domid, 0);
    assert.ok(all.some((i) => i.domid === a) && all.some((i) => i.domid === b));
    const fromB = await h.hv.getDomainInfoList(b, 10);
    assert.equal(fromB[0]!.domid, b);
    assert.equal((await h.hv.getDomainInfoList(0, 1)).length, 1);
    await h.hv.destroy(a);
    await h.hv.destroy(b);
  });

  test('event channels: lowest free port per domain, ENOSPC when full, ESRCH for no domain', async () => {
    const domid = await h.hv.createDomain({ handle: uuid(), flags: 0, maxVcpus: 1, maxEvtchnPort: 3 });
    assert.equal(await h.hv.evtchnAllocUnbound(domid, 0), 1);
    assert.equal(await h.hv.evtchnAllocUnbound(domid, 0), 2);
    assert.equal(await h.hv.evtchnAllocUnbound(domid, 0), 3);
    await rejectsWith(h.hv.evtchnAllocUnbound(domid, 0), 'evtchnAllocUnbound', 'ENOSPC');
    const other = await h.hv.createDomain({ handle: uuid(), flags: 0, maxVcpus: 1 });
    assert.equal(await h.hv.evtchnAllocUnbound(other, 0), 1, 'ports are per domain');
    await rejectsWith(h.hv.evtchnAllocUnbound(0x7000, 0), 'evtchnAllocUnbound', 'ESRCH');
    await h.hv.destroy(domid);
    await h.hv.destroy(other);
  });

  test('domExc fires on destroy (dying) and again when the domain is gone', async () => {
    const domid = await buildGuest(h.hv);
    const seen: number[] = [];
    const onExc = (d: number) => {
      if (d === domid) seen.push(d);
    };
    h.sim.on('domExc', onExc);
    await h.hv.destroy(domid);
    await waitFor(() => seen.length >= 2);
    h.sim.off('domExc', onExc);
    assert.deepEqual(seen, [domid, domid]);
  });
});
