// The daemon itself on a real Xen 4.17 dom0: `xenopsd-ng run --backend xen` started as a process, driven only through
// its JSON-RPC API (VM.add, VM.start, VM.stat, VM.shutdown), checked against Xen (xl list), xenstored and xenconsoled.
// Run inside the nested host by fixtures/nested-xen (compiled: dist/test/integration/daemon-xen.itest.js), or on any
// dom0 as root with `node --import tsx --test test/integration/daemon-xen.itest.ts`. Needs XEN_TEST_KERNEL (and
// optionally XEN_TEST_RAMDISK); the guest with devices needs losetup and a bridge xenbr0. Writes its figures to $XEN_TEST_OUT/project-figures.json when XEN_TEST_OUT is set.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { RpcError } from '../../src/daemon/api-client.js';
import { XsClient } from '../../src/xenstore/client.js';
import { defaultSocketPath } from '../../src/xenstore/types.js';
import {
  CONSOLE_LOG_DIR,
  OUT,
  TRACE,
  XenDaemon,
  countRequests,
  kernel,
  ramdisk,
  skipGuestTests as skip,
  traceSince,
  traceSize,
  waitFor,
  xlDomids,
  xlList,
  type TaskResult,
  type VmStat,
} from './xen-harness.js';

const MEMORY_MIB = 128;

/** Everything the tests measured, by guest; written whole after each group (the last write has all of it). */
const allFigures: Record<string, Record<string, unknown>> = {};

interface LifecycleOptions {
  /** One disk (a loop device over a file in tmpdir, as the xl baseline's) and one NIC on xenbr0. */
  devices: boolean;
}

