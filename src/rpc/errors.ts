// Errors of the API: ApiError carries a JSON-RPC error (code, message, data with a stable `name`). Handlers and tasks
// throw these; anything else that escapes a handler is reported as INTERNAL (and logged with its stack).
import { ERROR_CODES } from '../../api/v1/errors.js';
import type { ErrorName } from '../../api/v1/methods.js';
import type { ErrorObject } from '../../api/v1/types.js';

export { ERROR_CODES };
export type { ErrorName };

/** JSON-RPC 2.0 protocol error codes. */
export const RPC_PARSE_ERROR = -32700;
export const RPC_INVALID_REQUEST = -32600;
export const RPC_METHOD_NOT_FOUND = -32601;
export const RPC_INVALID_PARAMS = -32602;
export const RPC_INTERNAL_ERROR = -32603;

export class ApiError extends Error {
  readonly code: number;
  readonly data: { name: string; [key: string]: unknown };

  constructor(code: number, message: string, data: { name: string; [key: string]: unknown }) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.data = data;
  }

  /** The application error name (data.name), or the protocol error's. */
  get errorName(): string {
    return this.data.name;
  }

  toJSON(): ErrorObject {
    return { code: this.code, message: this.message, data: this.data };
  }
}

function app(name: ErrorName, message: string, extra: Record<string, unknown> = {}): ApiError {
  return new ApiError(ERROR_CODES[name], message, { name, ...extra });
}

/** Constructors, one per error name. `kind` is 'vm', 'task', 'vbd', ... */
export const Errors = {
  doesNotExist: (kind: string, id: string) => app('DOES_NOT_EXIST', `${kind} ${id} does not exist`, { kind, id }),
  alreadyExists: (kind: string, id: string) => app('ALREADY_EXISTS', `${kind} ${id} already exists`, { kind, id }),
  badPowerState: (actual: string, expected: string[]) =>
    app('BAD_POWER_STATE', `power state is ${actual}; this needs ${expected.join(' or ')}`, { actual, expected }),
  cancelled: (what = 'task') => app('CANCELLED', `${what} was cancelled`),
  timeout: (what: string, seconds: number) => app('TIMEOUT', `${what} did not happen within ${seconds} s`, { seconds }),
  notEnoughMemory: (neededMib: number, freeMib: number) =>
    app('NOT_ENOUGH_MEMORY', `needs ${neededMib} MiB, host has ${freeMib} MiB free`, { needed_mib: neededMib, free_mib: freeMib }),
  deviceBusy: (device: string, detail = 'in use') => app('DEVICE_BUSY', `device ${device} is busy: ${detail}`, { device }),
  deviceNotConnected: (device: string, detail?: string) =>
    app('DEVICE_NOT_CONNECTED', `device ${device} is not connected${detail ? `: ${detail}` : ''}`, { device, ...(detail ? { detail } : {}) }),
  backendError: (detail: string, extra: Record<string, unknown> = {}) =>
    app('BACKEND_ERROR', `backend error: ${detail}`, { detail, ...extra }),
  migrationFailed: (detail: string) => app('MIGRATION_FAILED', `migration failed: ${detail}`, { detail }),
  notSupported: (what: string) => app('NOT_SUPPORTED', `${what} is not supported`, { what }),
  badTaskState: (actual: string, expected: string[]) =>
    app('BAD_TASK_STATE', `task is ${actual}; this needs ${expected.join(' or ')}`, { actual, expected }),
  internal: (detail: string) => app('INTERNAL', `internal error: ${detail}`, { detail }),
};

/** The error of a failed task or a handler as an ApiError: ApiErrors pass through, anything else is INTERNAL. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return Errors.internal(message);
}

export function isCancelled(err: unknown): boolean {
  return err instanceof ApiError && err.data.name === 'CANCELLED';
}

/** A protocol-level error (negative code); data.name is the spec's name for it. */
export function protocolError(code: number, message: string, data: Record<string, unknown> = {}): ApiError {
  const names: Record<number, string> = {
    [RPC_PARSE_ERROR]: 'PARSE_ERROR',
    [RPC_INVALID_REQUEST]: 'INVALID_REQUEST',
    [RPC_METHOD_NOT_FOUND]: 'METHOD_NOT_FOUND',
    [RPC_INVALID_PARAMS]: 'INVALID_PARAMS',
    [RPC_INTERNAL_ERROR]: 'INTERNAL_ERROR',
  };
  return new ApiError(code, message, { name: names[code] ?? 'PROTOCOL_ERROR', ...data });
}
