// Writes a domain's libxc stream v2 (live pre-copy rounds, then stop-and-copy), as
// xc_domain_save does. Record order for x86 PV, as Xen 4.17 writes it:
//   image header, domain header, X86_PV_INFO, X86_CPUID_POLICY, X86_MSR_POLICY,
//   STATIC_DATA_END, X86_PV_P2M_FRAMES, PAGE_DATA…, X86_TSC_INFO, SHARED_INFO,
//   (X86_PV_VCPU_BASIC, X86_PV_VCPU_EXTENDED) per online vcpu, END.
// HVM/PVH: headers, policies, STATIC_DATA_END, PAGE_DATA…, X86_TSC_INFO, HVM_PARAMS, HVM_CONTEXT, END.
import type { Writable } from 'node:stream';
import { HypervisorError, type SaveCallbacks, type SaveOptions, type SaveStats } from '../../hypervisor/types.js';
import type { SimDomain } from '../hypervisor/domain.js';
import { PAGE_SIZE } from '../memory/guest-memory.js';
import {
  DHDR_TYPE,
  HVM_PARAM,
  MAX_BATCH,
  PageType,
  Rec,
  SIM_HVM_MAGIC,
  SIM_VCPU_MAGIC,
  domainHeader,
  imageHeader,
  pageDataRecord,
  record,
  type PageEntry,
} from './format.js';

export interface SaveHooks {
  /** Brings the domain's cpu time and guest writes up to now. */
  settle(): void;
  /** Resolves once the domain is shut down with reason suspend. */
  waitSuspended(signal?: AbortSignal): Promise<void>;
  /** True once the domain is dying or gone. */
  gone(): boolean;
}

interface PfnList {
  length: number;
  at(index: number): number;
}

export const DEFAULT_MAX_ROUNDS = 5;
export const DEFAULT_DIRTY_THRESHOLD = 50;

export async function saveDomain(dom: SimDomain, out: Writable, opts: SaveOptions, cb: SaveCallbacks, hooks: SaveHooks): Promise<SaveStats> {
  const maxRounds = opts.maxRounds ?? DEFAULT_MAX_ROUNDS;
  const threshold = opts.dirtyThreshold ?? DEFAULT_DIRTY_THRESHOLD;
  if (!Number.isInteger(maxRounds) || maxRounds < 1) throw new HypervisorError('save', 'EINVAL', `maxRounds ${maxRounds}`);
  if (!Number.isInteger(threshold) || threshold < 0) throw new HypervisorError('save', 'EINVAL', `dirtyThreshold ${threshold}`);
  const sink = new Sink(out, cb.signal, hooks);
  const memory = dom.memory;
  const pv = dom.type === 'pv';
  const stats: SaveStats = { rounds: 0, pagesSent: 0, bytes: 0 };

  await sink.write(imageHeader());
  await sink.write(domainHeader(pv ? DHDR_TYPE.x86_pv : DHDR_TYPE.x86_hvm));
  if (pv) await sink.write(pvInfo());
  await sink.write(cpuidPolicy());
  await sink.write(msrPolicy());
  await sink.write(record(Rec.STATIC_DATA_END));
  hooks.settle();
  if (pv) await sink.write(p2mFrames(dom));

  // A full pass walks pfn numbers without building an array of them (the p2m may be large and sparse).
  const allPfns = (): PfnList => ({ length: memory.p2mSize, at: (i) => i });
  const listOf = (pfns: number[]): PfnList => ({ length: pfns.length, at: (i) => pfns[i]! });
  const sendRound = async (pfns: PfnList, firstPass: boolean): Promise<void> => {
    stats.rounds++;
    let sent = 0;
    for (let at = 0; at < pfns.length; at += MAX_BATCH) {
      hooks.settle();
      const batch: PageEntry[] = [];
      for (let i = at; i < Math.min(at + MAX_BATCH, pfns.length); i++) batch.push(pageEntry(dom, pfns.at(i), firstPass));
      await sink.write(pageDataRecord(batch));
      sent += batch.length;
      stats.pagesSent += batch.length;
      cb.progress?.(sent, pfns.length, stats.rounds);
    }
  };

  if (opts.live) {
    hooks.settle();
    memory.enableLogDirty();
    await sendRound(allPfns(), true);
    for (;;) {
      hooks.settle();
      const dirtyCount = memory.peekDirty().length;
      if (dirtyCount < threshold || stats.rounds >= maxRounds) break;
      await sendRound(listOf(memory.cleanDirty()), false);
    }
  }

  // Stop-and-copy: the toolstack suspends the guest, then the remaining pages go.
  sink.check();
  await cb.suspend();
  await hooks.waitSuspended(cb.signal);
  hooks.settle();
  if (opts.live) await sendRound(listOf(memory.cleanDirty()), false);
  else await sendRound(allPfns(), true);

  await sink.write(tscInfo(dom));
  if (pv) {
    await sink.write(record(Rec.SHARED_INFO, Buffer.alloc(PAGE_SIZE)));
    for (let vcpu = 0; vcpu < Math.max(1, dom.onlineVcpus); vcpu++) {
      await sink.write(vcpuBasic(vcpu, dom));
      await sink.write(record(Rec.X86_PV_VCPU_EXTENDED, vcpuHeader(vcpu), Buffer.alloc(8)));
    }
  } else {
    await sink.write(hvmParams(dom));
    await sink.write(hvmContext(dom));
  }
  await sink.write(record(Rec.END));
  stats.bytes = sink.bytes;
  return stats;
}

