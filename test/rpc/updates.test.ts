// UpdatesLog (coalescing, per-VM order, long-poll, restart resync, eviction) and the TASK.* / UPDATES.get methods
// served over the socket with a real engine.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { UpdatesLog } from '../../src/updates/log.js';
import { updatesMethods } from '../../src/updates/methods.js';
import { TaskEngine } from '../../src/tasks/engine.js';
import { taskMethods } from '../../src/tasks/methods.js';
import { runAtoms } from '../../src/tasks/atoms.js';
import { createApiServer } from '../../src/rpc/server.js';
import type { ApiServer } from '../../src/rpc/types.js';
import { quietLogger, rpc, SAMPLE_UUID, tempSocketDir } from './client.js';

describe('UpdatesLog', () => {
  test('coalesced: an id appears once, at its latest change; `next` resumes after what was seen', () => {
    const log = new UpdatesLog();
    log.add('vm', 'A');
    log.add('vm', 'B');
    log.add('vbd', 'A/xvda');
    log.add('vm', 'A');
    log.add('vm', 'A');
    const first = log.snapshot(0);
    assert.deepEqual(first.updates, [
      { kind: 'vm', id: 'B' },
      { kind: 'vbd', id: 'A/xvda' },
      { kind: 'vm', id: 'A' },
    ]);
    assert.equal(first.next, 6);
    assert.deepEqual(log.snapshot(first.next), { updates: [], next: 6 });
    log.add('vif', 'B/0');
    log.add('vm', 'B');
    assert.deepEqual(log.snapshot(first.next).updates, [
      { kind: 'vif', id: 'B/0' },
      { kind: 'vm', id: 'B' },
    ]);
    // Same id, different kinds are different objects.
    log.add('task', 'B');
    assert.equal(log.snapshot(0).updates.filter((u) => u.id === 'B').length, 2);
  });

  test('per-VM order: a VM’s objects come out in the order of their latest changes', () => {
    const log = new UpdatesLog();
    const vm = 'V';
    const changes: [string, string][] = [['vm', vm], ['vbd', `${vm}/xvda`], ['vif', `${vm}/0`], ['vbd', `${vm}/xvda`], ['vm', vm]];
    for (const [k, id] of changes) log.add(k as 'vm', id);
    assert.deepEqual(log.snapshot(0).updates.map((u) => `${u.kind}:${u.id}`), [`vif:${vm}/0`, `vbd:${vm}/xvda`, `vm:${vm}`]);
  });

  test('long-poll: waits for a change, answers at once when there is one, times out empty', async () => {
    const log = new UpdatesLog();
    log.add('vm', 'A');
    const { next } = log.snapshot(0);
    const t0 = Date.now();
    const empty = await log.get({ from: next, timeoutS: 0.1 });
    assert.ok(Date.now() - t0 >= 90);
    assert.deepEqual(empty, { updates: [], next });
    const pending = log.get({ from: next, timeoutS: 10 });
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(log.waiting, 1);
    // Several changes in one turn come out in one answer.
    log.add('vm', 'B');
    log.add('vm', 'C');
    const woke = await pending;
    assert.deepEqual(woke.updates.map((u) => u.id), ['B', 'C']);
    assert.equal(log.waiting, 0);
    assert.deepEqual((await log.get({ from: 0 })).updates.length, 3, 'no timeout: answers at once');
  });

  test('a from beyond the head (from before a daemon restart) gets every id held', () => {
    const log = new UpdatesLog();
    log.add('vm', 'A');
    assert.deepEqual(log.snapshot(0).updates, [{ kind: 'vm', id: 'A' }]);
    return log.get({ from: 1000 }).then((r) => assert.deepEqual(r.updates, [{ kind: 'vm', id: 'A' }]));
  });

  test('an aborted signal ends the wait', async () => {
    const log = new UpdatesLog();
    const ac = new AbortController();
    const p = log.get({ from: log.head, timeoutS: 60, signal: ac.signal });
    ac.abort();
    assert.deepEqual((await p).updates, []);
    assert.equal(log.waiting, 0);
  });

  test('stays bounded: compaction keeps memory to the number of ids; beyond maxIds the oldest go', () => {
    const log = new UpdatesLog({ maxIds: 100 });
    for (let i = 0; i < 10_000; i++) log.add('vm', `vm${i % 50}`);
    assert.equal(log.snapshot(0).updates.length, 50);
    assert.ok((log as unknown as { entries: unknown[] }).entries.length <= 2 * 50 + 1024 + 1);
    for (let i = 0; i < 300; i++) log.add('task', `t${i}`);
    const all = log.snapshot(0).updates;
    assert.equal(all.length, 100);
    assert.deepEqual(all.at(-1), { kind: 'task', id: 't299' });
  });
});

