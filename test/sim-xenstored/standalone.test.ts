// The standalone entry other tests and the benchmark run as a process: ready line, serves, SIGTERM
// closes it and removes the socket.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { MsgType } from '../../src/xenstore/wire.js';
import { WireClient } from './wire-client.js';

const REPO = resolve(import.meta.dirname, '..', '..');

test('standalone.ts serves on its socket until SIGTERM', { timeout: 20_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sim-xenstored-standalone-'));
  const socketPath = join(dir, 'socket');
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/sim/xenstored/standalone.ts', socketPath], {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  try {
    let out = '';
    child.stdout.setEncoding('utf8');
    await new Promise<void>((ready, fail) => {
      const timer = setTimeout(() => fail(new Error(`no ready line: ${out}`)), 15_000);
      child.stdout.on('data', (d: string) => {
        out += d;
        if (out.includes('\n')) {
          clearTimeout(timer);
          ready();
        }
      });
    });
    assert.equal(out, `ready ${socketPath}\n`);
    const c = await WireClient.socket(socketPath);
    await c.write('/standalone', 'yes');
    assert.equal(await c.read('/standalone'), 'yes');
    assert.equal(await c.req(MsgType.IS_DOMAIN_INTRODUCED, '0\0'), 'T\0');
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.equal(await c.waitClosed(), true);
    assert.equal(existsSync(socketPath), false);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
