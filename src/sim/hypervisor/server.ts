// HypervisorServer: serves a SimHypervisor on a unix socket (DIR/hypervisor.sock) with the
// frames and messages of src/hypervisor/rpc-frames.ts. One connection may run many calls at
// once (save/restore are long); a bad frame or call gets an error reply, never a crash.
import { randomBytes } from 'node:crypto';
import { unlink } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { pino, type Logger } from 'pino';
import { HypervisorError, type SaveOptions } from '../../hypervisor/types.js';
import { encodeFrame, FrameDecoder, FrameError, STREAM_TOKEN_TTL_MS, type ServerMessage, type WireError } from '../../hypervisor/rpc-frames.js';
import type { SimHypervisor } from './index.js';
import { buildConfig, checkArgs, createConfig, domid, int, oneOf, restoreConfig, saveOptions, str, type Check } from './calls.js';

interface CallContext {
  conn: Connection;
  id: number;
  signal: AbortSignal;
}

interface CallSpec {
  args: Check[];
  run(hv: SimHypervisor, args: any[], ctx: CallContext): unknown;
}

export interface HypervisorServerOptions {
  logger?: Logger;
}

export class HypervisorServer {
  private server: Server | undefined;
  private readonly connections = new Set<Connection>();
  /** Stream connections waiting for the save/restore call that names their token. */
  private readonly streams = new Map<string, { socket: Socket; timer: NodeJS.Timeout }>();
  readonly log: Logger;
  private readonly calls: Record<string, CallSpec>;

  constructor(
    readonly hv: SimHypervisor,
    opts: HypervisorServerOptions = {},
  ) {
    this.log = opts.logger ?? pino({ level: 'silent' });
    this.calls = this.callTable();
  }

