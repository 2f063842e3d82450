// After save's suspend() callback: waits for the domain to be shut down with reason suspend, as
// libxenguest checks the domain is suspended before its last round.
import { HypervisorError, ShutdownReason } from '../../hypervisor/types.js';
import type { SimDomain } from './domain.js';

/** Where VIRQ_DOM_EXC is announced (the SimHypervisor). */
export interface DomExcSource {
  on(event: 'domExc', listener: (domid: number) => void): unknown;
  off(event: 'domExc', listener: (domid: number) => void): unknown;
}

export function waitForSuspend(
  events: DomExcSource,
  dom: SimDomain,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = (): void => {
      if (dom.shutdownCode === ShutdownReason.suspend) finish();
      else if (dom.shutdownCode !== undefined) {
        finish(new HypervisorError('save', 'EINVAL', `domain ${dom.domid} shut down with reason ${dom.shutdownCode}, not suspend`));
      } else if (dom.dying) finish(new HypervisorError('save', 'ESRCH', `domain ${dom.domid} is dying`));
    };
    const onExc = (domid: number): void => {
      if (domid === dom.domid) check();
    };
    const onAbort = (): void => finish(new HypervisorError('save', 'ECANCELED', 'save aborted'));
    const timer = setTimeout(
      () => finish(new HypervisorError('save', 'EBUSY', `domain ${dom.domid} did not suspend within ${timeoutMs} ms`)),
      timeoutMs,
    );
    let done = false;
    const finish = (err?: Error): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      events.off('domExc', onExc);
      signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve();
    };
    events.on('domExc', onExc);
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) onAbort();
    else check();
  });
}
