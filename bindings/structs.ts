// koffi declarations of the Xen 4.17 structs the bindings pass across the FFI boundary.
// Every struct and field here is listed in LAYOUT_CHECKS below, and test/bindings/layout.test.ts compares each
// offset and size with what gcc gives for the installed headers (bindings/layout/probe.c). koffi has no bitfields
// and no explicit offsets: the layouts are reproduced with natural alignment plus explicit padding members.
import koffi from 'koffi';
import type { TypeSpec } from './koffi-types.js';

/** The Xen release these declarations were checked against (headers of Debian's libxen-dev 4.17). */
export const CHECKED_XEN_VERSIONS = ['4.17'] as const;
/** Interface versions of the checked headers; the layout test compares them with the installed headers. */
export const XEN_DOMCTL_INTERFACE_VERSION = 0x15;
export const XEN_SYSCTL_INTERFACE_VERSION = 0x15;

export const XC_PAGE_SHIFT = 12;
export const XC_PAGE_SIZE = 1 << XC_PAGE_SHIFT;
export const XENVER_version = 0;
export const XENVER_extraversion = 1;
export const XEN_EXTRAVERSION_LEN = 16;
export const XEN_X86_EMU_LAPIC = 1 << 0;
export const XEN_SYSCTL_PHYSCAP_hvm = 1 << 0;
export const XEN_SYSCTL_PHYSCAP_pv = 1 << 1;
export const XEN_SYSCTL_PHYSCAP_hap = 1 << 3;
export const XEN_SYSCTL_PHYSCAP_shadow = 1 << 4;
export const XEN_SYSCTL_PHYSCAP_gnttab_v1 = 1 << 8;
export const XEN_SYSCTL_PHYSCAP_gnttab_v2 = 1 << 9;
export const XEN_DOMCTL_GRANT_version_mask = 0xf;
export const XEN_DOMCTL_SHADOW_OP_OFF = 0;
export const XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY = 2;
export const XEN_DOMCTL_SHADOW_OP_CLEAN = 11;
export const XEN_DOMCTL_SHADOW_OP_PEEK = 12;
export const XCFLAGS_LIVE = 1 << 0;
export const XC_STREAM_PLAIN = 0;
export const XGS_POLICY_ABORT = -1;
export const XGS_POLICY_CONTINUE_PRECOPY = 0;
export const XGS_POLICY_STOP_AND_COPY = 1;
export const XGR_SDD_MISSING_CPUID = 1 << 0;
export const XC_DOM_PV_CONTAINER = 0;
export const XC_DOM_HVM_CONTAINER = 1;
export const E820_RAM = 1;
export const HVM_BELOW_4G_MMIO_START = 0xf0000000;
export const XC_MAX_ERROR_MSG_LEN = 1024;

/** The field shapes a declaration may use; `gcc` names the type the probe reads the same field as. */
export type StructDefinition = Record<string, TypeSpec>;

export const XEN_ARCH_DOMAINCONFIG: StructDefinition = {
  emulation_flags: 'uint32_t',
  misc_flags: 'uint32_t',
};
export const XenArchDomainConfig = koffi.struct('xen_arch_domainconfig', XEN_ARCH_DOMAINCONFIG);

/** struct xen_domctl_getdomaininfo (= xc_domaininfo_t), 112 bytes. */
export const XEN_DOMCTL_GETDOMAININFO: StructDefinition = {
  domain: 'uint16_t',
  pad1: 'uint16_t',
  flags: 'uint32_t',
  tot_pages: 'uint64_t',
  max_pages: 'uint64_t',
  outstanding_pages: 'uint64_t',
  shr_pages: 'uint64_t',
  paged_pages: 'uint64_t',
  shared_info_frame: 'uint64_t',
  cpu_time: 'uint64_t',
  nr_online_vcpus: 'uint32_t',
  max_vcpu_id: 'uint32_t',
  ssidref: 'uint32_t',
  handle: koffi.array('uint8_t', 16),
  cpupool: 'uint32_t',
  gpaddr_bits: 'uint8_t',
  pad2: koffi.array('uint8_t', 7),
  arch_config: XenArchDomainConfig,
};
export const XcDomainInfo = koffi.struct('xen_domctl_getdomaininfo', XEN_DOMCTL_GETDOMAININFO);

/** struct xen_domctl_createdomain, 64 bytes. */
export const XEN_DOMCTL_CREATEDOMAIN: StructDefinition = {
  ssidref: 'uint32_t',
  handle: koffi.array('uint8_t', 16),
  flags: 'uint32_t',
  iommu_opts: 'uint32_t',
  max_vcpus: 'uint32_t',
  max_evtchn_port: 'uint32_t',
  max_grant_frames: 'int32_t',
  max_maptrack_frames: 'int32_t',
  grant_opts: 'uint32_t',
  vmtrace_size: 'uint32_t',
  cpupool_id: 'uint32_t',
  arch: XenArchDomainConfig,
};
export const XenDomctlCreateDomain = koffi.struct('xen_domctl_createdomain', XEN_DOMCTL_CREATEDOMAIN);

/** struct xen_sysctl_physinfo (= xc_physinfo_t). */
export const XEN_SYSCTL_PHYSINFO: StructDefinition = {
  threads_per_core: 'uint32_t',
  cores_per_socket: 'uint32_t',
  nr_cpus: 'uint32_t',
  max_cpu_id: 'uint32_t',
  nr_nodes: 'uint32_t',
  max_node_id: 'uint32_t',
  cpu_khz: 'uint32_t',
  capabilities: 'uint32_t',
  arch_capabilities: 'uint32_t',
  pad: 'uint32_t',
  total_pages: 'uint64_t',
  free_pages: 'uint64_t',
  scrub_pages: 'uint64_t',
  outstanding_pages: 'uint64_t',
  max_mfn: 'uint64_t',
  hw_cap: koffi.array('uint32_t', 8),
};
export const XcPhysInfo = koffi.struct('xen_sysctl_physinfo', XEN_SYSCTL_PHYSINFO);

