// The VM spec (what VM.add receives) and the state (what VM.stat answers), as API v1 defines them.
// The JSON Schema in api/ checks shapes; this module checks what a schema cannot (cross-field rules) and fills defaults.
import { randomUUID } from 'node:crypto';
import type { StoredVmSpec } from '../../api/v1/types.js';

export type { DomainAction, PowerState, VbdSpec, VifSpec, VmState } from '../../api/v1/types.js';
/** A VM spec as the daemon stores it: the id is always set. */
export type VmSpec = StoredVmSpec;

/** A rule the spec breaks: path in the params (JSON-pointer-like) and what is wrong. */
export interface SpecProblem {
  path: string;
  message: string;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;
const DISK_RE = /^(xvd|hd|sd)([a-z]+)$/;
const XSDATA_KEY_RE = /^[A-Za-z0-9_@.-]+(\/[A-Za-z0-9_@.-]+)*$/;

export function isUuid(s: string): boolean {
  return UUID_RE.test(s);
}

/** Linux's disk numbering as libxl computes it (xvd: major 202; sd: major 8; hd: majors 3 and 22). */
export function vbdDevid(device: string): number | undefined {
  const m = DISK_RE.exec(device);
  if (!m) return undefined;
  let index = 0;
  for (const ch of m[2]!) index = index * 26 + (ch.charCodeAt(0) - 96);
  index -= 1;
  if (m[1] === 'hd') return index < 2 ? (3 << 8) | (index << 6) : index < 4 ? (22 << 8) | ((index - 2) << 6) : undefined;
  if (index < 16) return ((m[1] === 'xvd' ? 202 : 8) << 8) | (index << 4);
  if (m[1] === 'xvd' && index < 1 << 20) return (1 << 28) | (index << 8);
  return undefined;
}

/** Checks cross-field rules; returns the problems (empty when the spec is usable). */
export function checkSpec(spec: VmSpec): SpecProblem[] {
  const problems: SpecProblem[] = [];
  if (!isUuid(spec.id)) problems.push({ path: '/vm/id', message: 'must be a lower-case uuid' });
  const { max_mib, target_mib } = spec.memory;
  if (target_mib !== undefined && target_mib > max_mib)
    problems.push({ path: '/vm/memory/target_mib', message: `must be <= memory.max_mib (${max_mib})` });
  const { max, online } = spec.vcpus;
  if (online !== undefined && online > max)
    problems.push({ path: '/vm/vcpus/online', message: `must be <= vcpus.max (${max})` });
  const seenDevids = new Set<number>();
  (spec.vbds ?? []).forEach((vbd, i) => {
    const devid = vbdDevid(vbd.device);
    if (devid === undefined) problems.push({ path: `/vm/vbds/${i}/device`, message: 'must name a disk the guest can have (xvda..xvdp and beyond, sda..sdp, hda..hdd)' });
    else if (seenDevids.has(devid)) problems.push({ path: `/vm/vbds/${i}/device`, message: `${vbd.device} is used twice` });
    else seenDevids.add(devid);
  });
  const seenVifs = new Set<number>();
  (spec.vifs ?? []).forEach((vif, i) => {
    if (vif.mac !== undefined && !MAC_RE.test(vif.mac)) problems.push({ path: `/vm/vifs/${i}/mac`, message: 'must be six hex octets separated by colons' });
    const index = vif.index ?? i;
    if (seenVifs.has(index)) problems.push({ path: `/vm/vifs/${i}/index`, message: `vif index ${index} is used twice` });
    seenVifs.add(index);
  });
  for (const key of Object.keys(spec.xenstore_data ?? {})) {
    if (!XSDATA_KEY_RE.test(key) || key.split('/').some((p) => p === '.' || p === '..'))
      problems.push({ path: `/vm/xenstore_data/${key}`, message: 'key must be a relative xenstore path' });
  }
  return problems;
}

/** Gives the spec an id when it has none (a fresh random uuid). */
export function withId<T extends { id?: string }>(spec: T): T & { id: string } {
  return { ...spec, id: spec.id ?? randomUUID() };
}

export function targetMib(spec: VmSpec): number {
  return spec.memory.target_mib ?? spec.memory.max_mib;
}

export function onlineVcpus(spec: VmSpec): number {
  return spec.vcpus.online ?? spec.vcpus.max;
}

/** A stable MAC for the n-th vif of a VM when the spec gives none (Xen's OUI 00:16:3e). */
export function defaultMac(vmId: string, index: number): string {
  const hex = vmId.replace(/-/g, '');
  const a = parseInt(hex.slice(0, 2), 16) & 0x7f;
  const b = parseInt(hex.slice(2, 4), 16);
  const c = (parseInt(hex.slice(4, 6), 16) + index) & 0xff;
  return ['00', '16', '3e', a, b, c].map((x) => (typeof x === 'number' ? x.toString(16).padStart(2, '0') : x)).join(':');
}
