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
//     domainState(domid)                 { type, storePfn, consolePfn, storePort, consolePort,
//                                          storeMfn, consoleMfn, evtchns } or undefined
//   Fault injection / knobs:
//     injectFault({ call, errno, times? })  call = a hypercall name above (e.g. 'createDomain',
//                                          'unpause', 'save'); times undefined = always
//     clearFaults(call?)  listFaults()  setHostMemory(mib)  setDirtyRate(domid, pagesPerSecond)
//   Test support: memoryChecksum(domid), readPage(domid,pfn), writePage(domid,pfn,bytes),
//     dirtyPages(domid, count) (exactly `count` guest writes now), close() (stops timers).
//   Events (EventEmitter):
//     'domainCreated' (domid)           'built' (domid)
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
import { EventEmitter } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import {
  HypervisorError,
  type BuildConfig,
  type BuildResult,
  type CreateDomainConfig,
  type DomainInfo,
  type PhysInfo,
  type SaveCallbacks,
  type SaveOptions,
  type SaveStats,
  type ShadowOp,
  type ShadowResult,
  type XenVersion,
} from '../../hypervisor/types.js';
import { PAGE_SIZE } from '../memory/guest-memory.js';
import { saveDomain } from '../stream/save.js';
import { restoreDomain } from '../stream/restore.js';
import { SimDomain } from './domain.js';
import { FaultTable, type FaultSpec } from './faults.js';
import { writeBootPages } from './boot-pages.js';
import { HostMemory } from './host-memory.js';
import { waitForSuspend } from './suspend-wait.js';

export { HypervisorError } from '../../hypervisor/types.js';
export type { FaultSpec } from './faults.js';
export { SimDomain } from './domain.js';

/** First domid Xen reserves (DOMID_FIRST_RESERVED). */
export const DOMID_FIRST_RESERVED = 0x7ff0;
const PAGES_PER_MIB = 256;

export interface SimHypervisorOptions {
  memoryMib?: number;
  pcpus?: number;
  dom0MemoryMib?: number;
  /** How long a destroyed domain stays dying before it is gone. */
  destroyDelayMs?: number;
  /** How long save waits, after the suspend callback, for the domain to shut down with reason suspend. */
  suspendTimeoutMs?: number;
  /** Monotonic clock in ms (tests may inject one). */
  now?: () => number;
}

export interface SimHypervisorEvents {
  domainCreated: [domid: number];
  built: [domid: number];
  paused: [domid: number];
  unpaused: [domid: number];
  shutdown: [domid: number, reason: number];
  resumed: [domid: number];
  destroyed: [domid: number];
  domExc: [domid: number];
}

export interface SimDomainState {
  type: string | undefined;
  storePfn: number;
  consolePfn: number;
  storeMfn: number;
  consoleMfn: number;
  storePort: number;
  consolePort: number;
  evtchns: { port: number; remoteDomid: number }[];
  dirtyRate: number;
  touchedPages: number;
}

export class SimHypervisor extends EventEmitter<SimHypervisorEvents> {
  readonly pcpus: number;
  private readonly domains = new Map<number, SimDomain>();
  private readonly host: HostMemory;
  private rover = 0;
  private nextMfn = 0x100000;
  private readonly faults = new FaultTable();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly destroyDelayMs: number;
  private readonly suspendTimeoutMs: number;
  private readonly now: () => number;

