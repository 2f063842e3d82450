// Struct encode/decode without Xen: bytes laid out by hand at the offsets of the ABI notes
// (shared/reference/xen-abi-4.17.md), decoded by the bindings.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DOMAININFO_SIZE,
  decodeDomainInfoList,
  decodePhysInfo,
  dirtyPfnsFromBitmap,
  encodeCreateDomain,
  handleToUuid,
  uuidToHandle,
} from '../../bindings/marshal.js';
import { CreateFlag, DomInfoFlag, ShutdownReason } from '../../src/hypervisor/types.js';

const UUID = '0b5e7c1a-2f4d-4e6a-9c3b-8d1f2e3a4b5c';

function domaininfoBytes(rec: { domid: number; flags: number; tot: bigint; max: bigint; cpu: bigint; vcpus: number; maxVcpu: number; uuid: string }): Buffer {
  const b = Buffer.alloc(112, 0xee); // junk in the fields not written, as in a reused buffer
  b.writeUInt16LE(rec.domid, 0);
  b.writeUInt16LE(0, 2);
  b.writeUInt32LE(rec.flags >>> 0, 4);
  b.writeBigUInt64LE(rec.tot, 8);
  b.writeBigUInt64LE(rec.max, 16);
  b.writeBigUInt64LE(rec.cpu, 56);
  b.writeUInt32LE(rec.vcpus, 64);
  b.writeUInt32LE(rec.maxVcpu, 68);
  uuidToHandle(rec.uuid).copy(b, 76);
  return b;
}

test('xc_domaininfo_t is 112 bytes and decodes every field the daemon uses', () => {
  assert.equal(DOMAININFO_SIZE, 112);
  const flags = DomInfoFlag.shutdown | DomInfoFlag.paused | DomInfoFlag.hvm_guest | (ShutdownReason.suspend << 16);
  const two = Buffer.concat([
    domaininfoBytes({ domid: 0, flags: DomInfoFlag.running, tot: 262144n, max: 262400n, cpu: 12_345_678_901n, vcpus: 2, maxVcpu: 1, uuid: '00000000-0000-0000-0000-000000000000' }),
    domaininfoBytes({ domid: 7, flags, tot: 32768n, max: 33024n, cpu: 5n, vcpus: 1, maxVcpu: 3, uuid: UUID }),
  ]);
  const [dom0, dom7] = decodeDomainInfoList(two, 2);
  assert.equal(dom0.domid, 0);
  assert.equal(dom0.running, true);
  assert.equal(dom0.shutdown, false);
  assert.equal(dom0.cpuTimeNs, 12_345_678_901);
  assert.equal(dom0.totPages, 262144);
  assert.equal(dom0.maxPages, 262400);
  assert.equal(dom0.onlineVcpus, 2);
  assert.deepEqual(
    { ...dom7 },
    {
      domid: 7,
      flags,
      dying: false,
      shutdown: true,
      shutdownReason: ShutdownReason.suspend,
      paused: true,
      running: false,
      blocked: false,
      hvm: true,
      totPages: 32768,
      maxPages: 33024,
      cpuTimeNs: 5,
      onlineVcpus: 1,
      maxVcpuId: 3,
      handle: UUID,
    },
  );
});

test('decodeDomainInfoList refuses a count larger than the buffer', () => {
  assert.throws(() => decodeDomainInfoList(Buffer.alloc(112), 2), /2 domain info records need 224 bytes, have 112/);
  assert.deepEqual(decodeDomainInfoList(Buffer.alloc(0), 0), []);
});

test('xen_domctl_createdomain encodes at the ABI offsets', () => {
  const pv = encodeCreateDomain({ handle: UUID, flags: 0, maxVcpus: 2 }, { maxGrantVersion: 2 });
  assert.equal(pv.length, 64);
  assert.equal(pv.readUInt32LE(0), 0); // ssidref
  assert.equal(handleToUuid(pv.subarray(4, 20)), UUID);
  assert.equal(pv.readUInt32LE(20), 0); // flags
  assert.equal(pv.readUInt32LE(28), 2); // max_vcpus
  assert.equal(pv.readUInt32LE(32), 1023); // max_evtchn_port default
  assert.equal(pv.readInt32LE(36), -1); // max_grant_frames: Xen's default
  assert.equal(pv.readInt32LE(40), -1);
  assert.equal(pv.readUInt32LE(44), 2); // grant_opts: version 2
  assert.equal(pv.readUInt32LE(56), 0); // arch.emulation_flags: PV emulates nothing

  const pvh = encodeCreateDomain(
    { handle: UUID, flags: CreateFlag.hvm | CreateFlag.hap, maxVcpus: 1, maxEvtchnPort: 63, maxGrantFrames: 32, maxMaptrackFrames: 0 },
    { maxGrantVersion: 1 },
  );
  assert.equal(pvh.readUInt32LE(20), 3);
  assert.equal(pvh.readUInt32LE(32), 63);
  assert.equal(pvh.readInt32LE(36), 32);
  assert.equal(pvh.readInt32LE(40), 0);
  assert.equal(pvh.readUInt32LE(44), 1);
  assert.equal(pvh.readUInt32LE(56), 1); // XEN_X86_EMU_LAPIC only
});

test('bad create configs are refused with the field named', () => {
  assert.throws(() => encodeCreateDomain({ handle: 'not-a-uuid', flags: 0, maxVcpus: 1 }, { maxGrantVersion: 1 }), /domain handle must be a uuid/);
  assert.throws(() => encodeCreateDomain({ handle: UUID, flags: 0, maxVcpus: 0 }, { maxGrantVersion: 1 }), /maxVcpus must be at least 1/);
  assert.throws(() => encodeCreateDomain({ handle: UUID, flags: -1, maxVcpus: 1 }, { maxGrantVersion: 1 }), /flags must be a 32-bit unsigned/);
});

test('uuid <-> handle round-trips, hyphens optional', () => {
  assert.equal(handleToUuid(uuidToHandle(UUID)), UUID);
  assert.equal(handleToUuid(uuidToHandle(UUID.replace(/-/g, '').toUpperCase())), UUID);
});

test('physinfo decodes counts, pages and capabilities', () => {
  const b = Buffer.alloc(112);
  b.writeUInt32LE(4, 8); // nr_cpus
  b.writeUInt32LE((1 << 1) | (1 << 9), 28); // capabilities: pv, gnttab_v2
  b.writeBigUInt64LE(1_048_576n, 40); // total_pages
  b.writeBigUInt64LE(700_000n, 48); // free_pages
  assert.deepEqual(decodePhysInfo(b), { nrCpus: 4, totalPages: 1_048_576, freePages: 700_000, pageSize: 4096, capabilities: 0x202 });
});

test('dirty bitmap: bit i of byte j is pfn 8j+i, bounded by the page count', () => {
  const bitmap = new Uint8Array([0b0000_0101, 0, 0b1000_0000, 0xff]);
  assert.deepEqual(dirtyPfnsFromBitmap(bitmap, 32), [0, 2, 23, 24, 25, 26, 27, 28, 29, 30, 31]);
  assert.deepEqual(dirtyPfnsFromBitmap(bitmap, 26), [0, 2, 23, 24, 25]);
});
