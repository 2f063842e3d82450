// The VM operations as tasks: each one checks the power state when it runs (not when queued), journals itself,
// runs its atoms (undo on failure/cancel) and clears the journal. Also the internal check that applies
// on_poweroff/on_reboot/on_crash when a guest shut down by itself.
import type { TaskEngine } from '../tasks/engine.js';
import { runAtoms } from '../tasks/atoms.js';
import type { Atom, TaskContext } from '../tasks/types.js';
import type { OpsEnv } from '../ops/env.js';
import { apiErrors } from '../ops/env.js';
import { expectPower, vmNow, type VmNow } from '../ops/power.js';
import { startAtoms } from '../ops/start.js';
import { rebootAtoms, shutdownAtoms, type ShutdownOptions } from '../ops/shutdown.js';
import { pauseAtoms, setMemoryAtoms, setVcpusAtoms, unpauseAtoms } from '../ops/simple.js';
import { domainActionAtoms, pendingAction } from '../ops/domain-action.js';
import type { PowerState } from '../vm/spec.js';
import type { JournalOp } from '../vm/store.js';
import type { DomainInfo } from '../hypervisor/types.js';

export const CHECK_METHOD = 'VM.check_state';

export class VmOperations {
  /** VM → id of its check task queued and not yet run (coalescing, as xenopsd's should_keep). */
  private readonly checksQueued = new Map<string, string>();

  constructor(
    private readonly env: OpsEnv,
    private readonly engine: TaskEngine,
  ) {}

  private submit(
    method: string,
    id: string,
    op: JournalOp,
    expected: PowerState[],
    atomsFor: (now: VmNow) => Atom[],
    args?: Record<string, unknown>,
  ): string {
    const { env } = this;
    return this.engine.submit({
      method,
      vm: id,
      run: async (ctx: TaskContext) => {
        const now = await apiErrors(() => expectPower(env, id, expected));
        await this.journaled(ctx, id, op, now, atomsFor(now), args);
        return env.store.getDomain(id) ? { domid: env.store.getDomain(id)!.domid } : {};
      },
    });
  }

  private async journaled(ctx: TaskContext, id: string, op: JournalOp, now: VmNow, atoms: Atom[], args?: Record<string, unknown>): Promise<void> {
    const { store } = this.env;
    await store.putJournal({ vm: id, op, taskId: ctx.taskId, started: new Date().toISOString(), domid: now.rec?.domid, args });
    try {
      await runAtoms(ctx, atoms);
    } finally {
      await store.removeJournal(id).catch((err) => ctx.logger.error({ err }, 'could not clear the journal'));
      this.env.updates.add('vm', id);
    }
  }

  start(id: string, paused: boolean): string {
    return this.submit('VM.start', id, 'start', ['halted'], (now) => startAtoms(this.env, now.spec, { paused }), { paused });
  }

  shutdown(id: string, opts: ShutdownOptions): string {
    const expected: PowerState[] = opts.mode === 'clean' ? ['running'] : ['running', 'paused'];
    return this.submit('VM.shutdown', id, 'shutdown', expected, (now) => shutdownAtoms(this.env, now, opts, 'poweroff'));
  }

  reboot(id: string, opts: ShutdownOptions): string {
    const expected: PowerState[] = opts.mode === 'clean' ? ['running'] : ['running', 'paused'];
    return this.submit('VM.reboot', id, 'reboot', expected, (now) => rebootAtoms(this.env, now, opts));
  }

  pause(id: string): string {
    return this.submit('VM.pause', id, 'pause', ['running'], (now) => pauseAtoms(this.env, now));
  }

  unpause(id: string): string {
    return this.submit('VM.unpause', id, 'unpause', ['paused'], (now) => unpauseAtoms(this.env, now));
  }

  setVcpus(id: string, online: number): string {
    return this.submit('VM.set_vcpus', id, 'set_vcpus', ['running', 'paused'], (now) => setVcpusAtoms(this.env, now, online));
  }

  setMemory(id: string, targetMib: number): string {
    return this.submit('VM.set_memory', id, 'set_memory', ['running', 'paused'], (now) => setMemoryAtoms(this.env, now, targetMib));
  }

  /** Called with every domain-list scan: queues a check for each VM whose domain shut down by itself. */
  onDomainScan(domains: Map<number, DomainInfo>): void {
    const { store } = this.env;
    for (const rec of store.listDomains()) {
      if (rec.preserved || store.getJournal(rec.vm) || this.checksQueued.has(rec.vm)) continue;
      const info = domains.get(rec.domid);
      if (info && info.handle === rec.vm && !info.shutdown && !info.dying) continue;
      this.queueCheck(rec.vm);
    }
  }

  /** Queues a check of the VM on its queue (coalesced). Returns the task id, or undefined when one is queued. */
  queueCheck(id: string): string | undefined {
    if (this.checksQueued.has(id)) return undefined;
    const taskId = this.engine.submit({
      method: CHECK_METHOD,
      vm: id,
      run: async (ctx) => {
        this.checksQueued.delete(id);
        if (!this.env.store.getSpec(id)) return {};
        const now = await apiErrors(() => vmNow(this.env, id));
        const pending = pendingAction(now);
        if (!pending) return {};
        ctx.logger.info({ domid: now.rec!.domid, ...pending }, 'guest shut down by itself: applying its action');
        await this.journaled(ctx, id, 'check', now, domainActionAtoms(this.env, now, pending.action));
        return { action: pending.action, reason: pending.reason };
      },
    });
    this.checksQueued.set(id, taskId);
    // A check cancelled while queued never runs: forget it then too, or the VM would never be checked again.
    void this.engine.wait(taskId).then(
      () => {
        if (this.checksQueued.get(id) === taskId) this.checksQueued.delete(id);
      },
      () => this.checksQueued.delete(id),
    );
    return taskId;
  }
}
