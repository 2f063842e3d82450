// The daemon itself on a real Xen 4.17 dom0: `xenopsd-ng run --backend xen` started as a process, driven only through
// its JSON-RPC API (VM.add, VM.start, VM.stat, VM.shutdown), checked against Xen (xl list), xenstored and xenconsoled.
// Run inside the nested host by fixtures/nested-xen (compiled: dist/test/integration/daemon-xen.itest.js), or on any
// dom0 as root with `node --import tsx --test test/integration/daemon-xen.itest.ts`. Needs XEN_TEST_KERNEL (and
// optionally XEN_TEST_RAMDISK); the guest with devices needs losetup and a bridge xenbr0. Writes its figures to $XEN_TEST_OUT/project-figures.json when XEN_TEST_OUT is set.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readFileSync, readSync, closeSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ApiClient, RpcError } from '../../src/daemon/api-client.js';
import { XsClient } from '../../src/xenstore/client.js';
import { defaultSocketPath } from '../../src/xenstore/types.js';

const onXen = existsSync('/dev/xen/privcmd') || existsSync('/proc/xen/privcmd');
const kernel = process.env.XEN_TEST_KERNEL;
const ramdisk = process.env.XEN_TEST_RAMDISK || undefined;
const skip = !onXen
  ? 'not a Xen dom0 (no /dev/xen/privcmd or /proc/xen/privcmd)'
  : process.getuid?.() !== 0
    ? 'needs root in dom0'
    : !kernel || !existsSync(kernel)
      ? `XEN_TEST_KERNEL not set or missing (${kernel ?? 'unset'})`
      : undefined;

/** xenstored's trace (-T), as fixtures/nested-xen/dom0-suite.sh starts it; the request counts need it. */
const TRACE = process.env.XENSTORED_TRACE ?? '/run/xenstored.trace';
/** Where xenconsoled --log=guest writes guest-<name>.log (dom0-suite.sh starts it so). */
const CONSOLE_LOG_DIR = process.env.XEN_TEST_CONSOLE_LOG_DIR ?? '/var/log/xen/console';
const OUT = process.env.XEN_TEST_OUT;
const MEMORY_MIB = 128;

// Compiled (dist/test/integration/*.js) the daemon is dist/src/cli/xenopsd-ng.js; from source it runs under tsx.
const compiled = import.meta.filename.endsWith('.js');
const ROOT = resolve(import.meta.dirname, '..', '..');
const daemonArgs = compiled ? [join(ROOT, 'src', 'cli', 'xenopsd-ng.js')] : ['--import', 'tsx', join(ROOT, 'src', 'cli', 'xenopsd-ng.ts')];

interface TaskResult {
  state: string;
  error?: { message: string; data?: { name: string } };
}
interface VmStat {
  state: { power_state: string; domid?: number };
}

async function waitFor<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined | false>, everyMs = 100): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

function xlList(): string {
  return execFileSync('xl', ['list'], { encoding: 'utf8', timeout: 30_000 });
}

/** Domain ids `xl list` shows. */
function xlDomids(): number[] {
  return xlList()
    .split('\n')
    .slice(1)
    .map((l) => Number(l.trim().split(/\s+/)[1]))
    .filter((n) => Number.isInteger(n));
}

function traceSize(): number | undefined {
  try {
    return statSync(TRACE).size;
  } catch {
    return undefined;
  }
}

