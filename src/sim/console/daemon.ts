// dom0's console daemon (xenconsoled) in the sim host. It learns of domains as xenconsoled does, from xenstored's
// @introduceDomain and @releaseDomain, on its own dom0 connection; for each introduced domain it watches
// /local/domain/<domid>/console and, once type, ring-ref and port are there and check out (records.ts), "maps the
// ring": it starts a ConsoleSession (buffer, DIR/console/guest-<name>.log, DIR/console/<domid>.sock) and writes the
// socket's path to console/tty. When the domain dies or is gone it lets go: the socket is removed, the log kept.
//
// What it writes in xenstore is console/tty alone, and only while console/ exists (a transaction checks it): a
// toolstack that removed the domain's directory meanwhile never sees it come back.
//
// Guests print through guestOutput() (in process: the sim's stand-in for the console ring). Output printed before
// the console is connected waits, bounded, as it would in the ring, and goes out once it is.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Watch, XenstoreClient } from '../../xenstore/types.js';
import { XsError } from '../../xenstore/types.js';
import { CoalescedRuns } from '../coalesced-runs.js';
import { readOpt, writeChanged } from '../backends/xenbus.js';
import { OutputBuffer } from './output-buffer.js';
import { logNameFor, readConsoleRecord, type ConsoleFrames } from './records.js';
import { ConsoleSession } from './session.js';
import type { ConsoleSnapshot } from '../control/protocol.js';

export type DomainLiveness = 'running' | 'shutdown' | 'dying' | 'gone';

export interface ConsoleDaemonOptions {
  /** A dom0 connection to xenstored, owned by the daemon from now on (closed by close()). */
  xs: XenstoreClient;
  /** DIR/console: sockets and logs go here (created if missing). */
  dir: string;
  domainStatus(domid: number): DomainLiveness;
  isIntroduced(domid: number): boolean;
  /** The hypervisor's view of the domain's console frame and event channels; undefined when there is no domain. */
  consoleFrames(domid: number): ConsoleFrames | undefined;
  log: Logger;
}

class DomainConsole {
  watch?: Watch;
  session?: ConsoleSession;
  released = false;
  /** Last reason the console was refused, so that a bad record is logged once, not at every event. */
  lastProblem?: string;
  runs!: CoalescedRuns;
  constructor(readonly domid: number) {}
}

const alive = (s: DomainLiveness): boolean => s === 'running' || s === 'shutdown';

export class ConsoleDaemon {
  private readonly domains = new Map<number, DomainConsole>();
  /** Output of guests whose console is not connected (yet, or ever): bounded per domain. */
  private readonly pending = new Map<number, OutputBuffer>();
  private readonly watches: Watch[] = [];
  private readonly runs: CoalescedRuns;
  private closed = false;

  constructor(private readonly opts: ConsoleDaemonOptions) {
    this.runs = new CoalescedRuns(
      () => this.reconcile(),
      () => this.closed,
      (err) => {
        if (!this.closed) opts.log.warn({ err }, 'console daemon: domain scan failed');
        return false;
      },
    );
  }

  async start(): Promise<void> {
    await mkdir(this.opts.dir, { recursive: true });
    for (const special of ['@introduceDomain', '@releaseDomain']) {
      const watch = await this.opts.xs.watch(special, `sim-console:${special}`);
      this.watches.push(watch);
      this.follow(watch, () => this.runs.kick());
    }
  }

  /** The guest printed `text` on its console. */
  guestOutput(domid: number, text: string): void {
    if (this.closed || text === '' || !alive(this.opts.domainStatus(domid))) return;
    const bytes = Buffer.from(text, 'utf8');
    const session = this.domains.get(domid)?.session;
    if (session) {
      session.write(bytes);
      return;
    }
    let waiting = this.pending.get(domid);
    if (!waiting) this.pending.set(domid, (waiting = new OutputBuffer()));
    waiting.append(bytes);
  }

  read(domid: number): ConsoleSnapshot | undefined {
    const session = this.domains.get(domid)?.session;
    const buffer = session?.buffer ?? this.pending.get(domid);
    if (!buffer && !this.domains.has(domid)) return undefined;
    return {
      domid,
      output: buffer?.contents().toString('utf8') ?? '',
      dropped: buffer?.dropped ?? 0,
      ...(session ? { tty: session.socketPath, logFile: session.logPath } : {}),
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.watches.map((w) => w.close().catch(() => undefined)));
    await Promise.all([...this.domains.keys()].map((domid) => this.release(domid)));
    this.pending.clear();
    await this.opts.xs.close().catch(() => undefined);
  }

