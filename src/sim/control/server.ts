// The control socket of the sim host: fault injection and status for tests and `xenopsd-ng sim`.
// Every request gets exactly one answer; nothing a client sends can take the process down.
import net from 'node:net';
import type { Logger } from 'pino';
import { ControlFrameError, FrameReader, encodeFrame } from './framing.js';
import type { ControlResponse } from './protocol.js';

/** An error a handler throws to answer with a chosen code. */
export class ControlError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ControlError';
  }
}

export type ControlHandler = (params: Record<string, unknown>) => Promise<unknown> | unknown;

// --- parameter checks shared by the handlers -------------------------------------------------------------

export function intParam(params: Record<string, unknown>, name: string, opts: { min?: number; max?: number; optional?: boolean } = {}): number | undefined {
  const v = params[name];
  if (v === undefined && opts.optional) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new ControlError('EINVAL', `param '${name}' must be an integer, got ${describe(v)}`);
  if (opts.min !== undefined && v < opts.min) throw new ControlError('EINVAL', `param '${name}' must be >= ${opts.min}, got ${v}`);
  if (opts.max !== undefined && v > opts.max) throw new ControlError('EINVAL', `param '${name}' must be <= ${opts.max}, got ${v}`);
  return v;
}

export function strParam(params: Record<string, unknown>, name: string, opts: { optional?: boolean; oneOf?: readonly string[] } = {}): string | undefined {
  const v = params[name];
  if (v === undefined && opts.optional) return undefined;
  if (typeof v !== 'string' || v.length === 0) throw new ControlError('EINVAL', `param '${name}' must be a non-empty string, got ${describe(v)}`);
  if (opts.oneOf && !opts.oneOf.includes(v)) throw new ControlError('EINVAL', `param '${name}' must be one of ${opts.oneOf.join('|')}, got ${JSON.stringify(v)}`);
  return v;
}

export function boolParam(params: Record<string, unknown>, name: string, dflt: boolean): boolean {
  const v = params[name];
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') throw new ControlError('EINVAL', `param '${name}' must be a boolean, got ${describe(v)}`);
  return v;
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v);
  if (typeof v === 'object') return v === null ? 'null' : Array.isArray(v) ? 'an array' : 'an object';
  return `${typeof v} ${String(v)}`;
}

// --- the server ----------------------------------------------------------------------------------------

export class ControlServer {
  private server?: net.Server;
  private readonly sockets = new Set<net.Socket>();

  constructor(
    private readonly handlers: Record<string, ControlHandler>,
    private readonly log: Logger,
  ) {}

  listen(path: string): Promise<void> {
    const server = net.createServer((sock) => this.accept(sock));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        server.on('error', (err) => this.log.error({ err }, 'control socket error'));
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private accept(sock: net.Socket): void {
    this.sockets.add(sock);
    const reader = new FrameReader();
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', (err) => this.log.debug({ err }, 'control connection error'));
    sock.on('data', (chunk: Buffer) => {
      let frames: unknown[];
      try {
        frames = reader.push(chunk);
      } catch (err) {
        this.reply(sock, { id: null, error: { code: 'EPROTO', message: (err as Error).message } });
        sock.end();
        return;
      }
      for (const frame of frames) void this.handle(sock, frame);
    });
  }

  private reply(sock: net.Socket, res: ControlResponse): void {
    if (sock.destroyed || !sock.writable) return;
    let frame: Buffer;
    try {
      frame = encodeFrame(res);
    } catch (err) {
      frame = encodeFrame({ id: res.id, error: { code: 'EIO', message: `unencodable result: ${(err as Error).message}` } });
    }
    sock.write(frame);
  }

  private async handle(sock: net.Socket, frame: unknown): Promise<void> {
    if (frame instanceof ControlFrameError) {
      this.reply(sock, { id: null, error: { code: 'EPROTO', message: frame.message } });
      return;
    }
    if (typeof frame !== 'object' || frame === null || Array.isArray(frame)) {
      this.reply(sock, { id: null, error: { code: 'EINVAL', message: 'a request must be a map {id, method, params}' } });
      return;
    }
    const req = frame as Record<string, unknown>;
    const id = typeof req.id === 'number' && Number.isInteger(req.id) ? req.id : null;
    if (id === null) {
      this.reply(sock, { id: null, error: { code: 'EINVAL', message: "request 'id' must be an integer" } });
      return;
    }
    if (typeof req.method !== 'string') {
      this.reply(sock, { id, error: { code: 'EINVAL', message: "request 'method' must be a string" } });
      return;
    }
    const params = req.params ?? {};
    if (typeof params !== 'object' || params === null || Array.isArray(params)) {
      this.reply(sock, { id, error: { code: 'EINVAL', message: "request 'params' must be a map" } });
      return;
    }
    const handler = Object.prototype.hasOwnProperty.call(this.handlers, req.method) ? this.handlers[req.method] : undefined;
    if (!handler) {
      this.reply(sock, { id, error: { code: 'ENOSYS', message: `unknown method '${req.method}'` } });
      return;
    }
    try {
      const result = await handler(params as Record<string, unknown>);
      this.reply(sock, { id, result: result ?? null });
    } catch (err) {
      const code = err instanceof ControlError ? err.code : typeof (err as { errno?: unknown })?.errno === 'string' ? String((err as { errno: string }).errno) : 'EIO';
      const message = err instanceof Error ? err.message : String(err);
      if (!(err instanceof ControlError)) this.log.warn({ err, method: req.method }, 'control call failed');
      this.reply(sock, { id, error: { code, message } });
    }
  }
}
