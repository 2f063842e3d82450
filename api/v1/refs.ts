// Replaces each named record (COMPONENTS, found by object identity) inside a schema by a $ref, so a record is
// written once: in the OpenRPC document under components.schemas, and in ajv as one compiled function.
import { COMPONENTS } from './schemas.js';

const nameOf = new Map<unknown, string>(Object.entries(COMPONENTS).map(([name, schema]) => [schema, name]));

/** A copy of `schema` with every named record below the root replaced by {$ref: prefix + name}. */
export function withComponentRefs(schema: unknown, prefix: string, isRoot = true): unknown {
  if (!isRoot && nameOf.has(schema)) return { $ref: prefix + nameOf.get(schema) };
  if (Array.isArray(schema)) return schema.map((s) => withComponentRefs(s, prefix, false));
  if (schema && typeof schema === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(schema)) out[k] = withComponentRefs(v, prefix, false);
    return out;
  }
  return schema;
}
