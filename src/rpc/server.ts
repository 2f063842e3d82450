// The API server: JSON-RPC 2.0 over HTTP/1.1 on a unix socket (node:http, no framework).
//   POST /v1                 one request or a batch; JSON, or msgpack with Content-Type: application/msgpack
//   GET  /v1/openrpc.json    the OpenRPC document (also the method rpc.discover)
//   anything else            404 (/v2 and later are not served by this daemon), 405 for a wrong verb on /v1
// The per-request path is kept lean for VM.stat at >= 20k/s: validators compiled at start, no per-request logger or
// AbortController unless a handler asks for one, single-chunk bodies used without copying, keep-alive.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Packr } from 'msgpackr';
import type { Logger } from 'pino';
import { buildOpenRpcDocument } from '../../api/v1/openrpc.js';
import { API_VERSION, METHODS } from '../../api/v1/methods.js';
import { Dispatcher, type JsonRpcResponse, type RequestScope } from './dispatch.js';
import { ApiError, Errors, protocolError, RPC_INVALID_REQUEST, RPC_PARSE_ERROR } from './errors.js';
import { applySocketAccess, claimSocketPath, removeSocketIfOurs, socketIdentity, socketMode } from './socket.js';
import type { ApiServer, ApiServerOptions } from './types.js';

const MSGPACK = 'application/msgpack';
const JSON_TYPE = 'application/json';
/** A body over the limit but under this many times it is read and dropped so the client sees the answer;
 *  beyond that the connection is closed after answering. */
const DRAIN_FACTOR = 8;
/** Reason of a request's signal when its connection closes (abort() without one builds a DOMException with a
 *  stack each time: a cost on every long-poll). */
const REQUEST_CLOSED = new Error('request closed');


class Scope implements RequestScope {
  private controller?: AbortController;
  private child?: Logger;
  constructor(
    private readonly res: ServerResponse,
    private readonly base: Logger,
    private readonly waiting: Set<Scope>,
  ) {}
  get signal(): AbortSignal {
    if (!this.controller) {
      const controller = new AbortController();
      this.controller = controller;
      this.waiting.add(this);
      this.res.once('close', () => {
        this.waiting.delete(this);
        controller.abort(REQUEST_CLOSED);
      });
    }
    return this.controller.signal;
  }
  get logger(): Logger {
    return (this.child ??= this.base.child({ component: 'rpc' }));
  }
  /** Ends the handler's waits (the server is closing): long-polls answer with what they have. */
  abort(): void {
    this.controller?.abort(REQUEST_CLOSED);
  }
}

function errorBody(code: number, message: string, data: Record<string, unknown>): JsonRpcResponse {
  const e = protocolError(code, message, data);
  return { jsonrpc: '2.0', id: null, error: { code: e.code, message: e.message, data: e.data } };
}

