// A guest's pseudo-physical memory, sparse: only pages that were ever written cost anything.
//
// The p2m covers pfns [0, p2mSize). A pfn in that range is *present* (populated) unless it is
// a hole (ballooned out, or never sent by a migration stream). A present page that was never
// written reads as zeros and costs nothing. A written page is stored either as its bytes
// (restored or explicitly written) or, for pages a simulated running guest dirtied, as a
// generation number whose bytes are derived on demand (see pattern.ts): a guest that dirties
// thousands of pages keeps costing a few bytes per page until somebody reads them.
import { createHash } from 'node:crypto';
import { fillPattern } from './pattern.js';
import { PfnRanges } from './pfn-ranges.js';

export const PAGE_SIZE = 4096;
export const PAGE_SHIFT = 12;
/**
 * The largest p2m the sim gives a guest (1 TiB of pseudo-physical space). A migration stream may
 * name any pfn below 2^52; one past this bound is refused rather than followed.
 */
export const MAX_P2M_PFNS = 1 << 28;

type PageContent = Uint8Array | number;

export class GuestMemory {
  private p2mSizeValue = 0;
  private readonly pages = new Map<number, PageContent>();
  private readonly holes = new PfnRanges();
  /** Dirty pfns since the last clean, while log-dirty is enabled. */
  private dirtyLog: Set<number> | undefined;

  /** Seed of generated page contents: distinct guests write distinct bytes. */
  constructor(readonly seed: number) {}

  get p2mSize(): number {
    return this.p2mSizeValue;
  }

  /** Populated pages (what Xen counts in tot_pages for the guest's RAM). */
  get presentPages(): number {
    return this.p2mSizeValue - this.holes.size;
  }

  /** Pages with stored contents (the sim's real cost). */
  get touchedPages(): number {
    return this.pages.size;
  }

  isPresent(pfn: number): boolean {
    return pfn >= 0 && pfn < this.p2mSizeValue && !this.holes.has(pfn);
  }

  /** Populates pfns [0, count) on a fresh build. */
  populateRange(count: number): void {
    checkP2mSize(count);
    this.holes.deleteRange(0, count);
    if (count > this.p2mSizeValue) this.p2mSizeValue = count;
  }

  /** Populates one pfn (restore); pfns skipped over become holes. Returns true if it was absent. */
  populate(pfn: number): boolean {
    if (pfn >= this.p2mSizeValue) {
      checkP2mSize(pfn + 1);
      this.holes.addRange(this.p2mSizeValue, pfn);
      this.p2mSizeValue = pfn + 1;
      return true;
    }
    return this.holes.delete(pfn);
  }

  /**
   * Removes a page from the guest; its contents are dropped. Returns true if it was present. A pfn
   * past the end grows the p2m with holes (a stream's XTAB entries for a ballooned-out top).
   */
  release(pfn: number): boolean {
    if (pfn >= this.p2mSizeValue) {
      checkP2mSize(pfn + 1);
      this.holes.addRange(this.p2mSizeValue, pfn + 1);
      this.p2mSizeValue = pfn + 1;
      return false;
    }
    if (!this.isPresent(pfn)) return false;
    this.holes.add(pfn);
    this.pages.delete(pfn);
    return true;
  }

  /**
   * The balloon driver gives back up to `count` present pages, highest pfns first; returns how many
   * went. Costs O(log holes + runs touched + pages whose contents are dropped), not O(p2m size).
   */
  releaseHighest(count: number): number {
    const runs: Array<[number, number]> = [];
    let want = count;
    let top = this.p2mSizeValue;
    const takeRun = (lo: number, hi: number): void => {
      const take = Math.min(want, hi - lo);
      if (take <= 0) return;
      runs.push([hi - take, hi]);
      want -= take;
    };
    for (const [holeStart, holeEnd] of this.holes.rangesDescending()) {
      if (want === 0) break;
      takeRun(holeEnd, top);
      top = holeStart;
    }
    if (want > 0) takeRun(0, top);
    for (const [lo, hi] of runs) {
      this.holes.addRange(lo, hi);
      this.dropContents(lo, hi);
    }
    return count - want;
  }

  /** The balloon driver takes back up to `count` pages into its lowest holes; returns how many. */
  populateLowestHoles(count: number): number {
    const runs: Array<[number, number]> = [];
    let want = count;
    for (const [lo, hi] of this.holes.ranges()) {
      if (want === 0) break;
      const take = Math.min(want, hi - lo);
      runs.push([lo, lo + take]);
      want -= take;
    }
    for (const [lo, hi] of runs) this.holes.deleteRange(lo, hi);
    return count - want;
  }

