// Task engine: per-VM order, global bound, cancel (queued and running, within 1 s), failures, wait/destroy/GC,
// levels (spawn + waitTask cannot deadlock; waiting on the same level is refused), task updates.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { TaskEngine } from '../../src/tasks/engine.js';
import { ApiError, Errors } from '../../src/rpc/errors.js';
import { UpdatesLog } from '../../src/updates/log.js';
import type { TaskContext } from '../../src/tasks/types.js';

const logger = pino({ level: 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function engine(opts: Partial<ConstructorParameters<typeof TaskEngine>[0]> = {}): TaskEngine {
  return new TaskEngine({ logger, ...opts });
}

test('tasks of one VM run one at a time in submission order; different VMs overlap', async () => {
  const e = engine({ concurrency: [8] });
  const log: string[] = [];
  let running = 0;
  let maxRunning = 0;
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) {
    for (const vm of ['a', 'b']) {
      ids.push(
        e.submit({
          method: 'VM.op',
          vm,
          run: async (ctx) => {
            running++;
            maxRunning = Math.max(maxRunning, running);
            log.push(`${vm}${i}+`);
            await ctx.sleep(5);
            log.push(`${vm}${i}-`);
            running--;
            return i;
          },
        }),
      );
    }
  }
  await Promise.all(ids.map((id) => e.wait(id)));
  for (const vm of ['a', 'b']) {
    const own = log.filter((l) => l.startsWith(vm));
    assert.deepEqual(own, [0, 1, 2, 3, 4].flatMap((i) => [`${vm}${i}+`, `${vm}${i}-`]));
  }
  assert.equal(maxRunning, 2, 'one task per VM at a time, both VMs at once');
  assert.equal(e.stat(ids[0]!).result, 0);
  e.close();
});

test('the global bound limits tasks running at once across VMs; a busy VM does not starve others', async () => {
  const e = engine({ concurrency: [2] });
  let running = 0;
  let maxRunning = 0;
  const order: string[] = [];
  const ids: string[] = [];
  const job = (vm: string) => async (ctx: TaskContext) => {
    running++;
    maxRunning = Math.max(maxRunning, running);
    order.push(vm);
    await ctx.sleep(5);
    running--;
  };
  for (let i = 0; i < 4; i++) ids.push(e.submit({ method: 'VM.op', vm: 'busy', run: job('busy') }));
  for (const vm of ['v1', 'v2', 'v3']) ids.push(e.submit({ method: 'VM.op', vm, run: job(vm) }));
  await Promise.all(ids.map((id) => e.wait(id)));
  assert.equal(maxRunning, 2);
  // The 3 other VMs ran before the busy VM's last tasks: it held at most one global slot request at a time.
  assert.ok(order.indexOf('v3') < order.lastIndexOf('busy'), order.join(','));
  e.close();
});

test('cancel of a queued task: cancelled at once, never runs', async () => {
  const e = engine();
  let ran = false;
  const first = e.submit({ method: 'VM.op', vm: 'a', run: (ctx) => ctx.sleep(100) });
  const second = e.submit({ method: 'VM.op', vm: 'a', run: async () => void (ran = true) });
  assert.equal(e.stat(second).state, 'pending');
  e.cancel(second);
  const rec = e.stat(second);
  assert.equal(rec.state, 'cancelled');
  assert.equal(rec.error!.data!.name, 'CANCELLED');
  assert.ok(rec.finished);
  await e.wait(first);
  await sleep(5);
  assert.equal(ran, false);
  e.cancel(first); // finished: no-op
  assert.equal(e.stat(first).state, 'completed');
  e.close();
});

test('cancel of a running task in a wait is honoured at once (well within 1 s)', async () => {
  const e = engine();
  const never = new Promise<void>(() => {});
  const a = e.submit({ method: 'VM.op', vm: 'a', run: (ctx) => ctx.sleep(60_000) });
  const b = e.submit({ method: 'VM.op', vm: 'b', run: (ctx) => ctx.wait(never) });
  const c = e.submit({
    method: 'VM.op',
    vm: 'c',
    run: async (ctx) => {
      // A hand-written wait on the signal, as backend code does it.
      await new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)));
    },
  });
  await sleep(20);
  for (const id of [a, b, c]) assert.equal(e.stat(id).state, 'running');
  const t0 = Date.now();
  for (const id of [a, b, c]) e.cancel(id);
  const recs = await Promise.all([a, b, c].map((id) => e.wait(id)));
  assert.ok(Date.now() - t0 < 1000);
  for (const r of recs) {
    assert.equal(r.state, 'cancelled');
    assert.equal(r.error!.code, 1003);
  }
  e.close();
});