/**
 * One pfn's PAGE_DATA entry. A present page that was never written goes as XALLOC (allocate,
 * no data: Xen hands out zeroed pages) on a full pass; later rounds always carry the bytes,
 * since an earlier round may have sent the page with data.
 */
function pageEntry(dom: SimDomain, pfn: number, firstPass: boolean): PageEntry {
  if (!dom.memory.isPresent(pfn)) return { pfn, type: PageType.XTAB };
  const data = dom.memory.read(pfn);
  if (data === undefined && firstPass) return { pfn, type: PageType.XALLOC };
  return { pfn, type: PageType.NOTAB, data: data ?? new Uint8Array(PAGE_SIZE) };
}

class Sink {
  bytes = 0;
  constructor(
    private readonly out: Writable,
    private readonly signal: AbortSignal | undefined,
    private readonly hooks: SaveHooks,
  ) {}

  check(): void {
    if (this.signal?.aborted) throw new HypervisorError('save', 'ECANCELED', 'save aborted');
    if (this.hooks.gone()) throw new HypervisorError('save', 'ESRCH', 'domain died during save');
    if (this.out.destroyed || this.out.writableEnded) throw new HypervisorError('save', 'EPIPE', 'stream closed');
  }

  async write(chunk: Buffer): Promise<void> {
    this.check();
    this.bytes += chunk.length;
    if (this.out.write(chunk)) return;
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error): void => {
        this.out.off('drain', onDrain);
        this.out.off('close', onClose);
        this.out.off('error', onError);
        this.signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve();
      };
      const onDrain = (): void => done();
      const onClose = (): void => done(new HypervisorError('save', 'EPIPE', 'stream closed'));
      const onError = (err: Error): void => done(new HypervisorError('save', 'EIO', err.message));
      const onAbort = (): void => done(new HypervisorError('save', 'ECANCELED', 'save aborted'));
      this.out.on('drain', onDrain);
      this.out.on('close', onClose);
      this.out.on('error', onError);
      this.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

function pvInfo(): Buffer {
  const body = Buffer.alloc(8);
  body.writeUInt8(8, 0); // guest width: 64-bit
  body.writeUInt8(4, 1); // 4 levels of pagetables
  return record(Rec.X86_PV_INFO, body);
}

/** A few CPUID leaves: {leaf, subleaf, eax, ebx, ecx, edx}. */
function cpuidPolicy(): Buffer {
  const leaves = [
    [0x0, 0xffffffff, 0xd, 0x53696d58, 0x4d4d566e, 0x654e6558], // max leaf, vendor "XSimXenVMMeN" (sim)
    [0x1, 0xffffffff, 0x000906ea, 0x00000800, 0x80000000, 0x178bfbff],
  ];
  const body = Buffer.alloc(leaves.length * 24);
  leaves.forEach((leaf, i) => leaf.forEach((v, j) => body.writeUInt32LE(v >>> 0, i * 24 + j * 4)));
  return record(Rec.X86_CPUID_POLICY, body);
}

/** One MSR entry {idx u32, flags u32, val u64}: MSR_INTEL_PLATFORM_INFO = 0. */
function msrPolicy(): Buffer {
  const body = Buffer.alloc(16);
  body.writeUInt32LE(0xce, 0);
  return record(Rec.X86_MSR_POLICY, body);
}

/** X86_PV_P2M_FRAMES: start pfn, end pfn, then the frames holding the p2m (512 entries each). */
function p2mFrames(dom: SimDomain): Buffer {
  const endPfn = Math.max(0, dom.memory.p2mSize - 1);
  const frames = Math.ceil((endPfn + 1) / 512) || 1;
  const body = Buffer.alloc(8 + frames * 8);
  body.writeUInt32LE(0, 0);
  body.writeUInt32LE(endPfn, 4);
  // The sim's p2m frames sit just past the guest's RAM in its machine frame range.
  for (let i = 0; i < frames; i++) body.writeBigUInt64LE(BigInt(dom.mfnBase + dom.memory.p2mSize + i), 8 + i * 8);
  return record(Rec.X86_PV_P2M_FRAMES, body);
}

function tscInfo(dom: SimDomain): Buffer {
  const body = Buffer.alloc(24);
  body.writeUInt32LE(0, 0); // TSC_MODE_DEFAULT
  body.writeUInt32LE(2_400_000, 4); // kHz
  body.writeBigUInt64LE(BigInt(Math.round(dom.cpuTimeNs)), 8);
  body.writeUInt32LE(0, 16); // incarnation
  return record(Rec.X86_TSC_INFO, body);
}

function vcpuHeader(vcpu: number): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32LE(vcpu, 0);
  return head;
}

