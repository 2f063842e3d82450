// The daemon's side of the xen helper process (xen-helper/main.ts): spawns it, sends one request at a time,
// relays suspend and progress, and cancels by killing it. The daemon's event loop never waits on libxenguest.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Readable, Writable } from 'node:stream';
import { HypervisorError } from './types.js';
import {
  MessageSplitter,
  encodeMessage,
  type HelperEvent,
  type HelperRequest,
  type WireError,
} from './xen-helper/protocol.js';

export interface HelperCommand {
  /** Executable (default: this node). */
  execPath: string;
  args: string[];
  cwd: string;
}

export interface XenHelperOptions {
  libxenctrl?: string;
  libxenguest?: string;
  /** Override how the helper is started (tests use this to run a fake). */
  command?: HelperCommand;
  /** Extra environment for the helper. */
  env?: Record<string, string>;
}

/** node + the helper entry: the .ts source through tsx when running from source, the compiled .js otherwise. */
export function defaultHelperCommand(): HelperCommand {
  const here = fileURLToPath(import.meta.url);
  const fromSource = here.endsWith('.ts');
  const entry = join(dirname(here), 'xen-helper', fromSource ? 'main.ts' : 'main.js');
  // The project root: where node_modules (tsx, koffi) resolve from.
  let root = dirname(here);
  while (root !== dirname(root) && !existsSync(join(root, 'package.json'))) root = dirname(root);
  return {
    execPath: process.execPath,
    args: fromSource ? ['--import', 'tsx', entry] : [entry],
    cwd: resolve(root),
  };
}

export interface RunHandlers {
  onSuspend?: () => Promise<void>;
  onProgress?: (p: { round: number; sent: number; dirty: number }) => void;
  signal?: AbortSignal;
}

type RequestBody = HelperRequest extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

const STDERR_KEEP = 40;

export class XenHelper {
  private readonly child: ChildProcess;
  private nextId = 1;
  private current?: {
    id: number;
    op: string;
    resolve: (r: Record<string, string | number>) => void;
    reject: (e: Error) => void;
    handlers: RunHandlers;
  };
  private readonly ready: Promise<void>;
  private exited = false;
  private fatal?: HypervisorError;
  private readonly stderrTail: string[] = [];

