// Placeholder replaced by the real writer (see format.ts).
import type { Writable } from 'node:stream';
import { HypervisorError, type SaveCallbacks, type SaveOptions, type SaveStats } from '../../hypervisor/types.js';
import type { SimDomain } from '../hypervisor/domain.js';

export interface SaveHooks {
  settle(): void;
  waitSuspended(signal?: AbortSignal): Promise<void>;
  gone(): boolean;
}

export async function saveDomain(_dom: SimDomain, _out: Writable, _opts: SaveOptions, _cb: SaveCallbacks, _hooks: SaveHooks): Promise<SaveStats> {
  throw new HypervisorError('save', 'ENOSYS', 'not yet');
}
