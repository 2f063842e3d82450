// The method table of API v1: for each method, its params schema (always an object, by name, no unknown fields),
// its result schema, and whether it is asynchronous (returns {task} at once and runs on the task engine).
import {
  type JsonSchema,
  StoredVmSpec,
  Task,
  TaskId,
  Update,
  Uuid,
  VmSpec,
  VmState,
} from './schemas.js';

export const API_MAJOR = 1;
/** Bumped when v1 grows (a new method or a new optional field). */
export const API_MINOR = 0;
export const API_VERSION = `${API_MAJOR}.${API_MINOR}`;

/** Names of the application errors (data.name); codes in src/rpc/errors.ts. */
export type ErrorName =
  | 'DOES_NOT_EXIST'
  | 'ALREADY_EXISTS'
  | 'BAD_POWER_STATE'
  | 'CANCELLED'
  | 'TIMEOUT'
  | 'NOT_ENOUGH_MEMORY'
  | 'DEVICE_BUSY'
  | 'DEVICE_NOT_CONNECTED'
  | 'BACKEND_ERROR'
  | 'MIGRATION_FAILED'
  | 'NOT_SUPPORTED'
  | 'BAD_TASK_STATE'
  | 'INTERNAL';

export interface MethodSpec {
  summary: string;
  /** true: the method returns {task: id} at once; the work runs on the task engine. */
  async: boolean;
  params: JsonSchema;
  result: JsonSchema;
  /** Application errors the method (or its task) can report. */
  errors: ErrorName[];
}

function params(properties: Record<string, JsonSchema>, required: string[] = []): JsonSchema {
  return { type: 'object', additionalProperties: false, properties, required };
}
function record(properties: Record<string, JsonSchema>, required: string[] = Object.keys(properties)): JsonSchema {
  return { type: 'object', additionalProperties: false, properties, required };
}

const Empty = record({});
const TaskRef = record({ task: TaskId });
const VmIdParams = params({ id: Uuid }, ['id']);
const Timeout = { type: 'number', minimum: 0, maximum: 86400, description: 'seconds' };
const VmWithState = record({ vm: StoredVmSpec, state: VmState });
const ShutdownMode = { type: 'string', enum: ['clean', 'hard'], description: "default 'clean'" };
const Force = {
  type: 'boolean',
  description: 'clean mode: when the guest does not answer within timeout_s, destroy the domain (hard) instead of failing with TIMEOUT; default false',
};

const VM_OP_ERRORS: ErrorName[] = ['DOES_NOT_EXIST', 'BAD_POWER_STATE', 'CANCELLED', 'TIMEOUT', 'BACKEND_ERROR', 'INTERNAL'];

