// Moving a migration stream between an fd the daemon holds (file, pipe or socket, possibly non-blocking) and a
// stream connection: fs.read/fs.write with a short backoff on EAGAIN (libuv gives no readiness for arbitrary fds),
// and socket writes that honour back-pressure. The fd is never closed here.
import { read, write } from 'node:fs';
import type { Socket } from 'node:net';
import { promisify } from 'node:util';
import { HypervisorError } from './types.js';

const readAsync = promisify(read);
const writeAsync = promisify(write);

export function isSocketError(err: Error): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'EPIPE' || code === 'ECONNRESET' || code === 'ERR_STREAM_DESTROYED' || code === 'ERR_STREAM_PREMATURE_CLOSE';
}

function isAgain(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'EAGAIN' || code === 'EWOULDBLOCK';
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Reads exactly n bytes from fd (EOF before that is an error). */
export async function readExactFd(fd: number, n: number, signal?: AbortSignal): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(n);
  let got = 0;
  let backoff = 1;
  while (got < n) {
    if (signal?.aborted) throw new HypervisorError('restore', 'ECANCELED', 'stream read stopped');
    try {
      const { bytesRead } = await readAsync(fd, buf, got, n - got, null);
      if (bytesRead === 0) throw new Error(`stream truncated: end of fd ${fd} after ${got} of ${n} bytes`);
      got += bytesRead;
      backoff = 1;
    } catch (err) {
      if (!isAgain(err)) throw err;
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 20);
    }
  }
  return buf;
}

/** Writes all of chunk to fd. */
export async function writeAllFd(fd: number, chunk: Buffer): Promise<void> {
  let done = 0;
  let backoff = 1;
  while (done < chunk.length) {
    try {
      done += (await writeAsync(fd, chunk, done, chunk.length - done, null)).bytesWritten;
      backoff = 1;
    } catch (err) {
      if (!isAgain(err)) throw err;
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 20);
    }
  }
}

export function writeSocket(socket: Socket, chunk: Buffer): Promise<void> {
  if (socket.destroyed) return Promise.reject(Object.assign(new Error('stream connection closed'), { code: 'EPIPE' }));
  if (socket.write(chunk)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = (err?: Error): void => {
      socket.off('drain', onDrain);
      socket.off('close', onClose);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = (): void => done();
    const onClose = (): void => done(Object.assign(new Error('stream connection closed'), { code: 'EPIPE' }));
    socket.on('drain', onDrain);
    socket.on('close', onClose);
  });
}
