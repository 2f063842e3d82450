// The daemon's command line: `run --help` and bad arguments, and `xenopsd-ng dev` (what `npm start` runs): a sim host
// and the daemon, the API answering, Ctrl-C stopping both. Plus the log contract: every task line names task and VM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ApiClient } from '../../src/daemon/api-client.js';
import { opOk, startWorld, addVm } from '../lifecycle/helpers.js';

const REPO = resolve(import.meta.dirname, '..', '..');
const bin = (args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/xenopsd-ng.ts', ...args], { cwd: REPO, encoding: 'utf8', timeout: 30_000 });

test('run --help is truthful; bad arguments exit 2 with the reason', () => {
  const help = bin(['run', '--help']);
  assert.equal(help.status, 0);
  for (const opt of ['--backend', '--sim-dir', '--socket', '--state-dir', '--group', 'XENOPSD_NG_SOCKET', '/run/xenopsd-ng/api.sock']) assert.ok(help.stdout.includes(opt), opt);
  const bad = bin(['run', '--backend', 'kvm']);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--backend must be sim or xen/);
  const noDir = bin(['run', '--backend', 'sim']);
  assert.equal(noDir.status, 2);
  assert.match(noDir.stderr, /--sim-dir/);
  const unknown = bin(['run', '--frobnicate']);
  assert.equal(unknown.status, 2);
});

test('dev starts a sim host and the daemon; SIGINT stops both cleanly', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'xdev-'));
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/xenopsd-ng.ts', 'dev', '--dir', dir], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', () => {});
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const deadline = Date.now() + 40_000;
    while (!out.includes('Ctrl-C') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.match(out, /API on /);
    const socket = join(dir, 'api.sock');
    const api = new ApiClient(socket);
    assert.equal((await api.call('API.version')).backend, 'sim');
    api.close();
    child.kill('SIGINT');
    assert.equal(await exited, 0);
    assert.match(out, /stopped/);
    assert.equal(existsSync(socket), false, 'API socket removed');
    assert.equal(existsSync(join(dir, 'sim', 'xenstored.sock')), false, 'sim host stopped and removed its sockets');
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('every log line of a VM task carries taskId and vm', { timeout: 60_000 }, async () => {
  const w = await startWorld({ args: ['--log-level', 'debug'] });
  try {
    const id = await addVm(w.api, { vifs: [{}] });
    const t = await opOk(w.api, 'VM.start', { id });
    await opOk(w.api, 'VM.shutdown', { id, mode: 'hard' });
    const lines = w.daemon
      .logs()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const mine = lines.filter((l) => l.taskId === t.id);
    assert.ok(mine.length >= 5, `only ${mine.length} lines for the start task`);
    for (const l of lines.filter((x) => x.taskId !== undefined)) assert.equal(typeof l.vm, 'string', JSON.stringify(l));
  } finally {
    await w.close();
  }
});
