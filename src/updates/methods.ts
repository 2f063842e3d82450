// The UPDATES.* method handlers over an UpdatesLog.
import { type Handler, typedMethods } from '../rpc/types.js';
import type { UpdatesLog } from './log.js';

export function updatesMethods(log: UpdatesLog): Record<string, Handler> {
  return typedMethods({
    'UPDATES.get': async (params, ctx) =>
      log.get({ from: params.from, timeoutS: params.timeout_s, signal: params.timeout_s ? ctx.signal : undefined }),
  });
}
