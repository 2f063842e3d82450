// libxenctrl 4.17: declarations and a typed wrapper over one open xc_interface.
// Each call comes in two forms: `x()` runs on the caller's thread (for the helper process, where blocking is the
// point) and `xAsync()` runs on a koffi worker thread so the daemon's event loop never waits on a hypercall.
// Failures throw HypervisorError(call, errno): koffi restores the worker's errno for the completion callback.
import koffi from 'koffi';
import type { LibraryHandle, KoffiFunction } from './koffi-types.js';
import type { CreateDomainConfig, DomainInfo, PhysInfo, XenVersion } from '../src/hypervisor/types.js';
import { callError } from './errors.js';
import { asHandle, type XcInterfaceHandle } from './handles.js';
import type { XenLibraries } from './lib.js';
import {
  CREATEDOMAIN_SIZE,
  DOMAININFO_SIZE,
  PHYSINFO_SIZE,
  decodeDomainInfoList,
  decodePhysInfo,
  dirtyPfnsFromBitmap,
  encodeCreateDomain,
  uuidToHandle,
} from './marshal.js';
import {
  E820Entry,
  XcError,
  XcHypercallBuffer,
  XcShadowOpStats,
  XC_PAGE_SIZE,
  XENVER_extraversion,
  XENVER_version,
  XEN_EXTRAVERSION_LEN,
  XEN_SYSCTL_PHYSCAP_gnttab_v2,
} from './structs.js';

type Fn = KoffiFunction;

export interface XenctrlFunctions {
  xc_interface_open: Fn;
  xc_interface_close: Fn;
  xc_get_last_error: Fn;
  xc_version: Fn;
  xc_physinfo: Fn;
  xc_domain_create: Fn;
  xc_domain_max_vcpus: Fn;
  xc_domain_setmaxmem: Fn;
  xc_domain_set_memmap_limit: Fn;
  xc_domain_set_tsc_info: Fn;
  xc_domain_sethandle: Fn;
  xc_domain_getinfolist: Fn;
  xc_domain_pause: Fn;
  xc_domain_unpause: Fn;
  xc_domain_shutdown: Fn;
  xc_domain_destroy: Fn;
  xc_evtchn_alloc_unbound: Fn;
  xc_shadow_control: Fn;
  xc_logdirty_control: Fn;
  xc_domain_nr_gpfns: Fn;
  xc_domain_set_memory_map: Fn;
  xc__hypercall_buffer_alloc_pages: Fn;
  xc__hypercall_buffer_free_pages: Fn;
}

const declared = new WeakMap<LibraryHandle, XenctrlFunctions>();

