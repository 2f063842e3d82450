// Domain info for read-only API calls (VM.stat, VM.list): a short-lived cache in front of the hypervisor, so that
// thousands of stats per second cost a few hypervisor calls. Operations never use it (they read fresh info), and
// every change the daemon makes or sees (operation end, @releaseDomain scan) refreshes or drops the entry, so a
// stat is at most ttlMs behind only for what changes inside a guest (memory actual, cpu time).
import type { DomainInfo, Hypervisor } from '../hypervisor/types.js';

interface Entry {
  at: number;
  info: DomainInfo | undefined;
}

export class DomainInfoCache {
  private readonly entries = new Map<number, Entry>();
  private readonly inflight = new Map<number, Promise<DomainInfo | undefined>>();

  constructor(
    private readonly hv: Hypervisor,
    private readonly ttlMs = 50,
  ) {}

  get(domid: number): Promise<DomainInfo | undefined> {
    const e = this.entries.get(domid);
    if (e && performance.now() - e.at < this.ttlMs) return Promise.resolve(e.info);
    let p = this.inflight.get(domid);
    if (!p) {
      const started = performance.now();
      p = this.hv.getDomainInfo(domid).then(
        (info) => {
          this.inflight.delete(domid);
          // An invalidate() while the call ran makes this answer stale: do not keep it.
          if (this.entries.get(domid)?.at !== -1) this.entries.set(domid, { at: started, info });
          else this.entries.delete(domid);
          return info;
        },
        (err) => {
          this.inflight.delete(domid);
          throw err;
        },
      );
      this.inflight.set(domid, p);
    }
    return p;
  }

  /** Drops what is known of domid (after the daemon changed it). */
  invalidate(domid: number): void {
    if (this.inflight.has(domid)) this.entries.set(domid, { at: -1, info: undefined });
    else this.entries.delete(domid);
  }

  /** Takes a full domain list (from a scan) as fresh. */
  fill(domains: Map<number, DomainInfo>): void {
    const now = performance.now();
    for (const domid of this.entries.keys()) if (!domains.has(domid) && !this.inflight.has(domid)) this.entries.delete(domid);
    for (const [domid, info] of domains) if (!this.inflight.has(domid)) this.entries.set(domid, { at: now, info });
  }
}
