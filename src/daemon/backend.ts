// The one place that knows which backend runs: it opens the hypervisor and xenstore for 'sim' or 'xen'.
// Backend modules are loaded lazily so that the sim path never loads koffi and the xen path never loads the sim client.
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Hypervisor } from '../hypervisor/types.js';
import type { XenstoreClient } from '../xenstore/types.js';
import { defaultSocketPath } from '../xenstore/types.js';
import { XsClient } from '../xenstore/client.js';

export type BackendKind = 'sim' | 'xen';

export interface BackendConfig {
  kind: BackendKind;
  /** sim only: the sim host's directory (xenstored.sock, hypervisor.sock). */
  simDir?: string;
  logger: Logger;
}

export interface Backend {
  hv: Hypervisor;
  xs: XenstoreClient;
}

type Loaded = Record<string, unknown>;

async function loadModule(path: string): Promise<Loaded> {
  // A computed specifier: the module may be absent from a build that leaves a backend out.
  return (await import(path)) as Loaded;
}

export async function openBackend(cfg: BackendConfig): Promise<Backend> {
  if (cfg.kind === 'sim') {
    if (!cfg.simDir) throw new Error('--backend sim needs --sim-dir DIR (the directory of a running sim host)');
    const mod = await loadModule('../hypervisor/sim.js');
    const connect = mod.connectSimHypervisor as ((path: string) => Promise<Hypervisor>) | undefined;
    if (typeof connect !== 'function') throw new Error('src/hypervisor/sim.ts does not export connectSimHypervisor');
    const hv = await connect(join(cfg.simDir, 'hypervisor.sock'));
    const xs = await XsClient.connect({ path: join(cfg.simDir, 'xenstored.sock'), logger: cfg.logger.child({ component: 'xenstore' }) });
    return { hv, xs };
  }
  const mod = await loadModule('../hypervisor/xen.js');
  const open = (mod.openXenHypervisor ?? mod.connectXenHypervisor ?? mod.openXen) as ((opts?: unknown) => Promise<Hypervisor>) | undefined;
  if (typeof open !== 'function') throw new Error('src/hypervisor/xen.ts does not export openXenHypervisor');
  const hv = await open({ logger: cfg.logger.child({ component: 'xen' }) });
  const xs = await XsClient.connect({ path: defaultSocketPath(), logger: cfg.logger.child({ component: 'xenstore' }) });
  return { hv, xs };
}
