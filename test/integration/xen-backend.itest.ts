// The xen backend on a real Xen 4.17 dom0 (run inside the nested host by fixtures/nested-xen, or on any dom0 with
// `node --import tsx --test test/integration/xen-backend.itest.ts`). Not matched by *.test.ts: the default runner
// skips it. Needs root in dom0; the PV lifecycle needs XEN_TEST_KERNEL (and optionally XEN_TEST_RAMDISK).
// Prints `XENOPSD_FIGURES {...}` lines with the timings, and writes them to $XEN_TEST_FIGURES if set.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { appendFileSync, closeSync, existsSync, mkdtempSync, openSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CreateFlag, HypervisorError, ShutdownReason, type DomainInfo } from '../../src/hypervisor/types.js';
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
/** A PV domain with its limits and its xenstore and console event channels, not built yet (build or restore next). */
async function createEmptyPv(): Promise<{ domid: number; storePort: number; consolePort: number }> {
  const domid = await hv.createDomain({ handle: randomUUID(), flags: 0, maxVcpus: 1 });
  created.add(domid);
  await hv.setMaxVcpus(domid, 1);
  await hv.setMaxMem(domid, MEMORY_MIB * 1024 + 1024);
  const storePort = await hv.evtchnAllocUnbound(domid, 0);
  const consolePort = await hv.evtchnAllocUnbound(domid, 0);
  return { domid, storePort, consolePort };
}

