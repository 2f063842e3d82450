// The xenstore records of a domain, written the way libxl writes them: directories by WRITE "" then SET_PERMS
// (never MKDIR), grouped in transactions; children inherit their parent's permissions, so only exceptions are set.
import type { Transaction, XenstoreClient } from '../xenstore/types.js';
import type { VmSpec } from '../vm/spec.js';
import { onlineVcpus, targetMib } from '../vm/spec.js';
import { dom0ReadByGuest, guestOwned, guestOwnedDom0Read, dom0Only } from './xs-perms.js';

export const domainPath = (domid: number): string => `/local/domain/${domid}`;
export const vmPath = (uuid: string): string => `/vm/${uuid}`;
export const consoleBackendPath = (domid: number): string => `/local/domain/0/backend/console/${domid}/0`;

async function writeDir(tx: Transaction, path: string, perms: ReturnType<typeof dom0ReadByGuest>): Promise<void> {
  await tx.write(path, '');
  await tx.setPerms(path, perms);
}

/** Before build: /local/domain/<domid> and /vm/<uuid> skeletons (libxl__domain_make). */
export async function writeDomainSkeleton(xs: XenstoreClient, domid: number, spec: VmSpec): Promise<void> {
  const dom = domainPath(domid);
  const vm = vmPath(spec.id);
  const rw = dom0ReadByGuest(domid);
  const mine = guestOwned(domid);
  await xs.transaction(async (tx) => {
    await writeDir(tx, dom, rw);
    await writeDir(tx, vm, rw);
    await tx.write(`${vm}/uuid`, spec.id);
    await tx.write(`${vm}/name`, spec.name);
    await tx.write(`${dom}/vm`, vm);
    await tx.write(`${dom}/name`, spec.name);
    await tx.write(`${dom}/domid`, String(domid));
    for (const sub of ['cpu', 'memory', 'device', 'device/suspend', 'control']) await tx.write(`${dom}/${sub}`, '');
    await writeDir(tx, `${dom}/device/suspend/event-channel`, mine);
    for (const key of ['shutdown', 'feature-poweroff', 'feature-reboot', 'feature-suspend', 'sysrq'])
      await writeDir(tx, `${dom}/control/${key}`, mine);
    await tx.write(`${dom}/control/platform-feature-multiprocessor-suspend`, '1');
    await tx.write(`${dom}/control/platform-feature-xs_reset_watches`, '1');
    for (const sub of ['data', 'drivers', 'feature', 'attr', 'error']) await writeDir(tx, `${dom}/${sub}`, mine);
  });
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
    await tx.write(`${dom}/memory/static-max`, String(maxKib));
    await tx.write(`${dom}/memory/target`, String(targetMib(spec) * 1024));
    await tx.write(`${dom}/memory/videoram`, '0');
    for (let i = 0; i < spec.vcpus.max; i++)
      await tx.write(`${dom}/cpu/${i}/availability`, i < online ? 'online' : 'offline');
    await tx.write(`${dom}/store/port`, String(info.storePort));
    await tx.write(`${dom}/store/ring-ref`, info.storeMfn.toString());
    const con = `${dom}/console`;
    await tx.write(`${con}/backend`, consoleBackendPath(domid));
    await tx.write(`${con}/backend-id`, '0');
    await tx.setPerms(`${con}/backend-id`, guestOwnedDom0Read(domid));
    await tx.write(`${con}/limit`, '1048576');
    await tx.write(`${con}/type`, 'xenconsoled');
    await tx.write(`${con}/output`, 'pty');
    await tx.write(`${con}/port`, String(info.consolePort));
    await tx.write(`${con}/ring-ref`, info.consoleMfn.toString());
    if (spec.type === 'pv') {
      await tx.write(`${vm}/image/ostype`, 'linux');
      await tx.write(`${vm}/image/kernel`, spec.boot.kernel);
      if (spec.boot.ramdisk !== undefined) await tx.write(`${vm}/image/ramdisk`, spec.boot.ramdisk);
      if (spec.boot.cmdline !== undefined) await tx.write(`${vm}/image/cmdline`, spec.boot.cmdline);
    }
    await tx.write(`${vm}/start_time`, (Date.now() / 1000).toFixed(2));
    for (const [key, value] of Object.entries(spec.xenstore_data ?? {})) await tx.write(`${dom}/${key}`, value);
  });
  // The console backend: parents stay dom0-only, the device directory is readable by the guest.
  const be = consoleBackendPath(domid);
  await xs.transaction(async (tx) => {
    await ensureDom0Dir(tx, `/local/domain/0/backend/console`);
    await ensureDom0Dir(tx, `/local/domain/0/backend/console/${domid}`);
    await writeDir(tx, be, dom0ReadByGuest(domid));
    await tx.write(`${be}/frontend`, `${dom}/console`);
    await tx.write(`${be}/frontend-id`, String(domid));
    await tx.write(`${be}/online`, '1');
    await tx.write(`${be}/state`, '1');
    await tx.write(`${be}/protocol`, 'vt100');
  });
}

/** Creates a dom0-only directory if missing (a WRITE would replace nothing of value, but would reset its value). */
export async function ensureDom0Dir(tx: Transaction, path: string): Promise<void> {
  if ((await tx.tryRead(path)) === undefined) await writeDir(tx, path, dom0Only);
}

/** Removes a node, ignoring one that is already gone. */
export async function rmQuiet(xs: XenstoreClient | Transaction, path: string): Promise<void> {
  try {
    await xs.rm(path);
  } catch (err) {
    if ((err as { errno?: string }).errno !== 'ENOENT') throw err;
  }
}

/** Removes every node of the domain: its tree, its backends in dom0, its /vm entry. */
export async function removeDomainNodes(xs: XenstoreClient, domid: number, uuid: string | undefined): Promise<void> {
  for (const kind of ['vbd', 'vif', 'console']) await rmQuiet(xs, `/local/domain/0/backend/${kind}/${domid}`);
  await rmQuiet(xs, domainPath(domid));
  if (uuid !== undefined) await rmQuiet(xs, vmPath(uuid));
}
