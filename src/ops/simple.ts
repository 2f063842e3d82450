// The one-step operations: pause, unpause, vCPUs online, balloon target.
import type { Atom } from '../tasks/types.js';
import { Errors } from '../rpc/errors.js';
import type { OpsEnv } from './env.js';
import { apiErrors } from './env.js';
import type { VmNow } from './power.js';
import { domainPath, TX_RETRIES } from './xs-domain.js';

export function pauseAtoms(env: OpsEnv, now: VmNow): Atom[] {
  const domid = now.rec!.domid;
  return [
    {
      name: 'VM_pause',
      do: () =>
        apiErrors(async () => {
          await env.hv.pause(domid);
          env.updates.add('vm', now.spec.id);
        }),
    },
  ];
}

export function unpauseAtoms(env: OpsEnv, now: VmNow): Atom[] {
  const domid = now.rec!.domid;
  return [
    {
      name: 'VM_unpause',
      do: () =>
        apiErrors(async () => {
          await env.hv.unpause(domid);
          env.updates.add('vm', now.spec.id);
        }),
    },
  ];
}

/** Writes cpu/N/availability for every vCPU (the guest's hotplug driver acts on it). */
export function setVcpusAtoms(env: OpsEnv, now: VmNow, online: number): Atom[] {
  const rec = now.rec!;
  const max = rec.builtWith.vcpus.max;
  return [
    {
      name: 'VM_set_vcpus',
      do: () =>
        apiErrors(async () => {
          if (online > max) throw Errors.notSupported(`${online} vCPUs online on a domain built with vcpus.max ${max}`);
          const dom = domainPath(rec.domid);
          await env.xs.transaction(async (tx) => {
            for (let i = 0; i < max; i++) await tx.write(`${dom}/cpu/${i}/availability`, i < online ? 'online' : 'offline');
          }, { retries: TX_RETRIES });
          await env.store.putDomain({ ...rec, builtWith: { ...rec.builtWith, vcpus: { ...rec.builtWith.vcpus, online } } });
          env.updates.add('vm', rec.vm);
        }),
    },
  ];
}

/** Writes memory/target (KiB), which the guest's balloon driver follows. */
export function setMemoryAtoms(env: OpsEnv, now: VmNow, targetMib: number): Atom[] {
  const rec = now.rec!;
  const max = rec.builtWith.memory.max_mib;
  return [
    {
      name: 'VM_set_memory',
      do: () =>
        apiErrors(async () => {
          if (targetMib > max) throw Errors.notSupported(`a balloon target of ${targetMib} MiB above memory.max_mib ${max}`);
          await env.xs.write(`${domainPath(rec.domid)}/memory/target`, String(targetMib * 1024));
          const builtWith = { ...rec.builtWith, memory: { ...rec.builtWith.memory, target_mib: targetMib } };
          await env.store.putDomain({ ...rec, builtWith });
          env.updates.add('vm', rec.vm);
        }),
    },
  ];
}
