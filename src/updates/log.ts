// The updates log behind UPDATES.get: which objects changed, as ids not data, coalesced (an id appears once, at the
// position of its latest change) so a slow client never sees a backlog grow beyond the number of objects.
// Sequence numbers start at 1; get({from}) returns ids changed at seq >= from and `next` = last seq + 1, which the
// client passes as `from` next time. Because each id sits at its latest change, ids of one VM come out in the order
// of their latest changes (per-VM order kept).

import type { Update, UpdateKind } from '../../api/v1/types.js';

interface Entry {
  seq: number;
  kind: UpdateKind;
  id: string;
}

export interface UpdatesLogOptions {
  /** Ids kept at most (oldest changes forgotten first; a client that fell behind them gets every id still held). */
  maxIds?: number;
}

export interface GetOptions {
  from?: number;
  /** Seconds to wait when nothing at >= from (default 0: answer at once). */
  timeoutS?: number;
  /** Stops the wait early (answer with what there is). */
  signal?: AbortSignal;
}

export class UpdatesLog {
  /** Appended in seq order; entries whose id has a later seq in `latest` are stale and skipped. */
  private entries: Entry[] = [];
  /** Latest seq of each id, one map per kind (no key strings to build on the hot path). */
  private latest: Record<UpdateKind, Map<string, number>> = { vm: new Map(), vbd: new Map(), vif: new Map(), task: new Map() };
  private size = 0;
  private nextSeq = 1;
  private waiters = new Set<() => void>();
  private wakeScheduled = false;
  private readonly maxIds: number;

  constructor(options: UpdatesLogOptions = {}) {
    this.maxIds = options.maxIds ?? 100_000;
  }

  /** Record that object (kind, id) changed. Cheap: called for every task progress step. */
  add(kind: UpdateKind, id: string): void {
    const seq = this.nextSeq++;
    const latest = this.latest[kind];
    if (!latest.has(id)) this.size++;
    latest.set(id, seq);
    this.entries.push({ seq, kind, id });
    if (this.entries.length > 2 * this.size + 1024) this.compact();
    if (this.size > this.maxIds) this.evictOldest();
    if (this.waiters.size > 0 && !this.wakeScheduled) {
      // Wake on the next turn so several changes made together come out in one answer.
      this.wakeScheduled = true;
      setImmediate(() => {
        this.wakeScheduled = false;
        const waiters = [...this.waiters];
        this.waiters.clear();
        for (const wake of waiters) wake();
      });
    }
  }

  /** The value `next` has now: ids added from here on have seq >= this. */
  get head(): number {
    return this.nextSeq;
  }

  /** Updates at seq >= from, coalesced, in order of latest change. */
  snapshot(from = 0): { updates: Update[]; next: number } {
    const updates: Update[] = [];
    // Binary search for the first entry with seq >= from.
    let lo = 0;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.entries[mid]!.seq < from) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < this.entries.length; i++) {
      const e = this.entries[i]!;
      if (this.latest[e.kind].get(e.id) === e.seq) updates.push({ kind: e.kind, id: e.id });
    }
    return { updates, next: this.nextSeq };
  }

  /** Long-poll: answer at once if anything is at >= from, else wait for a change, the timeout or the signal. */
  async get(options: GetOptions = {}): Promise<{ updates: Update[]; next: number }> {
    // A `from` beyond the head comes from an earlier daemon instance (seqs restart at 1): answer with every id held.
    const from = (options.from ?? 0) > this.nextSeq ? 0 : (options.from ?? 0);
    const first = this.snapshot(from);
    const timeoutMs = Math.max(0, (options.timeoutS ?? 0) * 1000);
    if (first.updates.length > 0 || timeoutMs === 0 || options.signal?.aborted) return first;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        options.signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.waiters.add(done);
      options.signal?.addEventListener('abort', done, { once: true });
    });
    return this.snapshot(from);
  }

  /** Number of waiting long-polls (for tests and metrics). */
  get waiting(): number {
    return this.waiters.size;
  }

  private compact(): void {
    this.entries = this.entries.filter((e) => this.latest[e.kind].get(e.id) === e.seq);
  }

  private evictOldest(): void {
    this.compact();
    const excess = this.size - this.maxIds;
    for (let i = 0; i < excess; i++) this.latest[this.entries[i]!.kind].delete(this.entries[i]!.id);
    this.size -= excess;
    this.entries = this.entries.slice(excess);
  }
}
