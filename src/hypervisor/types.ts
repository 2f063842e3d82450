// The one hypervisor interface of the daemon: the calls it needs from libxenctrl/libxenguest.
// Two backends implement it: `sim` (RPC to the sim host's hypervisor.sock) and `xen` (koffi FFI).
// Nothing above src/hypervisor/ may know which one it talks to.

/** Shutdown reason codes, as SHUTDOWN_* in xen/sched.h. */
export const ShutdownReason = {
  poweroff: 0,
  reboot: 1,
  suspend: 2,
  crash: 3,
  watchdog: 4,
  soft_reset: 5,
} as const;
export type ShutdownReasonName = keyof typeof ShutdownReason;

/** XEN_DOMINF_* bits of xc_domaininfo_t.flags. */
export const DomInfoFlag = {
  dying: 1 << 0,
  hvm_guest: 1 << 1,
  shutdown: 1 << 2,
  paused: 1 << 3,
  blocked: 1 << 4,
  running: 1 << 5,
  debugged: 1 << 6,
  xs_domain: 1 << 7,
  hap: 1 << 8,
} as const;

/** XEN_DOMCTL_CDF_* create flags. */
export const CreateFlag = {
  hvm: 1 << 0,
  hap: 1 << 1,
  s3_integrity: 1 << 2,
  oos_off: 1 << 3,
  xs_domain: 1 << 4,
  iommu: 1 << 5,
  nested_virt: 1 << 6,
  vpmu: 1 << 7,
} as const;

/** The fields of xc_domaininfo_t the daemon uses, decoded. */
export interface DomainInfo {
  domid: number;
  /** Raw XEN_DOMINF_* flags word (shutdown code in bits 16-23). */
  flags: number;
  dying: boolean;
  shutdown: boolean;
  /** Valid when shutdown is true. */
  shutdownReason: number;
  paused: boolean;
  running: boolean;
  blocked: boolean;
  hvm: boolean;
  totPages: number;
  maxPages: number;
  /** Nanoseconds of CPU time used. */
  cpuTimeNs: number;
  onlineVcpus: number;
  maxVcpuId: number;
  /** The domain handle as a uuid string. */
  handle: string;
}

export interface CreateDomainConfig {
  /** Domain handle: the VM's uuid. */
  handle: string;
  /** XEN_DOMCTL_CDF_* bits. */
  flags: number;
  maxVcpus: number;
  maxEvtchnPort?: number;
  maxGrantFrames?: number;
  maxMaptrackFrames?: number;
}

export interface PhysInfo {
  nrCpus: number;
  totalPages: number;
  freePages: number;
  pageSize: number;
}

export interface XenVersion {
  major: number;
  minor: number;
  extra: string;
}

export type DomainType = 'pv' | 'pvh' | 'hvm';

export interface BuildConfig {
  type: DomainType;
  kernel: string;
  ramdisk?: string;
  cmdline?: string;
  memoryMib: number;
  /** Event channels the toolstack allocated for xenstore and the console (remote end: dom0). */
  storePort: number;
  consolePort: number;
}

export interface BuildResult {
  /** MFN (PV) or GFN (PVH/HVM) of the xenstore ring page, given to xenstored's INTRODUCE. */
  storeMfn: bigint;
  consoleMfn: bigint;
}

/** Log-dirty operations, as XEN_DOMCTL_SHADOW_OP_*. */
export type ShadowOp = 'enable_logdirty' | 'off' | 'peek' | 'clean';
export interface ShadowResult {
  /** Dirty pfns (for peek and clean). */
  dirty: number[];
  /** Pages dirtied since the last clean. */
  dirtyCount: number;
}

export interface SaveOptions {
  live: boolean;
  /** Max pre-copy rounds before stop-and-copy (default 5). */
  maxRounds?: number;
  /** Stop-and-copy once fewer than this many pages are dirty (default 50). */
  dirtyThreshold?: number;
}

export interface SaveCallbacks {
  /** Called before the last round: the toolstack must get the guest suspended, then resolve. */
  suspend(): Promise<void>;
  progress?(sent: number, total: number, round: number): void;
  signal?: AbortSignal;
}

export interface SaveStats {
  rounds: number;
  pagesSent: number;
  bytes: number;
}

/** An errno-style failure of a hypervisor call, carrying the call's name. */
export class HypervisorError extends Error {
  constructor(
    readonly call: string,
    readonly errno: string,
    detail?: string,
  ) {
    super(`${call}: ${errno}${detail ? ` (${detail})` : ''}`);
    this.name = 'HypervisorError';
  }
}

export interface Hypervisor {
  readonly kind: 'sim' | 'xen';
  version(): Promise<XenVersion>;
  physinfo(): Promise<PhysInfo>;
  createDomain(cfg: CreateDomainConfig): Promise<number>;
  setMaxVcpus(domid: number, max: number): Promise<void>;
  setMaxMem(domid: number, maxKib: number): Promise<void>;
  /** Populates memory and loads the kernel (xc_dom_* on Xen). */
  build(domid: number, cfg: BuildConfig, signal?: AbortSignal): Promise<BuildResult>;
  getDomainInfoList(firstDomid: number, max: number): Promise<DomainInfo[]>;
  /** undefined when the domain does not exist. */
  getDomainInfo(domid: number): Promise<DomainInfo | undefined>;
  pause(domid: number): Promise<void>;
  unpause(domid: number): Promise<void>;
  shutdown(domid: number, reason: number): Promise<void>;
  destroy(domid: number): Promise<void>;
  evtchnAllocUnbound(domid: number, remoteDomid: number): Promise<number>;
  shadowControl(domid: number, op: ShadowOp): Promise<ShadowResult>;
  /** Writes the domain's migration stream (libxc stream v2 layout) to fd. */
  save(domid: number, fd: number, opts: SaveOptions, cb: SaveCallbacks): Promise<SaveStats>;
  /** Reads a migration stream from fd into an already created domain. */
  restore(domid: number, fd: number, cfg: { storePort: number; consolePort: number }, signal?: AbortSignal): Promise<BuildResult>;
  close(): Promise<void>;
}
