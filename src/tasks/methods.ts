// The TASK.* method handlers over a TaskEngine.
import type { MethodParams } from '../../api/v1/types.js';
import type { Handler } from '../rpc/types.js';
import type { TaskEngine } from './engine.js';

export function taskMethods(engine: TaskEngine): Record<string, Handler> {
  return {
    'TASK.stat': async (p: MethodParams['TASK.stat']) => engine.stat(p.id),
    'TASK.wait': async (p: MethodParams['TASK.wait'], ctx) => engine.wait(p.id, p.timeout_s, ctx.signal),
    'TASK.cancel': async (p: MethodParams['TASK.cancel']) => {
      engine.cancel(p.id);
      return {};
    },
    'TASK.list': async () => ({ tasks: engine.list() }),
    'TASK.destroy': async (p: MethodParams['TASK.destroy']) => {
      engine.destroy(p.id);
      return {};
    },
  };
}
