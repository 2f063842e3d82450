// Cancel at every atom boundary (the engine's test trigger counts them) and inside waits: the task ends cancelled
// within a second and leaves nothing behind (xenstore tree and domain list as before the operation).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { addVm, assertConsistent, assertNoLeak, idle, op, opOk, power, snapshot, startWorld, waitTask, settledSnapshot, type World } from './helpers.js';

describe('cancel', { timeout: 180_000 }, () => {
  let w: World;
  let baseline: Awaited<ReturnType<typeof snapshot>>;

  before(async () => {
    w = await startWorld({ testHooks: true, args: ['--device-timeout', '1'] });
    const warm = await addVm(w.api, { vbds: [{ device: 'xvda', path: w.disk }], vifs: [{}] });
    await opOk(w.api, 'VM.start', { id: warm });
    await opOk(w.api, 'VM.shutdown', { id: warm, mode: 'hard' });
    baseline = await settledSnapshot(w);
  });
  after(async () => {
    await w?.close();
  });

  /** Runs method with a cancel at point `at`; returns the finished task. */
  async function cancelAt(method: string, params: Record<string, unknown>, at: number) {
    await w.daemon.hook({ cmd: 'cancelAt', at, method, vm: params.id });
    const t = await op(w.api, method, params);
    await w.daemon.hook({ cmd: 'cancelAt' });
    return t;
  }

  test('VM.start cancelled at every atom boundary leaves nothing behind', async () => {
    const id = await addVm(w.api, { vbds: [{ device: 'xvda', path: w.disk }], vifs: [{}] });
    let at = 0;
    for (;; at++) {
      const t = await cancelAt('VM.start', { id }, at);
      if (t.state === 'completed') break;
      assert.equal(t.state, 'cancelled', `at ${at}: ${JSON.stringify(t.error)}`);
      assert.equal(await power(w.api, id), 'halted', `at ${at}`);
      await assertNoLeak(w, baseline);
      assert.ok(at < 40, 'the start never completed');
    }
    // Every atom of the start is a boundary: checks, create, vcpus, maxmem, evtchns, skeleton, build, runtime,
    // introduce, 2 devices, record, unpause.
    assert.ok(at >= 14, `only ${at} cancel points`);
    await opOk(w.api, 'VM.shutdown', { id, mode: 'hard' });
    await assertNoLeak(w, baseline);
  });

  test('VM.shutdown (hard) cancelled before its atom leaves the VM running and untouched', async () => {
    const id = await addVm(w.api, { vifs: [{}] });
    await opOk(w.api, 'VM.start', { id });
    const before = await settledSnapshot(w);
    const t = await cancelAt('VM.shutdown', { id, mode: 'hard' }, 0);
    assert.equal(t.state, 'cancelled');
    assert.equal(await power(w.api, id), 'running');
    assert.deepEqual((await snapshot(w)).domains, before.domains);
    await opOk(w.api, 'VM.shutdown', { id, mode: 'hard' });
    await assertNoLeak(w, baseline);
  });

  test('VM.reboot cancelled at every boundary leaves a consistent VM (running or halted, nothing stray)', async () => {
    const id = await addVm(w.api, { vbds: [{ device: 'xvda', path: w.disk }] });
    for (let at = 0; at < 40; at++) {
      if ((await power(w.api, id)) !== 'running') await opOk(w.api, 'VM.start', { id });
      const t = await cancelAt('VM.reboot', { id, mode: 'hard' }, at);
      await idle(w);
      await assertConsistent(w);
      if (t.state === 'completed') break;
      assert.equal(t.state, 'cancelled');
    }
    if ((await power(w.api, id)) !== 'halted') await opOk(w.api, 'VM.shutdown', { id, mode: 'hard' });
    await assertNoLeak(w, baseline);
  });

  test('a cancel inside a wait is honoured within a second: clean shutdown of a guest that ignores it', async () => {
    const id = await addVm(w.api);
    await opOk(w.api, 'VM.start', { id });
    const d = (await w.api.call('VM.stat', { id })).state.domid as number;
    await w.control.call('guest.fault', { fault: 'ignore-shutdown', domid: d, on: true });
    const { task } = await w.api.call('VM.shutdown', { id, timeout_s: 60 });
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    await w.api.call('TASK.cancel', { id: task });
    const t = await waitTask(w.api, task, 5);
    // Measured to the task's own end (not to our next round trip), so a loaded test machine does not count.
    assert.ok(Date.parse(t.finished!) - t0 < 1000, `cancel took ${Date.parse(t.finished!) - t0} ms`);
    assert.equal(t.state, 'cancelled');
    assert.equal(await power(w.api, id), 'running');
    assert.equal(await w.xs.read(`/local/domain/${d}/control/shutdown`), '');
    await opOk(w.api, 'VM.shutdown', { id, mode: 'hard' });
    await assertNoLeak(w, baseline);
  });

  test('a cancel inside a device wait (backend hangs) is honoured within a second and undone', async () => {
    const id = await addVm(w.api, { vbds: [{ device: 'xvda', path: w.disk }] });
    await w.control.call('backend.fault', { path: '/local/domain/0/backend/vbd', mode: 'hang' });
    try {
      const { task } = await w.api.call('VM.start', { id });
      await new Promise((r) => setTimeout(r, 500));
      const t0 = Date.now();
      await w.api.call('TASK.cancel', { id: task });
      const t = await waitTask(w.api, task, 5);
      assert.ok(Date.parse(t.finished!) - t0 < 1000, `cancel took ${Date.parse(t.finished!) - t0} ms`);
      assert.equal(t.state, 'cancelled');
      assert.ok(t.subtasks.some((s) => s.name === 'VBD_plug:xvda' && s.state === 'cancelled'));
    } finally {
      await w.control.call('backend.fault', { path: '/local/domain/0/backend/vbd', mode: 'none' });
    }
    assert.equal(await power(w.api, id), 'halted');
    await assertNoLeak(w, baseline);
  });

  test('a backend that never answers fails the start with TIMEOUT and nothing leaks', async () => {
    const id = await addVm(w.api, { vifs: [{}] });
    await w.control.call('backend.fault', { path: '/local/domain/0/backend/vif', mode: 'hang' });
    try {
      const t = await op(w.api, 'VM.start', { id }, 30);
      assert.equal(t.state, 'failed');
      assert.equal(t.error?.data?.name, 'TIMEOUT');
    } finally {
      await w.control.call('backend.fault', { path: '/local/domain/0/backend/vif', mode: 'none' });
    }
    await assertNoLeak(w, baseline);
  });
});
