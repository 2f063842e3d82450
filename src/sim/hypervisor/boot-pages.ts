// What the domain builder leaves in a fresh guest's memory: a "kernel" page naming the kernel
// and command line (pfn 0), and for PV a start_info page (pfn 1) with the first fields of
// Xen's x86_64 start_info: magic @0, nr_pages @32, shared_info @40, flags @48,
// store_mfn @56, console.domU.mfn @72. The store and console rings are pfns 2 and 3.
// Guests keep *pfns* in start_info (as a PV kernel does before suspend), so the page's bytes
// do not depend on which host or domid the guest runs on and migration keeps them exact.
// Event channel ports live in the domain's state, not in memory, for the same reason.
import type { BuildConfig } from '../../hypervisor/types.js';
import { PAGE_SIZE } from '../memory/guest-memory.js';
import type { SimDomain } from './domain.js';

export const KERNEL_PFN = 0;

export function writeBootPages(dom: SimDomain, cfg: BuildConfig): void {
  const kernel = Buffer.alloc(PAGE_SIZE);
  kernel.write(`SIMKERNEL\n${cfg.kernel}\n${cfg.ramdisk ?? ''}\n${cfg.cmdline ?? ''}\n`.slice(0, PAGE_SIZE), 'utf8');
  dom.memory.write(KERNEL_PFN, kernel);
  if (dom.type !== 'pv') return;
  const startInfo = Buffer.alloc(PAGE_SIZE);
  startInfo.write('xen-3.0-x86_64', 0, 'latin1');
  startInfo.writeBigUInt64LE(BigInt(dom.memory.presentPages), 32);
  startInfo.writeBigUInt64LE(0n, 40);
  startInfo.writeUInt32LE(0, 48);
  startInfo.writeBigUInt64LE(BigInt(dom.storePfn), 56);
  startInfo.writeBigUInt64LE(BigInt(dom.consolePfn), 72);
  dom.memory.write(dom.startInfoPfn, startInfo);
}

/** Reads the store and console pfns back from a start_info page (restore). */
export function readStartInfo(page: Uint8Array): { storePfn: number; consolePfn: number } | undefined {
  const buf = Buffer.from(page.buffer, page.byteOffset, page.length);
  if (buf.toString('latin1', 0, 14) !== 'xen-3.0-x86_64') return undefined;
  return { storePfn: Number(buf.readBigUInt64LE(56)), consolePfn: Number(buf.readBigUInt64LE(72)) };
}
