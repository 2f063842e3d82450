// The guest's balloon driver (XENMEM_decrease_reservation / populate_physmap): the guest sets how
// many pages it holds. Shrinking gives back the highest pfns; growing refills the lowest holes,
// never past the p2m the guest was built with. Work is O(runs of holes touched + pages whose
// contents are dropped), never O(p2m size): a guest that follows memory/target often stays cheap.
import { HypervisorError } from '../../hypervisor/types.js';
import type { SimDomain } from './domain.js';
import type { HostMemory } from './host-memory.js';

export function balloon(dom: SimDomain, host: HostMemory, targetPages: number): void {
  const call = 'balloonFromGuest';
  if (!Number.isInteger(targetPages) || targetPages < 1) throw new HypervisorError(call, 'EINVAL', `target ${targetPages}`);
  const mem = dom.memory;
  if (mem.presentPages > targetPages) {
    mem.releaseHighest(mem.presentPages - targetPages);
    host.invalidate();
    return;
  }
  const holes = mem.p2mSize - mem.presentPages;
  const wanted = Math.min(targetPages - mem.presentPages, holes);
  if (wanted === 0) return;
  // As populate_physmap, take what there is room for, then report the shortfall.
  const granted = Math.min(wanted, host.available(dom));
  if (granted > 0) {
    host.reserve(call, dom, granted);
    mem.populateLowestHoles(granted);
  }
  if (granted < wanted) {
    throw new HypervisorError(call, 'ENOMEM', `domain ${dom.domid}: ${granted} of ${wanted} pages populated (max_pages ${dom.maxPages}, host free ${host.freePages()})`);
  }
}
