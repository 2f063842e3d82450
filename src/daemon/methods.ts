// The VM.* / API.* / HOST.* handlers (TASK.* and UPDATES.* come from src/tasks and src/updates). Params arrive
// validated against api/v1; this adds what a schema cannot check and answers from memory where it can.
import type { Handler } from '../rpc/types.js';
import { Errors, protocolError, RPC_INVALID_PARAMS } from '../rpc/errors.js';
import type { MethodParams, VmWithState } from '../../api/v1/types.js';
import { API_VERSION } from '../../api/v1/methods.js';
import type { OpsEnv } from '../ops/env.js';
import { apiErrors } from '../ops/env.js';
import { checkSpec, withId, type VmSpec } from '../vm/spec.js';
import { vmStateOf } from '../vm/state.js';
import type { VmOperations } from './operations.js';
import type { DomainInfoCache } from '../ops/domain-cache.js';
import type { DomainInfo } from '../hypervisor/types.js';

export interface VmMethodsDeps {
  env: OpsEnv;
  ops: VmOperations;
  daemonVersion: string;
  /** Domain info for VM.stat/VM.list (a short cache in front of the hypervisor). */
  infoCache: DomainInfoCache;
}

async function domainMap(hv: OpsEnv['hv']): Promise<Map<number, DomainInfo>> {
  return new Map((await hv.getDomainInfoList(0, 65536)).map((d) => [d.domid, d]));
}

export function vmMethods({ env, ops, daemonVersion, infoCache }: VmMethodsDeps): Record<string, Handler> {
  const { store, hv } = env;

  const requireSpec = (id: string): VmSpec => {
    const spec = store.getSpec(id);
    if (!spec) throw Errors.doesNotExist('vm', id);
    return spec;
  };

  const withState = async (spec: VmSpec): Promise<VmWithState> => {
    const rec = store.getDomain(spec.id);
    const info = rec ? await apiErrors(() => infoCache.get(rec.domid)) : undefined;
    return { vm: spec, state: vmStateOf(rec, info) };
  };

  return {
    'API.version': async () => ({ api: API_VERSION, daemon: daemonVersion, backend: hv.kind }),

    'HOST.stat': async () =>
      apiErrors(async () => {
        const [v, p, doms] = await Promise.all([hv.version(), hv.physinfo(), hv.getDomainInfoList(0, 65536)]);
        const mib = (pages: number) => Math.floor((pages * p.pageSize) / (1024 * 1024));
        return {
          backend: hv.kind,
          hypervisor_version: `${v.major}.${v.minor}${v.extra}`,
          cpus: p.nrCpus,
          memory_total_mib: mib(p.totalPages),
          memory_free_mib: mib(p.freePages),
          domain_count: doms.length,
        };
      }),

    'VM.add': async (p: MethodParams['VM.add']) => {
      const spec = withId(p.vm) as VmSpec;
      const problems = checkSpec(spec);
      if (problems.length > 0)
        throw protocolError(RPC_INVALID_PARAMS, `invalid params: ${problems.map((e) => `${e.path} ${e.message}`).join('; ')}`, {
          errors: problems,
        });
      if (store.getSpec(spec.id)) throw Errors.alreadyExists('vm', spec.id);
      await store.putSpec(spec);
      env.updates.add('vm', spec.id);
      return { id: spec.id };
    },

    'VM.remove': async (p: MethodParams['VM.remove']) => {
      requireSpec(p.id);
      const rec = store.getDomain(p.id);
      if (rec || store.getJournal(p.id)) {
        const info = rec ? await hv.getDomainInfo(rec.domid).catch(() => undefined) : undefined;
        const actual = rec ? vmStateOf(rec, info).power_state : 'halted';
        throw Errors.badPowerState(actual === 'halted' ? 'busy' : actual, ['halted']);
      }
      await store.removeSpec(p.id);
      env.updates.add('vm', p.id);
      return {};
    },

    'VM.list': async () => {
      // Many running VMs: one domain-list call instead of one call per domain.
      if (store.listDomains().length > 16) infoCache.fill(await apiErrors(() => domainMap(hv)));
      return { vms: await Promise.all(store.listSpecs().map(withState)) };
    },
    'VM.stat': async (p: MethodParams['VM.stat']) => withState(requireSpec(p.id)),

    'VM.start': async (p: MethodParams['VM.start']) => {
      requireSpec(p.id);
      return { task: ops.start(p.id, p.paused ?? false) };
    },
    'VM.shutdown': async (p: MethodParams['VM.shutdown']) => {
      requireSpec(p.id);
      const opts = { mode: p.mode ?? 'clean', timeoutS: p.timeout_s ?? env.timeouts.shutdownS, fallbackHard: p.force ?? false } as const;
      return { task: ops.shutdown(p.id, opts) };
    },
    'VM.reboot': async (p: MethodParams['VM.reboot']) => {
      requireSpec(p.id);
      const opts = { mode: p.mode ?? 'clean', timeoutS: p.timeout_s ?? env.timeouts.shutdownS, fallbackHard: p.force ?? false } as const;
      return { task: ops.reboot(p.id, opts) };
    },
    'VM.pause': async (p: MethodParams['VM.pause']) => {
      requireSpec(p.id);
      return { task: ops.pause(p.id) };
    },
    'VM.unpause': async (p: MethodParams['VM.unpause']) => {
      requireSpec(p.id);
      return { task: ops.unpause(p.id) };
    },
    'VM.set_vcpus': async (p: MethodParams['VM.set_vcpus']) => {
      requireSpec(p.id);
      return { task: ops.setVcpus(p.id, p.online) };
    },
    'VM.set_memory': async (p: MethodParams['VM.set_memory']) => {
      requireSpec(p.id);
      return { task: ops.setMemory(p.id, p.target_mib) };
    },
  };
}