/** xc_error: the library's last error (code enum + message). */
export const XC_ERROR: StructDefinition = {
  code: 'int',
  message: koffi.array('char', XC_MAX_ERROR_MSG_LEN, 'String'),
};
export const XcError = koffi.struct('xc_error', XC_ERROR);

/** struct e820entry (packed, 20 bytes), for PVH memory maps. */
export const E820_ENTRY: StructDefinition = {
  addr: 'uint64_t',
  size: 'uint64_t',
  type: 'uint32_t',
};
export const E820Entry = koffi.pack('e820entry', E820_ENTRY);

/** struct xc_hypercall_buffer: filled by xc__hypercall_buffer_alloc_pages for the log-dirty bitmap. */
export const XC_HYPERCALL_BUFFER: StructDefinition = {
  hbuf: 'void *',
  param_shadow: 'void *',
  dir: 'int',
  ubuf: 'void *',
  sz: 'size_t',
};
export const XcHypercallBuffer = koffi.struct('xc_hypercall_buffer', XC_HYPERCALL_BUFFER);

/** struct xen_domctl_shadow_op_stats (= xc_shadow_op_stats_t). */
export const XEN_DOMCTL_SHADOW_OP_STATS: StructDefinition = {
  fault_count: 'uint32_t',
  dirty_count: 'uint32_t',
};
export const XcShadowOpStats = koffi.struct('xen_domctl_shadow_op_stats', XEN_DOMCTL_SHADOW_OP_STATS);

/** struct precopy_stats, passed BY VALUE to save's precopy_policy callback. */
export const PRECOPY_STATS: StructDefinition = {
  iteration: 'unsigned int',
  total_written: 'unsigned long',
  dirty_count: 'long',
};
export const PrecopyStats = koffi.struct('precopy_stats', PRECOPY_STATS);

// Callback prototypes of struct save_callbacks / restore_callbacks.
export const DataCallback = koffi.proto('int xg_data_cb(void *data)');
export const PrecopyPolicyCallback = koffi.proto('int xg_precopy_policy_cb(precopy_stats stats, void *data)');
export const SwitchLogdirtyCallback = koffi.proto('int xg_switch_logdirty_cb(uint32_t domid, unsigned int enable, void *data)');
export const StaticDataDoneCallback = koffi.proto('int xg_static_data_done_cb(unsigned int missing, void *data)');
export const RestoreResultsCallback = koffi.proto(
  'void xg_restore_results_cb(unsigned long store_gfn, unsigned long console_gfn, void *data)',
);

/** struct save_callbacks: function pointers are registered koffi callbacks (bigint addresses) or null. */
export const SAVE_CALLBACKS: StructDefinition = {
  suspend: 'void *',
  precopy_policy: 'void *',
  postcopy: 'void *',
  checkpoint: 'void *',
  wait_checkpoint: 'void *',
  switch_qemu_logdirty: 'void *',
  data: 'void *',
};
export const SaveCallbacksStruct = koffi.struct('save_callbacks', SAVE_CALLBACKS);

export const RESTORE_CALLBACKS: StructDefinition = {
  static_data_done: 'void *',
  suspend: 'void *',
  postcopy: 'void *',
  checkpoint: 'void *',
  wait_checkpoint: 'void *',
  restore_results: 'void *',
  data: 'void *',
};
export const RestoreCallbacksStruct = koffi.struct('restore_callbacks', RESTORE_CALLBACKS);

/**
 * struct xc_dom_image is large and changes between releases; the bindings never declare all of it. They read and
 * write only these fields, at these offsets (x86_64, 4.17), through koffi.encode/decode on the pointer that
 * xc_dom_allocate returns. The layout test checks each offset and size against gcc.
 */
export const XC_DOM_IMAGE_FIELDS = {
  pv_p2m: { offset: 0x1e0, type: 'void *' },
  p2m_size: { offset: 0x1e8, type: 'uint64_t' },
  console_pfn: { offset: 0x180, type: 'uint64_t' },
  xenstore_pfn: { offset: 0x188, type: 'uint64_t' },
  flags: { offset: 0x230, type: 'unsigned long' },
  console_evtchn: { offset: 0x238, type: 'unsigned int' },
  xenstore_evtchn: { offset: 0x23c, type: 'unsigned int' },
  console_domid: { offset: 0x240, type: 'uint32_t' },
  xenstore_domid: { offset: 0x244, type: 'uint32_t' },
  claim_enabled: { offset: 0x25c, type: 'int' },
  container_type: { offset: 0x6b0, type: 'int' },
  target_pages: { offset: 0x6b8, type: 'uint64_t' },
  mmio_start: { offset: 0x6c0, type: 'uint64_t' },
  mmio_size: { offset: 0x6c8, type: 'uint64_t' },
  lowmem_end: { offset: 0x6d0, type: 'uint64_t' },
  highmem_end: { offset: 0x6d8, type: 'uint64_t' },
  vga_hole_size: { offset: 0x6e0, type: 'uint64_t' },
  device_model: { offset: 0x6e8, type: 'bool' },
  e820: { offset: 0x780, type: 'void *' },
  e820_entries: { offset: 0x788, type: 'unsigned int' },
  max_vcpus: { offset: 0x798, type: 'unsigned int' },
} as const satisfies Record<string, { offset: number; type: string }>;
export type XcDomImageField = keyof typeof XC_DOM_IMAGE_FIELDS;
