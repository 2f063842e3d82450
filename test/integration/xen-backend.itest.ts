// The xen backend on a real Xen 4.17 dom0 (run inside the nested host by fixtures/nested-xen, or on any dom0 with
// `node --import tsx --test test/integration/xen-backend.itest.ts`). Not matched by *.test.ts: the default runner
// skips it. Needs root in dom0; the PV lifecycle needs XEN_TEST_KERNEL (and optionally XEN_TEST_RAMDISK).
// Prints `XENOPSD_FIGURES {...}` lines with the timings, and writes them to $XEN_TEST_FIGURES if set.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { appendFileSync, existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { HypervisorError, ShutdownReason, type DomainInfo } from '../../src/hypervisor/types.js';
import { openXenHypervisor, type XenHypervisorBackend } from '../../src/hypervisor/xen.js';

const onXen = existsSync('/dev/xen/privcmd') || existsSync('/proc/xen/privcmd');
const notXen = onXen ? undefined : 'not a Xen dom0 (no /dev/xen/privcmd or /proc/xen/privcmd)';
const kernel = process.env.XEN_TEST_KERNEL;
const ramdisk = process.env.XEN_TEST_RAMDISK || undefined;
const noKernel = notXen ?? (kernel && existsSync(kernel) ? undefined : `XEN_TEST_KERNEL not set or missing (${kernel ?? 'unset'})`);
const MEMORY_MIB = 128;

let hv: XenHypervisorBackend;
const created = new Set<number>();

function figures(name: string, values: Record<string, number | string>): void {
  const line = JSON.stringify({ test: name, ...values });
  console.log(`XENOPSD_FIGURES ${line}`);
  if (process.env.XEN_TEST_FIGURES) appendFileSync(process.env.XEN_TEST_FIGURES, `${line}\n`);
}

