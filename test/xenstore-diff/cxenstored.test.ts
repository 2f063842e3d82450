// The C xenstored under our LD_PRELOAD shim is a working reference server: Debian's tools talk to
// it, and INTRODUCE / @introduceDomain / RELEASE / @releaseDomain behave without a hypervisor.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { cXenstoredAvailable, startCXenstored, type CXenstored } from '../support/cxenstored/index.js';
import { RawConn } from '../support/cxenstored/raw-conn.js';
import { MsgType, strings } from '../../src/xenstore/wire.js';

const run = promisify(execFile);
const toolsMissing = ['/usr/bin/xenstore-read', '/usr/bin/xenstore-write'].find((t) => !existsSync(t));
const skip = cXenstoredAvailable() ?? (toolsMissing && `${toolsMissing} missing (package xenstore-utils)`);

let dir: string;
let server: CXenstored;

before(async () => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'cxenstored-test-'));
  server = await startCXenstored({ dir });
});

after(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function tool(name: string, ...args: string[]) {
  return run(`/usr/bin/xenstore-${name}`, args, { env: { ...process.env, XENSTORED_PATH: server.socketPath }, timeout: 5000 });
}

test('Debian xenstore-write and xenstore-read work against the shimmed C xenstored', { skip }, async () => {
  await tool('write', '/vm/1/name', 'guest one', '/vm/1/uuid', 'u-1');
  assert.equal((await tool('read', '/vm/1/name')).stdout, 'guest one\n');
  assert.equal((await tool('read', '/vm/1/uuid')).stdout, 'u-1\n');
  await assert.rejects(tool('read', '/vm/2/name'), /couldn't read path/);
  // The trace proves the replies came from xenstored itself.
  assert.match(readFileSync(server.tracePath, 'utf8'), /IN 0x[0-9a-f]+ \d+ [\d:]+ WRITE \(\/vm\/1\/name guest one\)/);
});

test('INTRODUCE fires @introduceDomain; RELEASE fires @releaseDomain', { skip }, async () => {
  const watcher = await RawConn.connect(server.socketPath);
  const admin = await RawConn.connect(server.socketPath);
  try {
    assert.equal((await watcher.request(MsgType.WATCH, strings('@introduceDomain', 'intro'))).type, MsgType.WATCH);
    assert.equal((await watcher.request(MsgType.WATCH, strings('@releaseDomain', 'rel'))).type, MsgType.WATCH);
    const isIntroduced = async () =>
      (await admin.request(MsgType.IS_DOMAIN_INTRODUCED, strings('7'))).payload.toString();
    assert.equal(await isIntroduced(), 'F\0');

    const intro = await admin.request(MsgType.INTRODUCE, strings('7', '4096', '3'));
    assert.deepEqual([intro.type, intro.payload.toString()], [MsgType.INTRODUCE, 'OK\0']);
    assert.equal(await isIntroduced(), 'T\0');
    const domPath = await admin.request(MsgType.GET_DOMAIN_PATH, strings('7'));
    assert.equal(domPath.payload.toString(), '/local/domain/7\0');

    const rel = await admin.request(MsgType.RELEASE, strings('7'));
    assert.deepEqual([rel.type, rel.payload.toString()], [MsgType.RELEASE, 'OK\0']);
    assert.equal(await isIntroduced(), 'F\0');
    // A round trip on the watcher's own connection flushes events queued before it.
    await watcher.request(MsgType.GET_DOMAIN_PATH, strings('0'));
    const events = watcher.takeEvents().map((e) => e.payload.toString());
    assert.deepEqual(events, [
      '@introduceDomain\0intro\0', // registration
      '@releaseDomain\0rel\0', // registration
      '@introduceDomain\0intro\0',
      '@releaseDomain\0rel\0',
    ]);
  } finally {
    await watcher.close();
    await admin.close();
  }
});

test('errors come back as ERROR frames with the errno name', { skip }, async () => {
  const conn = await RawConn.connect(server.socketPath);
  try {
    const missing = await conn.request(MsgType.READ, strings('/no/such/node'));
    assert.deepEqual([missing.type, missing.payload.toString()], [MsgType.ERROR, 'ENOENT\0']);
    const badPath = await conn.request(MsgType.WRITE, Buffer.from('/a//b\0x'));
    assert.deepEqual([badPath.type, badPath.payload.toString()], [MsgType.ERROR, 'EINVAL\0']);
  } finally {
    await conn.close();
  }
});
