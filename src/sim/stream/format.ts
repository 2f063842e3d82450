// Record layout of the libxc migration stream v2 (revision 3), as the sim writes and reads it.
// The full description of what the sim puts in each record is in docs/sim-stream.md.
import { PAGE_SIZE } from '../memory/guest-memory.js';

export const IHDR_MARKER = 0xffffffffffffffffn;
export const IHDR_IDENT = 0x58454e46; // "XENF"
export const IHDR_VERSION = 3;
export const IHDR_SIZE = 24;
export const DHDR_SIZE = 16;
export const RH_SIZE = 8;

export const DHDR_TYPE = { x86_pv: 1, x86_hvm: 2 } as const;

export const Rec = {
  END: 0x00,
  PAGE_DATA: 0x01,
  X86_PV_INFO: 0x02,
  X86_PV_P2M_FRAMES: 0x03,
  X86_PV_VCPU_BASIC: 0x04,
  X86_PV_VCPU_EXTENDED: 0x05,
  X86_PV_VCPU_XSAVE: 0x06,
  SHARED_INFO: 0x07,
  X86_TSC_INFO: 0x08,
  HVM_CONTEXT: 0x09,
  HVM_PARAMS: 0x0a,
  TOOLSTACK: 0x0b,
  X86_PV_VCPU_MSRS: 0x0c,
  VERIFY: 0x0d,
  CHECKPOINT: 0x0e,
  CHECKPOINT_DIRTY_PFN_LIST: 0x0f,
  STATIC_DATA_END: 0x10,
  X86_CPUID_POLICY: 0x11,
  X86_MSR_POLICY: 0x12,
} as const;
/** Bit 31 of a record type: a reader that does not know the record may skip it. */
export const REC_TYPE_OPTIONAL = 0x80000000;

/** Page types in bits 60-63 of a PAGE_DATA pfn entry (XEN_DOMCTL_PFINFO_* >> 28). */
export const PageType = { NOTAB: 0x0, L1TAB: 0x1, L2TAB: 0x2, L3TAB: 0x3, L4TAB: 0x4, BROKEN: 0xd, XALLOC: 0xe, XTAB: 0xf } as const;
export const PFN_MASK = (1n << 52n) - 1n;

/** Xen's MAX_BATCH_SIZE: pfns per PAGE_DATA record. */
export const MAX_BATCH = 1024;
/** The largest record the reader accepts (a full PAGE_DATA batch is ~4.2 MiB). */
export const MAX_RECORD_LENGTH = 16 * 1024 * 1024;

export const HVM_PARAM = { STORE_PFN: 1, STORE_EVTCHN: 2, CONSOLE_PFN: 17, CONSOLE_EVTCHN: 18 } as const;

/** Sim magic at the start of the vcpu context and HVM context records. */
export const SIM_VCPU_MAGIC = 'SIMVCPU1';
export const SIM_HVM_MAGIC = 'SIMHVM01';

/** Does a page of this type carry 4 KiB of data in PAGE_DATA? (NOTAB..L4TAB, pinned or not) */
export function typeHasData(type: number): boolean {
  return (type & 0x7) <= PageType.L4TAB && type !== PageType.BROKEN && type !== PageType.XALLOC && type !== PageType.XTAB;
}

export function imageHeader(): Buffer {
  const out = Buffer.alloc(IHDR_SIZE);
  out.writeBigUInt64BE(IHDR_MARKER, 0);
  out.writeUInt32BE(IHDR_IDENT, 8);
  out.writeUInt32BE(IHDR_VERSION, 12);
  out.writeUInt16BE(0, 16); // options: bit 0 clear = little-endian records
  return out;
}

export function domainHeader(type: number, xenMajor = 4, xenMinor = 17): Buffer {
  const out = Buffer.alloc(DHDR_SIZE);
  out.writeUInt32LE(type, 0);
  out.writeUInt16LE(12, 4); // page_shift
  out.writeUInt32LE(xenMajor, 8);
  out.writeUInt32LE(xenMinor, 12);
  return out;
}

/** A record: {u32 type, u32 body length, body, zero padding to 8 bytes}. */
export function record(type: number, ...parts: Uint8Array[]): Buffer {
  const length = parts.reduce((n, p) => n + p.length, 0);
  const padded = (length + 7) & ~7;
  // allocUnsafe: every byte is written below (a PAGE_DATA record is ~4 MiB; zero-filling it first costs).
  const out = Buffer.allocUnsafe(RH_SIZE + padded);
  out.writeUInt32LE(type >>> 0, 0);
  out.writeUInt32LE(length, 4);
  let at = RH_SIZE;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  out.fill(0, at);
  return out;
}

export interface PageEntry {
  pfn: number;
  type: number;
  /** Present iff typeHasData(type). */
  data?: Uint8Array;
}

export function pageDataRecord(entries: PageEntry[]): Buffer {
  const head = Buffer.alloc(8 + entries.length * 8);
  head.writeUInt32LE(entries.length, 0);
  entries.forEach((e, i) => head.writeBigUInt64LE((BigInt(e.type) << 60n) | BigInt(e.pfn), 8 + i * 8));
  const data = entries.filter((e) => typeHasData(e.type)).map((e) => e.data!);
  return record(Rec.PAGE_DATA, head, ...data);
}

export function parsePageData(body: Buffer): PageEntry[] {
  if (body.length <= 8) throw new StreamFormatError(`PAGE_DATA record of ${body.length} bytes`);
  const count = body.readUInt32LE(0);
  if (body.readUInt32LE(4) !== 0) throw new StreamFormatError('PAGE_DATA reserved field is not zero');
  if (count === 0 || count > MAX_BATCH) throw new StreamFormatError(`PAGE_DATA count ${count}`);
  if (body.length < 8 + count * 8) throw new StreamFormatError(`PAGE_DATA: ${count} pfns do not fit ${body.length} bytes`);
  const entries: PageEntry[] = [];
  let dataAt = 8 + count * 8;
  for (let i = 0; i < count; i++) {
    const raw = body.readBigUInt64LE(8 + i * 8);
    const type = Number(raw >> 60n);
    if ((raw >> 52n) & 0xffn) throw new StreamFormatError(`PAGE_DATA pfn[${i}] has reserved bits set`);
    if (type >= 5 && type <= 8) throw new StreamFormatError(`PAGE_DATA pfn[${i}] has invalid type ${type}`);
    const entry: PageEntry = { pfn: Number(raw & PFN_MASK), type };
    if (typeHasData(type)) {
      if (dataAt + PAGE_SIZE > body.length) throw new StreamFormatError('PAGE_DATA is shorter than its pages');
      entry.data = body.subarray(dataAt, dataAt + PAGE_SIZE);
      dataAt += PAGE_SIZE;
    }
    entries.push(entry);
  }
  if (dataAt !== body.length) throw new StreamFormatError(`PAGE_DATA has ${body.length - dataAt} trailing bytes`);
  return entries;
}

export class StreamFormatError extends Error {
  override name = 'StreamFormatError';
}
