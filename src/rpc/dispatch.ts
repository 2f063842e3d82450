// JSON-RPC 2.0 processing, independent of HTTP: envelope checks, batch, notifications, method lookup, params
// validation, the handler call, result validation, error objects.
import type { Logger } from 'pino';
import type { MethodSpec } from '../../api/v1/methods.js';
import {
  ApiError,
  Errors,
  protocolError,
  RPC_INVALID_PARAMS,
  RPC_INVALID_REQUEST,
  RPC_METHOD_NOT_FOUND,
} from './errors.js';
import type { Handler, HandlerContext } from './types.js';
import { compileMethods, type CompiledMethod, fieldErrors, summarize } from './validation.js';

type Id = string | number | null;

export interface JsonRpcResponse {
  jsonrpc: '2.0';
  id: Id;
  result?: unknown;
  error?: { code: number; message: string; data?: unknown };
}

/** What a request gives its calls: the connection's abort signal and the logger, created only when asked for. */
export interface RequestScope {
  readonly signal: AbortSignal;
  readonly logger: Logger;
}

class CallContext implements HandlerContext {
  constructor(
    readonly method: string,
    private readonly scope: RequestScope,
  ) {}
  get signal(): AbortSignal {
    return this.scope.signal;
  }
  get logger(): Logger {
    return this.scope.logger;
  }
}

interface Route {
  handler: Handler;
  compiled: CompiledMethod;
}

export interface DispatcherOptions {
  specs: Record<string, MethodSpec>;
  methods: Record<string, Handler>;
  logger: Logger;
  validateResults: boolean;
  maxBatch: number;
  /** The document rpc.discover returns. */
  openrpc: Record<string, unknown>;
}

const EMPTY_PARAMS = Object.freeze({});

const RPC_DISCOVER: MethodSpec = {
  summary: 'The OpenRPC document',
  async: false,
  params: { type: 'object', additionalProperties: false },
  result: { type: 'object' },
  errors: [],
};

function errorResponse(id: Id, err: ApiError): JsonRpcResponse {
  return { jsonrpc: '2.0', id, error: { code: err.code, message: err.message, data: err.data } };
}

export class Dispatcher {
  private readonly routes = new Map<string, Route>();
  /** Declared in the API but without an implementation in this daemon. */
  private readonly declared = new Set<string>();
  private readonly logger: Logger;
  private readonly validateResults: boolean;
  private readonly maxBatch: number;

  constructor(options: DispatcherOptions) {
    this.logger = options.logger;
    this.validateResults = options.validateResults;
    this.maxBatch = options.maxBatch;
    const specs: Record<string, MethodSpec> = { ...options.specs, 'rpc.discover': RPC_DISCOVER };
    for (const name of Object.keys(options.methods)) {
      if (!specs[name]) throw new Error(`method ${name} has a handler but no schema in api/v1; add it to the API first`);
    }
    const compiled = compileMethods(specs);
    const openrpc = options.openrpc;
    const handlers: Record<string, Handler | undefined> = { ...options.methods, 'rpc.discover': async () => openrpc };
    for (const [name, c] of compiled) {
      const handler = handlers[name];
      if (handler) this.routes.set(name, { handler, compiled: c });
      else this.declared.add(name);
    }
  }

  /** A parsed message (single request or batch) → the response to send, or null when there is none to send. */
  async handle(message: unknown, scope: RequestScope): Promise<JsonRpcResponse | JsonRpcResponse[] | null> {
    if (!Array.isArray(message)) return this.handleOne(message, scope);
    if (message.length === 0) {
      return errorResponse(null, protocolError(RPC_INVALID_REQUEST, 'invalid request: empty batch'));
    }
    if (message.length > this.maxBatch) {
      return errorResponse(
        null,
        protocolError(RPC_INVALID_REQUEST, `invalid request: batch of ${message.length} exceeds the limit of ${this.maxBatch}`, {
          limit: this.maxBatch,
        }),
      );
    }
    const answers = await Promise.all(message.map((m) => this.handleOne(m, scope)));
    const responses = answers.filter((a): a is JsonRpcResponse => a !== null);
    return responses.length > 0 ? responses : null;
  }

  private async handleOne(req: unknown, scope: RequestScope): Promise<JsonRpcResponse | null> {
    if (req === null || typeof req !== 'object' || Array.isArray(req)) {
      return errorResponse(null, protocolError(RPC_INVALID_REQUEST, 'invalid request: a request must be an object'));
    }
    const r = req as Record<string, unknown>;
    const hasId = 'id' in r;
    const id = r.id;
    if (hasId && id !== null && typeof id !== 'string' && (typeof id !== 'number' || !Number.isFinite(id))) {
      return errorResponse(null, protocolError(RPC_INVALID_REQUEST, 'invalid request: id must be a string, a number or null'));
    }
    const replyId = (hasId ? id : null) as Id;
    if (r.jsonrpc !== '2.0') {
      return errorResponse(replyId, protocolError(RPC_INVALID_REQUEST, 'invalid request: jsonrpc must be "2.0"'));
    }
    const method = r.method;
    if (typeof method !== 'string') {
      return errorResponse(replyId, protocolError(RPC_INVALID_REQUEST, 'invalid request: method must be a string'));
    }
    for (const key in r) {
      if (key !== 'jsonrpc' && key !== 'method' && key !== 'params' && key !== 'id') {
        return errorResponse(replyId, protocolError(RPC_INVALID_REQUEST, `invalid request: unknown member ${JSON.stringify(key)}`));
      }
    }
    const response = await this.call(method, r.params, scope, replyId);
    return hasId ? response : null; // a notification gets no answer, whatever happened
  }

  private async call(method: string, rawParams: unknown, scope: RequestScope, id: Id): Promise<JsonRpcResponse> {
    const route = this.routes.get(method);
    if (!route) {
      const message = this.declared.has(method)
        ? `method ${method} is part of API v1 but not implemented by this daemon`
        : `method ${method} does not exist`;
      return errorResponse(id, protocolError(RPC_METHOD_NOT_FOUND, message, { method }));
    }
    let params = rawParams;
    if (params === undefined) params = EMPTY_PARAMS;
    else if (params === null || typeof params !== 'object') {
      return errorResponse(id, protocolError(RPC_INVALID_REQUEST, 'invalid request: params must be an object'));
    } else if (Array.isArray(params)) {
      return errorResponse(
        id,
        protocolError(RPC_INVALID_PARAMS, 'invalid params: params must be an object (by name), not an array', {
          errors: [{ path: '', message: 'must be an object (params by name)' }],
        }),
      );
    }
    if (!route.compiled.validateParams(params)) {
      const errors = fieldErrors(route.compiled.validateParams.errors);
      return errorResponse(id, protocolError(RPC_INVALID_PARAMS, summarize(errors), { errors }));
    }
    let result: unknown;
    try {
      result = await route.handler(params, new CallContext(method, scope));
    } catch (err) {
      if (err instanceof ApiError) return errorResponse(id, err);
      this.logger.error({ err, method }, 'handler threw a non-API error');
      return errorResponse(id, Errors.internal(err instanceof Error ? err.message : String(err)));
    }
    if (this.validateResults && !route.compiled.validateResult(result)) {
      const errors = fieldErrors(route.compiled.validateResult.errors);
      this.logger.error({ method, errors }, 'result does not match the API schema');
      return errorResponse(id, new ApiError(1099, `internal error: result of ${method} does not match the API schema`, { name: 'INTERNAL', errors }));
    }
    return { jsonrpc: '2.0', id, result };
  }
}
