// The `xen` hypervisor backend: the Hypervisor interface on the real libxenctrl/libxenguest 4.17.
// Short calls go through koffi `.async` (a worker thread per call), so a slow hypercall never blocks the event
// loop; domain build, save and restore run in a helper process (xen-helper-client.ts) that a cancel kills.
import type {
  BuildConfig,
  BuildResult,
  CreateDomainConfig,
  DomainInfo,
  Hypervisor,
  PhysInfo,
  SaveCallbacks,
  SaveOptions,
  SaveStats,
  ShadowOp,
  ShadowResult,
  XenVersion,
} from './types.js';
import { HypervisorError } from './types.js';
import { loadXenLibraries, type XenLibraries, type XenLibraryPaths } from '../../bindings/lib.js';
import { openXcInterface, XenCtrl } from '../../bindings/xenctrl.js';
import { CHECKED_XEN_VERSIONS } from '../../bindings/structs.js';
import { XenHelper, type XenHelperOptions } from './xen-helper-client.js';

export interface XenBackendOptions extends XenLibraryPaths {
  /** How to start the helper process (tests). */
  helper?: Pick<XenHelperOptions, 'command' | 'env'>;
}

/** Refuses a hypervisor whose release the bindings were not checked against (domctl/sysctl ABIs differ). */
export function assertCheckedHypervisor(v: XenVersion): void {
  const release = `${v.major}.${v.minor}`;
  if ((CHECKED_XEN_VERSIONS as readonly string[]).includes(release)) return;
  throw new HypervisorError(
    'xen_version_check',
    'ENOTSUP',
    `the hypervisor is Xen ${release}${v.extra}; these bindings were checked against ${CHECKED_XEN_VERSIONS.join(', ')} only`,
  );
}

function mfn(value: string | number | undefined, what: string): bigint {
  if (value === undefined) throw new HypervisorError('xen-helper', 'EPROTO', `helper result lacks ${what}`);
  return BigInt(value);
}

export class XenHypervisorBackend implements Hypervisor {
  readonly kind = 'xen' as const;
  /** One helper kept for builds, so that a build does not pay a process start (seconds under emulation). */
  private idleHelper?: XenHelper;
  private readonly helpers = new Set<XenHelper>();
  private closed = false;

  constructor(
    private readonly ctrl: XenCtrl,
    readonly libs: XenLibraries,
    private readonly maxGrantVersion: number,
    private readonly maxVcpusByDomain: Map<number, number>,
    private readonly opts: XenBackendOptions = {},
  ) {}

  private helperOptions(): XenHelperOptions {
    return { libxenctrl: this.opts.libxenctrl, libxenguest: this.opts.libxenguest, ...this.opts.helper };
  }

  private spawnHelper(streamFd?: number): XenHelper {
    const h = new XenHelper(this.helperOptions(), streamFd);
    this.helpers.add(h);
    return h;
  }

  private live(): void {
    if (this.closed) throw new HypervisorError('xen', 'EBADF', 'backend closed');
  }

  version(): Promise<XenVersion> {
    this.live();
    return this.ctrl.version();
  }

  async physinfo(): Promise<PhysInfo> {
    this.live();
    const { nrCpus, totalPages, freePages, pageSize } = await this.ctrl.physinfo();
    return { nrCpus, totalPages, freePages, pageSize };
  }

  async createDomain(cfg: CreateDomainConfig): Promise<number> {
    this.live();
    const domid = await this.ctrl.domainCreate(cfg, this.maxGrantVersion);
    this.maxVcpusByDomain.set(domid, cfg.maxVcpus);
    return domid;
  }

  async setMaxVcpus(domid: number, max: number): Promise<void> {
    this.live();
    await this.ctrl.maxVcpus(domid, max);
    this.maxVcpusByDomain.set(domid, max);
  }

  setMaxMem(domid: number, maxKib: number): Promise<void> {
    this.live();
    return this.ctrl.setMaxMem(domid, maxKib);
  }

  async build(domid: number, cfg: BuildConfig, signal?: AbortSignal): Promise<BuildResult> {
    this.live();
    const maxVcpus = await this.maxVcpusOf(domid);
    let helper = this.idleHelper;
    this.idleHelper = undefined;
    if (!helper || !helper.alive) helper = this.spawnHelper();
    try {
      const r = await helper.run({ type: 'build', domid, req: { ...cfg, maxVcpus } }, { signal });
      if (!this.closed && helper.alive && !this.idleHelper) this.idleHelper = helper;
      else this.retire(helper);
      return { storeMfn: mfn(r.storeMfn, 'storeMfn'), consoleMfn: mfn(r.consoleMfn, 'consoleMfn') };
    } catch (err) {
      // A failed build may leave libxc state behind in the helper; start afresh next time.
      this.retire(helper);
      throw err;
    }
  }

