// A minimal toolstack for the sim host's tests: creates domains through the hypervisor socket and writes
// xenstore the way libxl does (see shared/reference/xl-trees), using nothing but the host's sockets.
import { randomUUID } from 'node:crypto';
import type { HvClient } from './hvclient.js';
import type { XenstoreClient } from '../../src/xenstore/types.js';
import type { Perm } from '../../src/xenstore/wire.js';
import { XsClient } from '../../src/xenstore/client.js';

export const own = (domid: number): Perm[] => [{ id: domid, perm: 'n' }];
export const dom0ReadBy = (domid: number): Perm[] => [{ id: 0, perm: 'n' }, { id: domid, perm: 'r' }];
export const guestReadBy0 = (domid: number): Perm[] => [{ id: domid, perm: 'n' }, { id: 0, perm: 'r' }];

export async function connectXs(path: string): Promise<XsClient> {
  return XsClient.connect({ path, timeoutMs: 5000, reconnect: false });
}

/** Writes `value` at path with perms, as libxl does (WRITE then SET_PERMS). */
async function put(xs: XenstoreClient, path: string, value: string, perms: Perm[]): Promise<void> {
  await xs.write(path, value);
  await xs.setPerms(path, perms);
}

export interface TestDomain {
  domid: number;
  uuid: string;
  dompath: string;
}

/**
 * Creates, builds and introduces a PV domain (left paused), with its xenstore skeleton. With `restore`,
 * the domain's memory comes from that function (a restore call) instead of a build.
 */
export async function createDomain(
  hv: HvClient,
  xs: XenstoreClient,
  opts: { memoryMib?: number; name?: string; restore?: (domid: number, storePort: number, consolePort: number) => Promise<{ storeMfn: number | bigint }> } = {},
): Promise<TestDomain> {
  const uuid = randomUUID();
  const memoryMib = opts.memoryMib ?? 64;
  const domid = await hv.call<number>('createDomain', { handle: uuid, flags: 0, maxVcpus: 1 });
  await hv.call('setMaxMem', domid, memoryMib * 1024);
  const storePort = await hv.call<number>('evtchnAllocUnbound', domid, 0);
  const consolePort = await hv.call<number>('evtchnAllocUnbound', domid, 0);
  const built = opts.restore
    ? await opts.restore(domid, storePort, consolePort)
    : await hv.call<{ storeMfn: number }>('build', domid, { type: 'pv', kernel: '/boot/vmlinuz-sim', memoryMib, storePort, consolePort });
  const dp = `/local/domain/${domid}`;
  const ro = dom0ReadBy(domid);
  await put(xs, dp, '', ro);
  await put(xs, `${dp}/vm`, `/vm/${uuid}`, ro);
  await put(xs, `${dp}/name`, opts.name ?? `test-${domid}`, ro);
  await put(xs, `${dp}/domid`, String(domid), ro);
  await put(xs, `${dp}/memory`, '', ro);
  await put(xs, `${dp}/memory/static-max`, String(memoryMib * 1024), ro);
  await put(xs, `${dp}/memory/target`, String(memoryMib * 1024), ro);
  await put(xs, `${dp}/device`, '', ro);
  await put(xs, `${dp}/control`, '', ro);
  for (const k of ['shutdown', 'feature-poweroff', 'feature-reboot', 'feature-suspend', 'feature-balloon', 'sysrq']) await put(xs, `${dp}/control/${k}`, '', own(domid));
  for (const k of ['data', 'drivers', 'feature', 'attr', 'error']) await put(xs, `${dp}/${k}`, '', own(domid));
  await put(xs, `${dp}/store`, '', ro);
  await put(xs, `${dp}/store/port`, String(storePort), ro);
  await put(xs, `${dp}/store/ring-ref`, String(built.storeMfn), ro);
  await xs.introduceDomain(domid, Number(built.storeMfn), storePort);
  return { domid, uuid, dompath: dp };
}

