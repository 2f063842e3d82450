// One backend device (one /local/domain/0/backend/<type>/<domid>/<devid> directory) and its walk through the
// xenbus states. Each change anywhere in the device's backend directory, or of its frontend's state,
// re-runs reconcile(), which reads what is there and takes the next step; runs are serialised and coalesced.
import type { Logger } from 'pino';
import type { Watch, XenstoreClient } from '../../xenstore/types.js';
import type { BackendFaults } from './faults.js';
import { CoalescedRuns } from '../coalesced-runs.js';
import { HotplugError, type BackendKind, type KeyReader } from './kind.js';
import { XS_STATE, parseState, parseU32, readOpt, writeChanged, type XenbusState } from './xenbus.js';

export interface DeviceContext {
  xs: XenstoreClient;
  faults: BackendFaults;
  log: Logger;
  /** Whether the frontend's domain can still answer (not shut down, dying or gone). */
  domainAlive(domid: number): boolean;
}

const ACTIVE_FRONTEND: ReadonlySet<number> = new Set([XS_STATE.Initialised, XS_STATE.Connected, XS_STATE.Closing]);

export class BackendDevice {
  /** What this backend last saw of itself, for `sim status`. */
  state: XenbusState | undefined;
  hotplug: 'pending' | 'connected' | 'error' = 'pending';
  private readonly runs = new CoalescedRuns(
    () => this.reconcile(),
    () => this.disposed,
    (err) => {
      if (err instanceof DeviceGone) return true; // the next run finds the directory gone and lets go
      if (!this.disposed) this.log.warn({ err }, 'backend step failed');
      return false;
    },
  );
  private disposed = false;
  private frontendWatch?: Watch;
  private frontendWatched?: string;
  private loggedHang = false;
  private loggedBadState?: string;
  private readonly log: Logger;

  constructor(
    readonly path: string,
    readonly frontDomid: number,
    private readonly kind: BackendKind,
    private readonly ctx: DeviceContext,
    private readonly onGone: (dev: BackendDevice) => void,
  ) {
    this.log = ctx.log.child({ backend: path });
  }

  /** Schedules a reconcile run (coalesced with one already running). */
  kick(): void {
    this.runs.kick();
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    const w = this.frontendWatch;
    this.frontendWatch = undefined;
    await w?.close().catch(() => undefined);
  }

  private async reconcile(): Promise<void> {
    const { xs } = this.ctx;
    if ((await readOpt(xs, this.path)) === undefined) {
      this.log.debug('backend directory removed');
      await this.dispose();
      this.onGone(this);
      return;
    }
    const fault = this.ctx.faults.match(this.path);
    if (fault?.mode === 'hang') {
      if (!this.loggedHang) this.log.info('backend hangs (injected fault)');
      this.loggedHang = true;
      return;
    }
    this.loggedHang = false;
    const be: KeyReader = (k) => readOpt(xs, `${this.path}/${k}`);
    const online = await be('online');
    const cur = parseState(await be('state'));
    this.state = cur;
    const frontendPath = await be('frontend');
    if (frontendPath === undefined) return; // the toolstack has not finished writing the device
    // The frontend must live in the domain the backend directory is for (…/backend/<type>/<domid>/…).
    if (!frontendPath.startsWith(`/local/domain/${this.frontDomid}/`) || !/^[A-Za-z0-9/_-]+$/.test(frontendPath) || frontendPath.includes('//')) {
      this.log.warn({ frontendPath }, 'ignoring device with a bad frontend path');
      return;
    }
    await this.watchFrontend(frontendPath);
    const fe: KeyReader = (k) => readOpt(xs, `${frontendPath}/${k}`);
    const frontRaw = await fe('state');
    const front = parseState(frontRaw);
    if (frontRaw !== undefined && front === undefined && this.loggedBadState !== frontRaw) {
      this.loggedBadState = frontRaw;
      this.log.warn({ state: frontRaw }, 'frontend wrote a garbage state; ignored');
    }
    const alive = this.ctx.domainAlive(this.frontDomid);

    const closing =
      online === '0' ||
      cur === XS_STATE.Closing ||
      front === XS_STATE.Closing ||
      (front === XS_STATE.Closed && cur !== XS_STATE.Closed && cur !== undefined && cur >= XS_STATE.InitWait);
    if (closing) {
      if (cur === XS_STATE.Closed) return;
      if (cur !== XS_STATE.Closing) await this.setState(XS_STATE.Closing);
      // Closed once the frontend has let go, or can no longer answer.
      if (!alive || front === undefined || !ACTIVE_FRONTEND.has(front)) await this.setState(XS_STATE.Closed);
      return;
    }

    // Probe a new device; probe again when a frontend starts over after a close (driver reload).
    const fresh = cur === undefined || cur === XS_STATE.Unknown || cur === XS_STATE.Initialising;
    if (fault?.mode === 'close') {
      // As blkback that cannot open its physical device: xenbus_dev_fatal instead of InitWait. Only a fresh device
      // (re-probing a closed one would close it again, and again); and no hotplug script or connect after that.
      if (fresh) {
        this.log.info('backend closes on probe (injected fault)');
        await this.fatal(fault.message ?? 'injected fault: backend closed');
      }
      return;
    }
    if (fresh || (cur === XS_STATE.Closed && front === XS_STATE.Initialising)) {
      await this.write(await this.kind.probeKeys(be));
      await this.setState(XS_STATE.InitWait);
    }

    if (this.hotplug === 'pending') await this.runHotplug(be);
    if (this.hotplug !== 'connected') return;

    const now = parseState(await be('state'));
    if ((now === XS_STATE.InitWait || now === XS_STATE.Initialised) && front !== undefined && this.kind.connectOn.includes(front)) {
      const keys = await this.kind.connect(be, fe);
      if (typeof keys === 'string') {
        this.log.warn({ reason: keys }, 'refusing frontend; closing');
        await this.fatal(keys);
        return;
      }
      await this.write(keys);
      await this.setState(XS_STATE.Connected);
      this.log.info('connected');
    }
  }

