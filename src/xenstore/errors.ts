// Errors of the xenstore clients beyond the contract's XsError/XsTimeoutError, and errno-number mapping
// shared by the socket client and the libxenstore binding.
import { ERRNO } from './wire.js';
import { XsError } from './types.js';

/**
 * The connection to xenstored was lost (or the client was closed) while the call was outstanding, or the
 * call belonged to a transaction opened on a previous connection. errno is ECONNRESET so callers that only
 * look at XsError.errno still see a distinct value; the message says what happened.
 */
export class XsConnectionError extends XsError {
  constructor(op: string, path: string | undefined, reason: string) {
    super('ECONNRESET', op, path);
    this.name = 'XsConnectionError';
    this.message = `xenstore ${op}${path !== undefined ? ` ${path}` : ''}: ${reason}`;
  }
}

/** The reply did not make sense for the request (wrong type, unparsable payload). */
export class XsProtocolError extends XsError {
  constructor(op: string, path: string | undefined, reason: string) {
    super('EIO', op, path);
    this.name = 'XsProtocolError';
    this.message = `xenstore ${op}${path !== undefined ? ` ${path}` : ''}: protocol error: ${reason}`;
  }
}

const NAME_BY_ERRNO = new Map<number, string>();
for (const [name, value] of Object.entries(ERRNO)) NAME_BY_ERRNO.set(value, name);

/** Errno number (as libxenstore leaves it) to the name xenstored would have sent; EDQUOT reads as EQUOTA. */
export function errnoName(errno: number, extra?: Readonly<Record<string, number>>): string {
  const known = NAME_BY_ERRNO.get(errno);
  if (known) return known;
  if (extra) for (const [name, value] of Object.entries(extra)) if (value === errno) return name;
  return `ERRNO${errno}`;
}

/** What an aborted call rejects with: the signal's reason when it is an Error, else a DOMException-like AbortError. */
export function abortReason(signal: AbortSignal): Error {
  const r: unknown = signal.reason;
  if (r instanceof Error) return r;
  const e = new Error(r === undefined ? 'The operation was aborted' : String(r));
  e.name = 'AbortError';
  return e;
}
