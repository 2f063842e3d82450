// What every operation needs, handed in by the daemon (ops never know which hypervisor backend runs).
import type { Logger } from 'pino';
import type { Hypervisor } from '../hypervisor/types.js';
import { HypervisorError } from '../hypervisor/types.js';
import type { XenstoreClient } from '../xenstore/types.js';
import { XsError, XsTimeoutError } from '../xenstore/types.js';
import type { VmStore } from '../vm/store.js';
import type { UpdateKind } from '../../api/v1/types.js';
import { ApiError, Errors } from '../rpc/errors.js';
import type { DomainEvents } from './domain-events.js';
import { WaitTimeout } from './xs-wait.js';

export interface OpsTimeouts {
  /** Backend to reach InitWait (libxl: 10 s). */
  deviceInitMs: number;
  /** Hotplug script to report (libxl: 40 s). */
  hotplugMs: number;
  /** Default time a guest has to answer a clean shutdown, when the request gives no timeout_s. */
  shutdownS: number;
}

export const DEFAULT_TIMEOUTS: OpsTimeouts = { deviceInitMs: 10_000, hotplugMs: 40_000, shutdownS: 60 };

export interface OpsEnv {
  hv: Hypervisor;
  xs: XenstoreClient;
  store: VmStore;
  domains: DomainEvents;
  updates: { add(kind: UpdateKind, id: string): void };
  timeouts: OpsTimeouts;
  logger: Logger;
  /** xen backend only: runs the hotplug scripts' remove for a destroyed domain before its backends go. */
  hotplug?: { removeDomain(domid: number): Promise<void> };
}

/** Maps a low-level failure to the API error the task reports. */
export function asApiError(err: unknown): unknown {
  if (err instanceof ApiError) return err;
  if (err instanceof WaitTimeout) return Errors.timeout(err.what, Math.round(err.timeoutMs / 100) / 10);
  if (err instanceof HypervisorError) return Errors.backendError(err.message, { call: err.call, errno: err.errno });
  if (err instanceof XsError || err instanceof XsTimeoutError) return Errors.backendError(err.message);
  return err;
}

/** Runs fn and rethrows what it throws as an API error. */
export async function apiErrors<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw asApiError(err);
  }
}
