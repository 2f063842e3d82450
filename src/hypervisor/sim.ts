// The daemon's 'sim' hypervisor backend: the Hypervisor interface over the sim host's
// hypervisor socket (frames and messages: rpc-frames.ts).
//
// save/restore take an fd the daemon holds (a file, pipe or socket). The backend moves the
// stream between that fd and a second connection to the sim host (a "stream connection",
// see rpc-frames.ts): fds cannot be passed over a unix socket from Node, and this works for
// every kind of fd. The fd is read and written with fs.read/fs.write (retrying on EAGAIN for
// non-blocking fds) and is never closed here; restore reads exactly one libxc stream from it
// and not a byte more.
import { createConnection, type Socket } from 'node:net';
import {
  HypervisorError,
  type BuildConfig,
  type BuildResult,
  type CreateDomainConfig,
  type DomainInfo,
  type Hypervisor,
  type PhysInfo,
  type SaveCallbacks,
  type SaveOptions,
  type SaveStats,
  type ShadowOp,
  type ShadowResult,
  type XenVersion,
} from './types.js';
import { encodeFrame, FrameDecoder, FrameError, relayLibxcStream, type ClientMessage } from './rpc-frames.js';
import { isSocketError, readExactFd, writeAllFd, writeSocket } from './stream-io.js';

const STREAM_SETUP_TIMEOUT_MS = 10_000;

interface Pending {
  call: string;
  resolve(value: unknown): void;
  reject(err: Error): void;
  suspend?: () => Promise<void>;
  progress?: (sent: number, total: number, round: number) => void;
}

interface CallExtras {
  /** A call id reserved beforehand (save cancels its call when writing the fd fails). */
  id?: number;
  signal?: AbortSignal;
  suspend?: () => Promise<void>;
  progress?: (sent: number, total: number, round: number) => void;
}

/** Connects to a sim host's hypervisor socket and checks it answers. */
export async function connectSimHypervisor(socketPath: string): Promise<SimHypervisorBackend> {
  const backend = new SimHypervisorBackend(socketPath);
  await backend.version();
  return backend;
}

export class SimHypervisorBackend implements Hypervisor {
  readonly kind = 'sim' as const;
  private socket: Socket | undefined;
  private connecting: Promise<Socket> | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;

  constructor(readonly socketPath: string) {}

  version(): Promise<XenVersion> {
    return this.call('version', []) as Promise<XenVersion>;
  }

  physinfo(): Promise<PhysInfo> {
    return this.call('physinfo', []) as Promise<PhysInfo>;
  }

  createDomain(cfg: CreateDomainConfig): Promise<number> {
    return this.call('createDomain', [defined(cfg)]) as Promise<number>;
  }

  async setMaxVcpus(domid: number, max: number): Promise<void> {
    await this.call('setMaxVcpus', [domid, max]);
  }

  async setMaxMem(domid: number, maxKib: number): Promise<void> {
    await this.call('setMaxMem', [domid, maxKib]);
  }

  async build(domid: number, cfg: BuildConfig, signal?: AbortSignal): Promise<BuildResult> {
    return toBuildResult(await this.call('build', [domid, defined(cfg)], { signal }));
  }

  getDomainInfoList(firstDomid: number, max: number): Promise<DomainInfo[]> {
    return this.call('getDomainInfoList', [firstDomid, max]) as Promise<DomainInfo[]>;
  }

  async getDomainInfo(domid: number): Promise<DomainInfo | undefined> {
    return ((await this.call('getDomainInfo', [domid])) as DomainInfo | null) ?? undefined;
  }

  async pause(domid: number): Promise<void> {
    await this.call('pause', [domid]);
  }

  async unpause(domid: number): Promise<void> {
    await this.call('unpause', [domid]);
  }

  async shutdown(domid: number, reason: number): Promise<void> {
    await this.call('shutdown', [domid, reason]);
  }

  async destroy(domid: number): Promise<void> {
    await this.call('destroy', [domid]);
  }

  evtchnAllocUnbound(domid: number, remoteDomid: number): Promise<number> {
    return this.call('evtchnAllocUnbound', [domid, remoteDomid]) as Promise<number>;
  }

  shadowControl(domid: number, op: ShadowOp): Promise<ShadowResult> {
    return this.call('shadowControl', [domid, op]) as Promise<ShadowResult>;
  }

