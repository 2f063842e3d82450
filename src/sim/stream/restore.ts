// Placeholder replaced by the real reader (see format.ts).
import type { Readable } from 'node:stream';
import { HypervisorError } from '../../hypervisor/types.js';
import type { SimDomain } from '../hypervisor/domain.js';

export interface RestoreHooks {
  populate(pfn: number): void;
}

export async function restoreDomain(_dom: SimDomain, _input: Readable, _signal: AbortSignal | undefined, _hooks: RestoreHooks): Promise<void> {
  throw new HypervisorError('restore', 'ENOSYS', 'not yet');
}
