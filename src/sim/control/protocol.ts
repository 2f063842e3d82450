// The sim host's control RPC: requests {id, method, params}, answers {id, result} or {id, error}.
// One table of methods, shared by the server (src/sim/control/server.ts) and the client.

export interface ControlRequest {
  id: number;
  method: string;
  params?: Record<string, unknown>;
}

export interface ControlErrorBody {
  /** EINVAL (bad params), ENOSYS (unknown method), ESRCH (no such domain), EPROTO (bad frame), or a fault's errno. */
  code: string;
  message: string;
}

export type ControlResponse = { id: number; result: unknown } | { id: number | null; error: ControlErrorBody };

export type BackendFaultMode = 'fail' | 'hang' | 'close';
export type GuestFault = 'ignore-shutdown' | 'crash' | 'slow-boot';

export interface DomainStatus {
  domid: number;
  handle: string;
  state: 'running' | 'paused' | 'shutdown' | 'dying';
  shutdownReason?: number;
  totPages: number;
  maxPages: number;
  onlineVcpus: number;
  cpuTimeNs: number;
  /** Pages per second the guest writes while running. */
  dirtyRate: number;
  guest?: GuestStatus;
}

export interface GuestStatus {
  phase: 'waiting' | 'booting' | 'up' | 'stopped';
  ignoreShutdown: boolean;
  frontends: Record<string, number>;
}

export interface HostStatus {
  pid: number;
  dir: string;
  uptimeMs: number;
  pcpus: number;
  pageSize: number;
  totalPages: number;
  freePages: number;
  totalMib: number;
  freeMib: number;
  domains: DomainStatus[];
  backends: Record<string, { state: number; hotplug: string }>;
  faults: FaultStatus;
  xenstored?: unknown;
}

export interface FaultStatus {
  backends: Array<{ path: string; mode: BackendFaultMode; message?: string }>;
  guests: Array<{ domid: number | '*'; fault: GuestFault; delayMs?: number }>;
  xenstoredLatencyMs: number;
  hypercalls: Array<{ call: string; errno: string; times?: number }>;
}

/** What `console.read` answers for a domain. */
export interface ConsoleSnapshot {
  domid: number;
  /** The buffered output, oldest first (at most 64 KiB). */
  output: string;
  /** Bytes dropped from the front of the buffer (the cap was reached). */
  dropped: number;
  /** The socket console/tty names; absent while the console is not connected. */
  tty?: string;
  /** The log file; absent while the console is not connected. */
  logFile?: string;
}

/** Method name → params → result. The server validates params at run time; this is the client's typing. */
export interface ControlMethods {
  ping: { params: Record<string, never>; result: { pong: true; pid: number } };
  status: { params: Record<string, never>; result: HostStatus };
  /** domid omitted: every guest booted from now on. */
  'guest.fault': {
    params: { fault: GuestFault; domid?: number; on?: boolean; delayMs?: number };
    result: { ok: true };
  };
  /**
   * Fails the hotplug (mode fail), hangs (mode hang) or closes on probe with the reason in the error node (mode
   * close) every backend device whose path starts with path.
   */
  'backend.fault': { params: { path: string; mode: BackendFaultMode | 'none'; message?: string }; result: { ok: true } };
  'hypercall.fault': { params: { call: string; errno: string; times?: number }; result: { ok: true } };
  'xenstored.latency': { params: { ms: number }; result: { ok: true } };
  'host.memory': { params: { mib: number }; result: { ok: true } };
  'domain.dirtyRate': { params: { domid: number; pagesPerSec: number }; result: { ok: true } };
  'faults.clear': { params: Record<string, never>; result: { ok: true } };
  /**
   * The buffered console of a domain (the last 64 KiB it printed) and, once dom0's console daemon connected it, the
   * socket console/tty names and the log file. ESRCH when the domain has no console.
   */
  'console.read': { params: { domid: number }; result: ConsoleSnapshot };
  /** Stops the sim host (hard: exits at once as a crashed host would, leaving its sockets). */
  'host.kill': { params: { hard?: boolean }; result: { ok: true } };
}
export type ControlMethod = keyof ControlMethods;
