// The xen backend without Xen: clear refusals (no privcmd, unchecked library release, missing library), and the
// helper-process plumbing for build/save/restore (a fake helper speaking the same protocol; the real helper
// reporting ENOENT). The run on real Xen is test/integration/xen-backend.itest.ts.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, openSync, closeSync, rmSync, writeFileSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { HypervisorError, type Hypervisor } from '../../src/hypervisor/types.js';
import { XenHypervisorBackend, assertCheckedHypervisor, openXenHypervisor } from '../../src/hypervisor/xen.js';
import type { XenCtrl } from '../../bindings/xenctrl.js';
import type { XenLibraries } from '../../bindings/lib.js';
import { loadXenLibraries, releaseFromLibraryName } from '../../bindings/lib.js';
import { errnoName } from '../../bindings/errors.js';

const SYSTEM_LIBXENCTRL = '/usr/lib/x86_64-linux-gnu/libxenctrl.so.4.17';
const libsMissing = existsSync(SYSTEM_LIBXENCTRL) ? undefined : `libxenctrl.so.4.17 missing (${SYSTEM_LIBXENCTRL}): install libxenmisc4.17`;
const onXen = existsSync('/dev/xen/privcmd') || existsSync('/proc/xen/privcmd');
const ROOT = resolve(import.meta.dirname, '../..');
const FAKE = { execPath: process.execPath, args: ['--import', 'tsx', join(ROOT, 'test/bindings/fixtures/fake-xen-helper.ts')], cwd: ROOT };

function hvError(call: string, errno: string, message?: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof HypervisorError, `expected a HypervisorError, got ${String(err)}`);
    assert.equal(err.call, call, err.message);
    assert.equal(err.errno, errno, err.message);
    if (message) assert.match(err.message, message);
    return true;
  };
}

/** A backend whose xc interface is never used (helper-only operations), with domain 5 known to have 2 vCPUs. */
function helperBackend(which: 'fake' | 'real' = 'fake'): Hypervisor {
  const ctrl = { close() {} } as unknown as XenCtrl;
  const libs = { libraryVersion: '4.17', libxenctrlFile: 'none' } as unknown as XenLibraries;
  return new XenHypervisorBackend(ctrl, libs, 1, new Map([[5, 2]]), which === 'fake' ? { helper: { command: FAKE } } : {});
}

const PV = { type: 'pv' as const, kernel: '/boot/vmlinuz', memoryMib: 128, storePort: 1, consolePort: 2 };

test('importing the backend and bindings loads no Xen library (lazy loading)', { timeout: 30_000 }, () => {
  const script = [
    "await import('./src/hypervisor/xen.ts');",
    "await import('./bindings/xenguest.ts');",
    "const maps = (await import('node:fs')).readFileSync('/proc/self/maps', 'utf8');",
    "console.log(JSON.stringify(maps.split('\\n').filter((l) => /libxen/.test(l)).length));",
  ].join('\n');
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), '0');
});

test('errno numbers become names', () => {
  assert.equal(errnoName(2), 'ENOENT');
  assert.equal(errnoName(0), 'EUNKNOWN');
  assert.equal(errnoName(99999), 'E99999');
});

test('without Xen, opening the backend fails with xc_interface_open ENOENT and says why', { skip: libsMissing ?? (onXen ? 'this machine runs Xen' : undefined) }, async () => {
  const t0 = Date.now();
  await assert.rejects(openXenHypervisor(), hvError('xc_interface_open', 'ENOENT', /not running in a Xen dom0/));
  assert.ok(Date.now() - t0 < 5000);
});

test('a libxenctrl of another release is refused before use', { skip: libsMissing }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'xenopsd-libs-'));
  try {
    const other = join(dir, 'libxenctrl.so.4.16.0');
    copyFileSync(realpathSync(SYSTEM_LIBXENCTRL), other);
    await assert.rejects(openXenHypervisor({ libxenctrl: other }), hvError('xenctrl_version_check', 'ENOTSUP', /libxenctrl 4\.16 .* checked against \(4\.17\)/));
    const unnamed = join(dir, 'libxenctrl.so');
    copyFileSync(realpathSync(SYSTEM_LIBXENCTRL), unnamed);
    assert.throws(() => loadXenLibraries({ libxenctrl: unnamed }), hvError('xenctrl_version_check', 'ENOTSUP', /unknown release/));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a missing library is a clear dlopen error, not a crash', () => {
  assert.throws(() => loadXenLibraries({ libxenctrl: '/nonexistent/libxenctrl.so.4.17' }), hvError('dlopen', 'ENOENT', /libxenctrl not found at \/nonexistent/));
  assert.throws(() => loadXenLibraries({ libxenctrl: 'libxenctrl-absent.so.4.17' }), hvError('dlopen', 'ENOENT', /could not be loaded.*Xen 4\.17 libraries/));
});

