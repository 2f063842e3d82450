// Domains as xenstored tracks them: introduced or merely referenced (by a permission or a node owner),
// with the per-domain counters quotas are checked against. Domid 0 is the privileged domain.
import type { Connection } from './connection.js';

/** DOMID_FIRST_RESERVED: domids from here up are special (DOMID_SELF = 0x7FF0). */
export const DOMID_FIRST_RESERVED = 0x7ff0;
export const DOMID_SELF = 0x7ff0;

export type DomainState = 'running' | 'shutdown' | 'dying' | 'gone';

export class Domain {
  introduced = false;
  /** Shutdown already reported through @releaseDomain. */
  shutdown = false;
  /** Nodes owned by this domain (quota "nodes"). */
  nbentry = 0;
  /** Bytes of store records, keys and watches accounted to this domain (quota "memory"). */
  memory = 0;
  /** Watches held by this domain's connections (quota "watches"). */
  nbwatch = 0;
  /** SET_TARGET: this domain may act on nodes of that one (a device model for its guest). */
  target: number | undefined;
  /**
   * Domains whose SET_TARGET names this one, most recent first. In xenstored each is a talloc reference
   * on this domain's connection, and RELEASE then only drops one reference instead of freeing it.
   */
  heldBy: Domain[] = [];
  /** Connections speaking as this domain (the sim allows several; C xenstored has one ring). */
  readonly conns = new Set<Connection>();

  constructor(
    readonly domid: number,
    /** Global generation count when this struct was created: older node permissions naming it are stale. */
    readonly generation: number,
  ) {}

  get path(): string {
    return `/local/domain/${this.domid}`;
  }
}

export function isPrivilegedDomid(domid: number): boolean {
  return domid === 0;
}

export class DomainTable {
  /** Newest first, as xenstored's list (alloc adds at the head). */
  private readonly byId = new Map<number, Domain>();
  private order: Domain[] = [];

  constructor(private readonly hypervisor: (domid: number) => DomainState) {}

  find(domid: number): Domain | undefined {
    return this.byId.get(domid);
  }

  /** The hypervisor's view (xc_domain_getinfo). */
  state(domid: number): DomainState {
    return this.hypervisor(domid);
  }

  exists(domid: number): boolean {
    return this.hypervisor(domid) !== 'gone';
  }

  alloc(domid: number, generation: number): Domain {
    const d = new Domain(domid, generation);
    this.byId.set(domid, d);
    this.order.unshift(d);
    return d;
  }

  findOrAlloc(domid: number, generation: number): Domain {
    return this.byId.get(domid) ?? this.alloc(domid, generation);
  }

  /** find_or_alloc_existing_domain: only for domids the hypervisor knows. */
  findOrAllocExisting(domid: number, generation: number): Domain | undefined {
    const d = this.byId.get(domid);
    if (d) return d;
    return this.exists(domid) ? this.alloc(domid, generation) : undefined;
  }

  remove(d: Domain): void {
    if (this.byId.get(d.domid) === d) this.byId.delete(d.domid);
    this.order = this.order.filter((x) => x !== d);
  }

  /** Snapshot, newest first. */
  list(): Domain[] {
    return this.order.slice();
  }
}
