/*
 * Layout probe for the xenopsd-ng koffi bindings (bindings/structs.ts).
 * Compiled by test/bindings/layout.test.ts against the installed Xen headers (libxen-dev); prints, one per line:
 *   size <struct> <bytes>
 *   field <struct> <member> <offset> <bytes>
 *   const <NAME> <value>
 * The test compares every line with koffi's view of the same declaration.
 */
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <xenctrl.h>
#include <xenguest.h>
#include <xen/version.h>
#include <xen/hvm/e820.h>

#define SIZE(tag, type) printf("size %s %zu\n", tag, sizeof(type))
#define FIELD(tag, type, member) \
    printf("field %s %s %zu %zu\n", tag, #member, offsetof(type, member), sizeof(((type *)0)->member))
#define CONST(name) printf("const %s %lld\n", #name, (long long)(name))

int main(void)
{
    SIZE("xen_arch_domainconfig", struct xen_arch_domainconfig);
    FIELD("xen_arch_domainconfig", struct xen_arch_domainconfig, emulation_flags);
    FIELD("xen_arch_domainconfig", struct xen_arch_domainconfig, misc_flags);

    SIZE("xen_domctl_getdomaininfo", xc_domaininfo_t);
    FIELD("xen_domctl_getdomaininfo", xc_domaininfo_t, domain);
    FIELD("xen_domctl_getdomaininfo", xc_domaininfo_t, pad1);
    FIELD("xen_domctl_getdomaininfo", xc_domaininfo_t, flags);
    FIELD("xen_domctl_getdomaininfo", xc_domaininfo_t, tot_pages);
    FIELD("xen_domctl_getdomaininfo", xc_domaininfo_t, max_pages);
    FIELD("xen_domctl_getdomaininfo", xc_domaininfo_t, outstanding_pages);
    FIELD("xen_domctl_getdomaininfo", xc_domaininfo_t, shr_pages);
    FIELD("xen_domctl_getdomaininfo", xc_domaininfo_t, paged_pages);
    FIELD("xen_domctl_getdomaininfo", xc_domaininfo_t, shared_info_frame);
    FIELD("xen_domctl_getdomaininfo", xc_domaininfo_t, cpu_time);
    FIELD("xen_domctl_getdomaininfo", xc_domaininfo_t, nr_online_vcpus);
    FIELD("xen_domctl_getdomaininfo", xc_domaininfo_t, max_vcpu_id);
    FIELD("xen_domctl_getdomaininfo", xc_domaininfo_t, ssidref);
    FIELD("xen_domctl_getdomaininfo", xc_domaininfo_t, handle);
    FIELD("xen_domctl_getdomaininfo", xc_domaininfo_t, cpupool);
    FIELD("xen_domctl_getdomaininfo", xc_domaininfo_t, gpaddr_bits);
    FIELD("xen_domctl_getdomaininfo", xc_domaininfo_t, pad2);
    FIELD("xen_domctl_getdomaininfo", xc_domaininfo_t, arch_config);

    SIZE("xen_domctl_createdomain", struct xen_domctl_createdomain);
    FIELD("xen_domctl_createdomain", struct xen_domctl_createdomain, ssidref);
    FIELD("xen_domctl_createdomain", struct xen_domctl_createdomain, handle);
    FIELD("xen_domctl_createdomain", struct xen_domctl_createdomain, flags);
    FIELD("xen_domctl_createdomain", struct xen_domctl_createdomain, iommu_opts);
    FIELD("xen_domctl_createdomain", struct xen_domctl_createdomain, max_vcpus);
    FIELD("xen_domctl_createdomain", struct xen_domctl_createdomain, max_evtchn_port);
    FIELD("xen_domctl_createdomain", struct xen_domctl_createdomain, max_grant_frames);
    FIELD("xen_domctl_createdomain", struct xen_domctl_createdomain, max_maptrack_frames);
    FIELD("xen_domctl_createdomain", struct xen_domctl_createdomain, grant_opts);
    FIELD("xen_domctl_createdomain", struct xen_domctl_createdomain, vmtrace_size);
    FIELD("xen_domctl_createdomain", struct xen_domctl_createdomain, cpupool_id);
    FIELD("xen_domctl_createdomain", struct xen_domctl_createdomain, arch);

    SIZE("xen_sysctl_physinfo", xc_physinfo_t);
    FIELD("xen_sysctl_physinfo", xc_physinfo_t, threads_per_core);
    FIELD("xen_sysctl_physinfo", xc_physinfo_t, cores_per_socket);
    FIELD("xen_sysctl_physinfo", xc_physinfo_t, nr_cpus);
    FIELD("xen_sysctl_physinfo", xc_physinfo_t, max_cpu_id);
    FIELD("xen_sysctl_physinfo", xc_physinfo_t, nr_nodes);
    FIELD("xen_sysctl_physinfo", xc_physinfo_t, max_node_id);
    FIELD("xen_sysctl_physinfo", xc_physinfo_t, cpu_khz);
    FIELD("xen_sysctl_physinfo", xc_physinfo_t, capabilities);
    FIELD("xen_sysctl_physinfo", xc_physinfo_t, arch_capabilities);
    FIELD("xen_sysctl_physinfo", xc_physinfo_t, pad);
    FIELD("xen_sysctl_physinfo", xc_physinfo_t, total_pages);
    FIELD("xen_sysctl_physinfo", xc_physinfo_t, free_pages);
    FIELD("xen_sysctl_physinfo", xc_physinfo_t, scrub_pages);
    FIELD("xen_sysctl_physinfo", xc_physinfo_t, outstanding_pages);
    FIELD("xen_sysctl_physinfo", xc_physinfo_t, max_mfn);
    FIELD("xen_sysctl_physinfo", xc_physinfo_t, hw_cap);

    SIZE("xc_error", xc_error);
    FIELD("xc_error", xc_error, code);
    FIELD("xc_error", xc_error, message);

    SIZE("e820entry", struct e820entry);
    FIELD("e820entry", struct e820entry, addr);
    FIELD("e820entry", struct e820entry, size);
    FIELD("e820entry", struct e820entry, type);

    SIZE("xc_hypercall_buffer", xc_hypercall_buffer_t);
    FIELD("xc_hypercall_buffer", xc_hypercall_buffer_t, hbuf);
    FIELD("xc_hypercall_buffer", xc_hypercall_buffer_t, param_shadow);
    FIELD("xc_hypercall_buffer", xc_hypercall_buffer_t, dir);
    FIELD("xc_hypercall_buffer", xc_hypercall_buffer_t, ubuf);
    FIELD("xc_hypercall_buffer", xc_hypercall_buffer_t, sz);

    SIZE("xen_domctl_shadow_op_stats", xc_shadow_op_stats_t);
    FIELD("xen_domctl_shadow_op_stats", xc_shadow_op_stats_t, fault_count);
    FIELD("xen_domctl_shadow_op_stats", xc_shadow_op_stats_t, dirty_count);

    SIZE("precopy_stats", struct precopy_stats);
    FIELD("precopy_stats", struct precopy_stats, iteration);
    FIELD("precopy_stats", struct precopy_stats, total_written);
    FIELD("precopy_stats", struct precopy_stats, dirty_count);

    SIZE("save_callbacks", struct save_callbacks);
    FIELD("save_callbacks", struct save_callbacks, suspend);
    FIELD("save_callbacks", struct save_callbacks, precopy_policy);
    FIELD("save_callbacks", struct save_callbacks, postcopy);
    FIELD("save_callbacks", struct save_callbacks, checkpoint);
    FIELD("save_callbacks", struct save_callbacks, wait_checkpoint);
    FIELD("save_callbacks", struct save_callbacks, switch_qemu_logdirty);
    FIELD("save_callbacks", struct save_callbacks, data);

    SIZE("restore_callbacks", struct restore_callbacks);
    FIELD("restore_callbacks", struct restore_callbacks, static_data_done);
    FIELD("restore_callbacks", struct restore_callbacks, suspend);
    FIELD("restore_callbacks", struct restore_callbacks, postcopy);
    FIELD("restore_callbacks", struct restore_callbacks, checkpoint);
    FIELD("restore_callbacks", struct restore_callbacks, wait_checkpoint);
    FIELD("restore_callbacks", struct restore_callbacks, restore_results);
    FIELD("restore_callbacks", struct restore_callbacks, data);

    /* xc_dom_image: only the fields the bindings touch (bindings/structs.ts XC_DOM_IMAGE_FIELDS). */
    FIELD("xc_dom_image", struct xc_dom_image, pv_p2m);
    FIELD("xc_dom_image", struct xc_dom_image, p2m_size);
    FIELD("xc_dom_image", struct xc_dom_image, console_pfn);
    FIELD("xc_dom_image", struct xc_dom_image, xenstore_pfn);
    FIELD("xc_dom_image", struct xc_dom_image, flags);
    FIELD("xc_dom_image", struct xc_dom_image, console_evtchn);
    FIELD("xc_dom_image", struct xc_dom_image, xenstore_evtchn);
    FIELD("xc_dom_image", struct xc_dom_image, console_domid);
    FIELD("xc_dom_image", struct xc_dom_image, xenstore_domid);
    FIELD("xc_dom_image", struct xc_dom_image, claim_enabled);
    FIELD("xc_dom_image", struct xc_dom_image, container_type);
    FIELD("xc_dom_image", struct xc_dom_image, target_pages);
    FIELD("xc_dom_image", struct xc_dom_image, mmio_start);
    FIELD("xc_dom_image", struct xc_dom_image, mmio_size);
    FIELD("xc_dom_image", struct xc_dom_image, lowmem_end);
    FIELD("xc_dom_image", struct xc_dom_image, highmem_end);
    FIELD("xc_dom_image", struct xc_dom_image, vga_hole_size);
    FIELD("xc_dom_image", struct xc_dom_image, device_model);
    FIELD("xc_dom_image", struct xc_dom_image, e820);
    FIELD("xc_dom_image", struct xc_dom_image, e820_entries);
    FIELD("xc_dom_image", struct xc_dom_image, max_vcpus);

    CONST(XEN_DOMCTL_INTERFACE_VERSION);
    CONST(XEN_SYSCTL_INTERFACE_VERSION);
    CONST(XC_PAGE_SHIFT);
    CONST(XENVER_version);
    CONST(XENVER_extraversion);
    CONST(XEN_EXTRAVERSION_LEN);
    CONST(XEN_X86_EMU_LAPIC);
    CONST(XEN_SYSCTL_PHYSCAP_hvm);
    CONST(XEN_SYSCTL_PHYSCAP_pv);
    CONST(XEN_SYSCTL_PHYSCAP_hap);
    CONST(XEN_SYSCTL_PHYSCAP_shadow);
    CONST(XEN_SYSCTL_PHYSCAP_gnttab_v1);
    CONST(XEN_SYSCTL_PHYSCAP_gnttab_v2);
    CONST(XEN_DOMCTL_GRANT_version_mask);
    CONST(XEN_DOMCTL_SHADOW_OP_OFF);
    CONST(XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY);
    CONST(XEN_DOMCTL_SHADOW_OP_CLEAN);
    CONST(XEN_DOMCTL_SHADOW_OP_PEEK);
    CONST(XCFLAGS_LIVE);
    CONST(XC_STREAM_PLAIN);
    CONST(XGS_POLICY_ABORT);
    CONST(XGS_POLICY_CONTINUE_PRECOPY);
    CONST(XGS_POLICY_STOP_AND_COPY);
    CONST(XGR_SDD_MISSING_CPUID);
    CONST(XC_DOM_PV_CONTAINER);
    CONST(XC_DOM_HVM_CONTAINER);
    CONST(E820_RAM);
    CONST(HVM_BELOW_4G_MMIO_START);
    CONST(XC_MAX_ERROR_MSG_LEN);
    return 0;
}
