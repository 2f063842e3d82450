// A minimal JSON-RPC client for load generation: one keep-alive HTTP/1.1 connection on the unix socket, one request
// in flight, the answer framed by its Content-Length. node:http's client costs more CPU per call than the daemon
// spends answering it, so with it a benchmark on a small machine measures its own client; this one costs a fraction.
// Not a general HTTP client: it expects the daemon's answers (Content-Length, no chunking) and throws otherwise.
import { connect, type Socket } from 'node:net';

const HEADER_END = Buffer.from('\r\n\r\n');

export class LeanRpcClient {
  private sock?: Socket;
  private buf: Buffer = Buffer.alloc(0);
  private waiter?: { resolve: (body: Buffer) => void; reject: (err: Error) => void };
  private nextId = 1;

  constructor(readonly socketPath: string) {}

  private open(): Promise<Socket> {
    if (this.sock) return Promise.resolve(this.sock);
    return new Promise((resolve, reject) => {
      const s = connect(this.socketPath);
      s.once('error', reject);
      s.once('connect', () => {
        s.off('error', reject);
        s.on('error', (err) => this.fail(err));
        s.on('close', () => this.fail(new Error('connection closed')));
        s.on('data', (chunk: Buffer) => this.onData(chunk));
        this.sock = s;
        resolve(s);
      });
    });
  }

  private fail(err: Error): void {
    this.sock = undefined;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(err);
  }

  private onData(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const end = this.buf.indexOf(HEADER_END);
    if (end < 0) return;
    const head = this.buf.subarray(0, end).toString('latin1');
    const m = /\r\ncontent-length: *(\d+)/i.exec(head);
    if (!m) return this.fail(new Error(`answer without Content-Length: ${head.slice(0, 200)}`));
    const total = end + 4 + Number(m[1]);
    if (this.buf.length < total) return;
    const body = this.buf.subarray(end + 4, total);
    this.buf = this.buf.subarray(total);
    const w = this.waiter;
    this.waiter = undefined;
    w?.resolve(body);
  }

  /** Calls a method; resolves with its result, rejects with the error object's message on an error answer. */
  async call<T = unknown>(method: string, params?: Record<string, unknown>): Promise<T> {
    const sock = await this.open();
    if (this.waiter) throw new Error('LeanRpcClient: one call at a time');
    const body = JSON.stringify({ jsonrpc: '2.0', id: this.nextId++, method, ...(params ? { params } : {}) });
    const answer = new Promise<Buffer>((resolve, reject) => (this.waiter = { resolve, reject }));
    sock.write(
      `POST /v1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    const msg = JSON.parse((await answer).toString()) as { result?: T; error?: { message: string } };
    if (msg.error) throw new Error(`${method}: ${msg.error.message}`);
    return msg.result as T;
  }

  close(): void {
    this.sock?.destroy();
    this.sock = undefined;
  }
}
