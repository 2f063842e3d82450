// Test-only control socket (enabled by --test-hooks PATH): lets a test process set the task engine's cancel trigger,
// a self-SIGKILL at one (restart tests) or a plain Error thrown at one (internal-error tests), and read how many cancel
// points a task passed. One JSON request per line, one JSON answer per line.
// Never enabled in production; not part of API v1.
import { createServer, type Server } from 'node:net';
import { rm } from 'node:fs/promises';
import type { TaskEngine } from '../tasks/engine.js';

/** Which cancel point of which task a hook acts at (method/vm unset: any). */
interface PointMatch {
  at: number;
  method?: string;
  vm?: string;
}

type CancelPointInfo = Parameters<NonNullable<TaskEngine['onCancelPoint']>>[0];

function matches(m: PointMatch | undefined, info: CancelPointInfo): m is PointMatch {
  return !!m && info.point === m.at && (!m.method || info.method === m.method) && (!m.vm || info.vm === m.vm);
}

/** The match a killAt/failAt request asks for; undefined (clear) when it has no `at`. */
function pointMatch(req: { at?: unknown; method?: unknown; vm?: unknown }): PointMatch | undefined {
  if (req.at === undefined) return undefined;
  if (!Number.isInteger(req.at) || (req.at as number) < 0) throw new Error(`at must be an integer >= 0, got ${JSON.stringify(req.at)}`);
  for (const key of ['method', 'vm'] as const) {
    if (req[key] !== undefined && typeof req[key] !== 'string') throw new Error(`${key} must be a string`);
  }
  return { at: req.at as number, method: req.method as string | undefined, vm: req.vm as string | undefined };
}

export async function startTestHooks(path: string, engine: TaskEngine): Promise<Server> {
  await rm(path, { force: true });
  // killAt and failAt are independent: one engine callback serves both.
  let killAt: PointMatch | undefined;
  let failAt: PointMatch | undefined;
  engine.onCancelPoint = (info) => {
    // Dies as a crashed daemon would (SIGKILL, no clean-up).
    if (matches(killAt, info)) process.kill(process.pid, 'SIGKILL');
    if (matches(failAt, info)) {
      failAt = undefined; // one-shot, like the cancel trigger
      // Thrown out of the task's cancelPoint() call inside runAtoms' try: handled exactly as an atom that failed with
      // an unexpected bug (undo of the atoms done so far, then the task fails with INTERNAL). Deliberately not an
      // ApiError.
      throw new Error(`injected failure at point ${info.point}`);
    }
  };
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
            // SIGKILL when a matching task reaches cancel point `at`; no `at` clears it.
            killAt = pointMatch(req);
            answer = { ok: true };
          } else if (req.cmd === 'failAt') {
            // The next matching task throws a plain Error at cancel point `at` (one-shot); no `at` clears it.
            failAt = pointMatch(req);
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
