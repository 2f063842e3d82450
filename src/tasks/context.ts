// The context a task's code runs with: cancellation (signal, checkCancel, cancellable sleep/wait), progress (scoped
// to a slice of the bar for nested atom lists), logger, and the way to spawn and wait for lower-level work.
import type { Logger } from 'pino';
import type { Subtask, TaskRecord } from '../../api/v1/types.js';
import { ApiError, Errors } from '../rpc/errors.js';
import type { TaskContext, TaskWork } from './types.js';

/** What a context needs from the engine about its task (implemented by engine.ts). */
export interface TaskHandle {
  readonly id: string;
  readonly vm: string | undefined;
  readonly level: number;
  readonly controller: AbortController;
  readonly logger: Logger;
  setProgress(fraction: number): void;
  addSubtask(name: string): Subtask;
  setSubtaskState(subtask: Subtask, state: TaskRecord['state']): void;
  /** How long one undo may take before it is abandoned. */
  readonly undoTimeoutMs: number;
  /** Called at each cancel point (atom boundary); may cancel the task (test trigger). Returns the point's index. */
  cancelPoint(atomName: string): number;
  spawn(work: Omit<TaskWork, 'level'>): string;
  waitTask(id: string, signal: AbortSignal): Promise<TaskRecord>;
}

export function cancelledError(signal: AbortSignal): ApiError {
  return signal.reason instanceof ApiError ? signal.reason : Errors.cancelled();
}

/** Resolve/reject with `promise`, or reject CANCELLED as soon as `signal` aborts. */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(cancelledError(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(cancelledError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/** Sleep ms, or reject CANCELLED as soon as `signal` aborts. */
export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(cancelledError(signal));
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(cancelledError(signal));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

export class TaskCtx implements TaskContext {
  constructor(
    readonly handle: TaskHandle,
    /** The slice of the progress bar this context reports into. */
    private readonly lo = 0,
    private readonly hi = 1,
    /** Undo contexts run with their own signal: a cancelled task must still be able to undo. */
    private readonly signalOverride?: AbortSignal,
  ) {}

  get taskId(): string {
    return this.handle.id;
  }
  get vm(): string | undefined {
    return this.handle.vm;
  }
  get signal(): AbortSignal {
    return this.signalOverride ?? this.handle.controller.signal;
  }
  get logger(): Logger {
    return this.handle.logger;
  }

  progress(fraction: number): void {
    if (this.signalOverride) return; // undo does not move the bar
    const f = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
    this.handle.setProgress(this.lo + (this.hi - this.lo) * f);
  }

  checkCancel(): void {
    if (this.signal.aborted) throw cancelledError(this.signal);
  }

  sleep(ms: number): Promise<void> {
    return abortableSleep(ms, this.signal);
  }

  wait<T>(promise: Promise<T>): Promise<T> {
    return abortable(promise, this.signal);
  }

  spawn(work: Omit<TaskWork, 'level'>): string {
    return this.handle.spawn(work);
  }

  waitTask(id: string): Promise<TaskRecord> {
    return this.handle.waitTask(id, this.signal);
  }

  /** A context reporting progress into [lo, hi] of this one's slice. */
  scoped(lo: number, hi: number): TaskCtx {
    const span = this.hi - this.lo;
    return new TaskCtx(this.handle, this.lo + span * lo, this.lo + span * hi, this.signalOverride);
  }

  /** A context for undo work: not cancellable (its own signal, which the caller aborts only on an undo timeout),
   *  reporting no progress. */
  forUndo(signal: AbortSignal): TaskCtx {
    return new TaskCtx(this.handle, this.lo, this.hi, signal);
  }

  get isUndo(): boolean {
    return this.signalOverride !== undefined;
  }
}
