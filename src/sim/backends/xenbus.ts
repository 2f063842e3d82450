// Small helpers shared by the sim backends and the sim frontends: xenbus states and untrusted values.
import { XS_STATE } from '../../xenstore/wire.js';
import type { XenstoreClient, XsOps } from '../../xenstore/types.js';
import { XsError } from '../../xenstore/types.js';

export { XS_STATE };
export type XenbusState = (typeof XS_STATE)[keyof typeof XS_STATE];

/** A xenbus state read from xenstore: undefined when absent or not one of the nine states (the other end may lie). */
export function parseState(raw: string | undefined): XenbusState | undefined {
  if (raw === undefined || !/^[0-8]$/.test(raw.trim())) return undefined;
  return Number(raw.trim()) as XenbusState;
}

/** A non-negative decimal integer below 2^32, as ring refs, event channels and domids are; else undefined. */
export function parseU32(raw: string | undefined): number | undefined {
  if (raw === undefined || !/^\d{1,10}$/.test(raw)) return undefined;
  const n = Number(raw);
  return n < 2 ** 32 ? n : undefined;
}

/** read() that answers undefined for ENOENT. */
export async function readOpt(xs: XsOps, path: string): Promise<string | undefined> {
  try {
    return await xs.read(path);
  } catch (err) {
    if (err instanceof XsError && err.errno === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Writes each key below dir whose current value differs (so that re-running a step fires no watch), in
 * one transaction and only while dir exists, as xenbus_switch_state checks its node: a backend whose
 * directory the toolstack removed meanwhile must not bring it back. Returns false when dir is gone.
 */
export async function writeChanged(xs: XenstoreClient, dir: string, keys: Record<string, string>): Promise<boolean> {
  return xs.transaction(async (tx) => {
    if ((await tx.tryRead(dir)) === undefined) return false;
    for (const [k, v] of Object.entries(keys)) {
      if ((await tx.tryRead(`${dir}/${k}`)) !== v) await tx.write(`${dir}/${k}`, v);
    }
    return true;
  });
}
