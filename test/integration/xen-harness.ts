// What the daemon's integration tests on a real Xen dom0 share: when they can run, `xl list` as the ground truth,
// xenstored's trace, and the daemon as a child process (`xenopsd-ng run --backend xen`) driven through its API.
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ApiClient } from '../../src/daemon/api-client.js';

export const onXen = existsSync('/dev/xen/privcmd') || existsSync('/proc/xen/privcmd');
export const kernel = process.env.XEN_TEST_KERNEL;
export const ramdisk = process.env.XEN_TEST_RAMDISK || undefined;
/** Why a test that boots a guest through the daemon cannot run here, or undefined when it can. */
export const skipGuestTests: string | undefined = !onXen
  ? 'not a Xen dom0 (no /dev/xen/privcmd or /proc/xen/privcmd)'
  : process.getuid?.() !== 0
    ? 'needs root in dom0'
    : !kernel || !existsSync(kernel)
      ? `XEN_TEST_KERNEL not set or missing (${kernel ?? 'unset'})`
      : undefined;

/** xenstored's trace (-T), as fixtures/nested-xen/dom0-suite.sh starts it; the request counts need it. */
export const TRACE = process.env.XENSTORED_TRACE ?? '/run/xenstored.trace';
/** Where xenconsoled --log=guest writes guest-<name>.log (dom0-suite.sh starts it so). */
export const CONSOLE_LOG_DIR = process.env.XEN_TEST_CONSOLE_LOG_DIR ?? '/var/log/xen/console';
export const OUT = process.env.XEN_TEST_OUT;

// Compiled (dist/test/integration/*.js) the daemon is dist/src/cli/xenopsd-ng.js; from source it runs under tsx.
const compiled = import.meta.filename.endsWith('.js');
export const ROOT = resolve(import.meta.dirname, '..', '..');
const daemonArgs = compiled ? [join(ROOT, 'src', 'cli', 'xenopsd-ng.js')] : ['--import', 'tsx', join(ROOT, 'src', 'cli', 'xenopsd-ng.ts')];

export interface TaskResult {
  state: string;
  error?: { message: string; data?: { name: string } };
}
export interface VmStat {
  state: { power_state: string; domid?: number; memory_actual_mib?: number; vcpus_online?: number };
}

export async function waitFor<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined | false>, everyMs = 100): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

export function xlList(): string {
  return execFileSync('xl', ['list'], { encoding: 'utf8', timeout: 30_000 });
}

/** Domain ids `xl list` shows. */
export function xlDomids(): number[] {
  return xlList()
    .split('\n')
    .slice(1)
    .map((l) => Number(l.trim().split(/\s+/)[1]))
    .filter((n) => Number.isInteger(n));
}

/** The State column of `xl list` for one domain ("r-----", "--p---", …), or undefined when it is not listed. */
export function xlState(domid: number): string | undefined {
  for (const line of xlList().split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (Number(cols[1]) === domid) return cols[4];
  }
  return undefined;
}

export function traceSize(): number | undefined {
  try {
    return statSync(TRACE).size;
  } catch {
    return undefined;
  }
}

