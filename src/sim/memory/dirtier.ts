// A running guest's writes to its memory, at a configurable rate (pages per second).
//
// Lazy: nothing runs on a timer. Whoever observes the memory (log-dirty peek/clean, a save
// round, a checksum) first calls advance() with the time the guest spent running since the
// last call, and the pages it would have written in that time are dirtied then. 1,000 idle
// guests therefore cost no CPU at all. Which pfns get written is deterministic (a hash of the
// guest's seed and a write counter); how many depends on elapsed time.
import type { GuestMemory } from './guest-memory.js';
import { mix } from './pattern.js';

/** Pfns below this are the builder's boot pages (see sim/hypervisor/boot-pages.ts). */
export const FIRST_DIRTY_PFN = 4;

export class GuestDirtier {
  private pagesPerSecond = 0;
  private carry = 0;
  private writes = 0;

  get rate(): number {
    return this.pagesPerSecond;
  }

  setRate(pagesPerSecond: number): void {
    if (!Number.isFinite(pagesPerSecond) || pagesPerSecond < 0) throw new RangeError(`dirty rate ${pagesPerSecond}`);
    this.pagesPerSecond = pagesPerSecond;
    if (pagesPerSecond === 0) this.carry = 0;
  }

  /** Dirties the pages written during `runningMs` of guest run time; returns how many writes happened. */
  advance(memory: GuestMemory, runningMs: number): number {
    if (this.pagesPerSecond === 0 || runningMs <= 0 || memory.p2mSize === 0) return 0;
    const exact = (this.pagesPerSecond * runningMs) / 1000 + this.carry;
    const count = Math.floor(exact);
    this.carry = exact - count;
    this.writePages(memory, count);
    return count;
  }

  /**
   * Dirties `count` pages now (tests and fault injection use it for an exact count). At least as many
   * writes as the guest has pages dirty every page once instead: a guest left running unobserved for
   * hours at thousands of pages a second must not cost its next observer hours of event loop.
   */
  writePages(memory: GuestMemory, count: number): void {
    // The boot pages (kernel, start_info, rings) are left alone, as a guest kernel would.
    const first = memory.p2mSize > FIRST_DIRTY_PFN ? FIRST_DIRTY_PFN : 0;
    const span = memory.p2mSize - first;
    if (count >= span) {
      for (let pfn = first; pfn < memory.p2mSize; pfn++) memory.dirtyGenerated(pfn);
      this.writes += count;
      return;
    }
    for (let i = 0; i < count; i++) {
      const pfn = first + (mix(memory.seed ^ Math.imul(++this.writes, 0x27d4eb2d)) % span);
      memory.dirtyGenerated(pfn);
    }
  }
}
