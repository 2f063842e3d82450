// Domains come and go: a destroyed domain leaves no guest, backend device, socket or timer behind in
// the sim host. The host runs in this process so that its handles can be counted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { SimHost } from '../../src/sim/host.js';
import { SimControlClient } from '../../src/sim/control/client.js';
import { HvClient } from './hvclient.js';
import { addDevice, connectXs, createDomain, vifSpec, waitFor } from './toolstack.js';

test('30 domains booted with a device and destroyed leave no guests, devices, sockets or timers', { timeout: 30_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sim-leaks-'));
  const host = await SimHost.start({ dir, log: pino({ level: 'silent' }), bootDelayMs: 0, destroyDelayMs: 1 });
  const xs = await connectXs(join(dir, 'xenstored.sock'));
  const hv = await HvClient.connect(join(dir, 'hypervisor.sock'));
  const ctl = await SimControlClient.connect(join(dir, 'control.sock'));
  // Sockets, servers and timers alike (getActiveResourcesInfo lists each Timeout too).
  const handles = (): number => process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap').length;
  const lifecycle = async (): Promise<void> => {
    const dom = await createDomain(hv, xs);
    const vif = await addDevice(xs, dom.domid, vifSpec(0, 'xenbr0'));
    await hv.call('unpause', dom.domid);
    await waitFor(xs, `${vif.frontend}/state`, (v) => v === '4');
    await hv.call('destroy', dom.domid);
    // The toolstack's part: forget the domain and remove its trees.
    await xs.releaseDomain(dom.domid).catch(() => undefined);
    await xs.rm(`/local/domain/0/backend/vif/${dom.domid}`);
    await xs.rm(dom.dompath);
  };
  try {
    await lifecycle(); // the first one opens whatever stays open for good
    await new Promise((r) => setTimeout(r, 100));
    const before = handles();
    const xsBefore = (await ctl.call('status')).xenstored as { connections: number; watches: number };
    for (let i = 0; i < 30; i++) await lifecycle();
    await new Promise((r) => setTimeout(r, 200));
    const st = await ctl.call('status');
    assert.deepEqual(Object.keys(st.backends), [], 'backend devices let go');
    assert.deepEqual(st.domains.filter((d) => d.domid !== 0).map((d) => d.domid), [], 'domains gone');
    assert.deepEqual(st.domains.filter((d) => d.guest !== undefined).map((d) => d.domid), [], 'no guests left');
    const xsAfter = st.xenstored as { connections: number; watches: number };
    assert.ok(xsAfter.connections <= xsBefore.connections, `xenstored connections ${xsBefore.connections} → ${xsAfter.connections}`);
    assert.ok(xsAfter.watches <= xsBefore.watches, `xenstored watches ${xsBefore.watches} → ${xsAfter.watches}`);
    assert.ok(handles() <= before, `resources ${before} before, ${handles()} after 30 domains: ${process.getActiveResourcesInfo().join(' ')}`);
  } finally {
    await ctl.close();
    hv.close();
    await xs.close();
    await host.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
