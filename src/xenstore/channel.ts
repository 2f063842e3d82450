// One logical connection to xenstored: sends request frames, matches replies by req_id (many in flight),
// enforces per-call timeouts and AbortSignals, and reconnects with backoff when the stream closes.
// It knows nothing of individual operations; client.ts builds frames and parses payloads.
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { Decoder, FrameError, MsgType, type Message } from './wire.js';
import { XsError, XsTimeoutError, type CallOptions } from './types.js';
import { XsConnectionError, XsProtocolError, abortReason } from './errors.js';
import { buildFrame } from './frame.js';

const STABLE_CONNECTION_MS = 1000;

export interface ReconnectPolicy {
  /** First wait after a failed attempt (ms). */
  minDelayMs: number;
  /** Cap of the doubling wait (ms). */
  maxDelayMs: number;
}

export interface ChannelOptions {
  /** Opens a connected stream (a unix socket, or any Duplex such as the sim's per-domain connections). */
  open: () => Promise<Duplex>;
  /** Where the stream goes, for messages. */
  describe: string;
  timeoutMs: number;
  reconnect: ReconnectPolicy | false;
  logger?: Logger;
  onWatchEvent: (path: string, token: string) => void;
  /** After a reconnection, before queued requests are sent: re-register watches here. */
  onReconnected: () => void;
  /** The connection is gone for good (closed by us, or lost with reconnection disabled). */
  onClosed: (err: Error) => void;
}

/** One outstanding request. A class (not a closure bundle) so the hot path allocates one object. */
class Pending {
  sent = false;
  onAbort: (() => void) | undefined = undefined;
  constructor(
    readonly reqId: number,
    readonly type: MsgType,
    readonly txGeneration: number, // 0 when outside a transaction
    readonly frame: Buffer,
    readonly op: string,
    readonly path: string | undefined,
    readonly deadline: number,
    readonly timeoutMs: number,
    readonly resolve: (value: any) => void,
    readonly reject: (err: Error) => void,
    readonly signal: AbortSignal | undefined,
    /** Turns the reply payload into the call's result inside the dispatch: no extra promise per call. */
    readonly parse: ((payload: Buffer) => unknown) | undefined,
  ) {}
}

export class Channel {
  private stream: Duplex | undefined;
  private decoder = new Decoder();
  private readonly pending = new Map<number, Pending>();
  private nextReqId = 1;
  private out: Buffer[] = [];
  private flushScheduled = false;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private timerRefed = false;
  private closing = false;
  private reconnecting = false;
  /** TRANSACTION_START requests abandoned (timeout/abort) whose transaction must be ended if it was created. */
  private abandonedTxStarts = new Set<number>();
  /** Bumped on every (re)connection; transactions remember the generation they were opened in. */
  generation = 0;
  private connectedAt = 0;
  private closedReason = 'client is closed';
  private lastDelay = 0;

  constructor(private readonly opts: ChannelOptions) {}

  get connected(): boolean {
    return this.stream !== undefined;
  }

  /** First connection: failures are thrown, not retried. */
  async start(): Promise<void> {
    const s = await this.opts.open();
    this.attach(s);
  }

  /**
   * Sends a frame (built with req_id 0) and resolves with the reply payload. `txGeneration` is the generation of
   * the transaction the request belongs to (0 outside transactions): such a request cannot survive a reconnection.
   */
  request<T = Buffer>(
    type: MsgType,
    txGeneration: number,
    frame: Buffer,
    op: string,
    path: string | undefined,
    opts: CallOptions | undefined,
    parse?: (payload: Buffer) => T,
  ): Promise<T> {
    if (this.closing) return Promise.reject(new XsConnectionError(op, path, this.closedReason));
    const signal = opts?.signal;
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    if (txGeneration !== 0 && txGeneration !== this.generation) {
      return Promise.reject(new XsConnectionError(op, path, 'transaction lost: the connection to xenstored was reset'));
    }
    const reqId = this.nextReqId;
    this.nextReqId = reqId >= 0xfffffffe ? 1 : reqId + 1;
    frame.writeUInt32LE(reqId, 4);
    const timeoutMs = opts?.timeoutMs ?? this.opts.timeoutMs;
    const deadline = Date.now() + timeoutMs;
    return new Promise<T>((resolve, reject) => {
      const p = new Pending(reqId, type, txGeneration, frame, op, path, deadline, timeoutMs, resolve, reject, signal, parse);
      if (signal) {
        p.onAbort = () => this.abandon(p, abortReason(signal));
        signal.addEventListener('abort', p.onAbort, { once: true });
      }
      this.pending.set(reqId, p);
      if (deadline < this.timerAt) this.armTimer(deadline);
      else if (!this.timerRefed) {
        this.timer!.ref();
        this.timerRefed = true;
      }
      if (this.stream) {
        p.sent = true;
        this.enqueue(frame);
      }
    });
  }

