// Watches of the libxenstore transport. They live on a handle of their own: after xs_watch, libxenstore's reader
// thread owns that socket, queues WATCH_EVENTs and makes xs_fileno() readable. The fd is polled with
// koffi.node.poll and drained with xs_check_watch (on a worker, like every libxenstore call) until EAGAIN.
// libxenstore does not reconnect: the handle is checked every `healthCheckMs` (xs_check_watch answers EINVAL once
// the reader thread has seen the socket close), then reopened with backoff and every watch registered again.
import koffi from 'koffi';
import type { Logger } from 'pino';
import { XsError, type CallOptions, type Watch, type WatchEvent } from '../src/xenstore/types.js';
import { XsConnectionError, errnoName } from '../src/xenstore/errors.js';
import { WatchStream } from '../src/xenstore/watch-stream.js';
import { WatchRegistry } from '../src/xenstore/watch-registry.js';
import { callAsync, decodeStrings, freeBlock } from './xenstore-lib.js';
import { HandleSlot, openHandle } from './xenstore-handles.js';
import type { LibXenstoreClient } from './xenstore.js';

/** What the watches need from the client (bindings/xenstore.ts). */
export type WatchHost = Pick<LibXenstoreClient, 'library' | 'exec' | 'boolCall' | 'closed' | 'errnoTable'>;

export interface LibWatchesOptions {
  path: string | undefined;
  healthCheckMs: number;
  reconnectEnabled: boolean;
  minDelay: number;
  maxDelay: number;
  logger?: Logger;
  onEvent(ev: WatchEvent): void;
  onReconnected(): void;
  /** The watch connection died: the client's other handles are most likely stale too. */
  onConnectionLost(): void;
}

let tokenCounter = 0;

export class LibWatches {
  /** The watch handle (created with the first watch). */
  slot: HandleSlot | undefined;
  private poller: ReturnType<typeof koffi.node.poll> | undefined;
  private pollGeneration = -1;
  private draining = false;
  private healthTimer: NodeJS.Timeout | undefined;
  private readonly watches = new WatchRegistry();
  private reconnecting = false;

  constructor(
    private readonly host: WatchHost,
    private readonly opts: LibWatchesOptions,
  ) {}

  async watch(path: string, token?: string, opts?: CallOptions): Promise<Watch> {
    const tok = token ?? `xsng-${process.pid}-${++tokenCounter}`;
    const slot = (this.slot ??= new HandleSlot('watch', this.host.library, this.opts.logger));
    const w = new WatchStream(path, tok, (ws) => this.unwatch(ws));
    this.watches.add(w);
    try {
      await this.host.exec('watch', path, opts, (h) => this.host.boolCall(this.host.library.xs_watch, h, path, tok), slot);
      await this.startPolling(slot);
    } catch (e) {
      this.watches.forget(w);
      w.end();
      // Timed out or aborted: the call may still complete and register it, so queue its removal behind it.
      if (!(e instanceof XsError)) {
        this.host.exec('unwatch', path, undefined, (h) => this.host.boolCall(this.host.library.xs_unwatch, h, path, tok), slot).catch(() => undefined);
      }
      throw e;
    }
    this.armHealthCheck();
    return w;
  }

  private async unwatch(w: WatchStream): Promise<void> {
    this.watches.forget(w);
    const slot = this.slot;
    if (!slot || this.host.closed) return;
    try {
      await this.host.exec('unwatch', w.path, undefined, (h) => this.host.boolCall(this.host.library.xs_unwatch, h, w.path, w.token), slot);
    } catch (e) {
      if (!(e instanceof XsError)) throw e;
      this.opts.logger?.debug({ err: e, path: w.path }, 'xenstore(libxenstore): unwatch failed');
    }
  }

  /** Polls the watch handle's xs_fileno() (once per handle generation). */
  private async startPolling(slot: HandleSlot): Promise<void> {
    let generation = 0;
    const fd = await this.host.exec(
      'xs_fileno',
      undefined,
      undefined,
      async (h) => {
        generation = slot.generation;
        return (await callAsync<number>(this.host.library.xs_fileno, h)).value;
      },
      slot,
    );
    // Keyed by handle generation, not fd number: a reopened handle's pipe may reuse the old descriptor number.
    if (this.poller && this.pollGeneration === generation) return;
    this.poller?.close();
    this.poller = undefined;
    if (fd < 0) throw new XsError('EIO', 'xs_fileno');
    this.pollGeneration = generation;
    this.poller = koffi.node.poll(fd, { readable: true }, () => this.drain());
  }

