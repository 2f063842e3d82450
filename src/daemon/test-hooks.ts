// Test-only control socket (enabled by --test-hooks PATH): lets a test process set the task engine's cancel trigger
// or a self-SIGKILL at one (restart tests), and read how many cancel points a task passed. One JSON request per line, one JSON answer per line.
// Never enabled in production; not part of API v1.
import { createServer, type Server } from 'node:net';
import { rm } from 'node:fs/promises';
import type { TaskEngine } from '../tasks/engine.js';

export async function startTestHooks(path: string, engine: TaskEngine): Promise<Server> {
  await rm(path, { force: true });
  const server = createServer((sock) => {
    let buf = '';
    sock.on('data', (chunk) => {
      buf += chunk.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let answer: unknown;
        try {
          const req = JSON.parse(line) as { cmd: string; at?: number; method?: string; vm?: string; task?: string };
          if (req.cmd === 'cancelAt') {
            engine.setCancelTrigger(req.at === undefined ? null : { at: req.at, method: req.method, vm: req.vm });
            answer = { ok: true };
          } else if (req.cmd === 'killAt') {
            // Dies as a crashed daemon would (SIGKILL, no clean-up) when a matching task reaches cancel point `at`.
            const { at, method, vm } = req;
            engine.onCancelPoint =
              at === undefined
                ? undefined
                : (info) => {
                    if (info.point === at && (!method || info.method === method) && (!vm || info.vm === vm)) process.kill(process.pid, 'SIGKILL');
                  };
            answer = { ok: true };
          } else if (req.cmd === 'cancelPoints') {
            answer = { ok: true, points: engine.cancelPointsSeen(req.task ?? '') };
          } else answer = { ok: false, error: `unknown cmd ${req.cmd}` };
        } catch (err) {
          answer = { ok: false, error: err instanceof Error ? err.message : String(err) };
        }
        sock.write(JSON.stringify(answer) + '\n');
      }
    });
    sock.on('error', () => {});
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  return server;
}
