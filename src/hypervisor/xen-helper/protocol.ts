// Messages between the daemon (xen-helper-client.ts) and the helper process (main.ts): one JSON object per line,
// requests on the helper's stdin, events on its fd 3 (stdout and stderr stay free for libxc's own logging).
// Bigints (MFNs) travel as decimal strings.
import type { BuildRequest } from '../xen-build.js';

/** The helper's fd for the migration stream of a save or restore (stdio slot 4 of the spawned process). */
export const STREAM_FD = 4;
/** The helper's fd for events. */
export const EVENT_FD = 3;

export type HelperRequest =
  | { type: 'build'; id: number; domid: number; req: BuildRequest }
  | { type: 'save'; id: number; domid: number; live: boolean; maxRounds: number; dirtyThreshold: number }
  | { type: 'restore'; id: number; domid: number; storePort: number; consolePort: number }
  /** The answer to a `suspend` event: the toolstack got the guest suspended (or failed to). */
  | { type: 'suspended'; id: number; ok: boolean; message?: string };

export interface WireError {
  call: string;
  errno: string;
  detail?: string;
}

export type HelperEvent =
  | { type: 'ready'; pid: number }
  /** Startup failed (libraries, xc_interface_open): the helper exits after sending it. */
  | { type: 'fatal'; error: WireError }
  | { type: 'done'; id: number; result: Record<string, string | number> }
  | { type: 'failed'; id: number; error: WireError }
  | { type: 'suspend'; id: number }
  | { type: 'progress'; id: number; round: number; sent: number; dirty: number };

export function encodeMessage(msg: HelperRequest | HelperEvent): string {
  return `${JSON.stringify(msg)}\n`;
}

/** Splits a byte stream into JSON messages; a malformed line is reported, not thrown past the reader. */
export class MessageSplitter<T> {
  private buffered = '';
  constructor(
    private readonly onMessage: (msg: T) => void,
    private readonly onBadLine: (line: string, err: Error) => void,
  ) {}

  push(chunk: string): void {
    this.buffered += chunk;
    let nl: number;
    while ((nl = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, nl);
      this.buffered = this.buffered.slice(nl + 1);
      if (line.trim() === '') continue;
      let msg: T;
      try {
        msg = JSON.parse(line) as T;
      } catch (err) {
        this.onBadLine(line, err as Error);
        continue;
      }
      this.onMessage(msg);
    }
  }
}