test('the loaded library release comes from its file name', { skip: libsMissing }, () => {
  assert.equal(releaseFromLibraryName('/usr/lib/libxenctrl.so.4.17.0'), '4.17');
  assert.equal(releaseFromLibraryName('libxenctrl.so'), undefined);
  const libs = loadXenLibraries();
  assert.equal(libs.libraryVersion, '4.17');
  assert.match(libs.libxenctrlFile, /libxenctrl\.so\.4\.17/);
});

test('a hypervisor of another release is refused', () => {
  assert.doesNotThrow(() => assertCheckedHypervisor({ major: 4, minor: 17, extra: '.7' }));
  assert.throws(() => assertCheckedHypervisor({ major: 4, minor: 18, extra: '.0' }), hvError('xen_version_check', 'ENOTSUP', /Xen 4\.18\.0; .*4\.17 only/));
});

// Each of these starts helper processes (about a second each under tsx): run them side by side.
describe('helper process plumbing', { concurrency: true }, () => {
  test('the real helper, without Xen, fails a build with xc_interface_open ENOENT', { skip: libsMissing ?? (onXen ? 'this machine runs Xen' : undefined), timeout: 30_000 }, async () => {
    const hv = helperBackend('real');
    try {
      await assert.rejects(hv.build(5, PV), hvError('xc_interface_open', 'ENOENT', /privcmd/));
    } finally {
      await hv.close();
    }
  });

  test('build runs in the helper and returns 64-bit MFNs; the helper is reused', { timeout: 30_000 }, async () => {
    const hv = helperBackend();
    try {
      const a = await hv.build(5, PV);
      assert.deepEqual(a, { storeMfn: 1234567890123n, consoleMfn: 2n }); // consoleMfn echoes maxVcpus from createDomain's record
      const b = await hv.build(5, PV);
      assert.deepEqual(b, a);
    } finally {
      await hv.close();
    }
  });

  test('cancelling a build kills the helper process', { timeout: 30_000 }, async () => {
    const hv = helperBackend();
    try {
      await hv.build(5, PV); // warm: the next build reuses this helper
      const ac = new AbortController();
      const pending = hv.build(5, { ...PV, kernel: '/hang' }, ac.signal);
      setTimeout(() => ac.abort(), 100);
      const t0 = Date.now();
      await assert.rejects(pending, hvError('build', 'ECANCELED'));
      assert.ok(Date.now() - t0 < 2000);
      // A fresh helper serves the next build.
      assert.deepEqual(await hv.build(5, PV), { storeMfn: 1234567890123n, consoleMfn: 2n });
    } finally {
      await hv.close();
    }
  });

  test('a helper that dies mid-build fails the build with its output', { timeout: 30_000 }, async () => {
    const hv = helperBackend();
    try {
      await assert.rejects(hv.build(5, { ...PV, kernel: '/crash' }), hvError('xen-helper', 'EPIPE', /exited with code 3.*fake helper: crashing/s));
    } finally {
      await hv.close();
    }
  });

  test('build of an unknown domain is refused', { timeout: 10_000 }, async () => {
    const ctrl = { close() {}, getInfo: async () => undefined } as unknown as XenCtrl;
    const hv = new XenHypervisorBackend(ctrl, {} as XenLibraries, 1, new Map(), { helper: { command: FAKE } });
    await assert.rejects(hv.build(9, PV), hvError('build', 'ESRCH', /domain 9 does not exist/));
    await hv.close();
  });

  test('save relays suspend and progress through the helper', { timeout: 30_000 }, async () => {
    const hv = helperBackend();
    const dir = mkdtempSync(join(tmpdir(), 'xenopsd-save-'));
    const fd = openSync(join(dir, 'stream'), 'w');
    try {
      let suspends = 0;
      const progress: number[][] = [];
      const stats = await hv.save(5, fd, { live: true }, {
        suspend: async () => {
          suspends++;
        },
        progress: (sent, total, round) => progress.push([sent, total, round]),
      });
      assert.equal(suspends, 1);
      assert.deepEqual(progress, [[100, 120, 1]]);
      assert.deepEqual(stats, { rounds: 2, pagesSent: 120, bytes: 120 * 4096 });

      await assert.rejects(
        hv.save(5, fd, { live: false }, { suspend: async () => Promise.reject(new Error('guest ignored the suspend request')) }),
        hvError('xc_domain_save', 'EIO', /guest ignored the suspend request/),
      );
    } finally {
      closeSync(fd);
      rmSync(dir, { recursive: true, force: true });
      await hv.close();
    }
  });

  test('restore hands the stream fd to the helper', { timeout: 30_000 }, async () => {
    const hv = helperBackend();
    const dir = mkdtempSync(join(tmpdir(), 'xenopsd-restore-'));
    const path = join(dir, 'stream');
    writeFileSync(path, Buffer.alloc(4321, 1));
    const fd = openSync(path, 'r');
    try {
      assert.deepEqual(await hv.restore(5, fd, { storePort: 3, consolePort: 4 }), { storeMfn: 4321n, consoleMfn: 4n });
    } finally {
      closeSync(fd);
      rmSync(dir, { recursive: true, force: true });
      await hv.close();
    }
  });
});
