// Turning a failed C call into a HypervisorError that names the call and its errno.
import { constants } from 'node:os';
import { HypervisorError } from '../src/hypervisor/types.js';

const errnoNames = new Map<number, string>();
for (const [name, value] of Object.entries(constants.errno)) {
  if (!errnoNames.has(value)) errnoNames.set(value, name);
}

/** 'ENOENT' for 2; 'E<n>' for numbers the platform does not name; 'EUNKNOWN' when errno was not set. */
export function errnoName(errno: number): string {
  if (!errno) return 'EUNKNOWN';
  return errnoNames.get(errno) ?? `E${errno}`;
}

export function callError(call: string, errno: number, detail?: string): HypervisorError {
  return new HypervisorError(call, errnoName(errno), detail);
}

/** The error for a library that is absent or cannot be loaded at all. */
export function libraryError(call: string, detail: string): HypervisorError {
  return new HypervisorError(call, 'ENOENT', detail);
}
