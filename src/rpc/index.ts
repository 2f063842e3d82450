export { createApiServer } from './server.js';
export { ApiError, Errors, toApiError, isCancelled, ERROR_CODES, type ErrorName } from './errors.js';
export { typedMethods } from './types.js';
export type { ApiServer, ApiServerOptions, Handler, HandlerContext, TypedHandlers } from './types.js';
