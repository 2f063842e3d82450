// The local side of a client's watches, shared by both transports: WatchStreams by token (several watches may
// share a token on different paths). Registering with xenstored stays with each transport.
import type { WatchStream } from './watch-stream.js';

export class WatchRegistry {
  private readonly byToken = new Map<string, WatchStream[]>();

  /** Registered locally before the WATCH request: the initial event may arrive before its reply. */
  add(w: WatchStream): void {
    const list = this.byToken.get(w.token);
    if (list) list.push(w);
    else this.byToken.set(w.token, [w]);
  }

  forget(w: WatchStream): void {
    const list = this.byToken.get(w.token);
    if (!list) return;
    const i = list.indexOf(w);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.byToken.delete(w.token);
  }

  /** The watches of one token (the live list), if any. */
  get(token: string): WatchStream[] | undefined {
    return this.byToken.get(token);
  }

  /** Number of tokens with at least one watch. */
  get size(): number {
    return this.byToken.size;
  }

  /** Every token's live list, for walking all watches. */
  lists(): IterableIterator<WatchStream[]> {
    return this.byToken.values();
  }

  /** Ends every watch's iterator (with `errorFor(w)` when given) and forgets them all. */
  endAll(errorFor?: (w: WatchStream) => Error): void {
    for (const list of this.byToken.values()) for (const w of list) w.end(errorFor?.(w));
    this.byToken.clear();
  }
}
