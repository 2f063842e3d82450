// dom0's backend drivers (blkback, netback) and their hotplug scripts, acting on xenstore alone: one watch
// on /local/domain/0/backend finds devices as the toolstack writes them; each device then runs on its own.
import type { Logger } from 'pino';
import type { Watch, XenstoreClient } from '../../xenstore/types.js';
import { BackendDevice, parseBackendPath } from './device.js';
import { BackendFaults } from './faults.js';
import type { BackendKind } from './kind.js';
import { vbdKind } from './vbd.js';
import { vifKind } from './vif.js';
import { XsError } from '../../xenstore/types.js';

export { BackendFaults } from './faults.js';
export const BACKEND_ROOT = '/local/domain/0/backend';

const KINDS: Record<string, BackendKind> = { vbd: vbdKind, vif: vifKind };

export interface BackendDriverOptions {
  /** A dom0 connection to xenstored. */
  xs: XenstoreClient;
  log: Logger;
  faults?: BackendFaults;
  domainAlive?: (domid: number) => boolean;
}

export class BackendDriver {
  readonly faults: BackendFaults;
  private readonly devices = new Map<string, BackendDevice>();
  private watch?: Watch;
  private closed = false;

  constructor(private readonly opts: BackendDriverOptions) {
    this.faults = opts.faults ?? new BackendFaults();
  }

  async start(): Promise<void> {
    const { xs } = this.opts;
    // The root must exist for the watch's first event to find something; dom0 owns it, as on a real host.
    if ((await xs.tryRead(BACKEND_ROOT)) === undefined) await xs.write(BACKEND_ROOT, '');
    this.watch = await xs.watch(BACKEND_ROOT, 'sim-backends');
    const watch = this.watch;
    void (async () => {
      try {
        for await (const ev of watch) await this.onEvent(ev.path);
      } catch (err) {
        if (!this.closed) this.opts.log.error({ err }, 'backend watch ended');
      }
    })();
  }

  /** Re-runs every device (after a fault was lifted). */
  kickAll(): void {
    for (const d of this.devices.values()) d.kick();
  }

  /** Re-runs the devices of one frontend domain (it shut down or died: a close need not wait for it). */
  kickDomain(domid: number): void {
    for (const d of this.devices.values()) if (d.frontDomid === domid) d.kick();
  }

  status(): Record<string, { state: number; hotplug: string }> {
    const out: Record<string, { state: number; hotplug: string }> = {};
    for (const d of this.devices.values()) out[d.path] = { state: d.state ?? 0, hotplug: d.hotplug };
    return out;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.watch?.close().catch(() => undefined);
    await Promise.all([...this.devices.values()].map((d) => d.dispose()));
    this.devices.clear();
  }

  private async onEvent(path: string): Promise<void> {
    if (this.closed) return;
    const parsed = parseBackendPath(path);
    if (!parsed) return;
    try {
      if ('devicePath' in parsed) {
        this.device(parsed.type, parsed.domid, parsed.devicePath)?.kick();
        return;
      }
      // A change above device level (a whole domain's directory written or removed): look again below it.
      for (const d of this.devices.values()) if (d.path.startsWith(parsed.prefix + '/')) d.kick();
      await this.scan(parsed.prefix);
    } catch (err) {
      if (!this.closed) this.opts.log.warn({ err, path }, 'backend scan failed');
    }
  }

  private async scan(prefix: string): Promise<void> {
    const depth = prefix === BACKEND_ROOT ? 0 : prefix.slice(BACKEND_ROOT.length + 1).split('/').length;
    if (depth >= 3) return;
    let children: string[];
    try {
      children = await this.opts.xs.directory(prefix);
    } catch (err) {
      if (err instanceof XsError && err.errno === 'ENOENT') return;
      throw err;
    }
    for (const c of children) {
      if (depth === 0 && !Object.hasOwn(KINDS, c)) continue;
      const child = `${prefix}/${c}`;
      const parsed = parseBackendPath(child);
      if (parsed && 'devicePath' in parsed) this.device(parsed.type, parsed.domid, parsed.devicePath)?.kick();
      else await this.scan(child);
    }
  }

  private device(type: string, domid: number, path: string): BackendDevice | undefined {
    // Own keys only: a directory named 'constructor' or '__proto__' is no device type.
    const kind = Object.hasOwn(KINDS, type) ? KINDS[type] : undefined;
    if (!kind) return undefined;
    let dev = this.devices.get(path);
    if (!dev) {
      dev = new BackendDevice(
        path,
        domid,
        kind,
        { xs: this.opts.xs, faults: this.faults, log: this.opts.log, domainAlive: this.opts.domainAlive ?? (() => true) },
        (gone) => {
          if (this.devices.get(gone.path) === gone) this.devices.delete(gone.path);
        },
      );
      this.devices.set(path, dev);
    }
    return dev;
  }
}
