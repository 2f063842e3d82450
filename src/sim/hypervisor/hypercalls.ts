// The hypercalls of the simulated hypervisor (Xen 4.17 semantics; see index.ts for the API).
// SimHypervisor (index.ts) adds the guest side, fault injection, knobs and test support on top.
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
import { SimDomain } from './domain.js';
import { DOMID_FIRST_RESERVED, DomainTable } from './domain-table.js';
import { FaultTable } from './faults.js';
import { writeBootPages } from './boot-pages.js';
import { HostMemory } from './host-memory.js';
import { restoreGuest, saveGuest, type MigrationEnv } from './migration.js';
import type { SimHypervisorEvents, SimHypervisorOptions } from './types.js';

export const PAGES_PER_MIB = 256;

export class HypercallModel extends EventEmitter<SimHypervisorEvents> {
  readonly pcpus: number;
  protected readonly domains = new DomainTable();
  protected readonly host: HostMemory;
  private readonly migration: MigrationEnv;
  protected readonly faults = new FaultTable();
  protected readonly timers = new Set<NodeJS.Timeout>();
  private readonly destroyDelayMs: number;
  private readonly suspendTimeoutMs: number;
  protected readonly now: () => number;

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
    this.domains.add(dom0);
    this.migration = { host: this.host, table: this.domains, events: this, now: this.now, suspendTimeoutMs: this.suspendTimeoutMs };
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
    const domid = this.domains.allocateDomid();
    const dom = new SimDomain(domid, cfg.handle.toLowerCase(), cfg, this.domains.allocateMfnBase());
    this.domains.add(dom);
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
    for (const dom of this.domains.sorted()) {
      if (dom.domid < firstDomid) continue;
      if (out.length >= max) break;
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
    return saveGuest(this.migration, this.guest('save', domid), out, opts, cb);
  }

  async restore(domid: number, input: Readable, cfg: { storePort: number; consolePort: number }, signal?: AbortSignal): Promise<BuildResult> {
    this.faults.check('restore');
    const dom = this.live('restore', domid);
    await restoreGuest(this.migration, dom, input, signal);
    dom.built = true;
    dom.onlineVcpus ||= dom.maxVcpus;
    dom.storePort = cfg.storePort;
    dom.consolePort = cfg.consolePort;
    // Not 'built': the guest in it was running when saved and carries on, it does not boot.
    this.emit('restored', domid);
    return this.specialFrames(dom);
  }

  // ─── internals ───────────────────────────────────────────────────────────────────────────

  protected specialFrames(dom: SimDomain): BuildResult {
    // PV guests name machine frames; PVH/HVM guests name guest frames.
    const base = dom.type === 'pv' ? dom.mfnBase : 0;
    return { storeMfn: BigInt(base + dom.storePfn), consoleMfn: BigInt(base + dom.consolePfn) };
  }

  protected doShutdown(call: string, domid: number, reason: number): void {
    const dom = this.guest(call, domid);
    if (!Number.isInteger(reason) || reason < 0 || reason > 5) throw new HypervisorError(call, 'EINVAL', `shutdown reason ${reason}`);
    if (dom.dying || dom.shutdownCode !== undefined) return; // Xen keeps the first reason
    this.change(dom, () => {
      dom.shutdownCode = reason;
    });
    this.emit('shutdown', domid, reason);
    this.emit('domExc', domid);
  }

  protected change(dom: SimDomain, mutate: () => void): void {
    this.host.invalidate();
    const now = this.now();
    dom.settle(now);
    mutate();
    dom.updateRunning(now);
  }

  protected reap(domid: number): void {
    const dom = this.domains.get(domid);
    if (!dom?.dying) return;
    this.domains.delete(domid);
    this.host.invalidate();
    this.emit('destroyed', domid);
    this.emit('domExc', domid);
  }

  protected existing(call: string, domid: number): SimDomain {
    return this.domains.existing(call, domid);
  }

  protected live(call: string, domid: number): SimDomain {
    return this.domains.live(call, domid);
  }

  protected guest(call: string, domid: number): SimDomain {
    return this.domains.guest(call, domid);
  }
}

function isUuid(value: unknown): value is string {
  return typeof value === 'string' && /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value);
}
