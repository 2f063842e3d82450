// The retry loop of XenstoreClient.transaction(), shared by both transports: run the body in a fresh
// transaction, commit, and on EAGAIN (a conflicting commit by someone else) run the whole body again.
import { XsError, type CallOptions, type Transaction } from './types.js';
import { abortReason } from './errors.js';

export interface TxHandle extends Transaction {
  /** commit=true commits (may reject with EAGAIN), false aborts. */
  end(commit: boolean, opts?: CallOptions): Promise<void>;
}

export const DEFAULT_TX_RETRIES = 32;

function isConflict(e: unknown): boolean {
  return e instanceof XsError && e.errno === 'EAGAIN';
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortReason(signal));
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(abortReason(signal!));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export async function runTransaction<T>(
  start: (opts?: CallOptions) => Promise<TxHandle>,
  body: (tx: Transaction) => Promise<T>,
  opts?: CallOptions & { retries?: number },
): Promise<T> {
  const retries = opts?.retries ?? DEFAULT_TX_RETRIES;
  const callOpts: CallOptions | undefined = opts && { timeoutMs: opts.timeoutMs, signal: opts.signal };
  for (let attempt = 0; ; attempt++) {
    if (opts?.signal?.aborted) throw abortReason(opts.signal);
    const tx = await start(callOpts);
    let result: T;
    try {
      result = await body(tx);
    } catch (e) {
      await tx.end(false, callOpts).catch(() => undefined);
      // Some servers report the conflict on an operation inside the transaction rather than at commit.
      if (isConflict(e) && attempt < retries) {
        await backoff(attempt, opts?.signal);
        continue;
      }
      throw e;
    }
    try {
      await tx.end(true, callOpts);
      return result;
    } catch (e) {
      if (isConflict(e) && attempt < retries) {
        await backoff(attempt, opts?.signal);
        continue;
      }
      throw e;
    }
  }
}

/** No wait for the first two retries (conflicts are usually one-off); then a short random wait to break livelock. */
function backoff(attempt: number, signal?: AbortSignal): Promise<void> | void {
  if (attempt < 2) return;
  return sleep(Math.random() * Math.min(2 ** (attempt - 1), 50), signal);
}
