// A sim host with a client on each of its sockets (xenstored, hypervisor, control): what most sim-host test
// files open in `before` and close in `after`.
import { startSimHost, type SimHostHandle, type SimHostOptions } from '../support/simhost.js';
import { SimControlClient } from '../../src/sim/control/client.js';
import type { XsClient } from '../../src/xenstore/client.js';
import { HvClient } from './hvclient.js';
import { connectXs } from './toolstack.js';

export interface HostClients {
  host: SimHostHandle;
  xs: XsClient;
  hv: HvClient;
  ctl: SimControlClient;
}

export async function openHostClients(opts: SimHostOptions): Promise<HostClients> {
  const host = await startSimHost(opts);
  const xs = await connectXs(host.xenstoredPath);
  const hv = await HvClient.connect(host.hypervisorPath);
  const ctl = await SimControlClient.connect(host.controlPath);
  return { host, xs, hv, ctl };
}

/** Closes what was opened (any part may be missing when `before` failed half-way). */
export async function closeHostClients(c: Partial<HostClients>): Promise<void> {
  await c.xs?.close();
  c.hv?.close();
  await c.ctl?.close();
  await c.host?.stop();
}