export const METHODS: Record<string, MethodSpec> = {
  'API.version': {
    summary: 'Versions of the API and the daemon, and which backend it drives',
    async: false,
    params: params({}),
    result: record({
      api: { type: 'string', pattern: '^1\\.[0-9]+$' },
      daemon: { type: 'string', minLength: 1 },
      backend: { type: 'string', enum: ['sim', 'xen'] },
    }),
    errors: [],
  },
  'HOST.stat': {
    summary: 'The host: backend, hypervisor version, CPUs, memory total/free (MiB), number of domains',
    async: false,
    params: params({}),
    result: record({
      backend: { type: 'string', enum: ['sim', 'xen'] },
      hypervisor_version: { type: 'string' },
      cpus: { type: 'integer', minimum: 0 },
      memory_total_mib: { type: 'integer', minimum: 0 },
      memory_free_mib: { type: 'integer', minimum: 0 },
      domain_count: { type: 'integer', minimum: 0 },
    }),
    errors: ['BACKEND_ERROR'],
  },
  'VM.add': {
    summary: 'Register a VM (metadata only; nothing runs). Returns its id (the given one or a new uuid)',
    async: false,
    params: params({ vm: VmSpec }, ['vm']),
    result: record({ id: Uuid }),
    errors: ['ALREADY_EXISTS'],
  },
  'VM.remove': {
    summary: 'Forget a halted VM',
    async: false,
    params: VmIdParams,
    result: Empty,
    errors: ['DOES_NOT_EXIST', 'BAD_POWER_STATE'],
  },
  'VM.list': {
    summary: 'Every VM with its state',
    async: false,
    params: params({}),
    result: record({ vms: { type: 'array', items: VmWithState } }),
    errors: [],
  },
  'VM.stat': {
    summary: 'One VM with its state',
    async: false,
    params: VmIdParams,
    result: VmWithState,
    errors: ['DOES_NOT_EXIST'],
  },
  'VM.start': {
    summary: 'Build and start a halted VM (left paused if paused is true)',
    async: true,
    params: params({ id: Uuid, paused: { type: 'boolean', description: 'default false' } }, ['id']),
    result: TaskRef,
    errors: [...VM_OP_ERRORS, 'NOT_ENOUGH_MEMORY', 'DEVICE_BUSY', 'DEVICE_NOT_CONNECTED', 'NOT_SUPPORTED'],
  },
  'VM.shutdown': {
    summary: "Shut a VM down: 'clean' asks the guest and waits up to timeout_s, 'hard' destroys the domain",
    async: true,
    params: params(
      { id: Uuid, mode: ShutdownMode, timeout_s: { ...Timeout, description: 'seconds the guest has to answer a clean shutdown' }, force: Force },
      ['id'],
    ),
    result: TaskRef,
    errors: VM_OP_ERRORS,
  },
  'VM.reboot': {
    summary: 'Reboot a VM (clean: ask the guest; hard: destroy and start again)',
    async: true,
    params: params({ id: Uuid, mode: ShutdownMode, timeout_s: Timeout, force: Force }, ['id']),
    result: TaskRef,
    errors: [...VM_OP_ERRORS, 'NOT_ENOUGH_MEMORY', 'DEVICE_BUSY', 'DEVICE_NOT_CONNECTED'],
  },
  'VM.pause': {
    summary: 'Pause a running VM',
    async: true,
    params: VmIdParams,
    result: TaskRef,
    errors: VM_OP_ERRORS,
  },
  'VM.unpause': {
    summary: 'Unpause a paused VM',
    async: true,
    params: VmIdParams,
    result: TaskRef,
    errors: VM_OP_ERRORS,
  },
  'VM.set_vcpus': {
    summary: 'Set the number of online vCPUs (1..vcpus.max)',
    async: true,
    params: params({ id: Uuid, online: { type: 'integer', minimum: 1, maximum: 512 } }, ['id', 'online']),
    result: TaskRef,
    errors: [...VM_OP_ERRORS, 'NOT_SUPPORTED'],
  },
  'VM.set_memory': {
    summary: 'Set the balloon target (MiB, at most memory.max_mib)',
    async: true,
    params: params({ id: Uuid, target_mib: { type: 'integer', minimum: 1, maximum: 16777216 } }, ['id', 'target_mib']),
    result: TaskRef,
    errors: [...VM_OP_ERRORS, 'NOT_ENOUGH_MEMORY'],
  },
  'TASK.stat': {
    summary: 'One task',
    async: false,
    params: params({ id: TaskId }, ['id']),
    result: Task,
    errors: ['DOES_NOT_EXIST'],
  },
  'TASK.wait': {
    summary: 'Wait until a task ends (or timeout_s passes) and return it',
    async: false,
    params: params({ id: TaskId, timeout_s: Timeout }, ['id']),
    result: Task,
    errors: ['DOES_NOT_EXIST'],
  },
  'TASK.cancel': {
    summary: 'Ask a task to stop; it undoes what it did and ends as cancelled (no-op on a finished task)',
    async: false,
    params: params({ id: TaskId }, ['id']),
    result: Empty,
    errors: ['DOES_NOT_EXIST'],
  },
  'TASK.list': {
    summary: 'Every task the daemon holds',
    async: false,
    params: params({}),
    result: record({ tasks: { type: 'array', items: Task } }),
    errors: [],
  },
  'TASK.destroy': {
    summary: 'Forget a finished task',
    async: false,
    params: params({ id: TaskId }, ['id']),
    result: Empty,
    errors: ['DOES_NOT_EXIST', 'BAD_TASK_STATE'],
  },
  'UPDATES.get': {
    summary:
      'Ids of objects that changed since `from` (long-poll up to timeout_s; coalesced; ids, not data). Pass the returned `next` as `from` next time',
    async: false,
    params: params({
      from: { type: 'integer', minimum: 0, description: 'default 0: every id the log holds' },
      timeout_s: { ...Timeout, maximum: 3600, description: 'seconds to wait when nothing changed; default 0' },
    }),
    result: record({ updates: { type: 'array', items: Update }, next: { type: 'integer', minimum: 0 } }),
    errors: [],
  },
};
