import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { HypervisorError } from '../../src/hypervisor/types.js';
import { buildGuest, sleep, startHarness, uuid, type Harness } from './harness.js';

const rejectsWith = (p: Promise<unknown>, call: string, errno: string) =>
  assert.rejects(p, (err: unknown) => err instanceof HypervisorError && err.call === call && err.errno === errno);

describe('sim hypervisor: memory accounting, ENOMEM and log-dirty over the RPC', { timeout: 20_000 }, () => {
  let h: Harness;
  before(async () => {
    // A small host: 2 GiB with 512 MiB for dom0.
    h = await startHarness({ memoryMib: 2048, dom0MemoryMib: 512, destroyDelayMs: 5 });
  });
  after(async () => h.close());

  test('build takes memory from the host, destroy gives it back', async () => {
    const free0 = (await h.hv.physinfo()).freePages;
    assert.equal(free0, (2048 - 512) * 256);
    const a = await buildGuest(h.hv, { memoryMib: 256 });
    const b = await buildGuest(h.hv, { memoryMib: 512 });
    assert.equal((await h.hv.physinfo()).freePages, free0 - 768 * 256);
    assert.equal((await h.hv.getDomainInfo(b))!.totPages, 512 * 256);
    await h.hv.destroy(a);
    assert.equal((await h.hv.physinfo()).freePages, free0 - 512 * 256);
    await h.hv.destroy(b);
    assert.equal((await h.hv.physinfo()).freePages, free0);
  });

  test('ENOMEM when the host is full, and nothing is taken by the failed build', async () => {
    const free0 = (await h.hv.physinfo()).freePages;
    const big = await buildGuest(h.hv, { memoryMib: 1024 });
    const domid = await h.hv.createDomain({ handle: uuid(), flags: 0, maxVcpus: 1 });
    await h.hv.setMaxMem(domid, 1024 * 1024);
    await rejectsWith(h.hv.build(domid, { type: 'pv', kernel: 'k', memoryMib: 1024, storePort: 1, consolePort: 2 }), 'build', 'ENOMEM');
    assert.equal((await h.hv.getDomainInfo(domid))!.totPages, 0);
    assert.equal((await h.hv.physinfo()).freePages, free0 - 1024 * 256);
    // What is left still fits.
    await h.hv.build(domid, { type: 'pv', kernel: 'k', memoryMib: 512, storePort: 1, consolePort: 2 });
    assert.equal((await h.hv.physinfo()).freePages, 0);
    await h.hv.destroy(big);
    await h.hv.destroy(domid);
  });

  test('ENOMEM above max_pages (a domain has max_pages 0 until setMaxMem)', async () => {
    const domid = await h.hv.createDomain({ handle: uuid(), flags: 0, maxVcpus: 1 });
    await rejectsWith(h.hv.build(domid, { type: 'pv', kernel: 'k', memoryMib: 4, storePort: 1, consolePort: 2 }), 'build', 'ENOMEM');
    await h.hv.setMaxMem(domid, 2 * 1024);
    await rejectsWith(h.hv.build(domid, { type: 'pv', kernel: 'k', memoryMib: 4, storePort: 1, consolePort: 2 }), 'build', 'ENOMEM');
    await h.hv.setMaxMem(domid, 4 * 1024);
    await h.hv.build(domid, { type: 'pv', kernel: 'k', memoryMib: 4, storePort: 1, consolePort: 2 });
    await h.hv.destroy(domid);
  });

  test('a smaller host (setHostMemory) refuses what fit before', async () => {
    h.sim.setHostMemory(1024);
    try {
      const domid = await h.hv.createDomain({ handle: uuid(), flags: 0, maxVcpus: 1 });
      await h.hv.setMaxMem(domid, 1024 * 1024);
      await rejectsWith(h.hv.build(domid, { type: 'pv', kernel: 'k', memoryMib: 1000, storePort: 1, consolePort: 2 }), 'build', 'ENOMEM');
      await h.hv.destroy(domid);
    } finally {
      h.sim.setHostMemory(2048);
    }
  });

  test('log-dirty: EINVAL before enable; peek keeps, clean resets; a running guest dirties at its rate', async () => {
    const domid = await buildGuest(h.hv, { memoryMib: 64 });
    await rejectsWith(h.hv.shadowControl(domid, 'peek'), 'shadowControl', 'EINVAL');
    await h.hv.shadowControl(domid, 'enable_logdirty');
    assert.deepEqual(await h.hv.shadowControl(domid, 'peek'), { dirty: [], dirtyCount: 0 });
    h.sim.setDirtyRate(domid, 5000);
    await sleep(40);
    const paused = await h.hv.shadowControl(domid, 'peek');
    assert.equal(paused.dirtyCount, 0, 'a paused guest writes nothing');
    await h.hv.unpause(domid);
    await sleep(60);
    const peek = await h.hv.shadowControl(domid, 'peek');
    assert.ok(peek.dirtyCount >= 100, `≈300 writes in 60 ms at 5000/s, got ${peek.dirtyCount} dirty pages`);
    assert.deepEqual(peek.dirty, [...peek.dirty].sort((x, y) => x - y));
    await h.hv.pause(domid);
    const clean = await h.hv.shadowControl(domid, 'clean');
    assert.ok(clean.dirtyCount >= peek.dirtyCount);
    assert.equal((await h.hv.shadowControl(domid, 'peek')).dirtyCount, 0, 'clean reset the log');
    const before = await h.hv.memoryChecksum(domid);
    h.sim.dirtyPages(domid, 10);
    const after10 = await h.hv.shadowControl(domid, 'peek');
    assert.ok(after10.dirtyCount >= 1 && after10.dirtyCount <= 10);
    assert.notEqual(await h.hv.memoryChecksum(domid), before, 'dirtied pages changed the contents');
    await h.hv.shadowControl(domid, 'off');
    await rejectsWith(h.hv.shadowControl(domid, 'clean'), 'shadowControl', 'EINVAL');
    await h.hv.destroy(domid);
  });

  test('balloon: the guest giving pages back returns them to the host', async () => {
    const domid = await buildGuest(h.hv, { memoryMib: 64 });
    const free0 = (await h.hv.physinfo()).freePages;
    h.sim.balloonFromGuest(domid, 32 * 256);
    assert.equal((await h.hv.getDomainInfo(domid))!.totPages, 32 * 256);
    assert.equal((await h.hv.physinfo()).freePages, free0 + 32 * 256);
    h.sim.balloonFromGuest(domid, 64 * 256);
    assert.equal((await h.hv.getDomainInfo(domid))!.totPages, 64 * 256);
    await h.hv.destroy(domid);
  });

  test('balloon: 1 GiB shrinks to 512 MiB and back; host free memory follows; cost follows pages changed, not guest size', async () => {
    h.sim.setHostMemory(20 * 1024);
    try {
      const domid = await buildGuest(h.hv, { memoryMib: 1024 });
      const free0 = (await h.hv.physinfo()).freePages;
      h.sim.balloonFromGuest(domid, 512 * 256);
      assert.equal((await h.hv.getDomainInfo(domid))!.totPages, 512 * 256);
      assert.equal((await h.hv.physinfo()).freePages, free0 + 512 * 256);
      h.sim.balloonFromGuest(domid, 1024 * 256);
      assert.equal((await h.hv.getDomainInfo(domid))!.totPages, 1024 * 256);
      assert.equal((await h.hv.physinfo()).freePages, free0);
      await h.hv.destroy(domid);

      // A 16 GiB guest at half its size whose balloon target moves by a page, 2,000 times: each step
      // walked the whole p2m before (~20 ms a step, ~40 s in all); it is now a few range operations.
      const big = await buildGuest(h.hv, { memoryMib: 16 * 1024 });
      const bigFree0 = (await h.hv.physinfo()).freePages;
      h.sim.balloonFromGuest(big, 8 * 1024 * 256);
      const started = performance.now();
      for (let i = 0; i < 2000; i++) h.sim.balloonFromGuest(big, 8 * 1024 * 256 + (i % 2 === 0 ? 1 : -1));
      const tookMs = performance.now() - started;
      assert.ok(tookMs < 2_000, `2,000 one-page balloon steps took ${tookMs.toFixed(0)} ms`);
      assert.equal((await h.hv.getDomainInfo(big))!.totPages, 8 * 1024 * 256 - 1);
      assert.equal((await h.hv.physinfo()).freePages, bigFree0 + 8 * 1024 * 256 + 1);
      await h.hv.destroy(big);
    } finally {
      h.sim.setHostMemory(2048);
    }
  });

  test('balloon: growth stops at max_pages with ENOMEM, keeping what fitted', async () => {
    const domid = await buildGuest(h.hv, { memoryMib: 16 });
    h.sim.balloonFromGuest(domid, 4 * 256);
    await h.hv.setMaxMem(domid, 8 * 1024);
    assert.throws(() => h.sim.balloonFromGuest(domid, 16 * 256), (err: unknown) => err instanceof HypervisorError && err.errno === 'ENOMEM');
    assert.equal((await h.hv.getDomainInfo(domid))!.totPages, 8 * 256);
    await h.hv.destroy(domid);
  });

  test('an idle guest costs nothing: a 1 GiB guest stores only its boot pages', async () => {
    h.sim.setHostMemory(4096);
    try {
      const domid = await buildGuest(h.hv, { memoryMib: 1024 });
      await h.hv.unpause(domid);
      assert.ok(h.sim.domainState(domid)!.touchedPages <= 2);
      assert.equal((await h.hv.getDomainInfo(domid))!.totPages, 1024 * 256);
      await h.hv.destroy(domid);
    } finally {
      h.sim.setHostMemory(2048);
    }
  });
});

describe('sim hypervisor: 1,000 idle 1 GiB guests', { timeout: 60_000 }, () => {
  test('cost little memory (RSS growth far under the 500 MiB budget; figures: npm run bench:sim-memory)', async () => {
    const h = await startHarness({ memoryMib: 1000 * 1024 + 2048 });
    try {
      const rss0 = process.memoryUsage().rss;
      for (let i = 0; i < 1000; i++) {
        const domid = await buildGuest(h.hv, { memoryMib: 1024 });
        await h.hv.unpause(domid);
      }
      const infos = await h.hv.getDomainInfoList(1, 2000);
      assert.equal(infos.filter((i) => i.running && i.totPages === 1024 * 256).length, 1000);
      const growthMib = (process.memoryUsage().rss - rss0) / 1024 / 1024;
      assert.ok(growthMib < 250, `RSS grew ${growthMib.toFixed(1)} MiB for 1,000 idle 1 GiB guests`);
    } finally {
      await h.close();
    }
  });
});