async function createAndBuild(kernelPath: string): Promise<{ domid: number; storePort: number; consolePort: number; storeMfn: bigint; consoleMfn: bigint; ms: Record<string, number> }> {
  const t0 = Date.now();
  const { domid, storePort, consolePort } = await createEmptyPv();
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

test('PVH guest: create (HVM container + HAP), build, unpause, runs, destroy', { skip: noKernel, timeout: 300_000 }, async () => {
  const t0 = Date.now();
  const domid = await hv.createDomain({ handle: randomUUID(), flags: CreateFlag.hvm | CreateFlag.hap, maxVcpus: 1 });
  created.add(domid);
  await hv.setMaxVcpus(domid, 1);
  await hv.setMaxMem(domid, MEMORY_MIB * 1024 + 1024);
  const storePort = await hv.evtchnAllocUnbound(domid, 0);
  const consolePort = await hv.evtchnAllocUnbound(domid, 0);
  const t1 = Date.now();
  const rings = await hv.build(domid, { type: 'pvh', kernel: kernel!, ramdisk, cmdline: 'console=hvc0', memoryMib: MEMORY_MIB, storePort, consolePort });
  const buildMs = Date.now() - t1;
  // Translated guest: the rings are gfns in the special-page region just below 0xff000.
  assert.ok(rings.storeMfn > 0xfe000n && rings.storeMfn < 0xff000n, `store gfn ${rings.storeMfn}`);
  const info = (await hv.getDomainInfo(domid))!;
  assert.equal(info.hvm, true);
  await hv.unpause(domid);
  const ranMs = await waitFor('the PVH guest to use CPU time', 60_000, async () => ((await hv.getDomainInfo(domid))?.cpuTimeNs ?? 0) > 50_000_000);
  const destroyMs = await destroyAndWait(domid);
  figures('pvh-lifecycle', { create_ms: t1 - t0, build_ms: buildMs, first_cpu_ms: ranMs, destroy_ms: destroyMs });
});

test('a build with a missing kernel fails naming xc_dom_kernel_file, and the domain can be destroyed', { skip: notXen, timeout: 120_000 }, async () => {
  await assert.rejects(createAndBuild('/nonexistent/vmlinuz'), (e: unknown) => e instanceof HypervisorError && e.call === 'xc_dom_kernel_file');
  for (const domid of [...created]) await destroyAndWait(domid);
});

// --- guests introduced to xenstored (what the daemon's VM.start does above the hypervisor) ---

type Xenstore = Awaited<ReturnType<typeof import('../../src/xenstore/index.js').openXenstore>>;
interface Guest {
  domid: number;
  storePort: number;
  consolePort: number;
  storeMfn: bigint;
  consoleMfn: bigint;
}

async function openXs(): Promise<Xenstore> {
  const { openXenstore } = await import('../../src/xenstore/index.js');
  return openXenstore({ transport: 'native', reconnect: false });
}

async function dumpTree(xs: Xenstore, path: string, depth = 0): Promise<string[]> {
  if (depth > 4) return [];
  const value = await xs.tryRead(path).catch(() => undefined);
  const lines = [`${path} = ${JSON.stringify(value ?? null)}`];
  for (const child of await xs.directory(path).catch(() => [] as string[])) lines.push(...(await dumpTree(xs, `${path}/${child}`, depth + 1)));
  return lines;
}

/** Runs one stage; a failure says which, with the domain's state and xenstore subtree. */
async function stage<T>(xs: Xenstore, domid: number, what: string, body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (err) {
    const info = await hv.getDomainInfo(domid);
    throw new Error(`${what}: ${(err as Error).message}\ndomain: ${JSON.stringify(info)}\n${(await dumpTree(xs, `/local/domain/${domid}`)).join('\n')}`);
  }
}

/**
 * What a PV Linux needs (libxl's layout, trimmed): its home read-only to it, the nodes it writes owned by it,
 * the xenstore and console rings; then the introduction (xenconsoled attaches to the console on it).
 */
async function introduce(xs: Xenstore, g: Guest): Promise<void> {
  const dom = `/local/domain/${g.domid}`;
  const guestOwned = [{ id: g.domid, perm: 'n' as const }];
  await xs.transaction(async (tx) => {
    await tx.mkdir(dom);
    await tx.setPerms(dom, [{ id: 0, perm: 'n' }, { id: g.domid, perm: 'r' }]);
    await tx.write(`${dom}/name`, `xenopsd-itest-${g.domid}`);
    await tx.write(`${dom}/domid`, String(g.domid));
    await tx.write(`${dom}/store/port`, String(g.storePort));
    await tx.write(`${dom}/store/ring-ref`, String(g.storeMfn));
    await tx.write(`${dom}/console/port`, String(g.consolePort));
    await tx.write(`${dom}/console/ring-ref`, String(g.consoleMfn));
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
  await xs.introduceDomain(g.domid, g.storeMfn, g.storePort);
  assert.equal(await xs.isDomainIntroduced(g.domid), true);
}

/** The kernel's xenbus is up when it advertises the shutdown requests it handles (over the store ring). */
function waitXenbus(xs: Xenstore, domid: number): Promise<number> {
  return stage(xs, domid, 'waiting for the guest to write control/feature-poweroff', () =>
    waitFor('control/feature-poweroff = 1', 360_000, async () => (await xs.tryRead(`/local/domain/${domid}/control/feature-poweroff`)) === '1'),
  );
}

/**
 * Asks the guest to shut down (control/shutdown) until Xen reports it shut down for `reason`. Before its init
 * has made /sbin/poweroff a request finds no command, so it is repeated whenever the guest acknowledged it.
 */
function requestShutdown(xs: Xenstore, domid: number, request: 'poweroff' | 'suspend', reason: number, timeoutMs = 180_000): Promise<number> {
  let lastAsk = 0;
  const node = `/local/domain/${domid}/control/shutdown`;
  return stage(xs, domid, `waiting for the guest to ${request}`, () =>
    waitFor(`shutdown (${request})`, timeoutMs, async () => {
      if ((await xs.tryRead(node)) === '' && Date.now() - lastAsk > 2000) {
        lastAsk = Date.now();
        await xs.write(node, request);
      }
      const info = await hv.getDomainInfo(domid);
      if (info?.shutdown && info.shutdownReason !== reason) throw new Error(`shut down with reason ${info.shutdownReason}, wanted ${reason}`);
      return info?.shutdown === true;
    }),
  );
}

/**
 * libxl's order: the tree goes, then the domain. No XS_RELEASE first: xenstored would forget the domain and not
 * fire @releaseDomain when it dies, so xenconsoled would keep the console page mapped and the domain would stay
 * a zombie ("dying") for ever.
 */
async function removeGuest(xs: Xenstore, domid: number): Promise<number> {
  await xs.rm(`/local/domain/${domid}`);
  const goneMs = await destroyAndWait(domid);
  await waitFor('xenstored to forget the domain', 30_000, async () => !(await xs.isDomainIntroduced(domid).catch(() => false)));
  return goneMs;
}

test('PV guest introduced to xenstored boots, says so in xenstore, and powers off on control/shutdown', { skip: noKernel, timeout: 600_000 }, async () => {
  const xs = await openXs();
  try {
    const t0 = Date.now();
    const g = await createAndBuild(kernel!);
    await introduce(xs, g);
    await hv.unpause(g.domid);
    const tUnpause = Date.now();
    const bootMs = await waitXenbus(xs, g.domid);
    const offMs = await requestShutdown(xs, g.domid, 'poweroff', ShutdownReason.poweroff);
    const goneMs = await removeGuest(xs, g.domid);
    figures('pv-introduced-poweroff', { ...g.ms, xenbus_up_ms: bootMs, guest_poweroff_ms: offMs, destroy_ms: goneMs, unpause_to_off_ms: Date.now() - tUnpause, total_ms: Date.now() - t0 });
  } finally {
    await xs.close();
  }
});

test('PV guest saved (suspended through xenstore) and restored into a new domain runs on', { skip: noKernel, timeout: 900_000 }, async () => {
  const xs = await openXs();
  const dir = mkdtempSync(join(tmpdir(), 'xenopsd-itest-save-'));
  const streamPath = join(dir, 'pv.stream');
  try {
    const g = await createAndBuild(kernel!);
    await introduce(xs, g);
    await hv.unpause(g.domid);
    await waitXenbus(xs, g.domid);

    const out = openSync(streamPath, 'w');
    const tSave = Date.now();
    let suspendMs = 0;
    let stats;
    try {
      stats = await stage(xs, g.domid, 'saving', () =>
        hv.save(g.domid, out, { live: false }, {
          suspend: async () => {
            suspendMs = await requestShutdown(xs, g.domid, 'suspend', ShutdownReason.suspend, 120_000);
          },
        }),
      );
    } finally {
      closeSync(out);
    }
    const saveMs = Date.now() - tSave;
    const bytes = statSync(streamPath).size;
    assert.ok(bytes > MEMORY_MIB * 1024 * 1024 * 0.5, `stream of ${bytes} bytes for a ${MEMORY_MIB} MiB guest`);
    assert.equal(stats.bytes, bytes);
    await removeGuest(xs, g.domid);

    const tRestore = Date.now();
    const { domid, storePort, consolePort } = await createEmptyPv();
    const input = openSync(streamPath, 'r');
    let rings;
    try {
      rings = await hv.restore(domid, input, { storePort, consolePort });
    } finally {
      closeSync(input);
    }
    const restoreMs = Date.now() - tRestore;
    assert.ok(rings.storeMfn > 0n && rings.consoleMfn > 0n, JSON.stringify({ ...rings, storeMfn: String(rings.storeMfn), consoleMfn: String(rings.consoleMfn) }));
    const restored: Guest = { domid, storePort, consolePort, ...rings };
    await introduce(xs, restored);
    await hv.unpause(domid);
    // The resumed kernel reconnects to xenstore and re-registers its watches: a poweroff request reaches it.
    const offMs = await requestShutdown(xs, domid, 'poweroff', ShutdownReason.poweroff);
    await removeGuest(xs, domid);
    figures('pv-save-restore', { save_ms: saveMs, suspend_ms: suspendMs, stream_bytes: bytes, restore_ms: restoreMs, resumed_poweroff_ms: offMs });
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await xs.close();
  }
});
