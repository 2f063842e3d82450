// The task engine: every operation runs as a task, through queues.
//
// Queues (p-queue 9). Each task has a level (0 for API operations). Per level there is:
//   - one queue per VM, concurrency 1: operations on one VM run one at a time, in submission order;
//   - one global queue with a concurrency bound: how many tasks of that level run at once across VMs.
// A task first takes its turn in its VM's queue, then a slot in the global queue. A VM therefore has at most one
// task in the global queue at any time, so a busy VM cannot starve the others (FIFO over VMs = round robin).
//
// Deadlock avoidance. xenopsd deadlocked when work that held a worker waited for work that needed a worker from the
// same pool (parallel atoms, localhost migration: hence its separate redirectors). Here a task may only wait for a
// task of a strictly higher level number (ctx.spawn submits at level+1; ctx.waitTask refuses anything else with
// INTERNAL). Levels are totally ordered and each has its own global bound and its own VM queues, so a chain of waits
// always ends at a task that waits for nothing and holds no slot another level needs: no cycle, no deadlock.
// The same VM can have a level-0 task and a level-1 task at once (e.g. the receiving half of a localhost migration);
// that is the point of the level.
//
// Tasks live in memory only (lost on restart, as in xenopsd). Finished tasks are forgotten after finishedTtlMs, or
// oldest-first beyond maxFinished, or when a client calls TASK.destroy.

import { randomUUID } from 'node:crypto';
import PQueue from 'p-queue';
import type { Logger } from 'pino';
import type { Subtask, TaskRecord, TaskState } from '../../api/v1/types.js';
import { Errors, toApiError } from '../rpc/errors.js';
import { abortable, abortableSleep, TaskCtx, type TaskHandle } from './context.js';
import type { CancelTrigger, TaskEngineOptions, TaskWork } from './types.js';

/** Reason of the internal aborts that end a wait (nobody reads it). */
const WAIT_OVER = Symbol('wait over');

const FINISHED: ReadonlySet<TaskState> = new Set(['completed', 'failed', 'cancelled']);

export function isFinished(state: TaskState): boolean {
  return FINISHED.has(state);
}

interface Level {
  global: PQueue;
  perVm: Map<string, PQueue>;
}

class TaskEntry implements TaskHandle {
  readonly controller = new AbortController();
  readonly record: TaskRecord;
  readonly logger: Logger;
  finishedAtMs = 0;
  cancelPoints = 0;
  /** Subtask of the parent that mirrors this task's state (spawned tasks). */
  parentSubtask?: Subtask;
  /** Tasks this one spawned: cancelling this one cancels them. */
  readonly children: TaskEntry[] = [];
  private resolveDone!: () => void;
  readonly done = new Promise<void>((resolve) => (this.resolveDone = resolve));

  constructor(
    private readonly engine: TaskEngine,
    readonly id: string,
    readonly level: number,
    readonly work: TaskWork,
    logger: Logger,
  ) {
    this.record = { id, method: work.method, state: 'pending', progress: 0, created: new Date().toISOString(), subtasks: [] };
    if (work.vm !== undefined) this.record.vm = work.vm;
    this.logger = logger.child({ taskId: id, vm: work.vm, method: work.method });
  }

  get vm(): string | undefined {
    return this.work.vm;
  }

  get undoTimeoutMs(): number {
    return this.engine.undoTimeout;
  }

  setProgress(fraction: number): void {
    if (fraction <= this.record.progress || isFinished(this.record.state)) return;
    this.record.progress = Math.round(fraction * 10000) / 10000;
    this.announceSoon();
  }

  addSubtask(name: string): Subtask {
    const subtask: Subtask = { name, state: 'running' };
    this.record.subtasks.push(subtask);
    this.announceSoon();
    return subtask;
  }

  setSubtaskState(subtask: Subtask, state: TaskState): void {
    subtask.state = state;
    this.announceSoon();
  }

