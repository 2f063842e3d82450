import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, constants, existsSync, openSync, readFileSync, readSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HypervisorError, ShutdownReason, type SaveCallbacks, type SaveOptions } from '../../src/hypervisor/types.js';
import { buildGuest, sleep, startHarness, uuid, type Harness } from './harness.js';
import { DHDR_TYPE, PageType, Rec, domainHeader, imageHeader, pageDataRecord, record } from '../../src/sim/stream/format.js';
import { MAX_P2M_PFNS } from '../../src/sim/memory/guest-memory.js';

const VERIFY = '/usr/lib/xen-4.17/bin/verify-stream-v2';
const XEN_PY = '/usr/lib/xen-4.17/lib/python';
const verifySkip = !existsSync(VERIFY)
  ? `${VERIFY} is missing (Debian package xen-utils-4.17)`
  : !existsSync(join(XEN_PY, 'xen/migration/libxc.py'))
    ? `${XEN_PY}/xen/migration is missing (xen-utils-4.17)`
    : spawnSync('python3', ['--version']).status !== 0
      ? 'python3 is missing'
      : false;

function verifyStream(path: string): { status: number | null; output: string } {
  const r = spawnSync('python3', [VERIFY, '-v', '-i', path], { env: { ...process.env, PYTHONPATH: XEN_PY }, encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, output: `${r.stdout}\n${r.stderr}` };
}

const rejectsWith = (p: Promise<unknown>, call: string, errno: string) =>
  assert.rejects(p, (err: unknown) => err instanceof HypervisorError && err.call === call && err.errno === errno);

describe('sim hypervisor: save/restore through the RPC', { timeout: 60_000 }, () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ suspendTimeoutMs: 300 });
  });
  after(async () => h.close());

  /** The toolstack's suspend callback: ask the guest, the guest shuts down with reason suspend. */
  const suspendingCallbacks = (domid: number, log: string[]): SaveCallbacks => ({
    async suspend() {
      log.push('suspend');
      setTimeout(() => h.sim.shutdownFromGuest(domid, ShutdownReason.suspend), 10);
    },
    progress(sent, total, round) {
      if (sent !== total) return;
      log.push(`round ${round}`);
    },
  });

  async function saveToFile(domid: number, path: string, live: boolean | SaveOptions, log: string[] = []) {
    const fd = openSync(path, 'w');
    try {
      return await h.hv.save(domid, fd, typeof live === 'boolean' ? { live } : live, suspendingCallbacks(domid, log));
    } finally {
      closeSync(fd);
    }
  }

  async function restoreFromFile(path: string, hvm = false) {
    const domid = await h.hv.createDomain({ handle: uuid(), flags: hvm ? 1 : 0, maxVcpus: 2 });
    await h.hv.setMaxMem(domid, 64 * 1024);
    const store = await h.hv.evtchnAllocUnbound(domid, 0);
    const console = await h.hv.evtchnAllocUnbound(domid, 0);
    const fd = openSync(path, 'r');
    try {
      const result = await h.hv.restore(domid, fd, { storePort: store, consolePort: console });
      return { domid, result };
    } finally {
      closeSync(fd);
    }
  }

  test('live save of a dirtying PV guest, restore: memory checksum identical, suspend before the last round', async () => {
    const src = await buildGuest(h.hv, { memoryMib: 16, vcpus: 2 });
    await h.hv.unpause(src);
    h.sim.setDirtyRate(src, 4_000);
    await sleep(20);
    const log: string[] = [];
    const path = join(h.dir, 'live.stream');
    // dirtyThreshold 0: the dirty count never drops below it, so the save stops after maxRounds (5)
    // pre-copy rounds whatever the machine's speed, then the stop-and-copy round.
    const stats = await saveToFile(src, path, { live: true, dirtyThreshold: 0 }, log);
    assert.equal(stats.rounds, 6, `5 pre-copy rounds then stop-and-copy: ${log.join(', ')}`);
    assert.ok(stats.pagesSent >= 16 * 256);
    assert.equal(stats.bytes, readFileSync(path).length);
    assert.equal(log.filter((l) => l === 'suspend').length, 1);
    assert.equal(log.at(-2), 'suspend', `suspend comes right before the last round: ${log.join(', ')}`);
    const srcInfo = (await h.hv.getDomainInfo(src))!;
    assert.equal(srcInfo.shutdown, true);
    assert.equal(srcInfo.shutdownReason, ShutdownReason.suspend);
    const srcSum = await h.hv.memoryChecksum(src);

    const { domid: dst, result } = await restoreFromFile(path);
    assert.equal(typeof result.storeMfn, 'bigint');
    assert.equal(await h.hv.memoryChecksum(dst), srcSum);
    const dstInfo = (await h.hv.getDomainInfo(dst))!;
    assert.equal(dstInfo.totPages, srcInfo.totPages);
    assert.equal(dstInfo.paused, true, 'a restored domain waits for the toolstack to unpause it');
    assert.equal(dstInfo.onlineVcpus, 2);
    assert.deepEqual(
      { store: h.sim.domainState(dst)!.storePfn, console: h.sim.domainState(dst)!.consolePfn },
      { store: h.sim.domainState(src)!.storePfn, console: h.sim.domainState(src)!.consolePfn },
    );
    await h.hv.unpause(dst);
    assert.equal((await h.hv.getDomainInfo(dst))!.running, true);
    await h.hv.destroy(src);
    await h.hv.destroy(dst);
  });

  test('pre-copy stops early once fewer than 50 pages are dirty, or after maxRounds', async () => {
    const quiet = await buildGuest(h.hv, { memoryMib: 8 }); // paused: writes nothing during the save
    h.sim.dirtyPages(quiet, 500);
    const s1 = await saveToFile(quiet, join(h.dir, 'quiet.stream'), true);
    assert.equal(s1.rounds, 2, 'one full pass (0 pages dirty after it), then the final round');
    assert.equal(s1.pagesSent, 8 * 256, 'the final round had nothing to send');
    const busy = await buildGuest(h.hv, { memoryMib: 8 });
    await h.hv.unpause(busy);
    h.sim.setDirtyRate(busy, 2_000);
    const s2 = await saveToFile(busy, join(h.dir, 'busy.stream'), { live: true, maxRounds: 2, dirtyThreshold: 0 });
    assert.equal(s2.rounds, 3);
    await h.hv.destroy(quiet);
    await h.hv.destroy(busy);
  });

  test('verify-stream-v2 accepts saved PV streams (live and not) and an HVM stream', { skip: verifySkip }, async () => {
    const pv = await buildGuest(h.hv, { memoryMib: 8, vcpus: 2 });
    await h.hv.unpause(pv);
    h.sim.setDirtyRate(pv, 2_000);
    await sleep(10);
    const livePath = join(h.dir, 'pv-live.stream');
    await saveToFile(pv, livePath, true);
    const v1 = verifyStream(livePath);
    assert.equal(v1.status, 0, v1.output);
    for (const rec of ['x86 PV info', 'x86 PV P2M frames', 'Static data end', 'TSC info', 'Shared info', 'x86 PV vcpu basic', 'End']) {
      assert.ok(v1.output.includes(rec), `stream has ${rec}:\n${v1.output}`);
    }
    const pv2 = await buildGuest(h.hv, { memoryMib: 8 });
    const coldPath = join(h.dir, 'pv-cold.stream');
    await saveToFile(pv2, coldPath, false);
    const v2 = verifyStream(coldPath);
    assert.equal(v2.status, 0, v2.output);

    const hvm = await buildGuest(h.hv, { memoryMib: 8, type: 'hvm' });
    await h.hv.unpause(hvm);
    h.sim.dirtyPages(hvm, 100);
    const hvmPath = join(h.dir, 'hvm.stream');
    await saveToFile(hvm, hvmPath, true);
    const v3 = verifyStream(hvmPath);
    assert.equal(v3.status, 0, v3.output);
    assert.ok(v3.output.includes('HVM params') && v3.output.includes('HVM context'), v3.output);
    const { domid: hvmCopy } = await restoreFromFile(hvmPath, true);
    assert.equal(await h.hv.memoryChecksum(hvmCopy), await h.hv.memoryChecksum(hvm));

    // A corrupted stream is what the checker refuses (the check can fail).
    const bad = readFileSync(coldPath);
    bad.writeUInt32LE(0x77, 24 + 16); // first record's type
    writeFileSync(join(h.dir, 'bad.stream'), bad);
    assert.notEqual(verifyStream(join(h.dir, 'bad.stream')).status, 0);
    for (const d of [pv, pv2, hvm, hvmCopy]) await h.hv.destroy(d);
  });

  test('restore reads exactly one stream from the fd and leaves what follows', async () => {
    const src = await buildGuest(h.hv, { memoryMib: 8 });
    h.sim.dirtyPages(src, 50);
    const path = join(h.dir, 'trailer.stream');
    await saveToFile(src, path, false);
    writeFileSync(path, Buffer.concat([readFileSync(path), Buffer.from('NEXT-LAYER')]));
    const dst = await h.hv.createDomain({ handle: uuid(), flags: 0, maxVcpus: 1 });
    await h.hv.setMaxMem(dst, 8 * 1024);
    const fd = openSync(path, 'r');
    try {
      await h.hv.restore(dst, fd, { storePort: 1, consolePort: 2 });
      const rest = Buffer.alloc(64);
      const n = readSync(fd, rest, 0, 64, null);
      assert.equal(rest.subarray(0, n).toString(), 'NEXT-LAYER');
    } finally {
      closeSync(fd);
    }
    assert.equal(await h.hv.memoryChecksum(dst), await h.hv.memoryChecksum(src));
    await h.hv.destroy(src);
    await h.hv.destroy(dst);
  });

  test('live migration through a non-blocking FIFO: save and restore run at the same time', async () => {
    const src = await buildGuest(h.hv, { memoryMib: 16 });
    await h.hv.unpause(src);
    h.sim.setDirtyRate(src, 4_000);
    await sleep(10);
    const fifo = join(h.dir, 'migrate.fifo');
    execFileSync('mkfifo', [fifo]);
    const readFd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    const writeFd = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
    const dst = await h.hv.createDomain({ handle: uuid(), flags: 0, maxVcpus: 1 });
    await h.hv.setMaxMem(dst, 16 * 1024);
    try {
      const [stats] = await Promise.all([
        h.hv.save(src, writeFd, { live: true, maxRounds: 3 }, suspendingCallbacks(src, [])),
        h.hv.restore(dst, readFd, { storePort: 1, consolePort: 2 }),
      ]);
      assert.ok(stats.rounds <= 4);
    } finally {
      closeSync(readFd);
      closeSync(writeFd);
    }
    assert.equal(await h.hv.memoryChecksum(dst), await h.hv.memoryChecksum(src));
    await h.hv.destroy(src);
    await h.hv.destroy(dst);
  });

  test('a guest that does not suspend fails the save (EBUSY after the wait); log-dirty is off again', async () => {
    const src = await buildGuest(h.hv, { memoryMib: 8 });
    await h.hv.unpause(src);
    const fd = openSync(join(h.dir, 'nosuspend.stream'), 'w');
    try {
      await rejectsWith(h.hv.save(src, fd, { live: true }, { suspend: async () => undefined }), 'save', 'EBUSY');
      await assert.rejects(
        h.hv.save(src, fd, { live: false }, { suspend: async () => { throw new Error('guest agent unreachable'); } }),
        (err: unknown) => err instanceof HypervisorError && err.errno === 'EIO' && /guest agent unreachable/.test(err.message),
      );
    } finally {
      closeSync(fd);
    }
    await rejectsWith(h.hv.shadowControl(src, 'peek'), 'shadowControl', 'EINVAL');
    assert.equal((await h.hv.getDomainInfo(src))!.running, true);
    await h.hv.destroy(src);
  });

  test('a ballooned guest migrates byte-exact and its restored copy can balloon back to full size', async () => {
    const src = await buildGuest(h.hv, { memoryMib: 16 });
    h.sim.dirtyPages(src, 200);
    h.sim.balloonFromGuest(src, 8 * 256); // the top half of the p2m is now holes
    const path = join(h.dir, 'ballooned.stream');
    await saveToFile(src, path, false);
    const { domid: dst } = await restoreFromFile(path);
    assert.equal((await h.hv.getDomainInfo(dst))!.totPages, 8 * 256);
    assert.equal(await h.hv.memoryChecksum(dst), await h.hv.memoryChecksum(src), 'holes at the top of the p2m are part of the image');
    h.sim.balloonFromGuest(dst, 16 * 256);
    assert.equal((await h.hv.getDomainInfo(dst))!.totPages, 16 * 256, 'the restored p2m still spans 16 MiB');
    await h.hv.destroy(src);
    await h.hv.destroy(dst);
  });

  test('a stream naming a pfn far past the end: refused past the p2m limit, one hole run below it', async () => {
    const low = [0, 1, 2, 3].map((p) => ({ pfn: p, type: PageType.XALLOC })); // kernel, start_info, store and console rings
    const stream = (pfn: number) =>
      Buffer.concat([imageHeader(), domainHeader(DHDR_TYPE.x86_hvm), pageDataRecord([...low, { pfn, type: PageType.XALLOC }]), record(Rec.END)]);
    const far = join(h.dir, 'far-pfn.stream');
    writeFileSync(far, stream(2 ** 40));
    const free = (await h.hv.physinfo()).freePages;
    const started = performance.now();
    await assert.rejects(restoreFromFile(far, true), (err: unknown) => err instanceof HypervisorError && err.errno === 'EINVAL' && /pfn 0x10000000000/.test(err.message));
    assert.equal((await h.hv.physinfo()).freePages, free, 'the failed restore gave its pages back');
    const sparse = join(h.dir, 'sparse.stream');
    writeFileSync(sparse, stream(MAX_P2M_PFNS - 1));
    const { domid } = await restoreFromFile(sparse, true);
    assert.equal((await h.hv.getDomainInfo(domid))!.totPages, 5);
    // Following the pfn one by one took minutes (and the host's event loop) before holes were ranges.
    assert.ok(performance.now() - started < 5_000, `took ${(performance.now() - started).toFixed(0)} ms`);
    await h.hv.destroy(domid);
  });

  test('HVM_PARAMS that is too short, or names a store ring that is not a page of the stream: EINVAL', async () => {
    const pages = pageDataRecord([0, 1, 2, 3].map((pfn) => ({ pfn, type: PageType.XALLOC })));
    const params = (storePfn: number) => {
      const body = Buffer.alloc(8 + 16);
      body.writeUInt32LE(1, 0);
      body.writeBigUInt64LE(1n, 8); // HVM_PARAM_STORE_PFN
      body.writeBigUInt64LE(BigInt(storePfn), 16);
      return record(Rec.HVM_PARAMS, body);
    };
    const cases: Array<[string, Buffer, RegExp]> = [
      ['short', record(Rec.HVM_PARAMS, Buffer.alloc(2)), /HVM_PARAMS of 2 bytes/],
      ['store', params(0xfeed), /store ring pfn 0xfeed/],
    ];
    for (const [name, rec, message] of cases) {
      const path = join(h.dir, `params-${name}.stream`);
      writeFileSync(path, Buffer.concat([imageHeader(), domainHeader(DHDR_TYPE.x86_hvm), pages, rec, record(Rec.END)]));
      await assert.rejects(restoreFromFile(path, true), (err: unknown) => err instanceof HypervisorError && err.errno === 'EINVAL' && message.test(err.message), name);
    }
    const good = join(h.dir, 'params-good.stream');
    writeFileSync(good, Buffer.concat([imageHeader(), domainHeader(DHDR_TYPE.x86_hvm), pages, params(2), record(Rec.END)]));
    const { domid } = await restoreFromFile(good, true);
    await h.hv.destroy(domid);
  });

  test('a save can be cancelled through its signal; a destroyed domain fails its save', async () => {
    const src = await buildGuest(h.hv, { memoryMib: 8 });
    await h.hv.unpause(src);
    const fd = openSync(join(h.dir, 'cancel.stream'), 'w');
    try {
      const controller = new AbortController();
      const saving = h.hv.save(src, fd, { live: true }, {
        suspend: () => new Promise(() => undefined), // never answers: only the cancel ends it
        signal: controller.signal,
      });
      setTimeout(() => controller.abort(), 50);
      await rejectsWith(saving, 'save', 'ECANCELED');
      const dying = h.hv.save(src, fd, { live: true }, { suspend: () => h.hv.destroy(src) });
      await rejectsWith(dying, 'save', 'ESRCH');
    } finally {
      closeSync(fd);
    }
  });

  test('an unwritable fd fails a save with EIO naming the fd', async () => {
    const src = await buildGuest(h.hv, { memoryMib: 4 });
    const path = join(h.dir, 'readonly.stream');
    writeFileSync(path, '');
    const readOnly = openSync(path, 'r');
    try {
      await assert.rejects(
        h.hv.save(src, readOnly, { live: false }, { suspend: async () => undefined }),
        (err: unknown) => err instanceof HypervisorError && err.errno === 'EIO' && /writing the stream to fd/.test(err.message),
      );
    } finally {
      closeSync(readOnly);
    }
    await h.hv.destroy(src);
  });

  test('a restore waiting on an fd with no data yet is cancelled through its signal', async () => {
    const fifo = join(h.dir, 'idle.fifo');
    execFileSync('mkfifo', [fifo]);
    const readFd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    const writeFd = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK); // open, silent
    const dst = await h.hv.createDomain({ handle: uuid(), flags: 0, maxVcpus: 1 });
    await h.hv.setMaxMem(dst, 8 * 1024);
    try {
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 100);
      await rejectsWith(h.hv.restore(dst, readFd, { storePort: 1, consolePort: 2 }, controller.signal), 'restore', 'ECANCELED');
      assert.equal((await h.hv.getDomainInfo(dst))!.totPages, 0);
    } finally {
      closeSync(readFd);
      closeSync(writeFd);
    }
    await h.hv.destroy(dst);
  });

  test('bad streams: garbage, a PV stream into an HVM domain, a truncated stream', async () => {
    const garbage = join(h.dir, 'garbage.stream');
    writeFileSync(garbage, Buffer.alloc(4096, 0x41));
    await assert.rejects(restoreFromFile(garbage), (err: unknown) => err instanceof HypervisorError && err.call === 'restore' && /image header/.test(err.message));

    const src = await buildGuest(h.hv, { memoryMib: 8 });
    h.sim.dirtyPages(src, 20);
    const path = join(h.dir, 'good.stream');
    await saveToFile(src, path, false);
    const free = (await h.hv.physinfo()).freePages;
    await assert.rejects(restoreFromFile(path, true), (err: unknown) => err instanceof HypervisorError && err.errno === 'EINVAL' && /CDF_hvm/.test(err.message));

    const whole = readFileSync(path);
    const truncated = join(h.dir, 'truncated.stream');
    writeFileSync(truncated, whole.subarray(0, Math.floor(whole.length / 2)));
    await assert.rejects(restoreFromFile(truncated), (err: unknown) => err instanceof HypervisorError && err.call === 'restore');
    // Failed restores gave their pages back (the empty domains remain until destroyed).
    assert.equal((await h.hv.physinfo()).freePages, free);
    await h.hv.destroy(src);
  });
});
