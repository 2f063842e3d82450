// The simulated Xen host: one process owning DIR, holding the hypervisor model, its xenstored, dom0's
// backends, the PV guests and the control socket. Domains live here, not in the daemon, so a daemon
// that dies leaves them running, as on Xen.
import { join } from 'node:path';
import { unlink } from 'node:fs/promises';
import type { Logger } from 'pino';
import { SimHypervisor } from './hypervisor/index.js';
import { SimXenstored } from './xenstored/index.js';
import { HypervisorServer } from './hypervisor/server.js';
import { XsClient } from '../xenstore/client.js';
import type { XenstoreClient } from '../xenstore/types.js';
import { BackendDriver } from './backends/index.js';
import { GuestManager } from './guests/manager.js';
import type { GuestPlatform } from './guests/guest.js';
import { ShutdownReason } from '../hypervisor/types.js';
import { ControlServer } from './control/server.js';
import { controlHandlers } from './control/handlers.js';
import { ConsoleDaemon } from './console/daemon.js';

export interface SimHostOptions {
  dir: string;
  memoryMib?: number;
  pcpus?: number;
  /** How long a guest takes from its first unpause to answering on xenstore. */
  bootDelayMs?: number;
  /** How long a guest takes between a control/shutdown request and its shutdown hypercall. */
  shutdownDelayMs?: number;
  xenstoredLatencyMs?: number;
  /** Pages per second each guest writes once up (default 0: idle guests). */
  guestDirtyRate?: number;
  /** How long a destroyed domain stays dying. */
  destroyDelayMs?: number;
  log: Logger;
  /** Called when the control RPC asks the host to stop (hard: a crash, sockets left behind). */
  onKill?: (hard: boolean) => void;
}

type DomainLiveness = 'running' | 'shutdown' | 'dying' | 'gone';

export const SOCKETS = { xenstored: 'xenstored.sock', hypervisor: 'hypervisor.sock', control: 'control.sock' } as const;

/**
 * Domain liveness as xenstored needs it for @releaseDomain, kept from the model's events so that asking
 * never goes through a hypercall a test may have made fail.
 */
class DomainLivenessTracker {
  private readonly states = new Map<number, DomainLiveness>([[0, 'running']]);
  private lastShutdown: number | undefined;

  constructor(hv: SimHypervisor) {
    hv.on('domainCreated', (domid) => this.states.set(domid, 'running'));
    hv.on('shutdown', (domid) => {
      this.states.set(domid, 'shutdown');
      this.lastShutdown = domid;
    });
    hv.on('resumed', (domid) => this.states.set(domid, 'running'));
    // destroy raises VIRQ_DOM_EXC with no other event: a domExc not right after a shutdown means dying.
    hv.on('domExc', (domid) => {
      if (this.lastShutdown === domid) this.lastShutdown = undefined;
      else if (this.states.has(domid)) this.states.set(domid, 'dying');
    });
    hv.on('destroyed', (domid) => this.states.delete(domid));
  }

  status = (domid: number): DomainLiveness => this.states.get(domid) ?? 'gone';
  alive = (domid: number): boolean => this.states.get(domid) === 'running';
}

export class SimHost {
  readonly hv: SimHypervisor;
  private readonly startedAt = performance.now();
  private xenstored?: SimXenstored;
  private hvServer?: HypervisorServer;
  private dom0?: XenstoreClient;
  private backends?: BackendDriver;
  private guests?: GuestManager;
  private consoles?: ConsoleDaemon;
  private control?: ControlServer;
  private stopped = false;

  private constructor(readonly opts: SimHostOptions) {
    this.hv = new SimHypervisor({ memoryMib: opts.memoryMib, pcpus: opts.pcpus, destroyDelayMs: opts.destroyDelayMs });
  }

  socketPath(which: keyof typeof SOCKETS): string {
    return join(this.opts.dir, SOCKETS[which]);
  }

  static async start(opts: SimHostOptions): Promise<SimHost> {
    const host = new SimHost(opts);
    try {
      await host.startParts();
    } catch (err) {
      await host.stop();
      throw err;
    }
    return host;
  }

