// One simulated PV guest: the kernel's xenbus side and a guest agent. It boots once its domain runs,
// talks to xenstored as its own domid, advertises what it supports, follows the balloon target, runs its
// frontends and obeys control/shutdown by shutting its domain down with the matching reason.
import type { Logger } from 'pino';
import type { ShutdownReasonName } from '../../hypervisor/types.js';
import type { Watch, XenstoreClient } from '../../xenstore/types.js';
import { parseU32, readOpt } from '../backends/xenbus.js';
import { Frontend } from './frontend.js';

/** What a guest needs from the host it runs on. */
export interface GuestPlatform {
  /** A xenstore connection acting as domid (the guest's ring). */
  connectXenstore(domid: number): Promise<XenstoreClient>;
  /** Whether xenstored has been told about the domain (INTRODUCE): before that the guest has no ring. */
  isIntroduced(domid: number): boolean;
  /** SCHEDOP_shutdown from inside the guest. */
  shutdownFromGuest(domid: number, reason: ShutdownReasonName): void | Promise<void>;
  /** The balloon driver gave memory back or took more: the domain's tot_pages follow (if the model can). */
  setBalloonTarget?(domid: number, targetKib: number): void | Promise<void>;
  /** The guest's workload starts writing its memory at this many pages per second. */
  setDirtyRate?(domid: number, pagesPerSecond: number): void | Promise<void>;
  /** The guest booted and idles (true), or is booting (false): its vcpus block while idle (XEN_DOMINF_blocked). */
  setIdle?(domid: number, idle: boolean): void;
  /** Text the guest prints on its console (hvc0): what xenconsoled would read from the console ring. */
  consoleOutput?(domid: number, text: string): void;
}

export interface GuestOptions {
  bootDelayMs: number;
  /** Time the guest takes to shut down once asked. */
  shutdownDelayMs: number;
  ignoreShutdown: boolean;
  /** Pages per second the guest writes once up (0: an idle guest, whose untouched pages cost nothing). */
  dirtyRate: number;
  /**
   * The guest was restored from a saved stream: its frontends start the xenbus handshake over with
   * the backends they find (Linux's xenbus_dev_resume), whatever state their nodes were left in.
   */
  resumeDevices?: boolean;
  /** The guest carries on (resumed or restored) rather than boots: it prints a resume line, not a boot log. */
  carriesOn?: boolean;
  log: Logger;
}

/** control/shutdown values Linux understands (drivers/xen/manage.c), and the SCHEDOP_shutdown reason each ends in. */
const SHUTDOWN_REQUESTS: Record<string, ShutdownReasonName> = {
  poweroff: 'poweroff',
  halt: 'poweroff',
  reboot: 'reboot',
  suspend: 'suspend',
};

const GUEST_AGENT_DATA: Record<string, string> = {
  os_name: 'Sim Linux 1.0',
  os_uname: '6.1.0-sim',
  os_distro: 'simlinux',
  os_majorver: '1',
  os_minorver: '0',
  'PVAddons/MajorVersion': '1',
};

/** What the sim's kernel prints on hvc0 as it starts (a few lines of a Linux PV boot). */
const BOOT_LOG: readonly string[] = [
  'Linux version 6.1.0-sim (sim@xenopsd-ng) #1 SMP PREEMPT_DYNAMIC',
  'Command line: console=hvc0',
  'Booting paravirtualized kernel on Xen',
  'Xen version: 4.17 (preserve-AD)',
  'xenbus_probe_frontend: Waiting for devices to initialise',
];

export type GuestPhase = 'waiting' | 'booting' | 'up' | 'stopped';

export class PvGuest {
  phase: GuestPhase = 'waiting';
  ignoreShutdown: boolean;
  private xs?: XenstoreClient;
  private readonly watches: Watch[] = [];
  private readonly frontends = new Map<string, Frontend>();
  private readonly abort = new AbortController();
  private paused = false;
  private resumeWaiters: Array<() => void> = [];
  private nextGrant = 8;
  private nextPort = 3;
  private readonly log: Logger;
  private readonly dompath: string;

  constructor(
    readonly domid: number,
    private readonly platform: GuestPlatform,
    private readonly opts: GuestOptions,
  ) {
    this.ignoreShutdown = opts.ignoreShutdown;
    this.log = opts.log.child({ domid });
    this.dompath = `/local/domain/${domid}`;
  }

