// The hypervisor's domain table: domid allocation (Xen's rover), machine frame ranges, and the
// lookups every hypercall starts with (ESRCH for a domain that is not there, or is dying).
import { HypervisorError } from '../../hypervisor/types.js';
import type { SimDomain } from './domain.js';

/** First domid Xen reserves (DOMID_FIRST_RESERVED). */
export const DOMID_FIRST_RESERVED = 0x7ff0;
/** MFNs per domain: room for a 4 GiB p2m, so machine frames never collide across domains. */
const MFN_STRIDE = 1 << 20;

export class DomainTable {
  private readonly domains = new Map<number, SimDomain>();
  private rover = 0;
  private nextMfn = 0x100000;

  get(domid: number): SimDomain | undefined {
    return this.domains.get(domid);
  }

  add(dom: SimDomain): void {
    this.domains.set(dom.domid, dom);
  }

  delete(domid: number): void {
    this.domains.delete(domid);
  }

  values(): IterableIterator<SimDomain> {
    return this.domains.values();
  }

  /** Domains in domid order. */
  sorted(): SimDomain[] {
    return [...this.domains.values()].sort((a, b) => a.domid - b.domid);
  }

  /** The next free domid after the rover (a domid in use, dying included, is never handed out). */
  allocateDomid(): number {
    for (let tries = 0; tries < DOMID_FIRST_RESERVED; tries++) {
      this.rover = this.rover + 1 >= DOMID_FIRST_RESERVED ? 1 : this.rover + 1;
      if (!this.domains.has(this.rover)) return this.rover;
    }
    throw new HypervisorError('createDomain', 'ENOMEM', 'no free domid');
  }

  /** Machine frame of pfn 0 for a new domain. */
  allocateMfnBase(): number {
    const base = this.nextMfn;
    this.nextMfn += MFN_STRIDE;
    return base;
  }

  existing(call: string, domid: number): SimDomain {
    const dom = Number.isInteger(domid) ? this.domains.get(domid) : undefined;
    if (!dom) throw new HypervisorError(call, 'ESRCH', `no domain ${domid}`);
    return dom;
  }

  /** A domain that is not dying. */
  live(call: string, domid: number): SimDomain {
    const dom = this.existing(call, domid);
    if (dom.dying) throw new HypervisorError(call, 'ESRCH', `domain ${domid} is dying`);
    return dom;
  }

  /** A live domain other than dom0 (dom0 cannot be paused, shut down or saved by the toolstack). */
  guest(call: string, domid: number): SimDomain {
    const dom = this.live(call, domid);
    if (domid === 0) throw new HypervisorError(call, 'EINVAL', 'not allowed on dom0');
    return dom;
  }
}
