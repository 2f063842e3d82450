// The pure parts under the lifecycle: disk numbering, spec rules, the crash-safe store, the on_* decision.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkSpec, vbdDevid, type VmSpec } from '../../src/vm/spec.js';
import { VmStore } from '../../src/vm/store.js';
import { isMemoryBacked } from '../../src/vm/atomic-file.js';
import { pendingAction } from '../../src/ops/domain-action.js';
import type { DomainInfo } from '../../src/hypervisor/types.js';
import type { DomainRecord } from '../../src/vm/store.js';

test('vbdDevid numbers disks as Linux/libxl do', () => {
  assert.equal(vbdDevid('xvda'), 51712);
  assert.equal(vbdDevid('xvdb'), 51728);
  assert.equal(vbdDevid('xvdp'), 51952);
  assert.equal(vbdDevid('xvdq'), 268439552);
  assert.equal(vbdDevid('xvdaa'), (1 << 28) | (26 << 8));
  assert.equal(vbdDevid('sda'), 2048);
  assert.equal(vbdDevid('hda'), 768);
  assert.equal(vbdDevid('hdc'), 5632);
  assert.equal(vbdDevid('hde'), undefined);
  assert.equal(vbdDevid('vda'), undefined);
});

const spec = (over: Partial<VmSpec> = {}): VmSpec => ({
  id: '0b5f0f4e-3c7a-4e6e-9a55-7d1f6b1a2c3d',
  name: 'x',
  type: 'pv',
  memory: { max_mib: 64 },
  vcpus: { max: 2 },
  boot: { kernel: '/k' },
  ...over,
});

test('checkSpec names each cross-field problem', () => {
  assert.deepEqual(checkSpec(spec()), []);
  const paths = (s: VmSpec) => checkSpec(s).map((p) => p.path);
  assert.deepEqual(paths(spec({ memory: { max_mib: 64, target_mib: 65 } })), ['/vm/memory/target_mib']);
  assert.deepEqual(paths(spec({ vcpus: { max: 2, online: 3 } })), ['/vm/vcpus/online']);
  assert.deepEqual(paths(spec({ vbds: [{ device: 'xvda', path: '/a' }, { device: 'xvda', path: '/b' }] })), ['/vm/vbds/1/device']);
  assert.deepEqual(paths(spec({ vifs: [{ index: 1 }, {}, {}] })), ['/vm/vifs/1/index']);
  assert.deepEqual(paths(spec({ xenstore_data: { 'vm-data/ok': '1', '../up': 'x' } })), ['/vm/xenstore_data/../up']);
});

for (const synchronous of [false, true]) {
test(`the store survives a reopen and ignores a temp file a crash left (${synchronous ? 'synchronous' : 'asynchronous'} writes)`, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmstore-'));
  try {
    const a = await VmStore.open(dir, { synchronous });
    assert.equal(a.synchronousWrites, synchronous);
    await a.putSpec(spec());
    await a.putJournal({ vm: spec().id, op: 'start', taskId: 't', started: 'now', args: { paused: true } });
    writeFileSync(join(dir, 'vms', '.tmp.1.1'), '{"torn');
    const b = await VmStore.open(dir, { synchronous: !synchronous });
    assert.deepEqual(b.getSpec(spec().id), spec());
    assert.equal(b.getJournal(spec().id)?.args?.paused, true);
    assert.deepEqual(readdirSync(join(dir, 'vms')), [`${spec().id}.json`]);
    await b.removeJournal(spec().id);
    await b.removeSpec(spec().id);
    await b.removeSpec(spec().id); // already gone: no error
    const c = await VmStore.open(dir);
    assert.equal(c.listSpecs().length, 0);
    assert.equal(c.listJournal().length, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
}

test('a state dir in memory is written synchronously, one on disk is not', { skip: !existsSync('/dev/shm') && 'no /dev/shm' }, async () => {
  assert.equal(isMemoryBacked('/dev/shm'), true);
  assert.equal(isMemoryBacked('/proc/self'), false);
  assert.equal(isMemoryBacked('/does/not/exist'), false);
  const dir = mkdtempSync(join('/dev/shm', 'vmstore-'));
  try {
    assert.equal((await VmStore.open(dir)).synchronousWrites, true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pendingAction maps shutdown reasons to the on_* of the spec the domain was built with', () => {
  const built = spec({ on_crash: 'preserve', on_poweroff: 'restart' });
  const rec: DomainRecord = { vm: built.id, domid: 5, builtWith: built, storePort: 1, consolePort: 2, storeMfn: '1', consoleMfn: '2', startedAt: 'x', devices: [] };
  const info = (over: Partial<DomainInfo>): DomainInfo => ({
    domid: 5, flags: 0, dying: false, shutdown: false, shutdownReason: 0, paused: false, running: true, blocked: false, hvm: false,
    totPages: 0, maxPages: 0, cpuTimeNs: 0, onlineVcpus: 1, maxVcpuId: 0, handle: built.id, ...over,
  });
  const now = (i: DomainInfo | undefined, r: DomainRecord = rec) => ({ spec: built, rec: r, info: i, power: 'running' as const });
  assert.equal(pendingAction(now(info({}))), undefined);
  assert.deepEqual(pendingAction(now(info({ shutdown: true, shutdownReason: 0 }))), { action: 'restart', reason: 'poweroff' });
  assert.deepEqual(pendingAction(now(info({ shutdown: true, shutdownReason: 1 }))), { action: 'restart', reason: 'reboot' });
  assert.deepEqual(pendingAction(now(info({ shutdown: true, shutdownReason: 3 }))), { action: 'preserve', reason: 'crash' });
  assert.equal(pendingAction(now(info({ shutdown: true, shutdownReason: 2 }))), undefined, 'suspend is not a reason to act');
  assert.deepEqual(pendingAction(now(undefined)), { action: 'destroy', reason: 'vanished' });
  assert.deepEqual(pendingAction(now(info({ handle: '00000000-0000-0000-0000-000000000000' }))), { action: 'destroy', reason: 'vanished' });
  assert.equal(pendingAction(now(info({ shutdown: true, shutdownReason: 3 }), { ...rec, preserved: true })), undefined);
});
