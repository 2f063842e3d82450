// libxenguest 4.17: the xc_dom_* direct-kernel build sequence and xc_domain_save / xc_domain_restore.
// These calls run for seconds and call back into JS, so they are used synchronously inside the helper process
// (src/hypervisor/xen-helper/), never in the daemon: the helper can be killed to cancel them.
import koffi from 'koffi';
import type { LibraryHandle, KoffiFunction, TypeObject } from './koffi-types.js';
import { callSync } from './xenctrl.js';
import type { XenCtrl } from './xenctrl.js';
import { asHandle, type CallbackHandle, type XcDomImageHandle } from './handles.js';
import { callError } from './errors.js';
import {
  DataCallback,
  PrecopyPolicyCallback,
  RestoreCallbacksStruct,
  RestoreResultsCallback,
  SaveCallbacksStruct,
  StaticDataDoneCallback,
  XC_DOM_IMAGE_FIELDS,
  XC_STREAM_PLAIN,
  type XcDomImageField,
} from './structs.js';

type Fn = KoffiFunction;

export interface XenguestFunctions {
  xc_dom_loginit: Fn;
  xc_dom_allocate: Fn;
  xc_dom_release: Fn;
  xc_dom_kernel_file: Fn;
  xc_dom_module_file: Fn;
  xc_dom_boot_xen_init: Fn;
  xc_dom_parse_image: Fn;
  xc_dom_mem_init: Fn;
  xc_dom_boot_mem_init: Fn;
  xc_dom_build_image: Fn;
  xc_dom_boot_image: Fn;
  xc_dom_gnttab_init: Fn;
  xc_dom_translated: Fn;
  xc_cpuid_apply_policy: Fn;
  xc_domain_save: Fn;
  xc_domain_restore: Fn;
  xc_domain_resume: Fn;
}

const declared = new WeakMap<LibraryHandle, XenguestFunctions>();

export function declareXenguest(lib: LibraryHandle): XenguestFunctions {
  const existing = declared.get(lib);
  if (existing) return existing;
  const fns: XenguestFunctions = {
    xc_dom_loginit: lib.func('int xc_dom_loginit(void *xch)'),
    xc_dom_allocate: lib.func('void *xc_dom_allocate(void *xch, const char *cmdline, const char *features)'),
    xc_dom_release: lib.func('void xc_dom_release(void *dom)'),
    xc_dom_kernel_file: lib.func('int xc_dom_kernel_file(void *dom, const char *filename)'),
    xc_dom_module_file: lib.func('int xc_dom_module_file(void *dom, const char *filename, const char *cmdline)'),
    xc_dom_boot_xen_init: lib.func('int xc_dom_boot_xen_init(void *dom, void *xch, uint32_t domid)'),
    xc_dom_parse_image: lib.func('int xc_dom_parse_image(void *dom)'),
    xc_dom_mem_init: lib.func('int xc_dom_mem_init(void *dom, unsigned int mem_mb)'),
    xc_dom_boot_mem_init: lib.func('int xc_dom_boot_mem_init(void *dom)'),
    xc_dom_build_image: lib.func('int xc_dom_build_image(void *dom)'),
    xc_dom_boot_image: lib.func('int xc_dom_boot_image(void *dom)'),
    xc_dom_gnttab_init: lib.func('int xc_dom_gnttab_init(void *dom)'),
    xc_dom_translated: lib.func('bool xc_dom_translated(void *dom)'),
    xc_cpuid_apply_policy: lib.func(
      'int xc_cpuid_apply_policy(void *xch, uint32_t domid, bool restore, const uint32_t *featureset, unsigned int nr_features, bool pae, bool itsc, bool nested_virt, const void *xend, const void *msr)',
    ),
    xc_domain_save: lib.func(
      'int xc_domain_save(void *xch, int io_fd, uint32_t dom, uint32_t flags, save_callbacks *callbacks, int stream_type, int recv_fd)',
    ),
    xc_domain_restore: lib.func(
      'int xc_domain_restore(void *xch, int io_fd, uint32_t dom, unsigned int store_evtchn, _Out_ unsigned long *store_mfn, uint32_t store_domid, unsigned int console_evtchn, _Out_ unsigned long *console_mfn, uint32_t console_domid, int stream_type, restore_callbacks *callbacks, int send_back_fd)',
    ),
    xc_domain_resume: lib.func('int xc_domain_resume(void *xch, uint32_t domid, int fast)'),
  };
  declared.set(lib, fns);
  return fns;
}

/** Reads/writes the declared fields of a struct xc_dom_image at their checked offsets. */
export class DomImage {
  private released = false;
  constructor(
    private readonly fns: XenguestFunctions,
    readonly ptr: XcDomImageHandle,
  ) {}

  get(field: XcDomImageField): number | bigint | boolean | null {
    const { offset, type } = XC_DOM_IMAGE_FIELDS[field];
    return koffi.decode(this.ptr, offset, type) as number | bigint | boolean | null;
  }

  set(field: XcDomImageField, value: number | bigint | boolean | null): void {
    const { offset, type } = XC_DOM_IMAGE_FIELDS[field];
    koffi.encode(this.ptr, offset, type, value);
  }

