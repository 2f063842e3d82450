// An unexpected bug inside an operation (a plain Error, not an ApiError) ends the task `failed` with INTERNAL, after
// the undo of the atoms already done: the VM stays halted and nothing leaks. The test hook `failAt` throws such an
// Error at a chosen cancel point (atom boundary, counted as in cancel.test.ts). The daemon keeps serving afterwards.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ERROR_CODES } from '../../src/rpc/errors.js';
import { addVm, assertNoLeak, op, opOk, power, settledSnapshot, type World, startWorld } from './helpers.js';

describe('internal error', { timeout: 120_000 }, () => {
  let w: World;
  let baseline: Awaited<ReturnType<typeof settledSnapshot>>;
  /** Cancel points a full VM.start of the VMs below passes (0 .. startPoints-1). */
  let startPoints: number;

  before(async () => {
    w = await startWorld({ testHooks: true });
    // A warm-up start/stop (so first-use nodes are in the baseline) that also counts the start's cancel points.
    const warm = await addVm(w.api, { vbds: [{ device: 'xvda', path: w.disk }], vifs: [{}] });
    const started = await opOk(w.api, 'VM.start', { id: warm });
    const seen = await w.daemon.hook({ cmd: 'cancelPoints', task: started.id });
    assert.equal(seen.ok, true, JSON.stringify(seen));
    startPoints = seen.points as number;
    await opOk(w.api, 'VM.shutdown', { id: warm, mode: 'hard' });
    baseline = await settledSnapshot(w);
  });
  after(async () => {
    await w?.daemon.hook({ cmd: 'failAt' }).catch(() => {});
    await w?.close();
  });

  test('the hook refuses a bad point', async () => {
    const r = await w.daemon.hook({ cmd: 'failAt', at: -1 });
    assert.equal(r.ok, false);
    assert.match(String(r.error), /at must be an integer >= 0/);
  });

  test('VM.start failing with a plain Error at first, middle and last boundary: INTERNAL, undone, nothing leaks', async () => {
    // Same shape as cancel.test.ts counts: checks, create, ..., 2 devices, record, unpause.
    assert.ok(startPoints >= 10, `only ${startPoints} cancel points in a start`);
    const id = await addVm(w.api, { vbds: [{ device: 'xvda', path: w.disk }], vifs: [{}] });
    for (const at of [0, Math.floor(startPoints / 2), startPoints - 1]) {
      const ack = await w.daemon.hook({ cmd: 'failAt', at, method: 'VM.start', vm: id });
      assert.equal(ack.ok, true, JSON.stringify(ack));
      const t = await op(w.api, 'VM.start', { id });
      assert.equal(t.state, 'failed', `at ${at}: ${JSON.stringify(t)}`);
      assert.equal(t.error?.data?.name, 'INTERNAL', `at ${at}`);
      assert.equal(t.error?.code, ERROR_CODES.INTERNAL);
      assert.match(t.error!.message, new RegExp(`injected failure at point ${at}\\b`));
      // The atoms done before the failure were undone (a later point has some to undo).
      if (at > 0) assert.ok(t.subtasks.some((s) => s.name.startsWith('undo:') && s.state === 'completed'), `at ${at}: no undo ran`);
      assert.equal(await power(w.api, id), 'halted', `at ${at}`);
      await assertNoLeak(w, baseline);
    }

    // The hook is one-shot and the daemon is unharmed: it answers, and the same VM now starts and stops normally.
    const version = await w.api.call<{ api: string; backend: string }>('API.version');
    assert.equal(version.backend, 'sim');
    await opOk(w.api, 'VM.start', { id });
    assert.equal(await power(w.api, id), 'running');
    await opOk(w.api, 'VM.shutdown', { id, mode: 'hard' });
    assert.equal(await power(w.api, id), 'halted');
  });
});
