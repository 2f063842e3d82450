// Builds the OpenRPC document of API v1 from the method table and the record schemas. Named records
// (schemas.ts COMPONENTS) are emitted once under components.schemas and referenced by $ref, found by object identity.
import { COMPONENTS, type JsonSchema } from './schemas.js';
import { withComponentRefs } from './refs.js';
import { API_VERSION, METHODS } from './methods.js';
import { ERROR_CODES } from './errors.js';

const REF = '#/components/schemas/';
const withRefs = (schema: unknown) => withComponentRefs(schema, REF, false);

export function buildOpenRpcDocument(): Record<string, unknown> {
  const methods = Object.entries(METHODS).map(([name, spec]) => {
    const props = (spec.params.properties ?? {}) as Record<string, JsonSchema>;
    const required = new Set((spec.params.required ?? []) as string[]);
    return {
      name,
      summary: spec.summary,
      paramStructure: 'by-name',
      params: Object.entries(props).map(([pname, pschema]) => ({
        name: pname,
        required: required.has(pname),
        schema: withRefs(pschema),
      })),
      result: { name: spec.async ? 'task' : 'result', schema: withRefs(spec.result) },
      errors: spec.errors.map((e) => ({ code: ERROR_CODES[e], message: e })),
      ...(spec.async ? { 'x-async': true } : {}),
    };
  });
  const schemas: Record<string, unknown> = {};
  for (const [name, schema] of Object.entries(COMPONENTS)) schemas[name] = withComponentRefs(schema, REF, true);
  return {
    openrpc: '1.3.2',
    info: {
      title: 'xenopsd-ng',
      version: API_VERSION,
      description:
        'Low-level VM operations daemon of a Xen host. JSON-RPC 2.0 over HTTP/1.1 on a unix socket, POST /v1. ' +
        'Params are by name and validated; unknown fields are rejected (-32602, data.errors: [{path, message}]). ' +
        'Application errors have codes 1000-1099 and a stable data.name. Methods marked x-async return {task} at once.',
    },
    servers: [{ name: 'unix socket', url: 'http://localhost/v1' }],
    methods,
    components: { schemas },
  };
}
