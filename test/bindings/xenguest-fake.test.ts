// The bindings' libxenguest paths (the xc_dom_* build, save and restore with their callbacks) run through koffi
// against a stand-in libxenguest compiled from the installed headers (fixtures/fake-xenguest.c): the C side
// reads the xc_dom_image fields the bindings wrote and calls the callbacks with the real struct layouts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import koffi from 'koffi';
import { HypervisorError } from '../../src/hypervisor/types.js';
import { buildDomain, pvhLayout } from '../../src/hypervisor/xen-build.js';
import { XenGuest, type PrecopyStatsValue } from '../../bindings/xenguest.js';
import type { XenCtrl } from '../../bindings/xenctrl.js';
import { probeUnavailable } from '../../bindings/layout/compare.js';
import { XCFLAGS_LIVE } from '../../bindings/structs.js';

const skip = probeUnavailable();
const SOURCE = resolve(import.meta.dirname, 'fixtures/fake-xenguest.c');
let dir: string;
let lib: ReturnType<typeof koffi.load>;
let fakeLog: () => string;
let fakeReset: () => void;

before(() => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'xenopsd-fakexg-'));
  const so = join(dir, 'libfakexenguest.so');
  const cc = spawnSync(process.env.CC ?? 'gcc', ['-std=gnu11', '-Wall', '-Werror', '-shared', '-fPIC', '-o', so, SOURCE], { encoding: 'utf8' });
  if (cc.status !== 0) throw new Error(`compiling the fake libxenguest failed:\n${cc.stderr}`);
  lib = koffi.load(so);
  fakeLog = lib.func('const char *fake_log(void)') as unknown as () => string;
  fakeReset = lib.func('void fake_reset(void)') as unknown as () => void;
});
after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface FakeCtrl {
  ctrl: XenCtrl;
  calls: unknown[][];
}

function fakeCtrl(): FakeCtrl {
  const calls: unknown[][] = [];
  const ctrl = {
    xch: 0x5eed000n,
    sync: (name: string, ...args: unknown[]) => {
      calls.push([name, ...args]);
      return 0;
    },
    setMemoryMapSync: (domid: number, entries: unknown[]) => calls.push(['set_memory_map', domid, entries]),
    lastErrorMessage: () => undefined,
  } as unknown as XenCtrl;
  return { ctrl, calls };
}

function steps(): string[] {
  return fakeLog().split(';').filter(Boolean);
}

test('PV build: the C side sees every field the bindings set, and the MFNs go through the p2m', { skip }, () => {
  fakeReset();
  const { ctrl, calls } = fakeCtrl();
  const guest = new XenGuest(lib, ctrl);
  const out = buildDomain(ctrl, guest, 7, {
    type: 'pv', kernel: '/boot/vmlinuz', ramdisk: '/boot/initrd', cmdline: 'console=hvc0', memoryMib: 128, storePort: 3, consolePort: 4, maxVcpus: 2,
  });
  assert.deepEqual(out, { storeMfn: 0x100000200n, consoleMfn: 0x100000210n });
  assert.deepEqual(steps(), [
    'cpuid domid=7 restore=0 nr=0 pae=1 itsc=0 nested=0',
    'allocate cmdline=console=hvc0 features=(null)',
    'kernel /boot/vmlinuz',
    'module /boot/initrd cmdline=(null)',
    'boot_xen_init domid=7 same_xch=1',
    'parse_image container=0 console_evtchn=4 xenstore_evtchn=3 console_domid=0 xenstore_domid=0 max_vcpus=2 flags=0 claim=0',
    'mem_init 128',
    'boot_mem_init',
    'build_image',
    'boot_image',
    'gnttab_init',
    'release',
  ]);
  assert.deepEqual(calls, [
    ['xc_domain_set_memmap_limit', 7, 128 * 1024],
    ['xc_domain_set_tsc_info', 7, 0, 0, 0, 0],
  ]);
});

