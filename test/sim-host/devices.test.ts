// Backends and frontends driven by nothing but xenstore writes, as a toolstack would make them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSimHost, type SimHostHandle } from '../support/simhost.js';
import { SimControlClient } from '../../src/sim/control/client.js';
import { main as simMain } from '../../src/sim/cli.js';
import type { XsClient } from '../../src/xenstore/client.js';
import { HvClient } from './hvclient.js';
import { addDevice, connectXs, createDomain, until, vbdSpec, vifSpec, waitFor } from './toolstack.js';

let host: SimHostHandle;
let xs: XsClient;
let hv: HvClient;
let ctl: SimControlClient;
let files: string;
let disk: string;

before(async () => {
  host = await startSimHost({ bootDelayMs: 0 });
  xs = await connectXs(host.xenstoredPath);
  hv = await HvClient.connect(host.hypervisorPath);
  ctl = await SimControlClient.connect(host.controlPath);
  files = mkdtempSync(join(tmpdir(), 'xsim-disks-'));
  disk = join(files, 'disk.img');
  writeFileSync(disk, Buffer.alloc(64 * 1024 * 1024 / 1024)); // 64 KiB file: 128 sectors
});
after(async () => {
  await xs?.close();
  hv?.close();
  await ctl?.close();
  await host?.stop();
  rmSync(files, { recursive: true, force: true });
});

const is = (n: number) => (v: string | undefined) => v === String(n);

test('a vbd and a vif: both ends reach Connected (4), with the keys real backends and frontends write', async () => {
  const dom = await createDomain(hv, xs);
  const vbd = await addDevice(xs, dom.domid, vbdSpec(51712, disk));
  const vif = await addDevice(xs, dom.domid, vifSpec(0, 'xenbr0'));
  // Before the guest runs, the backends probe and wait for it.
  await waitFor(xs, `${vbd.backend}/state`, is(2));
  await waitFor(xs, `${vif.backend}/state`, is(2));
  assert.equal(await xs.read(`${vbd.backend}/hotplug-status`), 'connected');
  assert.equal(await xs.read(`${vif.backend}/hotplug-status`), 'connected');
  assert.equal(await xs.read(`${vbd.frontend}/state`), '1');

  await hv.call('unpause', dom.domid);
  for (const p of [vbd.backend, vbd.frontend, vif.backend, vif.frontend]) await waitFor(xs, `${p}/state`, is(4));

  const be = async (k: string) => xs.read(`${vbd.backend}/${k}`);
  assert.equal(await be('sectors'), '128');
  assert.equal(await be('sector-size'), '512');
  assert.equal(await be('info'), '0');
  assert.equal(await be('feature-flush-cache'), '1');
  assert.equal(await be('feature-discard'), '1');
  assert.match(await be('physical-device'), /^7:[0-9a-f]+$/);
  assert.match(await be('physical-device-path'), /^\/dev\/loop\d+$/);
  assert.match(await xs.read(`${vbd.frontend}/ring-ref`), /^\d+$/);
  assert.match(await xs.read(`${vbd.frontend}/event-channel`), /^\d+$/);
  assert.equal(await xs.read(`${vbd.frontend}/protocol`), 'x86_64-abi');
  for (const k of ['feature-sg', 'feature-gso-tcpv4', 'feature-rx-copy', 'feature-split-event-channels']) {
    assert.equal(await xs.read(`${vif.backend}/${k}`), '1', k);
  }
  for (const k of ['tx-ring-ref', 'rx-ring-ref', 'event-channel-tx', 'event-channel-rx']) assert.match(await xs.read(`${vif.frontend}/${k}`), /^\d+$/, k);
  assert.equal(await xs.read(`${vif.frontend}/request-rx-copy`), '1');

  const st = await ctl.call('status');
  assert.deepEqual(st.backends[vbd.backend], { state: 4, hotplug: 'connected' });
  assert.equal(st.domains.find((d) => d.domid === dom.domid)?.guest?.frontends[vif.frontend], 4);

  // Unplug as libxl does: online=0, state=Closing; both ends close.
  await xs.write(`${vbd.backend}/online`, '0');
  await xs.write(`${vbd.backend}/state`, '5');
  await waitFor(xs, `${vbd.backend}/state`, is(6));
  await waitFor(xs, `${vbd.frontend}/state`, is(6));
  // The other device is untouched.
  assert.equal(await xs.read(`${vif.backend}/state`), '4');
  await hv.call('destroy', dom.domid);
});

