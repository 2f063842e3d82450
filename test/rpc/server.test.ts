// The API server over a real unix socket: every JSON-RPC error path, batch, notifications, msgpack, body limit,
// socket ownership and mode, and handler application errors.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { join } from 'node:path';
import { pack } from 'msgpackr';
import { createApiServer } from '../../src/rpc/server.js';
import { Errors } from '../../src/rpc/errors.js';
import type { ApiServer, Handler } from '../../src/rpc/types.js';
import { UpdatesLog } from '../../src/updates/log.js';
import { updatesMethods } from '../../src/updates/methods.js';
import { http, quietLogger, rpc, rpcMsgpack, SAMPLE_UUID, sampleVmSpec, tempSocketDir } from './client.js';

const MISSING = 'ffffffff-ffff-4fff-8fff-ffffffffffff';
const BAD_RESULT = 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb';
const THROWS = 'cccccccc-cccc-4ccc-8ccc-cccccccccccc';

function fakeMethods(calls: { add: number; notified: number }, updates: UpdatesLog): Record<string, Handler> {
  return {
    'API.version': async () => ({ api: '1.0', daemon: '0.1.0', backend: 'sim' }),
    'VM.add': async (p) => {
      calls.add++;
      return { id: p.vm.id ?? SAMPLE_UUID };
    },
    'VM.stat': async (p) => {
      if (p.id === MISSING) throw Errors.doesNotExist('vm', p.id);
      if (p.id === BAD_RESULT) return { vm: { id: p.id }, state: { power_state: 'on' } };
      if (p.id === THROWS) throw new Error('boom');
      return { vm: sampleVmSpec(), state: { power_state: 'running', domid: 1, cpu_time_s: undefined } };
    },
    'VM.shutdown': async () => {
      throw Errors.badPowerState('halted', ['running', 'paused']);
    },
    'VM.pause': async () => {
      calls.notified++;
      return { task: 'x' };
    },
    ...updatesMethods(updates),
  };
}

