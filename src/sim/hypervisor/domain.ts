// One simulated domain's state, and its decoding into xc_domaininfo_t fields.
import { CreateFlag, DomInfoFlag, type DomainInfo, type DomainType } from '../../hypervisor/types.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { GuestDirtier } from '../memory/dirtier.js';

export interface EventChannel {
  port: number;
  /** The domain allowed to bind the other end. */
  remoteDomid: number;
}


/** Share of wall time an idle (blocked) guest's vcpu still runs. */
const IDLE_CPU_SHARE = 0.01;
export class SimDomain {
  /** XEN_DOMCTL_CDF_* bits given at creation. */
  readonly createFlags: number;
  readonly maxVcpus: number;
  readonly maxEvtchnPort: number;
  /** Vcpus the guest has up (set by build / setMaxVcpus). */
  onlineVcpus = 0;
  maxPages = 0;
  /** Set by build or restore. */
  type: DomainType | undefined;
  built = false;
  /** Xen creates domains paused: the toolstack's first unpause starts them. */
  pauseCount = 1;
  shutdownCode: number | undefined;
  dying = false;
  readonly memory: GuestMemory;
  readonly dirtier = new GuestDirtier();
  cpuTimeNs = 0;
  /** Clock (ms) since when the domain has been running; undefined when not running. */
  runningSince: number | undefined;
  readonly evtchns = new Map<number, EventChannel>();
  /** Special pages, as pfns. */
  startInfoPfn = 1;
  storePfn = 2;
  consolePfn = 3;
  storePort = 0;
  consolePort = 0;
  /** Machine frame of pfn 0: PV MFNs are mfnBase + pfn, distinct across domains. */
  readonly mfnBase: number;
  /** A save or restore holds the domain. */
  busy: 'save' | 'restore' | undefined;
  /**
   * The guest says it has booted and waits for work (set by the guest model through SimHypervisor.setGuestIdle):
   * its vcpus sit blocked in the idle loop unless its workload writes memory.
   */
  guestIdle = false;

  constructor(
    readonly domid: number,
    readonly handle: string,
    cfg: { flags: number; maxVcpus: number; maxEvtchnPort?: number },
    mfnBase: number,
  ) {
    this.createFlags = cfg.flags;
    this.maxVcpus = cfg.maxVcpus;
    this.maxEvtchnPort = cfg.maxEvtchnPort ?? 1023;
    this.mfnBase = mfnBase;
    this.memory = new GuestMemory(domid * 0x10001 + hashString(handle));
  }

  get hvm(): boolean {
    return (this.createFlags & CreateFlag.hvm) !== 0;
  }

  /** Running: built, unpaused, not shut down, not dying (a vcpu would be scheduled). */
  get isRunning(): boolean {
    return this.built && this.pauseCount === 0 && this.shutdownCode === undefined && !this.dying;
  }

  /**
   * XEN_DOMINF_blocked: a running domain whose vcpus all wait for an event (an idle guest, `xl list` "-b----").
   * A booting guest or one whose workload dirties memory is computing: running, not blocked ("r-----").
   */
  get isBlocked(): boolean {
    return this.isRunning && this.guestIdle && this.dirtier.rate === 0;
  }

  get totPages(): number {
    return this.dying ? 0 : this.memory.presentPages;
  }

  /** Accrues cpu time and guest writes up to `now` (ms). */
  settle(now: number): void {
    if (this.runningSince === undefined) return;
    const elapsedMs = now - this.runningSince;
    if (elapsedMs <= 0) return;
    // A blocked vcpu is scheduled only to take its timer and event interrupts: an idle guest's cpu time still
    // grows, at a small share of wall time (what `xl list` shows for an idle PV guest).
    this.cpuTimeNs += Math.round(elapsedMs * 1e6 * (this.isBlocked ? IDLE_CPU_SHARE : 1));
    this.dirtier.advance(this.memory, elapsedMs);
    this.runningSince = now;
  }

  /** Call after any state change (after settle): starts or stops the run clock. */
  updateRunning(now: number): void {
    if (this.isRunning) this.runningSince ??= now;
    else this.runningSince = undefined;
  }

  info(): DomainInfo {
    let flags = 0;
    if (this.dying) flags |= DomInfoFlag.dying;
    if (this.hvm) flags |= DomInfoFlag.hvm_guest;
    if (this.shutdownCode !== undefined) flags |= DomInfoFlag.shutdown | ((this.shutdownCode & 0xff) << 16);
    if (this.pauseCount > 0) flags |= DomInfoFlag.paused;
    const blocked = this.isBlocked;
    if (blocked) flags |= DomInfoFlag.blocked;
    else if (this.isRunning) flags |= DomInfoFlag.running;
    if (this.createFlags & CreateFlag.xs_domain) flags |= DomInfoFlag.xs_domain;
    if (this.hvm && this.createFlags & CreateFlag.hap) flags |= DomInfoFlag.hap;
    return {
      domid: this.domid,
      flags,
      dying: this.dying,
      shutdown: this.shutdownCode !== undefined,
      shutdownReason: this.shutdownCode ?? 0,
      paused: this.pauseCount > 0,
      running: this.isRunning && !blocked,
      blocked,
      hvm: this.hvm,
      totPages: this.totPages,
      maxPages: this.maxPages,
      cpuTimeNs: this.cpuTimeNs,
      onlineVcpus: this.onlineVcpus,
      maxVcpuId: Math.max(0, this.maxVcpus - 1),
      handle: this.handle,
    };
  }
}

function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