/** Prototypes as in xenctrl.h; pointer arguments the bindings fill from Buffers are declared `void *`. */
export function declareXenctrl(lib: LibraryHandle): XenctrlFunctions {
  const existing = declared.get(lib);
  if (existing) return existing;
  const fns: XenctrlFunctions = {
    xc_interface_open: lib.func('void *xc_interface_open(void *logger, void *dombuild_logger, unsigned int open_flags)'),
    xc_interface_close: lib.func('int xc_interface_close(void *xch)'),
    xc_get_last_error: lib.func('void *xc_get_last_error(void *xch)'),
    xc_version: lib.func('int xc_version(void *xch, int cmd, void *arg)'),
    xc_physinfo: lib.func('int xc_physinfo(void *xch, void *info)'),
    xc_domain_create: lib.func('int xc_domain_create(void *xch, _Inout_ uint32_t *pdomid, void *config)'),
    xc_domain_max_vcpus: lib.func('int xc_domain_max_vcpus(void *xch, uint32_t domid, unsigned int max)'),
    xc_domain_setmaxmem: lib.func('int xc_domain_setmaxmem(void *xch, uint32_t domid, uint64_t max_memkb)'),
    xc_domain_set_memmap_limit: lib.func(
      'int xc_domain_set_memmap_limit(void *xch, uint32_t domid, unsigned long map_limitkb)',
    ),
    xc_domain_set_tsc_info: lib.func(
      'int xc_domain_set_tsc_info(void *xch, uint32_t domid, uint32_t tsc_mode, uint64_t elapsed_nsec, uint32_t gtsc_khz, uint32_t incarnation)',
    ),
    xc_domain_sethandle: lib.func('int xc_domain_sethandle(void *xch, uint32_t domid, void *handle)'),
    xc_domain_getinfolist: lib.func(
      'int xc_domain_getinfolist(void *xch, uint32_t first_domain, unsigned int max_domains, void *info)',
    ),
    xc_domain_pause: lib.func('int xc_domain_pause(void *xch, uint32_t domid)'),
    xc_domain_unpause: lib.func('int xc_domain_unpause(void *xch, uint32_t domid)'),
    xc_domain_shutdown: lib.func('int xc_domain_shutdown(void *xch, uint32_t domid, int reason)'),
    xc_domain_destroy: lib.func('int xc_domain_destroy(void *xch, uint32_t domid)'),
    xc_evtchn_alloc_unbound: lib.func('int xc_evtchn_alloc_unbound(void *xch, uint32_t dom, uint32_t remote_dom)'),
    xc_shadow_control: lib.func(
      'int xc_shadow_control(void *xch, uint32_t domid, unsigned int sop, void *mb, unsigned int mode)',
    ),
    xc_logdirty_control: lib.func(
      'long long xc_logdirty_control(void *xch, uint32_t domid, unsigned int sop, void *dirty_bitmap, unsigned long pages, unsigned int mode, _Out_ xen_domctl_shadow_op_stats *stats)',
    ),
    xc_domain_nr_gpfns: lib.func('int xc_domain_nr_gpfns(void *xch, uint32_t domid, _Out_ uint64_t *gpfns)'),
    xc_domain_set_memory_map: lib.func(
      'int xc_domain_set_memory_map(void *xch, uint32_t domid, void *entries, uint32_t nr_entries)',
    ),
    xc__hypercall_buffer_alloc_pages: lib.func(
      'void *xc__hypercall_buffer_alloc_pages(void *xch, void *b, int nr_pages)',
    ),
    xc__hypercall_buffer_free_pages: lib.func('void xc__hypercall_buffer_free_pages(void *xch, void *b, int nr_pages)'),
  };
  declared.set(lib, fns);
  return fns;
}

/** A C result that means failure: negative ints (and -1n), or a null pointer. */
function failed(result: unknown): boolean {
  if (result === null) return true;
  if (typeof result === 'number') return result < 0;
  if (typeof result === 'bigint') return result < 0n;
  return false;
}

/** Runs fn on a koffi worker; resolves with its result or rejects with the call's name and errno. */
export function callAsync<T = number>(fn: Fn, name: string, args: unknown[], detail?: () => string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    fn.async(...args, (err: unknown, result: T) => {
      if (err) return reject(callError(name, 0, (err as Error).message));
      if (failed(result)) {
        // errno must be read here, synchronously: koffi sets it for the duration of this callback only.
        return reject(callError(name, koffi.errno() || (typeof result === 'number' && result < -1 ? -result : 0), detail?.()));
      }
      resolve(result);
    });
  });
}

export function callSync<T = number>(fn: Fn, name: string, args: unknown[], detail?: () => string): T {
  const result = fn(...args) as T;
  if (failed(result)) {
    const errno = koffi.errno() || (typeof result === 'number' && result < -1 ? -result : 0);
    throw callError(name, errno, detail?.());
  }
  return result;
}

export interface XcInterfaceOptions {
  /** Grant table version to give new domains when physinfo cannot tell (default 1). */
  defaultGrantVersion?: number;
}

/** Opens the hypervisor interface; throws HypervisorError('xc_interface_open', errno) (ENOENT without Xen). */
export function openXcInterface(libs: XenLibraries): XenCtrl {
  const fns = declareXenctrl(libs.xenctrl);
  const raw = fns.xc_interface_open(null, null, 0);
  const xch = asHandle<'xc_interface'>(raw);
  if (!xch) {
    const errno = koffi.errno();
    throw callError(
      'xc_interface_open',
      errno,
      errno === 2 ? 'no Xen privcmd interface: not running in a Xen dom0 (is /dev/xen/privcmd present?)' : undefined,
    );
  }
  return new XenCtrl(fns, xch);
}

