// Looking up a VM and checking its power state when an operation runs (not when it was queued).
import { Errors } from '../rpc/errors.js';
import type { PowerState, VmSpec } from '../vm/spec.js';
import { powerStateOf } from '../vm/state.js';
import type { DomainRecord } from '../vm/store.js';
import type { OpsEnv } from './env.js';
import type { DomainInfo } from '../hypervisor/types.js';

export interface VmNow {
  spec: VmSpec;
  rec: DomainRecord | undefined;
  info: DomainInfo | undefined;
  power: PowerState;
}

export async function vmNow(env: OpsEnv, id: string): Promise<VmNow> {
  const spec = env.store.getSpec(id);
  if (!spec) throw Errors.doesNotExist('vm', id);
  const rec = env.store.getDomain(id);
  const info = rec ? await env.hv.getDomainInfo(rec.domid) : undefined;
  return { spec, rec, info, power: powerStateOf(rec, info) };
}

/** Throws BAD_POWER_STATE unless the VM is in one of the expected states. */
export async function expectPower(env: OpsEnv, id: string, expected: PowerState[]): Promise<VmNow> {
  const now = await vmNow(env, id);
  if (!expected.includes(now.power)) throw Errors.badPowerState(now.power, expected);
  return now;
}
