// The two xenstoreds the xenstore benchmark compares, each in its own process: the sim's standalone
// xenstored and Debian's C xenstored under the test LD_PRELOAD shim (no trace file: it would cost
// the C daemon a log line per message).
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startCXenstored } from '../../test/support/cxenstored/index.js';

export interface BenchServer {
  name: 'sim' | 'C';
  socketPath: string;
  pid: number;
  stop(): Promise<void>;
}

export async function startSimStandalone(dir: string, cwd: string): Promise<BenchServer> {
  mkdirSync(dir, { recursive: true });
  const socketPath = join(dir, 'socket');
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/sim/xenstored/standalone.ts', socketPath], {
    cwd,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('sim xenstored did not print "ready" within 20 s')), 20_000);
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      out += d;
      if (out.includes('ready ')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`sim xenstored exited (${code}) before listening`));
    });
  });
  return {
    name: 'sim',
    socketPath,
    pid: child.pid!,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

export async function startCStandalone(dir: string): Promise<BenchServer> {
  mkdirSync(dir, { recursive: true });
  const c = await startCXenstored({ dir, trace: false });
  return { name: 'C', socketPath: c.socketPath, pid: c.pid, stop: c.stop };
}
