// Starts a sim host (`xenopsd-ng sim-host --dir DIR`) as a separate process for tests, and waits for its
// ready line. Tests talk to it only through its sockets: xenstored, hypervisor, control.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export interface SimHostOptions {
  /** Use this directory instead of a fresh temp dir (it is then not removed by stop()). */
  dir?: string;
  memoryMib?: number;
  pcpus?: number;
  bootDelayMs?: number;
  /** More sim-host arguments. */
  args?: string[];
  /** Milliseconds to wait for the ready line (default 20 s). */
  readyTimeoutMs?: number;
  /** Forward the sim host's stderr (its logs) to this process's stderr. Default: only on failure to start. */
  verbose?: boolean;
}

export interface SimHostHandle {
  dir: string;
  pid: number;
  xenstoredPath: string;
  hypervisorPath: string;
  controlPath: string;
  /** The sim host's logs so far (stderr). */
  logs(): string;
  /** SIGTERM and wait for exit (removes the temp dir it made). Safe to call twice. */
  stop(): Promise<void>;
  /** SIGKILL and wait for exit: the host dies as a crashed host would. */
  kill(): Promise<void>;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  exited: Promise<number | string>;
  child: ChildProcess;
}

const REPO = resolve(import.meta.dirname, '..', '..');

export async function startSimHost(opts: SimHostOptions = {}): Promise<SimHostHandle> {
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'xsim-'));
  const args = ['--import', 'tsx', 'src/cli/xenopsd-ng.ts', 'sim-host', '--dir', dir];
  if (opts.memoryMib !== undefined) args.push('--memory-mib', String(opts.memoryMib));
  if (opts.pcpus !== undefined) args.push('--pcpus', String(opts.pcpus));
  if (opts.bootDelayMs !== undefined) args.push('--boot-delay-ms', String(opts.bootDelayMs));
  // If this test process dies, the host's stdin closes and it stops instead of lingering.
  args.push('--exit-on-stdin-close', ...(opts.args ?? []));
  const child = spawn(process.execPath, args, { cwd: REPO, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => {
    stderr += c.toString();
    if (stderr.length > 1_000_000) stderr = stderr.slice(-500_000);
    if (opts.verbose) process.stderr.write(c);
  });
  const exited = new Promise<number | string>((res) => child.once('exit', (code, sig) => res(code ?? sig ?? 'unknown')));

  const cleanup = (): void => {
    if (ownDir) rmSync(dir, { recursive: true, force: true });
  };
  const ready = await new Promise<Record<string, unknown>>((res, rej) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      rej(new Error(`sim host not ready within ${opts.readyTimeoutMs ?? 20_000} ms; stderr:\n${stderr}`));
    }, opts.readyTimeoutMs ?? 20_000);
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      try {
        res(JSON.parse(out.slice(0, nl)) as Record<string, unknown>);
      } catch {
        child.kill('SIGKILL');
        rej(new Error(`sim host printed a bad ready line: ${out.slice(0, nl)}`));
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      rej(new Error(`sim host exited (${code}) before ready; stderr:\n${stderr}`));
    });
  }).catch(async (err: unknown) => {
    await exited;
    cleanup();
    throw err;
  });

  const terminate = async (signal: NodeJS.Signals): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    const t = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
    cleanup();
  };
  return {
    dir,
    pid: child.pid!,
    xenstoredPath: String(ready.xenstored ?? join(dir, 'xenstored.sock')),
    hypervisorPath: String(ready.hypervisor ?? join(dir, 'hypervisor.sock')),
    controlPath: String(ready.control ?? join(dir, 'control.sock')),
    logs: () => stderr,
    stop: () => terminate('SIGTERM'),
    kill: () => terminate('SIGKILL'),
    exited,
    child,
  };
}
