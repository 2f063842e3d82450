// XEN_DOMINF_blocked through the hypervisor socket: an idle booted guest is blocked ("-b----" in `xl list`), one that
// boots or dirties memory runs ("r-----"); paused and shut down domains show those flags instead. Its cpu time
// grows far slower while blocked (timer ticks only) than while it computes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { SimHostHandle } from '../support/simhost.js';
import { closeHostClients, openHostClients } from './host-clients.js';
import type { SimControlClient } from '../../src/sim/control/client.js';
import type { XsClient } from '../../src/xenstore/client.js';
import { DomInfoFlag, type DomainInfo } from '../../src/hypervisor/types.js';
import type { HvClient } from './hvclient.js';
import { createDomain, until } from './toolstack.js';

let host: SimHostHandle;
let xs: XsClient;
let hv: HvClient;
let ctl: SimControlClient;

before(async () => ({ host, xs, hv, ctl } = await openHostClients({ bootDelayMs: 30 })));
after(() => closeHostClients({ host, xs, hv, ctl }));

/** The state column of `xl list` for a flags word: r b p s c d. */
function xlState(flags: number): string {
  const shutdown = (flags & DomInfoFlag.shutdown) !== 0;
  const reason = (flags >> 16) & 0xff;
  return [
    flags & DomInfoFlag.running ? 'r' : '-',
    flags & DomInfoFlag.blocked ? 'b' : '-',
    flags & DomInfoFlag.paused ? 'p' : '-',
    shutdown && reason !== 3 ? 's' : '-',
    shutdown && reason === 3 ? 'c' : '-',
    flags & DomInfoFlag.dying ? 'd' : '-',
  ].join('');
}

async function infoOf(domid: number): Promise<DomainInfo> {
  const list = await hv.call<DomainInfo[]>('getDomainInfoList', 0, 1024);
  const info = list.find((i) => i.domid === domid);
  assert.ok(info, `domain ${domid} in getDomainInfoList`);
  return info;
}

const stateOf = async (domid: number): Promise<string> => xlState((await infoOf(domid)).flags);
const phaseOf = async (domid: number): Promise<string | undefined> => (await ctl.call('status')).domains.find((d) => d.domid === domid)?.guest?.phase;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('booting: running; booted and idle: blocked (no cpu time); dirtying memory: running; paused and shut down as before', async () => {
  const dom = await createDomain(hv, xs);
  assert.equal(await stateOf(dom.domid), '--p---', 'created paused');
  await ctl.call('guest.fault', { fault: 'slow-boot', domid: dom.domid, delayMs: 400 });
  await hv.call('unpause', dom.domid);
  assert.equal(await phaseOf(dom.domid), 'booting');
  let info = await infoOf(dom.domid);
  assert.equal(xlState(info.flags), 'r-----', 'booting');
  assert.deepEqual([info.running, info.blocked], [true, false]);

  await until(async () => ((await phaseOf(dom.domid)) === 'up' ? true : undefined), 'the guest to be up');
  info = await infoOf(dom.domid);
  assert.equal(xlState(info.flags), '-b----', 'booted and idle');
  assert.deepEqual([info.running, info.blocked, info.paused], [false, true, false]);
  const idleCpu = info.cpuTimeNs;
  const t0 = performance.now();
  await sleep(100);
  const idleGrowth = (await infoOf(dom.domid)).cpuTimeNs - idleCpu;
  const wallNs = (performance.now() - t0) * 1e6;
  assert.ok(idleGrowth > 0, 'an idle guest still gets some cpu time');
  assert.ok(idleGrowth < wallNs * 0.05, `far less than wall time while blocked: ${idleGrowth} of ${wallNs} ns`);

  // A workload that writes memory keeps a vcpu busy.
  await ctl.call('domain.dirtyRate', { domid: dom.domid, pagesPerSec: 500 });
  assert.equal(await stateOf(dom.domid), 'r-----', 'dirtying memory');
  await sleep(50);
  assert.ok((await infoOf(dom.domid)).cpuTimeNs >= idleCpu + 30e6, 'cpu time while computing');
  await ctl.call('domain.dirtyRate', { domid: dom.domid, pagesPerSec: 0 });
  assert.equal(await stateOf(dom.domid), '-b----', 'idle again');

  await hv.call('pause', dom.domid);
  assert.equal(await stateOf(dom.domid), '--p---', 'paused');
  await hv.call('unpause', dom.domid);
  assert.equal(await stateOf(dom.domid), '-b----', 'unpaused, still idle');

  await xs.write(`${dom.dompath}/control/shutdown`, 'poweroff');
  await until(async () => ((await infoOf(dom.domid)).shutdown ? true : undefined), 'the shutdown');
  assert.equal(await stateOf(dom.domid), '---s--', 'shut down');
  await hv.call('destroy', dom.domid);
  // dom0 (no guest model) runs, as before.
  assert.equal(await stateOf(0), 'r-----');
});

test('a busy guest is not blocked; a crashed one shows c, not b', async () => {
  const dom = await createDomain(hv, xs);
  await hv.call('unpause', dom.domid);
  await until(async () => ((await phaseOf(dom.domid)) === 'up' ? true : undefined), 'the guest to be up');
  await ctl.call('domain.dirtyRate', { domid: dom.domid, pagesPerSec: 100 });
  assert.equal(await stateOf(dom.domid), 'r-----');
  await ctl.call('guest.fault', { fault: 'crash', domid: dom.domid });
  await until(async () => ((await infoOf(dom.domid)).shutdown ? true : undefined), 'the crash');
  assert.equal(await stateOf(dom.domid), '----c-');
  await hv.call('destroy', dom.domid);
});