test('unplugging from a domain that has shut down closes without waiting for its frontend', async () => {
  const dom = await createDomain(hv, xs);
  const vif = await addDevice(xs, dom.domid, vifSpec(0, 'xenbr0'));
  await hv.call('unpause', dom.domid);
  await waitFor(xs, `${vif.backend}/state`, is(4));
  await hv.call('shutdown', dom.domid, 0);
  await xs.write(`${vif.backend}/online`, '0');
  await xs.write(`${vif.backend}/state`, '5');
  await waitFor(xs, `${vif.backend}/state`, is(6));
  assert.equal(await xs.read(`${vif.frontend}/state`), '4', 'the dead guest never closed its end');
  await hv.call('destroy', dom.domid);
});

test('hotplug errors: a missing disk file, an empty bridge', async () => {
  const dom = await createDomain(hv, xs);
  const vbd = await addDevice(xs, dom.domid, vbdSpec(51728, join(files, 'no-such-disk.img')));
  const vif = await addDevice(xs, dom.domid, vifSpec(1, ''));
  const rel = await addDevice(xs, dom.domid, vbdSpec(51744, 'disk.img'));
  await waitFor(xs, `${vbd.backend}/hotplug-status`, (v) => v === 'error');
  assert.match(await xs.read(`${vbd.backend}/hotplug-error`), /no-such-disk\.img does not exist/);
  await waitFor(xs, `${rel.backend}/hotplug-status`, (v) => v === 'error');
  assert.match(await xs.read(`${rel.backend}/hotplug-error`), /not an absolute path/);
  await waitFor(xs, `${vif.backend}/hotplug-status`, (v) => v === 'error');
  assert.match(await xs.read(`${vif.backend}/hotplug-error`), /bridge/);
  // vif-route needs no bridge.
  const routed = await addDevice(xs, dom.domid, { ...vifSpec(2, ''), backend: { ...vifSpec(2, '').backend, script: '/etc/xen/scripts/vif-route' } });
  await waitFor(xs, `${routed.backend}/hotplug-status`, (v) => v === 'connected');
  // A failed device never connects, even with the guest up.
  await hv.call('unpause', dom.domid);
  await waitFor(xs, `${dom.dompath}/data/updated`, (v) => v === '1');
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(await xs.read(`${vbd.backend}/state`), '2');
  // blkfront answered the backend's InitWait (as Linux does), but the backend never connects.
  assert.equal(await xs.read(`${vbd.frontend}/state`), '3');
  assert.equal(await xs.read(`${vif.backend}/state`), '2');
  await hv.call('destroy', dom.domid);
});

test('injected backend faults: fail gives hotplug-status error with the message, hang never moves', async () => {
  const dom = await createDomain(hv, xs);
  await ctl.call('backend.fault', { path: `/local/domain/0/backend/vbd/${dom.domid}/51712`, mode: 'fail', message: 'injected: no such LUN' });
  await ctl.call('backend.fault', { path: `/local/domain/0/backend/vif/${dom.domid}`, mode: 'hang' });
  const vbd = await addDevice(xs, dom.domid, vbdSpec(51712, disk));
  const vif = await addDevice(xs, dom.domid, vifSpec(0, 'xenbr0'));
  await waitFor(xs, `${vbd.backend}/hotplug-status`, (v) => v === 'error');
  assert.equal(await xs.read(`${vbd.backend}/hotplug-error`), 'injected: no such LUN');
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(await xs.read(`${vif.backend}/state`), '1', 'a hung backend never leaves Initialising');
  // Lifting the hang lets it carry on.
  await ctl.call('backend.fault', { path: `/local/domain/0/backend/vif/${dom.domid}`, mode: 'none' });
  await waitFor(xs, `${vif.backend}/state`, is(2));
  await hv.call('destroy', dom.domid);
  await ctl.call('faults.clear', {});
});