function traceSince(offset: number): string {
  const fd = openSync(TRACE, 'r');
  try {
    const size = statSync(TRACE).size;
    const buf = Buffer.alloc(Math.max(0, size - offset));
    let got = 0;
    while (got < buf.length) {
      const n = readSync(fd, buf, got, buf.length - got, offset + got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got).toString('latin1');
  } finally {
    closeSync(fd);
  }
}

/**
 * Requests xenstored received during a window of its trace: all of them, and those of the connection that introduced
 * domid (the daemon's; the same rule dom0-suite.sh applies to xl), by type.
 */
function countRequests(trace: string, domid: number): { total: number; daemon: number; byType: Record<string, number> } | undefined {
  const lines = trace.split('\n').filter((l) => l.startsWith('IN '));
  const intro = lines.find((l) => new RegExp(` INTRODUCE \\(${domid} `).test(l));
  if (!intro) return undefined;
  const conn = intro.split(' ')[1]!;
  const mine = lines.filter((l) => l.split(' ')[1] === conn);
  const byType: Record<string, number> = {};
  for (const l of mine) {
    const type = /\s([A-Z_]+) \(/.exec(l)?.[1] ?? '?';
    byType[type] = (byType[type] ?? 0) + 1;
  }
  return { total: lines.length, daemon: mine.length, byType };
}

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
    let daemon: ChildProcess | undefined;
    let exited: Promise<number | string> | undefined;
    let stderr = '';
    let api: ApiClient;
    let xs: XsClient;
    let vmId = '';
    let domid = -1;
    const name = `xenopsd-itest-${opts.devices ? 'dev' : 'nodev'}-${process.pid}`;
    const figures: Record<string, unknown> = { guest: { memory_mib: MEMORY_MIB, vcpus: 1, devices: opts.devices ? 'xvda (loop) + vif on xenbr0' : 'none' } };
    allFigures[opts.devices ? 'daemon_pv_devices' : 'daemon_pv_nodev'] = figures;

    const call = <T>(method: string, params?: Record<string, unknown>, timeoutMs = 60_000) => api.call<T>(method, params, timeoutMs);
    const waitTask = async (task: string, timeoutS: number): Promise<TaskResult> => {
      const r = await call<TaskResult>('TASK.wait', { id: task, timeout_s: timeoutS }, (timeoutS + 30) * 1000);
      assert.notEqual(r.state, 'pending', `task ${task} still running after ${timeoutS} s`);
      return r;
    };
    const daemonLog = () => stderr.slice(-6000);

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'xenopsd-itest-daemon-'));
      if (opts.devices) {
        const image = join(dir, 'disk.img');
        writeFileSync(image, '');
        truncateSync(image, 8 << 20);
        loopDevice = execFileSync('losetup', ['--find', '--show', image], { encoding: 'utf8', timeout: 60_000 }).trim();
      }
      const socket = join(dir, 'api.sock');
      const t0 = Date.now();
      const child = spawn(process.execPath, [...daemonArgs, 'run', '--backend', 'xen', '--socket', socket, '--state-dir', join(dir, 'state')], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'debug' },
      });
      daemon = child;
      child.stderr!.on('data', (c: Buffer) => {
        stderr += c.toString();
        if (stderr.length > 4_000_000) stderr = stderr.slice(-2_000_000);
      });
      exited = new Promise((res) => child.once('exit', (code, sig) => res(code ?? sig ?? 'unknown')));
      await new Promise<void>((res, rej) => {
        // A cold node start under TCG takes seconds; koffi and the libraries more.
        const timer = setTimeout(() => rej(new Error(`daemon not ready in 120 s:\n${daemonLog()}`)), 120_000);
        let out = '';
        child.stdout!.on('data', (c: Buffer) => {
          out += c.toString();
          if (out.includes('\n')) {
            clearTimeout(timer);
            res();
          }
        });
        void exited!.then((code) => {
          clearTimeout(timer);
          rej(new Error(`daemon exited (${code}) before ready:\n${daemonLog()}`));
        });
      });
      figures.daemon_ready_ms = Date.now() - t0;
      api = new ApiClient(socket);
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
      api?.close();
      await xs?.close().catch(() => {});
      if (daemon && daemon.exitCode === null && daemon.signalCode === null) {
        daemon.kill('SIGTERM');
        const timer = setTimeout(() => daemon!.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(timer);
      }
      if (loopDevice) {
        try {
          execFileSync('losetup', ['-d', loopDevice], { timeout: 60_000 });
        } catch {
          // still held by a backend that a failed test left: reported there
        }
      }
      if (OUT) {
        writeFileSync(join(OUT, `daemon-xen-${opts.devices ? 'dev' : 'nodev'}.log`), stderr);
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
        const runs = stderr
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
