// Params and result validators, compiled once at start (ajv, all errors reported), and the translation of ajv's
// errors into the API's `data.errors: [{path, message}]` where `path` is a JSON Pointer into params naming the field.
import { Ajv, type ErrorObject as AjvError, type ValidateFunction } from 'ajv';
import type { MethodSpec } from '../../api/v1/methods.js';
import { withComponentRefs } from '../../api/v1/refs.js';
import { COMPONENTS } from '../../api/v1/schemas.js';

export interface FieldError {
  path: string;
  message: string;
}

export interface CompiledMethod {
  validateParams: ValidateFunction;
  validateResult: ValidateFunction;
}

export function createAjv(): Ajv {
  // strict: a schema mistake (unknown keyword, type-less constraint) fails at start, not at the first request.
  // optimize: false: compiling all API schemas takes a third of the time; validation speed is about the same.
  return new Ajv({ allErrors: true, strict: true, strictTypes: true, strictRequired: true, verbose: true, code: { optimize: false } });
}

const COMPONENT_ID = 'https://xenopsd-ng.invalid/api/v1/';

/** An ajv instance that knows the named records (each compiled once, referenced from method schemas). */
export function createApiAjv(): Ajv {
  const ajv = createAjv();
  for (const [name, schema] of Object.entries(COMPONENTS)) {
    ajv.addSchema({ ...(withComponentRefs(schema, COMPONENT_ID, true) as object), $id: COMPONENT_ID + name });
  }
  return ajv;
}

let sharedAjv: Ajv | undefined;
/** Compiled once per process per method spec: several servers in one process (tests) share the work. */
const compiledBySpec = new WeakMap<MethodSpec, CompiledMethod>();

export function compileMethods(specs: Record<string, MethodSpec>): Map<string, CompiledMethod> {
  const ajv = (sharedAjv ??= createApiAjv());
  const compile = (schema: unknown) => ajv.compile(withComponentRefs(schema, COMPONENT_ID, false) as object);
  const compiled = new Map<string, CompiledMethod>();
  for (const [name, spec] of Object.entries(specs)) {
    let c = compiledBySpec.get(spec);
    if (!c) {
      try {
        c = { validateParams: compile(spec.params), validateResult: compile(spec.result) };
      } catch (err) {
        throw new Error(`API schema of ${name} does not compile: ${(err as Error).message}`);
      }
      compiledBySpec.set(spec, c);
    }
    compiled.set(name, c);
  }
  return compiled;
}

function escapePointer(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

function describe(e: AjvError): FieldError {
  switch (e.keyword) {
    case 'additionalProperties':
      return { path: `${e.instancePath}/${escapePointer(String(e.params.additionalProperty))}`, message: 'unknown field' };
    case 'required':
      return { path: `${e.instancePath}/${escapePointer(String(e.params.missingProperty))}`, message: 'is required' };
    case 'enum':
      return { path: e.instancePath, message: `must be one of: ${(e.params.allowedValues as unknown[]).join(', ')}` };
    case 'pattern': {
      const description = (e.parentSchema as { description?: string } | undefined)?.description;
      return { path: e.instancePath, message: description ? `must be a ${description}` : `must match ${e.params.pattern}` };
    }
    case 'propertyNames':
      return { path: e.instancePath, message: `has a bad key ${JSON.stringify(e.params.propertyName)}` };
    default:
      return { path: e.instancePath, message: e.message ?? `fails ${e.keyword}` };
  }
}

/** ajv errors → one entry per bad field (propertyNames errors come with a duplicate we drop). */
export function fieldErrors(errors: AjvError[] | null | undefined): FieldError[] {
  const out: FieldError[] = [];
  const seen = new Set<string>();
  for (const e of errors ?? []) {
    if (e.keyword === 'propertyNames' || e.propertyName !== undefined) {
      // ajv reports a bad key twice (the key's own failure, then propertyNames); keep one line per key.
      if (e.keyword !== 'propertyNames') continue;
    }
    const fe = describe(e);
    const key = fe.path + '\0' + fe.message;
    if (!seen.has(key)) {
      seen.add(key);
      out.push(fe);
    }
  }
  return out;
}

export function summarize(errors: FieldError[]): string {
  const shown = errors.slice(0, 5).map((e) => `${e.path || '(params)'} ${e.message}`);
  if (errors.length > 5) shown.push(`and ${errors.length - 5} more`);
  return `invalid params: ${shown.join('; ')}`;
}
