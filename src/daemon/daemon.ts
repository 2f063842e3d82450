// The daemon assembled: backend, store, task engine, updates, domain watcher, recovery, API server.
import type { Logger } from 'pino';
import type { Server } from 'node:net';
import { createApiServer } from '../rpc/server.js';
import type { ApiServer, Handler } from '../rpc/types.js';
import { TaskEngine } from '../tasks/engine.js';
import { taskMethods } from '../tasks/methods.js';
import { UpdatesLog } from '../updates/log.js';
import { updatesMethods } from '../updates/methods.js';
import { DomainEvents } from '../ops/domain-events.js';
import { DEFAULT_TIMEOUTS, type OpsEnv, type OpsTimeouts } from '../ops/env.js';
import { VmStore } from '../vm/store.js';
import { DomainInfoCache } from '../ops/domain-cache.js';
import { openBackend, type BackendKind } from './backend.js';
import { vmMethods } from './methods.js';
import { VmOperations } from './operations.js';
import { recover, type RecoveryReport } from './recovery.js';
import { startTestHooks } from './test-hooks.js';
import { HotplugRunner } from '../devices/hotplug.js';

export interface DaemonOptions {
  backend: BackendKind;
  simDir?: string;
  socketPath: string;
  stateDir: string;
  group?: string;
  logger: Logger;
  version: string;
  timeouts?: Partial<OpsTimeouts>;
  /** Tasks at once across VMs (level 0); default 64. */
  concurrency?: number;
  /** Path of the test-hooks socket (tests only). */
  testHooks?: string;
}

export class Daemon {
  private constructor(
    readonly env: OpsEnv,
    readonly engine: TaskEngine,
    private readonly server: ApiServer,
    private readonly hooks: Server | undefined,
    readonly recovery: RecoveryReport,
    private readonly hotplug?: HotplugRunner,
  ) {}

  static async start(opts: DaemonOptions): Promise<Daemon> {
    const { logger } = opts;
    const store = await VmStore.open(opts.stateDir);
    const { hv, xs } = await openBackend({ kind: opts.backend, simDir: opts.simDir, logger });
    const updates = new UpdatesLog();
    const infoCache = new DomainInfoCache(hv);
    const engine = new TaskEngine({ logger, updates, concurrency: [opts.concurrency ?? 64, 64, 64, 64] });
    const domains = new DomainEvents(hv, xs, logger.child({ component: 'domains' }));
    // Every 'vm' update means the daemon changed or saw a change of that VM: its cached domain info is stale.
    const vmUpdates = {
      add(kind: Parameters<UpdatesLog['add']>[0], id: string) {
        if (kind === 'vm') {
          const rec = store.getDomain(id);
          if (rec) infoCache.invalidate(rec.domid);
        }
        updates.add(kind, id);
      },
    };
    const env: OpsEnv = { hv, xs, store, domains, updates: vmUpdates, timeouts: { ...DEFAULT_TIMEOUTS, ...opts.timeouts }, logger };
    const ops = new VmOperations(env, engine);
    let hotplug: HotplugRunner | undefined;
    let server: ApiServer | undefined;
    try {
      await domains.start();
      // Real Xen's backends wait for Xen's hotplug scripts, which the daemon runs as libxl does (the sim's do not).
      hotplug = opts.backend === 'xen' ? new HotplugRunner(xs, logger.child({ component: 'hotplug' }), { timeoutMs: env.timeouts.hotplugMs }) : undefined;
      await hotplug?.start();
      env.hotplug = hotplug;
      const recovery = await recover(env, ops, logger.child({ component: 'recovery' }));
      logger.info({ recovery }, 'recovery done');
      domains.subscribe((list) => {
        infoCache.fill(list);
        ops.onDomainScan(list);
      });
      domains.trigger();
      const methods: Record<string, Handler> = {
        ...vmMethods({ env, ops, daemonVersion: opts.version, infoCache }),
        ...taskMethods(engine),
        ...updatesMethods(updates),
      };
      server = await createApiServer({ socketPath: opts.socketPath, group: opts.group, logger, methods, version: opts.version });
      const hooks = opts.testHooks ? await startTestHooks(opts.testHooks, engine) : undefined;
      return new Daemon(env, engine, server, hooks, recovery, hotplug);
    } catch (err) {
      // A start-up failure closes what was opened: open sockets and timers would keep the process alive.
      await server?.close().catch(() => {});
      await hotplug?.close();
      engine.close();
      await domains.close();
      await xs.close().catch(() => {});
      await hv.close().catch(() => {});
      throw err;
    }
  }

  get socketPath(): string {
    return this.server.socketPath;
  }

  /** Stops taking requests, lets running tasks end (up to graceMs), then closes the backend connections. */
  async stop(graceMs = 5000): Promise<void> {
    await this.server.close();
    this.hooks?.close();
    await Promise.race([this.engine.drain(), new Promise((r) => setTimeout(r, graceMs).unref())]);
    this.engine.close();
    await this.hotplug?.close();
    await this.env.domains.close();
    await this.env.xs.close().catch(() => {});
    await this.env.hv.close().catch(() => {});
  }
}