  async save(domid: number, fd: number, opts: SaveOptions, cb: SaveCallbacks): Promise<SaveStats> {
    const { socket, token, leftover } = await this.openStream();
    let pumpError: Error | undefined;
    // Only a failure to write the fd is the pump's own story; the stream connection closing early
    // means the server failed the save, and the call's error (which may arrive after the close) says why.
    let fdFailed = false;
    const toFd = async (chunk: Buffer): Promise<void> => {
      try {
        await writeAllFd(fd, chunk);
      } catch (err) {
        fdFailed = true;
        throw err;
      }
    };
    const callId = this.nextId++;
    const pump = (async () => {
      if (leftover.length > 0) await toFd(leftover);
      for await (const chunk of socket) await toFd(chunk as Buffer);
    })().catch((err: Error) => {
      pumpError = err;
      socket.destroy();
      this.cancel(callId);
    });
    try {
      const result = this.call('save', [domid, token, defined(opts)], {
        id: callId,
        signal: cb.signal,
        suspend: () => cb.suspend(),
        ...(cb.progress ? { progress: cb.progress } : {}),
      });
      const stats = (await result) as SaveStats;
      await pump;
      if (pumpError) throw pumpError;
      return stats;
    } catch (err) {
      socket.destroy();
      await pump;
      if (pumpError && fdFailed) throw new HypervisorError('save', 'EIO', `writing the stream to fd ${fd}: ${pumpError.message}`);
      throw err;
    }
  }

  async restore(domid: number, fd: number, cfg: { storePort: number; consolePort: number }, signal?: AbortSignal): Promise<BuildResult> {
    const { socket, token } = await this.openStream();
    const stopPump = new AbortController();
    let pumpError: Error | undefined;
    const pump = relayLibxcStream(
      (n) => readExactFd(fd, n, stopPump.signal),
      (chunk) => writeSocket(socket, chunk),
    ).then(
      () => {
        socket.end();
      },
      (err: Error) => {
        pumpError = err;
        socket.destroy();
      },
    );
    try {
      const result = await this.call('restore', [domid, token, { storePort: cfg.storePort, consolePort: cfg.consolePort }], { signal });
      await pump;
      return toBuildResult(result);
    } catch (err) {
      stopPump.abort();
      socket.destroy();
      await pump;
      // The server saw a cut stream (EIO) when the pump failed to read the fd: the pump's error says why.
      const serverSawCutStream = err instanceof HypervisorError && err.errno === 'EIO';
      if (pumpError && serverSawCutStream && !(pumpError instanceof HypervisorError) && !isSocketError(pumpError)) {
        throw new HypervisorError('restore', 'EINVAL', `reading the stream from fd ${fd}: ${pumpError.message}`);
      }
      throw err;
    }
  }

  /** Sim extra: xc_domain_resume of a domain shut down for suspend. */
  async resume(domid: number): Promise<void> {
    await this.call('resume', [domid]);
  }

  /** Sim extra: sha256 of the domain's memory (tests prove migrations byte-exact with it). */
  memoryChecksum(domid: number): Promise<string> {
    return this.call('memoryChecksum', [domid]) as Promise<string>;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.socket?.destroy();
    this.failAll('hypervisor backend closed');
  }

  // ─── plumbing ──────────────────────────────────────────────────────────────────────────────

  private call(call: string, args: unknown[], extras: CallExtras = {}): Promise<unknown> {
    if (this.closed) return Promise.reject(new HypervisorError(call, 'ESHUTDOWN', 'hypervisor backend closed'));
    if (extras.signal?.aborted) return Promise.reject(new HypervisorError(call, 'ECANCELED', 'aborted'));
    const id = extras.id ?? this.nextId++;
    return new Promise<unknown>((resolve, reject) => {
      const onAbort = (): void => this.cancel(id);
      extras.signal?.addEventListener('abort', onAbort, { once: true });
      const settle = <T>(fn: (v: T) => void) => (v: T): void => {
        extras.signal?.removeEventListener('abort', onAbort);
        this.pending.delete(id);
        fn(v);
      };
      this.pending.set(id, {
        call,
        resolve: settle(resolve),
        reject: settle(reject),
        ...(extras.suspend ? { suspend: extras.suspend } : {}),
        ...(extras.progress ? { progress: extras.progress } : {}),
      });
      this.connect().then(
        (socket) => socket.write(encodeFrame({ t: 'call', id, call, args } satisfies ClientMessage)),
        (err: Error) => this.pending.get(id)?.reject(new HypervisorError(call, 'ECONNREFUSED', `${this.socketPath}: ${err.message}`)),
      );
    });
  }

