// Waiting on xenstore: a watch on the path, re-read on every event, until the value satisfies a predicate.
// Every wait is bounded (timeout) and cancellable (signal), and always unregisters its watch.
import type { XenstoreClient } from '../xenstore/types.js';

export class WaitTimeout extends Error {
  constructor(readonly what: string, readonly timeoutMs: number) {
    super(`timed out after ${timeoutMs} ms waiting for ${what}`);
    this.name = 'WaitTimeout';
  }
}

/** Resolves when signal aborts (rejecting with its reason) — for racing against another promise. */
export function abortPromise(signal: AbortSignal): { promise: Promise<never>; dispose(): void } {
  let onAbort: () => void = () => {};
  const promise = new Promise<never>((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  promise.catch(() => {});
  return { promise, dispose: () => signal.removeEventListener('abort', onAbort) };
}

export async function waitForValue(
  xs: XenstoreClient,
  path: string,
  accept: (value: string | undefined) => boolean,
  opts: { timeoutMs: number; signal?: AbortSignal; what?: string },
): Promise<string | undefined> {
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(new WaitTimeout(opts.what ?? path, opts.timeoutMs)), opts.timeoutMs);
  const signal = opts.signal ? AbortSignal.any([opts.signal, timeout.signal]) : timeout.signal;
  const aborted = abortPromise(signal);
  const watch = await xs.watch(path);
  try {
    const events = watch[Symbol.asyncIterator]();
    for (;;) {
      const next = await Promise.race([events.next(), aborted.promise]);
      if (next.done) throw new Error(`watch on ${path} ended`);
      const value = await xs.tryRead(path);
      if (accept(value)) return value;
    }
  } finally {
    clearTimeout(timer);
    aborted.dispose();
    await watch.close().catch(() => {});
  }
}