  start(): void {
    void this.boot().catch((err: unknown) => {
      if (!this.abort.signal.aborted) this.log.warn({ err }, 'guest failed to boot');
    });
  }

  setPaused(paused: boolean): void {
    this.paused = paused;
    if (!paused) {
      const waiters = this.resumeWaiters;
      this.resumeWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** The guest stops running (its domain shut down or was destroyed). */
  async stop(): Promise<void> {
    if (this.phase === 'stopped') return;
    this.phase = 'stopped';
    this.abort.abort();
    this.setPaused(false);
    await Promise.all([...this.frontends.values()].map((f) => f.dispose()));
    await Promise.all(this.watches.map((w) => w.close().catch(() => undefined)));
    await this.xs?.close().catch(() => undefined);
  }

  frontendStates(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const f of this.frontends.values()) out[f.path] = f.state ?? 0;
    return out;
  }

  /** The guest kernel panics: the domain shuts down with reason crash. */
  async crash(): Promise<void> {
    this.log.info('guest crashes (injected fault)');
    this.print('Kernel panic - not syncing: crash injected by the sim host');
    this.print('GUEST: shutdown (crash)');
    await this.platform.shutdownFromGuest(this.domid, 'crash');
  }

  private whenRunning = (): Promise<void> => {
    if (!this.paused || this.abort.signal.aborted) return Promise.resolve();
    return new Promise((resolve) => this.resumeWaiters.push(resolve));
  };

  private async sleep(ms: number): Promise<void> {
    if (ms <= 0 || this.stopped) return;
    const signal = this.abort.signal;
    await new Promise<void>((resolve) => {
      // The listener goes with the timer: a guest waiting long to be introduced sleeps many times.
      const onAbort = (): void => {
        clearTimeout(t);
        resolve();
      };
      const t = setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  private get stopped(): boolean {
    return this.abort.signal.aborted;
  }

  /** One line on the guest's console. The console is the host's business: a failure there is not the guest's. */
  private print(line: string): void {
    try {
      this.platform.consoleOutput?.(this.domid, line + '\n');
    } catch (err) {
      this.log.debug({ err }, 'console output lost');
    }
  }

  private setIdle(idle: boolean): void {
    try {
      this.platform.setIdle?.(this.domid, idle);
    } catch (err) {
      // The domain may be gone already (destroyed while the guest was finishing its boot).
      this.log.debug({ err, idle }, 'could not report the guest idle state');
    }
  }

  private async boot(): Promise<void> {
    this.phase = 'booting';
    this.setIdle(false);
    if (this.opts.carriesOn) this.print('xen: resuming (the guest carries on from its saved state)');
    else for (const line of BOOT_LOG) this.print(line);
    await this.sleep(this.opts.bootDelayMs);
    // No xenstore ring until the toolstack has introduced the domain.
    while (!this.stopped && !this.platform.isIntroduced(this.domid)) await this.sleep(10);
    await this.whenRunning();
    if (this.stopped) return;
    const xs = await this.platform.connectXenstore(this.domid);
    if (this.stopped) {
      await xs.close().catch(() => undefined);
      return;
    }
    this.xs = xs;
    const dp = this.dompath;
    // The toolstack created these nodes guest-owned; a guest that may not write one just goes without.
    for (const f of ['feature-poweroff', 'feature-reboot', 'feature-suspend', 'feature-balloon']) await this.tryWrite(`${dp}/control/${f}`, '1');
    for (const [k, v] of Object.entries(GUEST_AGENT_DATA)) await this.tryWrite(k.startsWith('PVAddons') ? `${dp}/attr/${k}` : `${dp}/data/${k}`, v);
    await this.onMemoryTarget();
    await this.tryWrite(`${dp}/data/updated`, '1');

    await this.follow(`${dp}/control/shutdown`, () => this.onShutdownRequest());
    await this.follow(`${dp}/memory/target`, () => this.onMemoryTarget());
    await this.follow(`${dp}/device`, (path) => this.onDeviceEvent(path));
    if (this.stopped) return;
    if (this.opts.dirtyRate > 0) await this.platform.setDirtyRate?.(this.domid, this.opts.dirtyRate);
    this.phase = 'up';
    this.print('GUEST: up');
    this.setIdle(true);
    this.log.info('guest up');
  }

  private async tryWrite(path: string, value: string): Promise<void> {
    try {
      await this.xs!.write(path, value);
    } catch (err) {
      this.log.debug({ err, path }, 'guest could not write');
    }
  }

  /** Registers a watch whose events run handler one at a time, only while the guest runs. */
  private async follow(path: string, handler: (path: string) => Promise<void>): Promise<void> {
    if (this.stopped) return;
    const watch = await this.xs!.watch(path, `guest:${path}`);
    this.watches.push(watch);
    void (async () => {
      try {
        for await (const ev of watch) {
          await this.whenRunning();
          if (this.stopped) break;
          try {
            await handler(ev.path);
          } catch (err) {
            if (!this.stopped) this.log.warn({ err, path: ev.path }, 'guest handler failed');
          }
        }
      } catch (err) {
        if (!this.stopped) this.log.debug({ err }, 'guest watch ended');
      }
    })();
  }

  private async onShutdownRequest(): Promise<void> {
    const xs = this.xs!;
    const request = await readOpt(xs, `${this.dompath}/control/shutdown`);
    if (!request) return;
    if (this.ignoreShutdown) {
      this.log.info({ request }, 'guest ignores shutdown request (injected fault)');
      return;
    }
    // Linux acknowledges by clearing the node before acting on it, even for requests it does not know.
    await xs.write(`${this.dompath}/control/shutdown`, '');
    // Own keys only: a request such as 'constructor' must not find Object.prototype's members.
    const reason = Object.hasOwn(SHUTDOWN_REQUESTS, request) ? SHUTDOWN_REQUESTS[request] : undefined;
    if (!reason) {
      this.log.warn({ request: request.slice(0, 64) }, 'guest ignores unknown shutdown request');
      return;
    }
    this.log.info({ request }, 'guest shutting down');
    this.print(`GUEST: shutdown (${reason}, requested: ${request})`);
    await this.sleep(this.opts.shutdownDelayMs);
    if (this.stopped) return;
    await this.platform.shutdownFromGuest(this.domid, reason);
  }

  private async onMemoryTarget(): Promise<void> {
    const xs = this.xs!;
    const raw = await readOpt(xs, `${this.dompath}/memory/target`);
    if (raw === undefined) return;
    const target = parseU32(raw);
    if (target === undefined || target === 0) {
      this.log.warn({ target: raw.slice(0, 64) }, 'guest ignores a bad memory/target');
      return;
    }
    // The balloon cannot inflate past the domain's static maximum.
    const max = parseU32(await readOpt(xs, `${this.dompath}/memory/static-max`));
    const kib = max !== undefined ? Math.min(target, max) : target;
    await this.platform.setBalloonTarget?.(this.domid, kib);
    await this.tryWrite(`${this.dompath}/data/meminfo_total`, String(kib));
    await this.tryWrite(`${this.dompath}/data/meminfo_free`, String(Math.floor(kib * 0.6)));
  }

  private async onDeviceEvent(path: string): Promise<void> {
    const base = `${this.dompath}/device`;
    const m = /^\/local\/domain\/\d+\/device\/(vbd|vif)\/(\d+)(\/.*)?$/.exec(path);
    if (m && path.startsWith(base + '/')) {
      this.frontend(`${base}/${m[1]}/${m[2]}`, m[1] as 'vbd' | 'vif').kick();
      return;
    }
    if (path !== base && path !== `${base}/vbd` && path !== `${base}/vif`) return;
    // A change above device level: look at every device again.
    for (const fe of this.frontends.values()) if (fe.path.startsWith(path + '/')) fe.kick();
    for (const type of ['vbd', 'vif'] as const) {
      if (path !== base && path !== `${base}/${type}`) continue;
      let ids: string[] = [];
      try {
        ids = await this.xs!.directory(`${base}/${type}`);
      } catch {
        continue;
      }
      for (const id of ids) if (/^\d+$/.test(id)) this.frontend(`${base}/${type}/${id}`, type).kick();
    }
  }

  private frontend(path: string, type: 'vbd' | 'vif'): Frontend {
    let fe = this.frontends.get(path);
    if (!fe) {
      fe = new Frontend(
        path,
        type,
        {
          xs: this.xs!,
          log: this.log,
          grantRef: () => this.nextGrant++,
          evtchn: () => this.nextPort++,
          whenRunning: this.whenRunning,
          resuming: this.opts.resumeDevices === true,
        },
        (gone) => {
          if (this.frontends.get(gone.path) === gone) this.frontends.delete(gone.path);
        },
      );
      this.frontends.set(path, fe);
    }
    return fe;
  }
}