describe('TASK.* and UPDATES.get over the socket', () => {
  const tmp = tempSocketDir();
  const updates = new UpdatesLog();
  const engine = new TaskEngine({ logger: quietLogger(), updates });
  let server: ApiServer;
  const S = tmp.socketPath;

  before(async () => {
    server = await createApiServer({
      socketPath: S,
      logger: quietLogger(),
      version: '0.1.0',
      methods: {
        ...taskMethods(engine),
        ...updatesMethods(updates),
        'VM.start': async (p) => ({
          task: engine.submit({
            method: 'VM.start',
            vm: p.id,
            run: (ctx) =>
              runAtoms(ctx, [
                { name: 'create', do: async () => {} },
                { name: 'build', do: (c) => c.sleep(p.paused ? 60_000 : 20) },
              ]),
          }),
        }),
      },
    });
  });
  after(async () => {
    await server.close();
    engine.close();
    tmp.cleanup();
  });

  test('start → TASK.wait → TASK.stat/list → TASK.destroy; task updates seen by UPDATES.get', async () => {
    const head = (await rpc(S, 'UPDATES.get', {})).result.next;
    const { task } = (await rpc(S, 'VM.start', { id: SAMPLE_UUID })).result;
    const done = (await rpc(S, 'TASK.wait', { id: task, timeout_s: 5 })).result;
    assert.equal(done.state, 'completed');
    assert.equal(done.vm, SAMPLE_UUID);
    assert.deepEqual(done.subtasks, [{ name: 'create', state: 'completed' }, { name: 'build', state: 'completed' }]);
    assert.deepEqual((await rpc(S, 'TASK.stat', { id: task })).result, done);
    assert.ok((await rpc(S, 'TASK.list')).result.tasks.some((t: { id: string }) => t.id === task));
    const u = (await rpc(S, 'UPDATES.get', { from: head, timeout_s: 1 })).result;
    assert.deepEqual(u.updates, [{ kind: 'task', id: task }]);
    assert.deepEqual((await rpc(S, 'TASK.destroy', { id: task })).result, {});
    assert.equal((await rpc(S, 'TASK.stat', { id: task })).error.data.name, 'DOES_NOT_EXIST');
  });

  test('TASK.cancel of a running task; TASK.destroy of a running task is BAD_TASK_STATE', async () => {
    const { task } = (await rpc(S, 'VM.start', { id: SAMPLE_UUID, paused: true })).result;
    const running = (await rpc(S, 'TASK.wait', { id: task, timeout_s: 0.05 })).result;
    assert.equal(running.state, 'running');
    const d = await rpc(S, 'TASK.destroy', { id: task });
    assert.equal(d.error.code, 1011);
    assert.deepEqual(d.error.data, { name: 'BAD_TASK_STATE', actual: 'running', expected: ['completed', 'failed', 'cancelled'] });
    assert.deepEqual((await rpc(S, 'TASK.cancel', { id: task })).result, {});
    const r = (await rpc(S, 'TASK.wait', { id: task, timeout_s: 2 })).result;
    assert.equal(r.state, 'cancelled');
    assert.equal(r.error.data.name, 'CANCELLED');
    assert.equal((await rpc(S, 'TASK.cancel', { id: 'nope' })).error.code, 1000);
  });

  test('UPDATES.get long-polls over HTTP and is woken by a task', async () => {
    const from = (await rpc(S, 'UPDATES.get', {})).result.next;
    const poll = rpc(S, 'UPDATES.get', { from, timeout_s: 10 });
    await new Promise((r) => setTimeout(r, 30));
    const { task } = (await rpc(S, 'VM.start', { id: SAMPLE_UUID })).result;
    const got = (await poll).result;
    assert.deepEqual(got.updates, [{ kind: 'task', id: task }]);
    assert.ok(got.next > from);
    await rpc(S, 'TASK.wait', { id: task, timeout_s: 5 });
  });
});