export interface DeviceSpec {
  type: 'vbd' | 'vif';
  devid: number;
  /** Backend keys besides frontend, frontend-id, online, state. */
  backend: Record<string, string>;
  /** Frontend keys besides backend, backend-id, state. */
  frontend: Record<string, string>;
}

export function vbdSpec(devid: number, params: string, extra: Record<string, string> = {}): DeviceSpec {
  return {
    type: 'vbd',
    devid,
    backend: { params, script: '/etc/xen/scripts/block', removable: '0', bootable: '1', dev: 'xvda', type: 'phy', mode: 'w', 'device-type': 'disk', 'discard-enable': '1', ...extra },
    frontend: { 'virtual-device': String(devid), 'device-type': 'disk', protocol: 'x86_64-abi' },
  };
}

export function vifSpec(devid: number, bridge: string): DeviceSpec {
  const mac = `00:16:3e:00:00:${devid.toString(16).padStart(2, '0')}`;
  return {
    type: 'vif',
    devid,
    backend: { script: '/etc/xen/scripts/vif-bridge', mac, bridge, handle: String(devid), type: 'vif', 'hotplug-status': '' },
    frontend: { handle: String(devid), mac },
  };
}

export interface DevicePaths {
  backend: string;
  frontend: string;
}

/** Writes a device's backend and frontend directories in one transaction, as libxl__device_generic_add. */
export async function addDevice(xs: XenstoreClient, domid: number, spec: DeviceSpec): Promise<DevicePaths> {
  const backend = `/local/domain/0/backend/${spec.type}/${domid}/${spec.devid}`;
  const frontend = `/local/domain/${domid}/device/${spec.type}/${spec.devid}`;
  await xs.transaction(async (tx) => {
    for (const p of [`/local/domain/0/backend/${spec.type}`, `/local/domain/0/backend/${spec.type}/${domid}`]) {
      if ((await tx.tryRead(p)) === undefined) await tx.write(p, '');
    }
    await tx.mkdir(backend);
    await tx.setPerms(backend, dom0ReadBy(domid));
    const bkeys = { frontend, 'frontend-id': String(domid), online: '1', state: '1', ...spec.backend };
    for (const [k, v] of Object.entries(bkeys)) await tx.write(`${backend}/${k}`, v);
    if ((await tx.tryRead(`/local/domain/${domid}/device/${spec.type}`)) === undefined) {
      await tx.write(`/local/domain/${domid}/device/${spec.type}`, '');
      await tx.setPerms(`/local/domain/${domid}/device/${spec.type}`, dom0ReadBy(domid));
    }
    await tx.mkdir(frontend);
    await tx.setPerms(frontend, guestReadBy0(domid));
    const fkeys = { backend, 'backend-id': '0', state: '1', ...spec.frontend };
    for (const [k, v] of Object.entries(fkeys)) await tx.write(`${frontend}/${k}`, v);
  });
  return { backend, frontend };
}

/** Resolves with the value at path once pred accepts it (watching, not polling); rejects after timeoutMs. */
export async function waitFor(xs: XenstoreClient, path: string, pred: (v: string | undefined) => boolean, timeoutMs = 5000): Promise<string | undefined> {
  const watch = await xs.watch(path, `wait-${Math.random().toString(36).slice(2)}`);
  const timer = setTimeout(() => void watch.close(), timeoutMs);
  try {
    for await (const _ of watch) {
      const v = await xs.tryRead(path);
      if (pred(v)) return v;
    }
    throw new Error(`timed out after ${timeoutMs} ms waiting on ${path} (last value ${JSON.stringify(await xs.tryRead(path))})`);
  } finally {
    clearTimeout(timer);
    await watch.close().catch(() => undefined);
  }
}

/** Polls fn until it returns a value other than undefined; rejects after timeoutMs. */
export async function until<T>(fn: () => Promise<T | undefined>, what: string, timeoutMs = 5000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