  private async startParts(): Promise<void> {
    const { log } = this.opts;
    const hv = this.hv;
    const liveness = new DomainLivenessTracker(hv);

    const xenstored = new SimXenstored({ domainStatus: liveness.status, latencyMs: this.opts.xenstoredLatencyMs, logger: log.child({ part: 'xenstored' }) });
    this.xenstored = xenstored;
    hv.on('domExc', () => xenstored.domainStateChanged());
    await xenstored.listen(this.socketPath('xenstored'));

    this.hvServer = new HypervisorServer(hv, { logger: log.child({ part: 'hypervisor' }) });
    await this.hvServer.listen(this.socketPath('hypervisor'));

    const dom0 = await XsClient.connect({ stream: () => xenstored.connectAs(0), logger: log.child({ part: 'dom0-xs' }) });
    this.dom0 = dom0;
    await writeDom0Skeleton(dom0);

    this.backends = new BackendDriver({ xs: dom0, log: log.child({ part: 'backends' }), domainAlive: liveness.alive });
    await this.backends.start();

    // dom0's xenconsoled, on its own xenstore connection: DIR/console holds its sockets and guest logs.
    const consoles = new ConsoleDaemon({
      xs: await XsClient.connect({ stream: () => xenstored.connectAs(0), logger: log.child({ part: 'console-xs' }) }),
      dir: join(this.opts.dir, 'console'),
      domainStatus: liveness.status,
      isIntroduced: (domid) => xenstored.isIntroduced(domid),
      consoleFrames: (domid) => hv.domainState(domid),
      log: log.child({ part: 'console' }),
    });
    this.consoles = consoles;
    await consoles.start();

    const platform: GuestPlatform = {
      connectXenstore: (domid) => XsClient.connect({ stream: () => xenstored.connectAs(domid), reconnect: false }),
      isIntroduced: (domid) => xenstored.isIntroduced(domid),
      shutdownFromGuest: (domid, reason) => hv.shutdownFromGuest(domid, ShutdownReason[reason]),
      setBalloonTarget: (domid, kib) => hv.balloonFromGuest(domid, Math.max(1, Math.floor(kib / 4))),
      setDirtyRate: (domid, pps) => hv.setDirtyRate(domid, pps),
      setIdle: (domid, idle) => hv.setGuestIdle(domid, idle),
      consoleOutput: (domid, text) => consoles.guestOutput(domid, text),
    };
    const guests = new GuestManager(platform, {
      bootDelayMs: this.opts.bootDelayMs ?? 200,
      shutdownDelayMs: this.opts.shutdownDelayMs,
      dirtyRate: this.opts.guestDirtyRate,
      log: log.child({ part: 'guests' }),
    });
    this.guests = guests;
    hv.on('unpaused', (domid) => guests.onUnpaused(domid));
    hv.on('resumed', (domid) => guests.onResumed(domid));
    hv.on('restored', (domid) => guests.onRestored(domid));
    hv.on('paused', (domid) => guests.onPaused(domid));
    hv.on('shutdown', (domid, reason) => {
      guests.onShutdown(domid, reason);
      this.backends?.kickDomain(domid);
    });
    hv.on('domExc', (domid) => this.backends?.kickDomain(domid));
    hv.on('destroyed', (domid) => guests.onDestroyed(domid));

    this.control = new ControlServer(
      controlHandlers({
        dir: this.opts.dir,
        startedAt: this.startedAt,
        hv,
        xenstored,
        backends: this.backends,
        guests,
        consoles,
        kill: (hard) => (this.opts.onKill ? this.opts.onKill(hard) : void this.stop()),
      }),
      log.child({ part: 'control' }),
    );
    await this.control.listen(this.socketPath('control'));
  }

  /** Stops every part and removes the sockets. Safe to call twice. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const quiet = <T>(p: Promise<T> | undefined): Promise<unknown> => (p ?? Promise.resolve()).catch(() => undefined);
    await quiet(this.control?.close());
    await quiet(this.guests?.close());
    await quiet(this.backends?.close());
    await quiet(this.consoles?.close());
    await quiet(this.dom0?.close());
    await quiet(this.hvServer?.close());
    await quiet(this.xenstored?.close());
    this.hv.close();
    for (const which of Object.keys(SOCKETS) as Array<keyof typeof SOCKETS>) await quiet(unlink(this.socketPath(which)));
  }
}

/**
 * What dom0's boot writes on a real host (its Linux kernel's xenbus announces the shutdown features it
 * answers, then xen-init-dom0 names the domain); the sim host is that boot.
 */
async function writeDom0Skeleton(xs: XenstoreClient): Promise<void> {
  const keys: Array<[string, string]> = [
    ['/local/domain/0/control/feature-poweroff', '1'],
    ['/local/domain/0/control/feature-reboot', '1'],
    ['/local/domain/0/control/feature-suspend', '1'],
    ['/local/domain/0/domid', '0'],
    ['/local/domain/0/name', 'Domain-0'],
    ['/tool/xenstored', ''],
  ];
  for (const [path, value] of keys) if ((await xs.tryRead(path)) === undefined) await xs.write(path, value);
}
