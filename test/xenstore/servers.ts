// xenstored servers the client suite runs against, each in its own process (a libxenstore call is a blocking
// round trip, so the server must not share the client's thread): the sim xenstored's standalone entry, and
// Debian's C xenstored under the test LD_PRELOAD shim. Each can be restarted on the same socket path.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import net from 'node:net';
import { join, resolve } from 'node:path';
import { cXenstoredAvailable, startCXenstored, type CXenstored } from '../support/cxenstored/index.js';

export type ServerKind = 'sim' | 'cxenstored';

export interface ServerHandle {
  kind: ServerKind;
  path: string;
  /** Kills the server (as a crash would) and starts a fresh one on the same path. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

const REPO = resolve(import.meta.dirname, '..', '..');
const SIM_STANDALONE = join(REPO, 'src/sim/xenstored/standalone.ts');

/** Why `kind` cannot run here, or undefined. */
export function serverUnavailable(kind: ServerKind): string | undefined {
  if (kind === 'sim') return existsSync(SIM_STANDALONE) ? undefined : `sim xenstored standalone entry missing (${SIM_STANDALONE})`;
  return cXenstoredAvailable();
}

function canConnect(path: string): Promise<boolean> {
  return new Promise((res) => {
    const s = net.createConnection(path);
    s.once('connect', () => {
      s.destroy();
      res(true);
    });
    s.once('error', () => res(false));
  });
}

async function spawnSim(path: string): Promise<{ child: ChildProcess; exited: Promise<void> }> {
  rmSync(path, { force: true });
  const child = spawn(process.execPath, ['--import', 'tsx', SIM_STANDALONE, path], { cwd: REPO, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => {
    if (stderr.length < 65536) stderr += c.toString();
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`sim xenstored exited before listening: ${stderr.trim()}`);
    if (existsSync(path) && (await canConnect(path))) return { child, exited };
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`sim xenstored did not listen on ${path}: ${stderr.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

export async function startServer(kind: ServerKind, dir: string): Promise<ServerHandle> {
  if (kind === 'cxenstored') {
    let cx: CXenstored = await startCXenstored({ dir, trace: false });
    return {
      kind,
      path: cx.socketPath,
      async restart() {
        await cx.stop();
        cx = await startCXenstored({ dir, trace: false });
      },
      stop: () => cx.stop(),
    };
  }
  const path = join(dir, 'socket');
  let sim = await spawnSim(path);
  const kill = async () => {
    if (sim.child.exitCode === null && sim.child.signalCode === null) sim.child.kill('SIGKILL');
    await sim.exited;
  };
  return {
    kind,
    path,
    async restart() {
      await kill();
      sim = await spawnSim(path);
    },
    stop: kill,
  };
}