  /** Sends a frame whose reply nobody waits for (aborting a leaked transaction). */
  private fireAndForget(frame: Buffer): void {
    if (!this.stream) return;
    frame.writeUInt32LE(0, 4);
    this.enqueue(frame);
  }

  private enqueue(frame: Buffer): void {
    this.out.push(frame);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // nextTick runs after the current microtask queue drains, so requests issued by a burst of reply
      // continuations leave in one write.
      process.nextTick(this.flush);
    }
  }

  private flush = (): void => {
    this.flushScheduled = false;
    const out = this.out;
    if (out.length === 0 || !this.stream) return;
    this.out = [];
    this.stream.write(out.length === 1 ? out[0]! : Buffer.concat(out));
  };

  private settle(p: Pending): void {
    this.pending.delete(p.reqId);
    if (p.onAbort) p.signal!.removeEventListener('abort', p.onAbort);
    // An idle client must not hold the process open until a stale deadline (cheaper than clearing the timer).
    if (this.pending.size === 0 && this.timerRefed) {
      this.timer?.unref();
      this.timerRefed = false;
    }
  }

  private abandon(p: Pending, err: Error): void {
    if (this.pending.get(p.reqId) !== p) return;
    this.settle(p);
    if (p.type === MsgType.TRANSACTION_START && p.sent) this.abandonedTxStarts.add(p.reqId);
    p.reject(err);
  }

  private armTimer(at: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    // Referenced while calls are outstanding: they keep the process alive, as pending I/O does (an in-process
    // Duplex holds no handle of its own).
    this.timer = setTimeout(this.onTimer, Math.max(0, at - Date.now()));
    this.timerRefed = true;
    if (this.pending.size === 0) {
      this.timer.unref();
      this.timerRefed = false;
    }
  }

  /** One timer for all calls: expire what is due, re-arm for the earliest remaining deadline. */
  private onTimer = (): void => {
    this.timer = undefined;
    this.timerAt = Infinity;
    this.timerRefed = false;
    const now = Date.now();
    let next = Infinity;
    for (const p of this.pending.values()) {
      if (p.deadline <= now) this.abandon(p, new XsTimeoutError(p.path !== undefined ? `${p.op} ${p.path}` : p.op, p.timeoutMs));
      else if (p.deadline < next) next = p.deadline;
    }
    if (next !== Infinity) this.armTimer(next);
  };

  private attach(s: Duplex): void {
    this.stream = s;
    this.connectedAt = Date.now();
    this.decoder = new Decoder();
    this.generation++;
    s.on('data', (chunk: Buffer) => {
      if (this.stream !== s) return;
      let msgs: Message[];
      try {
        msgs = this.decoder.push(chunk);
      } catch (e) {
        // A corrupt stream cannot be resynchronised: drop the connection (and reconnect).
        this.opts.logger?.error({ err: e, socket: this.opts.describe }, 'xenstore: bad frame from server, dropping connection');
        s.destroy(e instanceof FrameError ? e : undefined);
        return;
      }
      for (let i = 0; i < msgs.length; i++) this.dispatch(msgs[i]!);
    });
    s.on('error', (err) => {
      this.opts.logger?.debug({ err, socket: this.opts.describe }, 'xenstore: stream error');
    });
    s.on('close', () => this.onStreamClosed(s));
    // A half-closed peer will not answer: treat the end of its side as the end of the connection.
    s.on('end', () => s.destroy());
  }

  private dispatch(msg: Message): void {
    if (msg.type === MsgType.WATCH_EVENT) {
      const nul = msg.payload.indexOf(0);
      if (nul < 0) return;
      const path = msg.payload.toString('utf8', 0, nul);
      const end = msg.payload.indexOf(0, nul + 1);
      const token = msg.payload.toString('utf8', nul + 1, end < 0 ? msg.payload.length : end);
      this.opts.onWatchEvent(path, token);
      return;
    }
    const p = this.pending.get(msg.reqId);
    if (!p) {
      if (this.abandonedTxStarts.delete(msg.reqId) && msg.type === MsgType.TRANSACTION_START) {
        const id = Number.parseInt(msg.payload.toString('latin1'), 10);
        if (Number.isInteger(id) && id > 0) this.fireAndForget(buildFrame(MsgType.TRANSACTION_END, id, 'transaction_end', 'F'));
      }
      return;
    }
    this.settle(p);
    if (msg.type === MsgType.ERROR) {
      p.reject(new XsError(errnoOf(msg.payload), p.op, p.path));
    } else if (msg.type !== p.type) {
      p.reject(new XsProtocolError(p.op, p.path, `reply of type ${msg.type} to a request of type ${p.type}`));
    } else if (p.parse === undefined) {
      p.resolve(msg.payload);
    } else {
      let value: unknown;
      try {
        value = p.parse(msg.payload);
      } catch (e) {
        p.reject(e as Error);
        return;
      }
      p.resolve(value);
    }
  }

  private onStreamClosed(s: Duplex): void {
    if (this.stream !== s) return;
    this.stream = undefined;
    this.out = [];
    this.abandonedTxStarts.clear();
    // Requests already on the wire may or may not have been applied: fail them rather than guess.
    for (const p of [...this.pending.values()]) {
      if (p.sent) {
        this.settle(p);
        p.reject(new XsConnectionError(p.op, p.path, this.closing ? 'client closed' : 'connection to xenstored lost'));
      }
    }
    if (this.closing) return;
    if (this.opts.reconnect === false) {
      this.failAll('connection to xenstored lost');
      this.closing = true;
      this.closedReason = 'connection to xenstored lost (reconnection disabled)';
      this.opts.onClosed(new Error(`connection to xenstored at ${this.opts.describe} lost`));
      return;
    }
    this.opts.logger?.warn({ socket: this.opts.describe }, 'xenstore: connection lost, reconnecting');
    void this.reconnectLoop(this.opts.reconnect);
  }

  private async reconnectLoop(policy: ReconnectPolicy): Promise<void> {
    if (this.reconnecting) return;
    this.reconnecting = true;
    // A connection that died soon after it was made (a server going down as we connected, or one that keeps
    // dropping us) does not reset the backoff: otherwise a flapping server is hammered.
    const stable = Date.now() - this.connectedAt >= STABLE_CONNECTION_MS;
    let delay = stable ? policy.minDelayMs : Math.min(Math.max(this.lastDelay * 2, policy.minDelayMs), policy.maxDelayMs);
    this.lastDelay = delay;
    if (!stable) await this.sleep(delay);
    let attempts = 0;
    try {
      while (!this.closing) {
        attempts++;
        try {
          const s = await this.opts.open();
          if (this.closing) {
            s.destroy();
            return;
          }
          this.attach(s);
          this.opts.logger?.info({ socket: this.opts.describe, attempts }, 'xenstore: reconnected');
          // Requests queued while disconnected: those of a transaction from the old connection cannot go.
          for (const p of [...this.pending.values()]) {
            if (p.sent) continue;
            if (p.txGeneration !== 0) {
              this.settle(p);
              p.reject(new XsConnectionError(p.op, p.path, 'transaction lost: the connection to xenstored was reset'));
              continue;
            }
          }
          this.opts.onReconnected();
          for (const p of this.pending.values()) {
            if (!p.sent) {
              p.sent = true;
              this.enqueue(p.frame);
            }
          }
          return;
        } catch (err) {
          this.opts.logger?.debug({ err, socket: this.opts.describe, attempts }, 'xenstore: reconnect attempt failed');
          await this.sleep(delay);
          delay = Math.min(delay * 2, policy.maxDelayMs);
          this.lastDelay = delay;
        }
      }
    } finally {
      this.reconnecting = false;
    }
  }

  private sleepTimer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;

  /**
   * Backoff wait; close() cuts it short. Not referenced: a client whose server is gone (an in-process sim shut down
   * before its clients) must not keep the process alive on its own. Calls waiting for the reconnection do (their
   * timeout timer is referenced).
   */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
      this.sleepTimer = setTimeout(() => {
        this.sleepTimer = this.wake = undefined;
        resolve();
      }, ms);
      this.sleepTimer.unref();
    });
  }

  private failAll(reason: string): void {
    for (const p of [...this.pending.values()]) {
      this.settle(p);
      p.reject(new XsConnectionError(p.op, p.path, reason));
    }
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.sleepTimer) {
      clearTimeout(this.sleepTimer);
      const wake = this.wake;
      this.sleepTimer = this.wake = undefined;
      wake?.();
    }
    this.flush();
    this.failAll('client closed');
    const s = this.stream;
    if (s) {
      // Nothing is owed to the server on close (xs_close sends nothing either): drop the stream at once.
      await new Promise<void>((resolve) => {
        if (s.destroyed) return resolve();
        s.once('close', () => resolve());
        s.destroy();
      });
    }
    this.opts.onClosed(new Error('client closed'));
  }
}

function errnoOf(payload: Buffer): string {
  const nul = payload.indexOf(0);
  return payload.toString('latin1', 0, nul < 0 ? payload.length : nul) || 'EINVAL';
}
