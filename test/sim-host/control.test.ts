// The control socket: bad input never takes the host down; `sim status`; faults that need no domain.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { startSimHost, type SimHostHandle } from '../support/simhost.js';
import { SimControlClient, SimControlError } from '../../src/sim/control/client.js';
import { encodeFrame, FrameReader } from '../../src/sim/control/framing.js';
import { connectXs } from './toolstack.js';
import { main as simMain } from '../../src/sim/cli.js';

const REPO = resolve(import.meta.dirname, '..', '..');
let host: SimHostHandle;
let ctl: SimControlClient;

before(async () => {
  host = await startSimHost({ memoryMib: 4096, pcpus: 2 });
  ctl = await SimControlClient.connect(host.controlPath);
});
after(async () => {
  await ctl?.close();
  await host?.stop();
});

/** Sends raw bytes on a fresh connection; resolves with the decoded answers once `expect` came, the server closed, or 300 ms passed. */
async function raw(bytes: Buffer, expect = 1): Promise<unknown[]> {
  const sock = net.createConnection(host.controlPath);
  const reader = new FrameReader();
  const got: unknown[] = [];
  await new Promise<void>((res) => {
    const t = setTimeout(() => {
      sock.destroy();
      res();
    }, 300);
    sock.on('data', (c: Buffer) => {
      got.push(...reader.push(c));
      if (got.length >= expect) sock.destroy();
    });
    sock.on('close', () => {
      clearTimeout(t);
      res();
    });
    sock.on('error', () => undefined);
    sock.write(bytes);
  });
  return got;
}

const errCode = (v: unknown): string | undefined => (v as { error?: { code?: string } })?.error?.code;

test('bad frames, bad requests and bad params get errors; the host keeps answering', async () => {
  // A body that is not msgpack.
  const junk = Buffer.from([0, 0, 0, 3, 0xc1, 0xc1, 0xc1]);
  assert.equal(errCode((await raw(junk))[0]), 'EPROTO');
  // A length no control request can have: answered, then the connection is closed.
  assert.equal(errCode((await raw(Buffer.from([0x7f, 0xff, 0xff, 0xff, 1, 2, 3])))[0]), 'EPROTO');
  // Not a map, no id, method not a string, params not a map.
  assert.equal(errCode((await raw(encodeFrame([1, 2, 3])))[0]), 'EINVAL');
  assert.equal(errCode((await raw(encodeFrame({ method: 'ping' })))[0]), 'EINVAL');
  assert.equal(errCode((await raw(encodeFrame({ id: 1, method: 7 })))[0]), 'EINVAL');
  assert.equal(errCode((await raw(encodeFrame({ id: 1, method: 'ping', params: 'x' })))[0]), 'EINVAL');
  // Half a frame then a hang-up.
  assert.deepEqual(await raw(Buffer.from([0, 0, 1, 0, 0x81]), 0), []);
  // A good request after a bad one on the same connection is still answered.
  const two = await raw(Buffer.concat([encodeFrame('nonsense'), encodeFrame({ id: 5, method: 'ping' })]), 2);
  assert.equal(errCode(two[0]), 'EINVAL');
  assert.equal((two[1] as { id: number; result: { pong: boolean } }).result.pong, true);

  const bad: Array<[string, Record<string, unknown>, string, RegExp]> = [
    ['no.such.method', {}, 'ENOSYS', /unknown method/],
    ['__proto__', {}, 'ENOSYS', /unknown method/],
    ['guest.fault', { fault: 'explode' }, 'EINVAL', /fault/],
    ['guest.fault', { fault: 'crash' }, 'EINVAL', /needs a domid/],
    ['guest.fault', { fault: 'crash', domid: 4000 }, 'ESRCH', /no domain 4000/],
    ['guest.fault', { fault: 'slow-boot', delayMs: -5 }, 'EINVAL', /delayMs/],
    ['backend.fault', { path: '/etc/passwd', mode: 'fail' }, 'EINVAL', /under \/local\/domain\/0\/backend/],
    ['backend.fault', { path: '/local/domain/0/backend/vbd', mode: 'melt' }, 'EINVAL', /mode/],
    ['hypercall.fault', { call: 'formatDisk', errno: 'EIO' }, 'EINVAL', /call/],
    ['hypercall.fault', { call: 'createDomain', errno: 'oops' }, 'EINVAL', /errno/],
    ['hypercall.fault', { call: 'createDomain', errno: 'EIO', times: 0 }, 'EINVAL', /times/],
    ['xenstored.latency', { ms: 'slow' }, 'EINVAL', /ms/],
    ['host.memory', { mib: 0 }, 'EINVAL', /mib/],
    ['domain.dirtyRate', { domid: 77, pagesPerSec: 10 }, 'ESRCH', /no domain 77/],
    ['domain.dirtyRate', { domid: 0, pagesPerSec: -1 }, 'EINVAL', /pagesPerSec/],
    ['host.kill', { hard: 'yes' }, 'EINVAL', /hard/],
  ];
  for (const [method, params, code, msg] of bad) {
    await assert.rejects(ctl.call(method, params), (e: unknown) => {
      assert.ok(e instanceof SimControlError, `${method}: ${String(e)}`);
      assert.equal(e.code, code, `${method} ${JSON.stringify(params)}: ${e.message}`);
      assert.match(e.message, msg);
      return true;
    });
  }
  assert.equal((await ctl.call('ping')).pong, true);
  assert.equal(host.child.exitCode, null, 'still running');
});

