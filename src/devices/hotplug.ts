// Xen's hotplug scripts, run the way libxl runs them (xl.conf run_hotplug_scripts=1): on real Xen the kernel backends
// (blkback, netback) wait for the script named in the backend's `script` key — `block` writes physical-device,
// `vif-bridge` puts vif<domid>.<devid> on the bridge — and the script reports hotplug-status=connected, which the
// daemon's device plug waits for. Only the xen backend needs this (the sim's backends report hotplug-status
// themselves), so the daemon starts a runner only there. It works from xenstore alone: one watch on dom0's backend
// tree; a vbd/vif backend that reaches InitWait with a script gets `add` (vif: `online`). `remove` (vif: `offline`)
// runs from the teardown (removeDomain) while the keys exist, or, for a backend removed otherwise, once it is gone.
import { spawn } from 'node:child_process';
import type { Logger } from 'pino';
import type { Watch, XenstoreClient } from '../xenstore/types.js';

const BACKEND_ROOT = '/local/domain/0/backend';
const DEVICE_RE = /^\/local\/domain\/0\/backend\/(vbd|vif)\/(\d+)\/(\d+)(?:\/|$)/;
const INIT_WAIT = 2;

export interface HotplugOptions {
  /** Seconds a script may run before it is killed (libxl: 40 s hotplug timeout). */
  timeoutMs?: number;
  /** Environment added to every script's (tests). */
  env?: Record<string, string>;
}

interface Added {
  script: string;
  kind: 'vbd' | 'vif';
  env: Record<string, string>;
}

export interface ScriptRun {
  backend: string;
  action: string;
  code: number | string;
  ms: number;
}

/** The command and environment libxl gives a device's script (libxl__get_hotplug_script_info / _env). */
export function hotplugInvocation(kind: 'vbd' | 'vif', backend: string, script: string, domid: number, devid: number, adding: boolean): { args: string[]; env: Record<string, string> } {
  const env: Record<string, string> = { script, XENBUS_TYPE: kind, XENBUS_PATH: backend, XENBUS_BASE_PATH: 'backend' };
  if (kind === 'vif') {
    // netback names the interface vif<domid>.<devid>; vif-common.sh acts on online/offline for type_if=vif.
    env.vif = `vif${domid}.${devid}`;
    env.netdev = '';
    return { args: [adding ? 'online' : 'offline', 'type_if=vif'], env };
  }
  return { args: [adding ? 'add' : 'remove'], env };
}

export class HotplugRunner {
  private watch?: Watch;
  private readonly added = new Map<string, Added>();
  private readonly running = new Map<string, Promise<void>>();
  private readonly again = new Set<string>();
  private closed = false;
  /** Every script run, newest last (diagnostics; bounded). */
  readonly runs: ScriptRun[] = [];

  constructor(
    private readonly xs: XenstoreClient,
    private readonly logger: Logger,
    private readonly opts: HotplugOptions = {},
  ) {}

  async start(): Promise<void> {
    await this.adopt();
    this.watch = await this.xs.watch(BACKEND_ROOT, 'xenopsd-ng-hotplug');
    void (async () => {
      try {
        for await (const ev of this.watch!) {
          const m = DEVICE_RE.exec(ev.path);
          if (m) this.check(`${BACKEND_ROOT}/${m[1]}/${m[2]}/${m[3]}`);
          else if (ev.path === BACKEND_ROOT || /^\/local\/domain\/0\/backend\/(vbd|vif)(\/\d+)?$/.test(ev.path)) {
            // A whole subtree went (teardown removes backend/<kind>/<domid> in one RM): look at what was added.
            for (const backend of this.added.keys()) if (backend.startsWith(`${ev.path}/`)) this.check(backend);
          }
        }
      } catch (err) {
        if (!this.closed) this.logger.error({ err }, 'hotplug watch failed');
      }
    })();
  }

  /**
   * Backends whose add ran before this runner started (the daemon was restarted): xenstore is their record — a
   * backend with a script and a hotplug-status had its add run — so their remove still runs at teardown (block
   * detaches what it attached). One still waiting at InitWait with no status gets its add now.
   */
  private async adopt(): Promise<void> {
    for (const kind of ['vbd', 'vif'] as const) {
      for (const domid of await this.xs.directory(`${BACKEND_ROOT}/${kind}`).catch(() => [] as string[])) {
        for (const devid of await this.xs.directory(`${BACKEND_ROOT}/${kind}/${domid}`).catch(() => [] as string[])) {
          const backend = `${BACKEND_ROOT}/${kind}/${domid}/${devid}`;
          if (!DEVICE_RE.test(backend)) continue;
          const [script, status] = await Promise.all([this.xs.tryRead(`${backend}/script`), this.xs.tryRead(`${backend}/hotplug-status`)]);
          if (!script) continue;
          if (status === undefined) {
            this.check(backend);
            continue;
          }
          const { env } = hotplugInvocation(kind, backend, script, Number(domid), Number(devid), true);
          this.added.set(backend, { script, kind, env });
        }
      }
    }
    if (this.added.size) this.logger.info({ backends: [...this.added.keys()] }, 'adopted the backends set up before the restart');
  }

