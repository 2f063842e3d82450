// A set of pfns kept as sorted, disjoint, non-adjacent half-open ranges [start, end).
//
// A guest's holes (ballooned-out pages, pfns a stream skipped) come in runs: a 1 GiB guest
// ballooned to 512 MiB has one run of 131,072 holes, which costs one entry here instead of
// 131,072 in a Set, and giving back or taking a run of pages costs O(log ranges + ranges moved),
// not O(pages). A stream that names a pfn far past the end adds one range, not one entry per
// skipped pfn.
export class PfnRanges {
  private starts: number[] = [];
  private ends: number[] = [];
  private count = 0;

  /** Number of pfns in the set. */
  get size(): number {
    return this.count;
  }

  /** Number of ranges (the set's real cost). */
  get rangeCount(): number {
    return this.starts.length;
  }

  has(pfn: number): boolean {
    const i = this.lastStartAtOrBelow(pfn);
    return i >= 0 && pfn < this.ends[i]!;
  }

  add(pfn: number): void {
    this.addRange(pfn, pfn + 1);
  }

  /** Removes one pfn; true if it was in the set. */
  delete(pfn: number): boolean {
    if (!this.has(pfn)) return false;
    this.deleteRange(pfn, pfn + 1);
    return true;
  }

  /** Adds [start, end), merging with the ranges it touches. */
  addRange(start: number, end: number): void {
    if (end <= start) return;
    // First range that could touch [start, end): the last one starting at or below start, if it reaches start.
    let first = this.lastStartAtOrBelow(start);
    if (first < 0 || this.ends[first]! < start) first++;
    let last = first;
    let lo = start;
    let hi = end;
    let removed = 0;
    while (last < this.starts.length && this.starts[last]! <= end) {
      lo = Math.min(lo, this.starts[last]!);
      hi = Math.max(hi, this.ends[last]!);
      removed += this.ends[last]! - this.starts[last]!;
      last++;
    }
    this.starts.splice(first, last - first, lo);
    this.ends.splice(first, last - first, hi);
    this.count += hi - lo - removed;
  }

  /** Removes [start, end), splitting a range that spans it. */
  deleteRange(start: number, end: number): void {
    if (end <= start) return;
    let first = this.lastStartAtOrBelow(start);
    if (first < 0 || this.ends[first]! <= start) first++;
    const newStarts: number[] = [];
    const newEnds: number[] = [];
    let last = first;
    while (last < this.starts.length && this.starts[last]! < end) {
      const s = this.starts[last]!;
      const e = this.ends[last]!;
      this.count -= Math.min(e, end) - Math.max(s, start);
      if (s < start) {
        newStarts.push(s);
        newEnds.push(start);
      }
      if (e > end) {
        newStarts.push(end);
        newEnds.push(e);
      }
      last++;
    }
    if (last === first) return;
    this.starts.splice(first, last - first, ...newStarts);
    this.ends.splice(first, last - first, ...newEnds);
  }

  clear(): void {
    this.starts = [];
    this.ends = [];
    this.count = 0;
  }

  /** The ranges, ascending. */
  *ranges(): IterableIterator<[start: number, end: number]> {
    for (let i = 0; i < this.starts.length; i++) yield [this.starts[i]!, this.ends[i]!];
  }

  /** The ranges, descending. */
  *rangesDescending(): IterableIterator<[start: number, end: number]> {
    for (let i = this.starts.length - 1; i >= 0; i--) yield [this.starts[i]!, this.ends[i]!];
  }

  /** Index of the last range whose start is <= pfn, or -1. */
  private lastStartAtOrBelow(pfn: number): number {
    let lo = 0;
    let hi = this.starts.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.starts[mid]! <= pfn) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }
}
