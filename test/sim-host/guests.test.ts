// PV guests: they boot, advertise features, follow the balloon, answer control/shutdown; guest,
// hypercall and dirty-rate faults. Only the sim host's sockets are used.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { SimHostHandle } from '../support/simhost.js';
import { closeHostClients, openHostClients } from './host-clients.js';
import { SimControlClient, SimControlError } from '../../src/sim/control/client.js';
import type { XsClient } from '../../src/xenstore/client.js';
import type { DomainInfo } from '../../src/hypervisor/types.js';
import { HypervisorError } from '../../src/hypervisor/types.js';
import { HvClient } from './hvclient.js';
import { addDevice, connectXs, createDomain, until, vifSpec, waitFor, type TestDomain } from './toolstack.js';
import { connectSimHypervisor } from '../../src/hypervisor/sim.js';
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

let host: SimHostHandle;
let xs: XsClient;
let hv: HvClient;
let ctl: SimControlClient;

before(async () => ({ host, xs, hv, ctl } = await openHostClients({ bootDelayMs: 30 })));
after(() => closeHostClients({ host, xs, hv, ctl }));

const info = (domid: number) => hv.call<DomainInfo | null>('getDomainInfo', domid);

async function bootedGuest(): Promise<TestDomain> {
  const dom = await createDomain(hv, xs);
  await hv.call('unpause', dom.domid);
  await waitFor(xs, `${dom.dompath}/data/updated`, (v) => v === '1');
  return dom;
}

async function shutdownReasonAfter(dom: TestDomain, request: string): Promise<number> {
  await xs.write(`${dom.dompath}/control/shutdown`, request);
  const i = await until(async () => {
    const d = await info(dom.domid);
    return d?.shutdown ? d : undefined;
  }, `domain ${dom.domid} to shut down after '${request}'`);
  return i.shutdownReason;
}

test('a booted guest advertises what a Linux guest with an agent does', async () => {
  const dom = await bootedGuest();
  for (const f of ['feature-poweroff', 'feature-reboot', 'feature-suspend']) assert.equal(await xs.read(`${dom.dompath}/control/${f}`), '1', f);
  assert.match(await xs.read(`${dom.dompath}/data/os_name`), /Linux/);
  assert.equal(await xs.read(`${dom.dompath}/data/meminfo_total`), String(64 * 1024));
  const st = await ctl.call('status');
  assert.equal(st.domains.find((d) => d.domid === dom.domid)?.guest?.phase, 'up');
  await hv.call('destroy', dom.domid);
});

test('control/shutdown: each request is cleared and ends in its shutdown reason', async () => {
  const expected: Array<[string, number]> = [['poweroff', 0], ['reboot', 1], ['halt', 0], ['suspend', 2]];
  for (const [request, reason] of expected) {
    const dom = await bootedGuest();
    assert.equal(await shutdownReasonAfter(dom, request), reason, request);
    assert.equal(await xs.read(`${dom.dompath}/control/shutdown`), '', `${request} acknowledged`);
    await hv.call('destroy', dom.domid);
  }
});

test('suspend then resume (xc_domain_resume): the same guest answers again, without a boot delay', async () => {
  const dom = await bootedGuest();
  assert.equal(await shutdownReasonAfter(dom, 'suspend'), 2);
  // Booting would now take 5 s; a resumed guest does not boot.
  await ctl.call('guest.fault', { fault: 'slow-boot', delayMs: 5000 });
  const t0 = performance.now();
  await hv.call('resume', dom.domid);
  assert.equal((await info(dom.domid))?.shutdown, false);
  assert.equal(await shutdownReasonAfter(dom, 'poweroff'), 0);
  assert.ok(performance.now() - t0 < 2500, `resumed guest answered after ${(performance.now() - t0).toFixed(0)} ms`);
  await ctl.call('faults.clear', {});
  await hv.call('destroy', dom.domid);
});

