// runAtoms: order, progress by weight, subtasks, undo in reverse on failure, cancel at every atom boundary (via the
// engine's cancel trigger) leaving nothing behind, cancel inside a wait, failing undos.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { TaskEngine } from '../../src/tasks/engine.js';
import { runAtoms } from '../../src/tasks/atoms.js';
import { Errors } from '../../src/rpc/errors.js';
import type { Atom, TaskContext } from '../../src/tasks/types.js';

const logger = pino({ level: 'silent' });

/** Atoms that each acquire a named resource; undo releases it. `log` records every do/undo. */
function resourceAtoms(names: string[], held: Set<string>, log: string[], opts: { failAt?: string; waitIn?: string } = {}): Atom[] {
  return names.map((name, i) => ({
    name,
    weight: i + 1,
    do: async (ctx: TaskContext) => {
      log.push(`do ${name}`);
      if (opts.waitIn === name) await ctx.sleep(60_000);
      if (opts.failAt === name) throw Errors.backendError(`${name} failed`);
      held.add(name);
    },
    undo: async () => {
      log.push(`undo ${name}`);
      held.delete(name);
    },
  }));
}

const NAMES = ['create', 'build', 'xenstore', 'devices', 'unpause'];

test('atoms run in order; progress is split by weight; each atom is a subtask', async () => {
  const e = new TaskEngine({ logger });
  const held = new Set<string>();
  const log: string[] = [];
  const progressAt: number[] = [];
  const atoms = resourceAtoms(NAMES, held, log).map((a) => ({
    ...a,
    do: async (ctx: TaskContext) => {
      progressAt.push(e.stat(ctx.taskId).progress);
      ctx.progress(0.5); // half way through this atom
      await a.do(ctx);
    },
  }));
  const id = e.submit({ method: 'VM.start', vm: 'v', run: (ctx) => runAtoms(ctx, atoms) });
  const r = await e.wait(id);
  assert.equal(r.state, 'completed');
  assert.deepEqual(log, NAMES.map((n) => `do ${n}`));
  assert.deepEqual([...held].sort(), [...NAMES].sort());
  // weights 1..5, total 15: atom k starts at sum(1..k)/15 (the previous atom's own 0.5 report is below that).
  assert.deepEqual(progressAt, [0, 1, 3, 6, 10].map((w) => Math.round((w / 15) * 10000) / 10000));
  assert.deepEqual(r.subtasks, NAMES.map((name) => ({ name, state: 'completed' })));
  assert.equal(e.cancelPointsSeen(id), NAMES.length);
  e.close();
});

test('a failing atom: undos of the done atoms run in reverse, then the error is rethrown', async () => {
  const e = new TaskEngine({ logger });
  const held = new Set<string>();
  const log: string[] = [];
  const id = e.submit({ method: 'VM.start', run: (ctx) => runAtoms(ctx, resourceAtoms(NAMES, held, log, { failAt: 'devices' })) });
  const r = await e.wait(id);
  assert.equal(r.state, 'failed');
  assert.equal(r.error!.data!.name, 'BACKEND_ERROR');
  assert.deepEqual(log, ['do create', 'do build', 'do xenstore', 'do devices', 'undo xenstore', 'undo build', 'undo create']);
  assert.equal(held.size, 0);
  assert.deepEqual(
    r.subtasks.map((s) => `${s.name}:${s.state}`),
    ['create:completed', 'build:completed', 'xenstore:completed', 'devices:failed', 'undo:xenstore:completed', 'undo:build:completed', 'undo:create:completed'],
  );
  e.close();
});

test('undoOnOwnFailure runs the failing atom’s own undo too; a failing undo does not stop the others', async () => {
  const e = new TaskEngine({ logger });
  const log: string[] = [];
  const atoms: Atom[] = [
    { name: 'a', do: async () => void log.push('do a'), undo: async () => void log.push('undo a') },
    { name: 'b', do: async () => void log.push('do b'), undo: async () => { log.push('undo b'); throw new Error('undo b broke'); } },
    { name: 'c', undoOnOwnFailure: true, do: async () => { log.push('do c'); throw Errors.timeout('guest', 1); }, undo: async () => void log.push('undo c') },
  ];
  const id = e.submit({ method: 'VM.op', run: (ctx) => runAtoms(ctx, atoms) });
  const r = await e.wait(id);
  assert.equal(r.error!.data!.name, 'TIMEOUT');
  assert.deepEqual(log, ['do a', 'do b', 'do c', 'undo c', 'undo b', 'undo a']);
  assert.equal(r.subtasks.find((s) => s.name === 'undo:b')!.state, 'failed');
  e.close();
});

