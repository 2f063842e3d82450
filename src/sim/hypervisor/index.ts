// SimHypervisor: the in-process model of Xen's hypervisor for the simulated host.
//
// ─── Exported API (stable; helper D2's sim host codes against it) ─────────────────────────────
//   new SimHypervisor(opts?: SimHypervisorOptions)
//     opts: { memoryMib = 16384, pcpus = 8, dom0MemoryMib = 1024, destroyDelayMs = 20,
//             suspendTimeoutMs = 10000, now = () => performance.now() }
//   Hypercalls (mirror the Hypervisor interface in src/hypervisor/types.ts; synchronous except
//   save/restore; failures throw HypervisorError(call, errno) with errno ESRCH, EINVAL, ENOMEM,
//   EEXIST, EBUSY, EPERM, ENOSPC):
//     version() physinfo() createDomain(cfg) setMaxVcpus(domid,n) setMaxMem(domid,kib)
//     build(domid, cfg) getDomainInfoList(first,max) getDomainInfo(domid) pause(domid)
//     unpause(domid) shutdown(domid, reason) destroy(domid) evtchnAllocUnbound(domid, remote)
//     shadowControl(domid, op)
//     save(domid, out: Writable, opts, cb): Promise<SaveStats>       (stream: src/sim/stream/)
//     restore(domid, input: Readable, cfg, signal?): Promise<BuildResult>
//   Guest side (D2's guest model):
//     shutdownFromGuest(domid, reason)   SCHEDOP_shutdown: same effect as shutdown()
//     balloonFromGuest(domid, pages)     the guest's balloon driver sets its populated page count
//     resume(domid)                      xc_domain_resume: clears a suspend shutdown
//     setGuestIdle(domid, idle)          the guest booted and idles (blocked flag unless it dirties memory)
//     domainState(domid)                 { type, storePfn, consolePfn, storePort, consolePort,
//                                          storeMfn, consoleMfn, evtchns } or undefined
//   Fault injection / knobs:
//     injectFault({ call, errno, times? })  call = a hypercall name above (e.g. 'createDomain',
//                                          'unpause', 'save'); times undefined = always
//     clearFaults(call?)  listFaults()  setHostMemory(mib)  setDirtyRate(domid, pagesPerSecond)
//   Test support: memoryChecksum(domid), readPage(domid,pfn), writePage(domid,pfn,bytes),
//     dirtyPages(domid, count) (exactly `count` guest writes now), close() (stops timers).
//   Events (EventEmitter):
//     'domainCreated' (domid)           'built' (domid)   build gave it fresh memory (it boots)
//     'restored' (domid)                restore gave it a saved guest's memory (it carries on)
//     'paused' (domid)    pause count went 0 → 1    'unpaused' (domid)  count went 1 → 0
//     'shutdown' (domid, reason)        first shutdown of the domain (reason code 0..5)
//     'resumed' (domid)                 'destroyed' (domid)  the domain is gone (after dying)
//     'domExc' (domid)                  whenever Xen raises VIRQ_DOM_EXC: on shutdown, when
//                                       destroy makes it dying, and when it is finally gone
//
// Semantics follow Xen 4.17: domids from 1 upwards with a rover (a domid in use, dying
// included, is never handed out); dom0 is domid 0 with its own memory; a new domain is
// paused (count 1) with max_pages 0 until setMaxMem; build populates memoryMib of pages from
// the host's free memory (ENOMEM when above max_pages or the host is full); destroy returns
// memory at once, then the domain lingers `destroyDelayMs` as dying before it is gone.
//
// The hypercalls live in hypercalls.ts (HypercallModel, which this class extends); the domain
// table in domain-table.ts; host memory accounting in host-memory.ts and balloon.ts; save and
// restore in migration.ts; fault injection in faults.ts; option and event types in types.ts.
import { HypervisorError } from '../../hypervisor/types.js';
import { PAGE_SIZE } from '../memory/guest-memory.js';
import type { FaultSpec } from './faults.js';
import { balloon } from './balloon.js';
import { HypercallModel, PAGES_PER_MIB } from './hypercalls.js';
import type { SimDomainState } from './types.js';

export { HypervisorError } from '../../hypervisor/types.js';
export type { FaultSpec } from './faults.js';
export { SimDomain } from './domain.js';
export { DOMID_FIRST_RESERVED } from './domain-table.js';
export type { SimDomainState, SimHypervisorEvents, SimHypervisorOptions } from './types.js';

export class SimHypervisor extends HypercallModel {
  // ─── guest side ──────────────────────────────────────────────────────────────────────────