test('injected backend fault close (set through the sim CLI): xenbus_dev_fatal on probe, Closing then Closed, reason in the error node', async () => {
  const dom = await createDomain(hv, xs);
  const vbdPath = `/local/domain/0/backend/vbd/${dom.domid}/51712`;
  const vifPrefix = `/local/domain/0/backend/vif/${dom.domid}`;
  let err = '';
  const sim = (...args: string[]) => simMain([...args, '--dir', host.dir], { out: () => undefined, err: (t) => void (err += t) });
  try {
    // A vif under a closing prefix: no probe keys, no hotplug, never InitWait; Closed at once (its frontend is idle).
    assert.equal(await sim('backend', 'close', vifPrefix), 0, err);
    const vif = await addDevice(xs, dom.domid, vifSpec(0, 'xenbr0'));
    await waitFor(xs, `${vif.backend}/state`, is(6));
    assert.equal(await xs.read(`/local/domain/0/error/backend/vif/${dom.domid}/0/error`), 'injected fault: backend closed');
    assert.equal(await xs.tryRead(`${vif.backend}/feature-sg`), undefined, 'no probe keys');
    assert.ok(!(await xs.tryRead(`${vif.backend}/hotplug-status`)), 'no hotplug script (the toolstack wrote an empty hotplug-status)');

    // A vbd whose frontend is mid-connect when the backend gives up: Closing (5) holds until the frontend lets go.
    // (Held first by a hang so the frontend state is in place before the probe.)
    await ctl.call('backend.fault', { path: vbdPath, mode: 'hang' });
    const vbd = await addDevice(xs, dom.domid, vbdSpec(51712, disk));
    await xs.write(`${vbd.frontend}/state`, '3');
    assert.equal(await sim('backend', 'close', vbdPath, '19 opening physical device'), 0, err);
    assert.deepEqual(
      (await ctl.call('status')).faults.backends.map((f) => [f.path, f.mode, f.message]).sort(),
      [[vbdPath, 'close', '19 opening physical device'], [vifPrefix, 'close', undefined]],
    );
    await xs.write(`${vbd.backend}/online`, '1'); // any change in the directory wakes the backend
    await waitFor(xs, `${vbd.backend}/state`, is(5));
    assert.equal(await xs.read(`/local/domain/0/error/backend/vbd/${dom.domid}/51712/error`), '19 opening physical device');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(await xs.read(`${vbd.backend}/state`), '5');
    await xs.write(`${vbd.frontend}/state`, '6');
    await waitFor(xs, `${vbd.backend}/state`, is(6));
    // Closed stays closed: the fault does not make the backend probe (and close) over and over.
    await xs.write(`${vbd.frontend}/state`, '1');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(await xs.read(`${vbd.backend}/state`), '6');
    assert.equal(await xs.tryRead(`${vbd.backend}/hotplug-status`), undefined);
  } finally {
    await hv.call('destroy', dom.domid);
    await ctl.call('faults.clear', {});
    for (const kind of ['vbd', 'vif']) await xs.rm(`/local/domain/0/error/backend/${kind}/${dom.domid}`).catch(() => undefined);
  }
});

test('the backend does not trust the frontend: garbage state is ignored, bad ring refs close the device', async () => {
  // No guest runs here: the test writes the frontend's keys itself, as a hostile guest could.
  const dom = await createDomain(hv, xs);
  const vbd = await addDevice(xs, dom.domid, vbdSpec(51712, disk));
  await waitFor(xs, `${vbd.backend}/state`, is(2));
  await xs.write(`${vbd.frontend}/state`, 'banana');
  await xs.write(`${vbd.frontend}/state`, '42');
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(await xs.read(`${vbd.backend}/state`), '2');
  await xs.write(`${vbd.frontend}/ring-ref`, '-1');
  await xs.write(`${vbd.frontend}/event-channel`, '9');
  await xs.write(`${vbd.frontend}/state`, '3');
  await waitFor(xs, `${vbd.backend}/state`, (v) => v === '5' || v === '6');
  assert.match(await xs.read(`/local/domain/0/error/backend/vbd/${dom.domid}/51712/error`), /ring-ref/);
  assert.equal(host.child.exitCode, null);
  await hv.call('destroy', dom.domid);
});

test('a backend directory the toolstack removes while the backend is mid-step is not brought back', async () => {
  const dom = await createDomain(hv, xs);
  await ctl.call('xenstored.latency', { ms: 20 });
  try {
    const vif = await addDevice(xs, dom.domid, vifSpec(7, 'xenbr0'));
    // With 20 ms a reply, the backend writes its dozen probe keys one by one: the directory goes after the first.
    await waitFor(xs, `${vif.backend}/feature-sg`, (v) => v === '1');
    await xs.rm(vif.backend);
    await until(async () => ((await ctl.call('status')).backends[vif.backend] === undefined ? true : undefined), 'the backend to let go of the device', 3000);
    assert.equal(await xs.tryRead(vif.backend), undefined, 'the removed backend directory stays removed');
  } finally {
    await ctl.call('xenstored.latency', { ms: 0 });
  }
  await hv.call('destroy', dom.domid);
});

test('backend directories named after Object.prototype members are no device type', async () => {
  const paths = ['constructor', '__proto__', 'toString'].map((t) => `/local/domain/0/backend/${t}/9/0`);
  for (const p of paths) await xs.write(`${p}/frontend`, '/local/domain/9/device/vbd/0');
  // A real device written after them is still found: the scan went past the odd directories.
  const dom = await createDomain(hv, xs);
  const vif = await addDevice(xs, dom.domid, vifSpec(3, 'xenbr0'));
  await waitFor(xs, `${vif.backend}/state`, is(2));
  const backends = (await ctl.call('status')).backends;
  for (const p of paths) assert.equal(backends[p], undefined, p);
  for (const t of ['constructor', '__proto__', 'toString']) await xs.rm(`/local/domain/0/backend/${t}`);
  await hv.call('destroy', dom.domid);
});
