// The TASK.* method handlers over a TaskEngine.
import { type Handler, typedMethods } from '../rpc/types.js';
import type { TaskEngine } from './engine.js';

export function taskMethods(engine: TaskEngine): Record<string, Handler> {
  return typedMethods({
    'TASK.stat': async (p) => engine.stat(p.id),
    'TASK.wait': async (p, ctx) => engine.wait(p.id, p.timeout_s, ctx.signal),
    'TASK.cancel': async (p) => {
      engine.cancel(p.id);
      return {};
    },
    'TASK.list': async () => ({ tasks: engine.list() }),
    'TASK.destroy': async (p) => {
      engine.destroy(p.id);
      return {};
    },
  });
}