  /** The builder needs the vCPU count: known from createDomain/setMaxVcpus, else read from Xen. */
  private async maxVcpusOf(domid: number): Promise<number> {
    const known = this.maxVcpusByDomain.get(domid);
    if (known !== undefined) return known;
    const info = await this.getDomainInfo(domid);
    if (!info) throw new HypervisorError('build', 'ESRCH', `domain ${domid} does not exist`);
    return info.maxVcpuId + 1;
  }

  private retire(h: XenHelper): void {
    this.helpers.delete(h);
    h.close();
  }

  /**
   * Callers ask for "all" with a large max (the daemon: 65536); libxenctrl takes at most 32768 per call and sizes
   * its buffer by max, so the list is read in pages of 1024 until a short page.
   */
  async getDomainInfoList(firstDomid: number, max: number): Promise<DomainInfo[]> {
    this.live();
    const PAGE = 1024;
    const out: DomainInfo[] = [];
    let first = firstDomid;
    while (out.length < max) {
      const want = Math.min(PAGE, max - out.length);
      const page = await this.ctrl.getInfoList(first, want);
      out.push(...page);
      if (page.length < want) break;
      first = page[page.length - 1]!.domid + 1;
    }
    return out;
  }

  getDomainInfo(domid: number): Promise<DomainInfo | undefined> {
    this.live();
    return this.ctrl.getInfo(domid);
  }

  pause(domid: number): Promise<void> {
    this.live();
    return this.ctrl.pause(domid);
  }
  unpause(domid: number): Promise<void> {
    this.live();
    return this.ctrl.unpause(domid);
  }
  shutdown(domid: number, reason: number): Promise<void> {
    this.live();
    return this.ctrl.shutdown(domid, reason);
  }
  async destroy(domid: number): Promise<void> {
    this.live();
    await this.ctrl.destroy(domid);
    this.maxVcpusByDomain.delete(domid);
  }
  evtchnAllocUnbound(domid: number, remoteDomid: number): Promise<number> {
    this.live();
    return this.ctrl.evtchnAllocUnbound(domid, remoteDomid);
  }

  async shadowControl(domid: number, op: ShadowOp): Promise<ShadowResult> {
    this.live();
    if (op === 'enable_logdirty' || op === 'off') {
      await this.ctrl.shadowControl(domid, op);
      return { dirty: [], dirtyCount: 0 };
    }
    if (op === 'peek' || op === 'clean') return this.ctrl.logdirty(domid, op);
    throw new HypervisorError('xc_shadow_control', 'EINVAL', `unknown shadow op ${JSON.stringify(op)}`);
  }

  async save(domid: number, fd: number, opts: SaveOptions, cb: SaveCallbacks): Promise<SaveStats> {
    this.live();
    const helper = this.spawnHelper(fd);
    try {
      const r = await helper.run(
        {
          type: 'save',
          domid,
          live: opts.live,
          maxRounds: opts.maxRounds ?? 5,
          dirtyThreshold: opts.dirtyThreshold ?? 50,
        },
        {
          onSuspend: () => cb.suspend(),
          onProgress: (p) => cb.progress?.(p.sent, p.sent + Math.max(0, p.dirty), p.round),
          signal: cb.signal,
        },
      );
      const pagesSent = Number(r.pagesSent);
      // bytes is -1 when the stream is not a regular file: estimate from the pages sent.
      const bytes = Number(r.bytes) >= 0 ? Number(r.bytes) : pagesSent * 4096;
      return { rounds: Number(r.rounds), pagesSent, bytes };
    } finally {
      this.retire(helper);
    }
  }

  async restore(
    domid: number,
    fd: number,
    cfg: { storePort: number; consolePort: number },
    signal?: AbortSignal,
  ): Promise<BuildResult> {
    this.live();
    const helper = this.spawnHelper(fd);
    try {
      const r = await helper.run({ type: 'restore', domid, storePort: cfg.storePort, consolePort: cfg.consolePort }, { signal });
      return { storeMfn: mfn(r.storeMfn, 'storeMfn'), consoleMfn: mfn(r.consoleMfn, 'consoleMfn') };
    } finally {
      this.retire(helper);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const h of this.helpers) h.kill();
    this.helpers.clear();
    this.idleHelper = undefined;
    this.ctrl.close();
  }
}

/**
 * Loads the libraries (refusing a libxenctrl release the bindings were not checked against), opens the
 * hypervisor interface (HypervisorError 'xc_interface_open' ENOENT outside a Xen dom0) and checks the
 * hypervisor's release.
 */
export async function openXenHypervisor(opts: XenBackendOptions = {}): Promise<XenHypervisorBackend> {
  const libs = loadXenLibraries({ libxenctrl: opts.libxenctrl, libxenguest: opts.libxenguest });
  const ctrl = openXcInterface(libs);
  try {
    assertCheckedHypervisor(await ctrl.version());
    const phys = await ctrl.physinfo();
    return new XenHypervisorBackend(ctrl, libs, XenCtrl.maxGrantVersion(phys.capabilities), new Map(), opts);
  } catch (err) {
    ctrl.close();
    throw err;
  }
}
