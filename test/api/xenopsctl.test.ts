// xenopsctl against a daemon on a sim host: the commands an operator runs, --json output, and the exit codes
// its --help promises (0 ok, 1 failed, 2 usage, 3 unreachable, 4 not found, 6 timeout).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { startWorld, type World } from '../lifecycle/helpers.js';

const REPO = resolve(import.meta.dirname, '..', '..');

function ctl(socket: string, args: string[], stdin?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/xenopsctl.ts', '--socket', socket, ...args], { cwd: REPO });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    child.on('error', rej);
    child.on('exit', (code) => res({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(stdin ?? '');
  });
}

describe('xenopsctl', { timeout: 120_000 }, () => {
  let w: World;
  before(async () => {
    w = await startWorld();
  });
  after(async () => {
    await w?.close();
  });

  test('vm add - / list / start / stat / shutdown / remove by name, with --json', async () => {
    const sock = w.daemon.socketPath;
    const spec = JSON.stringify({ name: 'ctl1', type: 'pv', memory: { max_mib: 32 }, vcpus: { max: 1 }, boot: { kernel: '/k' } });
    const add = await ctl(sock, ['vm', 'add', '-'], spec);
    assert.equal(add.code, 0, add.stderr);
    const id = add.stdout.trim();
    assert.match(id, /^[0-9a-f-]{36}$/);
    const start = await ctl(sock, ['--json', 'vm', 'start', 'ctl1']);
    assert.equal(start.code, 0, start.stderr);
    assert.equal(JSON.parse(start.stdout).state, 'completed');
    const list = await ctl(sock, ['--json', 'vm', 'list']);
    const vm = JSON.parse(list.stdout).vms.find((v: { vm: { id: string } }) => v.vm.id === id);
    assert.equal(vm.state.power_state, 'running');
    const table = await ctl(sock, ['vm', 'list']);
    assert.match(table.stdout, new RegExp(`${id} +ctl1 +running`));
    const stat = await ctl(sock, ['--json', 'vm', 'stat', id]);
    assert.equal(JSON.parse(stat.stdout).vm.name, 'ctl1');
    const again = await ctl(sock, ['vm', 'start', 'ctl1']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /BAD_POWER_STATE/);
    const down = await ctl(sock, ['vm', 'shutdown', 'ctl1', '--hard']);
    assert.equal(down.code, 0, down.stderr);
    const tasks = await ctl(sock, ['--json', 'task', 'list']);
    assert.ok(JSON.parse(tasks.stdout).tasks.length >= 2);
    assert.equal((await ctl(sock, ['vm', 'remove', 'ctl1'])).code, 0);
  });

  test('exit codes: usage 2, not found 4, unreachable 3, timeout 6', async () => {
    const sock = w.daemon.socketPath;
    assert.equal((await ctl(sock, ['vm', 'frobnicate', 'x'])).code, 2);
    assert.equal((await ctl(sock, ['--bogus'])).code, 2);
    const nf = await ctl(sock, ['vm', 'start', 'no-such-vm']);
    assert.equal(nf.code, 4);
    assert.match(nf.stderr, /no VM named/);
    assert.equal((await ctl(sock, ['vm', 'stat', '99999999-9999-4999-8999-999999999999'])).code, 4);
    const down = await ctl('/nonexistent/api.sock', ['vm', 'list']);
    assert.equal(down.code, 3);
    assert.match(down.stderr, /cannot reach the daemon/);
    const bad = await ctl(sock, ['vm', 'add', '-'], '{not json');
    assert.equal(bad.code, 2);
    const invalid = await ctl(sock, ['vm', 'add', '-'], JSON.stringify({ name: 'x' }));
    assert.equal(invalid.code, 2);
    assert.match(invalid.stderr, /INVALID_PARAMS/);

    const add = await ctl(sock, ['vm', 'add', '-'], JSON.stringify({ name: 'stubborn', type: 'pv', memory: { max_mib: 32 }, vcpus: { max: 1 }, boot: { kernel: '/k' } }));
    const id = add.stdout.trim();
    assert.equal((await ctl(sock, ['vm', 'start', id])).code, 0);
    const domid = (await w.api.call('VM.stat', { id })).state.domid;
    await w.control.call('guest.fault', { fault: 'ignore-shutdown', domid, on: true });
    const to = await ctl(sock, ['vm', 'shutdown', id, '--timeout', '0.2']);
    assert.equal(to.code, 6, to.stderr);
    assert.match(to.stderr, /TIMEOUT/);
    assert.equal((await ctl(sock, ['vm', 'shutdown', id, '--hard'])).code, 0);
  });

  test('events follows the updates log', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/xenopsctl.ts', '--socket', w.daemon.socketPath, '--json', 'events'], { cwd: REPO });
    try {
      let out = '';
      child.stdout.on('data', (c) => (out += c));
      // Skip what the log already holds, then expect the new VM's id.
      await new Promise((r) => setTimeout(r, 2000));
      const { id } = await w.api.call('VM.add', { vm: { name: 'ev', type: 'pv', memory: { max_mib: 32 }, vcpus: { max: 1 }, boot: { kernel: '/k' } } });
      const end = Date.now() + 10_000;
      while (!out.includes(id) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      const line = out.split('\n').find((l) => l.includes(id));
      assert.deepEqual(JSON.parse(line!), { kind: 'vm', id });
    } finally {
      child.kill('SIGTERM');
    }
  });

  test('--help documents the exit codes', async () => {
    const help = await ctl('/x', ['--help']);
    assert.equal(help.code, 0);
    for (const n of ['0  success', '2  bad usage', '3  daemon unreachable', '6  timed out']) assert.ok(help.stdout.includes(n), n);
  });
});
