// Debian's xenstore-* tools (package xenstore-utils, linked to libxenstore.so.4) against the sim
// xenstored through XENSTORED_PATH. Each tool's test is skipped, naming it, when it is not installed.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { SimXenstored } from '../../src/sim/xenstored/index.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'sim-xenstored-tools-'));
const socketPath = join(dir, 'socket');
const xs = new SimXenstored();

function tool(name: string): { path: string; skip: string | false } {
  const path = `/usr/bin/xenstore-${name}`;
  return { path, skip: existsSync(path) ? false : `${path} not installed (package xenstore-utils)` };
}

async function xst(name: string, ...args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const r = await run(tool(name).path, args, { env: { ...process.env, XENSTORED_PATH: socketPath }, timeout: 5000 });
    return { stdout: r.stdout, stderr: r.stderr, code: 0 };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; code?: number };
    return { stdout: e.stdout ?? '', stderr: e.stderr ?? '', code: typeof e.code === 'number' ? e.code : -1 };
  }
}

before(async () => {
  await xs.listen(socketPath);
});
after(async () => {
  await xs.close();
  rmSync(dir, { recursive: true, force: true });
});

test('xenstore-write creates parents and xenstore-read reads back', { skip: tool('write').skip || tool('read').skip }, async () => {
  assert.equal((await xst('write', '/vm/a/b', 'hello', '/vm/c', 'x y')).code, 0);
  const r = await xst('read', '/vm/a/b', '/vm/c');
  assert.equal(r.code, 0);
  assert.equal(r.stdout, 'hello\nx y\n');
  const missing = await xst('read', '/vm/nope');
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /couldn't read path \/vm\/nope/);
});

test('relative paths resolve against /local/domain/0', { skip: tool('write').skip || tool('read').skip }, async () => {
  assert.equal((await xst('write', 'name', 'Domain-0')).code, 0);
  assert.equal((await xst('read', '/local/domain/0/name')).stdout, 'Domain-0\n');
});

test('xenstore-ls shows the initial tree, values and permissions', { skip: tool('ls').skip }, async () => {
  const r = await xst('ls', '-p', '/tool');
  assert.equal(r.code, 0);
  assert.match(r.stdout, /^xenstored = ""\s[ .]*\(n0\)\n$/);
});

test('xenstore-ls lists a directory bigger than one reply (DIRECTORY_PART fallback)', { skip: tool('write').skip || tool('ls').skip }, async () => {
  const args: string[] = [];
  for (let i = 0; i < 400; i++) args.push(`/big/entry-with-a-long-name-${i}`, `${i}`);
  assert.equal((await xst('write', ...args)).code, 0);
  const r = await xst('ls', '/big');
  assert.equal(r.code, 0);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.length, 400);
  assert.match(lines[399]!, /^entry-with-a-long-name-399 = "399"/);
});

test('xenstore-list and xenstore-exists', { skip: tool('list').skip || tool('exists').skip || tool('write').skip }, async () => {
  await xst('write', '/lst/one', '1', '/lst/two', '2');
  const r = await xst('list', '/lst');
  assert.equal(r.stdout, 'one\ntwo\n');
  assert.equal((await xst('exists', '/lst/one')).code, 0);
  assert.notEqual((await xst('exists', '/lst/three')).code, 0);
});

test('xenstore-chmod sets permissions that xenstore-ls -p shows', { skip: tool('chmod').skip || tool('ls').skip || tool('write').skip }, async () => {
  await xst('write', '/perm/node', 'v');
  assert.equal((await xst('chmod', '/perm/node', 'n5', 'r7', 'b9')).code, 0);
  const r = await xst('ls', '-p', '/perm');
  assert.match(r.stdout, /node = "v"\s[ .]*\(n5,r7,b9\)/);
  assert.notEqual((await xst('chmod', '/perm/node', 'x5')).code, 0);
});

test('xenstore-rm removes a subtree; removing / fails', { skip: tool('rm').skip || tool('exists').skip || tool('write').skip }, async () => {
  await xst('write', '/gone/a/b', '1');
  assert.equal((await xst('rm', '/gone')).code, 0);
  assert.notEqual((await xst('exists', '/gone/a')).code, 0);
  assert.notEqual((await xst('rm', '/')).code, 0);
});

const TEST_XENSTORE = '/usr/lib/xen-4.17/bin/test-xenstore';
test('Xen\'s own test-xenstore (linked to libxenstore.so.4) passes against the sim', {
  skip: existsSync(TEST_XENSTORE) ? false : `${TEST_XENSTORE} not installed (package xen-utils-4.17)`,
}, async () => {
  const r = await run(TEST_XENSTORE, [], { env: { ...process.env, XENSTORED_PATH: socketPath }, timeout: 20_000 });
  // One timing line per test case: read, write, dir, rm, transactions (empty, read-modify-write, error).
  const names = r.stdout.trim().split('\n').map((l) => l.split(':')[0]!.trim());
  assert.deepEqual(names, ['read 1', 'read 2000', 'write 1', 'write 2000', 'dir', 'rm node', 'rm dir', 'ta empty', 'ta empty x', 'ta rmw', 'ta rmw x', 'ta err']);
});

test('xenstore-watch sees the initial event and a later write', { skip: tool('watch').skip || tool('write').skip }, async () => {
  const child = spawn(tool('watch').path, ['-n', '2', '/watched'], { env: { ...process.env, XENSTORED_PATH: socketPath } });
  let out = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d: string) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const deadline = Date.now() + 5000;
  while (!out.includes('/watched') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await xst('write', '/watched/leaf', 'x');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  const code = await exited;
  clearTimeout(timer);
  assert.equal(code, 0);
  assert.deepEqual(out.trim().split('\n'), ['/watched', '/watched/leaf']);
});
