// API v1: method table, record schemas (as the `schemas` namespace), error codes, TypeScript shapes, OpenRPC builder.
export * as schemas from './schemas.js';
export type { JsonSchema } from './schemas.js';
export * from './methods.js';
export * from './errors.js';
export * from './types.js';
export { buildOpenRpcDocument } from './openrpc.js';
