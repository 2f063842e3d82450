// TypeScript shapes of the API v1 records, kept by hand in step with schemas.ts (test/rpc/api-schemas.test.ts checks
// sample values of these types against the schemas).

export type Uuid = string;
export type DomainAction = 'destroy' | 'restart' | 'preserve';
export type PowerState = 'halted' | 'running' | 'paused' | 'suspended';
export type TaskState = 'pending' | 'running' | 'completed' | 'failed' | 'cancelled';
export type BackendName = 'sim' | 'xen';

export interface VbdSpec {
  device: string;
  path: string;
  mode?: 'ro' | 'rw';
  type?: 'disk' | 'cdrom';
}

export interface VifSpec {
  index?: number;
  mac?: string;
  bridge?: string;
  mtu?: number;
}

export interface VmSpec {
  id?: Uuid;
  name: string;
  type: 'pv' | 'pvh' | 'hvm';
  memory: { max_mib: number; target_mib?: number };
  vcpus: { max: number; online?: number };
  boot: { kernel: string; ramdisk?: string; cmdline?: string };
  vbds?: VbdSpec[];
  vifs?: VifSpec[];
  on_poweroff?: DomainAction;
  on_reboot?: DomainAction;
  on_crash?: DomainAction;
  xenstore_data?: Record<string, string>;
}

/** A VM spec as stored and returned by the daemon: the id is always set. */
export type StoredVmSpec = VmSpec & { id: Uuid };

export interface VmState {
  power_state: PowerState;
  domid?: number;
  memory_actual_mib?: number;
  vcpus_online?: number;
  cpu_time_s?: number;
  /** RFC 3339 UTC. */
  last_start?: string;
}

export interface ErrorObject {
  code: number;
  message: string;
  data?: { name: string; [key: string]: unknown };
}

export interface Subtask {
  name: string;
  state: TaskState;
}

export interface TaskRecord {
  id: string;
  method: string;
  vm?: Uuid;
  state: TaskState;
  /** 0..1 */
  progress: number;
  /** RFC 3339 UTC. */
  created: string;
  finished?: string;
  result?: unknown;
  error?: ErrorObject;
  subtasks: Subtask[];
}

export type UpdateKind = 'vm' | 'vbd' | 'vif' | 'task';
export interface Update {
  kind: UpdateKind;
  id: string;
}

export interface ApiVersionResult {
  api: string;
  daemon: string;
  backend: BackendName;
}

export interface HostStatResult {
  backend: BackendName;
  hypervisor_version: string;
  cpus: number;
  memory_total_mib: number;
  memory_free_mib: number;
  domain_count: number;
}

export interface VmWithState {
  vm: StoredVmSpec;
  state: VmState;
}

export interface TaskRef {
  task: string;
}

/** Params of each method (what a handler receives after validation). */
export interface MethodParams {
  'API.version': Record<string, never>;
  'HOST.stat': Record<string, never>;
  'VM.add': { vm: VmSpec };
  'VM.remove': { id: Uuid };
  'VM.list': Record<string, never>;
  'VM.stat': { id: Uuid };
  'VM.start': { id: Uuid; paused?: boolean };
  'VM.shutdown': { id: Uuid; mode?: 'clean' | 'hard'; timeout_s?: number; force?: boolean };
  'VM.reboot': { id: Uuid; mode?: 'clean' | 'hard'; timeout_s?: number; force?: boolean };
  'VM.pause': { id: Uuid };
  'VM.unpause': { id: Uuid };
  'VM.set_vcpus': { id: Uuid; online: number };
  'VM.set_memory': { id: Uuid; target_mib: number };
  'TASK.stat': { id: string };
  'TASK.wait': { id: string; timeout_s?: number };
  'TASK.cancel': { id: string };
  'TASK.list': Record<string, never>;
  'TASK.destroy': { id: string };
  'UPDATES.get': { from?: number; timeout_s?: number };
}

/** Result of each method. */
export interface MethodResults {
  'API.version': ApiVersionResult;
  'HOST.stat': HostStatResult;
  'VM.add': { id: Uuid };
  'VM.remove': Record<string, never>;
  'VM.list': { vms: VmWithState[] };
  'VM.stat': VmWithState;
  'VM.start': TaskRef;
  'VM.shutdown': TaskRef;
  'VM.reboot': TaskRef;
  'VM.pause': TaskRef;
  'VM.unpause': TaskRef;
  'VM.set_vcpus': TaskRef;
  'VM.set_memory': TaskRef;
  'TASK.stat': TaskRecord;
  'TASK.wait': TaskRecord;
  'TASK.cancel': Record<string, never>;
  'TASK.list': { tasks: TaskRecord[] };
  'TASK.destroy': Record<string, never>;
  'UPDATES.get': { updates: Update[]; next: number };
}

export type MethodName = keyof MethodParams;
