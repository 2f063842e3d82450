// Client of the sim host's control socket (DIR/control.sock), shared by `xenopsd-ng sim` and tests.
import net from 'node:net';
import { join } from 'node:path';
import { FrameReader, encodeFrame } from './framing.js';
import type { ControlErrorBody, ControlMethod, ControlMethods, ControlResponse } from './protocol.js';

export class SimControlError extends Error {
  constructor(
    readonly code: string,
    readonly method: string,
    message: string,
  ) {
    super(`sim ${method}: ${code}: ${message}`);
    this.name = 'SimControlError';
  }
}

export function controlSocketPath(dir: string): string {
  return join(dir, 'control.sock');
}

export class SimControlClient {
  private nextId = 1;
  private readonly pending = new Map<number, { method: string; resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private closedError?: Error;

  private constructor(
    private readonly sock: net.Socket,
    private readonly timeoutMs: number,
  ) {
    const reader = new FrameReader();
    sock.on('data', (chunk: Buffer) => {
      let frames: unknown[];
      try {
        frames = reader.push(chunk);
      } catch (err) {
        this.failAll(err as Error);
        sock.destroy();
        return;
      }
      for (const f of frames) this.dispatch(f as ControlResponse);
    });
    sock.on('error', (err) => this.failAll(err));
    sock.on('close', () => this.failAll(new Error('control connection closed')));
  }

  /** Connects to a socket path, or to DIR/control.sock when given a directory with `{dir}`. */
  static connect(target: string | { dir: string }, opts: { timeoutMs?: number } = {}): Promise<SimControlClient> {
    const path = typeof target === 'string' ? target : controlSocketPath(target.dir);
    return new Promise((resolve, reject) => {
      const sock = net.createConnection(path);
      sock.once('error', reject);
      sock.once('connect', () => {
        sock.off('error', reject);
        resolve(new SimControlClient(sock, opts.timeoutMs ?? 10_000));
      });
    });
  }

  call<M extends ControlMethod>(method: M, params?: ControlMethods[M]['params']): Promise<ControlMethods[M]['result']>;
  call(method: string, params?: Record<string, unknown>): Promise<unknown>;
  call(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new SimControlError('ETIMEDOUT', method, `no answer within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.pending.set(id, { method, resolve, reject, timer });
      this.sock.write(encodeFrame({ id, method, params }));
    });
  }

  /** Sends raw bytes (for tests of bad input). */
  writeRaw(bytes: Buffer): void {
    this.sock.write(bytes);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.sock.destroyed) return resolve();
      this.sock.once('close', () => resolve());
      this.sock.end();
    });
  }

  private dispatch(res: ControlResponse): void {
    if (typeof res !== 'object' || res === null || typeof res.id !== 'number') {
      // An answer to no request (a protocol error reported by the server): fail the oldest call.
      const first = this.pending.keys().next();
      if (!first.done && 'error' in (res ?? {})) this.settle(first.value, res);
      return;
    }
    this.settle(res.id, res);
  }

  private settle(id: number, res: ControlResponse): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    if ('error' in res) {
      const e = res.error as ControlErrorBody;
      p.reject(new SimControlError(String(e?.code ?? 'EIO'), p.method, String(e?.message ?? 'unknown error')));
    } else p.resolve(res.result);
  }

  private failAll(err: Error): void {
    this.closedError ??= err;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.reject(err);
    }
  }
}