  /** Takes every queued event off the watch handle; the poll is paused meanwhile (the fd stays readable until then). */
  private drain(): void {
    if (this.draining || !this.slot) return;
    this.draining = true;
    this.poller?.stop();
    const slot = this.slot;
    slot
      .run(async () => {
        for (;;) {
          const h = slot.ptr;
          if (h === undefined) return 'dead';
          const r = await callAsync<bigint | null>(this.host.library.xs_check_watch, h);
          if (!r.value) {
            // EAGAIN: nothing more queued. Anything else: the reader thread saw the connection close.
            return errnoName(r.errno, this.host.errnoTable) === 'EAGAIN' ? 'empty' : 'dead';
          }
          let ev: string[];
          try {
            ev = decodeStrings(r.value, 2);
          } finally {
            freeBlock(this.host.library, r.value);
          }
          this.dispatch(ev[0]!, ev[1]!);
        }
      })
      .then(
        (state) => {
          this.draining = false;
          if (state === 'dead') this.onHandleLost();
          else if (!this.host.closed) this.poller?.start({ readable: true }, () => this.drain());
        },
        (err: unknown) => {
          this.draining = false;
          this.opts.logger?.error({ err }, 'xenstore(libxenstore): reading watch events failed');
        },
      );
  }

  private dispatch(path: string, token: string): void {
    const list = this.watches.get(token);
    const ev: WatchEvent = { path, token };
    if (list) {
      if (list.length === 1) list[0]!.push(ev);
      else {
        const matching = list.filter((w) => path === w.path || path.startsWith(w.path + '/'));
        for (const w of matching.length ? matching : list) w.push(ev);
      }
    }
    this.opts.onEvent(ev);
  }

  private armHealthCheck(): void {
    if (this.healthTimer || this.opts.healthCheckMs <= 0) return;
    this.healthTimer = setInterval(() => {
      if (this.watches.size > 0 && !this.reconnecting) this.drain();
    }, this.opts.healthCheckMs);
    this.healthTimer.unref();
  }

  onHandleLost(): void {
    if (this.host.closed || this.reconnecting) return;
    this.opts.logger?.warn('xenstore(libxenstore): watch connection lost, reconnecting');
    this.poller?.close();
    this.poller = undefined;
    this.pollGeneration = -1;
    // The whole daemon most likely restarted: every pooled handle is stale too; they reopen on their next call.
    this.opts.onConnectionLost();
    if (!this.opts.reconnectEnabled) {
      this.watches.endAll((w) => new XsConnectionError('watch', w.path, 'connection to xenstored lost'));
      return;
    }
    void this.reconnect();
  }

  private async reconnect(): Promise<void> {
    const slot = this.slot!;
    this.reconnecting = true;
    let delay = this.opts.minDelay;
    try {
      while (!this.host.closed) {
        await slot.run(async () => slot.kill());
        const opened = await slot.run(async () => {
          // A watch() call may have reopened it meanwhile (its job runs ensureOpen).
          if (slot.ptr === undefined) {
            const r = await openHandle(this.host.library, this.opts.path);
            if (r.ptr) slot.adopt(r.ptr);
          }
          return slot.ptr !== undefined;
        });
        if (opened && (await this.reregister(slot))) {
          await this.startPolling(slot);
          this.opts.logger?.info('xenstore(libxenstore): reconnected, watches re-registered');
          this.opts.onReconnected();
          return;
        }
        // Not up yet, or it went down again while we registered: wait and start over (unreferenced, as in the
        // native client: a client whose server is gone for good must not keep the process alive by itself).
        await new Promise((res) => setTimeout(res, delay).unref());
        delay = Math.min(delay * 2, this.opts.maxDelay);
      }
    } catch (err) {
      this.opts.logger?.error({ err }, 'xenstore(libxenstore): reconnecting watches failed');
    } finally {
      this.reconnecting = false;
    }
  }

  /** Registers every watch on the (new) watch handle; false when the connection was lost meanwhile. */
  private async reregister(slot: HandleSlot): Promise<boolean> {
    const generation = slot.generation;
    for (const list of [...this.watches.lists()]) {
      for (const w of [...list]) {
        try {
          await this.host.exec('watch', w.path, undefined, (h) => this.host.boolCall(this.host.library.xs_watch, h, w.path, w.token), slot);
          if (slot.generation !== generation) return false; // reopened under us: the earlier ones are gone
        } catch (err) {
          if (err instanceof XsConnectionError) return false;
          if (err instanceof XsError && err.errno === 'EEXIST') continue; // registered by a concurrent watch()
          this.opts.logger?.warn({ err, path: w.path }, 'xenstore(libxenstore): re-registering watch failed');
          this.watches.forget(w);
          w.end(err);
        }
      }
    }
    return true;
  }

  /** Unregisters every watch of this client (libxenstore has no RESET_WATCHES call). */
  async closeAll(): Promise<void> {
    const all = [...this.watches.lists()].flat();
    await Promise.all(all.map((w) => w.close()));
  }

  /** Client closing: stop polling and end every iterator (the handle itself is closed with the others). */
  shutdown(): void {
    if (this.healthTimer) clearInterval(this.healthTimer);
    this.poller?.close();
    this.poller = undefined;
    this.watches.endAll();
  }
}
