// The UPDATES.* method handlers over an UpdatesLog.
import type { Handler } from '../rpc/types.js';
import type { MethodParams } from '../../api/v1/types.js';
import type { UpdatesLog } from './log.js';

export function updatesMethods(log: UpdatesLog): Record<string, Handler> {
  return {
    'UPDATES.get': async (params: MethodParams['UPDATES.get'], ctx) =>
      log.get({ from: params.from, timeoutS: params.timeout_s, signal: params.timeout_s ? ctx.signal : undefined }),
  };
}
