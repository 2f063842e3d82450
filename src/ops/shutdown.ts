// VM.shutdown and VM.reboot as atoms. Clean: write control/shutdown, wait (bounded) for the domain to shut down,
// then tear it down; hard: tear down at once. Reboot continues with the start atoms of the VM's current spec.
import type { Atom, TaskContext } from '../tasks/types.js';
import { Errors } from '../rpc/errors.js';
import type { OpsEnv } from './env.js';
import { apiErrors } from './env.js';
import type { VmNow } from './power.js';
import { teardownDomain } from './teardown.js';
import { domainPath } from './xs-domain.js';
import { WaitTimeout } from './xs-wait.js';
import { startAtoms } from './start.js';

export interface ShutdownOptions {
  mode: 'clean' | 'hard';
  /** Seconds the guest has to shut down (clean only). */
  timeoutS: number;
  /** Clean only: when the guest does not answer in time, destroy it anyway instead of failing with TIMEOUT. */
  fallbackHard?: boolean;
}

/** Atoms that take the VM (running, or paused for hard) down; reason is what control/shutdown asks for. */
export function shutdownAtoms(env: OpsEnv, now: VmNow, opts: ShutdownOptions, reason: 'poweroff' | 'reboot'): Atom[] {
  const rec = now.rec!;
  const controlPath = `${domainPath(rec.domid)}/control/shutdown`;
  const atoms: Atom[] = [];
  if (opts.mode === 'clean') {
    atoms.push(
      {
        name: 'VM_request_shutdown',
        do: () => apiErrors(() => env.xs.write(controlPath, reason)),
        undo: async () => {
          // Withdraw the request unless the guest already acted on it (then the node is gone with the domain).
          if ((await env.xs.tryRead(controlPath)) === reason) await env.xs.write(controlPath, '');
        },
      },
      {
        name: 'VM_wait_shutdown',
        weight: 3,
        do: (ctx: TaskContext) =>
          apiErrors(async () => {
            try {
              await env.domains.waitShutdown(rec.domid, opts.timeoutS * 1000, ctx.signal);
            } catch (err) {
              if (!(err instanceof WaitTimeout)) throw err;
              if (!opts.fallbackHard) throw Errors.timeout(`VM ${rec.vm} to shut down`, opts.timeoutS);
              ctx.logger.warn({ domid: rec.domid }, 'guest did not shut down in time: destroying it');
            }
          }),
      },
    );
  }
  atoms.push({ name: 'VM_destroy', weight: 2, do: () => apiErrors(() => teardownDomain(env, rec)) });
  return atoms;
}

export function rebootAtoms(env: OpsEnv, now: VmNow, opts: ShutdownOptions): Atom[] {
  return [...shutdownAtoms(env, now, opts, 'reboot'), ...startAtoms(env, now.spec, { paused: false })];
}