  private announcePending = false;
  /** Progress and subtask changes come in bursts (several per atom): announce them once per turn. State changes
   *  (start, end, destroy) are announced at once by the engine. */
  private announceSoon(): void {
    if (this.announcePending) return;
    this.announcePending = true;
    queueMicrotask(() => {
      this.announcePending = false;
      this.engine.announce(this.id);
    });
  }

  cancelPoint(atomName: string): number {
    const point = this.cancelPoints++;
    this.engine.atCancelPoint(this, point, atomName);
    return point;
  }

  spawn(work: Omit<TaskWork, 'level'>): string {
    const id = this.engine.submit({ ...work, level: this.level + 1 });
    const child = this.engine.entry(id)!;
    this.children.push(child);
    child.parentSubtask = this.addSubtask(`${work.method}:${id}`);
    child.parentSubtask.state = child.record.state;
    return id;
  }

  async waitTask(id: string, signal: AbortSignal): Promise<TaskRecord> {
    const target = this.engine.entry(id);
    if (!target) throw Errors.doesNotExist('task', id);
    if (target.level <= this.level) {
      throw Errors.internal(
        `task ${this.id} (level ${this.level}) may not wait for task ${id} (level ${target.level}): ` +
          'a task may only wait for work of a higher level (see src/tasks/engine.ts)',
      );
    }
    await abortable(target.done, signal);
    return this.engine.snapshot(target);
  }

  finish(state: TaskState, outcome: { result?: unknown; error?: unknown }): void {
    const r = this.record;
    r.state = state;
    r.finished = new Date().toISOString();
    if (state === 'completed') {
      r.progress = 1;
      if (outcome.result !== undefined) r.result = outcome.result;
    } else {
      r.error = (state === 'cancelled' ? Errors.cancelled() : toApiError(outcome.error)).toJSON();
    }
    if (this.parentSubtask) this.parentSubtask.state = state;
    this.finishedAtMs = Date.now();
    this.resolveDone();
  }
}

export class TaskEngine {
  private readonly tasks = new Map<string, TaskEntry>();
  private readonly levels: Level[];
  private readonly finishedOrder: TaskEntry[] = [];
  private readonly logger: Logger;
  private readonly finishedTtlMs: number;
  private readonly maxFinished: number;
  private readonly undoTimeoutMs: number;
  private readonly updates?: { add(kind: 'task', id: string): void };
  private readonly gcTimer: NodeJS.Timeout;
  private cancelTrigger: CancelTrigger | null = null;
  /** Tasks that took more than 1 s to end after a cancel (each is also logged as a warning). */
  slowCancels = 0;
  /** Test hook: called at every cancel point of every task. */
  onCancelPoint?: (info: { taskId: string; point: number; atom: string; method: string; vm?: string }) => void;

  constructor(options: TaskEngineOptions) {
    this.logger = options.logger;
    this.finishedTtlMs = options.finishedTtlMs ?? 10 * 60_000;
    this.maxFinished = options.maxFinished ?? 10_000;
    this.undoTimeoutMs = options.undoTimeoutMs ?? 60_000;
    this.updates = options.updates;
    const bounds = options.concurrency ?? [16, 16, 16, 16];
    if (bounds.length === 0 || bounds.some((n) => !Number.isInteger(n) || n < 1)) {
      throw new Error(`TaskEngine: concurrency must be a non-empty list of integers >= 1, got ${JSON.stringify(bounds)}`);
    }
    this.levels = bounds.map((n) => ({ global: new PQueue({ concurrency: n }), perVm: new Map() }));
    this.gcTimer = setInterval(() => this.collectGarbage(), Math.max(50, Math.min(30_000, this.finishedTtlMs / 2)));
    this.gcTimer.unref();
  }