export type ShadowControlOp = 'off' | 'enable_logdirty';

export class XenCtrl {
  private closed = false;
  constructor(
    readonly fns: XenctrlFunctions,
    readonly xch: XcInterfaceHandle,
  ) {}

  private live(): XcInterfaceHandle {
    if (this.closed) throw callError('xc_interface', 9, 'interface already closed');
    return this.xch;
  }

  /** The last error libxenctrl recorded on this thread (meaningful after a sync call only). */
  lastErrorMessage(): string | undefined {
    const p = this.fns.xc_get_last_error(this.xch) as bigint | null;
    if (!p) return undefined;
    const err = koffi.decode(p, XcError) as { code: number; message: string };
    return err.code ? err.message : undefined;
  }

  /** A blocking call, for the helper process (where blocking is fine) and for calls inside C callbacks. */
  sync<T = number>(name: keyof XenctrlFunctions, ...args: unknown[]): T {
    return callSync<T>(this.fns[name], name, [this.live(), ...args], () => this.lastErrorMessage() ?? '');
  }

  private async<T = number>(name: keyof XenctrlFunctions, ...args: unknown[]): Promise<T> {
    return callAsync<T>(this.fns[name], name, [this.live(), ...args]);
  }

  async version(): Promise<XenVersion> {
    const v = await this.async('xc_version', XENVER_version, null);
    const extra = Buffer.alloc(XEN_EXTRAVERSION_LEN);
    await this.async('xc_version', XENVER_extraversion, extra);
    const nul = extra.indexOf(0);
    return { major: v >>> 16, minor: v & 0xffff, extra: extra.subarray(0, nul < 0 ? extra.length : nul).toString('latin1') };
  }

  versionSync(): XenVersion {
    const v = this.sync('xc_version', XENVER_version, null);
    return { major: v >>> 16, minor: v & 0xffff, extra: '' };
  }

  async physinfo(): Promise<PhysInfo & { capabilities: number }> {
    const buf = Buffer.alloc(PHYSINFO_SIZE);
    await this.async('xc_physinfo', buf);
    return decodePhysInfo(buf);
  }

  /** Highest grant table version Xen offers guests (physinfo's gnttab capability bits). */
  static maxGrantVersion(capabilities: number): number {
    return capabilities & XEN_SYSCTL_PHYSCAP_gnttab_v2 ? 2 : 1;
  }

  async domainCreate(cfg: CreateDomainConfig, maxGrantVersion?: number): Promise<number> {
    const grant = maxGrantVersion ?? XenCtrl.maxGrantVersion((await this.physinfo()).capabilities);
    const config = encodeCreateDomain(cfg, { maxGrantVersion: grant });
    if (config.length !== CREATEDOMAIN_SIZE) throw new Error('createdomain encoding has the wrong size');
    const domid = new Uint32Array([0]); // 0: let Xen pick a free domid
    await this.async('xc_domain_create', domid, config);
    return domid[0];
  }

  async maxVcpus(domid: number, max: number): Promise<void> {
    await this.async('xc_domain_max_vcpus', domid, max);
  }
  async setMaxMem(domid: number, maxKib: number): Promise<void> {
    await this.async('xc_domain_setmaxmem', domid, maxKib);
  }
  /** PV only: the highest guest-physical address (KiB) the guest's e820 may show. */
  async setMemmapLimit(domid: number, limitKib: number): Promise<void> {
    await this.async('xc_domain_set_memmap_limit', domid, limitKib);
  }
  /** tscMode 0 = default (native when the host TSC is invariant, else emulated). */
  async setTscInfo(domid: number, tscMode = 0): Promise<void> {
    await this.async('xc_domain_set_tsc_info', domid, tscMode, 0, 0, 0);
  }
  async setHandle(domid: number, uuid: string): Promise<void> {
    await this.async('xc_domain_sethandle', domid, uuidToHandle(uuid));
  }

