// A VM's state as the API reports it, from what the daemon recorded and what the hypervisor says now.
import type { DomainInfo } from '../hypervisor/types.js';
import type { PowerState, VmState } from './spec.js';
import type { DomainRecord } from './store.js';

const MIB = 1024 * 1024;
const PAGE = 4096;

export function powerStateOf(rec: DomainRecord | undefined, info: DomainInfo | undefined): PowerState {
  if (!rec || !info || info.handle !== rec.vm) return 'halted';
  // A domain that exists but does not run (paused, shut down awaiting its on_* action, preserved) is "paused":
  // it holds resources and only a hard shutdown (or unpause, when merely paused) changes that.
  if (info.paused || info.shutdown || info.dying || rec.preserved) return 'paused';
  return 'running';
}

export function vmStateOf(rec: DomainRecord | undefined, info: DomainInfo | undefined): VmState {
  const power_state = powerStateOf(rec, info);
  if (power_state === 'halted' || !rec || !info) return { power_state: 'halted' };
  return {
    power_state,
    domid: rec.domid,
    memory_actual_mib: Math.round(((info.totPages * PAGE) / MIB) * 100) / 100,
    vcpus_online: info.onlineVcpus,
    cpu_time_s: info.cpuTimeNs / 1e9,
    last_start: rec.startedAt,
  };
}
