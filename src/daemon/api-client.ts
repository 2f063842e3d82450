// A small client of API v1 (JSON-RPC over HTTP on the unix socket), used by xenopsctl, the tests and the benchmark.
import { Agent, request } from 'node:http';

export interface RpcErrorBody {
  code: number;
  message: string;
  data?: { name: string; [key: string]: unknown };
}

/** A JSON-RPC error answer. */
export class RpcError extends Error {
  constructor(readonly body: RpcErrorBody) {
    super(body.message);
    this.name = 'RpcError';
  }
  get code(): number {
    return this.body.code;
  }
  /** data.name (DOES_NOT_EXIST, BAD_POWER_STATE, INVALID_PARAMS, ...). */
  get errorName(): string | undefined {
    return this.body.data?.name;
  }
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export class ApiClient {
  private readonly agent: Agent;
  private nextId = 1;

  constructor(
    readonly socketPath: string,
    opts: { maxSockets?: number } = {},
  ) {
    this.agent = new Agent({ keepAlive: true, maxSockets: opts.maxSockets ?? 16 });
  }

  /** One HTTP request as it is (for tests of the transport). */
  raw(method: string, path: string, body?: Buffer | string, headers: Record<string, string> = {}, timeoutMs = 30_000): Promise<RawResponse> {
    return new Promise((resolve, reject) => {
      const req = request(
        { socketPath: this.socketPath, method, path, agent: this.agent, headers: { host: 'localhost', ...headers }, timeout: timeoutMs },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer from ${this.socketPath} within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  /** Calls a method; resolves with its result, rejects with RpcError for an error answer. */
  async call<T = any>(method: string, params?: Record<string, unknown>, timeoutMs?: number): Promise<T> {
    const id = this.nextId++;
    const payload = JSON.stringify({ jsonrpc: '2.0', id, method, ...(params ? { params } : {}) });
    const res = await this.raw('POST', '/v1', payload, { 'content-type': 'application/json' }, timeoutMs);
    let msg: { result?: T; error?: RpcErrorBody };
    try {
      msg = JSON.parse(res.body.toString()) as { result?: T; error?: RpcErrorBody };
    } catch {
      throw new Error(`HTTP ${res.status}: not JSON: ${res.body.toString().slice(0, 200)}`);
    }
    if (msg.error) throw new RpcError(msg.error);
    return msg.result as T;
  }

  close(): void {
    this.agent.destroy();
  }
}
