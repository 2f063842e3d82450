// Removing a domain and everything the daemon made for it: the domain, its xenstore nodes (its tree, its backends,
// /vm/<uuid>) and its DomainRecord. Safe to run again after a crash half-way (every step tolerates "already gone").
import type { DomainRecord } from '../vm/store.js';
import type { OpsEnv } from './env.js';
import { removeDomainNodes } from './xs-domain.js';
import { destroyQuiet } from './start.js';

export async function teardownDomain(env: OpsEnv, rec: DomainRecord): Promise<void> {
  // The domain first: once it is gone no frontend can use a ring, so its backends are removed without the
  // Closing/Closed handshake (as libxl's forced destroy does): with the per-domain backend directories, in one go.
  await destroyQuiet(env, rec.domid);
  // Real Xen: the hotplug scripts' remove reads the backend keys (block detaches its loop device), so it runs first.
  await env.hotplug?.removeDomain(rec.domid).catch((err: unknown) => env.logger.warn({ err, domid: rec.domid }, 'hotplug remove failed'));
  await removeDomainNodes(env.xs, rec.domid, rec.vm);
  if (env.store.getDomain(rec.vm)?.domid === rec.domid) await env.store.removeDomain(rec.vm);
  env.updates.add('vm', rec.vm);
}
