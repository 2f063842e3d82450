// Operations as lists of atoms, each with its undo. runAtoms runs them in order; on a failure or a cancel it runs the
// undos of the atoms already done, in reverse, then rethrows (CANCELLED for a cancel). Each atom boundary is a cancel
// point (counted per task, see TaskEngine.setCancelTrigger) and each atom is recorded as a subtask.
import { Errors, isCancelled } from '../rpc/errors.js';
import { cancelledError, TaskCtx } from './context.js';
import type { Atom, TaskContext } from './types.js';

export interface RunAtomsOptions {
  /** Slice of the task's progress bar the list fills, default [0, 1]. */
  progress?: [number, number];
}

export async function runAtoms(ctx: TaskContext, atoms: Atom[], options: RunAtomsOptions = {}): Promise<void> {
  if (!(ctx instanceof TaskCtx)) throw new TypeError('runAtoms needs the TaskContext the engine gave the task');
  const [lo, hi] = options.progress ?? [0, 1];
  const base = ctx.scoped(lo, hi);
  const weights = atoms.map((a) => {
    const w = a.weight ?? 1;
    if (!(w >= 0) || !Number.isFinite(w)) throw new TypeError(`atom ${a.name}: weight must be a finite number >= 0`);
    return w;
  });
  const total = weights.reduce((s, w) => s + w, 0) || 1;
  const done: Atom[] = [];
  let before = 0;
  for (let i = 0; i < atoms.length; i++) {
    const atom = atoms[i]!;
    const handle = ctx.handle;
    let subtask;
    let started = false;
    try {
      handle.cancelPoint(atom.name);
      base.checkCancel();
      subtask = handle.addSubtask(atom.name);
      const atomCtx = base.scoped(before / total, (before + weights[i]!) / total);
      atomCtx.logger.debug({ atom: atom.name }, 'atom');
      started = true;
      await atom.do(atomCtx);
      handle.setSubtaskState(subtask, 'completed');
      done.push(atom);
      before += weights[i]!;
      base.progress(before / total);
    } catch (err) {
      const cancelled = ctx.signal.aborted || isCancelled(err);
      if (subtask) handle.setSubtaskState(subtask, cancelled ? 'cancelled' : 'failed');
      if (started && atom.undoOnOwnFailure) done.push(atom);
      await undoAll(ctx, done, err);
      throw ctx.signal.aborted ? cancelledError(ctx.signal) : err;
    }
  }
}

async function undoAll(ctx: TaskCtx, done: Atom[], cause: unknown): Promise<void> {
  const handle = ctx.handle;
  ctx.logger.info({ atoms: done.map((a) => a.name).reverse(), cause: String(cause) }, 'undoing');
  for (let i = done.length - 1; i >= 0; i--) {
    const atom = done[i]!;
    if (!atom.undo) continue;
    const subtask = handle.addSubtask(`undo:${atom.name}`);
    const limit = new AbortController();
    const seconds = handle.undoTimeoutMs / 1000;
    const timer = setTimeout(() => limit.abort(Errors.timeout(`undo of ${atom.name}`, seconds)), handle.undoTimeoutMs);
    try {
      await atom.undo(ctx.forUndo(limit.signal));
      handle.setSubtaskState(subtask, 'completed');
    } catch (err) {
      // Best effort: one undo failing must not stop the others from cleaning up.
      handle.setSubtaskState(subtask, 'failed');
      ctx.logger.error({ err, atom: atom.name }, 'undo failed');
    } finally {
      clearTimeout(timer);
    }
  }
}
