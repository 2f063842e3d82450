// What happens when a guest shuts down by itself: on_poweroff / on_reboot / on_crash of the spec it was built with.
import type { Atom } from '../tasks/types.js';
import { ShutdownReason } from '../hypervisor/types.js';
import type { DomainAction } from '../vm/spec.js';
import type { OpsEnv } from './env.js';
import { apiErrors } from './env.js';
import type { VmNow } from './power.js';
import { teardownDomain } from './teardown.js';
import { startAtoms } from './start.js';

/** The action for a domain in this state, or undefined when it needs none (still running, already preserved). */
export function pendingAction(now: VmNow): { action: DomainAction; reason: string } | undefined {
  const { rec, info } = now;
  if (!rec || rec.preserved) return undefined;
  const spec = rec.builtWith;
  if (!info || info.handle !== rec.vm) return { action: 'destroy', reason: 'vanished' };
  if (!info.shutdown && !info.dying) return undefined;
  if (info.dying) return { action: 'destroy', reason: 'dying' };
  switch (info.shutdownReason) {
    case ShutdownReason.poweroff:
      return { action: spec.on_poweroff ?? 'destroy', reason: 'poweroff' };
    case ShutdownReason.reboot:
      return { action: spec.on_reboot ?? 'restart', reason: 'reboot' };
    case ShutdownReason.crash:
    case ShutdownReason.watchdog:
      return { action: spec.on_crash ?? 'destroy', reason: info.shutdownReason === ShutdownReason.crash ? 'crash' : 'watchdog' };
    case ShutdownReason.suspend:
      // A suspend is the suspend operation's business, never a reason to destroy.
      return undefined;
    default:
      return { action: 'destroy', reason: `shutdown code ${info.shutdownReason}` };
  }
}

export function domainActionAtoms(env: OpsEnv, now: VmNow, action: DomainAction): Atom[] {
  const rec = now.rec!;
  if (action === 'preserve') {
    return [
      {
        name: 'VM_preserve',
        do: () =>
          apiErrors(async () => {
            await env.store.putDomain({ ...rec, preserved: true });
            env.updates.add('vm', rec.vm);
          }),
      },
    ];
  }
  const destroy: Atom = { name: 'VM_destroy', do: () => apiErrors(() => teardownDomain(env, rec)) };
  if (action === 'destroy') return [destroy];
  // restart: the VM's current spec (a VM.add since the last start does not exist — specs are immutable — so
  // builtWith and the stored spec are the same VM; the stored one carries set_vcpus/set_memory only in builtWith).
  return [destroy, ...startAtoms(env, now.spec, { paused: false })];
}