test('PVH build: HVM container, memory layout around the MMIO hole, e820 given to the builder and to Xen', { skip }, () => {
  fakeReset();
  const { ctrl, calls } = fakeCtrl();
  const guest = new XenGuest(lib, ctrl);
  const out = buildDomain(ctrl, guest, 8, { type: 'pvh', kernel: '/k', memoryMib: 5000, storePort: 5, consolePort: 6, maxVcpus: 1 });
  assert.deepEqual(out, { storeMfn: 0x20n, consoleMfn: 0x21n }); // translated: gfns
  const layout = pvhLayout(5000);
  assert.equal(layout.lowmemEnd, 0xfc000000n);
  assert.equal(layout.highmemEnd, (1n << 32n) + (5000n << 20n) - 0xfc000000n);
  const log = steps();
  assert.ok(log.includes(`hvm target_pages=${5000 * 256} mmio_start=0xfc000000 mmio_size=0x4000000 lowmem_end=0xfc000000 highmem_end=0x${layout.highmemEnd.toString(16)} device_model=0`), log.join('\n'));
  assert.ok(log.includes('e820 0+0xfc000000 type=1'), log.join('\n'));
  assert.ok(log.includes(`e820 0x100000000+0x${(layout.highmemEnd - (1n << 32n)).toString(16)} type=1`), log.join('\n'));
  assert.equal(calls.length, 2); // tsc + memory map: no memmap limit for PVH
  assert.deepEqual(calls[1], ['set_memory_map', 8, [
    { addr: 0n, size: 0xfc000000n, type: 1 },
    { addr: 1n << 32n, size: layout.highmemEnd - (1n << 32n), type: 1 },
  ]]);
});

test('a failing build step names itself and still releases the image', { skip }, () => {
  fakeReset();
  const { ctrl } = fakeCtrl();
  const guest = new XenGuest(lib, ctrl);
  assert.throws(
    () => buildDomain(ctrl, guest, 7, { type: 'pv', kernel: '/missing', memoryMib: 64, storePort: 1, consolePort: 2, maxVcpus: 1 }),
    (e: unknown) => e instanceof HypervisorError && e.call === 'xc_dom_kernel_file' && e.errno === 'ENOENT',
  );
  assert.equal(steps().at(-1), 'release');
  assert.throws(
    () => buildDomain(ctrl, guest, 7, { type: 'hvm', kernel: '/k', memoryMib: 64, storePort: 1, consolePort: 2, maxVcpus: 1 }),
    /domain type "hvm" is not supported/,
  );
});

test('save: precopy_policy gets struct precopy_stats by value; suspend decides success', { skip }, () => {
  fakeReset();
  const { ctrl } = fakeCtrl();
  const guest = new XenGuest(lib, ctrl);
  const path = join(dir, 'stream');
  const fd = openSync(path, 'w');
  try {
    const seen: PrecopyStatsValue[] = [];
    guest.save(fd, 9, XCFLAGS_LIVE, {
      suspend: () => 1,
      precopyPolicy: (s) => {
        seen.push({ ...s });
        return s.iteration >= 3 ? 1 : 0;
      },
    });
    assert.deepEqual(seen, [
      { iteration: 1, total_written: 1000, dirty_count: 1000 },
      { iteration: 2, total_written: 2000, dirty_count: 500 },
      { iteration: 3, total_written: 3000, dirty_count: 333 },
    ]);
    assert.deepEqual(steps(), ['save dom=9 flags=1 stream=0 recv_fd=-1', 'policy it=1 -> 0', 'policy it=2 -> 0', 'policy it=3 -> 1', 'suspended']);
    assert.throws(
      () => guest.save(fd, 9, 0, { suspend: () => 0 }),
      (e: unknown) => e instanceof HypervisorError && e.call === 'xc_domain_save' && e.errno === 'EINVAL',
    );
  } finally {
    closeSync(fd);
  }
  assert.equal(readFileSync(path, 'utf8'), 'STREAM');
});

test('restore: MFNs come back through the out-parameters; a stream missing CPUID data gets the default policy', { skip }, () => {
  fakeReset();
  const { ctrl } = fakeCtrl();
  const guest = new XenGuest(lib, ctrl);
  const path = join(dir, 'in-stream');
  writeFileSync(path, 'STREAM');
  const fd = openSync(path, 'r');
  try {
    assert.deepEqual(guest.restore(fd, 11, { storePort: 7, consolePort: 8 }), { storeMfn: 0x1234567890n, consoleMfn: 0x42n });
  } finally {
    closeSync(fd);
  }
  assert.deepEqual(steps(), [
    'restore dom=11 store=7/0 console=8/0 stream=0',
    'cpuid domid=11 restore=1 nr=0 pae=1 itsc=0 nested=0',
  ]);
  const empty = openSync(path, 'w');
  closeSync(empty);
  const fd2 = openSync(path, 'r');
  try {
    assert.throws(() => guest.restore(fd2, 11, { storePort: 7, consolePort: 8 }), (e: unknown) => e instanceof HypervisorError && e.errno === 'EPROTO');
  } finally {
    closeSync(fd2);
  }
});
