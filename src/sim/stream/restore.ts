// Reads a libxc stream v2 into a created (not built) domain, as xc_domain_restore does.
// Accepts what save.ts writes; checks the headers and every record's framing, skips optional
// records it does not know, and refuses a stream of the wrong guest type.
import type { Readable } from 'node:stream';
import { HypervisorError } from '../../hypervisor/types.js';
import type { SimDomain } from '../hypervisor/domain.js';
import { readStartInfo } from '../hypervisor/boot-pages.js';
import {
  DHDR_SIZE,
  DHDR_TYPE,
  HVM_PARAM,
  IHDR_IDENT,
  IHDR_MARKER,
  IHDR_SIZE,
  MAX_RECORD_LENGTH,
  PageType,
  REC_TYPE_OPTIONAL,
  RH_SIZE,
  Rec,
  SIM_HVM_MAGIC,
  SIM_VCPU_MAGIC,
  StreamFormatError,
  parsePageData,
} from './format.js';
import { ExactReader } from './exact-reader.js';

export interface RestoreHooks {
  /** Populates a pfn, taking a page from the host (throws ENOMEM). */
  populate(pfn: number): void;
  /** Drops a pfn (XTAB/BROKEN in the stream), giving its page back to the host. */
  release(pfn: number): void;
}

const KNOWN_RECORDS = new Set<number>(Object.values(Rec));

export async function restoreDomain(dom: SimDomain, input: Readable, signal: AbortSignal | undefined, hooks: RestoreHooks): Promise<void> {
  const reader = new ExactReader(input);
  // A cancel must also end a read that waits for bytes that may never come.
  const onAbort = (): void => {
    input.destroy(new HypervisorError('restore', 'ECANCELED', 'restore aborted'));
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    if (signal?.aborted) throw new HypervisorError('restore', 'ECANCELED', 'restore aborted');
    await readStream(dom, reader, signal, hooks);
  } catch (err) {
    if (err instanceof HypervisorError) throw err;
    if (err instanceof StreamFormatError) throw new HypervisorError('restore', 'EINVAL', err.message);
    throw new HypervisorError('restore', 'EIO', (err as Error).message);
  } finally {
    signal?.removeEventListener('abort', onAbort);
    reader.release();
  }
}

async function readStream(dom: SimDomain, reader: ExactReader, signal: AbortSignal | undefined, hooks: RestoreHooks): Promise<void> {
  const ihdr = await reader.read(IHDR_SIZE);
  if (ihdr.readBigUInt64BE(0) !== IHDR_MARKER) throw new StreamFormatError('bad image header marker');
  if (ihdr.readUInt32BE(8) !== IHDR_IDENT) throw new StreamFormatError(`bad image id 0x${ihdr.readUInt32BE(8).toString(16)}`);
  const version = ihdr.readUInt32BE(12);
  if (version < 2 || version > 3) throw new StreamFormatError(`unsupported stream version ${version}`);
  if (ihdr.readUInt16BE(16) !== 0) throw new StreamFormatError('stream is big-endian or has reserved options set');

  const dhdr = await reader.read(DHDR_SIZE);
  const guestType = dhdr.readUInt32LE(0);
  if (guestType !== DHDR_TYPE.x86_pv && guestType !== DHDR_TYPE.x86_hvm) throw new StreamFormatError(`unknown domain type ${guestType}`);
  if (dhdr.readUInt16LE(4) !== 12) throw new StreamFormatError(`page shift ${dhdr.readUInt16LE(4)}, expected 12`);
  const pv = guestType === DHDR_TYPE.x86_pv;
  if (pv === dom.hvm) {
    throw new HypervisorError('restore', 'EINVAL', `a ${pv ? 'PV' : 'HVM'} stream cannot restore into a domain created ${dom.hvm ? 'with' : 'without'} CDF_hvm`);
  }
  dom.type = pv ? 'pv' : 'hvm';

  for (;;) {
    if (signal?.aborted) throw new HypervisorError('restore', 'ECANCELED', 'restore aborted');
    const rh = await reader.read(RH_SIZE);
    const type = rh.readUInt32LE(0);
    const length = rh.readUInt32LE(4);
    if (length > MAX_RECORD_LENGTH) throw new StreamFormatError(`record 0x${type.toString(16)} of ${length} bytes is too long`);
    const padded = await reader.read((length + 7) & ~7);
    if (padded.subarray(length).some((b) => b !== 0)) throw new StreamFormatError(`record 0x${type.toString(16)} has non-zero padding`);
    const body = padded.subarray(0, length);
    if (type === Rec.END) {
      if (length !== 0) throw new StreamFormatError('END record with a body');
      break;
    }
    if (!KNOWN_RECORDS.has(type)) {
      if (type & REC_TYPE_OPTIONAL) continue;
      throw new StreamFormatError(`unknown record type 0x${type.toString(16)}`);
    }
    applyRecord(dom, type, body, pv, hooks);
  }

  if (pv) {
    const startInfo = dom.memory.isPresent(dom.startInfoPfn) ? dom.memory.read(dom.startInfoPfn) : undefined;
    const fields = startInfo && readStartInfo(startInfo);
    if (!fields) throw new StreamFormatError(`no start_info page at pfn ${dom.startInfoPfn}`);
    dom.storePfn = fields.storePfn;
    dom.consolePfn = fields.consolePfn;
  }
  // The rings the toolstack will hand xenstored and the console daemon must be the guest's own pages.
  for (const [name, pfn] of [['store', dom.storePfn], ['console', dom.consolePfn]] as const) {
    if (!dom.memory.isPresent(pfn)) throw new StreamFormatError(`the ${name} ring pfn 0x${pfn.toString(16)} is not a page of the stream`);
  }
}