  /** Gives every page back (a failed restore): the p2m is empty again. */
  releaseAll(): void {
    this.pages.clear();
    this.holes.clear();
    this.p2mSizeValue = 0;
  }

  /** Runs of holes, ascending (what the p2m does not back). */
  holeRanges(): IterableIterator<[start: number, end: number]> {
    return this.holes.ranges();
  }

  private dropContents(lo: number, hi: number): void {
    if (hi - lo <= this.pages.size) {
      for (let pfn = lo; pfn < hi; pfn++) this.pages.delete(pfn);
    } else {
      for (const pfn of this.pages.keys()) if (pfn >= lo && pfn < hi) this.pages.delete(pfn);
    }
  }

  /** A page's bytes; undefined for a page that reads as zeros (never written). */
  read(pfn: number): Uint8Array | undefined {
    const content = this.pages.get(pfn);
    if (content === undefined) return undefined;
    if (typeof content !== 'number') return content;
    const bytes = new Uint8Array(PAGE_SIZE);
    fillPattern(bytes, this.seed, pfn, content);
    return bytes;
  }

  /** Stores a page's bytes (all-zero pages are stored as nothing). */
  write(pfn: number, data: Uint8Array): void {
    if (data.length !== PAGE_SIZE) throw new RangeError(`page ${pfn}: ${data.length} bytes, expected ${PAGE_SIZE}`);
    if (!this.isPresent(pfn)) throw new RangeError(`page ${pfn} is not populated`);
    if (isZero(data)) this.pages.delete(pfn);
    else this.pages.set(pfn, new Uint8Array(data)); // a copy, not a view: the caller's buffer may be a whole record
    this.markDirty(pfn);
  }

  /** A running guest writes to a page: its content becomes the next generation of its pattern. */
  dirtyGenerated(pfn: number): void {
    if (!this.isPresent(pfn)) return;
    const previous = this.pages.get(pfn);
    const generation = typeof previous === 'number' ? previous + 1 : 1;
    this.pages.set(pfn, generation);
    this.markDirty(pfn);
  }

  private markDirty(pfn: number): void {
    this.dirtyLog?.add(pfn);
  }

  get logDirtyEnabled(): boolean {
    return this.dirtyLog !== undefined;
  }

  enableLogDirty(): void {
    this.dirtyLog = new Set();
  }

  disableLogDirty(): void {
    this.dirtyLog = undefined;
  }

  /** Dirty pfns since the last clean, sorted; the log is kept (XEN_DOMCTL_SHADOW_OP_PEEK). */
  peekDirty(): number[] {
    return [...(this.dirtyLog ?? [])].sort((a, b) => a - b);
  }

  /** Dirty pfns since the last clean, sorted; the log is reset (XEN_DOMCTL_SHADOW_OP_CLEAN). */
  cleanDirty(): number[] {
    const dirty = this.peekDirty();
    this.dirtyLog?.clear();
    return dirty;
  }

  /**
   * sha256 over (pfn, bytes) of every present page that is not all zeros, in pfn order, plus
   * the set of present pfns: two guests with equal checksums hold byte-identical memory.
   */
  checksum(): string {
    const hash = createHash('sha256');
    const header = Buffer.alloc(16);
    header.writeUInt32LE(this.p2mSizeValue, 0);
    header.writeUInt32LE(this.presentPages, 4);
    hash.update(header);
    // Ranges are kept merged, so equal hole sets hash equal.
    for (const [start, end] of this.holes.ranges()) {
      hash.update(u64(start));
      hash.update(u64(end));
    }
    for (const pfn of [...this.pages.keys()].sort((a, b) => a - b)) {
      const bytes = this.read(pfn);
      if (bytes === undefined || isZero(bytes)) continue;
      hash.update(u64(pfn));
      hash.update(bytes);
    }
    return hash.digest('hex');
  }
}

function checkP2mSize(pfns: number): void {
  if (!Number.isInteger(pfns) || pfns < 0 || pfns > MAX_P2M_PFNS) {
    throw new RangeError(`a p2m of ${pfns} pfns exceeds the sim's limit of ${MAX_P2M_PFNS}`);
  }
}

function u64(value: number): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64LE(BigInt(value));
  return out;
}

export function isZero(data: Uint8Array): boolean {
  const words = data.byteOffset % 4 === 0 && data.length % 4 === 0
    ? new Uint32Array(data.buffer, data.byteOffset, data.length / 4)
    : data;
  for (let i = 0; i < words.length; i++) if (words[i] !== 0) return false;
  return true;
}
