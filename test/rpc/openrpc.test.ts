// The API v1 contract: every method of issue 4 with its exact name, strict params schemas, sample records valid,
// and the committed api/openrpc.json equal to what `npm run openrpc` generates.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { METHODS } from '../../api/v1/methods.js';
import { COMPONENTS, type JsonSchema } from '../../api/v1/schemas.js';
import { ERROR_CODES } from '../../api/v1/errors.js';
import { OPENRPC_PATH, renderOpenRpc } from '../../scripts/openrpc.js';
import { createAjv, fieldErrors } from '../../src/rpc/validation.js';
import type { TaskRecord, VmState } from '../../api/v1/types.js';
import { sampleVmSpec, SAMPLE_UUID } from './client.js';

const ISSUE_METHODS = [
  'API.version', 'HOST.stat',
  'VM.add', 'VM.remove', 'VM.list', 'VM.stat', 'VM.start', 'VM.shutdown', 'VM.reboot', 'VM.pause', 'VM.unpause',
  'VM.set_vcpus', 'VM.set_memory',
  'TASK.stat', 'TASK.wait', 'TASK.cancel', 'TASK.list', 'TASK.destroy',
  'UPDATES.get',
];
const ASYNC = ['VM.start', 'VM.shutdown', 'VM.reboot', 'VM.pause', 'VM.unpause', 'VM.set_vcpus', 'VM.set_memory'];

test('the committed api/openrpc.json is what the generator writes (run `npm run openrpc`)', () => {
  assert.equal(readFileSync(OPENRPC_PATH, 'utf8'), renderOpenRpc());
});

test('API v1 has exactly the methods of issue 4, async ones returning {task}', () => {
  assert.deepEqual(Object.keys(METHODS).sort(), [...ISSUE_METHODS].sort());
  for (const name of ISSUE_METHODS) assert.equal(METHODS[name]!.async, ASYNC.includes(name), name);
  const doc = JSON.parse(readFileSync(OPENRPC_PATH, 'utf8'));
  assert.deepEqual(doc.methods.map((m: { name: string }) => m.name).sort(), [...ISSUE_METHODS].sort());
});

function objectsWithoutClosedProperties(schema: unknown, path: string, out: string[]): void {
  if (!schema || typeof schema !== 'object') return;
  const s = schema as JsonSchema;
  if (s.type === 'object' && s.properties !== undefined && s.additionalProperties !== false) out.push(path);
  for (const [k, v] of Object.entries(s)) {
    if (Array.isArray(v)) v.forEach((x, i) => objectsWithoutClosedProperties(x, `${path}/${k}/${i}`, out));
    else objectsWithoutClosedProperties(v, `${path}/${k}`, out);
  }
}

test('every params object (nested ones too) rejects unknown fields', () => {
  const open: string[] = [];
  for (const [name, spec] of Object.entries(METHODS)) {
    assert.equal(spec.params.type, 'object', name);
    assert.equal(spec.params.additionalProperties, false, name);
    objectsWithoutClosedProperties(spec.params, name, open);
  }
  assert.deepEqual(open, []);
});

test('every schema compiles in ajv strict mode; error codes are unique and in 1000-1099', () => {
  const ajv = createAjv();
  for (const [name, spec] of Object.entries(METHODS)) {
    ajv.compile(spec.params);
    ajv.compile(spec.result);
    for (const e of spec.errors) assert.ok(ERROR_CODES[e], `${name}: error ${e} has a code`);
  }
  const codes = Object.values(ERROR_CODES);
  assert.equal(new Set(codes).size, codes.length);
  for (const c of codes) assert.ok(c >= 1000 && c <= 1099);
});

