// One domain's console as dom0's console daemon holds it once the ring is mapped: the bounded buffer of what the guest
// printed, the log file (xenconsoled --log=guest) and, in place of the pty xenconsoled opens, a unix socket that
// streams the console. Node cannot open a pty; console/tty names this socket instead.
//
// The socket streams only output printed after a client connected (a pty does not replay either; `xenopsd-ng sim
// console DOMID` shows the buffer). What a client writes is read and dropped: the sim's guests have no console input.
import { createWriteStream, type WriteStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import net from 'node:net';
import { finished } from 'node:stream/promises';
import type { Logger } from 'pino';
import { OutputBuffer } from './output-buffer.js';

export interface ConsoleSessionOptions {
  domid: number;
  socketPath: string;
  logPath: string;
  log: Logger;
}

export class ConsoleSession {
  readonly buffer = new OutputBuffer();
  private readonly clients = new Set<net.Socket>();
  private server?: net.Server;
  private logFile?: WriteStream;
  private closed = false;
  /** Bytes clients wrote (dropped), for the close log line. */
  private inputDropped = 0;

  private constructor(readonly opts: ConsoleSessionOptions) {}

  /** Opens the log file (appending) and listens on the socket (a stale one from a crashed host is replaced). */
  static async open(opts: ConsoleSessionOptions): Promise<ConsoleSession> {
    const session = new ConsoleSession(opts);
    try {
      await session.start();
    } catch (err) {
      await session.close();
      throw err;
    }
    return session;
  }

  get socketPath(): string {
    return this.opts.socketPath;
  }

  get logPath(): string {
    return this.opts.logPath;
  }

  private async start(): Promise<void> {
    const { log } = this.opts;
    this.logFile = createWriteStream(this.opts.logPath, { flags: 'a', mode: 0o640 });
    // A log write failing (disk full) loses log lines, not the console.
    this.logFile.on('error', (err) => log.warn({ err, path: this.opts.logPath }, 'console log write failed'));
    await unlink(this.opts.socketPath).catch(() => undefined);
    const server = net.createServer((sock) => this.onClient(sock));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => log.warn({ err }, 'console socket error'));
  }

  private onClient(sock: net.Socket): void {
    if (this.closed) {
      sock.destroy();
      return;
    }
    this.clients.add(sock);
    sock.on('data', (chunk: Buffer) => (this.inputDropped += chunk.length));
    sock.on('error', () => undefined);
    sock.on('close', () => this.clients.delete(sock));
  }

  /** Output from the guest: into the buffer, the log file and every connected client. */
  write(bytes: Buffer): void {
    if (this.closed || bytes.length === 0) return;
    this.buffer.append(bytes);
    this.logFile?.write(bytes);
    for (const sock of this.clients) {
      // A client that does not read is dropped rather than let its backlog grow without bound.
      if (sock.writableLength > 1 << 20) sock.destroy();
      else sock.write(bytes);
    }
  }

  /** Stops serving: clients are disconnected, the socket removed; the log file is kept (flushed and closed). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const sock of this.clients) sock.destroy();
    this.clients.clear();
    const server = this.server;
    if (server?.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
    await unlink(this.opts.socketPath).catch(() => undefined);
    const file = this.logFile;
    if (file && !file.destroyed) {
      file.end();
      await finished(file).catch(() => undefined);
    }
    if (this.inputDropped) this.opts.log.debug({ bytes: this.inputDropped }, 'console input dropped');
  }
}
