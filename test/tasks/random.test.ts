// Randomised engine run (seeded): many tasks of atoms on a few VMs with random failures and cancels at random times.
// Invariants: one task per VM at a time in submission order, the global bound is never exceeded, every task ends,
// and every task that did not complete left nothing held (its undos ran in reverse).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { TaskEngine } from '../../src/tasks/engine.js';
import { runAtoms } from '../../src/tasks/atoms.js';
import { Errors } from '../../src/rpc/errors.js';
import type { Atom } from '../../src/tasks/types.js';

function rng(seed: number): () => number {
  // mulberry32
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

for (const seed of [1, 2, 3]) {
  test(`random tasks, failures and cancels keep every invariant (seed ${seed})`, async () => {
    const random = rng(seed);
    const BOUND = 3;
    const e = new TaskEngine({ logger: pino({ level: 'silent' }), concurrency: [BOUND] });
    const vms = ['a', 'b', 'c', 'd', 'e'];
    const runningPerVm = new Map<string, number>();
    const startedOrder = new Map<string, number[]>();
    let running = 0;
    let maxRunning = 0;
    const held = new Map<number, Set<string>>();
    const undoLogs = new Map<number, string[]>();
    const submitted: { id: string; n: number; vm: string }[] = [];
    const violations: string[] = [];

    for (let n = 0; n < 120; n++) {
      const vm = vms[Math.floor(random() * vms.length)]!;
      const natoms = 1 + Math.floor(random() * 5);
      const failAt = random() < 0.2 ? Math.floor(random() * natoms) : -1;
      const mine = new Set<string>();
      const undoLog: string[] = [];
      held.set(n, mine);
      undoLogs.set(n, undoLog);
      const atoms: Atom[] = Array.from({ length: natoms }, (_, i) => ({
        name: `a${i}`,
        do: async (ctx) => {
          await ctx.sleep(Math.floor(random() * 3));
          if (i === failAt) throw Errors.backendError('injected');
          mine.add(`a${i}`);
        },
        undo: async () => {
          undoLog.push(`a${i}`);
          mine.delete(`a${i}`);
        },
      }));
      const id = e.submit({
        method: 'VM.op',
        vm,
        run: async (ctx) => {
          running++;
          maxRunning = Math.max(maxRunning, running);
          runningPerVm.set(vm, (runningPerVm.get(vm) ?? 0) + 1);
          if (runningPerVm.get(vm) !== 1) violations.push(`two tasks at once on ${vm}`);
          (startedOrder.get(vm) ?? startedOrder.set(vm, []).get(vm)!).push(n);
          try {
            await runAtoms(ctx, atoms);
          } finally {
            running--;
            runningPerVm.set(vm, runningPerVm.get(vm)! - 1);
          }
        },
      });
      submitted.push({ id, n, vm });
      if (random() < 0.25) {
        const victim = submitted[Math.floor(random() * submitted.length)]!;
        setTimeout(() => e.cancel(victim.id), Math.floor(random() * 20));
      }
      if (random() < 0.3) await new Promise((r) => setTimeout(r, Math.floor(random() * 3)));
    }
    const records = await Promise.all(submitted.map((s) => e.wait(s.id, 10)));
    assert.deepEqual(violations, []);
    assert.ok(maxRunning <= BOUND, `global bound exceeded: ${maxRunning}`);
    assert.ok(maxRunning >= 2, 'VMs ran in parallel');
    for (const [vm, order] of startedOrder) {
      const expected = submitted.filter((s) => s.vm === vm).map((s) => s.n).filter((n) => order.includes(n));
      assert.deepEqual(order, expected, `submission order on ${vm}`);
    }
    const states = new Map<string, number>();
    records.forEach((r, i) => {
      states.set(r.state, (states.get(r.state) ?? 0) + 1);
      const n = submitted[i]!.n;
      if (r.state === 'completed') return;
      assert.ok(r.state === 'failed' || r.state === 'cancelled', `task ${n} ended: ${r.state}`);
      assert.equal(held.get(n)!.size, 0, `task ${n} (${r.state}) left ${[...held.get(n)!]}`);
      const log = undoLogs.get(n)!;
      assert.deepEqual(log, [...log].sort().reverse(), `task ${n}: undos in reverse order`);
    });
    assert.ok((states.get('completed') ?? 0) > 0 && (states.get('failed') ?? 0) > 0 && (states.get('cancelled') ?? 0) > 0, JSON.stringify([...states]));
    e.close();
  });
}
