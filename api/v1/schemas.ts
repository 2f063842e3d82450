// JSON Schemas (draft-07, compiled by ajv) of the records API v1 carries: the VM spec, the VM state, the task record,
// the update entry and the error object. Method params/results (methods.ts) are built from these.
// Rule for the whole API: every object that a client sends has `additionalProperties: false` (unknown fields are
// rejected, so a typo is an error and not a silently ignored setting); /v1 may only grow by new optional fields.

export type JsonSchema = Record<string, unknown>;

/** Lower-case canonical uuid: ids are compared as strings, so one spelling only. */
export const Uuid: JsonSchema = {
  type: 'string',
  pattern: '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$',
  description: 'lower-case uuid, e.g. 0b5f0f4e-3c7a-4e6e-9a55-7d1f6b1a2c3d',
};

export const TaskId: JsonSchema = { type: 'string', minLength: 1, maxLength: 64, description: 'task id' };

/** RFC 3339 timestamp, UTC, as produced by Date.prototype.toISOString(). */
export const Timestamp: JsonSchema = { type: 'string', minLength: 20, maxLength: 32, description: 'RFC 3339 UTC time' };

export const DomainAction: JsonSchema = { type: 'string', enum: ['destroy', 'restart', 'preserve'] };

export const PowerState: JsonSchema = { type: 'string', enum: ['halted', 'running', 'paused', 'suspended'] };

export const TaskState: JsonSchema = { type: 'string', enum: ['pending', 'running', 'completed', 'failed', 'cancelled'] };

export const VbdSpec: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['device', 'path'],
  properties: {
    device: { type: 'string', pattern: '^(xvd|hd|sd)[a-z]{1,2}$', description: 'guest device name, e.g. xvda' },
    path: { type: 'string', minLength: 1, maxLength: 4096, description: 'backing file or block device on the host' },
    mode: { type: 'string', enum: ['ro', 'rw'], description: "default 'rw'" },
    type: { type: 'string', enum: ['disk', 'cdrom'], description: "default 'disk'" },
  },
};

export const VifSpec: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    index: { type: 'integer', minimum: 0, maximum: 63, description: 'device index (position); default: list position' },
    mac: { type: 'string', pattern: '^[0-9a-f]{2}(:[0-9a-f]{2}){5}$', description: 'lower-case MAC; default: generated' },
    bridge: { type: 'string', minLength: 1, maxLength: 15, description: 'host bridge to attach to' },
    mtu: { type: 'integer', minimum: 68, maximum: 65535 },
  },
};

export const VmSpec: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'type', 'memory', 'vcpus', 'boot'],
  properties: {
    id: Uuid,
    name: { type: 'string', minLength: 1, maxLength: 255 },
    type: { type: 'string', enum: ['pv', 'pvh', 'hvm'] },
    memory: {
      type: 'object',
      additionalProperties: false,
      required: ['max_mib'],
      properties: {
        max_mib: { type: 'integer', minimum: 1, maximum: 16777216 },
        target_mib: { type: 'integer', minimum: 1, maximum: 16777216, description: 'default max_mib' },
      },
    },
    vcpus: {
      type: 'object',
      additionalProperties: false,
      required: ['max'],
      properties: {
        max: { type: 'integer', minimum: 1, maximum: 512 },
        online: { type: 'integer', minimum: 1, maximum: 512, description: 'default max' },
      },
    },
    boot: {
      type: 'object',
      additionalProperties: false,
      required: ['kernel'],
      properties: {
        kernel: { type: 'string', minLength: 1, maxLength: 4096 },
        ramdisk: { type: 'string', minLength: 1, maxLength: 4096 },
        cmdline: { type: 'string', maxLength: 4096 },
      },
    },
    vbds: { type: 'array', maxItems: 256, items: VbdSpec },
    vifs: { type: 'array', maxItems: 64, items: VifSpec },
    on_poweroff: DomainAction,
    on_reboot: DomainAction,
    on_crash: DomainAction,
    xenstore_data: {
      type: 'object',
      maxProperties: 1024,
      propertyNames: { type: 'string', minLength: 1, maxLength: 1024 },
      additionalProperties: { type: 'string', maxLength: 4096 },
    },
  },
};

/** A VM spec as the daemon returns it: same fields, `id` always present. */
export const StoredVmSpec: JsonSchema = { ...VmSpec, required: ['id', ...(VmSpec.required as string[])] };

export const VmState: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['power_state'],
  properties: {
    power_state: PowerState,
    domid: { type: 'integer', minimum: 0, maximum: 65535 },
    memory_actual_mib: { type: 'number', minimum: 0 },
    vcpus_online: { type: 'integer', minimum: 0 },
    cpu_time_s: { type: 'number', minimum: 0 },
    last_start: Timestamp,
  },
};

/** The error object of a failed task; the same shape as a JSON-RPC error. */
export const ErrorObject: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['code', 'message'],
  properties: {
    code: { type: 'integer' },
    message: { type: 'string' },
    data: { type: 'object', required: ['name'], properties: { name: { type: 'string' } } },
  },
};

export const Subtask: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'state'],
  properties: { name: { type: 'string' }, state: TaskState },
};

export const Task: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'method', 'state', 'progress', 'created', 'subtasks'],
  properties: {
    id: TaskId,
    method: { type: 'string' },
    vm: Uuid,
    state: TaskState,
    progress: { type: 'number', minimum: 0, maximum: 1 },
    created: Timestamp,
    finished: Timestamp,
    result: {},
    error: ErrorObject,
    subtasks: { type: 'array', items: Subtask },
  },
};

export const Update: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['kind', 'id'],
  properties: {
    kind: { type: 'string', enum: ['vm', 'vbd', 'vif', 'task'] },
    id: { type: 'string', minLength: 1 },
  },
};

/** Named records, emitted as components of the OpenRPC document (by object identity). */
export const COMPONENTS: Record<string, JsonSchema> = {
  Uuid,
  TaskId,
  Timestamp,
  PowerState,
  TaskState,
  DomainAction,
  VbdSpec,
  VifSpec,
  VmSpec,
  StoredVmSpec,
  VmState,
  ErrorObject,
  Subtask,
  Task,
  Update,
};