test('xenstored latency slows every reply, and is lifted again', async () => {
  const xs = await connectXs(host.xenstoredPath);
  try {
    const time = async () => {
      const t0 = performance.now();
      for (let i = 0; i < 3; i++) await xs.read('/local/domain/0/name');
      return (performance.now() - t0) / 3;
    };
    await ctl.call('xenstored.latency', { ms: 80 });
    const slow = await time();
    assert.ok(slow >= 70, `read took ${slow.toFixed(1)} ms with 80 ms latency`);
    assert.equal((await ctl.call('status')).faults.xenstoredLatencyMs, 80);
    await ctl.call('faults.clear', {});
    const fast = await time();
    assert.ok(fast < 40, `read took ${fast.toFixed(1)} ms after clearing`);
  } finally {
    await xs.close();
  }
});

test('host memory can be resized; status and sim status show it', async () => {
  await ctl.call('host.memory', { mib: 8192 });
  const st = await ctl.call('status');
  assert.equal(st.totalMib, 8192);
  assert.equal(st.totalPages, 8192 * 256);
  assert.ok(st.freePages < st.totalPages, 'dom0 holds memory');
  assert.deepEqual(st.domains.map((d) => d.domid), [0]);

  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/xenopsd-ng.ts', 'sim', 'status', '--dir', host.dir], { cwd: REPO, encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /memory: 8192 MiB total, \d+ MiB free/);
  assert.match(r.stdout, /^ {2}0 +running +\d+ +\d+/m);

  const j = await simCli('status', '--json', '--dir', host.dir);
  assert.equal(JSON.parse(j.stdout).totalMib, 8192);
});

/** Runs `xenopsd-ng sim ARGS` in this process (the bin itself is run once, above), capturing its output. */
async function simCli(...args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const status = await simMain(args, { out: (t) => (stdout += t), err: (t) => (stderr += t) });
  return { status, stdout, stderr };
}

test('status does not consume a hypercall fault meant for the daemon', async () => {
  await ctl.call('hypercall.fault', { call: 'getDomainInfoList', errno: 'EAGAIN', times: 1 });
  await ctl.call('hypercall.fault', { call: 'physinfo', errno: 'EIO' });
  const st = await ctl.call('status');
  const byCall = (a: { call: string }, b: { call: string }) => a.call.localeCompare(b.call);
  assert.deepEqual(st.faults.hypercalls.sort(byCall), [{ call: 'getDomainInfoList', errno: 'EAGAIN', times: 1 }, { call: 'physinfo', errno: 'EIO' }]);
  assert.equal((await ctl.call('status')).faults.hypercalls.length, 2);
  await ctl.call('faults.clear', {});
});

test('sim CLI: faults through the command line, usage errors exit 2, an absent host exits 1', async () => {
  const sim = simCli;
  let r = await sim('backend', 'fail', '/local/domain/0/backend/vbd/9', 'disk on fire', '--dir', host.dir);
  assert.equal(r.status, 0, r.stderr);
  r = await sim('hypercall', 'fail', 'createDomain', 'ENOMEM', '--times', '2', '--dir', host.dir);
  assert.equal(r.status, 0, r.stderr);
  r = await sim('status', '--dir', host.dir);
  assert.match(r.stdout, /backend fail \/local\/domain\/0\/backend\/vbd\/9 \(disk on fire\)/);
  assert.match(r.stdout, /hypercall createDomain fails ENOMEM 2 more time/);
  r = await sim('faults', 'clear', '--dir', host.dir);
  assert.equal(r.status, 0);
  assert.match((await sim('status', '--dir', host.dir)).stdout, /faults: none/);

  r = await sim('guest', 'crash', 'abc', '--dir', host.dir);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /expected a domid/);
  r = await sim('guest', 'crash', '4000', '--dir', host.dir);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /ESRCH/);
  r = await sim('status', '--dir', '/nonexistent-sim-dir');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /no sim host answers/);
});
