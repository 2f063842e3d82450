// The xenstore records of a domain, written the way libxl writes them: directories by WRITE "" then SET_PERMS
// (never MKDIR), grouped in transactions; children inherit their parent's permissions, so only exceptions are set.
import type { Transaction, XenstoreClient, XsOps } from '../xenstore/types.js';
import type { Perm } from '../xenstore/wire.js';
import type { VmSpec } from '../vm/spec.js';
import { onlineVcpus, targetMib } from '../vm/spec.js';
import { dom0ReadByGuest, guestOwned, guestOwnedDom0Read, dom0Only } from './xs-perms.js';

export const domainPath = (domid: number): string => `/local/domain/${domid}`;
export const vmPath = (uuid: string): string => `/vm/${uuid}`;
export const consoleBackendPath = (domid: number): string => `/local/domain/0/backend/console/${domid}/0`;

/**
 * Sends a transaction's requests back to back without waiting for each reply: xenstored handles one connection's
 * requests in order, so the effect is that of awaiting each in turn, for one round trip instead of dozens.
 */
export class Pipeline {
  private pending: Promise<void>[] = [];
  constructor(private readonly ops: XsOps) {}
  write(path: string, value: string): void {
    this.pending.push(this.ops.write(path, value));
  }
  setPerms(path: string, perms: Perm[]): void {
    this.pending.push(this.ops.setPerms(path, perms));
  }
  mkdir(path: string): void {
    this.pending.push(this.ops.mkdir(path));
  }
  /** WRITE "" then SET_PERMS, as libxl creates directories. */
  dir(path: string, perms: Perm[]): void {
    this.write(path, '');
    this.setPerms(path, perms);
  }
  /** RM that treats "already gone" as done. */
  rmQuiet(path: string): void {
    this.pending.push(
      this.ops.rm(path).catch((err: unknown) => {
        if ((err as { errno?: string }).errno !== 'ENOENT') throw err;
      }),
    );
  }
  async flush(): Promise<void> {
    const results = await Promise.allSettled(this.pending);
    this.pending = [];
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }
}

/** Before build: /local/domain/<domid> and /vm/<uuid> skeletons (libxl__domain_make). */
/** Transactions of concurrent starts touch disjoint subtrees, but still collide now and then: retry generously. */
export const TX_RETRIES = 100;

/**
 * Before build: /local/domain/<domid> and /vm/<uuid> skeletons (libxl__domain_make). The two roots are created
 * first, outside the transaction: creating a child changes its parent, so every concurrent start would otherwise
 * conflict on /local/domain and /vm. A crash between the two steps leaves nodes of a domain the daemon does not own,
 * which recovery removes.
 */
export async function writeDomainSkeleton(xs: XenstoreClient, domid: number, spec: VmSpec): Promise<void> {
  const dom = domainPath(domid);
  const vm = vmPath(spec.id);
  const rw = dom0ReadByGuest(domid);
  const mine = guestOwned(domid);
  const roots = new Pipeline(xs);
  roots.dir(dom, rw);
  roots.dir(vm, rw);
  // The console backend's per-domain parent too (dom0-only; missing ancestors inherit /local/domain/0's (n0)).
  roots.dir(`/local/domain/0/backend/console/${domid}`, dom0Only);
  // The transaction starts without waiting for the roots' replies: its TRANSACTION_START goes out on the same
  // connection after them, and xenstored handles a connection's requests in order, so the transaction sees the
  // roots (one round trip fewer). A failed root fails the body, which aborts the transaction.
  const rootsDone = roots.flush();
  rootsDone.catch(() => {}); // observed by the body below; this keeps an early failure from being "unhandled"
  await xs.transaction(async (tx) => {
    await rootsDone;
    const q = new Pipeline(tx);
    q.write(`${vm}/uuid`, spec.id);
    q.write(`${vm}/name`, spec.name);
    q.write(`${dom}/vm`, vm);
    q.write(`${dom}/name`, spec.name);
    q.write(`${dom}/domid`, String(domid));
    for (const sub of ['cpu', 'memory', 'device', 'device/suspend', 'control']) q.write(`${dom}/${sub}`, '');
    q.dir(`${dom}/device/suspend/event-channel`, mine);
    for (const key of ['shutdown', 'feature-poweroff', 'feature-reboot', 'feature-suspend', 'sysrq'])
      q.dir(`${dom}/control/${key}`, mine);
    q.write(`${dom}/control/platform-feature-multiprocessor-suspend`, '1');
    q.write(`${dom}/control/platform-feature-xs_reset_watches`, '1');
    for (const sub of ['data', 'drivers', 'feature', 'attr', 'error']) q.dir(`${dom}/${sub}`, mine);
    await q.flush();
  }, { retries: TX_RETRIES });
}

