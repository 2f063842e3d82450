// Start-up reconciliation: make the recorded world and the real one agree before the API opens.
//  1. Re-adopt each recorded domain that still exists with the VM's uuid as handle; forget (and clean) the others.
//  2. Finish or undo what the journal says was in progress when the daemon died.
//  3. Remove what belongs to nobody: domains whose handle is one of our VMs but that no record owns (half-built
//     starts), and xenstore nodes of domains that no longer exist. Domains of other toolstacks are left alone.
import type { Logger } from 'pino';
import type { DomainInfo } from '../hypervisor/types.js';
import type { OpsEnv } from '../ops/env.js';
import { teardownDomain } from '../ops/teardown.js';
import { destroyQuiet } from '../ops/start.js';
import { removeDomainNodes, rmQuiet } from '../ops/xs-domain.js';
import type { VmOperations } from './operations.js';

export interface RecoveryReport {
  adopted: string[];
  forgotten: string[];
  finished: string[];
  undone: string[];
  orphanDomains: number[];
  orphanNodes: string[];
  restarted: string[];
  /** Steps that failed: logged and left for the next start-up; the daemon still opens its API (it must not wedge). */
  failed: string[];
}

async function domainList(env: OpsEnv): Promise<Map<number, DomainInfo>> {
  const list = await env.hv.getDomainInfoList(0, 65536);
  return new Map(list.map((d) => [d.domid, d]));
}

export async function recover(env: OpsEnv, ops: VmOperations, logger: Logger): Promise<RecoveryReport> {
  const { store, xs } = env;
  const report: RecoveryReport = { adopted: [], forgotten: [], finished: [], undone: [], orphanDomains: [], orphanNodes: [], restarted: [], failed: [] };
  /** Runs one item's step; an error is logged and reported, never allowed to stop the start-up. */
  const attempt = async (what: string, step: () => Promise<void>): Promise<boolean> => {
    try {
      await step();
      return true;
    } catch (err) {
      logger.error({ err, what }, 'recovery step failed: left for the next start-up');
      report.failed.push(what);
      return false;
    }
  };
  /** Real Xen: the scripts' remove needs the backend keys (block detaches what it attached), so it runs first. */
  const removeScripts = async (domid: number) => {
    await env.hotplug?.removeDomain(domid).catch((err: unknown) => logger.warn({ err, domid }, 'hotplug remove failed'));
  };
  let domains = await domainList(env);
  /** Reboots to start again once the orphans are gone (a start queued earlier could race with the clean-up). */
  const toRestart: string[] = [];

  // 1. records
  for (const rec of store.listDomains()) {
    const info = domains.get(rec.domid);
    if (info && info.handle === rec.vm) {
      report.adopted.push(rec.vm);
      continue;
    }
    logger.warn({ vm: rec.vm, domid: rec.domid }, 'recorded domain is gone: cleaning its nodes');
    const done = await attempt(`forget ${rec.vm}`, async () => {
      await removeScripts(rec.domid);
      await removeDomainNodes(xs, rec.domid, rec.vm);
      await store.removeDomain(rec.vm);
    });
    if (done) report.forgotten.push(rec.vm);
  }

  // 2. journal
  for (const entry of store.listJournal()) {
    const log = logger.child({ vm: entry.vm, taskId: entry.taskId, op: entry.op });
    const rec = store.getDomain(entry.vm);
    const info = rec ? domains.get(rec.domid) : undefined;
    const done = await attempt(`${entry.op} ${entry.vm}`, async () => {
      switch (entry.op) {
        case 'start':
          if (rec && info) {
            // Everything up to the record was done; only the unpause may be missing.
            if (!entry.args?.paused && info.paused) await env.hv.unpause(rec.domid);
            log.info('finished an interrupted start');
            report.finished.push(entry.vm);
          } else {
            log.info('undoing an interrupted start (its half-built domain is removed below)');
            report.undone.push(entry.vm);
          }
          break;
        case 'shutdown':
        case 'reboot':
        case 'check':
          if (rec && entry.op === 'check') {
            // The check is queued again below (its decision depends only on the domain's state).
            break;
          }
          if (rec && entry.domid === rec.domid) {
            // A shutdown that got as far as asking is finished as a hard one: the caller asked for the domain to go.
            await teardownDomain(env, rec);
            log.info('finished an interrupted shutdown');
            if (entry.op === 'reboot') toRestart.push(entry.vm);
          } else if (rec && info) {
            // A reboot whose new domain was already recorded: only its unpause may be missing.
            if (info.paused) await env.hv.unpause(rec.domid);
          } else if (entry.op === 'reboot') {
            toRestart.push(entry.vm);
          }
          report.finished.push(entry.vm);
          break;
        default:
          // pause/unpause/set_*: one idempotent step; the domain is consistent either way.
          report.finished.push(entry.vm);
      }
    });
    // A failed step keeps its journal entry, so the next start-up tries again.
    if (done) await store.removeJournal(entry.vm);
  }

  // 3. orphans
  domains = await domainList(env);
  const owned = new Set(store.listDomains().map((r) => r.domid));
  for (const info of domains.values()) {
    if (info.domid === 0 || owned.has(info.domid) || !store.getSpec(info.handle)) continue;
    logger.warn({ vm: info.handle, domid: info.domid }, 'removing a domain of ours that no record owns');
    const done = await attempt(`orphan domain ${info.domid}`, async () => {
      await destroyQuiet(env, info.domid);
      await removeScripts(info.domid);
      await removeDomainNodes(xs, info.domid, store.getDomain(info.handle) ? undefined : info.handle);
    });
    if (done) report.orphanDomains.push(info.domid);
  }
  domains = await domainList(env);
  const live = new Set(domains.keys());
  for (const child of await xs.directory('/local/domain').catch(() => [] as string[])) {
    const domid = Number(child);
    if (!Number.isInteger(domid) || domid === 0 || live.has(domid)) continue;
    const cleaned = await attempt(`nodes of domain ${domid}`, async () => {
      await removeScripts(domid);
      await removeDomainNodes(xs, domid, undefined);
    });
    if (cleaned) report.orphanNodes.push(`/local/domain/${child}`);
  }
  for (const kind of ['vbd', 'vif', 'console']) {
    for (const child of await xs.directory(`/local/domain/0/backend/${kind}`).catch(() => [] as string[])) {
      if (live.has(Number(child))) continue;
      await removeScripts(Number(child));
      await rmQuiet(xs, `/local/domain/0/backend/${kind}/${child}`);
      report.orphanNodes.push(`/local/domain/0/backend/${kind}/${child}`);
    }
  }
  const runningVms = new Set(store.listDomains().map((r) => r.vm));
  for (const uuid of await xs.directory('/vm').catch(() => [] as string[])) {
    if (!store.getSpec(uuid) || runningVms.has(uuid)) continue;
    await rmQuiet(xs, `/vm/${uuid}`);
    report.orphanNodes.push(`/vm/${uuid}`);
  }

  // Guests that shut down while the daemon was away get their on_* action now.
  for (const rec of store.listDomains()) {
    const info = domains.get(rec.domid);
    if (!rec.preserved && (!info || info.shutdown || info.dying)) ops.queueCheck(rec.vm);
  }
  for (const vm of toRestart) {
    if (!store.getSpec(vm) || store.getDomain(vm)) continue;
    ops.start(vm, false);
    report.restarted.push(vm);
  }
  return report;
}