export function traceSince(offset: number): string {
  const fd = openSync(TRACE, 'r');
  try {
    const size = statSync(TRACE).size;
    const buf = Buffer.alloc(Math.max(0, size - offset));
    let got = 0;
    while (got < buf.length) {
      const n = readSync(fd, buf, got, buf.length - got, offset + got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got).toString('latin1');
  } finally {
    closeSync(fd);
  }
}

/**
 * Requests xenstored received during a window of its trace: all of them, and those of the connection that introduced
 * domid (the daemon's; the same rule dom0-suite.sh applies to xl), by type.
 */
export function countRequests(trace: string, domid: number): { total: number; daemon: number; byType: Record<string, number> } | undefined {
  const lines = trace.split('\n').filter((l) => l.startsWith('IN '));
  const intro = lines.find((l) => new RegExp(` INTRODUCE \\(${domid} `).test(l));
  if (!intro) return undefined;
  const conn = intro.split(' ')[1]!;
  const mine = lines.filter((l) => l.split(' ')[1] === conn);
  const byType: Record<string, number> = {};
  for (const l of mine) {
    const type = /\s([A-Z_]+) \(/.exec(l)?.[1] ?? '?';
    byType[type] = (byType[type] ?? 0) + 1;
  }
  return { total: lines.length, daemon: mine.length, byType };
}

/** `xenopsd-ng run --backend xen` as a child process, with its API client and its log kept for failure messages. */
export class XenDaemon {
  private stderr = '';
  readonly api: ApiClient;
  readonly exited: Promise<number | string>;

  private constructor(
    readonly child: ChildProcess,
    readonly socket: string,
    readonly stateDir: string,
    logSoFar: string,
  ) {
    this.stderr = logSoFar;
    this.api = new ApiClient(socket);
    this.exited = new Promise((res) => {
      if (child.exitCode !== null || child.signalCode !== null) res(child.exitCode ?? child.signalCode ?? 'unknown');
      else child.once('exit', (code, sig) => res(code ?? sig ?? 'unknown'));
    });
    child.stderr!.on('data', (c: Buffer) => this.append(c.toString()));
  }

  /** Starts the daemon and resolves once it printed its ready line (a cold start under TCG takes seconds). */
  static async start(socket: string, stateDir: string, readyTimeoutMs = 120_000): Promise<XenDaemon> {
    const child = spawn(process.execPath, [...daemonArgs, 'run', '--backend', 'xen', '--socket', socket, '--state-dir', stateDir], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'debug' },
    });
    let early = '';
    const onErr = (c: Buffer) => (early += c.toString());
    child.stderr!.on('data', onErr);
    await new Promise<void>((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`daemon not ready in ${readyTimeoutMs} ms:\n${early.slice(-6000)}`)), readyTimeoutMs);
      let out = '';
      child.stdout!.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.includes('\n')) {
          clearTimeout(timer);
          res();
        }
      });
      child.once('exit', (code, sig) => {
        clearTimeout(timer);
        rej(new Error(`daemon exited (${code ?? sig}) before ready:\n${early.slice(-6000)}`));
      });
    });
    child.stderr!.off('data', onErr);
    return new XenDaemon(child, socket, stateDir, early);
  }

  private append(text: string): void {
    this.stderr += text;
    if (this.stderr.length > 4_000_000) this.stderr = this.stderr.slice(-2_000_000);
  }

  /** The whole log (JSON lines) as far as it was kept. */
  log(): string {
    return this.stderr;
  }

  /** Its last lines, for assertion messages. */
  tail(): string {
    return this.stderr.slice(-6000);
  }

  call<T>(method: string, params?: Record<string, unknown>, timeoutMs = 60_000): Promise<T> {
    return this.api.call<T>(method, params, timeoutMs);
  }

  async waitTask(task: string, timeoutS: number): Promise<TaskResult> {
    const r = await this.call<TaskResult>('TASK.wait', { id: task, timeout_s: timeoutS }, (timeoutS + 30) * 1000);
    assert.notEqual(r.state, 'pending', `task ${task} still running after ${timeoutS} s`);
    return r;
  }

  /** Runs an operation to its end and asserts it completed. */
  async run(method: string, params: Record<string, unknown>, timeoutS = 240): Promise<void> {
    const { task } = await this.call<{ task: string }>(method, params);
    const done = await this.waitTask(task, timeoutS);
    assert.equal(done.state, 'completed', `${method} ended ${done.state}: ${JSON.stringify(done.error)}\n${this.tail()}`);
  }

  /** SIGKILL, as a crashed daemon: no clean-up of its own. */
  async kill(): Promise<void> {
    this.api.close();
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }

  /** SIGTERM, then SIGKILL if it does not exit within 15 s. */
  async stop(): Promise<void> {
    this.api.close();
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 15_000);
    await this.exited;
    clearTimeout(timer);
  }
}
