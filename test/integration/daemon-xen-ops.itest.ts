// The daemon's lifecycle beyond start and clean shutdown, on a real Xen 4.17 dom0 (run by fixtures/nested-xen like
// daemon-xen.itest.ts): pause/unpause, the daemon SIGKILLed and started again (it must re-adopt the running domain),
// set_memory (the guest balloons) and set_vcpus (it onlines a vcpu), VM.reboot, a guest that reboots, crashes or
// powers off by itself (the daemon's on_reboot / on_crash / on_poweroff through @releaseDomain), a hard shutdown. `xl list` and xenstored are the ground truth throughout.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { RpcError } from '../../src/daemon/api-client.js';
import { XsClient } from '../../src/xenstore/client.js';
import { defaultSocketPath } from '../../src/xenstore/types.js';
import { CONSOLE_LOG_DIR, OUT, XenDaemon, kernel, ramdisk, skipGuestTests, waitFor, xlDomids, xlList, xlState, type VmStat } from './xen-harness.js';

describe('the daemon on real Xen: pause, set_memory, set_vcpus, daemon restart, reboot, guest reboot/crash/poweroff, hard shutdown', { skip: skipGuestTests, timeout: 1_200_000 }, () => {
  let dir = '';
  let daemon: XenDaemon | undefined;
  let xs: XsClient;
  let vmId = '';
  let domid = -1;
  const name = `xenopsd-itest-ops-${process.pid}`;
  const consoleLog = join(CONSOLE_LOG_DIR, `guest-${name}.log`);
  const figures: Record<string, unknown> = {};
  const d = () => daemon!;
  const withNic = existsSync('/sys/class/net/xenbr0');

  const stat = async () => (await d().call<VmStat>('VM.stat', { id: vmId })).state;

  /** How many times the guest's init said it is up on its console (xenconsoled appends across reboots). */
  const upCount = () => (existsSync(consoleLog) ? readFileSync(consoleLog, 'latin1').split('GUEST: up').length - 1 : 0);

  /** Waits until the guest in domain `dom` runs its init: a new "GUEST: up" on the console, or xenbus up plus time. */
  async function guestUp(dom: number, upsBefore: number): Promise<number> {
    const t0 = Date.now();
    await waitFor(`control/feature-poweroff of domain ${dom}`, 360_000, async () => (await xs.tryRead(`/local/domain/${dom}/control/feature-poweroff`)) === '1', 250);
    if (existsSync(CONSOLE_LOG_DIR)) await waitFor(`"GUEST: up" number ${upsBefore + 1} in ${consoleLog}`, 240_000, async () => upCount() > upsBefore, 250);
    else await sleep(20_000); // no console log: give init the time it takes under TCG to make /sbin/poweroff
    return Date.now() - t0;
  }

  /** The domain is gone from Xen and xenstored, and nothing the daemon wrote for it is left. */
  async function assertDomainGone(dom: number): Promise<void> {
    await waitFor(`domain ${dom} to leave xl list`, 60_000, async () => !xlDomids().includes(dom), 250).catch((err: Error) => {
      throw new Error(`${err.message}\n${xlList()}`);
    });
    // VM.stat says halted as soon as the domain is gone; the teardown (remove scripts, then the nodes) finishes after.
    for (const path of [`/local/domain/${dom}`, `/local/domain/0/backend/console/${dom}`, `/local/domain/0/backend/vif/${dom}`])
      await waitFor(`${path} to be removed`, 60_000, async () => (await xs.tryRead(path)) === undefined, 250);
    await waitFor(`xenstored to forget domain ${dom}`, 30_000, async () => !(await xs.isDomainIntroduced(dom).catch(() => false)));
  }

  /**
   * After the guest in domain `old` went down by itself: waits for the daemon to start the VM again in a new domain
   * (its on_* action), for the old one to be gone and the new guest to be up. Returns ms until the new domain ran.
   */
  async function restartedFrom(old: number, upsBefore: number): Promise<number> {
    const t0 = Date.now();
    const s = await waitFor('VM.stat to show a new running domain', 300_000, async () => {
      const st = await stat();
      return st.power_state === 'running' && st.domid !== undefined && st.domid !== old ? st : undefined;
    }, 250);
    const ms = Date.now() - t0;
    domid = s.domid!;
    await assertDomainGone(old);
    await guestUp(domid, upsBefore);
    return ms;
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'xenopsd-itest-ops-'));
    daemon = await XenDaemon.start(join(dir, 'api.sock'), join(dir, 'state'));
    xs = await XsClient.connect({ path: defaultSocketPath(), reconnect: false });
    const vm = {
      name,
      type: 'pv',
      memory: { max_mib: 128 },
      vcpus: { max: 2, online: 1 },
      boot: { kernel, ...(ramdisk ? { ramdisk } : {}), cmdline: 'console=hvc0' },
      on_poweroff: 'destroy',
      on_reboot: 'restart',
      on_crash: 'restart',
      // One NIC: after the daemon's restart, its teardown must still run vif-bridge offline for it (adopted).
      ...(withNic ? { vifs: [{ bridge: 'xenbr0' }] } : {}),
    };
    vmId = (await d().call<{ id: string }>('VM.add', { vm })).id;
  });

  after(async () => {
    const live = domid >= 0 && xlDomids().includes(domid);
    if (vmId && live && daemon) await d().run('VM.shutdown', { id: vmId, mode: 'hard' }, 120).catch(() => {});
    if (domid >= 0 && xlDomids().includes(domid)) {
      try {
        execFileSync('xl', ['destroy', String(domid)], { timeout: 60_000 });
      } catch {
        // reported by the test that failed
      }
    }
    await xs?.close().catch(() => {});
    await daemon?.stop();
    if (OUT) writeFileSync(join(OUT, 'daemon-xen-ops.log'), daemon?.log() ?? '');
    console.log(`XENOPSD_FIGURES ${JSON.stringify({ test: name, ...figures })}`);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('VM.start: the guest boots', { timeout: 600_000 }, async () => {
    const ups = upCount();
    await d().run('VM.start', { id: vmId });
    const s = await stat();
    assert.equal(s.power_state, 'running');
    domid = s.domid!;
    figures.guest_up_ms = await guestUp(domid, ups);
  });

  test('VM.pause and VM.unpause: xl list shows the domain paused, then not', async () => {
    assert.ok(domid > 0, 'no domain (VM.start failed)');
    await d().run('VM.pause', { id: vmId });
    assert.equal((await stat()).power_state, 'paused');
    assert.equal(xlState(domid)?.[2], 'p', `xl list:\n${xlList()}`);
    await d().run('VM.unpause', { id: vmId });
    assert.equal((await stat()).power_state, 'running');
    assert.notEqual(xlState(domid)?.[2], 'p', `xl list:\n${xlList()}`);
  });

  test("VM.set_memory: the guest's balloon driver gives the memory back to Xen", { timeout: 300_000 }, async () => {
    assert.ok(domid > 0, 'no domain (VM.start failed)');
    const before = (await stat()).memory_actual_mib!;
    assert.ok(before > 120, `a 128 MiB guest holds ${before} MiB`);
    await d().run('VM.set_memory', { id: vmId, target_mib: 96 });
    assert.equal(await xs.tryRead(`/local/domain/${domid}/memory/target`), String(96 * 1024));
    const t0 = Date.now();
    const after = await waitFor('the guest to balloon down to about 96 MiB', 180_000, async () => {
      const m = (await stat()).memory_actual_mib!;
      return m <= 100 ? m : undefined;
    }, 500);
    figures.balloon_down_ms = Date.now() - t0;
    figures.balloon_mib = { before, after };
  });

  test('VM.set_vcpus: the guest brings its second vcpu online', { timeout: 300_000 }, async () => {
    assert.ok(domid > 0, 'no domain (VM.start failed)');
    assert.equal((await stat()).vcpus_online, 1, 'booted with one of two vcpus online');
    await d().run('VM.set_vcpus', { id: vmId, online: 2 });
    assert.equal(await xs.tryRead(`/local/domain/${domid}/cpu/1/availability`), 'online');
    const t0 = Date.now();
    await waitFor('Xen to count two online vcpus', 180_000, async () => (await stat()).vcpus_online === 2, 500);
    figures.vcpu_online_ms = Date.now() - t0;
  });

  test('the daemon SIGKILLed and started again re-adopts the running domain as it is', { timeout: 300_000 }, async () => {
    assert.ok(domid > 0, 'no domain (VM.start failed)');
    const { socket, stateDir } = d();
    await d().kill();
    assert.ok(xlDomids().includes(domid), 'the domain outlives the daemon');
    const t0 = Date.now();
    daemon = await XenDaemon.start(socket, stateDir);
    figures.daemon_restart_ready_ms = Date.now() - t0;
    const s = await stat();
    assert.equal(s.power_state, 'running');
    assert.equal(s.domid, domid, 'the same domain');
    const recovery = d()
      .log()
      .split('\n')
      .filter((l) => l.includes('"msg":"recovery done"'))
      .map((l) => JSON.parse(l) as { recovery: { adopted: string[]; orphanDomains: number[] } })[0];
    assert.ok(recovery, `no "recovery done" line:\n${d().tail()}`);
    assert.deepEqual(recovery.recovery.adopted, [vmId]);
    assert.deepEqual(recovery.recovery.orphanDomains, []);
    assert.equal(await xs.tryRead(`/local/domain/${domid}/vm`), `/vm/${vmId}`, 'its xenstore records are kept');
  });

  test('VM.reboot (clean): the guest shuts down and boots again in a new domain', { timeout: 600_000 }, async () => {
    assert.ok(domid > 0, 'no domain');
    const old = domid;
    const ups = upCount();
    const t0 = Date.now();
    await d().run('VM.reboot', { id: vmId, mode: 'clean', timeout_s: 120 });
    figures.reboot_ms = Date.now() - t0;
    const s = await stat();
    assert.equal(s.power_state, 'running');
    assert.notEqual(s.domid, old, 'a new domain');
    domid = s.domid!;
    await assertDomainGone(old);
    if (withNic) {
      // The old domain's NIC was set up by the daemon before its restart: the new one ran its offline all the same.
      const offline = d()
        .log()
        .split('\n')
        .filter((l) => l.includes('"msg":"hotplug script"') && l.includes(`/vif/${old}/0`))
        .map((l) => JSON.parse(l) as { action: string; code: number | string })
        .map((r) => `${r.action} ${r.code}`);
      assert.deepEqual(offline, ['offline 0'], `hotplug runs for vif/${old}/0 in the restarted daemon's log`);
      assert.equal(existsSync(`/sys/class/net/vif${old}.0`), false, `vif${old}.0 left`);
    }
    await guestUp(domid, ups);
  });

  test('a guest that reboots by itself is started again by the daemon (on_reboot restart)', { timeout: 600_000 }, async () => {
    assert.ok(domid > 0, 'no domain');
    const old = domid;
    const ups = upCount();
    // As if someone inside the guest ran reboot: the daemon is not asked, it sees the domain shut down (reason reboot).
    await xs.write(`/local/domain/${old}/control/shutdown`, 'reboot');
    figures.self_reboot_restarted_ms = await restartedFrom(old, ups);
  });

  test('a guest that crashes is started again by the daemon (on_crash restart)', { timeout: 600_000 }, async () => {
    assert.ok(domid > 0, 'no domain');
    const old = domid;
    const ups = upCount();
    // sysrq c through xenstore, as `xl sysrq` sends it: the guest kernel panics and Xen shuts the domain down with
    // reason crash.
    await xs.write(`/local/domain/${old}/control/sysrq`, 'c');
    figures.crash_restarted_ms = await restartedFrom(old, ups);
    assert.match(d().log(), /"reason":"crash"/, 'the daemon saw a crash');
  });

  test('a guest that powers off by itself is removed by the daemon (on_poweroff destroy)', { timeout: 300_000 }, async () => {
    assert.ok(domid > 0, 'no domain');
    const old = domid;
    await xs.write(`/local/domain/${old}/control/shutdown`, 'poweroff');
    await waitFor('VM.stat to show halted', 240_000, async () => (await stat()).power_state === 'halted', 250);
    await assertDomainGone(old);
    assert.equal(await xs.tryRead(`/vm/${vmId}`), undefined, `/vm/${vmId} still exists`);
    domid = -1;
  });

  test('VM.shutdown (hard) of a booting guest: the domain goes at once, nothing is left', { timeout: 600_000 }, async () => {
    await d().run('VM.start', { id: vmId });
    domid = (await stat()).domid!;
    const t0 = Date.now();
    await d().run('VM.shutdown', { id: vmId, mode: 'hard' }, 120);
    figures.hard_shutdown_ms = Date.now() - t0;
    assert.equal((await stat()).power_state, 'halted');
    await assertDomainGone(domid);
    assert.deepEqual(xlDomids(), [0], `xl list:\n${xlList()}`);
    domid = -1;
  });

  test('VM.remove: the VM is gone from the daemon', async () => {
    await d().call('VM.remove', { id: vmId });
    await assert.rejects(d().call('VM.stat', { id: vmId }), (e: unknown) => e instanceof RpcError && e.errorName === 'DOES_NOT_EXIST');
    vmId = '';
  });
});
