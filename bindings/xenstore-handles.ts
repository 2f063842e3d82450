// libxenstore handles for the koffi transport. A handle keeps one request outstanding (libxenstore serialises
// calls on it behind a mutex, and a blocked call holds a libuv worker thread), so each handle here has its own
// queue of jobs and the client spreads calls over a small pool of them.
import type { Logger } from 'pino';
import { callAsync, type LibXenstore, type XsHandlePtr } from './xenstore-lib.js';

/** Opening a handle reads $XENSTORED_PATH from the environment: opens with an explicit path are serialised. */
let openChain: Promise<unknown> = Promise.resolve();

export async function openHandle(lib: LibXenstore, path: string | undefined): Promise<{ ptr?: XsHandlePtr; errno: number }> {
  const run = async () => {
    const saved = process.env.XENSTORED_PATH;
    if (path !== undefined) process.env.XENSTORED_PATH = path;
    try {
      const r = await callAsync<bigint | null>(lib.xs_open, 0);
      return r.value ? { ptr: r.value as XsHandlePtr, errno: 0 } : { errno: r.errno };
    } finally {
      if (path !== undefined) {
        if (saved === undefined) delete process.env.XENSTORED_PATH;
        else process.env.XENSTORED_PATH = saved;
      }
    }
  };
  const p = openChain.then(run, run);
  openChain = p.catch(() => undefined);
  return p;
}

/** One libxenstore handle and its job queue. `ptr` is undefined when the connection is known dead. */
export class HandleSlot {
  ptr: XsHandlePtr | undefined;
  /** Bumped every time the handle is reopened: transactions remember the generation they started in. */
  generation = 0;
  /** Jobs queued or running. */
  load = 0;
  /** A call timed out and is still blocked in libxenstore: prefer other handles. */
  stuck = false;
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    readonly name: string,
    private readonly lib: LibXenstore,
    private readonly logger?: Logger,
  ) {}

  /** Runs job after every job queued before it. */
  run<T>(job: () => Promise<T>): Promise<T> {
    this.load++;
    const p = this.tail.then(job, job);
    this.tail = p.then(
      () => {
        this.load--;
      },
      () => {
        this.load--;
      },
    );
    return p;
  }

  /** Marks the connection dead and closes the handle (on a worker: xs_close joins libxenstore's reader thread). */
  async kill(): Promise<void> {
    const ptr = this.ptr;
    this.ptr = undefined;
    if (ptr !== undefined) {
      await callAsync(this.lib.xs_close, ptr).catch((err: unknown) => this.logger?.debug({ err }, 'xs_close failed'));
    }
  }

  adopt(ptr: XsHandlePtr): void {
    this.ptr = ptr;
    this.generation++;
  }
}
