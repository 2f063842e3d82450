// Small helpers shared by the sim backends and the sim frontends: xenbus states and untrusted values.
import { XS_STATE } from '../../xenstore/wire.js';
import type { XsOps } from '../../xenstore/types.js';
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

/** Writes each key below dir whose current value differs (so that re-running a step fires no watch). */
export async function writeChanged(xs: XsOps, dir: string, keys: Record<string, string>): Promise<void> {
  for (const [k, v] of Object.entries(keys)) {
    if ((await readOpt(xs, `${dir}/${k}`)) !== v) await xs.write(`${dir}/${k}`, v);
  }
}