  /** SCHEDOP_shutdown from the guest itself. */
  shutdownFromGuest(domid: number, reason: number): void {
    this.doShutdown('shutdownFromGuest', domid, reason);
  }

  /** The guest's balloon driver: grows or shrinks its populated pages (top pfns go first). */
  balloonFromGuest(domid: number, targetPages: number): void {
    const dom = this.guest('balloonFromGuest', domid);
    dom.settle(this.now());
    balloon(dom, this.host, targetPages);
  }

  /** xc_domain_resume: a domain shut down for suspend runs again. */
  resume(domid: number): void {
    this.faults.check('resume');
    const dom = this.guest('resume', domid);
    if (dom.shutdownCode !== 2) throw new HypervisorError('resume', 'EINVAL', `domain ${domid} is not suspended`);
    this.change(dom, () => {
      dom.shutdownCode = undefined;
    });
    this.emit('resumed', domid);
  }

  /**
   * The guest model says whether its guest has booted and idles (true) or is booting / computing (false): an idle
   * guest's vcpus are blocked (XEN_DOMINF_blocked) unless it dirties memory. An unknown domid is ESRCH.
   */
  setGuestIdle(domid: number, idle: boolean): void {
    const dom = this.existing('setGuestIdle', domid);
    dom.settle(this.now());
    dom.guestIdle = idle;
  }

  domainState(domid: number): SimDomainState | undefined {
    const dom = this.domains.get(domid);
    if (!dom) return undefined;
    const frames = this.specialFrames(dom);
    return {
      type: dom.type,
      storePfn: dom.storePfn,
      consolePfn: dom.consolePfn,
      storeMfn: Number(frames.storeMfn),
      consoleMfn: Number(frames.consoleMfn),
      storePort: dom.storePort,
      consolePort: dom.consolePort,
      evtchns: [...dom.evtchns.values()].map((e) => ({ ...e })),
      dirtyRate: dom.dirtier.rate,
      touchedPages: dom.memory.touchedPages,
    };
  }

  // ─── fault injection, knobs, test support ────────────────────────────────────────────────

  injectFault(spec: FaultSpec): void {
    this.faults.inject(spec);
  }

  clearFaults(call?: string): void {
    this.faults.clear(call);
  }

  listFaults(): FaultSpec[] {
    return this.faults.list();
  }

  /** Resizes the host. Shrinking below what domains hold leaves 0 free pages (allocations fail). */
  setHostMemory(mib: number): void {
    if (!Number.isInteger(mib) || mib <= 0) throw new HypervisorError('setHostMemory', 'EINVAL', `memory ${mib} MiB`);
    this.host.setTotalPages(mib * PAGES_PER_MIB);
  }

  setDirtyRate(domid: number, pagesPerSecond: number): void {
    const dom = this.existing('setDirtyRate', domid);
    if (!Number.isFinite(pagesPerSecond) || pagesPerSecond < 0) {
      throw new HypervisorError('setDirtyRate', 'EINVAL', `rate ${pagesPerSecond}`);
    }
    dom.settle(this.now());
    dom.dirtier.setRate(pagesPerSecond);
  }

  /** Exactly `count` guest writes now, regardless of run state. */
  dirtyPages(domid: number, count: number): void {
    const dom = this.existing('dirtyPages', domid);
    dom.dirtier.writePages(dom.memory, count);
  }

  memoryChecksum(domid: number): string {
    const dom = this.existing('memoryChecksum', domid);
    dom.settle(this.now());
    return dom.memory.checksum();
  }

  readPage(domid: number, pfn: number): Uint8Array {
    const dom = this.existing('readPage', domid);
    if (!dom.memory.isPresent(pfn)) throw new HypervisorError('readPage', 'EINVAL', `pfn ${pfn} is not populated`);
    dom.settle(this.now());
    return dom.memory.read(pfn) ?? new Uint8Array(PAGE_SIZE);
  }

  writePage(domid: number, pfn: number, bytes: Uint8Array): void {
    const dom = this.existing('writePage', domid);
    if (!dom.memory.isPresent(pfn)) throw new HypervisorError('writePage', 'EINVAL', `pfn ${pfn} is not populated`);
    dom.memory.write(pfn, bytes);
  }

  freePages(): number {
    return this.host.freePages();
  }

  /** Stops the destroy timers (dying domains are reaped at once). */
  close(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    for (const dom of [...this.domains.values()]) if (dom.dying) this.reap(dom.domid);
  }

}