  constructor(opts: SimHypervisorOptions = {}) {
    super();
    const memoryMib = opts.memoryMib ?? 16384;
    const dom0Mib = opts.dom0MemoryMib ?? 1024;
    this.pcpus = opts.pcpus ?? 8;
    if (!Number.isInteger(memoryMib) || memoryMib <= 0) throw new RangeError(`memoryMib ${memoryMib}`);
    if (!Number.isInteger(this.pcpus) || this.pcpus <= 0) throw new RangeError(`pcpus ${this.pcpus}`);
    this.host = new HostMemory(memoryMib * PAGES_PER_MIB, () => this.domains.values());
    this.destroyDelayMs = opts.destroyDelayMs ?? 20;
    this.suspendTimeoutMs = opts.suspendTimeoutMs ?? 10_000;
    this.now = opts.now ?? (() => performance.now());
    const dom0 = new SimDomain(0, '00000000-0000-0000-0000-000000000000', { flags: 0, maxVcpus: this.pcpus }, 0);
    dom0.memory.populateRange(Math.min(dom0Mib * PAGES_PER_MIB, this.host.totalPages));
    dom0.maxPages = dom0.memory.presentPages;
    dom0.type = 'pv';
    dom0.built = true;
    dom0.pauseCount = 0;
    dom0.onlineVcpus = this.pcpus;
    dom0.updateRunning(this.now());
    this.domains.set(0, dom0);
  }

  // ─── hypercalls ──────────────────────────────────────────────────────────────────────────

  version(): XenVersion {
    this.faults.check('version');
    return { major: 4, minor: 17, extra: '.0-sim' };
  }

  physinfo(): PhysInfo {
    this.faults.check('physinfo');
    return { nrCpus: this.pcpus, totalPages: this.host.totalPages, freePages: this.host.freePages(), pageSize: PAGE_SIZE };
  }

  createDomain(cfg: CreateDomainConfig): number {
    this.faults.check('createDomain');
    if (!isUuid(cfg.handle)) throw new HypervisorError('createDomain', 'EINVAL', `handle ${JSON.stringify(cfg.handle)} is not a uuid`);
    if (!Number.isInteger(cfg.flags) || cfg.flags < 0 || cfg.flags > 0xff) throw new HypervisorError('createDomain', 'EINVAL', `flags ${cfg.flags}`);
    if (!Number.isInteger(cfg.maxVcpus) || cfg.maxVcpus < 1 || cfg.maxVcpus > 128) {
      throw new HypervisorError('createDomain', 'EINVAL', `maxVcpus ${cfg.maxVcpus} (1..128)`);
    }
    if (cfg.maxEvtchnPort !== undefined && (!Number.isInteger(cfg.maxEvtchnPort) || cfg.maxEvtchnPort < 1)) {
      throw new HypervisorError('createDomain', 'EINVAL', `maxEvtchnPort ${cfg.maxEvtchnPort}`);
    }
    const domid = this.allocateDomid();
    const mfnBase = this.nextMfn;
    this.nextMfn += 1 << 20; // room for a 4 GiB p2m: MFNs never collide across domains
    const dom = new SimDomain(domid, cfg.handle.toLowerCase(), cfg, mfnBase);
    this.domains.set(domid, dom);
    this.emit('domainCreated', domid);
    return domid;
  }

  setMaxVcpus(domid: number, max: number): void {
    this.faults.check('setMaxVcpus');
    const dom = this.live('setMaxVcpus', domid);
    if (!Number.isInteger(max) || max < 1 || max > dom.maxVcpus) {
      throw new HypervisorError('setMaxVcpus', 'EINVAL', `${max} vcpus (domain created with ${dom.maxVcpus})`);
    }
    dom.onlineVcpus = max;
  }

  setMaxMem(domid: number, maxKib: number): void {
    this.faults.check('setMaxMem');
    const dom = this.live('setMaxMem', domid);
    if (!Number.isInteger(maxKib) || maxKib < 0) throw new HypervisorError('setMaxMem', 'EINVAL', `maxKib ${maxKib}`);
    // Xen allows lowering below tot_pages: further allocations then fail.
    dom.maxPages = Math.ceil(maxKib / 4);
  }

