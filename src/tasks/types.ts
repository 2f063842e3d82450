// Types of the task engine: what a task's code receives (TaskContext) and what an operation is made of (Atom).
import type { Logger } from 'pino';
import type { TaskRecord } from '../../api/v1/types.js';

export type { TaskRecord };

export interface TaskContext {
  readonly taskId: string;
  readonly vm: string | undefined;
  /** Aborted (reason: ApiError CANCELLED) when the task is cancelled. Every wait must honour it. */
  readonly signal: AbortSignal;
  /** pino child logger with taskId and vm. */
  readonly logger: Logger;
  /** Report progress, 0..1 (clamped; never goes backwards). */
  progress(fraction: number): void;
  /** Throws ApiError CANCELLED if the task was cancelled. A cancel point. */
  checkCancel(): void;
  /** Resolve after ms, or reject CANCELLED at once on cancel. */
  sleep(ms: number): Promise<void>;
  /** Wait for a promise, or reject CANCELLED at once on cancel (the promise itself is left to settle). */
  wait<T>(promise: Promise<T>): Promise<T>;
  /**
   * Submit work that this task will wait for, on the next level down (see engine.ts: deadlock avoidance).
   * Returns the new task's id; its state is recorded as a subtask of this one.
   */
  spawn(work: Omit<TaskWork, 'level'>): string;
  /** Wait for another task (of a lower level, i.e. higher number) to finish; returns its record. Honours cancel. */
  waitTask(id: string): Promise<TaskRecord>;
}

export interface TaskWork<R = unknown> {
  /** API method name the task runs, e.g. 'VM.start'. */
  method: string;
  /** The VM it operates on: tasks of one VM (and level) run one at a time, in submission order. */
  vm?: string;
  /**
   * Queue level: 0 (default) for API operations; work that a level-n task waits for must run at level n+1
   * (ctx.spawn does this). Each level has its own concurrency bound, so waiting never starves the waited-for work.
   */
  level?: number;
  run: (ctx: TaskContext) => Promise<R>;
}

export interface Atom {
  /** Short name, shown as a subtask and in logs, e.g. 'VM_create'. */
  name: string;
  do: (ctx: TaskContext) => Promise<void>;
  /** Reverses `do`. Runs with a fresh (not cancelled) signal; must be safe if `do` ran only in part (idempotent). */
  undo?: (ctx: TaskContext) => Promise<void>;
  /** Share of the progress bar, default 1. */
  weight?: number;
  /** Also run this atom's own undo if its `do` fails or is cancelled midway (default false). */
  undoOnOwnFailure?: boolean;
}

export interface CancelTrigger {
  /** Cancel at this cancel point (0 = before the first atom, k = before atom k, counted across the task). */
  at: number;
  /** Only for a task of this method / VM (default: the next task that reaches point `at`). */
  method?: string;
  vm?: string;
}

export interface TaskEngineOptions {
  logger: Logger;
  /** Tasks running at once across all VMs, per level: [level 0, level 1, ...] (default [16, 16, 16, 16]). */
  concurrency?: number[];
  /** Finished tasks are forgotten this long after they finish (default 10 min). */
  finishedTtlMs?: number;
  /** At most this many finished tasks are kept (oldest forgotten first; default 10000). */
  maxFinished?: number;
  /** Where task state changes are announced as 'task' updates. */
  updates?: { add(kind: 'task', id: string): void };
  /** Time each undo may take before it is abandoned (logged), default 60 s. */
  undoTimeoutMs?: number;
}