test('a restored guest carries on at once (no boot delay) and its frontends reconnect to the new backends', async () => {
  const src = await bootedGuest();
  const backend = await connectSimHypervisor(host.hypervisorPath);
  const dir = mkdtempSync(join(tmpdir(), 'sim-restore-'));
  const image = join(dir, 'guest.stream');
  try {
    let fd = openSync(image, 'w');
    try {
      await backend.save(src.domid, fd, { live: false }, { suspend: () => xs.write(`${src.dompath}/control/shutdown`, 'suspend') });
    } finally {
      closeSync(fd);
    }
    await hv.call('destroy', src.domid);
    // Booting would now take 10 s; the restored guest must not boot.
    await ctl.call('guest.fault', { fault: 'slow-boot', delayMs: 10_000 });
    fd = openSync(image, 'r');
    let dst: TestDomain;
    try {
      dst = await createDomain(hv, xs, { restore: (domid, storePort, consolePort) => backend.restore(domid, fd, { storePort, consolePort }) });
    } finally {
      closeSync(fd);
    }
    // One device as the toolstack writes it for a new domain; one whose frontend node was left Closed:
    // the resumed frontend starts over at Initialising either way (xenbus_dev_resume).
    const fresh = await addDevice(xs, dst.domid, vifSpec(0, 'xenbr0'));
    const stale = vifSpec(1, 'xenbr0');
    stale.frontend = { ...stale.frontend, state: '6' };
    const left = await addDevice(xs, dst.domid, stale);
    const t0 = performance.now();
    await hv.call('unpause', dst.domid);
    for (const dev of [fresh, left]) {
      await waitFor(xs, `${dev.frontend}/state`, (v) => v === '4', 5000);
      await waitFor(xs, `${dev.backend}/state`, (v) => v === '4', 5000);
    }
    assert.equal(await xs.read(`${dst.dompath}/control/feature-suspend`), '1', 'the guest advertises again on its new domain');
    const took = performance.now() - t0;
    assert.ok(took < 5000, `restored guest connected its devices after ${took.toFixed(0)} ms`);
    assert.equal(await shutdownReasonAfter(dst, 'poweroff'), 0);
    await hv.call('destroy', dst.domid);
  } finally {
    await ctl.call('faults.clear', {});
    await backend.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a guest ignores an unknown request but still acknowledges it', async () => {
  const dom = await bootedGuest();
  for (const request of ['self-destruct', 'constructor', '__proto__', 'toString']) {
    await xs.write(`${dom.dompath}/control/shutdown`, request);
    await waitFor(xs, `${dom.dompath}/control/shutdown`, (v) => v === '');
  }
  await new Promise((r) => setTimeout(r, 80));
  assert.equal((await info(dom.domid))?.shutdown, false);
  // Still the same guest: a known request after the unknown ones is obeyed.
  assert.equal(await shutdownReasonAfter(dom, 'reboot'), 1);
  await hv.call('destroy', dom.domid);
});

test('guest faults: ignore shutdown, crash now, boot slowly', async () => {
  const dom = await bootedGuest();
  await ctl.call('guest.fault', { fault: 'ignore-shutdown', domid: dom.domid });
  await xs.write(`${dom.dompath}/control/shutdown`, 'poweroff');
  await new Promise((r) => setTimeout(r, 150));
  assert.equal((await info(dom.domid))?.shutdown, false, 'still running');
  assert.equal(await xs.read(`${dom.dompath}/control/shutdown`), 'poweroff', 'request left unanswered');
  // The toolstack gives up waiting and the guest crashes instead.
  await ctl.call('guest.fault', { fault: 'crash', domid: dom.domid });
  const crashed = await until(async () => ((await info(dom.domid))?.shutdown ? await info(dom.domid) : undefined), 'crash');
  assert.equal(crashed!.shutdownReason, 3);
  await assert.rejects(ctl.call('guest.fault', { fault: 'crash', domid: dom.domid }), (e: unknown) => e instanceof SimControlError && e.code === 'ESRCH');
  await hv.call('destroy', dom.domid);

  await ctl.call('guest.fault', { fault: 'slow-boot', delayMs: 400 });
  const slow = await createDomain(hv, xs);
  const t0 = performance.now();
  await hv.call('unpause', slow.domid);
  await waitFor(xs, `${slow.dompath}/control/feature-poweroff`, (v) => v === '1');
  const took = performance.now() - t0;
  assert.ok(took >= 380, `slow guest came up after ${took.toFixed(0)} ms`);
  await ctl.call('faults.clear', {});
  await hv.call('destroy', slow.domid);
});

test('balloon: the guest follows memory/target and tot_pages follow it', async () => {
  const dom = await bootedGuest();
  const before = (await info(dom.domid))!.totPages;
  assert.ok(before >= 64 * 256, `tot_pages ${before}`);
  await xs.write(`${dom.dompath}/memory/target`, String(32 * 1024));
  await waitFor(xs, `${dom.dompath}/data/meminfo_total`, (v) => v === String(32 * 1024));
  assert.equal((await info(dom.domid))!.totPages, 32 * 256);
  // Past static-max the balloon stops at static-max; garbage targets are ignored.
  await xs.write(`${dom.dompath}/memory/target`, String(1024 * 1024));
  await waitFor(xs, `${dom.dompath}/data/meminfo_total`, (v) => v === String(64 * 1024));
  await xs.write(`${dom.dompath}/memory/target`, 'lots');
  await new Promise((r) => setTimeout(r, 80));
  assert.equal(await xs.read(`${dom.dompath}/data/meminfo_total`), String(64 * 1024));
  await hv.call('destroy', dom.domid);
});

test('a shut-down domain paused and unpaused again runs no guest (no vcpu runs after SCHEDOP_shutdown)', async () => {
  const dom = await bootedGuest();
  assert.equal(await shutdownReasonAfter(dom, 'poweroff'), 0);
  await xs.write(`${dom.dompath}/data/updated`, '0');
  await hv.call('pause', dom.domid);
  await hv.call('unpause', dom.domid);
  await new Promise((r) => setTimeout(r, 150)); // a booting guest (30 ms boot delay) would have written by now
  assert.equal(await xs.read(`${dom.dompath}/data/updated`), '0', 'no guest agent came back');
  assert.equal((await ctl.call('status')).domains.find((d) => d.domid === dom.domid)?.guest?.phase, 'stopped');
  await hv.call('destroy', dom.domid);
});

test('a paused guest does not answer until unpaused', async () => {
  const dom = await bootedGuest();
  await hv.call('pause', dom.domid);
  await xs.write(`${dom.dompath}/control/shutdown`, 'poweroff');
  await new Promise((r) => setTimeout(r, 120));
  assert.equal((await info(dom.domid))?.shutdown, false);
  await hv.call('unpause', dom.domid);
  await until(async () => ((await info(dom.domid))?.shutdown ? true : undefined), 'shutdown after unpause');
  await hv.call('destroy', dom.domid);
});

test('hypercall faults (once and always), dirty rate, and domains outliving their toolstack connection', async () => {
  await ctl.call('hypercall.fault', { call: 'createDomain', errno: 'ENOMEM', times: 1 });
  await assert.rejects(createDomain(hv, xs), (e: unknown) => e instanceof HypervisorError && e.errno === 'ENOMEM');
  const dom = await createDomain(hv, xs);
  await ctl.call('hypercall.fault', { call: 'pause', errno: 'EBUSY' });
  for (let i = 0; i < 2; i++) await assert.rejects(hv.call('pause', dom.domid), (e: unknown) => e instanceof HypervisorError && e.errno === 'EBUSY');
  assert.deepEqual((await ctl.call('status')).faults.hypercalls, [{ call: 'pause', errno: 'EBUSY' }]);
  await ctl.call('faults.clear', {});
  // A host shrunk to what it already holds has no memory for another guest.
  const hostMib = (await ctl.call('status')).totalMib;
  await ctl.call('host.memory', { mib: 1024 });
  await assert.rejects(createDomain(hv, xs), (e: unknown) => e instanceof HypervisorError && e.errno === 'ENOMEM');
  await ctl.call('host.memory', { mib: hostMib });
  // Created paused (count 1): pause makes 2, so two unpauses start it.
  await hv.call('pause', dom.domid);
  await hv.call('unpause', dom.domid);
  assert.equal((await info(dom.domid))?.paused, true);
  await hv.call('unpause', dom.domid);
  await waitFor(xs, `${dom.dompath}/data/updated`, (v) => v === '1');

  // Dirtying: log-dirty sees the pages the guest writes at the rate set.
  await hv.call('shadowControl', dom.domid, 'enable_logdirty');
  await hv.call('shadowControl', dom.domid, 'clean');
  await ctl.call('domain.dirtyRate', { domid: dom.domid, pagesPerSec: 2000 });
  assert.equal((await ctl.call('status')).domains.find((d) => d.domid === dom.domid)?.dirtyRate, 2000);
  await new Promise((r) => setTimeout(r, 200));
  const peek = await hv.call<{ dirtyCount: number }>('shadowControl', dom.domid, 'peek');
  assert.ok(peek.dirtyCount > 50, `dirty pages after 200 ms at 2000/s: ${peek.dirtyCount}`);

  // The toolstack goes away (as a daemon that dies); the domain and its guest stay.
  hv.close();
  await xs.close();
  xs = await connectXs(host.xenstoredPath);
  hv = await HvClient.connect(host.hypervisorPath);
  assert.equal((await info(dom.domid))?.running, true);
  assert.equal(await shutdownReasonAfter(dom, 'reboot'), 1);
  await hv.call('destroy', dom.domid);
});