  private async runHotplug(be: KeyReader): Promise<void> {
    const { xs } = this.ctx;
    const fault = this.ctx.faults.match(this.path);
    try {
      if (fault?.mode === 'fail') throw new HotplugError(fault.message ?? 'hotplug script failed (injected fault)');
      const keys = await this.kind.hotplug(be);
      const { 'hotplug-status': status, ...rest } = keys;
      await this.write(rest);
      // hotplug-status last: it is what the toolstack waits for.
      await this.write({ 'hotplug-status': status ?? 'connected' });
      this.hotplug = 'connected';
    } catch (err) {
      if (!(err instanceof HotplugError)) throw err;
      this.log.info({ error: err.message }, 'hotplug script failed');
      await this.write({ 'hotplug-error': err.message });
      await this.write({ 'hotplug-status': 'error' });
      this.hotplug = 'error';
    }
  }

  /** As xenbus_dev_fatal: records the reason under /local/domain/0/error/<backend path> and closes. */
  private async fatal(reason: string): Promise<void> {
    const rel = this.path.replace(/^\/local\/domain\/0\//, '');
    await this.ctx.xs.write(`/local/domain/0/error/${rel}/error`, reason).catch(() => undefined);
    await this.setState(XS_STATE.Closing);
  }

  private async setState(s: XenbusState): Promise<void> {
    await this.write({ state: String(s) });
    this.state = s;
  }

  /** Writes keys of the device's directory; if the toolstack removed it meanwhile, the step ends here. */
  private async write(keys: Record<string, string>): Promise<void> {
    if (!(await writeChanged(this.ctx.xs, this.path, keys))) throw new DeviceGone();
  }

  private async watchFrontend(frontendPath: string): Promise<void> {
    if (this.frontendWatched === frontendPath) return;
    await this.frontendWatch?.close().catch(() => undefined);
    this.frontendWatched = frontendPath;
    const watch = await this.ctx.xs.watch(`${frontendPath}/state`, `be:${this.path}`);
    if (this.disposed) {
      await watch.close().catch(() => undefined);
      return;
    }
    this.frontendWatch = watch;
    void (async () => {
      try {
        for await (const _ of watch) this.kick();
      } catch (err) {
        if (!this.disposed) this.log.debug({ err }, 'frontend watch ended');
      }
    })();
  }
}

/** The device's backend directory disappeared during a step. */
class DeviceGone extends Error {
  constructor() {
    super('backend directory removed');
  }
}

/** Parses /local/domain/0/backend/<type>/<domid>/<devid>[/...] into its parts; undefined for anything else. */
export function parseBackendPath(path: string): { type: string; domid: number; devid: number; devicePath: string } | { prefix: string } | undefined {
  const m = /^\/local\/domain\/0\/backend(?:\/([^/]+)(?:\/([^/]+)(?:\/([^/]+))?)?)?(\/.*)?$/.exec(path);
  if (!m) return undefined;
  const [, type, domid, devid] = m;
  if (type && domid && devid) {
    const d = parseU32(domid);
    const v = parseU32(devid);
    if (d === undefined || v === undefined) return undefined;
    return { type, domid: d, devid: v, devicePath: `/local/domain/0/backend/${type}/${domid}/${devid}` };
  }
  return { prefix: path };
}