  async getInfoList(firstDomid: number, max: number): Promise<DomainInfo[]> {
    if (!Number.isInteger(max) || max < 1 || max > 32768) throw new RangeError(`max must be 1..32768, got ${max}`);
    const buf = Buffer.alloc(max * DOMAININFO_SIZE);
    const n = await this.async('xc_domain_getinfolist', firstDomid, max, buf);
    return decodeDomainInfoList(buf, n);
  }

  async getInfo(domid: number): Promise<DomainInfo | undefined> {
    // 4.17 has no xc_domain_getinfo_single: ask for one record from domid on and check it is that domain.
    const [info] = await this.getInfoList(domid, 1);
    return info && info.domid === domid ? info : undefined;
  }

  async pause(domid: number): Promise<void> {
    await this.async('xc_domain_pause', domid);
  }
  async unpause(domid: number): Promise<void> {
    await this.async('xc_domain_unpause', domid);
  }
  async shutdown(domid: number, reason: number): Promise<void> {
    await this.async('xc_domain_shutdown', domid, reason);
  }
  async destroy(domid: number): Promise<void> {
    await this.async('xc_domain_destroy', domid);
  }
  async evtchnAllocUnbound(domid: number, remoteDomid: number): Promise<number> {
    return this.async('xc_evtchn_alloc_unbound', domid, remoteDomid);
  }

  async shadowControl(domid: number, op: ShadowControlOp): Promise<void> {
    const sop = op === 'off' ? 0 : 2; // XEN_DOMCTL_SHADOW_OP_OFF / _ENABLE_LOGDIRTY
    await this.async('xc_shadow_control', domid, sop, null, 0);
  }

  async nrGpfns(domid: number): Promise<number> {
    const out = [0];
    await this.async('xc_domain_nr_gpfns', domid, out);
    return Number(out[0]);
  }

  /**
   * XEN_DOMCTL_SHADOW_OP_PEEK / CLEAN: the dirty bitmap must live in hypercall-safe memory, so it is allocated
   * through libxenctrl's own hypercall buffer, filled, read and freed around the one call.
   */
  async logdirty(domid: number, op: 'peek' | 'clean'): Promise<{ dirty: number[]; dirtyCount: number }> {
    const pages = await this.nrGpfns(domid);
    const bitmapBytes = Math.ceil(pages / 8);
    const nrPages = Math.max(1, Math.ceil(bitmapBytes / XC_PAGE_SIZE));
    const hcbuf = koffi.alloc(XcHypercallBuffer, 1) as bigint;
    try {
      // HYPERCALL_BUFFER_INIT_NO_BOUNCE: no bounce buffer (dir 0, sz 0, ubuf (void *)-1).
      koffi.encode(hcbuf, 0, XcHypercallBuffer, { hbuf: null, param_shadow: null, dir: 0, ubuf: 0xffffffffffffffffn, sz: 0 });
      const hbuf = this.sync<bigint | null>('xc__hypercall_buffer_alloc_pages', hcbuf, nrPages);
      try {
        const stats = {} as { dirty_count?: number };
        const sop = op === 'peek' ? 12 : 11;
        await this.async('xc_logdirty_control', domid, sop, hcbuf, pages, 0, stats);
        const bitmap = new Uint8Array(koffi.view(hbuf, bitmapBytes)).slice();
        return { dirty: dirtyPfnsFromBitmap(bitmap, pages), dirtyCount: stats.dirty_count ?? 0 };
      } finally {
        this.fns.xc__hypercall_buffer_free_pages(this.xch, hcbuf, nrPages);
      }
    } finally {
      koffi.free(hcbuf);
    }
  }

  /** PVH/HVM: the guest's e820 as Xen reports it to the guest (XENMEM_memory_map). */
  setMemoryMapSync(domid: number, entries: { addr: bigint; size: bigint; type: number }[]): void {
    const size = koffi.sizeof(E820Entry);
    const buf = Buffer.alloc(size * entries.length);
    entries.forEach((e, i) => koffi.encode(buf, i * size, E820Entry, e));
    this.sync('xc_domain_set_memory_map', domid, buf, entries.length);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.fns.xc_interface_close(this.xch);
  }
}
