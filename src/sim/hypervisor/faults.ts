// Injected hypercall failures: "the next N calls of X fail with errno E" (or every call).
import { HypervisorError } from '../../hypervisor/types.js';

export const ERRNOS = ['ESRCH', 'EINVAL', 'ENOMEM', 'EEXIST', 'EBUSY', 'EPERM', 'EAGAIN', 'EIO', 'ENOSPC', 'EFAULT', 'EACCES'] as const;

export interface FaultSpec {
  /** The Hypervisor interface call name, e.g. 'createDomain', 'unpause', 'save'. */
  call: string;
  /** errno name, e.g. 'ENOMEM'. */
  errno: string;
  /** How many calls fail; undefined = every call until clearFaults(). */
  times?: number;
}

export class FaultTable {
  private faults: { call: string; errno: string; remaining: number }[] = [];

  inject(spec: FaultSpec): void {
    if (typeof spec.call !== 'string' || spec.call.length === 0) throw new TypeError('fault: call must be a non-empty string');
    if (!/^E[A-Z0-9]+$/.test(spec.errno)) throw new TypeError(`fault: errno ${JSON.stringify(spec.errno)} is not an errno name`);
    if (spec.times !== undefined && (!Number.isInteger(spec.times) || spec.times < 1)) {
      throw new TypeError(`fault: times must be a positive integer, got ${spec.times}`);
    }
    this.faults.push({ call: spec.call, errno: spec.errno, remaining: spec.times ?? Infinity });
  }

  clear(call?: string): void {
    this.faults = call === undefined ? [] : this.faults.filter((f) => f.call !== call);
  }

  list(): FaultSpec[] {
    return this.faults.map((f) => ({ call: f.call, errno: f.errno, ...(f.remaining === Infinity ? {} : { times: f.remaining }) }));
  }

  /** Throws the injected error if a fault matches `call` (consuming one use). */
  check(call: string): void {
    const index = this.faults.findIndex((f) => f.call === call);
    if (index < 0) return;
    const fault = this.faults[index]!;
    if (--fault.remaining <= 0) this.faults.splice(index, 1);
    throw new HypervisorError(call, fault.errno, 'injected fault');
  }
}
