// The sim host as a process: ready line, one owner per DIR, clean stop, stale lock, truthful --help.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startSimHost } from '../support/simhost.js';
import { SimControlClient } from '../../src/sim/control/client.js';
import { main } from '../../src/sim/main.js';
import { HvClient } from './hvclient.js';
import { connectXs, createDomain, until, waitFor } from './toolstack.js';

const REPO = resolve(import.meta.dirname, '..', '..');
const bin = (args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/xenopsd-ng.ts', ...args], { cwd: REPO, encoding: 'utf8', timeout: 20_000 });

async function simHostMain(...args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const status = await main(args, { out: (t) => void (stdout += t), err: (t) => void (stderr += t) });
  return { status, stdout, stderr };
}

test('--help names the sockets and options it really has', async () => {
  const r = await simHostMain('--help');
  assert.equal(r.status, 0);
  for (const word of ['xenstored.sock', 'hypervisor.sock', 'control.sock', '--memory-mib', '--pcpus', '--boot-delay-ms', '"ready":true']) {
    assert.ok(r.stdout.includes(word), `help mentions ${word}`);
  }
});

test('bad arguments are usage errors (exit 2) naming what is wrong', async () => {
  const r = await simHostMain();
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--dir DIR is required/);
  const r2 = await simHostMain('--dir', '/tmp/x', '--memory-mib', 'lots');
  assert.equal(r2.status, 2);
  assert.match(r2.stderr, /--memory-mib must be an integer/);
  const r3 = await simHostMain('--dir', '/tmp/x', '--frobnicate');
  assert.equal(r3.status, 2);
  assert.match(r3.stderr, /frobnicate/);
});

test('ready line, a second host on the same DIR is refused, SIGTERM removes sockets and lock', async () => {
  const host = await startSimHost({ memoryMib: 2048, pcpus: 4 });
  try {
    for (const p of [host.xenstoredPath, host.hypervisorPath, host.controlPath]) assert.ok(existsSync(p), `${p} exists`);
    assert.equal(readFileSync(join(host.dir, 'sim-host.pid'), 'utf8').trim(), String(host.pid));
    const second = bin(['sim-host', '--dir', host.dir]);
    assert.equal(second.status, 1);
    assert.match(second.stderr, new RegExp(`owned by sim host pid ${host.pid}`));
    // The refused host touched nothing: the first still answers.
    const c = await SimControlClient.connect(host.controlPath);
    const st = await c.call('status');
    assert.equal(st.pcpus, 4);
    assert.equal(st.totalMib, 2048);
    await c.close();
  } finally {
    const dir = host.dir;
    host.child.kill('SIGTERM');
    assert.equal(await host.exited, 0);
    for (const f of ['xenstored.sock', 'hypervisor.sock', 'control.sock', 'sim-host.pid']) assert.ok(!existsSync(join(dir, f)), `${f} removed`);
    await host.stop();
  }
});

test('a lock left by a dead host is taken over; --guest-dirty-rate sets booted guests writing', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'xsim-stale-'));
  try {
    // A pid that cannot be alive (above the kernel's pid_max).
    writeFileSync(join(dir, 'sim-host.pid'), '99999999\n');
    writeFileSync(join(dir, 'control.sock'), 'stale');
    const host = await startSimHost({ dir, bootDelayMs: 0, args: ['--guest-dirty-rate', '1234'] });
    const c = await SimControlClient.connect(host.controlPath);
    assert.equal((await c.call('ping')).pid, host.pid);
    const xs = await connectXs(host.xenstoredPath);
    const hv = await HvClient.connect(host.hypervisorPath);
    const dom = await createDomain(hv, xs);
    assert.equal((await c.call('status')).domains.find((d) => d.domid === dom.domid)?.dirtyRate, 0, 'not before it boots');
    await hv.call('unpause', dom.domid);
    await waitFor(xs, `${dom.dompath}/data/updated`, (v) => v === '1');
    await until(async () => ((await c.call('status')).domains.find((d) => d.domid === dom.domid)?.dirtyRate === 1234 ? true : undefined), 'dirty rate');
    hv.close();
    await xs.close();
    await c.close();
    await host.stop();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('kill through the control socket: soft removes the sockets, hard leaves them as a crash would', async () => {
  const soft = await startSimHost();
  const c1 = await SimControlClient.connect(soft.controlPath);
  await c1.call('host.kill', {});
  assert.equal(await soft.exited, 0);
  assert.ok(!existsSync(soft.controlPath));
  await soft.stop();

  const hard = await startSimHost();
  const c2 = await SimControlClient.connect(hard.controlPath);
  await c2.call('host.kill', { hard: true });
  assert.equal(await hard.exited, 137);
  assert.ok(existsSync(hard.controlPath), 'a crashed host leaves its socket');
  assert.ok(existsSync(join(hard.dir, 'sim-host.pid')), 'and its lock');
  await hard.stop();
});
