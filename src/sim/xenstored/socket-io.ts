// The I/O of an accepted unix socket without its stream machinery, for the one-request-at-a-time case
// where that machinery cost about as much CPU as everything xenstored does with a request.
// Reading: into one reusable buffer. Node offers this as the `onread` option of net.Socket, but only for
// sockets the caller constructs; a server's accepted sockets take the option's two internal slots (the
// kBuffer / kBufferCb symbols, which net.Socket's constructor fills from `onread`) plus the handle's
// useUserBuffer. That saves a fresh 64 KiB allocation, a Readable push/emit and a nextTick per read.
// When a Node release changes these internals, useReadBuffer returns false and the caller keeps its
// 'data' listener. Writing: see writeSocket.
import { writeSync } from 'node:fs';
import type { Socket } from 'node:net';

interface UserBufferHandle {
  useUserBuffer?: (buf: Uint8Array) => void;
}

function symbolNamed(obj: object, description: string): symbol | undefined {
  return Object.getOwnPropertySymbols(obj).find((s) => s.description === description);
}

/**
 * Makes `sock` read into `buf` and call `onBytes(n)` with the count of bytes now at its start; they are
 * only valid until onBytes returns (the next read overwrites them). Call it before the first read
 * (in the 'connection' listener). Returns false, changing nothing, when this Node does not allow it.
 */
export function useReadBuffer(sock: Socket, buf: Buffer, onBytes: (n: number) => void): boolean {
  const kBuffer = symbolNamed(sock, 'kBuffer');
  const kBufferCb = symbolNamed(sock, 'kBufferCb');
  const handle = (sock as unknown as { _handle?: UserBufferHandle | null })._handle;
  if (!kBuffer || !kBufferCb || typeof handle?.useUserBuffer !== 'function') return false;
  const slots = sock as unknown as Record<symbol, unknown>;
  if (slots[kBuffer] !== null || slots[kBufferCb] !== null) return false;
  slots[kBuffer] = buf;
  slots[kBufferCb] = onBytes;
  handle.useUserBuffer(buf);
  return true;
}


/**
 * Writes `data` to `sock`: straight to its file descriptor when nothing is queued in the stream (one
 * write(2), none of the Writable bookkeeping and the nextTick it schedules per write), else through
 * the stream. What the kernel does not take (EAGAIN, a short write) goes through the stream after it,
 * so the byte order is kept; any other error is left for the stream to meet and report as usual.
 */
export function writeSocket(sock: Socket, data: Buffer): void {
  const fd = (sock as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  if (typeof fd === 'number' && fd >= 0 && sock.writableLength === 0) {
    let written = 0;
    try {
      written = writeSync(fd, data);
    } catch {
      written = 0;
    }
    if (written === data.length) return;
    if (written > 0) data = data.subarray(written);
  }
  sock.write(data);
}
