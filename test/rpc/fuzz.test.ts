// Seeded fuzzing of the server: mutated and random request bodies (JSON and msgpack) never crash it, and every answer
// is a well-formed JSON-RPC response (or 204 for notifications) with a spec-conformant error code.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent } from 'node:http';
import { pack } from 'msgpackr';
import { createApiServer } from '../../src/rpc/server.js';
import type { ApiServer } from '../../src/rpc/types.js';
import { Errors } from '../../src/rpc/errors.js';
import { compileMethods } from '../../src/rpc/validation.js';
import { METHODS } from '../../api/v1/methods.js';
import { http, quietLogger, rpc, SAMPLE_UUID, sampleVmSpec, tempSocketDir } from './client.js';

function rng(seed: number): () => number {
  return () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x80000000;
  };
}

const tmp = tempSocketDir();
let server: ApiServer;
let addCalls = 0;
let invalidSeenByHandler = 0;
const addValidator = compileMethods(METHODS).get('VM.add')!.validateParams;

before(async () => {
  server = await createApiServer({
    socketPath: tmp.socketPath,
    logger: quietLogger(),
    version: '0',
    methods: {
      'API.version': async () => ({ api: '1.0', daemon: '0', backend: 'sim' }),
      'VM.add': async (p) => {
        addCalls++;
        if (!addValidator(p)) invalidSeenByHandler++;
        return { id: p.vm.id ?? SAMPLE_UUID };
      },
      'VM.stat': async (p) => {
        throw Errors.doesNotExist('vm', p.id);
      },
    },
  });
});
after(async () => {
  await server.close();
  tmp.cleanup();
});

const SEEDS = [
  { jsonrpc: '2.0', id: 1, method: 'VM.add', params: { vm: sampleVmSpec() } },
  { jsonrpc: '2.0', id: 'x', method: 'VM.stat', params: { id: SAMPLE_UUID } },
  [{ jsonrpc: '2.0', id: 1, method: 'API.version' }, { jsonrpc: '2.0', method: 'API.version' }],
];
const JUNK: unknown[] = [null, true, -1, 1.5, 1e308, '', 'x'.repeat(300), [], {}, [1, 2], { a: { b: {} } }, '\u0000', NaN];

function mutate(value: unknown, random: () => number, depth = 0): unknown {
  if (random() < 0.15 || depth > 6) return JUNK[Math.floor(random() * JUNK.length)];
  if (Array.isArray(value)) {
    const out = value.map((v) => (random() < 0.3 ? mutate(v, random, depth + 1) : v));
    if (random() < 0.2) out.push(mutate(value[0], random, depth + 1));
    return out;
  }
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = { ...(value as object) };
    const keys = Object.keys(out);
    if (keys.length > 0 && random() < 0.2) delete out[keys[Math.floor(random() * keys.length)]!];
    if (random() < 0.1) out[`extra${Math.floor(random() * 3)}`] = JUNK[Math.floor(random() * JUNK.length)];
    for (const k of Object.keys(out)) if (random() < 0.3) out[k] = mutate(out[k], random, depth + 1);
    return out;
  }
  return value;
}

function checkResponse(r: any, body: string): void {
  assert.equal(r.jsonrpc, '2.0', body);
  assert.ok('id' in r, body);
  assert.ok(('result' in r) !== ('error' in r), `exactly one of result/error: ${body}`);
  if (r.error) {
    const c = r.error.code;
    assert.ok([-32700, -32600, -32601, -32602].includes(c) || (c >= 1000 && c <= 1099), `code ${c} for ${body}`);
    assert.equal(typeof r.error.message, 'string');
    assert.equal(typeof r.error.data?.name, 'string');
  }
}

test('2000 mutated requests: every answer well formed, the server alive, no handler ran on invalid input', async () => {
  const random = rng(42);
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  let validAdds = 0;
  for (let i = 0; i < 2000; i += 8) {
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        const seed = SEEDS[Math.floor(random() * SEEDS.length)];
        const msg = mutate(seed, random);
        const asMsgpack = random() < 0.25;
        let body: string | Buffer = JSON.stringify(msg) ?? 'undefined';
        if (!asMsgpack && random() < 0.1) body = body.slice(0, Math.floor(random() * body.length)); // truncated
        if (asMsgpack) body = pack(msg);
        const a = await http(tmp.socketPath, body, { agent, contentType: asMsgpack ? 'application/msgpack' : 'application/json' });
        assert.ok([200, 204].includes(a.status), `status ${a.status}`);
        const text = typeof body === 'string' ? body : JSON.stringify(msg);
        if (a.status === 204) return;
        if (Array.isArray(a.body)) a.body.forEach((r: unknown) => checkResponse(r, text));
        else checkResponse(a.body, text);
        const answers = Array.isArray(a.body) ? a.body : [a.body];
        validAdds += answers.filter((r: any) => r.result && typeof r.result.id === 'string').length;
      }),
    );
  }
  agent.destroy();
  assert.equal(invalidSeenByHandler, 0, 'a handler never sees params that fail their schema');
  assert.ok(addCalls >= validAdds && validAdds > 0, `some mutated VM.add requests stayed valid (${validAdds})`);
  assert.equal((await rpc(tmp.socketPath, 'API.version')).result.api, '1.0');
});