test('a task that ignores its cancel for over 1 s is counted and logged', async () => {
  const lines: string[] = [];
  const e = new TaskEngine({ logger: pino({ level: 'warn' }, { write: (l: string) => void lines.push(l) }) });
  const id = e.submit({ method: 'VM.op', vm: 'a', run: () => new Promise((r) => setTimeout(r, 1300)) });
  await sleep(10);
  e.cancel(id);
  const r = await e.wait(id);
  assert.equal(r.state, 'completed', 'it finished its work despite the cancel: its state says what happened');
  assert.equal(e.slowCancels, 1);
  assert.ok(lines.some((l) => /did not end within 1 s/.test(l) && l.includes(id)));
  e.close();
});

test('a failing task keeps its ApiError; any other error becomes INTERNAL', async () => {
  const e = engine();
  const a = e.submit({ method: 'VM.op', run: async () => { throw Errors.badPowerState('halted', ['running']); } });
  const b = e.submit({ method: 'VM.op', run: async () => { throw new TypeError('oops'); } });
  const ra = await e.wait(a);
  assert.equal(ra.state, 'failed');
  assert.deepEqual(ra.error, { code: 1002, message: 'power state is halted; this needs running', data: { name: 'BAD_POWER_STATE', actual: 'halted', expected: ['running'] } });
  const rb = await e.wait(b);
  assert.equal(rb.error!.data!.name, 'INTERNAL');
  assert.match(rb.error!.message, /oops/);
  e.close();
});

test('wait with a timeout returns the running task; stat/destroy/list; unknown ids are DOES_NOT_EXIST', async () => {
  const e = engine();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const id = e.submit({ method: 'VM.start', vm: 'v', run: async (ctx) => { ctx.progress(0.25); await ctx.wait(gate); return { ok: true }; } });
  const t0 = Date.now();
  const r = await e.wait(id, 0.1);
  assert.ok(Date.now() - t0 >= 90);
  assert.equal(r.state, 'running');
  assert.equal(r.progress, 0.25);
  assert.equal(r.vm, 'v');
  assert.equal(r.method, 'VM.start');
  assert.throws(() => e.destroy(id), (err: ApiError) => err.data.name === 'BAD_TASK_STATE' && err.data.actual === 'running');
  release();
  const done = await e.wait(id, 5);
  assert.equal(done.state, 'completed');
  assert.equal(done.progress, 1);
  assert.deepEqual(done.result, { ok: true });
  assert.ok(Date.parse(done.finished!) >= Date.parse(done.created));
  assert.equal(e.list().length, 1);
  e.destroy(id);
  assert.equal(e.list().length, 0);
  for (const f of [() => e.stat(id), () => e.cancel(id), () => e.destroy(id)]) {
    assert.throws(f, (err: ApiError) => err.code === 1000 && err.data.name === 'DOES_NOT_EXIST');
  }
  await assert.rejects(e.wait('nope'), (err: ApiError) => err.data.name === 'DOES_NOT_EXIST');
  e.close();
});

test('wait ends early when its signal aborts (client went away)', async () => {
  const e = engine();
  const id = e.submit({ method: 'VM.op', run: (ctx) => ctx.sleep(5000) });
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 30);
  const r = await e.wait(id, undefined, ac.signal);
  assert.equal(r.state, 'running');
  e.cancel(id);
  await e.wait(id);
  e.close();
});

test('finished tasks are garbage-collected after the TTL and beyond maxFinished', async () => {
  const e = engine({ finishedTtlMs: 100 });
  const id = e.submit({ method: 'VM.op', run: async () => {} });
  await e.wait(id);
  assert.equal(e.stat(id).state, 'completed');
  await sleep(300);
  assert.throws(() => e.stat(id), /does not exist/);
  e.close();
  const f = engine({ maxFinished: 3 });
  const ids: string[] = [];
  for (let i = 0; i < 10; i++) ids.push(f.submit({ method: 'VM.op', run: async () => {} }));
  await Promise.all(ids.map((x) => f.wait(x)));
  (f as unknown as { collectGarbage(): void }).collectGarbage();
  assert.deepEqual(f.list().map((t) => t.id).sort(), ids.slice(-3).sort());
  f.close();
});

