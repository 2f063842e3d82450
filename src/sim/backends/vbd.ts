// blkback plus the `block` hotplug script: the params file or device must exist; the disk's size becomes
// `sectors` at connect time, as in the xl tree of a real host (see shared/reference/xl-trees).
import { stat } from 'node:fs/promises';
import { HotplugError, type BackendKind, type KeyReader } from './kind.js';
import { XS_STATE, parseU32 } from './xenbus.js';

const SECTOR = 512;
/** VDISK_* bits of the `info` key (xen/io/blkif.h). */
const VDISK_CDROM = 1;
const VDISK_REMOVABLE = 2;
const VDISK_READONLY = 4;
const PROTOCOLS = new Set(['x86_64-abi', 'x86_32-abi', 'arm-abi']);
/** Loop devices handed out to file-backed disks (major 7), per sim host. */
let nextLoop = 0;

export const vbdKind: BackendKind = {
  type: 'vbd',

  async probeKeys() {
    return {
      'feature-max-indirect-segments': '256',
      'multi-queue-max-queues': '2',
      'max-ring-page-order': '4',
    };
  },

  async hotplug(be: KeyReader): Promise<Record<string, string>> {
    const params = (await be('params')) ?? '';
    const deviceType = (await be('device-type')) ?? 'disk';
    const mode = (await be('mode')) ?? 'w';
    if (mode !== 'r' && mode !== 'w') throw new HotplugError(`bad mode ${JSON.stringify(mode)}: must be r or w`);
    if (params === '') {
      // An empty CD drive is legitimate; an empty disk is not.
      if (deviceType === 'cdrom') return { 'hotplug-status': 'connected' };
      throw new HotplugError('params is empty: no file or device to attach');
    }
    if (!params.startsWith('/')) throw new HotplugError(`params ${JSON.stringify(params)} is not an absolute path`);
    let st;
    try {
      st = await stat(params);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
      throw new HotplugError(`${params} does not exist or is not accessible (${code})`);
    }
    let node: string;
    let physical: string;
    if (st.isBlockDevice()) {
      node = params;
      physical = `${(Number(st.rdev) >> 8).toString(16)}:${(Number(st.rdev) & 0xff).toString(16)}`;
    } else if (st.isFile()) {
      const loop = nextLoop++;
      node = `/dev/loop${loop}`;
      physical = `7:${loop.toString(16)}`;
    } else {
      throw new HotplugError(`${params} is neither a regular file nor a block device`);
    }
    return { node, 'physical-device': physical, 'physical-device-path': node, 'hotplug-status': 'connected' };
  },

  connectOn: [XS_STATE.Initialised, XS_STATE.Connected],

  async connect(be: KeyReader, fe: KeyReader) {
    const ringPageOrder = await fe('ring-page-order');
    if (ringPageOrder !== undefined) {
      const order = parseU32(ringPageOrder);
      if (order === undefined || order > 4) return `bad ring-page-order ${JSON.stringify(ringPageOrder)}`;
      for (let i = 0; i < 1 << order; i++) {
        if (parseU32(await fe(`ring-ref${i}`)) === undefined) return `missing or bad ring-ref${i}`;
      }
    } else if (parseU32(await fe('ring-ref')) === undefined) {
      return `missing or bad ring-ref ${JSON.stringify(await fe('ring-ref'))}`;
    }
    if (parseU32(await fe('event-channel')) === undefined) return `missing or bad event-channel ${JSON.stringify(await fe('event-channel'))}`;
    const protocol = await fe('protocol');
    if (protocol !== undefined && !PROTOCOLS.has(protocol)) return `unknown frontend protocol ${JSON.stringify(protocol)}`;

    const params = (await be('params')) ?? '';
    const deviceType = (await be('device-type')) ?? 'disk';
    let sectors = 0;
    if (params !== '') {
      try {
        sectors = Math.floor((await stat(params)).size / SECTOR);
      } catch {
        return `${params} disappeared before connect`;
      }
    }
    let info = 0;
    if (deviceType === 'cdrom') info |= VDISK_CDROM | VDISK_REMOVABLE;
    if ((await be('removable')) === '1') info |= VDISK_REMOVABLE;
    if ((await be('mode')) === 'r' || deviceType === 'cdrom') info |= VDISK_READONLY;
    const discard = (await be('discard-enable')) !== '0' && (info & VDISK_READONLY) === 0;
    return {
      'feature-flush-cache': '1',
      ...(discard
        ? { 'discard-granularity': '4096', 'discard-alignment': '0', 'discard-secure': '0', 'feature-discard': '1' }
        : {}),
      'feature-barrier': '1',
      'feature-persistent': '1',
      sectors: String(sectors),
      info: String(info),
      'sector-size': String(SECTOR),
      'physical-sector-size': String(SECTOR),
    };
  },
};