async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs) {
    if (await check()) return Date.now() - t0;
    await sleep(50);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** create + limits + event channels + build, as the daemon's VM.start does it. */
async function createAndBuild(kernelPath: string): Promise<{ domid: number; storePort: number; consolePort: number; storeMfn: bigint; consoleMfn: bigint; ms: Record<string, number> }> {
  const t0 = Date.now();
  const domid = await hv.createDomain({ handle: randomUUID(), flags: 0, maxVcpus: 1 });
  created.add(domid);
  await hv.setMaxVcpus(domid, 1);
  await hv.setMaxMem(domid, MEMORY_MIB * 1024 + 1024);
  const storePort = await hv.evtchnAllocUnbound(domid, 0);
  const consolePort = await hv.evtchnAllocUnbound(domid, 0);
  const t1 = Date.now();
  const { storeMfn, consoleMfn } = await hv.build(domid, { type: 'pv', kernel: kernelPath, ramdisk, cmdline: 'console=hvc0', memoryMib: MEMORY_MIB, storePort, consolePort });
  const t2 = Date.now();
  return { domid, storePort, consolePort, storeMfn, consoleMfn, ms: { create_ms: t1 - t0, build_ms: t2 - t1 } };
}

async function destroyAndWait(domid: number): Promise<number> {
  await hv.destroy(domid);
  created.delete(domid);
  // A destroyed domain lingers as "dying" while Xen frees its pages.
  return waitFor(`domain ${domid} to disappear`, 30_000, async () => (await hv.getDomainInfo(domid)) === undefined);
}

before(async () => {
  if (notXen) return;
  hv = await openXenHypervisor();
});

after(async () => {
  if (!hv) return;
  for (const domid of created) await hv.destroy(domid).catch(() => undefined);
  await hv.close();
});

test('version is the checked release (4.17)', { skip: notXen }, async () => {
  const v = await hv.version();
  assert.equal(`${v.major}.${v.minor}`, '4.17');
});

test('physinfo', { skip: notXen }, async () => {
  const p = await hv.physinfo();
  assert.ok(p.nrCpus >= 1, `nrCpus ${p.nrCpus}`);
  assert.equal(p.pageSize, 4096);
  assert.ok(p.totalPages > 0 && p.freePages <= p.totalPages, JSON.stringify(p));
});

test('getinfolist shows dom0', { skip: notXen }, async () => {
  const list = await hv.getDomainInfoList(0, 64);
  const dom0 = list.find((d) => d.domid === 0);
  assert.ok(dom0, `dom0 missing from ${JSON.stringify(list.map((d) => d.domid))}`);
  assert.equal(dom0.dying, false);
  assert.equal(dom0.shutdown, false);
  assert.ok(dom0.onlineVcpus >= 1 && dom0.totPages > 0 && dom0.cpuTimeNs > 0, JSON.stringify(dom0));
  const single = await hv.getDomainInfo(0);
  assert.equal(single?.domid, 0);
  assert.equal(single?.handle, dom0.handle);
  assert.equal(await hv.getDomainInfo(32000), undefined);
});

test('errors from Xen carry the call and errno', { skip: notXen }, async () => {
  await assert.rejects(hv.pause(31999), (e: unknown) => e instanceof HypervisorError && e.call === 'xc_domain_pause' && e.errno === 'ESRCH');
});

test('PV guest: create, build, unpause, shutdown, destroy', { skip: noKernel, timeout: 300_000 }, async () => {
  const t0 = Date.now();
  const { domid, storeMfn, ms } = await createAndBuild(kernel!);
  assert.ok(domid > 0 && storeMfn > 0n, `domid ${domid} storeMfn ${storeMfn}`);
  let info = (await hv.getDomainInfo(domid))!;
  assert.equal(info.paused, true, 'a new domain is paused');
  assert.equal(info.totPages >= MEMORY_MIB * 256 - 512, true, `totPages ${info.totPages}`);

  await hv.unpause(domid);
  const tUnpause = Date.now();
  // The guest kernel runs: its CPU time grows.
  const ranMs = await waitFor('the guest to use CPU time', 60_000, async () => ((await hv.getDomainInfo(domid))?.cpuTimeNs ?? 0) > 50_000_000);
  info = (await hv.getDomainInfo(domid))!;
  assert.equal(info.paused, false);

  await hv.pause(domid);
  assert.equal((await hv.getDomainInfo(domid))!.paused, true);
  await hv.unpause(domid);

  const tShutdown = Date.now();
  await hv.shutdown(domid, ShutdownReason.poweroff);
  await waitFor('the domain to be shut down', 10_000, async () => (await hv.getDomainInfo(domid))?.shutdown === true);
  const down = (await hv.getDomainInfo(domid)) as DomainInfo;
  assert.equal(down.shutdownReason, ShutdownReason.poweroff);
  const shutdownMs = Date.now() - tShutdown;

  const destroyMs = await destroyAndWait(domid);
  figures('pv-lifecycle', { ...ms, first_cpu_ms: ranMs, shutdown_ms: shutdownMs, destroy_ms: destroyMs, total_ms: Date.now() - t0, since_unpause_ms: Date.now() - tUnpause });
});

test('a build with a missing kernel fails naming xc_dom_kernel_file, and the domain can be destroyed', { skip: notXen, timeout: 120_000 }, async () => {
  await assert.rejects(createAndBuild('/nonexistent/vmlinuz'), (e: unknown) => e instanceof HypervisorError && e.call === 'xc_dom_kernel_file');
  for (const domid of [...created]) await destroyAndWait(domid);
});

test('PV guest introduced to xenstored boots, says so in xenstore, and powers off on control/shutdown', { skip: noKernel, timeout: 600_000 }, async () => {
  const { openXenstore } = await import('../../src/xenstore/index.js');
  const xs = await openXenstore({ transport: 'native', reconnect: false });
  let dom = '';
  /** The guest's xenstore subtree, for a failure message. */
  const dump = async (path: string, depth = 0): Promise<string[]> => {
    if (depth > 4) return [];
    const value = await xs.tryRead(path).catch(() => undefined);
    const lines = [`${path} = ${JSON.stringify(value ?? null)}`];
    for (const child of await xs.directory(path).catch(() => [] as string[])) lines.push(...(await dump(`${path}/${child}`, depth + 1)));
    return lines;
  };
  const step = async <T>(what: string, body: () => Promise<T>): Promise<T> => {
    try {
      return await body();
    } catch (err) {
      const info = dom ? await hv.getDomainInfo(Number(dom.split('/').pop())) : undefined;
      throw new Error(`${what}: ${(err as Error).message}\ndomain: ${JSON.stringify(info)}\n${dom ? (await dump(dom)).join('\n') : ''}`);
    }
  };
  try {
    const t0 = Date.now();
    const { domid, storePort, consolePort, storeMfn, consoleMfn, ms } = await createAndBuild(kernel!);
    dom = `/local/domain/${domid}`;
    // What a PV Linux needs (libxl's layout, trimmed): its home read-only to it, the nodes it writes owned by it,
    // the xenstore and console rings (xenconsoled attaches to the console on the introduction).
    const guestOwned = [{ id: domid, perm: 'n' as const }];
    await xs.transaction(async (tx) => {
      await tx.mkdir(dom);
      await tx.setPerms(dom, [{ id: 0, perm: 'n' }, { id: domid, perm: 'r' }]);
      await tx.write(`${dom}/name`, `xenopsd-itest-${domid}`);
      await tx.write(`${dom}/domid`, String(domid));
      await tx.write(`${dom}/store/port`, String(storePort));
      await tx.write(`${dom}/store/ring-ref`, String(storeMfn));
      await tx.write(`${dom}/console/port`, String(consolePort));
      await tx.write(`${dom}/console/ring-ref`, String(consoleMfn));
      await tx.write(`${dom}/console/limit`, '1048576');
      await tx.write(`${dom}/console/type`, 'xenconsoled');
      await tx.write(`${dom}/console/output`, 'pty');
      await tx.write(`${dom}/memory/target`, String(MEMORY_MIB * 1024));
      await tx.write(`${dom}/memory/static-max`, String(MEMORY_MIB * 1024));
      await tx.mkdir(`${dom}/control`);
      for (const node of ['shutdown', 'feature-poweroff', 'feature-reboot', 'feature-suspend', 'sysrq']) {
        await tx.write(`${dom}/control/${node}`, '');
        await tx.setPerms(`${dom}/control/${node}`, guestOwned);
      }
      for (const rw of ['data', 'device', 'error', 'drivers', 'feature', 'attr']) {
        await tx.mkdir(`${dom}/${rw}`);
        await tx.setPerms(`${dom}/${rw}`, guestOwned);
      }
    });
    await xs.introduceDomain(domid, storeMfn, storePort);
    assert.equal(await xs.isDomainIntroduced(domid), true);
    await hv.unpause(domid);
    const tUnpause = Date.now();
    // The kernel's xenbus is up when it advertises the shutdown requests it handles (over the store ring we built).
    const bootMs = await step('waiting for the guest to write control/feature-poweroff', () =>
      waitFor('control/feature-poweroff = 1', 360_000, async () => (await xs.tryRead(`${dom}/control/feature-poweroff`)) === '1'),
    );
    // Its init makes /sbin/poweroff; until then a request finds no command, so repeat it while it is acknowledged.
    const tAsk = Date.now();
    let lastAsk = 0;
    const offMs = await step('waiting for the guest to power itself off', () =>
      waitFor('shutdown (poweroff)', 180_000, async () => {
        const cur = await xs.tryRead(`${dom}/control/shutdown`);
        if (cur === '' && Date.now() - lastAsk > 2000) {
          lastAsk = Date.now();
          await xs.write(`${dom}/control/shutdown`, 'poweroff');
        }
        return (await hv.getDomainInfo(domid))?.shutdown === true;
      }),
    );
    assert.equal((await hv.getDomainInfo(domid))!.shutdownReason, ShutdownReason.poweroff);
    await xs.releaseDomain(domid);
    await xs.rm(dom);
    await destroyAndWait(domid);
    figures('pv-introduced-poweroff', { ...ms, xenbus_up_ms: bootMs, guest_poweroff_ms: offMs, unpause_to_off_ms: Date.now() - tUnpause, total_ms: Date.now() - t0 });
  } finally {
    await xs.close();
  }
});