  /** `streamFd`: a daemon fd the helper gets as its fd 4 (the migration stream of a save or restore). */
  constructor(opts: XenHelperOptions = {}, streamFd?: number) {
    const cmd = opts.command ?? defaultHelperCommand();
    const stdio: ('pipe' | 'ignore' | number)[] = ['pipe', 'pipe', 'pipe', 'pipe'];
    if (streamFd !== undefined) stdio.push(streamFd);
    this.child = spawn(cmd.execPath, cmd.args, {
      cwd: cmd.cwd,
      stdio,
      env: {
        ...process.env,
        ...(opts.libxenctrl ? { XENOPSD_LIBXENCTRL: opts.libxenctrl } : {}),
        ...(opts.libxenguest ? { XENOPSD_LIBXENGUEST: opts.libxenguest } : {}),
        ...opts.env,
      },
    });
    const events = this.child.stdio[3] as Readable;
    const splitter = new MessageSplitter<HelperEvent>(
      (ev) => this.onEvent(ev),
      (line) => this.keepStderr(`[bad event line] ${line}`),
    );
    events.setEncoding('utf8');
    events.on('data', (c: string) => splitter.push(c));
    const lineKeeper = () => {
      let partial = '';
      return (c: Buffer) => {
        const lines = (partial + c.toString('utf8')).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) if (line.trim()) this.keepStderr(line);
      };
    };
    this.child.stdout!.on('data', lineKeeper());
    this.child.stderr!.on('data', lineKeeper());
    (this.child.stdin as Writable).on('error', () => undefined); // EPIPE when it died: reported via 'exit'
    let markReady!: () => void;
    let failReady!: (e: Error) => void;
    this.ready = new Promise<void>((res, rej) => {
      markReady = res;
      failReady = rej;
    });
    this.ready.catch(() => undefined);
    this.onReady = markReady;
    this.onFatal = failReady;
    this.child.on('error', (err) => this.onExit(null, null, err));
    this.child.on('exit', (code, sig) => this.onExit(code, sig));
  }

  private onReady: () => void;
  private onFatal: (e: Error) => void;

  get pid(): number | undefined {
    return this.child.pid;
  }
  get busy(): boolean {
    return this.current !== undefined;
  }
  get alive(): boolean {
    return !this.exited;
  }

  private keepStderr(line: string): void {
    this.stderrTail.push(line);
    if (this.stderrTail.length > STDERR_KEEP) this.stderrTail.shift();
  }

  /** The helper's recent stderr (libxc's messages), for error details. */
  recentOutput(): string {
    return this.stderrTail.join('\n');
  }

  private wireToError(e: WireError): HypervisorError {
    const tail = this.stderrTail.slice(-8).join(' | ');
    const detail = [e.detail, tail && `helper output: ${tail}`].filter(Boolean).join('; ');
    const err = new HypervisorError(e.call, e.errno, detail || undefined);
    return err;
  }

  private onEvent(ev: HelperEvent): void {
    switch (ev.type) {
      case 'ready':
        this.onReady();
        return;
      case 'fatal':
        this.fatal = this.wireToError(ev.error);
        this.onFatal(this.fatal);
        this.current?.reject(this.fatal);
        this.current = undefined;
        return;
      case 'done':
        if (this.current?.id === ev.id) {
          const c = this.current;
          this.current = undefined;
          c.resolve(ev.result);
        }
        return;
      case 'failed':
        if (this.current && (this.current.id === ev.id || ev.id === -1)) {
          const c = this.current;
          this.current = undefined;
          c.reject(this.wireToError(ev.error));
        }
        return;
      case 'progress':
        if (this.current?.id === ev.id) this.current.handlers.onProgress?.(ev);
        return;
      case 'suspend':
        if (this.current?.id === ev.id) this.answerSuspend(ev.id, this.current.handlers);
        return;
    }
  }

  private answerSuspend(id: number, handlers: RunHandlers): void {
    const reply = (ok: boolean, message?: string) =>
      this.write({ type: 'suspended', id, ok, ...(message ? { message } : {}) });
    if (!handlers.onSuspend) return reply(false, 'no suspend handler');
    handlers.onSuspend().then(
      () => reply(true),
      (err: Error) => reply(false, err.message),
    );
  }

  private write(msg: HelperRequest): void {
    if (this.exited) return;
    (this.child.stdin as Writable).write(encodeMessage(msg));
  }

  private onExit(code: number | null, sig: NodeJS.Signals | null, err?: Error): void {
    if (this.exited) return;
    this.exited = true;
    const why = err ? err.message : sig ? `killed by ${sig}` : `exited with code ${code}`;
    const e = this.fatal ?? new HypervisorError('xen-helper', 'EPIPE', `helper process ${why}; output: ${this.recentOutput().slice(-500)}`);
    this.onFatal(e);
    if (this.current) {
      const c = this.current;
      this.current = undefined;
      c.reject(e);
    }
  }

  /** Sends one request and waits for its result. Aborting the signal kills the helper. */
  async run(body: RequestBody, handlers: RunHandlers = {}): Promise<Record<string, string | number>> {
    if (this.current) throw new HypervisorError(body.type, 'EBUSY', 'helper is already running an operation');
    if (handlers.signal?.aborted) throw new HypervisorError(body.type, 'ECANCELED', 'cancelled before start');
    await this.ready;
    const id = this.nextId++;
    return new Promise((resolvePromise, rejectPromise) => {
      const onAbort = () => {
        const c = this.current;
        this.current = undefined;
        this.kill();
        c?.reject(new HypervisorError(body.type, 'ECANCELED', 'cancelled: helper process killed'));
      };
      handlers.signal?.addEventListener('abort', onAbort, { once: true });
      const settle = () => handlers.signal?.removeEventListener('abort', onAbort);
      this.current = {
        id,
        op: body.type,
        resolve: (r) => {
          settle();
          resolvePromise(r);
        },
        reject: (e) => {
          settle();
          rejectPromise(e);
        },
        handlers,
      };
      if (this.exited) return this.current.reject(this.fatal ?? new HypervisorError(body.type, 'EPIPE', 'helper process is gone'));
      this.write({ ...body, id } as HelperRequest);
    });
  }

  /** Waits for the helper to have opened the hypervisor interface (or rejects with why it could not). */
  whenReady(): Promise<void> {
    return this.ready;
  }

  kill(): void {
    if (!this.exited) this.child.kill('SIGKILL');
  }

  /** Ends an idle helper politely: closing stdin makes it close its interface and exit. */
  close(): void {
    if (this.exited) return;
    (this.child.stdin as Writable).end();
    const t = setTimeout(() => this.kill(), 2000);
    t.unref();
    this.child.once('exit', () => clearTimeout(t));
  }
}