function applyRecord(dom: SimDomain, type: number, body: Buffer, pv: boolean, hooks: RestoreHooks): void {
  switch (type) {
    case Rec.PAGE_DATA:
      for (const entry of parsePageData(body)) {
        if (entry.type === PageType.XTAB || entry.type === PageType.BROKEN) {
          hooks.release(entry.pfn);
          continue;
        }
        hooks.populate(entry.pfn);
        if (entry.data) dom.memory.write(entry.pfn, entry.data);
      }
      return;
    case Rec.X86_PV_INFO:
      if (!pv) throw new StreamFormatError('X86_PV_INFO in an HVM stream');
      if (body.length !== 8) throw new StreamFormatError(`X86_PV_INFO of ${body.length} bytes`);
      if (body[0] !== 8 || body[1] !== 4) throw new StreamFormatError(`guest width ${body[0]} / ${body[1]} levels: the sim runs 64-bit 4-level PV guests only`);
      return;
    case Rec.X86_PV_VCPU_BASIC: {
      if (body.length < 8) throw new StreamFormatError('short X86_PV_VCPU_BASIC');
      const vcpu = body.readUInt32LE(0);
      const ctx = body.subarray(8);
      if (vcpu === 0 && ctx.length >= 24 && ctx.toString('latin1', 0, 8) === SIM_VCPU_MAGIC) {
        dom.startInfoPfn = Number(ctx.readBigUInt64LE(16));
      }
      dom.onlineVcpus = Math.min(dom.maxVcpus, Math.max(dom.onlineVcpus, vcpu + 1));
      return;
    }
    case Rec.HVM_PARAMS: {
      if (body.length < 8) throw new StreamFormatError(`HVM_PARAMS of ${body.length} bytes`);
      const count = body.readUInt32LE(0);
      if (body.length !== 8 + count * 16) throw new StreamFormatError(`HVM_PARAMS of ${body.length} bytes for ${count} entries`);
      for (let i = 0; i < count; i++) {
        const index = Number(body.readBigUInt64LE(8 + i * 16));
        const value = Number(body.readBigUInt64LE(16 + i * 16));
        if (index === HVM_PARAM.STORE_PFN) dom.storePfn = value;
        if (index === HVM_PARAM.CONSOLE_PFN) dom.consolePfn = value;
      }
      return;
    }
    case Rec.HVM_CONTEXT:
      if (pv) throw new StreamFormatError('HVM_CONTEXT in a PV stream');
      if (body.length >= 16 && body.toString('latin1', 0, 8) === SIM_HVM_MAGIC) {
        dom.type = body[8] === 1 ? 'pvh' : 'hvm';
        dom.onlineVcpus = Math.min(dom.maxVcpus, body.readUInt32LE(12)) || dom.onlineVcpus;
      }
      return;
    case Rec.SHARED_INFO:
      if (body.length !== 4096) throw new StreamFormatError(`SHARED_INFO of ${body.length} bytes`);
      return;
    case Rec.TOOLSTACK:
    case Rec.CHECKPOINT:
    case Rec.CHECKPOINT_DIRTY_PFN_LIST:
      throw new StreamFormatError(`record 0x${type.toString(16)} is not supported (checkpointed streams are not)`);
    default:
      // X86_PV_P2M_FRAMES, vcpu extended/xsave/msrs, TSC info, policies, STATIC_DATA_END,
      // VERIFY: framing checked above; the sim keeps nothing from them.
      return;
  }
}