describe('API server', () => {
  const tmp = tempSocketDir();
  const calls = { add: 0, notified: 0 };
  const updates = new UpdatesLog();
  let server: ApiServer;
  const S = tmp.socketPath;

  before(async () => {
    server = await createApiServer({ socketPath: S, logger: quietLogger(), methods: fakeMethods(calls, updates), version: '0.1.0' });
  });
  after(async () => {
    await server.close();
    tmp.cleanup();
  });

  test('a curl-style request (form content type) works; socket is mode 0600', async () => {
    const a = await http(S, '{"jsonrpc":"2.0","id":1,"method":"API.version"}', { contentType: 'application/x-www-form-urlencoded' });
    assert.equal(a.status, 200);
    assert.equal(a.headers['content-type'], 'application/json');
    assert.deepEqual(a.body, { jsonrpc: '2.0', id: 1, result: { api: '1.0', daemon: '0.1.0', backend: 'sim' } });
    assert.equal(statSync(S).mode & 0o777, 0o600);
  });

  test('GET /v1/openrpc.json and rpc.discover return the OpenRPC document', async () => {
    const a = await http(S, undefined, { method: 'GET', path: '/v1/openrpc.json' });
    assert.equal(a.status, 200);
    assert.equal(a.body.openrpc, '1.3.2');
    assert.equal(a.body['x-daemon-version'], '0.1.0');
    const d = await rpc(S, 'rpc.discover');
    assert.deepEqual(d.result, a.body);
    assert.equal((await rpc(S, 'rpc.discover', { x: 1 })).error.code, -32602);
  });

  test('-32700 on malformed JSON and on an empty body', async () => {
    for (const body of ['{"jsonrpc":"2.0",', '', 'nul', '\u00ff\u00fe']) {
      const a = await http(S, body);
      assert.equal(a.status, 200);
      assert.equal(a.body.error.code, -32700, body);
      assert.equal(a.body.id, null);
      assert.equal(a.body.error.data.name, 'PARSE_ERROR');
    }
  });

  test('-32600 on requests that are not valid JSON-RPC', async () => {
    const cases: [unknown, unknown][] = [
      [42, null],
      ['"x"', null],
      [{ id: 1, method: 'API.version' }, 1], // no jsonrpc
      [{ jsonrpc: '1.0', id: 2, method: 'API.version' }, 2],
      [{ jsonrpc: '2.0', id: 3, method: 7 }, 3],
      [{ jsonrpc: '2.0', id: { a: 1 }, method: 'API.version' }, null],
      [{ jsonrpc: '2.0', id: 4, method: 'API.version', params: 'x' }, 4],
      [{ jsonrpc: '2.0', id: 5, method: 'API.version', extra: true }, 5],
      [[], null],
    ];
    for (const [msg, id] of cases) {
      const a = await http(S, typeof msg === 'string' ? msg : JSON.stringify(msg));
      assert.equal(a.body.error?.code, -32600, JSON.stringify(msg));
      assert.equal(a.body.id, id, JSON.stringify(msg));
      assert.equal(a.body.error.data.name, 'INVALID_REQUEST');
    }
  });

  test('-32601 on an unknown method and on a declared but unimplemented one', async () => {
    const a = await rpc(S, 'VM.explode', {});
    assert.equal(a.error.code, -32601);
    assert.equal(a.error.data.method, 'VM.explode');
    const b = await rpc(S, 'HOST.stat');
    assert.equal(b.error.code, -32601);
    assert.match(b.error.message, /not implemented/);
  });

  test('-32602 names each bad field: wrong types, unknown fields, missing fields, positional params', async () => {
    const spec = sampleVmSpec();
    spec.memory.max_mib = 'lots';
    spec.vcpus.cores = 4;
    delete spec.name;
    const a = await rpc(S, 'VM.add', { vm: spec, force: true });
    assert.equal(a.error.code, -32602);
    assert.equal(a.error.data.name, 'INVALID_PARAMS');
    assert.deepEqual(
      a.error.data.errors.map((e: { path: string }) => e.path).sort(),
      ['/force', '/vm/memory/max_mib', '/vm/name', '/vm/vcpus/cores'],
    );
    for (const e of a.error.data.errors) assert.equal(typeof e.message, 'string');
    assert.match(a.error.message, /\/vm\/memory\/max_mib must be integer/);
    assert.equal(calls.add, 0, 'nothing ran');

    const b = await rpc(S, 'VM.stat', [SAMPLE_UUID]);
    assert.equal(b.error.code, -32602);
    const c = await rpc(S, 'VM.stat', {});
    assert.deepEqual(c.error.data.errors, [{ path: '/id', message: 'is required' }]);
    const d = await rpc(S, 'VM.stat', { id: 'not-a-uuid' });
    assert.equal(d.error.data.errors[0].path, '/id');
    const e = await rpc(S, 'UPDATES.get', { from: -1, timeout_s: 'soon' });
    assert.deepEqual(e.error.data.errors.map((x: { path: string }) => x.path).sort(), ['/from', '/timeout_s']);
  });

  test('application errors carry code and a stable data.name; other throws are INTERNAL', async () => {
    const a = await rpc(S, 'VM.stat', { id: MISSING });
    assert.equal(a.error.code, 1000);
    assert.equal(a.error.data.name, 'DOES_NOT_EXIST');
    const b = await rpc(S, 'VM.shutdown', { id: SAMPLE_UUID });
    assert.equal(b.error.code, 1002);
    assert.deepEqual(b.error.data, { name: 'BAD_POWER_STATE', actual: 'halted', expected: ['running', 'paused'] });
    const c = await rpc(S, 'VM.stat', { id: THROWS });
    assert.equal(c.error.code, 1099);
    assert.equal(c.error.data.name, 'INTERNAL');
    assert.match(c.error.message, /boom/);
  });

  test('a result that does not match its schema is reported as INTERNAL, not sent', async () => {
    const a = await rpc(S, 'VM.stat', { id: BAD_RESULT });
    assert.equal(a.error.code, 1099);
    assert.ok(a.error.data.errors.length > 0);
    assert.equal(a.result, undefined);
  });

  test('batch: answers in any order by id, errors per element, notifications unanswered', async () => {
    const batch = [
      { jsonrpc: '2.0', id: 'a', method: 'API.version' },
      { jsonrpc: '2.0', id: 'b', method: 'VM.stat', params: { id: MISSING } },
      { jsonrpc: '2.0', method: 'VM.pause', params: { id: SAMPLE_UUID } },
      { jsonrpc: '2.0', id: 'c', method: 'nope' },
      { foo: 1 },
      { jsonrpc: '2.0', id: 'd', method: 'VM.stat', params: { id: 5 } },
    ];
    const before = calls.notified;
    const a = await http(S, JSON.stringify(batch));
    assert.equal(a.status, 200);
    assert.equal(a.body.length, 5);
    const byId = new Map(a.body.map((r: { id: unknown }) => [r.id, r]));
    assert.equal((byId.get('a') as any).result.backend, 'sim');
    assert.equal((byId.get('b') as any).error.code, 1000);
    assert.equal((byId.get('c') as any).error.code, -32601);
    assert.equal((byId.get('d') as any).error.code, -32602);
    assert.equal((byId.get(null) as any).error.code, -32600);
    assert.equal(calls.notified, before + 1, 'the notification ran');
  });

  test('a notification (no id) runs and gets 204 with no body; an all-notification batch too', async () => {
    const before = calls.notified;
    const a = await http(S, JSON.stringify({ jsonrpc: '2.0', method: 'VM.pause', params: { id: SAMPLE_UUID } }));
    assert.equal(a.status, 204);
    assert.equal(a.raw.length, 0);
    const b = await http(S, JSON.stringify([{ jsonrpc: '2.0', method: 'VM.pause', params: { id: SAMPLE_UUID } }, { jsonrpc: '2.0', method: 'nope' }]));
    assert.equal(b.status, 204);
    assert.equal(calls.notified, before + 2);
    const c = await http(S, JSON.stringify({ jsonrpc: '2.0', id: null, method: 'API.version' }));
    assert.equal(c.status, 200, 'id null is a request, not a notification');
    assert.equal(c.body.id, null);
  });

  test('a batch over the limit is refused as a whole', async () => {
    const batch = Array.from({ length: 1001 }, (_, i) => ({ jsonrpc: '2.0', id: i, method: 'API.version' }));
    const a = await http(S, JSON.stringify(batch));
    assert.equal(a.body.error.code, -32600);
    assert.match(a.body.error.message, /1001.*1000/);
  });

  test('msgpack in, msgpack out; bad msgpack is -32700 in msgpack', async () => {
    const a = await rpcMsgpack(S, { jsonrpc: '2.0', id: 7, method: 'VM.stat', params: { id: SAMPLE_UUID } });
    assert.equal(a.headers['content-type'], 'application/msgpack');
    assert.equal(a.body.id, 7);
    assert.equal(a.body.result.vm.name, 'vm1');
    assert.deepEqual(a.body.result.state, { power_state: 'running', domid: 1 }, 'an undefined field is left out, as in JSON');
    const b = await rpcMsgpack(S, { jsonrpc: '2.0', id: 8, method: 'VM.add', params: { vm: { name: 1 } } });
    assert.equal(b.body.error.code, -32602);
    const c = await http(S, Buffer.from([0xc1, 0xff, 0x00]), { contentType: 'application/msgpack' });
    assert.equal(c.headers['content-type'], 'application/msgpack');
    assert.equal(c.body.error.code, -32700);
    const d = await rpcMsgpack(S, [{ jsonrpc: '2.0', id: 1, method: 'API.version' }, { jsonrpc: '2.0', id: 2, method: 'nope' }]);
    assert.equal(d.body.length, 2);
  });

  test('a body over 1 MiB is refused with a clear error and nothing runs; the server keeps serving', async () => {
    const spec = sampleVmSpec();
    spec.boot.cmdline = 'x'.repeat(1024);
    const huge = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'VM.add', params: { vm: spec, pad: 'y'.repeat(1.5 * 1024 * 1024) } });
    const a = await http(S, huge);
    assert.equal(a.status, 413);
    assert.equal(a.body.error.code, -32600);
    assert.match(a.body.error.message, /larger than the limit of 1048576 bytes/);
    // Chunked (no Content-Length), far beyond the drain allowance: answered, then the connection is closed.
    const b = await new Promise<string>((resolve, reject) => {
      const sock = connect(S);
      let got = '';
      sock.on('data', (d) => (got += d.toString()));
      sock.on('close', () => resolve(got));
      sock.on('error', () => resolve(got));
      sock.on('connect', () => {
        sock.write('POST /v1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n');
        const payload = Buffer.alloc(256 * 1024, 0x20);
        const framed = Buffer.concat([Buffer.from(`${payload.length.toString(16)}\r\n`), payload, Buffer.from('\r\n')]);
        let sent = 0;
        const pump = () => {
          while (sent < 64 && sock.writable) {
            sent++;
            if (!sock.write(framed)) {
              sock.once('drain', pump);
              return;
            }
          }
        };
        pump();
      });
      setTimeout(() => reject(new Error('no answer to a huge chunked body')), 10_000).unref();
    });
    assert.match(b, /^HTTP\/1\.1 413/);
    assert.match(b, /larger than the limit/);
    // A declared Content-Length far beyond the limit is refused before the body is read.
    const c = await new Promise<string>((resolve) => {
      const sock = connect(S, () => sock.write('POST /v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n{'));
      let got = '';
      sock.on('data', (d) => (got += d.toString()));
      sock.on('close', () => resolve(got));
    });
    assert.match(c, /^HTTP\/1\.1 413/);
    // With Expect: 100-continue the body is refused before the client sends it.
    const d = await new Promise<string>((resolve) => {
      const sock = connect(S, () => sock.write('POST /v1 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2000000\r\n\r\n'));
      let got = '';
      sock.on('data', (data) => (got += data.toString()));
      sock.on('close', () => resolve(got));
    });
    assert.match(d, /^HTTP\/1\.1 413/);
    assert.doesNotMatch(d, /100 Continue/);
    assert.equal(calls.add, 0, 'VM.add never ran');
    assert.equal((await rpc(S, 'API.version')).result.api, '1.0');
  });

  test('/v2 is not served (404 with a JSON-RPC error); GET /v1 is 405; other paths 404', async () => {
    const a = await http(S, '{"jsonrpc":"2.0","id":1,"method":"API.version"}', { path: '/v2' });
    assert.equal(a.status, 404);
    assert.equal(a.body.error.code, -32600);
    assert.match(a.body.error.message, /\/v2 is not served/);
    const b = await http(S, undefined, { method: 'GET', path: '/v1' });
    assert.equal(b.status, 405);
    assert.equal(b.headers.allow, 'POST');
    const c = await http(S, undefined, { method: 'GET', path: '/' });
    assert.equal(c.status, 404);
  });

  test('keep-alive: many requests on one connection', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const ports = new Set<unknown>();
    for (let i = 0; i < 20; i++) {
      const a = await http(S, JSON.stringify({ jsonrpc: '2.0', id: i, method: 'API.version' }), { agent });
      assert.equal(a.body.id, i);
      ports.add(a.headers.connection);
    }
    assert.deepEqual([...ports], ['keep-alive']);
    agent.destroy();
  });

  test('a long-poll ends when its client goes away (the handler signal aborts)', async () => {
    const sock = connect(S);
    await new Promise((r) => sock.once('connect', r));
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'UPDATES.get', params: { from: updates.head, timeout_s: 60 } });
    sock.write(`POST /v1 HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    for (let i = 0; i < 100 && updates.waiting === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(updates.waiting, 1);
    sock.destroy();
    for (let i = 0; i < 100 && updates.waiting > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(updates.waiting, 0);
  });

  test('clients that break off mid-body or send garbage HTTP do not hurt the server', async () => {
    const raw = (data: string, thenDestroy: boolean) =>
      new Promise<string>((resolve) => {
        const sock = connect(S, () => {
          sock.write(data);
          if (thenDestroy) setTimeout(() => sock.destroy(), 20);
        });
        let got = '';
        sock.on('data', (d) => (got += d.toString()));
        sock.on('close', () => resolve(got));
        sock.on('error', () => resolve(got));
      });
    assert.equal(await raw('POST /v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"jsonrpc"', true), '');
    assert.match(await raw('THIS IS NOT HTTP\r\n\r\n', false), /^HTTP\/1\.1 400[^]*bad HTTP request/);
    assert.equal((await rpc(S, 'API.version')).result.api, '1.0');
  });

  test('a second server on the same socket refuses to start', async () => {
    await assert.rejects(
      createApiServer({ socketPath: S, logger: quietLogger(), methods: {}, version: '0' }),
      /another daemon is answering/,
    );
    assert.equal((await rpc(S, 'API.version')).result.api, '1.0', 'the first one is untouched');
  });

  test('msgpack of a request built with pack() round-trips ids of both types', async () => {
    const a = await http(S, pack({ jsonrpc: '2.0', id: 'str-id', method: 'API.version' }), { contentType: 'application/msgpack' });
    assert.equal(a.body.id, 'str-id');
  });
});

describe('API server socket handling', () => {
  test('a stale socket is removed; a non-socket file is refused; close removes the socket', async () => {
    const tmp = tempSocketDir();
    try {
      // A stale socket: left by a process killed with SIGKILL (no chance to remove it).
      const stale = join(tmp.dir, 'stale.sock');
      const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stale)}, () => console.log('up'))`]);
      await new Promise((r) => child.stdout.once('data', r));
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      assert.ok(statSync(stale).isSocket());
      const s1 = await createApiServer({ socketPath: stale, logger: quietLogger(), methods: {}, version: '0' });
      assert.equal((await rpc(stale, 'rpc.discover')).result.info.version, '1.0');
      await s1.close();
      assert.throws(() => statSync(stale), /ENOENT/);

      const file = join(tmp.dir, 'file.sock');
      writeFileSync(file, 'not a socket');
      await assert.rejects(
        createApiServer({ socketPath: file, logger: quietLogger(), methods: {}, version: '0' }),
        /exists and is not a socket/,
      );
    } finally {
      tmp.cleanup();
    }
  });

  test('with a group the socket is 0660 and owned by that group; an unknown group is an error', async () => {
    const tmp = tempSocketDir();
    try {
      const gid = process.getgid!();
      const umaskBefore = process.umask();
      const s = await createApiServer({ socketPath: tmp.socketPath, group: gid, logger: quietLogger(), methods: {}, version: '0' });
      assert.equal(process.umask(), umaskBefore, 'the process umask is restored');
      const st = statSync(tmp.socketPath);
      assert.equal(st.mode & 0o777, 0o660);
      assert.equal(st.gid, gid);
      await s.close();
      await assert.rejects(
        createApiServer({ socketPath: tmp.socketPath, group: 'no-such-group-xyz', logger: quietLogger(), methods: {}, version: '0' }),
        /group no-such-group-xyz does not exist/,
      );
      assert.throws(() => statSync(tmp.socketPath), /ENOENT/, 'no socket left behind');
    } finally {
      tmp.cleanup();
    }
  });

  test('close: requests in flight get their answers, long-polls answer at once, then it resolves promptly', async () => {
    const tmp = tempSocketDir();
    const updates = new UpdatesLog();
    try {
      const s = await createApiServer({
        socketPath: tmp.socketPath,
        logger: quietLogger(),
        version: '0',
        methods: {
          ...updatesMethods(updates),
          'API.version': async () => {
            await new Promise((r) => setTimeout(r, 200));
            return { api: '1.0', daemon: '0', backend: 'sim' };
          },
        },
      });
      const agent = new Agent({ keepAlive: true });
      const slow = http(tmp.socketPath, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'API.version' }), { agent });
      const poll = http(tmp.socketPath, JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'UPDATES.get', params: { from: updates.head, timeout_s: 60 } }), { agent });
      while (updates.waiting === 0) await new Promise((r) => setTimeout(r, 5));
      const t0 = Date.now();
      await s.close();
      const elapsed = Date.now() - t0;
      assert.equal((await slow).body.result.api, '1.0');
      assert.deepEqual((await poll).body.result.updates, []);
      assert.ok(elapsed < 1500, `close took ${elapsed} ms`);
      assert.throws(() => statSync(tmp.socketPath), /ENOENT/);
      agent.destroy();
    } finally {
      tmp.cleanup();
    }
  });

  test('a socket path too long for sun_path is refused with a clear error', async () => {
    const tmp = tempSocketDir();
    try {
      await assert.rejects(
        createApiServer({ socketPath: join(tmp.dir, 'x'.repeat(120), 'api.sock'), logger: quietLogger(), methods: {}, version: '0' }),
        /is too long \(\d+ bytes; a unix socket path may have 107\)/,
      );
    } finally {
      tmp.cleanup();
    }
  });

  test('a handler for a method the API does not declare is refused at start', async () => {
    const tmp = tempSocketDir();
    try {
      await assert.rejects(
        createApiServer({ socketPath: tmp.socketPath, logger: quietLogger(), methods: { 'VM.teleport': async () => ({}) }, version: '0' }),
        /VM.teleport has a handler but no schema/,
      );
    } finally {
      tmp.cleanup();
    }
  });
});