test('sample VM spec, VM state and task records are valid; field names are as issue 4 names them', () => {
  const ajv = createAjv();
  const spec = sampleVmSpec();
  const validSpec = ajv.compile(COMPONENTS.VmSpec!);
  assert.ok(validSpec(spec), JSON.stringify(validSpec.errors));
  assert.deepEqual(
    Object.keys((COMPONENTS.VmSpec!.properties as object)).sort(),
    ['boot', 'id', 'memory', 'name', 'on_crash', 'on_poweroff', 'on_reboot', 'type', 'vbds', 'vcpus', 'vifs', 'xenstore_data'],
  );
  const state: VmState = { power_state: 'running', domid: 5, memory_actual_mib: 128, vcpus_online: 1, cpu_time_s: 0.5, last_start: new Date().toISOString() };
  const validState = ajv.compile(COMPONENTS.VmState!);
  assert.ok(validState(state), JSON.stringify(validState.errors));
  assert.deepEqual(Object.keys(COMPONENTS.VmState!.properties as object).sort(), Object.keys(state).sort());
  const task: TaskRecord = {
    id: 't1', method: 'VM.start', vm: SAMPLE_UUID, state: 'failed', progress: 0.5, created: new Date().toISOString(),
    finished: new Date().toISOString(), result: { any: 'thing' }, error: { code: 1003, message: 'cancelled', data: { name: 'CANCELLED' } },
    subtasks: [{ name: 'VM_create', state: 'completed' }],
  };
  const validTask = ajv.compile(COMPONENTS.Task!);
  assert.ok(validTask(task), JSON.stringify(validTask.errors));
  assert.deepEqual(Object.keys(COMPONENTS.Task!.properties as object).sort(), Object.keys(task).sort());
});

test('bad VM specs are rejected with one error per bad field, named by JSON pointer', () => {
  const validate = createAjv().compile(METHODS['VM.add']!.params);
  const spec = sampleVmSpec();
  spec.memory.max_mib = '256';
  spec.memory.extra = 1;
  spec.type = 'xen';
  delete spec.boot.kernel;
  spec.vbds[0].device = 'sda1';
  spec.xenstore_data['vm-data/n'] = 5;
  spec.on_crash = 'explode';
  assert.equal(validate({ vm: spec, other: true }), false);
  const errors = fieldErrors(validate.errors);
  const paths = errors.map((e) => e.path).sort();
  assert.deepEqual(paths, [
    '/other', '/vm/boot/kernel', '/vm/memory/extra', '/vm/memory/max_mib', '/vm/on_crash', '/vm/type', '/vm/vbds/0/device',
    '/vm/xenstore_data/vm-data~1n',
  ]);
  assert.equal(errors.find((e) => e.path === '/other')!.message, 'unknown field');
  assert.equal(errors.find((e) => e.path === '/vm/boot/kernel')!.message, 'is required');
  assert.match(errors.find((e) => e.path === '/vm/type')!.message, /one of: pv, pvh, hvm/);
});

test('the OpenRPC document is well formed: content descriptors, errors, every $ref resolves', () => {
  const doc = JSON.parse(readFileSync(OPENRPC_PATH, 'utf8'));
  assert.match(doc.openrpc, /^1\.[0-9]+\.[0-9]+$/);
  assert.equal(typeof doc.info.title, 'string');
  assert.equal(doc.info.version, '1.0');
  const refs: string[] = [];
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        if (k === '$ref') refs.push(x as string);
        else walk(x);
      }
    }
  };
  for (const m of doc.methods) {
    assert.equal(m.paramStructure, 'by-name', m.name);
    for (const p of m.params) {
      assert.equal(typeof p.name, 'string');
      assert.equal(typeof p.required, 'boolean');
      assert.ok(p.schema && typeof p.schema === 'object', `${m.name}.${p.name} has a schema`);
    }
    assert.equal(typeof m.result.name, 'string');
    assert.ok(m.result.schema);
    for (const e of m.errors) assert.ok(Number.isInteger(e.code) && typeof e.message === 'string');
  }
  walk(doc);
  assert.ok(refs.length > 10);
  for (const ref of refs) {
    const m = /^#\/components\/schemas\/([A-Za-z]+)$/.exec(ref);
    assert.ok(m && doc.components.schemas[m[1]!], `dangling $ref ${ref}`);
  }
});
