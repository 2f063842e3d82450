// xenopsctl against a daemon on a sim host: the commands an operator runs, --json output, and the exit codes
// its --help promises (0 ok, 1 failed, 2 usage, 3 unreachable, 4 not found, 6 timeout).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
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

/** util-linux `script` gives xenopsctl a pseudo-terminal (stdout and stderr both on it). */
const SCRIPT_MISSING = spawnSync('script', ['--version']).status === 0 ? false : 'util-linux `script` (pseudo-terminal) is not installed';

function shellQuote(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** xenopsctl on a pseudo-terminal: everything it wrote there (stdout and stderr interleaved) and its exit code. */
function ctlOnTty(socket: string, args: string[]): Promise<{ code: number; output: string }> {
  const cmd = [process.execPath, '--import', 'tsx', 'src/cli/xenopsctl.ts', '--socket', socket, ...args].map(shellQuote).join(' ');
  return new Promise((res, rej) => {
    // -q no banner, -f flush at once, -e the command's exit code, -c the command; the typescript file is thrown away.
    const child = spawn('script', ['-qfec', cmd, '/dev/null'], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c) => (output += c));
    child.stderr.on('data', (c) => (output += c));
    child.on('error', rej);
    child.on('exit', (code) => res({ code: code ?? -1, output }));
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

  test('a task longer than a second shows a progress bar on a terminal, and none when piped', { skip: SCRIPT_MISSING }, async () => {
    const sock = w.daemon.socketPath;
    const spec = { name: 'slowdown', type: 'pv', memory: { max_mib: 32 }, vcpus: { max: 1 }, boot: { kernel: '/k' } };
    const { id } = await w.api.call<{ id: string }>('VM.add', { vm: spec });
    // The guest ignores the clean shutdown, so the task waits its 2 s --timeout, then --force destroys the domain:
    // a task of ~2 s that completes (exit 0) without the test having to time anything.
    const slowShutdown = async (run: () => Promise<{ code: number; text: string }>) => {
      assert.equal((await ctl(sock, ['vm', 'start', 'slowdown'])).code, 0);
      const domid = (await w.api.call('VM.stat', { id })).state.domid;
      await w.control.call('guest.fault', { fault: 'ignore-shutdown', domid, on: true });
      const t0 = Date.now();
      const r = await run();
      assert.equal(r.code, 0, r.text);
      assert.ok(Date.now() - t0 >= 1500, `the shutdown took only ${Date.now() - t0} ms: too short to show a bar`);
      assert.equal((await w.api.call('VM.stat', { id })).state.power_state, 'halted');
      return r.text;
    };
    const args = ['vm', 'shutdown', 'slowdown', '--timeout', '2', '--force'];

    const onTty = await slowShutdown(async () => {
      const r = await ctlOnTty(sock, args);
      return { code: r.code, text: r.output };
    });
    // drawBar: "\rVM.shutdown [####......] 37% <running subtask>", redrawn in place, ended by a newline.
    assert.match(onTty, /\rVM\.shutdown \[[#.]{30}\] \d+%/, JSON.stringify(onTty));
    // The bar ends with its own line before the result (the pty turns \n into \r\n).
    assert.match(onTty, /\r?\nVM\.shutdown [0-9a-f-]{36}: done\r?\n$/, JSON.stringify(onTty));

    const piped = await slowShutdown(async () => {
      const r = await ctl(sock, args);
      return { code: r.code, text: `stdout: ${r.stdout}\nstderr: ${r.stderr}` };
    });
    assert.doesNotMatch(piped, /\[[#.]+\]|\d+%|\r/, JSON.stringify(piped));
    assert.match(piped, /^stdout: VM\.shutdown [0-9a-f-]{36}: done\n\nstderr: $/, JSON.stringify(piped));
    await w.api.call('VM.remove', { id });
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