  /** Looks at one backend (coalesced: at most one look runs per backend, and one more after it). */
  private check(backend: string): void {
    if (this.closed) return;
    if (this.running.has(backend)) {
      this.again.add(backend);
      return;
    }
    const run = this.look(backend)
      .catch((err: unknown) => this.logger.error({ err, backend }, 'hotplug failed'))
      .finally(() => {
        this.running.delete(backend);
        if (this.again.delete(backend)) this.check(backend);
      });
    this.running.set(backend, run);
  }

  private async look(backend: string): Promise<void> {
    const m = DEVICE_RE.exec(backend)!;
    const kind = m[1] as 'vbd' | 'vif';
    const domid = Number(m[2]);
    const devid = Number(m[3]);
    const state = await this.xs.tryRead(`${backend}/state`);
    const done = this.added.get(backend);
    if (state === undefined) {
      if (!done) return;
      this.added.delete(backend);
      const { args, env } = hotplugInvocation(kind, backend, done.script, domid, devid, false);
      await this.runScript(backend, done.script, args, env);
      await this.removeRecreated(backend);
      return;
    }
    if (done || Number(state) !== INIT_WAIT) return;
    const script = await this.xs.tryRead(`${backend}/script`);
    if (!script) return;
    const { args, env } = hotplugInvocation(kind, backend, script, domid, devid, true);
    this.added.set(backend, { script, kind, env });
    const code = await this.runScript(backend, script, args, env);
    if (code !== 0 && (await this.xs.tryRead(`${backend}/hotplug-status`)) !== 'error') {
      // A script that died without saying so: say it for it, so the plug fails now rather than at its timeout.
      await this.xs.write(`${backend}/hotplug-error`, `${script} ${args[0]} exited ${code}`).catch(() => {});
      await this.xs.write(`${backend}/hotplug-status`, 'error').catch(() => {});
    }
  }

  /**
   * Runs the remove scripts of a destroyed domain's devices while their backend keys still exist (libxl's order:
   * scripts, then the nodes), so that they can read them (block needs params; for a file it detaches the loop device
   * it made). The teardown calls this between the destroy and the removal of the nodes; backends it handled are
   * forgotten, so their later removal runs nothing.
   */
  async removeDomain(domid: number): Promise<void> {
    const mine = [...this.added.keys()].filter((b) => Number(DEVICE_RE.exec(b)![2]) === domid);
    await Promise.all(
      mine.map(async (backend) => {
        await this.running.get(backend);
        const done = this.added.get(backend);
        if (!done) return;
        this.added.delete(backend);
        const devid = Number(DEVICE_RE.exec(backend)![3]);
        const { args, env } = hotplugInvocation(done.kind, backend, done.script, domid, devid, false);
        await this.runScript(backend, done.script, args, env);
      }),
    );
  }

  /**
   * The teardown removes a backend before its script's remove runs, and a script that cannot read its keys reports
   * the failure by writing hotplug-error/hotplug-status under XENBUS_PATH, which brings the backend path (and its
   * per-domain parent) back: remove them again.
   */
  private async removeRecreated(backend: string): Promise<void> {
    if ((await this.xs.tryRead(backend)) === undefined) return;
    this.logger.debug({ backend }, 'removing the nodes a remove script wrote under a removed backend');
    await this.xs.rm(backend).catch(() => {});
    const parent = backend.slice(0, backend.lastIndexOf('/'));
    const left = await this.xs.directory(parent).catch(() => undefined);
    if (left !== undefined && left.length === 0) await this.xs.rm(parent).catch(() => {});
  }

  private runScript(backend: string, script: string, args: string[], env: Record<string, string>): Promise<number | string> {
    const t0 = Date.now();
    return new Promise((resolve) => {
      const child = spawn(script, args, { env: { ...process.env, ...env, ...this.opts.env }, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (c: Buffer) => {
        if (stderr.length < 8192) stderr += c.toString();
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), this.opts.timeoutMs ?? 40_000);
      const finish = (code: number | string) => {
        clearTimeout(timer);
        const run = { backend, action: args[0]!, code, ms: Date.now() - t0 };
        this.runs.push(run);
        if (this.runs.length > 256) this.runs.shift();
        const level = code === 0 ? 'info' : 'warn';
        this.logger[level]({ ...run, script, stderr: stderr.slice(-2000) || undefined }, 'hotplug script');
        resolve(code);
      };
      child.once('error', (err) => finish(`spawn failed: ${err.message}`));
      child.once('exit', (code, sig) => finish(code ?? sig ?? 'unknown'));
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.watch?.close().catch(() => {});
    await Promise.allSettled([...this.running.values()]);
  }
}
