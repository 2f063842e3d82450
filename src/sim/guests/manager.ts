// The guests of the sim host: one PvGuest per domain that has been unpaused, driven by the hypervisor
// model's events (the host wires them), plus the guest faults tests inject.
import type { Logger } from 'pino';
import { PvGuest, type GuestPlatform } from './guest.js';
import type { GuestStatus } from '../control/protocol.js';

export interface GuestManagerOptions {
  bootDelayMs: number;
  shutdownDelayMs?: number;
  /** Pages per second every guest writes once up (default 0). */
  dirtyRate?: number;
  log: Logger;
}

export class GuestManager {
  private readonly guests = new Map<number, PvGuest>();
  /**
   * Domains whose guest carries on rather than boots when next unpaused: 'resumed' after a suspend
   * (xc_domain_resume: same domain, its workload never stopped) or 'restored' from a saved stream
   * (a new domain: the guest's devices reconnect to fresh backends, as Linux's xenbus resume does).
   */
  private readonly carryOn = new Map<number, 'resumed' | 'restored'>();
  /** Domains shut down (and not resumed): unpausing one runs no vcpu, so no guest starts. */
  private readonly shutDown = new Set<number>();
  /** Per domid, or '*' for guests not yet booted. */
  private readonly ignoreShutdown = new Map<number | '*', boolean>();
  private readonly bootDelay = new Map<number | '*', number>();

  constructor(
    private readonly platform: GuestPlatform,
    private readonly opts: GuestManagerOptions,
  ) {}

  onUnpaused(domid: number): void {
    if (this.shutDown.has(domid)) return;
    const existing = this.guests.get(domid);
    if (existing && existing.phase !== 'stopped') {
      existing.setPaused(false);
      return;
    }
    const carryOn = this.carryOn.get(domid);
    this.carryOn.delete(domid);
    const guest = new PvGuest(domid, this.platform, {
      bootDelayMs: carryOn ? 0 : (this.bootDelay.get(domid) ?? this.bootDelay.get('*') ?? this.opts.bootDelayMs),
      shutdownDelayMs: this.opts.shutdownDelayMs ?? 10,
      ignoreShutdown: this.ignoreShutdown.get(domid) ?? this.ignoreShutdown.get('*') ?? false,
      // A resumed guest's workload never stopped: its rate is still set in the model. A restored
      // domain is new to the model, so its workload's rate is set again.
      dirtyRate: carryOn === 'resumed' ? 0 : (this.opts.dirtyRate ?? 0),
      resumeDevices: carryOn === 'restored',
      carriesOn: carryOn !== undefined,
      log: this.opts.log,
    });
    this.guests.set(domid, guest);
    guest.start();
  }

  /** xc_domain_resume after a suspend: the guest carries on from where it was, without booting. */
  onResumed(domid: number): void {
    this.shutDown.delete(domid);
    this.carryOn.set(domid, 'resumed');
    const existing = this.guests.get(domid);
    if (existing && existing.phase !== 'stopped') return;
    this.onUnpaused(domid);
  }

  /** restore read a saved guest into the domain: its first unpause continues that guest, no boot. */
  onRestored(domid: number): void {
    this.carryOn.set(domid, 'restored');
  }

  onPaused(domid: number): void {
    this.guests.get(domid)?.setPaused(true);
  }

  onShutdown(domid: number, reason: number | undefined): void {
    const guest = this.guests.get(domid);
    this.shutDown.add(domid);
    if (reason === 2) this.carryOn.set(domid, 'resumed');
    void guest?.stop();
  }

  onDestroyed(domid: number): void {
    const guest = this.guests.get(domid);
    this.guests.delete(domid);
    this.carryOn.delete(domid);
    this.shutDown.delete(domid);
    this.ignoreShutdown.delete(domid);
    this.bootDelay.delete(domid);
    void guest?.stop();
  }

  setIgnoreShutdown(domid: number | '*', on: boolean): void {
    this.ignoreShutdown.set(domid, on);
    if (domid === '*') for (const g of this.guests.values()) g.ignoreShutdown = on;
    else {
      const g = this.guests.get(domid);
      if (g) g.ignoreShutdown = on;
    }
  }

  /** Boot delay for a domain not yet unpaused, or for every later guest ('*'); undefined restores the default. */
  setBootDelay(domid: number | '*', ms: number | undefined): void {
    if (ms === undefined) this.bootDelay.delete(domid);
    else this.bootDelay.set(domid, ms);
  }

  /** Crashes a running guest; false when the domain has no running guest. */
  crash(domid: number): boolean {
    const g = this.guests.get(domid);
    if (!g || g.phase === 'stopped') return false;
    void g.crash().catch((err: unknown) => this.opts.log.warn({ err, domid }, 'crash failed'));
    return true;
  }

  clearFaults(): void {
    this.ignoreShutdown.clear();
    this.bootDelay.clear();
    for (const g of this.guests.values()) g.ignoreShutdown = false;
  }

  faults(): Array<{ domid: number | '*'; fault: 'ignore-shutdown' | 'slow-boot'; delayMs?: number }> {
    const out: Array<{ domid: number | '*'; fault: 'ignore-shutdown' | 'slow-boot'; delayMs?: number }> = [];
    for (const [domid, on] of this.ignoreShutdown) if (on) out.push({ domid, fault: 'ignore-shutdown' });
    for (const [domid, delayMs] of this.bootDelay) out.push({ domid, fault: 'slow-boot', delayMs });
    return out;
  }

  status(domid: number): GuestStatus | undefined {
    const g = this.guests.get(domid);
    if (!g) return undefined;
    return { phase: g.phase, ignoreShutdown: g.ignoreShutdown, frontends: g.frontendStates() };
  }

  async close(): Promise<void> {
    await Promise.all([...this.guests.values()].map((g) => g.stop()));
    this.guests.clear();
  }
}
