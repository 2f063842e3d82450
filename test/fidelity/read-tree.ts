// Reads a whole xenstore tree as `xenstore-ls -fp` prints it, two ways: Debian's xenstore-ls itself (the tool the
// fixture was captured with), or a walk with the project's client (DIRECTORY + READ + GET_PERMS) formatted the same
// way, so the comparison also runs where Xen's tools are not installed. Then normalises it with the very script that
// normalised the fixture.
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { XsClient } from '../../src/xenstore/client.js';
import { formatPerm } from '../../src/xenstore/wire.js';

const REPO = resolve(import.meta.dirname, '..', '..');
export const XENSTORE_LS = '/usr/bin/xenstore-ls';
export const NORMALISER = join(REPO, 'fixtures', 'nested-xen', 'normalise-tree.mjs');

export function hasXenstoreLs(): boolean {
  return existsSync(XENSTORE_LS);
}

/** `xenstore-ls -fp [root]` against the xenstored listening on socketPath. */
export async function xenstoreLs(socketPath: string, root = '/'): Promise<string> {
  const { stdout } = await promisify(execFile)(XENSTORE_LS, ['-fp', root], {
    env: { ...process.env, XENSTORED_PATH: socketPath },
    timeout: 10_000,
    maxBuffer: 16 << 20,
  });
  return stdout;
}

/** A value as xenstore-ls prints it: printable ASCII as is; \t \n \r \\; bytes 0-7 as \ooo, the rest \xhh. */
export function sanitiseValue(value: string): string {
  let out = '';
  for (const c of Buffer.from(value, 'utf8')) {
    if (c >= 0x20 && c <= 0x7e && c !== 0x5c) out += String.fromCharCode(c);
    else if (c === 0x09) out += '\\t';
    else if (c === 0x0a) out += '\\n';
    else if (c === 0x0d) out += '\\r';
    else if (c === 0x5c) out += '\\\\';
    else if (c < 0x08) out += '\\' + c.toString(8).padStart(3, '0');
    else out += '\\x' + c.toString(16).padStart(2, '0');
  }
  return out;
}

/** The same lines as `xenstore-ls -fp [root]` (root's descendants), in the same order, read with the project's client. */
export async function walkTree(xs: XsClient, root = '/'): Promise<string> {
  const lines: string[] = [];
  const walk = async (path: string): Promise<void> => {
    for (const child of await xs.directory(path)) {
      const full = path === '/' ? `/${child}` : `${path}/${child}`;
      // A node removed between DIRECTORY and READ is skipped, as xenstore-ls would print it without a value.
      const value = await xs.tryRead(full);
      if (value === undefined) continue;
      const perms = (await xs.getPerms(full)).map(formatPerm).join(',');
      lines.push(`${full} = "${sanitiseValue(value)}"   (${perms})`);
      await walk(full);
    }
  };
  await walk(root);
  return lines.join('\n') + '\n';
}

/** Runs fixtures/nested-xen/normalise-tree.mjs on raw xenstore-ls output, for a guest with this domid. */
export async function normalise(raw: string, domid: number): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'xl-tree-'));
  try {
    const baseline = join(dir, 'baseline.json');
    writeFileSync(baseline, JSON.stringify({ domid }));
    return await new Promise<string>((res, rej) => {
      const child = spawn(process.execPath, [NORMALISER, baseline], { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      child.stderr.on('data', (c: Buffer) => (err += c.toString()));
      child.on('error', rej);
      child.on('close', (code) => {
        clearTimeout(timer);
        if (code === 0) res(out);
        else rej(new Error(`${NORMALISER} exited ${code}: ${err}`));
      });
      child.stdin.end(raw);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
