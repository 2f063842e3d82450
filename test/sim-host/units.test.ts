// The sim host's pure pieces: CLI parsing, fault matching, path and state parsing, control frames.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCommand, formatStatus, main as simMain } from '../../src/sim/cli.js';
import { BackendFaults } from '../../src/sim/backends/faults.js';
import { parseBackendPath } from '../../src/sim/backends/device.js';
import { parseState, parseU32 } from '../../src/sim/backends/xenbus.js';
import { FrameReader, encodeFrame, ControlFrameError, MAX_FRAME } from '../../src/sim/control/framing.js';
import type { HostStatus } from '../../src/sim/control/protocol.js';

test('sim CLI words become control calls; bad words are usage errors', () => {
  assert.deepEqual(parseCommand(['guest', 'ignore-shutdown', '7', 'off']), { method: 'guest.fault', params: { fault: 'ignore-shutdown', on: false, domid: 7 } });
  assert.deepEqual(parseCommand(['guest', 'ignore-shutdown', 'all']), { method: 'guest.fault', params: { fault: 'ignore-shutdown', on: true } });
  assert.deepEqual(parseCommand(['guest', 'boot-delay', 'all', 'default']), { method: 'guest.fault', params: { fault: 'slow-boot', on: false } });
  assert.deepEqual(parseCommand(['guest', 'boot-delay', '3', '1500']), { method: 'guest.fault', params: { fault: 'slow-boot', on: true, delayMs: 1500, domid: 3 } });
  assert.deepEqual(parseCommand(['hypercall', 'fail', 'build', 'ENOMEM'], '1'), { method: 'hypercall.fault', params: { call: 'build', errno: 'ENOMEM', times: 1 } });
  assert.deepEqual(parseCommand(['backend', 'ok', '/local/domain/0/backend/vif']), { method: 'backend.fault', params: { path: '/local/domain/0/backend/vif', mode: 'none' } });
  assert.deepEqual(parseCommand(['dirty-rate', '4', '1000']), { method: 'domain.dirtyRate', params: { domid: 4, pagesPerSec: 1000 } });
  assert.deepEqual(parseCommand(['kill'], undefined, true), { method: 'host.kill', params: { hard: true } });
  for (const bad of [[], ['frobnicate'], ['status', 'extra'], ['guest', 'crash'], ['guest', 'crash', '-1'], ['backend', 'fail'], ['xenstored', 'latency', 'fast'], ['host', 'memory'], ['faults', 'purge']]) {
    assert.throws(() => parseCommand(bad), (e: unknown) => e instanceof Error && e.message.length > 0, JSON.stringify(bad));
  }
});

test('sim status text shows states and every kind of fault', () => {
  const st: HostStatus = {
    pid: 1, dir: '/d', uptimeMs: 1500, pcpus: 8, pageSize: 4096, totalPages: 262144, freePages: 131072, totalMib: 1024, freeMib: 512,
    domains: [{ domid: 3, handle: 'h', state: 'shutdown', shutdownReason: 1, totPages: 16384, maxPages: 16384, onlineVcpus: 1, cpuTimeNs: 2e9, dirtyRate: 300, guest: { phase: 'up', ignoreShutdown: true, frontends: {} } }],
    backends: { '/local/domain/0/backend/vbd/3/51712': { state: 4, hotplug: 'connected' } },
    faults: { backends: [{ path: '/local/domain/0/backend/vif', mode: 'hang' }], guests: [{ domid: '*', fault: 'slow-boot', delayMs: 900 }], xenstoredLatencyMs: 5, hypercalls: [{ call: 'unpause', errno: 'EBUSY' }] },
  };
  const text = formatStatus(st);
  assert.match(text, /1024 MiB total, 512 MiB free/);
  assert.match(text, /3 +shutdown\(1\) +16384 +16384 +1 +2\.00 +300 +up ignoring-shutdown/);
  assert.match(text, /state 4 \(Connected\) +hotplug connected/);
  for (const f of [/backend hang \/local\/domain\/0\/backend\/vif/, /guest all slow-boot 900 ms/, /hypercall unpause fails EBUSY always/, /xenstored latency 5 ms/]) assert.match(text, f);
});

