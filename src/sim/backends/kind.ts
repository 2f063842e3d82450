// What differs between device types: the keys the kernel driver writes, what the hotplug script checks,
// when the backend may connect and which frontend keys it needs. src/sim/backends/device.ts runs the rest.
import type { XenbusState } from './xenbus.js';

/** Reads a key of the backend (or frontend) directory; undefined when absent. */
export type KeyReader = (key: string) => Promise<string | undefined>;

/** The hotplug script refused the device; message becomes `hotplug-error`. */
export class HotplugError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HotplugError';
  }
}

export interface BackendKind {
  readonly type: 'vbd' | 'vif';
  /** Keys the backend driver writes when it probes a new device, before it enters InitWait. */
  probeKeys(backend: KeyReader): Promise<Record<string, string>>;
  /** The hotplug script: checks the device parameters; returns the keys it writes, or throws HotplugError. */
  hotplug(backend: KeyReader): Promise<Record<string, string>>;
  /** Frontend states at which the backend connects. */
  readonly connectOn: readonly XenbusState[];
  /**
   * Checks what the frontend wrote (untrusted) and returns the keys the backend writes as it connects;
   * a string is the reason the backend refuses (it then goes to Closing, as xenbus_dev_fatal does).
   */
  connect(backend: KeyReader, frontend: KeyReader): Promise<Record<string, string> | string>;
}
