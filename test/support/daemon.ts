// Starts the daemon (`xenopsd-ng run`) as a separate process on a sim host for tests; talks to it only through
// its API socket (and, when asked, the test-hooks socket).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ApiClient } from '../../src/daemon/api-client.js';

export interface DaemonOptions {
  simDir: string;
  /** Reuse a state dir (restart tests); default a fresh temp dir, removed by stop(). */
  stateDir?: string;
  /** API socket; default <stateDir>/../api.sock in a temp dir. */
  socketPath?: string;
  args?: string[];
  /** Open the test-hooks socket (cancel triggers). */
  testHooks?: boolean;
  readyTimeoutMs?: number;
  verbose?: boolean;
}

export interface DaemonHandle {
  pid: number;
  socketPath: string;
  stateDir: string;
  api: ApiClient;
  logs(): string;
  /** SIGTERM, wait for exit; removes the temp dirs it made unless keepState. */
  stop(opts?: { keepState?: boolean }): Promise<number | string>;
  /** SIGKILL, wait for exit; keeps the state dir (for restart tests). */
  kill(): Promise<void>;
  /** Sends one test-hooks command and returns its answer. */
  hook(cmd: Record<string, unknown>): Promise<Record<string, unknown>>;
  child: ChildProcess;
}

const REPO = resolve(import.meta.dirname, '..', '..');

export async function startDaemon(opts: DaemonOptions): Promise<DaemonHandle> {
  const tmp = mkdtempSync(join(tmpdir(), 'xd-'));
  const stateDir = opts.stateDir ?? join(tmp, 'state');
  const socketPath = opts.socketPath ?? join(tmp, 'api.sock');
  const hooksPath = join(tmp, 'hooks.sock');
  const args = ['--import', 'tsx', 'src/cli/xenopsd-ng.ts', 'run', '--backend', 'sim', '--sim-dir', opts.simDir];
  args.push('--socket', socketPath, '--state-dir', stateDir);
  if (opts.testHooks) args.push('--test-hooks', hooksPath);
  args.push(...(opts.args ?? []));
  const child = spawn(process.execPath, args, {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'debug' },
  });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => {
    stderr += c.toString();
    if (stderr.length > 4_000_000) stderr = stderr.slice(-2_000_000);
    if (opts.verbose) process.stderr.write(c);
  });
  const exited = new Promise<number | string>((res) => child.once('exit', (code, sig) => res(code ?? sig ?? 'unknown')));
  await new Promise<void>((res, rej) => {
    let out = '';
    const limit = opts.readyTimeoutMs ?? 20_000;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      rej(new Error(`daemon not ready within ${limit} ms; stderr:\n${stderr.slice(-5000)}`));
    }, limit);
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('\n')) {
        clearTimeout(timer);
        res();
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      rej(new Error(`daemon exited (${code}) before ready; stderr:\n${stderr.slice(-5000)}`));
    });
  });
  const api = new ApiClient(socketPath);
  let cleaned = false;
  const cleanup = (keepState: boolean) => {
    if (cleaned) return;
    cleaned = true;
    api.close();
    if (!keepState && opts.stateDir === undefined) rmSync(tmp, { recursive: true, force: true });
  };
  return {
    pid: child.pid!,
    socketPath,
    stateDir,
    api,
    child,
    logs: () => stderr,
    async stop({ keepState = false } = {}) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(timer);
      cleanup(keepState);
      return code;
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      cleanup(true);
    },
    hook(cmd) {
      return new Promise((res, rej) => {
        const sock = createConnection(hooksPath);
        let buf = '';
        sock.on('data', (c) => {
          buf += c.toString();
          if (buf.includes('\n')) {
            sock.end();
            res(JSON.parse(buf.slice(0, buf.indexOf('\n'))) as Record<string, unknown>);
          }
        });
        sock.on('error', rej);
        sock.write(JSON.stringify(cmd) + '\n');
      });
    },
  };
}
