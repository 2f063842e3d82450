// The direct-kernel build of a PV or PVH domain with libxenguest's xc_dom_* sequence, in the order Xen's own
// toolstack uses. Runs inside the helper process (blocking calls, seconds of work); see xen-helper/main.ts.
import koffi from 'koffi';
import type { BuildConfig } from './types.js';
import { HypervisorError } from './types.js';
import type { XenCtrl } from '../../bindings/xenctrl.js';
import type { XenGuest, DomImage } from '../../bindings/xenguest.js';
import {
  E820Entry,
  E820_RAM,
  XC_DOM_HVM_CONTAINER,
  XC_DOM_PV_CONTAINER,
  XC_PAGE_SHIFT,
} from '../../bindings/structs.js';

export interface BuildRequest extends BuildConfig {
  maxVcpus: number;
  /** Domain ids of the xenstore and console backends (dom0 unless disaggregated). */
  storeDomid?: number;
  consoleDomid?: number;
}

export interface BuildOutcome {
  storeMfn: bigint;
  consoleMfn: bigint;
}

const GiB4 = 1n << 32n;
/** Lowest of the special pages, the local APIC and the ACPI info page on x86 HVM: the MMIO hole must cover them. */
const PVH_MMIO_HOLE_START = 0xfc000000n;

/** The PVH guest-physical layout: RAM below the MMIO hole, the rest above 4 GiB. */
export function pvhLayout(memoryMib: number): { lowmemEnd: bigint; highmemEnd: bigint; mmioStart: bigint; mmioSize: bigint } {
  const memBytes = BigInt(memoryMib) << 20n;
  const mmioStart = PVH_MMIO_HOLE_START;
  if (memBytes <= mmioStart) return { lowmemEnd: memBytes, highmemEnd: 0n, mmioStart, mmioSize: GiB4 - mmioStart };
  return { lowmemEnd: mmioStart, highmemEnd: GiB4 + (memBytes - mmioStart), mmioStart, mmioSize: GiB4 - mmioStart };
}

export function validateBuildRequest(req: BuildRequest): void {
  if (req.type !== 'pv' && req.type !== 'pvh') {
    throw new HypervisorError('build', 'EINVAL', `domain type ${JSON.stringify(req.type)} is not supported by the xen backend (pv, pvh)`);
  }
  if (typeof req.kernel !== 'string' || req.kernel === '') throw new HypervisorError('build', 'EINVAL', 'kernel path missing');
  if (!Number.isInteger(req.memoryMib) || req.memoryMib < 16) {
    throw new HypervisorError('build', 'EINVAL', `memoryMib must be an integer >= 16, got ${req.memoryMib}`);
  }
  for (const port of ['storePort', 'consolePort'] as const) {
    if (!Number.isInteger(req[port]) || req[port] <= 0) throw new HypervisorError('build', 'EINVAL', `${port} must be a positive event channel port`);
  }
  if (!Number.isInteger(req.maxVcpus) || req.maxVcpus < 1) throw new HypervisorError('build', 'EINVAL', 'maxVcpus must be >= 1');
}

/** Settings Xen's toolstack applies before building a new domain that the Hypervisor interface does not expose. */
function prepareDomain(ctrl: XenCtrl, guest: XenGuest, domid: number, req: BuildRequest): void {
  if (req.type === 'pv') ctrl.sync('xc_domain_set_memmap_limit', domid, req.memoryMib * 1024);
  ctrl.sync('xc_domain_set_tsc_info', domid, 0, 0, 0, 0);
  guest.applyCpuidPolicy(domid, false);
}

function setCommonFields(dom: DomImage, req: BuildRequest): void {
  dom.set('flags', 0);
  dom.set('console_evtchn', req.consolePort);
  dom.set('console_domid', req.consoleDomid ?? 0);
  dom.set('xenstore_evtchn', req.storePort);
  dom.set('xenstore_domid', req.storeDomid ?? 0);
  dom.set('claim_enabled', 0);
  dom.set('max_vcpus', req.maxVcpus);
}

export function buildDomain(ctrl: XenCtrl, guest: XenGuest, domid: number, req: BuildRequest): BuildOutcome {
  validateBuildRequest(req);
  prepareDomain(ctrl, guest, domid, req);
  const dom = guest.allocateDomImage(req.cmdline ?? '', undefined);
  let e820: bigint | null = null;
  try {
    const pvh = req.type === 'pvh';
    dom.set('container_type', pvh ? XC_DOM_HVM_CONTAINER : XC_DOM_PV_CONTAINER);
    dom.step('xc_dom_kernel_file', req.kernel);
    if (req.ramdisk) dom.step('xc_dom_module_file', req.ramdisk, null);
    setCommonFields(dom, req);
    let layout: ReturnType<typeof pvhLayout> | undefined;
    if (pvh) {
      layout = pvhLayout(req.memoryMib);
      dom.set('target_pages', BigInt(req.memoryMib) << (20n - BigInt(XC_PAGE_SHIFT)));
      dom.set('mmio_start', layout.mmioStart);
      dom.set('mmio_size', layout.mmioSize);
      dom.set('lowmem_end', layout.lowmemEnd);
      dom.set('highmem_end', layout.highmemEnd);
      dom.set('vga_hole_size', 0);
      dom.set('device_model', false);
    }
    dom.step('xc_dom_boot_xen_init', ctrl.xch, domid);
    dom.step('xc_dom_parse_image');
    dom.step('xc_dom_mem_init', req.memoryMib);
    dom.step('xc_dom_boot_mem_init');
    if (layout) {
      // The guest's memory map: the e820 the start info carries and the one Xen answers XENMEM_memory_map with.
      const entries = [{ addr: 0n, size: layout.lowmemEnd, type: E820_RAM }];
      if (layout.highmemEnd > GiB4) entries.push({ addr: GiB4, size: layout.highmemEnd - GiB4, type: E820_RAM });
      e820 = koffi.alloc(E820Entry, entries.length) as bigint;
      entries.forEach((e, i) => koffi.encode(e820!, i * koffi.sizeof(E820Entry), E820Entry, e));
      dom.set('e820', e820);
      dom.set('e820_entries', entries.length);
      ctrl.setMemoryMapSync(domid, entries);
    }
    dom.step('xc_dom_build_image');
    dom.step('xc_dom_boot_image');
    dom.step('xc_dom_gnttab_init');
    const storePfn = BigInt(dom.get('xenstore_pfn') as number | bigint);
    const consolePfn = BigInt(dom.get('console_pfn') as number | bigint);
    return { storeMfn: dom.p2m(storePfn), consoleMfn: dom.p2m(consolePfn) };
  } finally {
    dom.release();
    if (e820 !== null) koffi.free(e820);
  }
}