function lifecycle(label: string, opts: LifecycleOptions): void {
  describe(`the daemon on real Xen: VM.add, VM.start, VM.shutdown of a PV guest ${label}`, { skip: skip ?? (opts.devices && !existsSync('/sys/class/net/xenbr0') ? 'the guest with devices needs a bridge xenbr0' : undefined), timeout: 900_000 }, () => {
    let dir = '';
    let loopDevice = '';
    let daemon: XenDaemon | undefined;
    let xs: XsClient;
    let vmId = '';
    let domid = -1;
    const name = `xenopsd-itest-${opts.devices ? 'dev' : 'nodev'}-${process.pid}`;
    const figures: Record<string, unknown> = { guest: { memory_mib: MEMORY_MIB, vcpus: 1, devices: opts.devices ? 'xvda (loop) + vif on xenbr0' : 'none' } };
    allFigures[opts.devices ? 'daemon_pv_devices' : 'daemon_pv_nodev'] = figures;

    const call = <T>(method: string, params?: Record<string, unknown>, timeoutMs = 60_000) => daemon!.call<T>(method, params, timeoutMs);
    const waitTask = (task: string, timeoutS: number): Promise<TaskResult> => daemon!.waitTask(task, timeoutS);
    const daemonLog = () => daemon?.tail() ?? '';

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'xenopsd-itest-daemon-'));
      if (opts.devices) {
        const image = join(dir, 'disk.img');
        writeFileSync(image, '');
        truncateSync(image, 8 << 20);
        loopDevice = execFileSync('losetup', ['--find', '--show', image], { encoding: 'utf8', timeout: 60_000 }).trim();
      }
      const t0 = Date.now();
      daemon = await XenDaemon.start(join(dir, 'api.sock'), join(dir, 'state'));
      figures.daemon_ready_ms = Date.now() - t0;
      xs = await XsClient.connect({ path: defaultSocketPath(), reconnect: false });
    });

    after(async () => {
      // Whatever a failed test left: the API first, then xl.
      if (vmId && domid >= 0 && xlDomids().includes(domid)) {
        await call<{ task: string }>('VM.shutdown', { id: vmId, mode: 'hard' })
          .then(({ task }) => waitTask(task, 120))
          .catch(() => {});
        if (xlDomids().includes(domid)) {
          try {
            execFileSync('xl', ['destroy', String(domid)], { timeout: 60_000 });
          } catch {
            // reported by the tests that failed
          }
        }
      }
      await xs?.close().catch(() => {});
      await daemon?.stop();
      if (loopDevice) {
        try {
          execFileSync('losetup', ['-d', loopDevice], { timeout: 60_000 });
        } catch {
          // still held by a backend that a failed test left: reported there
        }
      }
      if (OUT) {
        writeFileSync(join(OUT, `daemon-xen-${opts.devices ? 'dev' : 'nodev'}.log`), daemon?.log() ?? '');
        writeFileSync(join(OUT, 'project-figures.json'), JSON.stringify(allFigures) + '\n');
      }
      console.log(`XENOPSD_FIGURES ${JSON.stringify({ test: name, ...figures })}`);
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    test('API.version names the xen backend', async () => {
      const v = await call<{ backend: string }>('API.version');
      assert.equal(v.backend, 'xen');
    });

    test('VM.add and VM.start: the domain runs, VM.stat shows it with its domid', { timeout: 300_000 }, async () => {
      const vm = {
        name,
        type: 'pv',
        memory: { max_mib: MEMORY_MIB },
        vcpus: { max: 1 },
        boot: { kernel, ...(ramdisk ? { ramdisk } : {}), cmdline: 'console=hvc0' },
        ...(opts.devices ? { vbds: [{ device: 'xvda', path: loopDevice, mode: 'rw' }], vifs: [{ bridge: 'xenbr0' }] } : {}),
      };
      vmId = (await call<{ id: string }>('VM.add', { vm })).id;
      const before = xlDomids();
      const traceAt = traceSize();
      const t0 = Date.now();
      const { task } = await call<{ task: string }>('VM.start', { id: vmId });
      const done = await waitTask(task, 240);
      const startMs = Date.now() - t0;
      assert.equal(done.state, 'completed', `VM.start ended ${done.state}: ${JSON.stringify(done.error)}\n${daemonLog()}`);
      figures.start_ms = startMs;

      const stat = await call<VmStat>('VM.stat', { id: vmId });
      assert.equal(stat.state.power_state, 'running', JSON.stringify(stat));
      assert.ok(typeof stat.state.domid === 'number' && stat.state.domid > 0, JSON.stringify(stat));
      domid = stat.state.domid;
      assert.ok(!before.includes(domid) && xlDomids().includes(domid), `xl list lacks domain ${domid}:\n${xlList()}`);
      assert.match(xlList(), new RegExp(`^${name}\\s+${domid}\\s`, 'm'), 'xl list names the guest as the daemon wrote it');

      if (traceAt !== undefined) {
        const counts = countRequests(traceSince(traceAt), domid);
        assert.ok(counts, `no INTRODUCE (${domid} ...) in xenstored's trace during VM.start`);
        figures.xenstore_requests_start_daemon = counts.daemon;
        figures.xenstore_requests_start_all = counts.total;
        figures.xenstore_requests_start_by_type = counts.byType;
      } else {
        figures.xenstore_requests_start_daemon = `no trace at ${TRACE}`;
      }
    });

    test("the guest boots: its kernel's xenbus writes control/feature-poweroff, xenconsoled shows its console", { timeout: 420_000 }, async () => {
      assert.ok(domid > 0, 'no domain (VM.start failed)');
      const dom = `/local/domain/${domid}`;
      assert.equal(await xs.tryRead(`${dom}/console/port`) !== undefined, true, 'console/port missing');
      assert.ok(Number(await xs.tryRead(`${dom}/console/ring-ref`)) > 0, 'console/ring-ref missing');
      assert.equal(await xs.tryRead(`/local/domain/0/backend/console/${domid}/0/frontend`), `${dom}/console`);
      const t0 = Date.now();
      await waitFor('control/feature-poweroff = 1 (written by the guest)', 360_000, async () => (await xs.tryRead(`${dom}/control/feature-poweroff`)) === '1', 250);
      figures.xenbus_up_ms = Date.now() - t0;
      // xenconsoled --log=guest: the guest's init says "GUEST: up" on hvc0 once it can run /sbin/poweroff.
      const log = join(CONSOLE_LOG_DIR, `guest-${name}.log`);
      if (existsSync(CONSOLE_LOG_DIR)) {
        await waitFor(`"GUEST: up" in ${log}`, 240_000, async () => existsSync(log) && readFileSync(log, 'latin1').includes('GUEST: up'), 250);
        figures.guest_up_ms = Date.now() - t0;
      } else {
        figures.guest_up_ms = `no ${CONSOLE_LOG_DIR}: xenconsoled not logging guests`;
        // Without the console the test cannot tell when init has made /sbin/poweroff: give it time.
        await sleep(20_000);
      }
      if (opts.devices) {
        // Both ends of both devices Connected: the hotplug scripts ran (blkback got physical-device from `block`) and
        // the guest's blkfront and netfront attached; vif-bridge put the guest's interface on the bridge.
        const ends = [`/local/domain/0/backend/vbd/${domid}/51712`, `${dom}/device/vbd/51712`, `/local/domain/0/backend/vif/${domid}/0`, `${dom}/device/vif/0`];
        const states = () => Promise.all(ends.map((p) => xs.tryRead(`${p}/state`)));
        await waitFor('both ends of both devices to be Connected (4)', 180_000, async () => (await states()).every((v) => v === '4'), 250).catch(async (err: Error) => {
          throw new Error(`${err.message}: ${JSON.stringify(await states())}\n${daemonLog()}`);
        });
        figures.devices_connected_ms = Date.now() - t0;
        assert.equal(await xs.tryRead(`/local/domain/0/backend/vbd/${domid}/51712/hotplug-status`), 'connected');
        assert.ok(await xs.tryRead(`/local/domain/0/backend/vbd/${domid}/51712/physical-device`), 'block wrote no physical-device');
        assert.equal(await xs.tryRead(`/local/domain/0/backend/vif/${domid}/0/hotplug-status`), 'connected');
        assert.ok(existsSync(`/sys/class/net/xenbr0/brif/vif${domid}.0`), `vif${domid}.0 is not on xenbr0`);
      }
      const stat = await call<VmStat>('VM.stat', { id: vmId });
      assert.equal(stat.state.power_state, 'running');
    });

    test('VM.shutdown clean: the guest powers off and nothing of it is left', { timeout: 300_000 }, async () => {
      assert.ok(domid > 0, 'no domain (VM.start failed)');
      const t0 = Date.now();
      const { task } = await call<{ task: string }>('VM.shutdown', { id: vmId, mode: 'clean', timeout_s: 120 });
      const done = await waitTask(task, 180);
      figures.shutdown_ms = Date.now() - t0;
      assert.equal(done.state, 'completed', `VM.shutdown ended ${done.state}: ${JSON.stringify(done.error)}\n${daemonLog()}`);
      const stat = await call<VmStat>('VM.stat', { id: vmId });
      assert.equal(stat.state.power_state, 'halted', JSON.stringify(stat));

      // A destroyed domain is "dying" until xenconsoled and the backends let go of its pages: it must go.
      const t1 = Date.now();
      await waitFor(`domain ${domid} to leave xl list`, 60_000, async () => !xlDomids().includes(domid), 250).catch((err: Error) => {
        throw new Error(`${err.message}\n${xlList()}`);
      });
      figures.gone_after_shutdown_ms = Date.now() - t1;
      assert.deepEqual(xlDomids(), [0], `xl list:\n${xlList()}`);
      for (const kind of opts.devices ? ['vbd', 'vif'] : []) assert.equal(await xs.tryRead(`/local/domain/0/backend/${kind}/${domid}`), undefined, `${kind} backend left`);
      if (opts.devices) {
        assert.equal(existsSync(`/sys/class/net/vif${domid}.0`), false, `vif${domid}.0 left`);
        // The daemon ran the scripts' remove/offline during the teardown, with the keys still there: both succeed.
        const runs = daemon!
          .log()
          .split('\n')
          .filter((l) => l.includes('"msg":"hotplug script"') && l.includes(`/${domid}/`))
          .map((l) => JSON.parse(l) as { backend: string; action: string; code: number | string });
        const summary = runs.map((r) => `${r.backend.split('/')[5]} ${r.action} ${r.code}`).sort();
        assert.deepEqual(summary, ['vbd add 0', 'vbd remove 0', 'vif offline 0', 'vif online 0'], JSON.stringify(runs));
      }
      for (const path of [`/local/domain/${domid}`, `/vm/${vmId}`, `/local/domain/0/backend/console/${domid}`])
        assert.equal(await xs.tryRead(path), undefined, `${path} still exists`);
      await waitFor('xenstored to forget the domain', 30_000, async () => !(await xs.isDomainIntroduced(domid).catch(() => false)));
      domid = -1;
    });

    test('VM.remove: the VM is gone from the daemon', async () => {
      await call('VM.remove', { id: vmId });
      await assert.rejects(call('VM.stat', { id: vmId }), (e: unknown) => e instanceof RpcError && e.errorName === 'DOES_NOT_EXIST');
      vmId = '';
    });
  });
}

lifecycle('without devices', { devices: false });
lifecycle('with one disk and one NIC (hotplug scripts run by the daemon)', { devices: true });
