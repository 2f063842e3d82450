// A registered watch as seen by its user: an async iterator of events, shared by both transports.
// Events are queued until read; a watch whose reader stops reading would otherwise grow without bound, so past
// `maxQueued` the oldest events are dropped and counted (xenstore watches are level-ish: the next event still
// tells the reader to re-read the node).
import type { Watch, WatchEvent } from './types.js';

export class WatchStream implements Watch {
  private queue: WatchEvent[] = [];
  private head = 0;
  private waiter: ((r: IteratorResult<WatchEvent>) => void) | undefined;
  private failWaiter: ((e: unknown) => void) | undefined;
  private ended = false;
  private failure: unknown;
  /** Events dropped because the queue was full. */
  dropped = 0;

  constructor(
    readonly path: string,
    readonly token: string,
    private readonly unregister: (w: WatchStream) => Promise<void>,
    private readonly maxQueued = 65536,
  ) {}

  get closed(): boolean {
    return this.ended;
  }

  /** Called by the transport for every WATCH_EVENT carrying this watch's token. */
  push(ev: WatchEvent): void {
    if (this.ended) return;
    const w = this.waiter;
    if (w) {
      this.waiter = this.failWaiter = undefined;
      w({ value: ev, done: false });
      return;
    }
    if (this.queue.length - this.head >= this.maxQueued) {
      this.head++;
      this.dropped++;
    }
    this.queue.push(ev);
  }

  /** Ends the iterator; with an error, the next read rejects with it (after queued events). */
  end(error?: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.failure = error;
    const w = this.waiter;
    const f = this.failWaiter;
    this.waiter = this.failWaiter = undefined;
    if (error !== undefined && f) f(error);
    else if (w) w({ value: undefined, done: true });
  }

  async close(): Promise<void> {
    if (this.ended) return;
    this.end();
    await this.unregister(this);
  }

  next(): Promise<IteratorResult<WatchEvent>> {
    if (this.head < this.queue.length) {
      const value = this.queue[this.head++]!;
      if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue = this.queue.slice(this.head);
        this.head = 0;
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.ended) {
      if (this.failure !== undefined) {
        const f = this.failure;
        this.failure = undefined;
        return Promise.reject(f);
      }
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => {
      this.waiter = resolve;
      this.failWaiter = reject;
    });
  }

  [Symbol.asyncIterator](): AsyncIterator<WatchEvent> {
    return {
      next: () => this.next(),
      // `break` out of a for-await loop unregisters the watch.
      return: async () => {
        await this.close();
        return { value: undefined, done: true };
      },
    };
  }
}
