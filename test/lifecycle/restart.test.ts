// SIGKILL the daemon during each kind of operation (at atom boundaries, via the test hook, and inside a wait), start
// it again on the same state: the VMs are consistent with the domains, half-done work is finished or undone, and
// nothing leaks.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { addVm, assertConsistent, assertNoLeak, idle, opOk, power, snapshot, startWorld, until, settledSnapshot, type World } from './helpers.js';

describe('daemon restart', { timeout: 300_000 }, () => {
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

  /** Submits method with a self-SIGKILL at point `at`; restarts the daemon; true if the kill happened. */
  async function killAt(method: string, params: Record<string, unknown>, at: number): Promise<boolean> {
    await w.daemon.hook({ cmd: 'killAt', at, method, vm: params.id });
    const { task } = await w.api.call('VM.' + method.slice(3), params).catch(() => ({ task: undefined }));
    const exited = new Promise<void>((r) => {
      if (w.daemon.child.exitCode !== null || w.daemon.child.signalCode !== null) r();
      else w.daemon.child.once('exit', () => r());
    });
    let answered = false;
    if (task) {
      try {
        await w.api.call('TASK.wait', { id: task, timeout_s: 20 });
        answered = true;
      } catch {
        // the daemon died while we waited
      }
    }
    const died = answered ? false : (await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5000))]));
    if (!died) {
      await w.daemon.hook({ cmd: 'killAt' });
      return false;
    }
    await w.daemon.kill();
    await w.restartDaemon();
    await idle(w);
    await assertConsistent(w);
    return true;
  }

  test('killed at each boundary of VM.start: after restart the VM is halted or running, nothing leaks', async () => {
    const id = await addVm(w.api, { vbds: [{ device: 'xvda', path: w.disk }], vifs: [{}] });
    // Boundaries k = before atom k (cancel.test.ts walks all 14; a restart costs seconds, so here one per phase):
    // nothing done, domain created, skeleton written, runtime written, introduced + vbd plugged, record saved but
    // not unpaused; then one run past the end, which is not killed.
    const points = [0, 3, 7, 9, 11, 13, 40];
    let at = 0;
    for (at of points) {
      const killed = await killAt('VM.start', { id }, at);
      const p = await power(w.api, id);
      assert.ok(p === 'halted' || p === 'running', `at ${at}: ${p}`);
      if (p === 'running') await opOk(w.api, 'VM.shutdown', { id, mode: 'hard' });
      await assertNoLeak(w, baseline);
      if (!killed) break;
    }
    assert.equal(at, 40, 'the last run completed without a kill');
  });

  test('killed at each boundary of a clean VM.shutdown and of VM.reboot', async () => {
    const id = await addVm(w.api, { vifs: [{}] });
    // Every boundary of the shutdown; for the reboot (shutdown + start: 18) a sample across both halves, then one
    // run past the end (not killed), to keep the suite short.
    const plan: Record<string, number[]> = { 'VM.shutdown': [0, 1, 2, 3], 'VM.reboot': [0, 2, 3, 6, 10, 14, 17, 40] };
    for (const method of ['VM.shutdown', 'VM.reboot']) {
      for (const at of plan[method]!) {
        if ((await power(w.api, id)) !== 'running') await opOk(w.api, 'VM.start', { id });
        const killed = await killAt(method, { id, timeout_s: 10 }, at);
        const p = await power(w.api, id);
        if (method === 'VM.shutdown') assert.equal(p, 'halted', `${method} at ${at}: the interrupted shutdown is finished`);
        else assert.ok(p === 'running', `${method} at ${at}: the interrupted reboot is finished (${p})`);
        if (!killed) break;
      }
    }
    await opOk(w.api, 'VM.shutdown', { id, mode: 'hard' });
    await assertNoLeak(w, baseline);
  });

  test('killed during pause, set_vcpus, set_memory: the domain is re-adopted as it is', async () => {
    const id = await addVm(w.api, { vcpus: { max: 2 } });
    await opOk(w.api, 'VM.start', { id });
    const domid = (await w.api.call('VM.stat', { id })).state.domid;
    for (const [method, params] of [
      ['VM.pause', { id }],
      ['VM.unpause', { id }],
      ['VM.set_vcpus', { id, online: 1 }],
      ['VM.set_memory', { id, target_mib: 32 }],
    ] as const) {
      assert.equal(await killAt(method, params, 0), true, method);
      assert.equal((await w.api.call('VM.stat', { id })).state.domid, domid, `${method}: same domain after restart`);
      await opOk(w.api, method, params);
    }
    await opOk(w.api, 'VM.shutdown', { id, mode: 'hard' });
    await assertNoLeak(w, baseline);
  });

  test('killed inside a device wait, then restarted: the half-built domain is removed', async () => {
    const id = await addVm(w.api, { vbds: [{ device: 'xvda', path: w.disk }] });
    await w.control.call('backend.fault', { path: '/local/domain/0/backend/vbd', mode: 'hang' });
    try {
      await w.api.call('VM.start', { id });
      await until(async () => (await w.control.call('status', {})).domains.some((d) => d.handle === id), 5000, 'domain created');
      await new Promise((r) => setTimeout(r, 200));
      await w.daemon.kill();
    } finally {
      await w.control.call('backend.fault', { path: '/local/domain/0/backend/vbd', mode: 'none' });
    }
    await w.restartDaemon();
    await idle(w);
    assert.equal(await power(w.api, id), 'halted');
    await assertNoLeak(w, baseline);
  });

  test('a recovery step that fails does not keep the daemon from starting; the next start-up finishes it', async () => {
    const id = await addVm(w.api, { vifs: [{}] });
    await opOk(w.api, 'VM.start', { id });
    const d = (await w.api.call('VM.stat', { id })).state.domid as number;
    // Killed after the shutdown was journalled: recovery must finish it with a destroy, which is made to fail.
    await w.daemon.hook({ cmd: 'killAt', at: 0, method: 'VM.shutdown', vm: id });
    await w.api.call('VM.shutdown', { id, mode: 'hard' }).catch(() => {});
    await until(() => w.daemon.child.exitCode !== null || w.daemon.child.signalCode !== null, 5000, 'daemon killed');
    await w.daemon.kill();
    await w.control.call('hypercall.fault', { call: 'destroy', errno: 'EIO', times: 100 });
    try {
      await w.restartDaemon();
      // The API is open and the VM is still what the world says: its domain is there, recorded.
      assert.equal((await w.api.call('VM.stat', { id })).state.domid, d);
      assert.ok((await w.control.call('status', {})).domains.some((x) => x.domid === d && x.state !== 'dying'), 'domain left for later');
    } finally {
      await w.control.call('faults.clear', {});
    }
    await w.daemon.kill();
    await w.restartDaemon();
    await idle(w);
    assert.equal(await power(w.api, id), 'halted', 'the journalled shutdown is finished on the next start-up');
    await assertNoLeak(w, baseline);
  });

  test('a guest that crashes while the daemon is down gets its on_crash action after restart', async () => {
    const id = await addVm(w.api, { on_crash: 'restart' });
    await opOk(w.api, 'VM.start', { id });
    const d = (await w.api.call('VM.stat', { id })).state.domid as number;
    await until(async () => (await w.control.call('status', {})).domains.some((x) => x.domid === d && x.guest?.phase === 'up'), 10_000, 'guest up');
    await w.daemon.kill();
    await w.control.call('guest.fault', { fault: 'crash', domid: d });
    await w.restartDaemon();
    await until(async () => {
      const s = await w.api.call('VM.stat', { id });
      return s.state.power_state === 'running' && s.state.domid !== d;
    }, 10_000, 'restarted after crash');
    await idle(w);
    await assertConsistent(w);
    await opOk(w.api, 'VM.shutdown', { id, mode: 'hard' });
    await assertNoLeak(w, baseline);
  });
});
