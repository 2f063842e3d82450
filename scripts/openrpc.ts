// Writes api/openrpc.json, the OpenRPC document of API v1, from the schemas in api/v1/ (`npm run openrpc`).
// The file is committed; test/rpc/openrpc.test.ts fails when it differs from what this script would write.
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildOpenRpcDocument } from '../api/v1/openrpc.js';

export const OPENRPC_PATH = join(dirname(fileURLToPath(import.meta.url)), '..', 'api', 'openrpc.json');

export function renderOpenRpc(): string {
  return JSON.stringify(buildOpenRpcDocument(), null, 2) + '\n';
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(OPENRPC_PATH, renderOpenRpc());
  process.stdout.write(`wrote ${OPENRPC_PATH}\n`);
}