  /** Queue a task; returns its id at once. */
  submit<R>(work: TaskWork<R>): string {
    const level = work.level ?? 0;
    const queues = this.levels[level];
    if (!queues || !Number.isInteger(level)) {
      throw Errors.internal(`task level ${level} does not exist (levels 0..${this.levels.length - 1})`);
    }
    const id = randomUUID();
    const entry = new TaskEntry(this, id, level, work as TaskWork, this.logger);
    this.tasks.set(id, entry);
    this.announce(id);
    const runGlobal = () =>
      queues.global.add(() => this.execute(entry)).catch((err: unknown) => entry.logger.error({ err }, 'task engine fault'));
    if (work.vm === undefined) {
      void runGlobal();
    } else {
      let vmQueue = queues.perVm.get(work.vm);
      if (!vmQueue) {
        vmQueue = new PQueue({ concurrency: 1 });
        queues.perVm.set(work.vm, vmQueue);
        const vm = work.vm;
        const q = vmQueue;
        q.on('idle', () => {
          if (q.size === 0 && q.pending === 0 && queues.perVm.get(vm) === q) queues.perVm.delete(vm);
        });
      }
      void vmQueue.add(runGlobal);
    }
    return id;
  }

  private async execute(entry: TaskEntry): Promise<void> {
    if (entry.record.state !== 'pending') return; // cancelled while queued
    entry.record.state = 'running';
    if (entry.parentSubtask) entry.parentSubtask.state = 'running';
    this.announce(entry.id);
    const ctx = new TaskCtx(entry);
    entry.logger.debug('task started');
    try {
      const result = await entry.work.run(ctx);
      entry.finish('completed', { result });
      entry.logger.info('task completed');
    } catch (err) {
      if (entry.controller.signal.aborted) {
        entry.finish('cancelled', {});
        entry.logger.info('task cancelled');
      } else {
        entry.finish('failed', { error: err });
        const e = toApiError(err);
        if (e.data.name === 'INTERNAL') entry.logger.error({ err }, 'task failed');
        else entry.logger.info({ error: e.toJSON() }, 'task failed');
      }
    }
    this.finished(entry);
  }

  private finished(entry: TaskEntry): void {
    this.finishedOrder.push(entry);
    this.announce(entry.id);
    if (this.finishedOrder.length > this.maxFinished * 2) this.collectGarbage();
  }

  /** @internal announce a state change of a task as an update. */
  announce(id: string): void {
    this.updates?.add('task', id);
  }

  /** @internal */
  entry(id: string): TaskEntry | undefined {
    return this.tasks.get(id);
  }

  /** @internal a copy of the record, safe to hand out. */
  snapshot(entry: TaskEntry): TaskRecord {
    const r = entry.record;
    const copy: TaskRecord = { ...r, subtasks: r.subtasks.map((s) => ({ ...s })) };
    if (r.error) copy.error = { ...r.error };
    return copy;
  }

  /** @internal called by a task at each cancel point. */
  atCancelPoint(entry: TaskEntry, point: number, atom: string): void {
    this.onCancelPoint?.({ taskId: entry.id, point, atom, method: entry.work.method, vm: entry.vm });
    const t = this.cancelTrigger;
    if (t && t.at === point && (t.method === undefined || t.method === entry.work.method) && (t.vm === undefined || t.vm === entry.vm)) {
      this.cancelTrigger = null;
      entry.logger.info({ point, atom }, 'test cancel trigger fired');
      this.cancel(entry.id);
    }
  }

  /**
   * Test hook: cancel the next matching task when it reaches cancel point `at` (0 = before its first atom).
   * One-shot; null clears it. Tests loop at = 0, 1, 2, ... until the operation completes without being cancelled.
   */
  setCancelTrigger(trigger: CancelTrigger | null): void {
    this.cancelTrigger = trigger;
  }

  /** How many cancel points (atom boundaries) a task has passed. */
  cancelPointsSeen(id: string): number {
    return this.require(id).cancelPoints;
  }

  private require(id: string): TaskEntry {
    const entry = this.tasks.get(id);
    if (!entry) throw Errors.doesNotExist('task', id);
    return entry;
  }

  stat(id: string): TaskRecord {
    return this.snapshot(this.require(id));
  }

