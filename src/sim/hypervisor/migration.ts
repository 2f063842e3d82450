// save and restore around the stream code (src/sim/stream/): the domain is held busy while a
// stream runs, pages come from and go back to the host, and a failed restore gives back all it took.
import type { Readable, Writable } from 'node:stream';
import { HypervisorError, type SaveCallbacks, type SaveOptions, type SaveStats } from '../../hypervisor/types.js';
import { MAX_P2M_PFNS } from '../memory/guest-memory.js';
import { saveDomain } from '../stream/save.js';
import { restoreDomain } from '../stream/restore.js';
import type { SimDomain } from './domain.js';
import type { DomainTable } from './domain-table.js';
import type { HostMemory } from './host-memory.js';
import { waitForSuspend, type DomExcSource } from './suspend-wait.js';

export interface MigrationEnv {
  host: HostMemory;
  table: DomainTable;
  events: DomExcSource;
  now(): number;
  suspendTimeoutMs: number;
}

export async function saveGuest(env: MigrationEnv, dom: SimDomain, out: Writable, opts: SaveOptions, cb: SaveCallbacks): Promise<SaveStats> {
  if (!dom.built) throw new HypervisorError('save', 'EINVAL', `domain ${dom.domid} has no memory`);
  if (dom.busy) throw new HypervisorError('save', 'EBUSY', `domain ${dom.domid} is busy with a ${dom.busy}`);
  dom.busy = 'save';
  try {
    return await saveDomain(dom, out, opts, cb, {
      settle: () => dom.settle(env.now()),
      waitSuspended: (signal) => waitForSuspend(env.events, dom, env.suspendTimeoutMs, signal),
      gone: () => dom.dying || env.table.get(dom.domid) !== dom,
    });
  } finally {
    dom.busy = undefined;
    dom.memory.disableLogDirty();
  }
}

/** Reads a stream into a created domain; on success the domain has its memory and type (not yet marked built). */
export async function restoreGuest(env: MigrationEnv, dom: SimDomain, input: Readable, signal?: AbortSignal): Promise<void> {
  if (dom.built || dom.busy) throw new HypervisorError('restore', 'EEXIST', `domain ${dom.domid} already has memory`);
  dom.busy = 'restore';
  try {
    await restoreDomain(dom, input, signal, {
      populate: (pfn) => {
        if (dom.dying) throw new HypervisorError('restore', 'ESRCH', `domain ${dom.domid} is dying`);
        checkPfn(pfn);
        if (!dom.memory.isPresent(pfn)) env.host.reserve('restore', dom, 1);
        dom.memory.populate(pfn);
      },
      release: (pfn) => {
        checkPfn(pfn);
        if (dom.memory.release(pfn)) env.host.invalidate();
      },
    });
  } catch (err) {
    // A failed restore leaves a domain the toolstack will destroy; return what it took.
    dom.memory.releaseAll();
    env.host.invalidate();
    throw err;
  } finally {
    dom.busy = undefined;
  }
}

function checkPfn(pfn: number): void {
  if (pfn >= MAX_P2M_PFNS) throw new HypervisorError('restore', 'EINVAL', `stream names pfn 0x${pfn.toString(16)}, past the sim's p2m limit of 0x${MAX_P2M_PFNS.toString(16)}`);
}