  private cancel(id: number): void {
    if (this.pending.has(id)) this.socket?.write(encodeFrame({ t: 'cancel', id } satisfies ClientMessage));
  }

  private connect(): Promise<Socket> {
    if (this.socket && !this.socket.destroyed) return Promise.resolve(this.socket);
    this.connecting ??= new Promise<Socket>((resolve, reject) => {
      const socket = createConnection(this.socketPath);
      const decoder = new FrameDecoder();
      socket.once('error', (err) => {
        this.connecting = undefined;
        reject(err);
      });
      socket.once('connect', () => {
        this.connecting = undefined;
        this.socket = socket;
        socket.on('error', () => undefined); // 'close' follows and fails what is pending
        resolve(socket);
      });
      socket.on('data', (chunk: Buffer) => {
        let values: unknown[];
        try {
          values = decoder.push(chunk);
        } catch {
          socket.destroy();
          return;
        }
        for (const value of values) if (!(value instanceof FrameError)) this.onMessage(socket, value);
      });
      socket.on('close', () => {
        if (this.socket === socket) this.socket = undefined;
        this.failAll('hypervisor socket closed');
      });
    });
    return this.connecting;
  }

  private failAll(why: string): void {
    for (const p of [...this.pending.values()]) p.reject(new HypervisorError(p.call, 'ECONNRESET', why));
  }

  private onMessage(socket: Socket, msg: unknown): void {
    if (typeof msg !== 'object' || msg === null) return;
    const m = msg as Record<string, any>;
    if (m['t'] === 'res') {
      const p = this.pending.get(m['id']);
      if (!p) return;
      if (m['error']) p.reject(new HypervisorError(m['error'].call ?? p.call, m['error'].errno ?? 'EIO', m['error'].detail));
      else p.resolve(m['ok']);
    } else if (m['t'] === 'cb') {
      const p = this.pending.get(m['call']);
      const answer = (reply: ClientMessage): void => {
        if (!socket.destroyed) socket.write(encodeFrame(reply));
      };
      if (!p?.suspend) {
        answer({ t: 'cbres', id: m['id'], error: `no ${String(m['name'])} callback for call ${String(m['call'])}` });
        return;
      }
      p.suspend().then(
        () => answer({ t: 'cbres', id: m['id'], ok: true }),
        (err: Error) => answer({ t: 'cbres', id: m['id'], error: err?.message ?? String(err) }),
      );
    } else if (m['t'] === 'progress') {
      this.pending.get(m['call'])?.progress?.(m['sent'], m['total'], m['round']);
    }
  }

  /** Opens a stream connection; resolves with its token and any raw bytes that came with it. */
  private openStream(): Promise<{ socket: Socket; token: string; leftover: Buffer }> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(this.socketPath);
      const decoder = new FrameDecoder();
      const timer = setTimeout(() => fail(new Error(`no stream token within ${STREAM_SETUP_TIMEOUT_MS} ms`)), STREAM_SETUP_TIMEOUT_MS);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        socket.destroy();
        reject(new HypervisorError('stream', 'ECONNREFUSED', `${this.socketPath}: ${err.message}`));
      };
      const onData = (chunk: Buffer): void => {
        let values: unknown[];
        try {
          values = decoder.push(chunk, (v) => (v as { t?: string })?.t === 'stream');
        } catch (err) {
          fail(err as Error);
          return;
        }
        const reply = values.find((v) => (v as { t?: string })?.t === 'stream') as { token?: string } | undefined;
        if (!reply) return;
        clearTimeout(timer);
        socket.off('data', onData);
        socket.off('error', fail);
        socket.off('close', onClose);
        // Errors of the stream connection surface through the call's result and the pump.
        socket.on('error', () => undefined);
        socket.pause();
        if (typeof reply.token !== 'string') return fail(new Error('stream reply without a token'));
        resolve({ socket, token: reply.token, leftover: decoder.takeRest() });
      };
      const onClose = (): void => fail(new Error('closed before the stream was set up'));
      socket.on('error', fail);
      socket.on('close', onClose);
      socket.on('data', onData);
      socket.once('connect', () => socket.write(encodeFrame({ t: 'stream' } satisfies ClientMessage)));
    });
  }
}

function toBuildResult(value: unknown): BuildResult {
  const v = value as { storeMfn: number; consoleMfn: number };
  return { storeMfn: BigInt(v.storeMfn), consoleMfn: BigInt(v.consoleMfn) };
}

/** The object without its undefined fields (the server refuses unknown or malformed fields). */
function defined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
