// VM lifecycle on a sim host, daemon and host in separate processes: start → stat → shutdown (clean and hard),
// reboot, pause/unpause, set_vcpus/set_memory, a guest that ignores shutdown, a guest crash with each on_crash,
// a guest that powers off / reboots by itself. After each, the xenstore tree and the domain list are as before.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { addVm, assertNoLeak, op, opOk, power, snapshot, startWorld, until, settledSnapshot, type World } from './helpers.js';

describe('VM lifecycle on the sim', { timeout: 120_000 }, () => {
  let w: World;
  let baseline: Awaited<ReturnType<typeof snapshot>>;

  before(async () => {
    w = await startWorld();
    // One start/shutdown first: it creates the dom0 backend parents that stay (as on a real host).
    const id = await addVm(w.api, { vbds: [{ device: 'xvda', path: w.disk }], vifs: [{}] });
    await opOk(w.api, 'VM.start', { id });
    await opOk(w.api, 'VM.shutdown', { id, mode: 'hard' });
    baseline = await settledSnapshot(w);
  });
  after(async () => {
    await w?.close();
  });

  const nothingLeaked = () => assertNoLeak(w, baseline);

  test("a backend's recorded error about a running domain's device goes with the domain", async () => {
    const id = await addVm(w.api, { vbds: [{ device: 'xvda', path: w.disk }] });
    await opOk(w.api, 'VM.start', { id });
    const d = (await w.api.call('VM.stat', { id })).state.domid as number;
    // As blkback's xenbus_dev_fatal writes it (e.g. a frontend that gave bad ring references).
    const node = `/local/domain/0/error/backend/vbd/${d}/51712/error`;
    await w.xs.write(node, 'mapping in-use ring failed');
    await opOk(w.api, 'VM.shutdown', { id, mode: 'hard' });
    assert.equal(await w.xs.tryRead(`/local/domain/0/error/backend/vbd/${d}`), undefined);
    // The empty parents stay, as backend/<kind> does on a real host; they are not this domain's.
    assert.deepEqual(await w.xs.directory('/local/domain/0/error/backend/vbd'), []);
    await w.xs.rm('/local/domain/0/error');
    await nothingLeaked();
  });

  test('start writes the records a real toolstack writes, clean shutdown removes them all', async () => {
    const id = await addVm(w.api, { name: 'tree', vcpus: { max: 2, online: 1 }, vbds: [{ device: 'xvda', path: w.disk }], vifs: [{}], xenstore_data: { 'vm-data/k': 'v' } });
    const t = await opOk(w.api, 'VM.start', { id });
    assert.ok(t.subtasks.some((s) => s.name === 'VBD_plug:xvda'));
    const stat = await w.api.call('VM.stat', { id });
    assert.equal(stat.state.power_state, 'running');
    const d = stat.state.domid as number;
    const xs = w.xs;
    assert.equal(await xs.read(`/local/domain/${d}/vm`), `/vm/${id}`);
    assert.equal(await xs.read(`/local/domain/${d}/name`), 'tree');
    assert.equal(await xs.read(`/local/domain/${d}/domid`), String(d));
    assert.equal(await xs.read(`/local/domain/${d}/memory/static-max`), String(64 * 1024));
    assert.equal(await xs.read(`/local/domain/${d}/memory/target`), String(64 * 1024));
    assert.equal(await xs.read(`/local/domain/${d}/cpu/0/availability`), 'online');
    assert.equal(await xs.read(`/local/domain/${d}/cpu/1/availability`), 'offline');
    assert.equal(await xs.read(`/local/domain/${d}/vm-data/k`), 'v');
    assert.equal(await xs.read(`/vm/${id}/uuid`), id);
    const perms = async (p: string) => (await xs.getPerms(p)).map((x) => `${x.perm}${x.id}`).join(',');
    assert.equal(await perms(`/local/domain/${d}`), `n0,r${d}`);
    assert.equal(await perms(`/vm/${id}`), `n0,r${d}`);
    assert.equal(await perms(`/local/domain/${d}/control/shutdown`), `n${d}`);
    assert.equal(await perms(`/local/domain/${d}/data`), `n${d}`);
    assert.equal(await perms(`/local/domain/${d}/console/backend-id`), `n${d},r0`);
    assert.equal(await perms(`/local/domain/${d}/store/port`), `n0,r${d}`);
    assert.equal(await perms(`/local/domain/${d}/device/vbd/51712`), `n${d},r0`);
    assert.equal(await perms(`/local/domain/0/backend/vbd/${d}/51712`), `n0,r${d}`);
    assert.equal(await perms(`/local/domain/0/backend/vbd/${d}`), 'n0');
    assert.equal(await perms(`/local/domain/${d}/device/vif/0/mtu`), `n0,r${d}`);
    assert.equal(await xs.isDomainIntroduced(d), true);
    assert.equal(await xs.read(`/local/domain/0/backend/vbd/${d}/51712/hotplug-status`), 'connected');
    // The guest boots once unpaused and connects its frontends.
    await until(async () => (await xs.tryRead(`/local/domain/${d}/device/vbd/51712/state`)) === '4', 10_000, 'vbd frontend Connected');

    const s = await opOk(w.api, 'VM.shutdown', { id, timeout_s: 10 });
    assert.ok(s.subtasks.some((x) => x.name === 'VM_wait_shutdown'));
    assert.equal(await power(w.api, id), 'halted');
    await nothingLeaked();
  });

  test('start paused, unpause, pause, hard shutdown of a paused VM', async () => {
    const id = await addVm(w.api);
    await opOk(w.api, 'VM.start', { id, paused: true });
    assert.equal(await power(w.api, id), 'paused');
    await opOk(w.api, 'VM.unpause', { id });
    assert.equal(await power(w.api, id), 'running');
    await opOk(w.api, 'VM.pause', { id });
    assert.equal(await power(w.api, id), 'paused');
    const clean = await op(w.api, 'VM.shutdown', { id });
    assert.equal(clean.state, 'failed');
    assert.equal(clean.error?.data?.name, 'BAD_POWER_STATE');
    assert.deepEqual(clean.error?.data?.expected, ['running']);
    assert.equal(clean.error?.data?.actual, 'paused');
    await opOk(w.api, 'VM.shutdown', { id, mode: 'hard' });
    assert.equal(await power(w.api, id), 'halted');
    await nothingLeaked();
  });

  test('set_vcpus and set_memory write the guest-visible nodes; limits are enforced', async () => {
    const id = await addVm(w.api, { vcpus: { max: 4 }, memory: { max_mib: 128, target_mib: 96 } });
    await opOk(w.api, 'VM.start', { id });
    const d = (await w.api.call('VM.stat', { id })).state.domid as number;
    assert.equal(await w.xs.read(`/local/domain/${d}/memory/target`), String(96 * 1024));
    await opOk(w.api, 'VM.set_vcpus', { id, online: 2 });
    assert.deepEqual(
      await Promise.all([0, 1, 2, 3].map((i) => w.xs.read(`/local/domain/${d}/cpu/${i}/availability`))),
      ['online', 'online', 'offline', 'offline'],
    );
    await opOk(w.api, 'VM.set_memory', { id, target_mib: 100 });
    assert.equal(await w.xs.read(`/local/domain/${d}/memory/target`), String(100 * 1024));
    const tooMany = await op(w.api, 'VM.set_vcpus', { id, online: 5 });
    assert.equal(tooMany.error?.data?.name, 'NOT_SUPPORTED');
    const tooMuch = await op(w.api, 'VM.set_memory', { id, target_mib: 129 });
    assert.equal(tooMuch.error?.data?.name, 'NOT_SUPPORTED');
    await opOk(w.api, 'VM.shutdown', { id, mode: 'hard' });
    await nothingLeaked();
  });

  test('clean and hard reboot give a new domain', async () => {
    const id = await addVm(w.api, { vifs: [{}] });
    await opOk(w.api, 'VM.start', { id });
    const d1 = (await w.api.call('VM.stat', { id })).state.domid;
    await opOk(w.api, 'VM.reboot', { id, timeout_s: 10 });
    const d2 = (await w.api.call('VM.stat', { id })).state.domid;
    assert.notEqual(d2, d1);
    assert.equal(await power(w.api, id), 'running');
    await opOk(w.api, 'VM.reboot', { id, mode: 'hard' });
    const d3 = (await w.api.call('VM.stat', { id })).state.domid;
    assert.notEqual(d3, d2);
    assert.equal(await w.xs.tryRead(`/local/domain/${d1}`), undefined);
    await opOk(w.api, 'VM.shutdown', { id, mode: 'hard' });
    await nothingLeaked();
  });

  test('a guest that ignores shutdown: TIMEOUT leaves it running; hard shutdown then works', async () => {
    const id = await addVm(w.api);
    await opOk(w.api, 'VM.start', { id });
    const d = (await w.api.call('VM.stat', { id })).state.domid as number;
    await w.control.call('guest.fault', { fault: 'ignore-shutdown', domid: d, on: true });
    const t0 = Date.now();
    const t = await op(w.api, 'VM.shutdown', { id, timeout_s: 0.5 });
    assert.equal(t.state, 'failed');
    assert.equal(t.error?.data?.name, 'TIMEOUT');
    assert.ok(Date.now() - t0 < 5000);
    assert.equal(await power(w.api, id), 'running');
    // The request was withdrawn by the undo.
    assert.equal(await w.xs.read(`/local/domain/${d}/control/shutdown`), '');
    await opOk(w.api, 'VM.shutdown', { id, mode: 'hard' });
    await nothingLeaked();
  });

  test('force: a clean shutdown that times out falls back to hard', async () => {
    const id = await addVm(w.api, { vifs: [{}] });
    await opOk(w.api, 'VM.start', { id });
    const d = (await w.api.call('VM.stat', { id })).state.domid as number;
    await w.control.call('guest.fault', { fault: 'ignore-shutdown', domid: d, on: true });
    const t = await opOk(w.api, 'VM.shutdown', { id, timeout_s: 0.3, force: true });
    assert.ok(t.subtasks.some((s) => s.name === 'VM_wait_shutdown' && s.state === 'completed'));
    assert.equal(await power(w.api, id), 'halted');
    await nothingLeaked();
  });

  for (const action of ['destroy', 'restart', 'preserve'] as const) {
    test(`a guest crash with on_crash=${action}`, async () => {
      const id = await addVm(w.api, { on_crash: action });
      await opOk(w.api, 'VM.start', { id });
      const d = (await w.api.call('VM.stat', { id })).state.domid as number;
      await until(async () => (await w.control.call('status', {})).domains.some((x) => x.domid === d && x.guest?.phase === 'up'), 10_000, 'guest up');
      await w.control.call('guest.fault', { fault: 'crash', domid: d });
      if (action === 'destroy') {
        await until(async () => (await power(w.api, id)) === 'halted', 10_000, 'halted after crash');
      } else if (action === 'restart') {
        await until(async () => {
          const s = await w.api.call('VM.stat', { id });
          return s.state.power_state === 'running' && s.state.domid !== d;
        }, 10_000, 'restarted after crash');
        await opOk(w.api, 'VM.shutdown', { id, mode: 'hard' });
      } else {
        await until(async () => (await w.api.call('TASK.list')).tasks.some((t: { method: string; vm?: string; state: string }) => t.method === 'VM.check_state' && t.vm === id && t.state === 'completed'), 10_000, 'check ran');
        const s = await w.api.call('VM.stat', { id });
        assert.equal(s.state.power_state, 'paused');
        assert.equal(s.state.domid, d);
        assert.notEqual(await w.xs.tryRead(`/local/domain/${d}/name`), undefined, 'preserved domain keeps its nodes');
        await opOk(w.api, 'VM.shutdown', { id, mode: 'hard' });
      }
      assert.equal(await power(w.api, id), 'halted');
      await nothingLeaked();
    });
  }

  test('a guest that powers off by itself is destroyed (on_poweroff default)', async () => {
    const id = await addVm(w.api);
    await opOk(w.api, 'VM.start', { id });
    const d = (await w.api.call('VM.stat', { id })).state.domid as number;
    await until(async () => (await w.control.call('status', {})).domains.some((x) => x.domid === d && x.guest?.phase === 'up'), 10_000, 'guest up');
    // As if the guest's admin ran poweroff: the guest itself acts on its control node.
    await w.xs.write(`/local/domain/${d}/control/shutdown`, 'poweroff');
    await until(async () => (await power(w.api, id)) === 'halted', 10_000, 'halted after poweroff');
    await nothingLeaked();
  });

  test('a guest that reboots by itself comes back (on_reboot default restart)', async () => {
    const id = await addVm(w.api);
    await opOk(w.api, 'VM.start', { id });
    const d = (await w.api.call('VM.stat', { id })).state.domid as number;
    await until(async () => (await w.control.call('status', {})).domains.some((x) => x.domid === d && x.guest?.phase === 'up'), 10_000, 'guest up');
    await w.xs.write(`/local/domain/${d}/control/shutdown`, 'reboot');
    await until(async () => {
      const s = await w.api.call('VM.stat', { id });
      return s.state.power_state === 'running' && s.state.domid !== d;
    }, 10_000, 'rebooted');
    await opOk(w.api, 'VM.shutdown', { id, mode: 'hard' });
    await nothingLeaked();
  });

  test('operations on one VM run in order; the power state is checked when each runs', async () => {
    const id = await addVm(w.api);
    // Queued back to back: at queue time the VM is halted, yet the shutdown (checked when it runs) succeeds.
    const a = (await w.api.call('VM.start', { id })).task;
    const b = (await w.api.call('VM.shutdown', { id, mode: 'hard' })).task;
    const c = (await w.api.call('VM.start', { id })).task;
    const [ta, tb, tc] = await Promise.all([a, b, c].map((t) => w.api.call('TASK.wait', { id: t, timeout_s: 20 })));
    assert.deepEqual([ta.state, tb.state, tc.state], ['completed', 'completed', 'completed']);
    const again = await op(w.api, 'VM.start', { id });
    assert.equal(again.error?.data?.name, 'BAD_POWER_STATE');
    assert.equal(again.error?.data?.actual, 'running');
    await opOk(w.api, 'VM.shutdown', { id, mode: 'hard' });
    await nothingLeaked();
  });
});
