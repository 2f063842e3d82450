// One @releaseDomain watch for the whole daemon (xenstored fires it when any domain shuts down or dies).
// Each event triggers one domain-list read; waiters for a domain's shutdown and the daemon's own listener
// (which applies on_poweroff/on_reboot/on_crash) are told from that one read. A slow poll backs the watch up,
// so a lost event costs latency, never a hang.
import type { Logger } from 'pino';
import type { DomainInfo, Hypervisor } from '../hypervisor/types.js';
import type { Watch, XenstoreClient } from '../xenstore/types.js';
import { abortPromise, WaitTimeout } from './xs-wait.js';

type Listener = (domains: Map<number, DomainInfo>) => void;

export class DomainEvents {
  private watch?: Watch;
  private readonly listeners = new Set<Listener>();
  private scanning?: Promise<void>;
  private rescan = false;
  private poller?: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly hv: Hypervisor,
    private readonly xs: XenstoreClient,
    private readonly logger: Logger,
    private readonly pollMs = 1000,
  ) {}

  async start(): Promise<void> {
    this.watch = await this.xs.watch('@releaseDomain', 'xenopsd-ng-release');
    void (async () => {
      try {
        for await (const _ of this.watch!) this.trigger();
      } catch (err) {
        if (!this.closed) this.logger.error({ err }, '@releaseDomain watch failed');
      }
    })();
    this.poller = setInterval(() => {
      this.trigger();
    }, this.pollMs);
    this.poller.unref();
  }

  /** Subscribes to every scan of the domain list; returns the unsubscribe function. */
  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Asks for a scan now (coalesced: at most one runs, and one more after it). */
  trigger(): void {
    if (this.closed) return;
    if (this.scanning) {
      this.rescan = true;
      return;
    }
    this.scanning = this.scan().finally(() => {
      this.scanning = undefined;
      if (this.rescan) {
        this.rescan = false;
        this.trigger();
      }
    });
  }

  private async scan(): Promise<void> {
    let list: DomainInfo[];
    try {
      list = await this.hv.getDomainInfoList(0, 65536);
    } catch (err) {
      if (!this.closed) this.logger.warn({ err }, 'domain list read failed');
      return;
    }
    const byDomid = new Map(list.map((d) => [d.domid, d]));
    for (const l of [...this.listeners]) {
      try {
        l(byDomid);
      } catch (err) {
        this.logger.error({ err }, 'domain event listener failed');
      }
    }
  }

  /**
   * Resolves with the domain's info once it has shut down (or undefined once it no longer exists).
   * Rejects with WaitTimeout after timeoutMs, or with the signal's reason.
   */
  async waitShutdown(domid: number, timeoutMs: number, signal?: AbortSignal): Promise<DomainInfo | undefined> {
    const done = (info: DomainInfo | undefined): boolean => info === undefined || info.shutdown || info.dying;
    const first = await this.hv.getDomainInfo(domid);
    if (done(first)) return first;
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(new WaitTimeout(`domain ${domid} to shut down`, timeoutMs)), timeoutMs);
    const all = signal ? AbortSignal.any([signal, timeout.signal]) : timeout.signal;
    const aborted = abortPromise(all);
    let unsubscribe: () => void = () => {};
    try {
      const found = new Promise<DomainInfo | undefined>((resolve) => {
        unsubscribe = this.subscribe((domains) => {
          const info = domains.get(domid);
          if (done(info)) resolve(info);
        });
      });
      this.trigger();
      return await Promise.race([found, aborted.promise]);
    } finally {
      unsubscribe();
      clearTimeout(timer);
      aborted.dispose();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.poller) clearInterval(this.poller);
    await this.watch?.close().catch(() => {});
    await this.scanning;
  }
}
