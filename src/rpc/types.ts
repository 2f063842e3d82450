// Types shared by the API server and the code that registers methods on it.
import type { Logger } from 'pino';
import type { MethodName, MethodParams, MethodResults } from '../../api/v1/types.js';

export interface HandlerContext {
  /** The JSON-RPC method name. */
  method: string;
  /** pino child logger of the request. */
  logger: Logger;
  /** Aborted when the client's connection closes (long-polls stop waiting). Created on first use. */
  readonly signal: AbortSignal;
}

/** A method implementation. `params` are already validated against api/v1 (never undefined; {} when absent). */
export type Handler = (params: any, ctx: HandlerContext) => Promise<unknown>;

/** Handlers checked by TypeScript against api/v1/types.ts (params in, result out). */
export type TypedHandlers = {
  [K in MethodName]?: (params: MethodParams[K], ctx: HandlerContext) => Promise<MethodResults[K]>;
};

/** Identity at run time; lets TypeScript check a handler map against the API types. */
export function typedMethods(handlers: TypedHandlers): Record<string, Handler> {
  return handlers as Record<string, Handler>;
}

export interface ApiServerOptions {
  /** Path of the unix socket to listen on; its directory is created if missing. */
  socketPath: string;
  /** Group (name or gid) that may use the socket: mode 0660 and chgrp; without it the mode is 0600. */
  group?: string | number;
  logger: Logger;
  /** Implementations, by method name. Every name must be in api/v1 METHODS. Missing ones answer -32601. */
  methods: Record<string, Handler>;
  /** The daemon's version (semver), reported in the OpenRPC document's x-daemon-version. */
  version: string;
  /** Largest request body accepted, bytes (default 1 MiB). */
  maxBodyBytes?: number;
  /** Largest batch accepted, requests (default 1000). */
  maxBatch?: number;
  /** Validate each result against its schema and answer INTERNAL on a mismatch (default true). */
  validateResults?: boolean;
}

export interface ApiServer {
  readonly socketPath: string;
  /** The OpenRPC document served at GET /v1/openrpc.json and by rpc.discover. */
  readonly openrpc: Record<string, unknown>;
  /**
   * Stop listening and remove the socket file; requests in flight get their answers (long-polls answer at once with
   * what they have), then connections close. Connections still open after graceMs (default 2000) are cut.
   */
  close(graceMs?: number): Promise<void>;
}