  async listen(socketPath: string): Promise<void> {
    await unlink(socketPath).catch(() => undefined); // the sim host's DIR lock guards against a live owner
    const server = createServer((socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.log.error({ err }, 'hypervisor socket error'));
  }

  async close(): Promise<void> {
    for (const conn of this.connections) conn.close();
    for (const { socket, timer } of this.streams.values()) {
      clearTimeout(timer);
      socket.destroy();
    }
    this.streams.clear();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private accept(socket: Socket): void {
    const conn = new Connection(this, socket);
    this.connections.add(conn);
    socket.on('close', () => this.connections.delete(conn));
  }

  /** Turns a fresh connection into a stream connection and returns its token. */
  registerStream(socket: Socket): string {
    // The Connection's error listener stays; a stream's errors reach save/restore as close/EPIPE.
    const token = randomBytes(16).toString('hex');
    const timer = setTimeout(() => {
      this.streams.delete(token);
      socket.destroy();
    }, STREAM_TOKEN_TTL_MS);
    timer.unref();
    this.streams.set(token, { socket, timer });
    socket.once('close', () => {
      clearTimeout(timer);
      this.streams.delete(token);
    });
    return token;
  }

  takeStream(call: string, token: string): Socket {
    const entry = this.streams.get(token);
    if (!entry) throw new HypervisorError(call, 'EINVAL', 'unknown or already used stream token');
    this.streams.delete(token);
    clearTimeout(entry.timer);
    return entry.socket;
  }

  dispatch(call: string, rawArgs: unknown, ctx: CallContext): unknown {
    const spec = Object.hasOwn(this.calls, call) ? this.calls[call] : undefined;
    if (!spec) throw new HypervisorError(call, 'ENOSYS', `unknown call ${JSON.stringify(call).slice(0, 80)}`);
    return spec.run(this.hv, checkArgs(call, rawArgs, spec.args), ctx);
  }

  private callTable(): Record<string, CallSpec> {
    return {
      version: { args: [], run: (hv) => hv.version() },
      physinfo: { args: [], run: (hv) => hv.physinfo() },
      createDomain: { args: [createConfig], run: (hv, [cfg]) => hv.createDomain(cfg) },
      setMaxVcpus: { args: [domid, int(0, 4096)], run: (hv, [d, n]) => hv.setMaxVcpus(d, n) },
      setMaxMem: { args: [domid, int(0, Number.MAX_SAFE_INTEGER)], run: (hv, [d, kib]) => hv.setMaxMem(d, kib) },
      build: {
        args: [domid, buildConfig],
        run: (hv, [d, cfg], ctx) => mfnsToWire(hv.build(d, cfg, ctx.signal)),
      },
      getDomainInfoList: { args: [domid, int(0, 1 << 16)], run: (hv, [first, max]) => hv.getDomainInfoList(first, max) },
      getDomainInfo: { args: [domid], run: (hv, [d]) => hv.getDomainInfo(d) ?? null },
      pause: { args: [domid], run: (hv, [d]) => hv.pause(d) },
      unpause: { args: [domid], run: (hv, [d]) => hv.unpause(d) },
      shutdown: { args: [domid, int(0, 255)], run: (hv, [d, reason]) => hv.shutdown(d, reason) },
      destroy: { args: [domid], run: (hv, [d]) => hv.destroy(d) },
      evtchnAllocUnbound: { args: [domid, domid], run: (hv, [d, remote]) => hv.evtchnAllocUnbound(d, remote) },
      shadowControl: {
        args: [domid, oneOf('enable_logdirty', 'off', 'peek', 'clean')],
        run: (hv, [d, op]) => hv.shadowControl(d, op),
      },
      save: {
        args: [domid, str, saveOptions],
        run: async (hv, [d, token, opts], ctx) => {
          const socket = this.takeStream('save', token);
          try {
            const stats = await hv.save(d, socket, opts as SaveOptions, {
              suspend: () => ctx.conn.callback(ctx.id, 'suspend', ctx.signal),
              progress: (sent, total, round) => ctx.conn.send({ t: 'progress', call: ctx.id, sent, total, round }),
              signal: ctx.signal,
            });
            await new Promise<void>((resolve) => socket.end(resolve));
            return stats;
          } catch (err) {
            socket.destroy();
            throw err;
          }
        },
      },
      restore: {
        args: [domid, str, restoreConfig],
        run: async (hv, [d, token, cfg], ctx) => {
          const socket = this.takeStream('restore', token);
          try {
            return mfnsToWire(await hv.restore(d, socket, cfg, ctx.signal));
          } finally {
            socket.destroy();
          }
        },
      },
      // Sim extras (not in the Hypervisor interface): tests and the daemon's sim tooling.
      resume: { args: [domid], run: (hv, [d]) => hv.resume(d) },
      memoryChecksum: { args: [domid], run: (hv, [d]) => hv.memoryChecksum(d) },
    };
  }
}

function mfnsToWire(result: { storeMfn: bigint; consoleMfn: bigint }): { storeMfn: number; consoleMfn: number } {
  return { storeMfn: Number(result.storeMfn), consoleMfn: Number(result.consoleMfn) };
}

function toWireError(err: unknown, call: string): WireError {
  if (err instanceof HypervisorError) {
    const detail = detailOf(err);
    return { call: err.call, errno: err.errno, ...(detail ? { detail } : {}) };
  }
  return { call, errno: 'EIO', detail: err instanceof Error ? err.message : String(err) };
}

function detailOf(err: HypervisorError): string {
  const prefix = `${err.call}: ${err.errno}`;
  const m = err.message.startsWith(prefix) ? err.message.slice(prefix.length).trim() : err.message;
  return m.startsWith('(') && m.endsWith(')') ? m.slice(1, -1) : m;
}

/** One client connection: a control connection, or (after { t:'stream' }) a raw stream. */
class Connection {
  private readonly decoder = new FrameDecoder();
  private readonly inflight = new Map<number, AbortController>();
  private readonly callbacks = new Map<number, { resolve: () => void; reject: (err: Error) => void }>();
  private nextCallbackId = 1;
  private closed = false;
  private readonly onData = (chunk: Buffer): void => this.receive(chunk);

  constructor(
    private readonly server: HypervisorServer,
    private readonly socket: Socket,
  ) {
    socket.on('data', this.onData);
    socket.on('error', (err) => server.log.debug({ err }, 'hypervisor connection error'));
    socket.on('close', () => this.close());
  }

  send(message: ServerMessage): void {
    if (this.closed || this.socket.destroyed) return;
    try {
      this.socket.write(encodeFrame(message));
    } catch (err) {
      this.server.log.error({ err }, 'unencodable reply');
    }
  }

  close(): void {
    if (this.closed) return;
    this.endCalls();
    this.socket.destroy();
  }

  /** No more frames on this connection: its calls are cancelled and its waiting callbacks fail. */
  private endCalls(): void {
    this.closed = true;
    for (const controller of this.inflight.values()) controller.abort();
    for (const cb of this.callbacks.values()) cb.reject(new HypervisorError('save', 'ECONNRESET', 'client went away during a callback'));
    this.callbacks.clear();
  }

  /** Asks the client to run a callback of call `callId`; resolves on its answer. */
  callback(callId: number, name: 'suspend', signal: AbortSignal): Promise<void> {
    if (this.closed) return Promise.reject(new HypervisorError('save', 'ECONNRESET', 'client went away'));
    const id = this.nextCallbackId++;
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.callbacks.delete(id);
        reject(new HypervisorError('save', 'ECANCELED', `${name} callback cancelled`));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.callbacks.set(id, {
        resolve: () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (err) => {
          signal.removeEventListener('abort', onAbort);
          reject(err);
        },
      });
      this.send({ t: 'cb', id, call: callId, name });
    });
  }