test('levels: a task waits for work it spawned one level down, even with one slot per level (no deadlock)', async () => {
  const e = engine({ concurrency: [1, 1] });
  const order: string[] = [];
  const parents = ['p1', 'p2'].map((name) =>
    e.submit({
      method: 'VM.migrate',
      vm: name,
      run: async (ctx) => {
        order.push(`${name} start`);
        // The receiving half of a localhost migration on the same VM id: level 1 has its own VM queue and slots.
        const child = ctx.spawn({ method: 'VM.receive', vm: name, run: async (c) => { await c.sleep(5); order.push(`${name} child`); return 7; } });
        const rec = await ctx.waitTask(child);
        order.push(`${name} end`);
        return rec.result;
      },
    }),
  );
  const recs = await Promise.all(parents.map((id) => e.wait(id, 5)));
  for (const r of recs) {
    assert.equal(r.state, 'completed');
    assert.equal(r.result, 7);
    assert.equal(r.subtasks.length, 1);
    assert.match(r.subtasks[0]!.name, /^VM.receive:/);
    assert.equal(r.subtasks[0]!.state, 'completed');
  }
  assert.deepEqual(order, ['p1 start', 'p1 child', 'p1 end', 'p2 start', 'p2 child', 'p2 end']);
  e.close();
});

test('levels: cancelling a task cancels the work it spawned', async () => {
  const e = engine({ concurrency: [2, 2] });
  let child = '';
  const parent = e.submit({
    method: 'VM.migrate',
    vm: 'v',
    run: async (ctx) => {
      child = ctx.spawn({ method: 'VM.receive', vm: 'v', run: (c) => c.sleep(60_000) });
      await ctx.waitTask(child);
    },
  });
  while (!child || e.stat(child).state !== 'running') await sleep(2);
  e.cancel(parent);
  const [p, c] = await Promise.all([e.wait(parent, 2), e.wait(child, 2)]);
  assert.equal(p.state, 'cancelled');
  assert.equal(c.state, 'cancelled');
  assert.equal(p.subtasks[0]!.state, 'cancelled');
  e.close();
});

test('levels: waiting for a task of the same or an upper level is refused (it could deadlock)', async () => {
  const e = engine({ concurrency: [4, 4] });
  const other = e.submit({ method: 'VM.op', vm: 'x', run: (ctx) => ctx.sleep(50) });
  const id = e.submit({ method: 'VM.op', vm: 'y', run: (ctx) => ctx.waitTask(other) });
  const r = await e.wait(id);
  assert.equal(r.state, 'failed');
  assert.match(r.error!.message, /may not wait for task .* \(level 0\)/);
  assert.throws(() => e.submit({ method: 'VM.op', level: 2, run: async () => {} }), /level 2 does not exist/);
  await e.wait(other);
  e.close();
});

test('task state changes are announced as task updates (coalesced)', async () => {
  const updates = new UpdatesLog();
  const e = engine({ updates });
  const from = updates.head;
  const id = e.submit({ method: 'VM.op', run: async (ctx) => { for (let i = 1; i <= 10; i++) ctx.progress(i / 10); } });
  await e.wait(id);
  const got = updates.snapshot(from);
  assert.deepEqual(got.updates, [{ kind: 'task', id }]);
  // submit, start, one for the burst of 10 progress steps (announced once per turn), finish.
  assert.equal(got.next - from, 4);
  e.destroy(id);
  assert.deepEqual(updates.snapshot(got.next).updates, [{ kind: 'task', id }], 'destroy is announced too');
  e.close();
});

test('progress is clamped and never goes backwards', async () => {
  const e = engine();
  const seen: number[] = [];
  const id = e.submit({
    method: 'VM.op',
    run: async (ctx) => {
      for (const f of [0.5, 0.2, 7, -1, NaN]) {
        ctx.progress(f);
        seen.push(e.stat(ctx.taskId).progress);
      }
    },
  });
  await e.wait(id);
  assert.deepEqual(seen, [0.5, 0.5, 1, 1, 1]);
  e.close();
});
