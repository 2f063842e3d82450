// The control RPC's methods: each checks its params and turns into a call on one part of the sim host.
import type { SimHypervisor } from '../hypervisor/index.js';
import type { BackendDriver } from '../backends/index.js';
import type { GuestManager } from '../guests/manager.js';
import type { BackendFaultMode, ConsoleSnapshot, DomainStatus, HostStatus } from './protocol.js';
import { ControlError, boolParam, intParam, strParam, type ControlHandler } from './server.js';

/** The parts of the xenstored the control RPC touches. */
export interface XenstoredKnobs {
  setLatency(ms: number): void;
  stats(): unknown;
}

export interface HandlerDeps {
  dir: string;
  startedAt: number;
  hv: SimHypervisor;
  xenstored: XenstoredKnobs;
  backends: BackendDriver;
  guests: GuestManager;
  /** dom0's console daemon: the buffered console of a domain, undefined when it has none. */
  consoles: { read(domid: number): ConsoleSnapshot | undefined };
  /** Stops the host (after the answer went out). */
  kill(hard: boolean): void;
}

/** The calls of the Hypervisor interface (src/hypervisor/types.ts) a fault can be injected into, plus resume. */
export const HYPERCALLS: readonly string[] = [
  'version', 'physinfo', 'createDomain', 'setMaxVcpus', 'setMaxMem', 'build', 'getDomainInfoList', 'getDomainInfo',
  'pause', 'unpause', 'shutdown', 'destroy', 'evtchnAllocUnbound', 'shadowControl', 'save', 'restore', 'resume',
];
const ERRNO_NAME = /^E[A-Z0-9]{1,15}$/;
const MAX_DELAY_MS = 10 * 60_000;