test('backend faults match by path component, the longest prefix winning', () => {
  const f = new BackendFaults();
  f.set('/local/domain/0/backend/vbd', 'hang');
  f.set('/local/domain/0/backend/vbd/5/51712', 'fail', 'x');
  assert.equal(f.match('/local/domain/0/backend/vbd/5/51712')?.mode, 'fail');
  assert.equal(f.match('/local/domain/0/backend/vbd/5/51728')?.mode, 'hang');
  assert.equal(f.match('/local/domain/0/backend/vbdx/5/1'), undefined, 'not a component boundary');
  assert.equal(f.match('/local/domain/0/backend/vif/5/0'), undefined);
  f.set('/local/domain/0/backend/vbd', 'none');
  assert.equal(f.match('/local/domain/0/backend/vbd/5/51728'), undefined);
});

test('backend paths, xenbus states and numbers from xenstore are parsed strictly', () => {
  assert.deepEqual(parseBackendPath('/local/domain/0/backend/vbd/5/51712/state'), { type: 'vbd', domid: 5, devid: 51712, devicePath: '/local/domain/0/backend/vbd/5/51712' });
  assert.deepEqual(parseBackendPath('/local/domain/0/backend/vif/5'), { prefix: '/local/domain/0/backend/vif/5' });
  assert.equal(parseBackendPath('/local/domain/0/backend/vbd/x/51712'), undefined);
  assert.equal(parseBackendPath('/local/domain/1/backend/vbd/5/1'), undefined);
  assert.equal(parseState('4'), 4);
  for (const bad of [undefined, '', '9', '-1', '4x', 'Connected', '44']) assert.equal(parseState(bad), undefined, String(bad));
  assert.equal(parseU32('4294967295'), 4294967295);
  for (const bad of ['4294967296', '-1', '1e3', ' 1', '0x10']) assert.equal(parseU32(bad), undefined, bad);
});

test('control frames: split anywhere, undecodable bodies reported in place, oversized lengths refused', () => {
  const bytes = Buffer.concat([encodeFrame({ id: 1 }), Buffer.from([0, 0, 0, 2, 0x92, 1]), encodeFrame({ id: 2 })]);
  const r = new FrameReader();
  const out: unknown[] = [];
  for (const b of bytes) out.push(...r.push(Buffer.from([b])));
  assert.equal(out.length, 3);
  assert.deepEqual(out[0], { id: 1 });
  assert.ok(out[1] instanceof ControlFrameError);
  assert.deepEqual(out[2], { id: 2 });
  const big = Buffer.alloc(4);
  big.writeUInt32BE(MAX_FRAME + 1);
  assert.throws(() => new FrameReader().push(big), ControlFrameError);
});

test('sim --help lists every subcommand; no --dir is a usage error', async () => {
  let out = '';
  let err = '';
  const io = { out: (t: string) => void (out += t), err: (t: string) => void (err += t) };
  assert.equal(await simMain(['--help'], io), 0);
  for (const w of ['status', 'ignore-shutdown', 'crash', 'boot-delay', 'backend fail', 'backend hang', 'hypercall fail', 'xenstored latency', 'host memory', 'dirty-rate', 'faults clear', 'kill']) {
    assert.ok(out.includes(w), `help mentions ${w}`);
  }
  assert.equal(await simMain(['status'], io), 2);
  assert.match(err, /--dir DIR is required/);
});

test('a guest waiting to be introduced polls without piling up abort listeners, and stops cleanly', async () => {
  const { PvGuest } = await import('../../src/sim/guests/guest.js');
  const { pino } = await import('pino');
  const warnings: Error[] = [];
  const onWarning = (w: Error): void => void warnings.push(w);
  process.on('warning', onWarning);
  try {
    const guest = new PvGuest(5, {
      connectXenstore: () => Promise.reject(new Error('never introduced, never connects')),
      isIntroduced: () => false,
      shutdownFromGuest: () => undefined,
    }, { bootDelayMs: 0, shutdownDelayMs: 0, ignoreShutdown: false, dirtyRate: 0, log: pino({ level: 'silent' }) });
    guest.start();
    await new Promise((r) => setTimeout(r, 250)); // ~25 polls of 10 ms
    await guest.stop();
    await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
    assert.equal(guest.phase, 'stopped');
    assert.deepEqual(warnings.filter((w) => /listener/i.test(w.message)).map((w) => w.message), []);
  } finally {
    process.off('warning', onWarning);
  }
});