  list(): TaskRecord[] {
    return [...this.tasks.values()].map((e) => this.snapshot(e));
  }

  /** The task when it has finished, or as it is after timeoutS (default: no limit) or when `signal` aborts. */
  async wait(id: string, timeoutS?: number, signal?: AbortSignal): Promise<TaskRecord> {
    const entry = this.require(id);
    if (!isFinished(entry.record.state) && timeoutS === undefined && signal === undefined) {
      await entry.done;
    } else if (!isFinished(entry.record.state)) {
      const stop = new AbortController();
      // A reason of our own: abort() without one builds a DOMException with a stack, per wait.
      const onAbort = () => stop.abort(WAIT_OVER);
      signal?.addEventListener('abort', onAbort, { once: true });
      const waits: Promise<unknown>[] = [entry.done];
      if (timeoutS !== undefined) waits.push(abortableSleep(timeoutS * 1000, stop.signal).catch(() => {}));
      if (signal) waits.push(new Promise((resolve) => stop.signal.addEventListener('abort', resolve, { once: true })));
      try {
        await Promise.race(waits);
      } finally {
        signal?.removeEventListener('abort', onAbort);
        stop.abort(WAIT_OVER);
      }
    }
    return this.snapshot(entry);
  }

  /** Ask a task to stop. A queued task ends cancelled at once; a running one when its code reaches a cancel point or
   *  wait (within 1 s by contract). Tasks it spawned are cancelled too. No-op on a finished task. */
  cancel(id: string): void {
    const entry = this.require(id);
    if (isFinished(entry.record.state)) return;
    entry.logger.info('cancel requested');
    if (!entry.controller.signal.aborted) {
      entry.controller.abort(Errors.cancelled());
      // The contract is an end within 1 s; a task that takes longer has a wait that ignores its signal: say so.
      const watchdog = setTimeout(() => {
        if (isFinished(entry.record.state)) return;
        this.slowCancels++;
        entry.logger.warn('task did not end within 1 s of its cancel: some wait ignores ctx.signal');
      }, 1000);
      watchdog.unref();
      void entry.done.then(() => clearTimeout(watchdog));
    }
    if (entry.record.state === 'pending') {
      entry.finish('cancelled', {});
      this.finished(entry);
    }
    // Work spawned for this task has no one to wait for it any more.
    for (const child of entry.children) if (this.tasks.get(child.id) === child) this.cancel(child.id);
  }

  /** Forget a finished task. */
  destroy(id: string): void {
    const entry = this.require(id);
    if (!isFinished(entry.record.state)) throw Errors.badTaskState(entry.record.state, ['completed', 'failed', 'cancelled']);
    this.tasks.delete(id);
    this.announce(id);
  }

  /** Undo timeout for runAtoms (ms). */
  get undoTimeout(): number {
    return this.undoTimeoutMs;
  }

  /** Resolves when no task of any level is queued or running. */
  async drain(): Promise<void> {
    for (;;) {
      const busy = [...this.tasks.values()].filter((e) => !isFinished(e.record.state));
      if (busy.length === 0) return;
      await Promise.all(busy.map((e) => e.done));
    }
  }

  /** Stop the garbage-collection timer (tasks still running keep running). */
  close(): void {
    clearInterval(this.gcTimer);
  }

  private collectGarbage(): void {
    const expiry = Date.now() - this.finishedTtlMs;
    let live = this.finishedOrder.filter((e) => this.tasks.get(e.id) === e);
    let drop = 0;
    while (drop < live.length && (live[drop]!.finishedAtMs <= expiry || live.length - drop > this.maxFinished)) drop++;
    for (let i = 0; i < drop; i++) {
      this.tasks.delete(live[i]!.id);
      this.announce(live[i]!.id); // a client following the task learns it is gone
    }
    live = live.slice(drop);
    this.finishedOrder.length = 0;
    this.finishedOrder.push(...live);
  }
}
