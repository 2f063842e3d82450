// The host's memory as Xen accounts it: total pages, and free = total − what every domain holds
// (dom0 included). Allocations fail with ENOMEM above a domain's max_pages or the host's free pages.
import { HypervisorError } from '../../hypervisor/types.js';
import type { SimDomain } from './domain.js';

export class HostMemory {
  /**
   * Free pages, kept for the rest of the current tick: restore populates page by page, and summing
   * 1,000 domains for each page would be quadratic. Every path that frees pages calls invalidate();
   * reserve() updates it.
   */
  private cachedFree: number | undefined;

  constructor(
    private total: number,
    private readonly domains: () => Iterable<SimDomain>,
  ) {}

  get totalPages(): number {
    return this.total;
  }

  setTotalPages(pages: number): void {
    this.total = pages;
    this.invalidate();
  }

  invalidate(): void {
    this.cachedFree = undefined;
  }

  freePages(): number {
    if (this.cachedFree !== undefined) return this.cachedFree;
    let used = 0;
    for (const dom of this.domains()) used += dom.totPages;
    this.cachedFree = Math.max(0, this.total - used);
    queueMicrotask(() => this.invalidate());
    return this.cachedFree;
  }

  /** How many pages `dom` could take now: the lesser of its room below max_pages and the host's free pages. */
  available(dom: SimDomain): number {
    return Math.max(0, Math.min(dom.maxPages - dom.totPages, this.freePages()));
  }

  /** Takes `pages` from the host for `dom` (the caller populates them next, synchronously), or throws ENOMEM. */
  reserve(call: string, dom: SimDomain, pages: number): void {
    if (dom.totPages + pages > dom.maxPages) {
      throw new HypervisorError(call, 'ENOMEM', `domain ${dom.domid}: ${dom.totPages + pages} pages exceed max_pages ${dom.maxPages}`);
    }
    const free = this.freePages();
    if (pages > free) throw new HypervisorError(call, 'ENOMEM', `host has ${free} free pages, ${pages} needed`);
    this.cachedFree = free - pages;
  }
}
