// Application error codes of API v1 (1000-1099). Stable: a name keeps its code forever; new names take new codes.
import type { ErrorName } from './methods.js';

export const ERROR_CODES: Record<ErrorName, number> = {
  DOES_NOT_EXIST: 1000,
  ALREADY_EXISTS: 1001,
  BAD_POWER_STATE: 1002,
  CANCELLED: 1003,
  TIMEOUT: 1004,
  NOT_ENOUGH_MEMORY: 1005,
  DEVICE_BUSY: 1006,
  DEVICE_NOT_CONNECTED: 1007,
  BACKEND_ERROR: 1008,
  MIGRATION_FAILED: 1009,
  NOT_SUPPORTED: 1010,
  BAD_TASK_STATE: 1011,
  INTERNAL: 1099,
};