/** Sim vcpu context: magic, flags (bit 0 online), rsi = start_info pfn (as the PV ABI passes it). */
function vcpuBasic(vcpu: number, dom: SimDomain): Buffer {
  const ctx = Buffer.alloc(32);
  ctx.write(SIM_VCPU_MAGIC, 0, 'latin1');
  ctx.writeBigUInt64LE(1n, 8);
  ctx.writeBigUInt64LE(vcpu === 0 ? BigInt(dom.startInfoPfn) : 0n, 16);
  return record(Rec.X86_PV_VCPU_BASIC, vcpuHeader(vcpu), ctx);
}

function hvmParams(dom: SimDomain): Buffer {
  const params: [number, number][] = [
    [HVM_PARAM.STORE_PFN, dom.storePfn],
    [HVM_PARAM.CONSOLE_PFN, dom.consolePfn],
  ];
  const body = Buffer.alloc(8 + params.length * 16);
  body.writeUInt32LE(params.length, 0);
  params.forEach(([index, value], i) => {
    body.writeBigUInt64LE(BigInt(index), 8 + i * 16);
    body.writeBigUInt64LE(BigInt(value), 16 + i * 16);
  });
  return record(Rec.HVM_PARAMS, body);
}

/** Sim HVM context: magic, domain type ('hvm' | 'pvh'), online vcpus. */
function hvmContext(dom: SimDomain): Buffer {
  const body = Buffer.alloc(16);
  body.write(SIM_HVM_MAGIC, 0, 'latin1');
  body.writeUInt8(dom.type === 'pvh' ? 1 : 0, 8);
  body.writeUInt32LE(dom.onlineVcpus, 12);
  return record(Rec.HVM_CONTEXT, body);
}
