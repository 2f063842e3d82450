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

const DOM0 = '/local/domain/0/';
/** Longest backend-written reason carried into an API error. */
const MAX_REASON = 200;

const isClosingOrClosed = (v: string | undefined): boolean => v === String(XS_STATE.Closing) || v === String(XS_STATE.Closed);

/**
 * Where the backend's driver records why it gave up on the device (xenbus_dev_fatal writes
 * /local/domain/0/error/<its device path relative to /local/domain/0>/error); the directory holding the error node.
 */
export function deviceErrorDir(backend: string): string | undefined {
  return backend.startsWith(DOM0) ? `${DOM0}error/${backend.slice(DOM0.length)}` : undefined;
}

/** A reason fit for an error message: one line (control characters and runs of space become one space), capped. */
export function cleanReason(raw: string): string {
  const flat = raw.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\s]+/g, ' ').trim();
  return flat.length > MAX_REASON ? `${flat.slice(0, MAX_REASON)}…` : flat;
}

/** The backend closed the device instead of setting it up: DEVICE_NOT_CONNECTED with the reason it recorded, if any. */
async function backendClosed(xs: XenstoreClient, backend: string, state: string | undefined): Promise<Error> {
  const dir = deviceErrorDir(backend);
  const raw = dir === undefined ? undefined : await xs.tryRead(`${dir}/error`).catch(() => undefined);
  const reason = raw === undefined ? '' : cleanReason(raw);
  const stateName = Number(state) === XS_STATE.Closed ? 'Closed' : 'Closing';
  return Errors.deviceNotConnected(backend, `the backend gave up on it (state ${stateName})${reason ? `: ${reason}` : ''}`);
}

const NEVER = new Promise<never>(() => {});

/**
 * Waits for the backend to reach InitWait (or beyond) and for its hotplug script to report connected. A backend
 * that closes the device instead (Closing/Closed: its driver could not set it up, as blkback that cannot open the
 * disk) ends the wait at once with DEVICE_NOT_CONNECTED; one that never answers ends it with a timeout.
 */
export async function waitDeviceReady(xs: XenstoreClient, plan: DevicePlan, opts: DeviceWaitOptions): Promise<void> {
  const { backend } = plan.record;
  const state = await waitForValue(
    xs,
    `${backend}/state`,
    (v) => isClosingOrClosed(v) || (v !== undefined && Number(v) >= XS_STATE.InitWait && Number(v) <= XS_STATE.Connected),
    { timeoutMs: opts.initTimeoutMs, signal: opts.signal, what: `${backend}/state to reach InitWait` },
  );
  if (isClosingOrClosed(state)) throw await backendClosed(xs, backend, state);

  // A real blkback reaches InitWait on probe and gives up only later, once the hotplug script named the physical
  // device: so the state is watched during the hotplug wait too.
  // Whichever wait ends first stops the other (and its watch).
  const done = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, done.signal]) : done.signal;
  const closed = waitForValue(xs, `${backend}/state`, isClosingOrClosed, {
    timeoutMs: opts.hotplugTimeoutMs + 60_000, // outlives the hotplug wait, whose timeout is the one reported
    signal,
    what: `${backend}/state to close`,
  }).then(
    async (v) => {
      throw await backendClosed(xs, backend, v);
    },
    () => NEVER, // stopped (the hotplug wait ended, or the task was cancelled): the hotplug wait reports
  );
  let status: string | undefined;
  try {
    status = await Promise.race([
      waitForValue(xs, `${backend}/hotplug-status`, (v) => v === 'connected' || (v !== undefined && v.startsWith('error')), {
        timeoutMs: opts.hotplugTimeoutMs,
        signal,
        what: `${backend}/hotplug-status`,
      }),
      closed,
    ]);
  } finally {
    done.abort();
  }
  if (status !== 'connected') {
    const detail = (await xs.tryRead(`${backend}/hotplug-error`)) ?? status ?? 'unknown error';
    throw Errors.backendError(`hotplug of ${backend} failed: ${detail}`, { device: backend });
  }
  // Both may have happened by the time the hotplug wait saw connected.
  const now = await xs.tryRead(`${backend}/state`);
  if (isClosingOrClosed(now)) throw await backendClosed(xs, backend, now);
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
  await removeDeviceError(xs, rec.backend);
}

/**
 * Removes what the backend's driver recorded about the device under /local/domain/0/error (as xenopsd does), and the
 * parents that leaves empty, up to and including /local/domain/0/error: one transaction, so an error another device's
 * backend writes meanwhile is not lost with a parent removed as empty.
 */
async function removeDeviceError(xs: XenstoreClient, backend: string): Promise<void> {
  const dir = deviceErrorDir(backend);
  if (dir === undefined || (await xs.tryRead(dir)) === undefined) return;
  const top = `${DOM0}error`;
  await xs.transaction(async (tx) => {
    await rmQuiet(tx, dir);
    for (let p = dir.slice(0, dir.lastIndexOf('/')); p.length >= top.length; p = p.slice(0, p.lastIndexOf('/'))) {
      const children = await tx.directory(p).catch(() => undefined);
      if (children === undefined) continue;
      if (children.length > 0 || (await tx.tryRead(p)) !== '') return;
      await rmQuiet(tx, p);
    }
  }, { retries: TX_RETRIES });
}