  build(domid: number, cfg: BuildConfig, signal?: AbortSignal): BuildResult {
    this.faults.check('build');
    if (signal?.aborted) throw new HypervisorError('build', 'EINTR', 'aborted');
    const dom = this.live('build', domid);
    if (dom.built || dom.busy) throw new HypervisorError('build', 'EEXIST', `domain ${domid} already has memory`);
    if (!['pv', 'pvh', 'hvm'].includes(cfg.type)) throw new HypervisorError('build', 'EINVAL', `type ${cfg.type}`);
    if ((cfg.type === 'pv') === dom.hvm) {
      throw new HypervisorError('build', 'EINVAL', `a ${cfg.type} build of a domain created ${dom.hvm ? 'with' : 'without'} CDF_hvm`);
    }
    if (!Number.isInteger(cfg.memoryMib) || cfg.memoryMib < 1) throw new HypervisorError('build', 'EINVAL', `memoryMib ${cfg.memoryMib}`);
    if (typeof cfg.kernel !== 'string' || cfg.kernel === '') throw new HypervisorError('build', 'EINVAL', 'no kernel');
    const pages = cfg.memoryMib * PAGES_PER_MIB;
    this.host.reserve('build', dom, pages);
    dom.memory.populateRange(pages);
    dom.type = cfg.type;
    dom.built = true;
    dom.onlineVcpus ||= dom.maxVcpus;
    dom.storePort = cfg.storePort;
    dom.consolePort = cfg.consolePort;
    writeBootPages(dom, cfg);
    this.emit('built', domid);
    return this.specialFrames(dom);
  }

  getDomainInfoList(firstDomid: number, max: number): DomainInfo[] {
    this.faults.check('getDomainInfoList');
    if (!Number.isInteger(firstDomid) || firstDomid < 0) throw new HypervisorError('getDomainInfoList', 'EINVAL', `first domid ${firstDomid}`);
    if (!Number.isInteger(max) || max < 0) throw new HypervisorError('getDomainInfoList', 'EINVAL', `max ${max}`);
    const now = this.now();
    const out: DomainInfo[] = [];
    for (const domid of [...this.domains.keys()].sort((a, b) => a - b)) {
      if (domid < firstDomid) continue;
      if (out.length >= max) break;
      const dom = this.domains.get(domid)!;
      dom.settle(now);
      out.push(dom.info());
    }
    return out;
  }

  getDomainInfo(domid: number): DomainInfo | undefined {
    this.faults.check('getDomainInfo');
    const dom = this.domains.get(domid);
    if (!dom) return undefined;
    dom.settle(this.now());
    return dom.info();
  }

  pause(domid: number): void {
    this.faults.check('pause');
    const dom = this.guest('pause', domid);
    this.change(dom, () => dom.pauseCount++);
    if (dom.pauseCount === 1) this.emit('paused', domid);
  }

  unpause(domid: number): void {
    this.faults.check('unpause');
    const dom = this.guest('unpause', domid);
    if (dom.pauseCount === 0) throw new HypervisorError('unpause', 'EINVAL', `domain ${domid} is not paused`);
    this.change(dom, () => dom.pauseCount--);
    if (dom.pauseCount === 0) this.emit('unpaused', domid);
  }

  shutdown(domid: number, reason: number): void {
    this.faults.check('shutdown');
    this.doShutdown('shutdown', domid, reason);
  }