  /** Calls one xc_dom_* step; a failure names the step. */
  step(name: keyof XenguestFunctions, ...args: unknown[]): void {
    callSync(this.fns[name], name, [this.ptr, ...args]);
  }

  translated(): boolean {
    return Boolean(this.fns.xc_dom_translated(this.ptr));
  }

  /** xc_dom_p2m(): a PV guest's pfn → mfn through dom->pv_p2m (an inline function in xenguest.h). */
  p2m(pfn: bigint): bigint {
    if (this.translated()) return pfn;
    const table = this.get('pv_p2m') as bigint | null;
    const size = BigInt(this.get('p2m_size') as number | bigint);
    if (!table || pfn >= size) return 0xffffffffffffffffn; // INVALID_MFN
    return BigInt(koffi.decode(table, Number(pfn) * 8, 'uint64_t') as number | bigint);
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.fns.xc_dom_release(this.ptr);
  }
}

export class XenGuest {
  readonly fns: XenguestFunctions;
  constructor(
    lib: LibraryHandle,
    readonly ctrl: XenCtrl,
  ) {
    this.fns = declareXenguest(lib);
  }

  allocateDomImage(cmdline: string | undefined, features: string | undefined): DomImage {
    this.fns.xc_dom_loginit(this.ctrl.xch);
    const ptr = asHandle<'xc_dom_image'>(this.fns.xc_dom_allocate(this.ctrl.xch, cmdline ?? null, features ?? null));
    if (!ptr) throw callError('xc_dom_allocate', koffi.errno());
    return new DomImage(this.fns, ptr);
  }

  /** The toolstack's CPUID policy adjustments for a new (restore=false) or restored domain. */
  applyCpuidPolicy(domid: number, restore: boolean): void {
    callSync(this.fns.xc_cpuid_apply_policy, 'xc_cpuid_apply_policy', [
      this.ctrl.xch, domid, restore, null, 0, true, false, false, null, null,
    ]);
  }

  save(
    fd: number,
    domid: number,
    flags: number,
    hooks: { suspend: () => number; precopyPolicy?: (s: PrecopyStatsValue) => number },
  ): void {
    const registered: CallbackHandle[] = [];
    const reg = (fn: (...a: never[]) => unknown, proto: TypeObject): bigint => {
      const h = koffi.register(fn as (...a: unknown[]) => unknown, koffi.pointer(proto)) as CallbackHandle;
      registered.push(h);
      return h;
    };
    try {
      const callbacks = {
        suspend: reg(() => hooks.suspend(), DataCallback),
        precopy_policy: hooks.precopyPolicy ? reg((s: PrecopyStatsValue) => hooks.precopyPolicy!(s), PrecopyPolicyCallback) : null,
        postcopy: null,
        checkpoint: null,
        wait_checkpoint: null,
        switch_qemu_logdirty: null,
        data: null,
      };
      callSync(this.fns.xc_domain_save, 'xc_domain_save', [
        this.ctrl.xch, fd, domid, flags, callbacks, XC_STREAM_PLAIN, -1,
      ], () => this.ctrl.lastErrorMessage() ?? '');
    } finally {
      for (const h of registered) koffi.unregister(h);
    }
  }

  restore(
    fd: number,
    domid: number,
    ports: { storePort: number; consolePort: number; storeDomid?: number; consoleDomid?: number },
  ): { storeMfn: bigint; consoleMfn: bigint } {
    const registered: CallbackHandle[] = [];
    const reg = (fn: (...a: never[]) => unknown, proto: TypeObject): bigint => {
      const h = koffi.register(fn as (...a: unknown[]) => unknown, koffi.pointer(proto)) as CallbackHandle;
      registered.push(h);
      return h;
    };
    const storeMfn = [0n];
    const consoleMfn = [0n];
    try {
      const callbacks = {
        // Streams from before Xen 4.14 carry no CPUID/MSR policy: build the default one, as for a new domain.
        static_data_done: reg((missing: number) => {
          try {
            if (missing & 1) this.applyCpuidPolicy(domid, true);
            return 0;
          } catch {
            return -1;
          }
        }, StaticDataDoneCallback),
        suspend: null,
        postcopy: null,
        checkpoint: null,
        wait_checkpoint: null,
        restore_results: reg(() => undefined, RestoreResultsCallback),
        data: null,
      };
      callSync(this.fns.xc_domain_restore, 'xc_domain_restore', [
        this.ctrl.xch, fd, domid,
        ports.storePort, storeMfn, ports.storeDomid ?? 0,
        ports.consolePort, consoleMfn, ports.consoleDomid ?? 0,
        XC_STREAM_PLAIN, callbacks, -1,
      ], () => this.ctrl.lastErrorMessage() ?? '');
      return { storeMfn: BigInt(storeMfn[0]), consoleMfn: BigInt(consoleMfn[0]) };
    } finally {
      for (const h of registered) koffi.unregister(h);
    }
  }
}

export interface PrecopyStatsValue {
  iteration: number;
  total_written: number;
  dirty_count: number;
}

// Keep the struct types referenced so that their names are registered before the prototypes above are parsed.
void SaveCallbacksStruct;
void RestoreCallbacksStruct;