test('cancel at every atom boundary: undone in reverse, nothing held, CANCELLED; past the last one it completes', async () => {
  const e = new TaskEngine({ logger });
  for (let at = 0; at <= NAMES.length; at++) {
    const held = new Set<string>();
    const log: string[] = [];
    e.setCancelTrigger({ at, method: 'VM.start' });
    const id = e.submit({ method: 'VM.start', vm: 'v', run: (ctx) => runAtoms(ctx, resourceAtoms(NAMES, held, log)) });
    const r = await e.wait(id, 5);
    const done = NAMES.slice(0, at);
    if (at < NAMES.length) {
      assert.equal(r.state, 'cancelled', `at ${at}`);
      assert.equal(r.error!.data!.name, 'CANCELLED');
      assert.deepEqual(log, [...done.map((n) => `do ${n}`), ...[...done].reverse().map((n) => `undo ${n}`)], `at ${at}`);
      assert.equal(held.size, 0, `at ${at}: nothing left behind`);
      assert.equal(e.cancelPointsSeen(id), at + 1);
    } else {
      assert.equal(r.state, 'completed', 'the trigger beyond the last boundary never fires');
      assert.equal(held.size, NAMES.length);
    }
  }
  e.setCancelTrigger(null);
  e.close();
});

test('cancel inside an atom’s wait: within 1 s, done atoms undone (the waiting atom’s own undo only if it asks)', async () => {
  const e = new TaskEngine({ logger });
  const held = new Set<string>();
  const log: string[] = [];
  const id = e.submit({ method: 'VM.shutdown', vm: 'v', run: (ctx) => runAtoms(ctx, resourceAtoms(NAMES, held, log, { waitIn: 'xenstore' })) });
  while (!log.includes('do xenstore')) await new Promise((r) => setTimeout(r, 2));
  const t0 = Date.now();
  e.cancel(id);
  const r = await e.wait(id, 5);
  assert.ok(Date.now() - t0 < 1000);
  assert.equal(r.state, 'cancelled');
  assert.deepEqual(log, ['do create', 'do build', 'do xenstore', 'undo build', 'undo create']);
  assert.equal(r.subtasks.find((s) => s.name === 'xenstore')!.state, 'cancelled');
  assert.equal(held.size, 0);
  e.close();
});

test('undo runs with a live signal even though the task was cancelled', async () => {
  const e = new TaskEngine({ logger });
  let undoSignalAborted: boolean | undefined;
  let undoSlept = false;
  const atoms: Atom[] = [
    {
      name: 'a',
      do: async () => {},
      undo: async (ctx) => {
        undoSignalAborted = ctx.signal.aborted;
        await ctx.sleep(5); // an undo may wait (e.g. for a domain to die)
        undoSlept = true;
      },
    },
    { name: 'b', do: (ctx) => ctx.sleep(60_000) },
  ];
  const id = e.submit({ method: 'VM.op', run: (ctx) => runAtoms(ctx, atoms) });
  await new Promise((r) => setTimeout(r, 20));
  e.cancel(id);
  const r = await e.wait(id, 5);
  assert.equal(r.state, 'cancelled');
  assert.equal(undoSignalAborted, false);
  assert.equal(undoSlept, true);
  e.close();
});

test('nested atom lists fill their parent atom’s slice of the progress bar; cancel points are counted across them', async () => {
  const e = new TaskEngine({ logger });
  const seen: number[] = [];
  const inner: Atom[] = [1, 2].map((i) => ({ name: `inner${i}`, do: async (ctx) => void seen.push(e.stat(ctx.taskId).progress) }));
  const outer: Atom[] = [
    { name: 'first', do: async () => {} },
    { name: 'devices', do: (ctx) => runAtoms(ctx, inner) },
  ];
  const id = e.submit({ method: 'VM.op', run: (ctx) => runAtoms(ctx, outer) });
  const r = await e.wait(id);
  assert.equal(r.state, 'completed');
  assert.deepEqual(seen, [0.5, 0.75]);
  assert.equal(e.cancelPointsSeen(id), 4);
  e.close();
});

test('runAtoms refuses a context the engine did not make; a bad weight is a TypeError', async () => {
  await assert.rejects(runAtoms({} as TaskContext, []), /needs the TaskContext/);
  const e = new TaskEngine({ logger });
  const id = e.submit({ method: 'VM.op', run: (ctx) => runAtoms(ctx, [{ name: 'x', weight: -1, do: async () => {} }]) });
  const r = await e.wait(id);
  assert.equal(r.state, 'failed');
  assert.match(r.error!.message, /weight must be/);
  e.close();
});