  private follow(watch: Watch, onEvent: () => void): void {
    void (async () => {
      try {
        for await (const _ of watch) onEvent();
      } catch (err) {
        if (!this.closed) this.opts.log.warn({ err, path: watch.path }, 'console daemon: watch ended');
      }
    })();
  }

  /** One pass over the domains: take on the introduced ones, let go of those dying or gone. */
  private async reconcile(): Promise<void> {
    const { domainStatus, isIntroduced } = this.opts;
    let children: string[] = [];
    try {
      children = await this.opts.xs.directory('/local/domain');
    } catch (err) {
      if (!(err instanceof XsError && err.errno === 'ENOENT')) throw err;
    }
    for (const name of children) {
      if (!/^[1-9]\d{0,4}$/.test(name)) continue;
      const domid = Number(name);
      if (!this.domains.has(domid) && isIntroduced(domid) && alive(domainStatus(domid))) await this.takeOn(domid);
    }
    for (const domid of [...this.domains.keys()]) {
      if (!alive(domainStatus(domid)) || !isIntroduced(domid)) await this.release(domid);
    }
    // A dying domain's guest prints no more: what it printed without a console goes with it.
    for (const domid of [...this.pending.keys()]) if (!alive(domainStatus(domid))) this.pending.delete(domid);
  }

  private async takeOn(domid: number): Promise<void> {
    const d = new DomainConsole(domid);
    d.runs = new CoalescedRuns(
      () => this.connect(d),
      () => this.closed || d.released,
      (err) => {
        if (!this.closed && !d.released) this.opts.log.warn({ err, domid }, 'console daemon: could not connect the console');
        return false;
      },
    );
    this.domains.set(domid, d);
    // xenconsoled watches the console directory: the toolstack may write the records after the introduce.
    const watch = await this.opts.xs.watch(`/local/domain/${domid}/console`, `sim-console:${domid}`);
    if (d.released || this.closed) {
      await watch.close().catch(() => undefined);
      return;
    }
    d.watch = watch;
    this.follow(watch, () => d.runs.kick());
  }

  /** Reads and checks the console records; once they are good, connects the console and writes console/tty. */
  private async connect(d: DomainConsole): Promise<void> {
    if (d.session) return; // connected: the sim's toolstacks never move a ring
    const { xs, log } = this.opts;
    const rec = await readConsoleRecord(xs, d.domid, this.opts.consoleFrames(d.domid));
    if (rec.kind === 'incomplete') return;
    if (rec.kind !== 'valid') {
      const problem = rec.kind === 'invalid' ? rec.reason : `console/type ${rec.type}: not a console for xenconsoled`;
      if (problem !== d.lastProblem) {
        d.lastProblem = problem;
        if (rec.kind === 'invalid') log.warn({ domid: d.domid, reason: problem }, 'no console for the domain: bad console record');
        else log.info({ domid: d.domid, type: rec.type }, 'console not served by xenconsoled');
      }
      return;
    }
    const name = logNameFor(d.domid, await readOpt(xs, `/local/domain/${d.domid}/name`));
    const session = await ConsoleSession.open({
      domid: d.domid,
      socketPath: join(this.opts.dir, `${d.domid}.sock`),
      logPath: join(this.opts.dir, `guest-${name}.log`),
      log: log.child({ domid: d.domid }),
    });
    if (d.released || this.closed) {
      await session.close();
      return;
    }
    d.session = session;
    d.lastProblem = undefined;
    const waiting = this.pending.get(d.domid);
    this.pending.delete(d.domid);
    if (waiting) session.write(waiting.contents());
    const written = await writeChanged(xs, `/local/domain/${d.domid}/console`, { tty: session.socketPath });
    if (!written) log.debug({ domid: d.domid }, 'console directory gone before console/tty was written');
    else log.info({ domid: d.domid, tty: session.socketPath, ringRef: rec.ringRef.toString(), port: rec.port, logFile: session.logPath }, 'console connected');
  }

  private async release(domid: number): Promise<void> {
    const d = this.domains.get(domid);
    if (!d) return;
    d.released = true;
    this.domains.delete(domid);
    this.pending.delete(domid);
    await d.watch?.close().catch(() => undefined);
    if (d.session) {
      await d.session.close();
      this.opts.log.info({ domid }, 'console released');
    }
  }
}
