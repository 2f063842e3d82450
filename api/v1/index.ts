// API v1: method table, record schemas, error codes, TypeScript shapes, OpenRPC document builder.
export * from './schemas.js';
export * from './methods.js';
export * from './errors.js';
export * from './types.js';
export { buildOpenRpcDocument } from './openrpc.js';
