// A PV guest's frontend driver for one device (blkfront or netfront): the guest half of the xenbus
// handshake, as Linux does it. blkfront: backend InitWait → write rings, Initialised (3); backend
// Connected → read the disk, Connected (4). netfront: backend InitWait → write rings, Connected (4) at once.
// Backend Closing or Closed → Closing (5), Closed (6). What the backend wrote is checked, not trusted.
import type { Logger } from 'pino';
import type { Watch, XenstoreClient } from '../../xenstore/types.js';
import { XS_STATE, parseState, parseU32, readOpt, type XenbusState } from '../backends/xenbus.js';
import { CoalescedRuns } from '../coalesced-runs.js';

export interface FrontendContext {
  xs: XenstoreClient;
  log: Logger;
  /** A fresh grant reference (ring pages). */
  grantRef(): number;
  /** A fresh event channel port. */
  evtchn(): number;
  /** Resolves when the guest's vcpus run (a paused guest does nothing). */
  whenRunning(): Promise<void>;
  /** The guest was restored: the device starts over at Initialising whatever its node says. */
  resuming?: boolean;
}

const BACKEND_PATH = /^\/local\/domain\/\d+\/backend\/(vbd|vif)\/\d+\/\d+$/;

export class Frontend {
  state: XenbusState | undefined;
  private readonly runs = new CoalescedRuns(
    async () => {
      await this.ctx.whenRunning();
      if (!this.disposed) await this.reconcile();
    },
    () => this.disposed,
    (err) => {
      if (!this.disposed) this.log.warn({ err }, 'frontend step failed');
      return false;
    },
  );
  private disposed = false;
  private resumed = false;
  private backendWatch?: Watch;
  private backendWatched?: string;
  private readonly log: Logger;

  constructor(
    readonly path: string,
    readonly type: 'vbd' | 'vif',
    private readonly ctx: FrontendContext,
    private readonly onGone: (fe: Frontend) => void,
  ) {
    this.log = ctx.log.child({ frontend: path });
  }

  kick(): void {
    this.runs.kick();
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    const w = this.backendWatch;
    this.backendWatch = undefined;
    await w?.close().catch(() => undefined);
  }

  private async reconcile(): Promise<void> {
    const { xs } = this.ctx;
    if ((await readOpt(xs, this.path)) === undefined) {
      await this.dispose();
      this.onGone(this);
      return;
    }
    let own = parseState(await readOpt(xs, `${this.path}/state`));
    if (this.ctx.resuming && !this.resumed) {
      // xenbus_dev_resume: the rings of the saved guest are gone; the handshake starts over.
      this.resumed = true;
      if (own !== undefined && own !== XS_STATE.Initialising) {
        await this.setState(XS_STATE.Initialising);
        own = XS_STATE.Initialising;
      }
    }
    this.state = own;
    const backendPath = await readOpt(xs, `${this.path}/backend`);
    if (backendPath === undefined) return;
    if (!BACKEND_PATH.test(backendPath)) {
      this.log.warn({ backendPath }, 'ignoring device with a bad backend path');
      return;
    }
    await this.watchBackend(backendPath);
    const backRaw = await readOpt(xs, `${backendPath}/state`);
    const back = parseState(backRaw);
    if (backRaw !== undefined && back === undefined) this.log.warn({ state: backRaw }, 'backend state is garbage; ignored');
    if (own === undefined || back === undefined) return;

    if (back === XS_STATE.Closing || back === XS_STATE.Closed) {
      if (own !== XS_STATE.Closed && own >= XS_STATE.InitWait) {
        if (own !== XS_STATE.Closing) await this.setState(XS_STATE.Closing);
        await this.setState(XS_STATE.Closed);
      } else if (own === XS_STATE.Initialising && back === XS_STATE.Closing) {
        await this.setState(XS_STATE.Closed);
      }
      return;
    }
    if (own === XS_STATE.Initialising && back === XS_STATE.InitWait) {
      await this.talkToBackend(backendPath);
      return;
    }
    if (this.type === 'vbd' && own === XS_STATE.Initialised && back === XS_STATE.Connected) {
      const sectors = await readOpt(xs, `${backendPath}/sectors`);
      const sectorSize = await readOpt(xs, `${backendPath}/sector-size`);
      if (!/^\d{1,20}$/.test(sectors ?? '') || !/^(512|1024|2048|4096)$/.test(sectorSize ?? '')) {
        this.log.warn({ sectors, sectorSize }, 'backend published a bad disk geometry; not connecting');
        return;
      }
      await this.setState(XS_STATE.Connected);
    }
  }

  /** Writes the ring and event-channel keys in one transaction, as Linux's talk_to_blkback/netback do. */
  private async talkToBackend(backendPath: string): Promise<void> {
    const { xs } = this.ctx;
    const keys: Record<string, string> = {};
    if (this.type === 'vbd') {
      keys['ring-ref'] = String(this.ctx.grantRef());
      keys['event-channel'] = String(this.ctx.evtchn());
      keys['protocol'] = (await readOpt(xs, `${this.path}/protocol`)) ?? 'x86_64-abi';
      keys['feature-persistent'] = '1';
    } else {
      const split = parseU32(await readOpt(xs, `${backendPath}/feature-split-event-channels`)) === 1;
      keys['tx-ring-ref'] = String(this.ctx.grantRef());
      keys['rx-ring-ref'] = String(this.ctx.grantRef());
      if (split) {
        keys['event-channel-tx'] = String(this.ctx.evtchn());
        keys['event-channel-rx'] = String(this.ctx.evtchn());
      } else keys['event-channel'] = String(this.ctx.evtchn());
      Object.assign(keys, {
        'request-rx-copy': '1',
        'feature-rx-notify': '1',
        'feature-sg': '1',
        'feature-gso-tcpv4': '1',
        'feature-gso-tcpv6': '1',
        'feature-ipv6-csum-offload': '1',
        'xdp-headroom': '0',
        'multi-queue-num-queues': '1',
      });
    }
    const next = this.type === 'vbd' ? XS_STATE.Initialised : XS_STATE.Connected;
    await xs.transaction(async (tx) => {
      for (const [k, v] of Object.entries(keys)) await tx.write(`${this.path}/${k}`, v);
      await tx.write(`${this.path}/state`, String(next));
    });
    this.state = next;
    this.log.debug({ state: next }, 'frontend wrote its rings');
  }

  private async setState(s: XenbusState): Promise<void> {
    await this.ctx.xs.write(`${this.path}/state`, String(s));
    this.state = s;
  }

  private async watchBackend(backendPath: string): Promise<void> {
    if (this.backendWatched === backendPath) return;
    await this.backendWatch?.close().catch(() => undefined);
    this.backendWatched = backendPath;
    const watch = await this.ctx.xs.watch(`${backendPath}/state`, `fe:${this.path}`);
    if (this.disposed) {
      await watch.close().catch(() => undefined);
      return;
    }
    this.backendWatch = watch;
    void (async () => {
      try {
        for await (const _ of watch) this.kick();
      } catch (err) {
        if (!this.disposed) this.log.debug({ err }, 'backend watch ended');
      }
    })();
  }
}
