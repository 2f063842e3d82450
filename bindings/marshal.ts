// Pure conversions between the daemon's types and the Xen structs' bytes: no library calls, so they are tested
// without Xen (test/bindings/marshal.test.ts).
import koffi from 'koffi';
import type { CreateDomainConfig, DomainInfo, PhysInfo } from '../src/hypervisor/types.js';
import { DomInfoFlag } from '../src/hypervisor/types.js';
import {
  XcDomainInfo,
  XcPhysInfo,
  XenDomctlCreateDomain,
  XC_PAGE_SIZE,
  XEN_X86_EMU_LAPIC,
  XEN_DOMCTL_GRANT_version_mask,
} from './structs.js';

export const DOMAININFO_SIZE = koffi.sizeof(XcDomainInfo);
export const CREATEDOMAIN_SIZE = koffi.sizeof(XenDomctlCreateDomain);
export const PHYSINFO_SIZE = koffi.sizeof(XcPhysInfo);

/** 16 bytes of a xen_domain_handle_t from a uuid string (hyphens optional, case-insensitive). */
export function uuidToHandle(uuid: string): Buffer {
  const hex = uuid.replace(/-/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new RangeError(`domain handle must be a uuid, got ${JSON.stringify(uuid)}`);
  return Buffer.from(hex, 'hex');
}

export function handleToUuid(bytes: Uint8Array | number[]): string {
  const hex = Buffer.from(bytes as Uint8Array).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

interface RawDomainInfo {
  domain: number;
  flags: number;
  tot_pages: number | bigint;
  max_pages: number | bigint;
  cpu_time: number | bigint;
  nr_online_vcpus: number;
  max_vcpu_id: number;
  handle: Uint8Array | number[];
}

/** Decodes `count` consecutive xc_domaininfo_t records from what xc_domain_getinfolist filled. */
export function decodeDomainInfoList(bytes: Buffer, count: number): DomainInfo[] {
  if (count * DOMAININFO_SIZE > bytes.length) {
    throw new RangeError(`${count} domain info records need ${count * DOMAININFO_SIZE} bytes, have ${bytes.length}`);
  }
  const out: DomainInfo[] = [];
  for (let i = 0; i < count; i++) {
    const raw = koffi.decode(bytes, i * DOMAININFO_SIZE, XcDomainInfo) as RawDomainInfo;
    out.push(toDomainInfo(raw));
  }
  return out;
}

function toDomainInfo(raw: RawDomainInfo): DomainInfo {
  const flags = raw.flags >>> 0;
  return {
    domid: raw.domain,
    flags,
    dying: (flags & DomInfoFlag.dying) !== 0,
    shutdown: (flags & DomInfoFlag.shutdown) !== 0,
    shutdownReason: (flags >>> 16) & 0xff,
    paused: (flags & DomInfoFlag.paused) !== 0,
    running: (flags & DomInfoFlag.running) !== 0,
    blocked: (flags & DomInfoFlag.blocked) !== 0,
    hvm: (flags & DomInfoFlag.hvm_guest) !== 0,
    totPages: Number(raw.tot_pages),
    maxPages: Number(raw.max_pages),
    cpuTimeNs: Number(raw.cpu_time),
    onlineVcpus: raw.nr_online_vcpus,
    maxVcpuId: raw.max_vcpu_id,
    handle: handleToUuid(raw.handle),
  };
}

export interface CreateDomainExtras {
  /** Grant table version limit (1 or 2), from physinfo's gnttab capabilities. */
  maxGrantVersion: number;
}

const U32_MAX = 0xffffffff;
function u32(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 0 || v > U32_MAX) throw new RangeError(`${name} must be a 32-bit unsigned integer, got ${v}`);
  return v;
}

/**
 * The struct xen_domctl_createdomain bytes for a config. A domain with CDF_hvm is taken to be PVH (only the
 * local APIC emulated): full HVM needs a device model, which this daemon does not run.
 */
export function encodeCreateDomain(cfg: CreateDomainConfig, extras: CreateDomainExtras): Buffer {
  const hvm = (cfg.flags & 1) !== 0;
  if (cfg.maxVcpus < 1) throw new RangeError(`maxVcpus must be at least 1, got ${cfg.maxVcpus}`);
  const value = {
    ssidref: 0,
    handle: Array.from(uuidToHandle(cfg.handle)),
    flags: u32('flags', cfg.flags),
    iommu_opts: 0,
    max_vcpus: u32('maxVcpus', cfg.maxVcpus),
    max_evtchn_port: u32('maxEvtchnPort', cfg.maxEvtchnPort ?? 1023),
    // -1 asks Xen for its configured default.
    max_grant_frames: cfg.maxGrantFrames ?? -1,
    max_maptrack_frames: cfg.maxMaptrackFrames ?? -1,
    grant_opts: extras.maxGrantVersion & XEN_DOMCTL_GRANT_version_mask,
    vmtrace_size: 0,
    cpupool_id: 0,
    arch: { emulation_flags: hvm ? XEN_X86_EMU_LAPIC : 0, misc_flags: 0 },
  };
  const buf = Buffer.alloc(CREATEDOMAIN_SIZE);
  koffi.encode(buf, 0, XenDomctlCreateDomain, value);
  return buf;
}

interface RawPhysInfo {
  nr_cpus: number;
  total_pages: number | bigint;
  free_pages: number | bigint;
  capabilities: number;
}

export function decodePhysInfo(bytes: Buffer): PhysInfo & { capabilities: number } {
  const raw = koffi.decode(bytes, 0, XcPhysInfo) as RawPhysInfo;
  return {
    nrCpus: raw.nr_cpus,
    totalPages: Number(raw.total_pages),
    freePages: Number(raw.free_pages),
    pageSize: XC_PAGE_SIZE,
    capabilities: raw.capabilities >>> 0,
  };
}

/** Pfns set in a log-dirty bitmap (bit i of byte j = pfn 8j+i), up to `pages` pfns. */
export function dirtyPfnsFromBitmap(bitmap: Uint8Array, pages: number): number[] {
  const dirty: number[] = [];
  const limit = Math.min(pages, bitmap.length * 8);
  for (let byte = 0; byte * 8 < limit; byte++) {
    const v = bitmap[byte];
    if (v === 0) continue;
    for (let bit = 0; bit < 8; bit++) {
      const pfn = byte * 8 + bit;
      if (pfn < limit && v & (1 << bit)) dirty.push(pfn);
    }
  }
  return dirty;
}
