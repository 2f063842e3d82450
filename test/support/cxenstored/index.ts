// Debian's real C xenstored as a userspace reference server for tests and benchmarks.
// An LD_PRELOAD shim (shim.c, built here with gcc into a per-content cache file) answers the few
// hypervisor calls xenstored makes, so `xenstored -N` listens on $XENSTORED_RUNDIR/socket with no Xen.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const XENSTORED_BIN = process.env.CXENSTORED_BIN ?? '/usr/lib/xen-4.17/bin/xenstored';
const SHIM_SOURCE = join(dirname(fileURLToPath(import.meta.url)), 'shim.c');
const CACHE_DIR = join(tmpdir(), 'xenopsd-ng-cxenstored');

export interface CXenstored {
  socketPath: string;
  /** xenstored's own trace of every message in and out (empty path when tracing is off). */
  tracePath: string;
  pid: number;
  /** What xenstored wrote to stderr so far (the first 64 KiB): its reason if it died. */
  stderr(): string;
  /** Exit code or signal once it exited, else undefined. */
  exitStatus(): number | string | undefined;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Run directory: holds the socket (and the trace). Must exist. */
  dir: string;
  /** Write xenstored's trace file (default true; off for benchmarks, it costs a log line per message). */
  trace?: boolean;
  /** Extra xenstored flags, e.g. ['-E', '2000'] for quotas. */
  args?: string[];
  /** Milliseconds to wait for the socket (default 5000). */
  timeoutMs?: number;
}

let shimPathMemo: string | undefined;
let availabilityMemo: { reason: string | undefined } | undefined;

/** Builds shim.c once per content into the cache dir; returns the .so path. Throws with gcc's message. */
export function buildShim(): string {
  if (shimPathMemo && existsSync(shimPathMemo)) return shimPathMemo;
  const source = readFileSync(SHIM_SOURCE);
  const hash = createHash('sha256').update(source).digest('hex').slice(0, 16);
  const out = join(CACHE_DIR, `shim-${hash}.so`);
  if (!existsSync(out)) {
    mkdirSync(CACHE_DIR, { recursive: true });
    // Build to a private name and rename: parallel test processes may build at the same time.
    const partial = `${out}.${process.pid}.tmp`;
    const gcc = spawnSync('gcc', ['-shared', '-fPIC', '-O2', '-Wall', '-o', partial, SHIM_SOURCE, '-ldl'], {
      encoding: 'utf8',
    });
    if (gcc.error) throw new Error(`gcc not runnable: ${gcc.error.message}`);
    if (gcc.status !== 0) throw new Error(`gcc failed to build ${SHIM_SOURCE}: ${gcc.stderr.trim()}`);
    renameSync(partial, out);
  }
  shimPathMemo = out;
  return out;
}

function xenstoredEnv(shim: string, dir: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, LD_PRELOAD: shim, XENSTORED_RUNDIR: dir };
  delete env.XENSTORED_PATH; // xenstored itself would listen there instead of dir/socket
  return env;
}

/**
 * Why the C xenstored cannot be used here (missing binary, missing gcc, shim does not build or
 * xenstored does not come up with it), or undefined when it can. For node:test's `skip`.
 */
export function cXenstoredAvailable(): string | undefined {
  if (availabilityMemo) return availabilityMemo.reason;
  const reason = probe();
  availabilityMemo = { reason };
  return reason;
}

function probe(): string | undefined {
  if (!existsSync(XENSTORED_BIN)) return `C xenstored not installed: ${XENSTORED_BIN} missing (package xen-utils-4.17)`;
  if (spawnSync('gcc', ['--version']).error) return 'gcc not installed (needed to build the xenstored LD_PRELOAD shim)';
  let shim: string;
  try {
    shim = buildShim();
  } catch (err) {
    return (err as Error).message;
  }
  // A successful probe is remembered per shim and binary, so only the first test process pays it.
  const marker = `${shim}.${statSync(XENSTORED_BIN).mtimeMs}.ok`;
  if (existsSync(marker)) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'cxenstored-probe-'));
  try {
    // -P prints the pid once domain and dom0 initialisation (the shimmed part) succeeded.
    const run = spawnSync(XENSTORED_BIN, ['-N', '-P'], {
      env: xenstoredEnv(shim, dir),
      encoding: 'utf8',
      timeout: 1500,
      killSignal: 'SIGKILL',
    });
    if (!/^\d+$/m.test(run.stdout ?? '')) {
      const why = (run.stderr ?? '').trim().split('\n').filter(Boolean).pop() ?? `exit status ${run.status}`;
      return `C xenstored does not start under the shim: ${why}`;
    }
    writeFileSync(marker, '');
    return undefined;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function canConnect(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(path);
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

/** Starts `xenstored -N [-T dir/trace]` under the shim and resolves once dir/socket accepts connections. */
export async function startCXenstored(opts: StartOptions): Promise<CXenstored> {
  const shim = buildShim();
  const socketPath = join(opts.dir, 'socket');
  const tracePath = opts.trace === false ? '' : join(opts.dir, 'trace');
  const args = ['-N', ...(tracePath ? ['-T', tracePath] : []), ...(opts.args ?? [])];
  const child: ChildProcess = spawn(XENSTORED_BIN, args, {
    env: xenstoredEnv(shim, opts.dir),
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => {
    if (stderr.length < 65536) stderr += d;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };

  const deadline = Date.now() + (opts.timeoutMs ?? 5000);
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`C xenstored exited (${child.exitCode ?? child.signalCode}) before listening: ${stderr.trim()}`);
    }
    if (existsSync(socketPath) && (await canConnect(socketPath))) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`C xenstored did not listen on ${socketPath} within ${opts.timeoutMs ?? 5000} ms: ${stderr.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    socketPath,
    tracePath,
    pid: child.pid!,
    stderr: () => stderr,
    exitStatus: () => child.exitCode ?? child.signalCode ?? undefined,
    stop,
  };
}
