// SKELETON (being written): JSON-RPC 2.0 over HTTP/1.1 on a unix socket.
import type { ApiServer, ApiServerOptions } from './types.js';
import { buildOpenRpcDocument } from '../../api/v1/openrpc.js';

export async function createApiServer(options: ApiServerOptions): Promise<ApiServer> {
  void options;
  throw new Error('createApiServer: not written yet' + String(buildOpenRpcDocument === undefined));
}