export function controlHandlers(d: HandlerDeps): Record<string, ControlHandler> {
  let xenstoredLatencyMs = 0;
  const ok = { ok: true } as const;

  const domainExists = (domid: number): void => {
    if (!d.hv.domainState(domid)) throw new ControlError('ESRCH', `no domain ${domid}`);
  };

  return {
    ping: () => ({ pong: true, pid: process.pid }),

    status: (): HostStatus => {
      const info = withoutInjectedFaults(d.hv, 'physinfo', () => d.hv.physinfo());
      const domains: DomainStatus[] = withoutInjectedFaults(d.hv, 'getDomainInfoList', () => d.hv.getDomainInfoList(0, 1 << 16)).map((i) => ({
        domid: i.domid,
        handle: i.handle,
        state: i.dying ? 'dying' : i.shutdown ? 'shutdown' : i.paused ? 'paused' : 'running',
        ...(i.shutdown ? { shutdownReason: i.shutdownReason } : {}),
        totPages: i.totPages,
        maxPages: i.maxPages,
        onlineVcpus: i.onlineVcpus,
        cpuTimeNs: i.cpuTimeNs,
        dirtyRate: d.hv.domainState(i.domid)?.dirtyRate ?? 0,
        ...(d.guests.status(i.domid) ? { guest: d.guests.status(i.domid) } : {}),
      }));
      const pagesPerMib = (1 << 20) / info.pageSize;
      return {
        pid: process.pid,
        dir: d.dir,
        uptimeMs: Math.round(performance.now() - d.startedAt),
        pcpus: info.nrCpus,
        pageSize: info.pageSize,
        totalPages: info.totalPages,
        freePages: info.freePages,
        totalMib: Math.floor(info.totalPages / pagesPerMib),
        freeMib: Math.floor(info.freePages / pagesPerMib),
        domains,
        backends: d.backends.status(),
        faults: {
          backends: d.backends.faults.list(),
          guests: d.guests.faults(),
          xenstoredLatencyMs,
          hypercalls: d.hv.listFaults(),
        },
        xenstored: d.xenstored.stats(),
      };
    },

    'guest.fault': (p) => {
      const fault = strParam(p, 'fault', { oneOf: ['ignore-shutdown', 'crash', 'slow-boot'] });
      const domid = intParam(p, 'domid', { min: 1, max: 0x7fef, optional: true });
      if (fault === 'crash') {
        if (domid === undefined) throw new ControlError('EINVAL', "fault 'crash' needs a domid");
        domainExists(domid);
        if (!d.guests.crash(domid)) throw new ControlError('ESRCH', `domain ${domid} has no running guest`);
        return ok;
      }
      const target = domid ?? '*';
      if (fault === 'ignore-shutdown') {
        d.guests.setIgnoreShutdown(target, boolParam(p, 'on', true));
        return ok;
      }
      const on = boolParam(p, 'on', true);
      const delayMs = intParam(p, 'delayMs', { min: 0, max: MAX_DELAY_MS, optional: !on });
      d.guests.setBootDelay(target, on ? delayMs : undefined);
      return ok;
    },

    'backend.fault': (p) => {
      const path = strParam(p, 'path')!;
      if (!path.startsWith('/local/domain/0/backend/') || path.includes('//')) {
        throw new ControlError('EINVAL', `param 'path' must be a path under /local/domain/0/backend/, got ${JSON.stringify(path.slice(0, 80))}`);
      }
      const mode = strParam(p, 'mode', { oneOf: ['fail', 'hang', 'close', 'none'] }) as BackendFaultMode | 'none';
      const message = strParam(p, 'message', { optional: true });
      d.backends.faults.set(path.replace(/\/$/, ''), mode, message);
      // Lifting a hang lets stuck devices carry on.
      if (mode === 'none') d.backends.kickAll();
      return ok;
    },

    'hypercall.fault': (p) => {
      const call = strParam(p, 'call')!;
      const errno = strParam(p, 'errno')!;
      if (!ERRNO_NAME.test(errno)) throw new ControlError('EINVAL', `param 'errno' must be an errno name such as ENOMEM, got ${JSON.stringify(errno.slice(0, 20))}`);
      if (!HYPERCALLS.includes(call)) {
        throw new ControlError('EINVAL', `param 'call' must be one of ${HYPERCALLS.join('|')}, got ${JSON.stringify(call.slice(0, 40))}`);
      }
      const times = intParam(p, 'times', { min: 1, max: 1_000_000, optional: true });
      d.hv.injectFault({ call, errno, ...(times !== undefined ? { times } : {}) });
      return ok;
    },

    'xenstored.latency': (p) => {
      xenstoredLatencyMs = intParam(p, 'ms', { min: 0, max: 60_000 })!;
      d.xenstored.setLatency(xenstoredLatencyMs);
      return ok;
    },

    'host.memory': (p) => {
      d.hv.setHostMemory(intParam(p, 'mib', { min: 1, max: 64 * 1024 * 1024 })!);
      return ok;
    },

    'domain.dirtyRate': (p) => {
      const domid = intParam(p, 'domid', { min: 0, max: 0x7fef })!;
      const rate = p.pagesPerSec;
      if (typeof rate !== 'number' || !Number.isFinite(rate) || rate < 0 || rate > 10_000_000) {
        throw new ControlError('EINVAL', `param 'pagesPerSec' must be a number in 0..10000000, got ${String(rate)}`);
      }
      domainExists(domid);
      d.hv.setDirtyRate(domid, rate);
      return ok;
    },

    'console.read': (p) => {
      const domid = intParam(p, 'domid', { min: 1, max: 0x7fef })!;
      const snapshot = d.consoles.read(domid);
      if (!snapshot) {
        throw new ControlError('ESRCH', d.hv.domainState(domid) ? `domain ${domid} has no console (not introduced, or no valid console record)` : `no domain ${domid}`);
      }
      return snapshot;
    },

    'faults.clear': () => {
      d.hv.clearFaults();
      d.backends.faults.clear();
      d.backends.kickAll();
      d.guests.clearFaults();
      xenstoredLatencyMs = 0;
      d.xenstored.setLatency(0);
      return ok;
    },

    'host.kill': (p) => {
      const hard = boolParam(p, 'hard', false);
      setImmediate(() => d.kill(hard));
      return ok;
    },
  };
}

/**
 * Runs an inspection call of the model without consuming a fault a test injected for the daemon
 * (`sim status` must not eat "the next getDomainInfoList fails").
 */
function withoutInjectedFaults<T>(hv: SimHypervisor, call: string, fn: () => T): T {
  const saved = hv.listFaults().filter((f) => f.call === call);
  if (saved.length === 0) return fn();
  hv.clearFaults(call);
  try {
    return fn();
  } finally {
    for (const f of saved) hv.injectFault(f);
  }
}
