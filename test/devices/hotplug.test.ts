// The hotplug runner against the sim's xenstored (a process) and fake scripts that record how they were called.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { XsClient } from '../../src/xenstore/client.js';
import { HotplugRunner, hotplugInvocation } from '../../src/devices/hotplug.js';

const REPO = resolve(import.meta.dirname, '..', '..');
let dir = '';
let xenstored: ChildProcess;
let xs: XsClient;
let runner: HotplugRunner;

/** A script that appends "<args> <env>" to its log and exits with the given code. */
function fakeScript(name: string, code: number): string {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\necho "$* XENBUS_TYPE=$XENBUS_TYPE XENBUS_PATH=$XENBUS_PATH XENBUS_BASE_PATH=$XENBUS_BASE_PATH script=$script vif=$vif" >> ${path}.log\nexit ${code}\n`);
  chmodSync(path, 0o755);
  return path;
}

async function until<T>(what: string, check: () => T | undefined | Promise<T | undefined>, timeoutMs = 5000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

const logLines = (script: string) => (existsSync(`${script}.log`) ? readFileSync(`${script}.log`, 'utf8').trim().split('\n') : []);

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'hotplug-test-'));
  const socket = join(dir, 'xs.sock');
  xenstored = spawn(process.execPath, ['--import', 'tsx', 'src/sim/xenstored/standalone.ts', socket], { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error('sim xenstored not ready')), 15_000);
    xenstored.stdout!.once('data', () => {
      clearTimeout(timer);
      ok();
    });
  });
  xs = await XsClient.connect({ path: socket, reconnect: false });
  runner = new HotplugRunner(xs, pino({ level: 'silent' }), { timeoutMs: 5000, env: { XENSTORED_PATH: socket } });
  await runner.start();
});

after(async () => {
  await runner?.close();
  await xs?.close().catch(() => {});
  xenstored?.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
});

test('hotplugInvocation: block gets add/remove; vif-bridge gets online/offline, type_if=vif and the interface name', () => {
  const be = '/local/domain/0/backend/vif/7/1';
  assert.deepEqual(hotplugInvocation('vif', be, '/s/vif-bridge', 7, 1, true), {
    args: ['online', 'type_if=vif'],
    env: { script: '/s/vif-bridge', XENBUS_TYPE: 'vif', XENBUS_PATH: be, XENBUS_BASE_PATH: 'backend', vif: 'vif7.1', netdev: '' },
  });
  assert.deepEqual(hotplugInvocation('vbd', '/b', '/s/block', 7, 51712, false).args, ['remove']);
});

test('a vbd backend reaching InitWait gets its script run with add; removing the backend runs remove', { timeout: 20_000 }, async () => {
  const script = fakeScript('block', 0);
  const be = '/local/domain/0/backend/vbd/5/51712';
  await xs.write(`${be}/script`, script);
  await xs.write(`${be}/state`, '1');
  await sleep(200);
  assert.deepEqual(logLines(script), [], 'nothing runs before InitWait');
  await xs.write(`${be}/state`, '2');
  const [added] = await until('add', () => (logLines(script).length ? logLines(script) : undefined));
  assert.equal(added, `add XENBUS_TYPE=vbd XENBUS_PATH=${be} XENBUS_BASE_PATH=backend script=${script} vif=`);
  // More changes of an added backend (Connected) run nothing more.
  await xs.write(`${be}/state`, '4');
  await sleep(200);
  assert.equal(logLines(script).length, 1);
  // Teardown removes the per-domain directory in one RM.
  await xs.rm('/local/domain/0/backend/vbd/5');
  const lines = await until('remove', () => (logLines(script).length === 2 ? logLines(script) : undefined));
  assert.match(lines[1]!, new RegExp(`^remove XENBUS_TYPE=vbd XENBUS_PATH=${be} `));
});

test('a script that fails without saying so gets hotplug-status=error and hotplug-error for it', { timeout: 20_000 }, async () => {
  const script = fakeScript('vif-bridge', 3);
  const be = '/local/domain/0/backend/vif/6/0';
  await xs.write(`${be}/script`, script);
  await xs.write(`${be}/state`, '2');
  assert.equal(await until('hotplug-status', () => xs.tryRead(`${be}/hotplug-status`)), 'error');
  assert.equal(await xs.read(`${be}/hotplug-error`), `${script} online exited 3`);
  assert.match(logLines(script)[0]!, /^online type_if=vif XENBUS_TYPE=vif .* vif=vif6\.0$/);
  await xs.rm(be);
  await until('offline', () => (logLines(script).length === 2 ? true : undefined));
});

const XENSTORE_WRITE = '/usr/bin/xenstore-write';
const noXenstoreWrite = existsSync(XENSTORE_WRITE) ? undefined : `needs ${XENSTORE_WRITE} (Debian's xenstore-utils)`;

test('a remove script that writes its error under the removed backend does not bring the backend back', { skip: noXenstoreWrite, timeout: 20_000 }, async () => {
  // As Xen's scripts do when their keys are gone: fatal() writes XENBUS_PATH/hotplug-error and hotplug-status.
  const script = join(dir, 'block-fatal');
  const fatal = `${XENSTORE_WRITE} "$XENBUS_PATH/hotplug-error" "xenstore-read params failed" "$XENBUS_PATH/hotplug-status" error`;
  writeFileSync(script, `#!/bin/sh\necho "$1" >> ${script}.log\nif [ "$1" = remove ]; then ${fatal} && echo wrote >> ${script}.log; exit 1; fi\nexit 0\n`);
  chmodSync(script, 0o755);
  const be = '/local/domain/0/backend/vbd/9/51712';
  await xs.write(`${be}/script`, script);
  await xs.write(`${be}/state`, '2');
  await until('add', () => (logLines(script).length === 1 ? true : undefined));
  await xs.rm('/local/domain/0/backend/vbd/9');
  const removed = await until('remove', () => runner.runs.find((r) => r.backend === be && r.action === 'remove'));
  assert.equal(removed.code, 1);
  assert.deepEqual(logLines(script), ['add', 'remove', 'wrote'], 'the script wrote under the removed backend');
  await until('the recreated nodes to go', async () => ((await xs.tryRead('/local/domain/0/backend/vbd/9')) === undefined ? true : undefined));
});

test('a backend without a script key is left alone', async () => {
  const be = '/local/domain/0/backend/vbd/8/51712';
  await xs.write(`${be}/state`, '2');
  await sleep(200);
  assert.equal(await xs.tryRead(`${be}/hotplug-status`), undefined);
  assert.equal(runner.runs.filter((r) => r.backend === be).length, 0);
});

test('removeDomain runs the remove scripts of a domain while its backend keys exist, and only once', { timeout: 20_000 }, async () => {
  const script = fakeScript('block-teardown', 0);
  const be = '/local/domain/0/backend/vbd/10/51712';
  const other = '/local/domain/0/backend/vbd/11/51712';
  for (const b of [be, other]) {
    await xs.write(`${b}/script`, script);
    await xs.write(`${b}/state`, '2');
  }
  await until('both adds', () => (logLines(script).length === 2 ? true : undefined));
  await runner.removeDomain(10);
  const lines = logLines(script);
  assert.equal(lines.length, 3);
  assert.match(lines[2]!, new RegExp(`^remove XENBUS_TYPE=vbd XENBUS_PATH=${be} `));
  assert.equal(await xs.tryRead(`${be}/state`), '2', 'the keys are still there when remove runs');
  await xs.rm('/local/domain/0/backend/vbd/10');
  await sleep(300);
  assert.equal(logLines(script).length, 3, 'removing the nodes afterwards runs nothing more; domain 11 untouched');
  await xs.rm('/local/domain/0/backend/vbd/11');
  await until('the other domain\'s remove', () => (logLines(script).length === 4 ? true : undefined));
});

test('a runner started after the add (daemon restart) adopts the backend from xenstore and still runs its remove', { timeout: 20_000 }, async () => {
  const script = fakeScript('block-adopted', 0);
  const be = '/local/domain/0/backend/vbd/12/51712';
  // As a previous daemon left it: added, connected (state 4, so the running runner sees nothing to add).
  await xs.write(`${be}/script`, script);
  await xs.write(`${be}/hotplug-status`, 'connected');
  await xs.write(`${be}/state`, '4');
  // Its own connection, as a restarted daemon has (the running runner's watch token is taken on this one).
  const xs2 = await XsClient.connect({ path: join(dir, 'xs.sock'), reconnect: false });
  const fresh = new HotplugRunner(xs2, pino({ level: 'silent' }), { timeoutMs: 5000 });
  try {
    await fresh.start();
    await fresh.removeDomain(12);
    assert.deepEqual(
      logLines(script).map((l) => l.split(' ').slice(0, 3).join(' ')),
      [`remove XENBUS_TYPE=vbd XENBUS_PATH=${be}`],
      'remove ran once; no add for a backend already set up',
    );
    await fresh.removeDomain(12);
    assert.equal(logLines(script).length, 1, 'only once');
  } finally {
    await fresh.close();
    await xs2.close();
    await xs.rm('/local/domain/0/backend/vbd/12');
  }
});
