// Argument checking for the hypervisor RPC: each call's arguments are checked before the
// SimHypervisor sees them, so bad input gets EINVAL naming the argument, never a crash.
import { HypervisorError } from '../../hypervisor/types.js';

export type Check = (value: unknown, name: string, call: string) => unknown;

function bad(call: string, name: string, what: string, value: unknown): never {
  let shown: string;
  try {
    shown = JSON.stringify(value)?.slice(0, 80) ?? String(value);
  } catch {
    shown = typeof value;
  }
  throw new HypervisorError(call, 'EINVAL', `argument ${name} must be ${what}, got ${shown}`);
}

export const int = (min: number, max: number): Check => (value, name, call) =>
  Number.isInteger(value) && (value as number) >= min && (value as number) <= max ? value : bad(call, name, `an integer in ${min}..${max}`, value);

export const domid = int(0, 0x7fef);
export const u32 = int(0, 0xffffffff);

export const str: Check = (value, name, call) => (typeof value === 'string' ? value : bad(call, name, 'a string', value));

export const oneOf = (...allowed: string[]): Check => (value, name, call) =>
  typeof value === 'string' && allowed.includes(value) ? value : bad(call, name, `one of ${allowed.join(', ')}`, value);

export const optional = (check: Check): Check => (value, name, call) => (value === undefined || value === null ? undefined : check(value, name, call));

/** A plain object with the given fields (others are refused: a typo must not pass silently). */
export const shape = (fields: Record<string, Check>): Check => (value, name, call) => {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) bad(call, name, 'an object', value);
  const input = value as Record<string, unknown>;
  for (const key of Object.keys(input)) {
    if (!Object.hasOwn(fields, key)) throw new HypervisorError(call, 'EINVAL', `argument ${name} has unknown field ${JSON.stringify(key)}`);
  }
  const out: Record<string, unknown> = {};
  for (const [key, check] of Object.entries(fields)) {
    const checked = check(input[key], `${name}.${key}`, call);
    if (checked !== undefined) out[key] = checked;
  }
  return out;
};

export function checkArgs(call: string, args: unknown, checks: Check[]): unknown[] {
  if (!Array.isArray(args)) throw new HypervisorError(call, 'EINVAL', 'args must be an array');
  if (args.length > checks.length) throw new HypervisorError(call, 'EINVAL', `takes ${checks.length} arguments, got ${args.length}`);
  return checks.map((check, i) => check(args[i], `#${i}`, call));
}

export const createConfig = shape({
  handle: str,
  flags: u32,
  maxVcpus: int(1, 4096),
  maxEvtchnPort: optional(u32),
  maxGrantFrames: optional(u32),
  maxMaptrackFrames: optional(u32),
});

export const buildConfig = shape({
  type: oneOf('pv', 'pvh', 'hvm'),
  kernel: str,
  ramdisk: optional(str),
  cmdline: optional(str),
  memoryMib: int(1, 64 * 1024 * 1024),
  storePort: u32,
  consolePort: u32,
});

export const saveOptions = shape({
  live: (v, name, call) => (typeof v === 'boolean' ? v : bad(call, name, 'a boolean', v)),
  maxRounds: optional(int(1, 1000)),
  dirtyThreshold: optional(int(0, 1 << 30)),
});

export const restoreConfig = shape({ storePort: u32, consolePort: u32 });
