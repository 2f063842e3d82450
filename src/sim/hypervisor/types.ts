// The SimHypervisor's options, events and per-domain state report.

export interface SimHypervisorOptions {
  memoryMib?: number;
  pcpus?: number;
  dom0MemoryMib?: number;
  /** How long a destroyed domain stays dying before it is gone. */
  destroyDelayMs?: number;
  /** How long save waits, after the suspend callback, for the domain to shut down with reason suspend. */
  suspendTimeoutMs?: number;
  /** Monotonic clock in ms (tests may inject one). */
  now?: () => number;
}

export interface SimHypervisorEvents {
  domainCreated: [domid: number];
  /** build populated fresh memory: the guest boots when first unpaused. */
  built: [domid: number];
  /** restore read a saved guest in: when unpaused it carries on where it was saved, without booting. */
  restored: [domid: number];
  paused: [domid: number];
  unpaused: [domid: number];
  shutdown: [domid: number, reason: number];
  resumed: [domid: number];
  destroyed: [domid: number];
  domExc: [domid: number];
}

export interface SimDomainState {
  type: string | undefined;
  storePfn: number;
  consolePfn: number;
  storeMfn: number;
  consoleMfn: number;
  storePort: number;
  consolePort: number;
  evtchns: { port: number; remoteDomid: number }[];
  dirtyRate: number;
  touchedPages: number;
}
