// PV devices the way libxl adds them (libxl__device_generic_add): backend and frontend written in one transaction,
// backend directory (n0,rD) under dom0-only parents, frontend directory (nD,r0); then wait for the backend to reach
// InitWait and, when a hotplug script is configured, for hotplug-status=connected (as xenopsd does).
import type { XenstoreClient } from '../xenstore/types.js';
import { XS_STATE } from '../xenstore/wire.js';
import type { VmSpec } from '../vm/spec.js';
import { defaultMac, vbdDevid } from '../vm/spec.js';
import type { DeviceRecord } from '../vm/store.js';
import { domainPath, ensureDom0Parent, Pipeline, rmQuiet, TX_RETRIES } from './xs-domain.js';
import { dom0ReadByGuest, guestOwnedDom0Read } from './xs-perms.js';
import { waitForValue } from './xs-wait.js';
import { Errors } from '../rpc/errors.js';

export interface DevicePlan {
  record: DeviceRecord;
  backendKeys: Record<string, string>;
  frontendKeys: Record<string, string>;
  /** vif only: the frontend's mtu key, which stays dom0's. */
  mtu?: number;
}

export function planDevices(spec: VmSpec, domid: number): DevicePlan[] {
  const plans: DevicePlan[] = [];
  const dom = domainPath(domid);
  (spec.vbds ?? []).forEach((vbd, i) => {
    const devid = vbdDevid(vbd.device)!;
    const backend = `/local/domain/0/backend/vbd/${domid}/${devid}`;
    const frontend = `${dom}/device/vbd/${devid}`;
    const type = vbd.type ?? 'disk';
    plans.push({
      record: { kind: 'vbd', devid, backend, frontend },
      backendKeys: {
        frontend,
        params: vbd.path,
        script: '/etc/xen/scripts/block',
        'frontend-id': String(domid),
        online: '1',
        removable: type === 'cdrom' ? '1' : '0',
        bootable: i === 0 ? '1' : '0',
        state: String(XS_STATE.Initialising),
        dev: vbd.device,
        type: 'phy',
        mode: (vbd.mode ?? (type === 'cdrom' ? 'ro' : 'rw')) === 'ro' ? 'r' : 'w',
        'device-type': type,
        // libxl 4.17 writes both: discard on for disks (the backend then offers feature-discard), and the
        // protocol specification (xen, not virtio).
        ...(type === 'disk' ? { 'discard-enable': '1' } : {}),
        specification: 'xen',
      },
      frontendKeys: {
        backend,
        'backend-id': '0',
        state: String(XS_STATE.Initialising),
        'virtual-device': String(devid),
        'device-type': type,
        trusted: '1',
        ...(spec.type === 'pv' ? { protocol: 'x86_64-abi' } : {}),
      },
    });
  });
  (spec.vifs ?? []).forEach((vif, position) => {
    const devid = vif.index ?? position;
    const backend = `/local/domain/0/backend/vif/${domid}/${devid}`;
    const frontend = `${dom}/device/vif/${devid}`;
    const mac = vif.mac ?? defaultMac(spec.id, devid);
    plans.push({
      record: { kind: 'vif', devid, backend, frontend },
      backendKeys: {
        frontend,
        'frontend-id': String(domid),
        online: '1',
        state: String(XS_STATE.Initialising),
        script: '/etc/xen/scripts/vif-bridge',
        mac,
        bridge: vif.bridge ?? 'xenbr0',
        handle: String(devid),
        type: 'vif',
        'hotplug-status': '',
      },
      frontendKeys: {
        backend,
        'backend-id': '0',
        state: String(XS_STATE.Initialising),
        handle: String(devid),
        mac,
        trusted: '1',
      },
      mtu: vif.mtu ?? 1500,
    });
  });
  return plans;
}

/** Writes both ends of the device (one transaction). */
export async function writeDevice(xs: XenstoreClient, domid: number, plan: DevicePlan): Promise<void> {
  const { kind } = plan.record;
  const { backend, frontend } = plan.record;
  await ensureDom0Parent(xs, `/local/domain/0/backend/${kind}/${domid}`);
  await xs.transaction(async (tx) => {
    const q = new Pipeline(tx);
    q.mkdir(backend);
    q.setPerms(backend, dom0ReadByGuest(domid));
    for (const [k, v] of Object.entries(plan.backendKeys)) q.write(`${backend}/${k}`, v);
    q.mkdir(frontend);
    q.setPerms(frontend, guestOwnedDom0Read(domid));
    for (const [k, v] of Object.entries(plan.frontendKeys)) q.write(`${frontend}/${k}`, v);
    if (kind === 'vif') {
      // The vif-bridge script rewrites mtu, so it stays dom0's (as in xl's tree).
      q.write(`${frontend}/mtu`, String(plan.mtu ?? 1500));
      q.setPerms(`${frontend}/mtu`, dom0ReadByGuest(domid));
    }
    await q.flush();
  }, { retries: TX_RETRIES });
}

export interface DeviceWaitOptions {
  initTimeoutMs: number;
  hotplugTimeoutMs: number;
  signal?: AbortSignal;
}

/** Waits for the backend to reach InitWait (or beyond) and for its hotplug script to report connected. */
export async function waitDeviceReady(xs: XenstoreClient, plan: DevicePlan, opts: DeviceWaitOptions): Promise<void> {
  const { backend } = plan.record;
  await waitForValue(xs, `${backend}/state`, (v) => v !== undefined && Number(v) >= XS_STATE.InitWait && Number(v) <= XS_STATE.Connected, {
    timeoutMs: opts.initTimeoutMs,
    signal: opts.signal,
    what: `${backend}/state to reach InitWait`,
  });
  await waitForValue(xs, `${backend}/hotplug-status`, (v) => v === 'connected' || (v !== undefined && v.startsWith('error')), {
    timeoutMs: opts.hotplugTimeoutMs,
    signal: opts.signal,
    what: `${backend}/hotplug-status`,
  }).then(async (v) => {
    if (v === 'connected') return;
    const detail = (await xs.tryRead(`${backend}/hotplug-error`)) ?? v ?? 'unknown error';
    throw Errors.backendError(`hotplug of ${backend} failed: ${detail}`, { device: backend });
  });
}

/**
 * Asks the backend to close (online=0, state=Closing) and, if waitMs > 0, waits for Closed, then removes both ends.
 * The frontend is removed last and only after the backend closed or the wait gave up (xenopsd#613: removing it early
 * can corrupt a live ring).
 */
export async function removeDevice(xs: XenstoreClient, rec: DeviceRecord, waitMs: number, signal?: AbortSignal): Promise<void> {
  const state = await xs.tryRead(`${rec.backend}/state`);
  if (state !== undefined && rec.kind !== 'console') {
    await xs.transaction(async (tx) => {
      await tx.write(`${rec.backend}/online`, '0');
      await tx.write(`${rec.backend}/state`, String(XS_STATE.Closing));
    }, { retries: TX_RETRIES });
    if (waitMs > 0 && Number(state) !== XS_STATE.Initialising) {
      await waitForValue(xs, `${rec.backend}/state`, (v) => v === undefined || Number(v) === XS_STATE.Closed, {
        timeoutMs: waitMs,
        signal,
        what: `${rec.backend}/state to reach Closed`,
      }).catch(() => {});
    }
  }
  await rmQuiet(xs, rec.backend);
  await rmQuiet(xs, rec.frontend);
}