export async function createApiServer(options: ApiServerOptions): Promise<ApiServer> {
  const { socketPath, logger } = options;
  const maxBody = options.maxBodyBytes ?? 1024 * 1024;
  const openrpc = { ...buildOpenRpcDocument(), 'x-daemon-version': options.version };
  const openrpcJson = Buffer.from(JSON.stringify(openrpc));
  const dispatcher = new Dispatcher({
    specs: METHODS,
    methods: options.methods,
    logger,
    validateResults: options.validateResults ?? true,
    maxBatch: options.maxBatch ?? 1000,
    openrpc,
  });
  // Plain msgpack any client can read: no records extension; an undefined field is left out, as JSON.stringify does
  // (msgpackr would otherwise write its own undefined extension). skipValues is missing from msgpackr's typings.
  const packr = new Packr({ useRecords: false, mapsAsObjects: true, skipValues: [undefined] } as ConstructorParameters<typeof Packr>[0]);
  const waiting = new Set<Scope>();
  /** Set by close(): answers carry Connection: close so keep-alive connections end after their request. */
  let stopping = false;

  function send(res: ServerResponse, status: number, body: unknown, msgpack: boolean, close = false): void {
    let payload: Buffer | string;
    try {
      payload = msgpack ? packr.pack(body) : JSON.stringify(body);
    } catch (err) {
      logger.error({ err }, 'response cannot be encoded');
      const e = Errors.internal(`response cannot be encoded: ${(err as Error).message}`);
      const id = (body as { id?: unknown } | null)?.id ?? null;
      payload = JSON.stringify({ jsonrpc: '2.0', id, error: e.toJSON() });
      msgpack = false;
    }
    const headers: Record<string, string | number> = {
      'Content-Type': msgpack ? MSGPACK : JSON_TYPE,
      'Content-Length': typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length,
    };
    if (close || stopping) headers.Connection = 'close';
    res.writeHead(status, headers);
    res.end(payload);
  }

  function tooLarge(req: IncomingMessage, res: ServerResponse, msgpack: boolean, close: boolean): void {
    send(
      res,
      413,
      errorBody(RPC_INVALID_REQUEST, `invalid request: body larger than the limit of ${maxBody} bytes; nothing was done`, {
        limit: maxBody,
      }),
      msgpack,
      close,
    );
    if (close) res.once('finish', () => req.socket.destroySoon());
  }

  function onPost(req: IncomingMessage, res: ServerResponse): void {
    const msgpack = (req.headers['content-type'] ?? '').startsWith(MSGPACK);
    const declared = req.headers['content-length'] === undefined ? -1 : Number(req.headers['content-length']);
    if (declared > maxBody * DRAIN_FACTOR) {
      req.pause();
      tooLarge(req, res, msgpack, true);
      return;
    }
    req.on('error', (err) => logger.debug({ err }, 'request aborted by the client')); // never crash on a reset
    let first: Buffer | undefined;
    let chunks: Buffer[] | undefined;
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (over) {
        if (size > maxBody * DRAIN_FACTOR) {
          req.pause();
          req.removeAllListeners('data');
          tooLarge(req, res, msgpack, true);
        }
        return;
      }
      if (size > maxBody) {
        over = true; // keep reading (and dropping) so the client can read our answer
        first = undefined;
        chunks = undefined;
        return;
      }
      if (first === undefined) first = chunk;
      else (chunks ??= [first]).push(chunk);
    });
    req.on('end', () => {
      if (over) {
        if (!res.headersSent) tooLarge(req, res, msgpack, false);
        return;
      }
      const body = chunks ? Buffer.concat(chunks) : (first ?? Buffer.alloc(0));
      let message: unknown;
      try {
        if (body.length === 0) throw new Error('empty body');
        message = msgpack ? packr.unpack(body) : JSON.parse(body.toString('utf8'));
      } catch (err) {
        send(res, 200, errorBody(RPC_PARSE_ERROR, `parse error: ${(err as Error).message}`, {}), msgpack);
        return;
      }
      dispatcher.handle(message, new Scope(res, logger, waiting)).then(
        (response) => {
          if (res.writableEnded || res.destroyed) return;
          if (response === null) {
            res.writeHead(204, stopping ? { Connection: 'close' } : {});
            res.end();
          } else send(res, 200, response, msgpack);
        },
        (err: unknown) => {
          logger.error({ err }, 'dispatch failed');
          if (!res.headersSent) send(res, 500, errorBody(-32603, 'internal error', {}), msgpack);
        },
      );
    });
  }

  function onRequest(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    const path = url.indexOf('?') >= 0 ? url.slice(0, url.indexOf('?')) : url;
    if (path === '/v1' || path === '/v1/') {
      if (req.method === 'POST') return onPost(req, res);
      res.setHeader('Allow', 'POST');
      send(res, 405, errorBody(RPC_INVALID_REQUEST, `invalid request: ${req.method} ${path}; JSON-RPC requests are POSTed`, {}), false);
      return;
    }
    if (path === '/v1/openrpc.json') {
      if (req.method === 'GET' || req.method === 'HEAD') {
        res.writeHead(200, { 'Content-Type': JSON_TYPE, 'Content-Length': openrpcJson.length });
        res.end(req.method === 'HEAD' ? undefined : openrpcJson);
        return;
      }
      res.setHeader('Allow', 'GET, HEAD');
      send(res, 405, errorBody(RPC_INVALID_REQUEST, `invalid request: ${req.method} ${path}; use GET`, {}), false);
      return;
    }
    const versioned = /^\/v([0-9]+)(\/|$)/.exec(path);
    const message = versioned
      ? `API /v${versioned[1]} is not served by this daemon; it serves /v1 (API ${API_VERSION})`
      : `nothing at ${path}; the API is POST /v1`;
    req.resume();
    send(res, 404, errorBody(RPC_INVALID_REQUEST, message, { path, served: ['/v1'] }), false);
  }

  const server = createServer({ keepAliveTimeout: 65_000, requestTimeout: 0, headersTimeout: 60_000 }, onRequest);
  // `Expect: 100-continue` (curl sends it for big bodies): refuse an oversized body before the client sends it.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    const declared = Number(req.headers['content-length'] ?? -1);
    if (declared > maxBody) {
      tooLarge(req, res, (req.headers['content-type'] ?? '').startsWith(MSGPACK), true);
      return;
    }
    res.writeContinue();
    onRequest(req, res);
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const body = JSON.stringify(errorBody(RPC_INVALID_REQUEST, `bad HTTP request: ${err.message}`, {}));
    socket.end(`HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  });

  await claimSocketPath(socketPath);
  // umask first so the socket is never more open than its final mode, even for an instant. For a unix socket,
  // listen() binds synchronously, so the umask is restored before any other code of the process can run (a wider
  // window would give files and directories that others create meanwhile a wrong mode).
  const listening = new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`cannot listen on ${socketPath}: ${err.message}`)));
    server.once('listening', () => {
      server.removeAllListeners('error');
      resolve();
    });
  });
  const oldMask = process.umask(0o777 & ~socketMode(options.group));
  try {
    server.listen(socketPath);
  } finally {
    process.umask(oldMask);
  }
  await listening;
  const identity = socketIdentity(socketPath);
  try {
    applySocketAccess(socketPath, options.group);
  } catch (err) {
    server.close();
    removeSocketIfOurs(socketPath, identity);
    throw err;
  }
  server.on('error', (err) => logger.error({ err }, 'API server error'));
  logger.info({ socket: socketPath, mode: socketMode(options.group).toString(8), group: options.group }, 'API listening');

  let closing: Promise<void> | undefined;
  return {
    socketPath,
    openrpc,
    close(graceMs = 2000) {
      closing ??= new Promise<void>((resolve) => {
        stopping = true;
        const force = setTimeout(() => server.closeAllConnections(), graceMs);
        force.unref();
        server.close(() => {
          clearTimeout(force);
          resolve();
        });
        removeSocketIfOurs(socketPath, identity);
        for (const scope of waiting) scope.abort();
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}

export { ApiError };