  private receive(chunk: Buffer): void {
    let values: unknown[];
    try {
      values = this.decoder.push(chunk, (v) => isObject(v) && v['t'] === 'stream');
    } catch (err) {
      // The byte stream cannot be resynchronised: say why, then end the connection and its calls
      // (a save waiting on this connection's suspend callback must not wait for ever).
      this.send({ t: 'error', error: { call: 'frame', errno: 'EPROTO', detail: (err as Error).message } });
      this.socket.end();
      this.endCalls();
      return;
    }
    for (const value of values) {
      if (value instanceof FrameError) {
        this.send({ t: 'error', error: { call: 'frame', errno: 'EPROTO', detail: value.message } });
        continue;
      }
      if (isObject(value) && value['t'] === 'stream') {
        this.becomeStream();
        return;
      }
      this.handle(value);
    }
  }

  private becomeStream(): void {
    if (this.inflight.size > 0) {
      this.send({ t: 'error', error: { call: 'stream', errno: 'EINVAL', detail: 'a connection with calls in flight cannot become a stream' } });
      return;
    }
    this.socket.off('data', this.onData);
    this.socket.pause();
    const rest = this.decoder.takeRest();
    if (rest.length > 0) this.socket.unshift(rest);
    this.closed = true; // no more frames on this connection: it belongs to the stream now
    const token = this.server.registerStream(this.socket);
    this.socket.write(encodeFrame({ t: 'stream', token } satisfies ServerMessage));
  }

  private handle(msg: unknown): void {
    if (!isObject(msg)) {
      this.send({ t: 'error', error: { call: 'frame', errno: 'EINVAL', detail: 'a message must be a map' } });
      return;
    }
    switch (msg['t']) {
      case 'call':
        this.startCall(msg);
        return;
      case 'cancel':
        if (typeof msg['id'] === 'number') this.inflight.get(msg['id'])?.abort();
        return;
      case 'cbres': {
        const cb = typeof msg['id'] === 'number' ? this.callbacks.get(msg['id']) : undefined;
        if (!cb) {
          this.send({ t: 'error', error: { call: 'cbres', errno: 'EINVAL', detail: `no callback ${String(msg['id'])} is waiting` } });
          return;
        }
        this.callbacks.delete(msg['id'] as number);
        if (msg['error'] !== undefined) cb.reject(new HypervisorError('save', 'EIO', `suspend callback failed: ${String(msg['error'])}`));
        else cb.resolve();
        return;
      }
      default:
        this.send({ t: 'error', error: { call: 'frame', errno: 'EINVAL', detail: `unknown message kind ${JSON.stringify(msg['t'])?.slice(0, 40)}` } });
    }
  }

  private startCall(msg: Record<string, unknown>): void {
    const id = msg['id'];
    const call = typeof msg['call'] === 'string' ? msg['call'] : '?';
    if (!Number.isSafeInteger(id) || (id as number) < 0) {
      this.send({ t: 'error', error: { call, errno: 'EINVAL', detail: 'call without a non-negative integer id' } });
      return;
    }
    const callId = id as number;
    if (this.inflight.has(callId)) {
      this.send({ t: 'res', id: callId, error: { call, errno: 'EEXIST', detail: `call id ${callId} is in flight` } });
      return;
    }
    const controller = new AbortController();
    this.inflight.set(callId, controller);
    const finish = (reply: ServerMessage): void => {
      this.inflight.delete(callId);
      this.send(reply);
    };
    try {
      if (typeof msg['call'] !== 'string') throw new HypervisorError('?', 'EINVAL', 'call must be a string');
      const result = this.server.dispatch(call, msg['args'] ?? [], { conn: this, id: callId, signal: controller.signal });
      Promise.resolve(result).then(
        (ok) => finish({ t: 'res', id: callId, ok: ok ?? null }),
        (err) => finish({ t: 'res', id: callId, error: this.wireError(err, call) }),
      );
    } catch (err) {
      finish({ t: 'res', id: callId, error: this.wireError(err, call) });
    }
  }

  private wireError(err: unknown, call: string): WireError {
    // A HypervisorError is an answer; anything else is a bug of the sim worth a log line.
    if (!(err instanceof HypervisorError)) this.server.log.error({ err, call }, 'hypervisor call failed unexpectedly');
    return toWireError(err, call);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