  destroy(domid: number): void {
    this.faults.check('destroy');
    if (domid === 0) throw new HypervisorError('destroy', 'EPERM', 'dom0 cannot be destroyed');
    const dom = this.existing('destroy', domid);
    if (dom.dying) return; // Xen: destroying a dying domain just continues the teardown
    this.change(dom, () => {
      dom.dying = true;
    });
    this.emit('domExc', domid);
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      this.reap(domid);
    }, this.destroyDelayMs);
    timer.unref();
    this.timers.add(timer);
  }

  evtchnAllocUnbound(domid: number, remoteDomid: number): number {
    this.faults.check('evtchnAllocUnbound');
    const dom = this.live('evtchnAllocUnbound', domid);
    if (!Number.isInteger(remoteDomid) || remoteDomid < 0 || remoteDomid >= DOMID_FIRST_RESERVED) {
      throw new HypervisorError('evtchnAllocUnbound', 'EINVAL', `remote domid ${remoteDomid}`);
    }
    // Port 0 is reserved; Xen hands out the lowest free port.
    for (let port = 1; port <= dom.maxEvtchnPort; port++) {
      if (!dom.evtchns.has(port)) {
        dom.evtchns.set(port, { port, remoteDomid });
        return port;
      }
    }
    throw new HypervisorError('evtchnAllocUnbound', 'ENOSPC', `domain ${domid} has no free event channel port`);
  }

  shadowControl(domid: number, op: ShadowOp): ShadowResult {
    this.faults.check('shadowControl');
    const dom = this.guest('shadowControl', domid);
    if (!dom.built) throw new HypervisorError('shadowControl', 'EINVAL', `domain ${domid} has no memory`);
    dom.settle(this.now());
    switch (op) {
      case 'enable_logdirty':
        if (dom.busy === 'save') throw new HypervisorError('shadowControl', 'EBUSY', `domain ${domid} is being saved`);
        dom.memory.enableLogDirty();
        return { dirty: [], dirtyCount: 0 };
      case 'off':
        if (dom.busy === 'save') throw new HypervisorError('shadowControl', 'EBUSY', `domain ${domid} is being saved`);
        dom.memory.disableLogDirty();
        return { dirty: [], dirtyCount: 0 };
      case 'peek':
      case 'clean': {
        if (!dom.memory.logDirtyEnabled) throw new HypervisorError('shadowControl', 'EINVAL', 'log-dirty is not enabled');
        const dirty = op === 'peek' ? dom.memory.peekDirty() : dom.memory.cleanDirty();
        return { dirty, dirtyCount: dirty.length };
      }
      default:
        throw new HypervisorError('shadowControl', 'EINVAL', `op ${JSON.stringify(op)}`);
    }
  }

  async save(domid: number, out: Writable, opts: SaveOptions, cb: SaveCallbacks): Promise<SaveStats> {
    this.faults.check('save');
    const dom = this.guest('save', domid);
    if (!dom.built) throw new HypervisorError('save', 'EINVAL', `domain ${domid} has no memory`);
    if (dom.busy) throw new HypervisorError('save', 'EBUSY', `domain ${domid} is busy with a ${dom.busy}`);
    dom.busy = 'save';
    try {
      return await saveDomain(dom, out, opts, cb, {
        settle: () => dom.settle(this.now()),
        waitSuspended: (signal) => waitForSuspend(this, dom, this.suspendTimeoutMs, signal),
        gone: () => dom.dying || this.domains.get(domid) !== dom,
      });
    } finally {
      dom.busy = undefined;
      dom.memory.disableLogDirty();
    }
  }

  async restore(domid: number, input: Readable, cfg: { storePort: number; consolePort: number }, signal?: AbortSignal): Promise<BuildResult> {
    this.faults.check('restore');
    const dom = this.live('restore', domid);
    if (dom.built || dom.busy) throw new HypervisorError('restore', 'EEXIST', `domain ${domid} already has memory`);
    dom.busy = 'restore';
    try {
      await restoreDomain(dom, input, signal, {
        populate: (pfn) => {
          if (dom.dying) throw new HypervisorError('restore', 'ESRCH', `domain ${domid} is dying`);
          if (!dom.memory.isPresent(pfn)) this.host.reserve('restore', dom, 1);
          dom.memory.populate(pfn);
        },
        release: (pfn) => {
          if (dom.memory.release(pfn)) this.host.invalidate();
        },
      });
      dom.built = true;
      dom.onlineVcpus ||= dom.maxVcpus;
      dom.storePort = cfg.storePort;
      dom.consolePort = cfg.consolePort;
      this.emit('built', domid);
      return this.specialFrames(dom);
    } catch (err) {
      // A failed restore leaves a domain the toolstack will destroy; return what it took.
      for (let pfn = 0; pfn < dom.memory.p2mSize; pfn++) dom.memory.release(pfn);
      this.host.invalidate();
      throw err;
    } finally {
      dom.busy = undefined;
    }
  }

  // ─── guest side ──────────────────────────────────────────────────────────────────────────

  /** SCHEDOP_shutdown from the guest itself. */
  shutdownFromGuest(domid: number, reason: number): void {
    this.doShutdown('shutdownFromGuest', domid, reason);
  }

  /** The guest's balloon driver: grows or shrinks its populated pages (top pfns go first). */
  balloonFromGuest(domid: number, targetPages: number): void {
    const dom = this.guest('balloonFromGuest', domid);
    if (!Number.isInteger(targetPages) || targetPages < 1) throw new HypervisorError('balloonFromGuest', 'EINVAL', `target ${targetPages}`);
    dom.settle(this.now());
    const mem = dom.memory;
    for (let pfn = mem.p2mSize - 1; pfn >= 0 && mem.presentPages > targetPages; pfn--) mem.release(pfn);
    this.host.invalidate();
    for (let pfn = 0; mem.presentPages < targetPages && pfn < mem.p2mSize; pfn++) {
      if (mem.isPresent(pfn)) continue;
      this.host.reserve('balloonFromGuest', dom, 1);
      mem.populate(pfn);
    }
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

  // ─── internals ───────────────────────────────────────────────────────────────────────────

  private allocateDomid(): number {
    for (let tries = 0; tries < DOMID_FIRST_RESERVED; tries++) {
      this.rover = this.rover + 1 >= DOMID_FIRST_RESERVED ? 1 : this.rover + 1;
      if (!this.domains.has(this.rover)) return this.rover;
    }
    throw new HypervisorError('createDomain', 'ENOMEM', 'no free domid');
  }

  private specialFrames(dom: SimDomain): BuildResult {
    // PV guests name machine frames; PVH/HVM guests name guest frames.
    const base = dom.type === 'pv' ? dom.mfnBase : 0;
    return { storeMfn: BigInt(base + dom.storePfn), consoleMfn: BigInt(base + dom.consolePfn) };
  }

  private doShutdown(call: string, domid: number, reason: number): void {
    const dom = this.guest(call, domid);
    if (!Number.isInteger(reason) || reason < 0 || reason > 5) throw new HypervisorError(call, 'EINVAL', `shutdown reason ${reason}`);
    if (dom.dying || dom.shutdownCode !== undefined) return; // Xen keeps the first reason
    this.change(dom, () => {
      dom.shutdownCode = reason;
    });
    this.emit('shutdown', domid, reason);
    this.emit('domExc', domid);
  }

  private change(dom: SimDomain, mutate: () => void): void {
    this.host.invalidate();
    const now = this.now();
    dom.settle(now);
    mutate();
    dom.updateRunning(now);
  }

  private reap(domid: number): void {
    const dom = this.domains.get(domid);
    if (!dom?.dying) return;
    this.domains.delete(domid);
    this.host.invalidate();
    this.emit('destroyed', domid);
    this.emit('domExc', domid);
  }

  private existing(call: string, domid: number): SimDomain {
    const dom = Number.isInteger(domid) ? this.domains.get(domid) : undefined;
    if (!dom) throw new HypervisorError(call, 'ESRCH', `no domain ${domid}`);
    return dom;
  }

  /** A domain that is not dying. */
  private live(call: string, domid: number): SimDomain {
    const dom = this.existing(call, domid);
    if (dom.dying) throw new HypervisorError(call, 'ESRCH', `domain ${domid} is dying`);
    return dom;
  }

  /** A live domain other than dom0 (dom0 cannot be paused, shut down or saved by the toolstack). */
  private guest(call: string, domid: number): SimDomain {
    const dom = this.live(call, domid);
    if (domid === 0) throw new HypervisorError(call, 'EINVAL', 'not allowed on dom0');
    return dom;
  }
}

function isUuid(value: unknown): value is string {
  return typeof value === 'string' && /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value);
}