export interface PostBuildInfo {
  storePort: number;
  storeMfn: bigint;
  consolePort: number;
  consoleMfn: bigint;
}

/** After build: memory, vcpus, store and console details, the console backend, /vm image keys (libxl__build_post). */
export async function writeDomainRuntime(xs: XenstoreClient, domid: number, spec: VmSpec, info: PostBuildInfo): Promise<void> {
  const dom = domainPath(domid);
  const vm = vmPath(spec.id);
  const maxKib = spec.memory.max_mib * 1024;
  const online = onlineVcpus(spec);
  await xs.transaction(async (tx) => {
    const q = new Pipeline(tx);
    q.write(`${dom}/memory/static-max`, String(maxKib));
    q.write(`${dom}/memory/target`, String(targetMib(spec) * 1024));
    q.write(`${dom}/memory/videoram`, '0');
    for (let i = 0; i < spec.vcpus.max; i++)
      q.write(`${dom}/cpu/${i}/availability`, i < online ? 'online' : 'offline');
    q.write(`${dom}/store/port`, String(info.storePort));
    q.write(`${dom}/store/ring-ref`, info.storeMfn.toString());
    const con = `${dom}/console`;
    q.write(`${con}/backend`, consoleBackendPath(domid));
    q.write(`${con}/backend-id`, '0');
    q.setPerms(`${con}/backend-id`, guestOwnedDom0Read(domid));
    q.write(`${con}/limit`, '1048576');
    q.write(`${con}/type`, 'xenconsoled');
    q.write(`${con}/output`, 'pty');
    q.write(`${con}/port`, String(info.consolePort));
    q.write(`${con}/ring-ref`, info.consoleMfn.toString());
    if (spec.type === 'pv') {
      q.write(`${vm}/image/ostype`, 'linux');
      q.write(`${vm}/image/kernel`, spec.boot.kernel);
      if (spec.boot.ramdisk !== undefined) q.write(`${vm}/image/ramdisk`, spec.boot.ramdisk);
      if (spec.boot.cmdline !== undefined) q.write(`${vm}/image/cmdline`, spec.boot.cmdline);
    }
    q.write(`${vm}/start_time`, (Date.now() / 1000).toFixed(2));
    for (const [key, value] of Object.entries(spec.xenstore_data ?? {})) q.write(`${dom}/${key}`, value);
    // The console backend (its parent was made with the skeleton): readable by the guest.
    const be = consoleBackendPath(domid);
    q.dir(be, dom0ReadByGuest(domid));
    q.write(`${be}/frontend`, `${dom}/console`);
    q.write(`${be}/frontend-id`, String(domid));
    q.write(`${be}/online`, '1');
    q.write(`${be}/state`, '1');
    q.write(`${be}/protocol`, 'vt100');
    await q.flush();
  }, { retries: TX_RETRIES });
}

/**
 * Creates a per-domain backend parent (e.g. /local/domain/0/backend/vbd/<domid>) outside any transaction, dom0-only.
 * Missing ancestors are created by the WRITE with /local/domain/0's permissions, (n0).
 */
export async function ensureDom0Parent(xs: XenstoreClient, path: string): Promise<void> {
  // Blind (no read first): rewriting an existing parent's empty value and perms changes nothing.
  const q = new Pipeline(xs);
  q.dir(path, dom0Only);
  await q.flush();
}

/** Removes a node, ignoring one that is already gone. */
export async function rmQuiet(xs: XenstoreClient | Transaction, path: string): Promise<void> {
  try {
    await xs.rm(path);
  } catch (err) {
    if ((err as { errno?: string }).errno !== 'ENOENT') throw err;
  }
}

/** Removes every node of the domain: its tree, its backends in dom0, its /vm entry (one round trip). */
export async function removeDomainNodes(xs: XenstoreClient, domid: number, uuid: string | undefined): Promise<void> {
  const q = new Pipeline(xs);
  for (const kind of ['vbd', 'vif', 'console']) {
    q.rmQuiet(`/local/domain/0/backend/${kind}/${domid}`);
    // What a backend recorded with xenbus_dev_fatal about this domain's devices goes with them.
    q.rmQuiet(`/local/domain/0/error/backend/${kind}/${domid}`);
  }
  q.rmQuiet(domainPath(domid));
  if (uuid !== undefined) q.rmQuiet(vmPath(uuid));
  await q.flush();
}
