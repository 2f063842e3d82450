// API v1 against a daemon on a sim host (separate processes): every method, every error code the VM/TASK/UPDATES
// methods can produce, and bad input of every kind — each answered with a clear error and nothing changed.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { pack, unpack } from 'msgpackr';
import { addVm, assertNoLeak, op, opOk, power, rpcError, settledSnapshot, startWorld, until, vmSpec, waitTask, type World } from '../lifecycle/helpers.js';

describe('API v1', { timeout: 120_000 }, () => {
  let w: World;
  before(async () => {
    w = await startWorld({ memoryMib: 4096 });
  });
  after(async () => {
    await w?.close();
  });

  /** What bad input must not change. */
  const state = async () => {
    const { vms } = await w.api.call('VM.list');
    const { tasks } = await w.api.call('TASK.list');
    return { vms: JSON.stringify(vms), tasks: tasks.length };
  };

  test('API.version and HOST.stat', async () => {
    const v = await w.api.call('API.version');
    assert.match(v.api, /^1\.\d+$/);
    assert.equal(v.backend, 'sim');
    assert.match(v.daemon, /^\d+\.\d+\.\d+/);
    const h = await w.api.call('HOST.stat');
    assert.equal(h.backend, 'sim');
    assert.ok(h.cpus > 0);
    assert.ok(h.memory_total_mib >= 4000 && h.memory_total_mib <= 4096, String(h.memory_total_mib));
    assert.ok(h.memory_free_mib <= h.memory_total_mib);
    const id = await addVm(w.api, { memory: { max_mib: 256 } });
    await opOk(w.api, 'VM.start', { id });
    const h2 = await w.api.call('HOST.stat');
    assert.equal(h2.domain_count, h.domain_count + 1);
    assert.ok(h2.memory_free_mib <= h.memory_free_mib - 200, `${h2.memory_free_mib} vs ${h.memory_free_mib}`);
    await opOk(w.api, 'VM.shutdown', { id, mode: 'hard' });
  });

  test('VM.add, VM.stat, VM.list, VM.remove', async () => {
    const given = '11111111-2222-4333-8444-555555555555';
    const { id } = await w.api.call('VM.add', { vm: vmSpec({ id: given, name: 'given' }) });
    assert.equal(id, given);
    const fresh = await addVm(w.api, { name: 'fresh' });
    assert.match(fresh, /^[0-9a-f-]{36}$/);
    const s = await w.api.call('VM.stat', { id: given });
    assert.equal(s.vm.name, 'given');
    assert.equal(s.vm.id, given);
    assert.deepEqual(s.state, { power_state: 'halted' });
    const { vms } = await w.api.call('VM.list');
    assert.ok(vms.some((v: { vm: { id: string } }) => v.vm.id === given));
    assert.ok(vms.some((v: { vm: { id: string } }) => v.vm.id === fresh));
    const dup = await rpcError(() => w.api.call('VM.add', { vm: vmSpec({ id: given }) }), 'ALREADY_EXISTS');
    assert.equal(dup.code, 1001);
    assert.deepEqual(await w.api.call('VM.remove', { id: given }), {});
    await rpcError(() => w.api.call('VM.stat', { id: given }), 'DOES_NOT_EXIST');
    await rpcError(() => w.api.call('VM.remove', { id: given }), 'DOES_NOT_EXIST');
  });

  test('VM.stat of a running VM carries domid, memory, vcpus, cpu time, last start', async () => {
    const id = await addVm(w.api, { memory: { max_mib: 96 }, vcpus: { max: 3 } });
    await opOk(w.api, 'VM.start', { id });
    const s = await w.api.call('VM.stat', { id });
    assert.equal(s.state.power_state, 'running');
    assert.equal(typeof s.state.domid, 'number');
    assert.ok(Math.abs(s.state.memory_actual_mib - 96) < 2, String(s.state.memory_actual_mib));
    assert.equal(s.state.vcpus_online, 3);
    assert.ok(s.state.cpu_time_s >= 0);
    assert.ok(Date.now() - Date.parse(s.state.last_start) < 60_000);
    const busy = await rpcError(() => w.api.call('VM.remove', { id }), 'BAD_POWER_STATE');
    assert.equal(busy.body.data?.actual, 'running');
    assert.deepEqual(busy.body.data?.expected, ['halted']);
    await opOk(w.api, 'VM.shutdown', { id, mode: 'hard' });
    assert.deepEqual(await w.api.call('VM.remove', { id }), {});
  });

  test('operations on an unknown VM answer DOES_NOT_EXIST at once', async () => {
    const id = '99999999-9999-4999-8999-999999999999';
    for (const [method, extra] of [
      ['VM.start', {}],
      ['VM.shutdown', {}],
      ['VM.reboot', {}],
      ['VM.pause', {}],
      ['VM.unpause', {}],
      ['VM.set_vcpus', { online: 1 }],
      ['VM.set_memory', { target_mib: 1 }],
    ] as const) {
      const e = await rpcError(() => w.api.call(method, { id, ...extra }), 'DOES_NOT_EXIST');
      assert.equal(e.code, 1000, method);
    }
  });

  test('task errors: BAD_POWER_STATE, NOT_ENOUGH_MEMORY, DEVICE_BUSY, BACKEND_ERROR, NOT_SUPPORTED, TIMEOUT', async () => {
    const halted = await addVm(w.api);
    for (const method of ['VM.shutdown', 'VM.pause', 'VM.unpause', 'VM.reboot']) {
      const t = await op(w.api, method, { id: halted });
      assert.equal(t.error?.data?.name, 'BAD_POWER_STATE', method);
      assert.equal(t.error?.code, 1002);
      assert.equal(t.error?.data?.actual, 'halted');
    }
    const big = await addVm(w.api, { memory: { max_mib: 8192 } });
    const nem = await op(w.api, 'VM.start', { id: big });
    assert.equal(nem.error?.data?.name, 'NOT_ENOUGH_MEMORY');
    assert.equal(await power(w.api, big), 'halted');

    const a = await addVm(w.api, { vbds: [{ device: 'xvda', path: w.disk }] });
    const b = await addVm(w.api, { vbds: [{ device: 'xvdb', path: w.disk }] });
    await opOk(w.api, 'VM.start', { id: a });
    const busy = await op(w.api, 'VM.start', { id: b });
    assert.equal(busy.error?.data?.name, 'DEVICE_BUSY');
    await opOk(w.api, 'VM.shutdown', { id: a, mode: 'hard' });

    const missing = await addVm(w.api, { vbds: [{ device: 'xvda', path: '/nonexistent/disk.img' }] });
    const be = await op(w.api, 'VM.start', { id: missing });
    assert.equal(be.error?.data?.name, 'BACKEND_ERROR');
    assert.match(be.error!.message, /nonexistent/);
    assert.equal(await power(w.api, missing), 'halted');

    const hvm = await addVm(w.api, { type: 'hvm' });
    const ns = await op(w.api, 'VM.start', { id: hvm });
    assert.equal(ns.error?.data?.name, 'NOT_SUPPORTED');

    const stubborn = await addVm(w.api);
    await opOk(w.api, 'VM.start', { id: stubborn });
    const d = (await w.api.call('VM.stat', { id: stubborn })).state.domid;
    await w.control.call('guest.fault', { fault: 'ignore-shutdown', domid: d, on: true });
    const to = await op(w.api, 'VM.shutdown', { id: stubborn, timeout_s: 0.2 });
    assert.equal(to.error?.data?.name, 'TIMEOUT');
    assert.equal(to.error?.code, 1004);
    await opOk(w.api, 'VM.shutdown', { id: stubborn, mode: 'hard' });
  });

  test('task errors: DEVICE_NOT_CONNECTED when a backend gives up on a device (on probe or after InitWait), at once, leaving nothing', async () => {
    const baseline = await settledSnapshot(w);
    const vbds = '/local/domain/0/backend/vbd';
    const id = await addVm(w.api, { vbds: [{ device: 'xvda', path: w.disk }] });
    /** Starts the VM, expecting DEVICE_NOT_CONNECTED well before the 10 s device init timeout. */
    const failedStart = async (): Promise<NonNullable<Awaited<ReturnType<typeof op>>['error']>> => {
      const t0 = Date.now();
      const t = await op(w.api, 'VM.start', { id }, 15);
      const took = Date.now() - t0;
      assert.equal(t.state, 'failed');
      assert.equal(t.error?.data?.name, 'DEVICE_NOT_CONNECTED', JSON.stringify(t.error));
      assert.equal(t.error?.code, 1007);
      assert.ok(took < 5000, `the failed start took ${took} ms`);
      assert.ok(t.subtasks.some((s) => s.name === 'VBD_plug:xvda' && s.state === 'failed'), JSON.stringify(t.subtasks));
      assert.match(String(t.error?.data?.device), /^\/local\/domain\/0\/backend\/vbd\/\d+\/51712$/);
      assert.equal(await power(w.api, id), 'halted');
      return t.error!;
    };

    // As blkback that cannot open the disk on probe (xenbus_dev_fatal): the reason, control characters and all.
    await w.control.call('backend.fault', { path: vbds, mode: 'close', message: '19 opening\n physical device\u001b[31m xvda' });
    try {
      const e = await failedStart();
      assert.match(e.message, /19 opening physical device \[31m xvda/);
      assert.doesNotMatch(e.message, /[\u0000-\u001f\u007f]/);
      // A reason of any length comes out capped.
      await w.control.call('backend.fault', { path: vbds, mode: 'close', message: 'x'.repeat(3000) });
      const long = await failedStart();
      assert.ok(String(long.data?.detail).length < 260, `detail of ${String(long.data?.detail).length} chars`);
    } finally {
      await w.control.call('backend.fault', { path: vbds, mode: 'none' });
    }

    // As a real blkback: InitWait on probe, and giving up only later (here written by hand while the sim's hangs).
    await w.control.call('backend.fault', { path: vbds, mode: 'hang' });
    try {
      const started = failedStart();
      let backend = '';
      await until(async () => {
        for (const d of await w.xs.directory(vbds).catch(() => [] as string[])) {
          if ((await w.xs.tryRead(`${vbds}/${d}/51712/frontend`)) !== undefined) backend = `${vbds}/${d}/51712`;
        }
        return backend !== '';
      }, 5000, 'the vbd backend directory');
      await w.xs.write(`${backend}/state`, '2');
      await new Promise((r) => setTimeout(r, 100));
      await w.xs.write(`/local/domain/0/error/${backend.slice('/local/domain/0/'.length)}/error`, '2 creating vbd structure');
      await w.xs.write(`${backend}/state`, '5');
      const e = await started;
      assert.match(e.message, /2 creating vbd structure/);
    } finally {
      await w.control.call('backend.fault', { path: vbds, mode: 'none' });
    }
    // The start's undo removed the device's nodes and the error the backend recorded; the domain is gone.
    await assertNoLeak(w, baseline);
    // And nothing stays wrong: with the fault lifted the same VM starts.
    await opOk(w.api, 'VM.start', { id });
    await opOk(w.api, 'VM.shutdown', { id, mode: 'hard' });
  });

  test('TASK.stat, wait, cancel (CANCELLED), list, destroy (BAD_TASK_STATE), unknown ids', async () => {
    const id = await addVm(w.api);
    await opOk(w.api, 'VM.start', { id });
    const d = (await w.api.call('VM.stat', { id })).state.domid;
    await w.control.call('guest.fault', { fault: 'ignore-shutdown', domid: d, on: true });
    const { task } = await w.api.call('VM.shutdown', { id, timeout_s: 30 });
    const running = await w.api.call('TASK.stat', { id: task });
    assert.equal(running.method, 'VM.shutdown');
    assert.equal(running.vm, id);
    assert.ok(['pending', 'running'].includes(running.state));
    const waited = await w.api.call('TASK.wait', { id: task, timeout_s: 0.2 });
    assert.equal(waited.state, 'running');
    const bts = await rpcError(() => w.api.call('TASK.destroy', { id: task }), 'BAD_TASK_STATE');
    assert.equal(bts.code, 1011);
    assert.deepEqual(await w.api.call('TASK.cancel', { id: task }), {});
    const t = await waitTask(w.api, task);
    assert.equal(t.state, 'cancelled');
    assert.equal(t.error?.data?.name, 'CANCELLED');
    assert.equal(t.error?.code, 1003);
    assert.ok(t.finished);
    const { tasks } = await w.api.call('TASK.list');
    assert.ok(tasks.some((x: { id: string }) => x.id === task));
    assert.deepEqual(await w.api.call('TASK.destroy', { id: task }), {});
    for (const m of ['TASK.stat', 'TASK.wait', 'TASK.cancel', 'TASK.destroy']) await rpcError(() => w.api.call(m, { id: task }), 'DOES_NOT_EXIST');
    await opOk(w.api, 'VM.shutdown', { id, mode: 'hard' });
  });

  test('UPDATES.get: ids of changed VMs and tasks, long-poll wakes on a change', async () => {
    const first = await w.api.call('UPDATES.get', {});
    assert.ok(Array.isArray(first.updates));
    const from = first.next;
    const empty = await w.api.call('UPDATES.get', { from, timeout_s: 0 });
    assert.deepEqual(empty.updates, []);
    const t0 = Date.now();
    const poll = w.api.call('UPDATES.get', { from, timeout_s: 10 });
    await new Promise((r) => setTimeout(r, 200));
    const id = await addVm(w.api);
    const got = await poll;
    assert.ok(Date.now() - t0 < 5000);
    assert.ok(got.updates.some((u: { kind: string; id: string }) => u.kind === 'vm' && u.id === id));
    const { task } = await w.api.call('VM.start', { id });
    await waitTask(w.api, task);
    const after = await w.api.call('UPDATES.get', { from: got.next });
    assert.ok(after.updates.some((u: { kind: string; id: string }) => u.kind === 'task' && u.id === task));
    assert.ok(after.updates.some((u: { kind: string; id: string }) => u.kind === 'vm' && u.id === id));
    // Coalesced: each id at most once.
    const keys = after.updates.map((u: { kind: string; id: string }) => `${u.kind}:${u.id}`);
    assert.equal(new Set(keys).size, keys.length);
    await opOk(w.api, 'VM.shutdown', { id, mode: 'hard' });
  });

  test('bad params of every kind: -32602 naming the field, nothing changed', async () => {
    const before = await state();
    const cases: Array<[string, Record<string, unknown>, RegExp]> = [
      ['VM.add', {}, /vm/],
      ['VM.add', { vm: vmSpec({ surprise: 1 }) }, /surprise/],
      ['VM.add', { vm: vmSpec({ memory: { max_mib: 'lots' } }) }, /max_mib/],
      ['VM.add', { vm: vmSpec({ memory: { max_mib: 64, target_mib: 128 } }) }, /target_mib/],
      ['VM.add', { vm: vmSpec({ vcpus: { max: 1, online: 2 } }) }, /online/],
      ['VM.add', { vm: vmSpec({ id: 'not-a-uuid' }) }, /id/],
      ['VM.add', { vm: vmSpec({ type: 'kvm' }) }, /type/],
      ['VM.add', { vm: vmSpec({ vbds: [{ device: 'xvda', path: '/a' }, { device: 'xvda', path: '/b' }] }) }, /vbds/],
      ['VM.add', { vm: vmSpec({ xenstore_data: { '../escape': 'x' } }) }, /xenstore_data/],
      ['VM.stat', {}, /id/],
      ['VM.stat', { id: 42 }, /id/],
      ['VM.start', { id: '11111111-2222-4333-8444-555555555555', paused: 'yes' }, /paused/],
      ['VM.shutdown', { id: '11111111-2222-4333-8444-555555555555', mode: 'gentle' }, /mode/],
      ['VM.shutdown', { id: '11111111-2222-4333-8444-555555555555', timeout_s: -1 }, /timeout_s/],
      ['VM.set_vcpus', { id: '11111111-2222-4333-8444-555555555555', online: 0 }, /online/],
      ['TASK.wait', { id: 'x', timeout_s: 'soon' }, /timeout_s/],
      ['UPDATES.get', { from: -1 }, /from/],
    ];
    for (const [method, params, field] of cases) {
      const e = await rpcError(() => w.api.call(method, params), 'INVALID_PARAMS');
      assert.equal(e.code, -32602, method);
      const text = JSON.stringify(e.body.data) + e.message;
      assert.match(text, field, `${method} ${JSON.stringify(params)}: ${text}`);
    }
    assert.deepEqual(await state(), before);
  });

  test('protocol errors: malformed JSON, bad request, unknown method, huge body, wrong path; nothing changed', async () => {
    const before = await state();
    const post = (body: string | Buffer, headers: Record<string, string> = { 'content-type': 'application/json' }, path = '/v1') =>
      w.api.raw('POST', path, body, headers);
    const parse = await post('{"jsonrpc":"2.0","id":1,"method":');
    assert.equal(JSON.parse(parse.body.toString()).error.code, -32700);
    const invalid = await post('{"jsonrpc":"2.0","id":1}');
    assert.equal(JSON.parse(invalid.body.toString()).error.code, -32600);
    const notAnObject = await post('42');
    assert.equal(JSON.parse(notAnObject.body.toString()).error.code, -32600);
    const unknown = await post('{"jsonrpc":"2.0","id":1,"method":"VM.explode"}');
    assert.equal(JSON.parse(unknown.body.toString()).error.code, -32601);
    const huge = await post(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'VM.add', params: { vm: vmSpec({ name: 'x'.repeat(2 << 20) }) } }));
    assert.ok(huge.status === 413 || JSON.parse(huge.body.toString()).error, `status ${huge.status}`);
    assert.match(huge.body.toString(), /larger than|too large|limit/i);
    const wrongPath = await post('{"jsonrpc":"2.0","id":1,"method":"API.version"}', {}, '/v9');
    assert.equal(wrongPath.status, 404);
    assert.deepEqual(await state(), before);
  });

  test('batch, msgpack, OpenRPC document', async () => {
    const batch = await w.api.raw(
      'POST',
      '/v1',
      JSON.stringify([
        { jsonrpc: '2.0', id: 1, method: 'API.version' },
        { jsonrpc: '2.0', id: 2, method: 'VM.stat', params: { id: '99999999-9999-4999-8999-999999999999' } },
      ]),
      { 'content-type': 'application/json' },
    );
    const answers = JSON.parse(batch.body.toString()) as Array<{ id: number; result?: unknown; error?: { data: { name: string } } }>;
    assert.equal(answers.length, 2);
    assert.ok(answers.find((a) => a.id === 1)?.result);
    assert.equal(answers.find((a) => a.id === 2)?.error?.data.name, 'DOES_NOT_EXIST');
    const mp = await w.api.raw('POST', '/v1', pack({ jsonrpc: '2.0', id: 7, method: 'API.version' }), { 'content-type': 'application/msgpack' });
    assert.match(String(mp.headers['content-type']), /msgpack/);
    assert.equal((unpack(mp.body) as { result: { backend: string } }).result.backend, 'sim');
    const doc = await w.api.raw('GET', '/v1/openrpc.json');
    const methods = (JSON.parse(doc.body.toString()) as { methods: Array<{ name: string }> }).methods.map((m) => m.name);
    for (const m of ['VM.start', 'VM.shutdown', 'TASK.wait', 'UPDATES.get', 'HOST.stat']) assert.ok(methods.includes(m), m);
    const discover = await w.api.call('rpc.discover');
    assert.ok(Array.isArray(discover.methods));
  });
});
