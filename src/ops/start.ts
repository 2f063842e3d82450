// VM.start as atoms (after xenopsd's VM_create / VM_build / device plug / unpause, with libxl's xenstore layout).
// Every atom that changes something outside the daemon has an undo; run in reverse they leave nothing behind.
import type { Atom, TaskContext } from '../tasks/types.js';
import { CreateFlag, HypervisorError } from '../hypervisor/types.js';
import type { VmSpec } from '../vm/spec.js';
import { targetMib } from '../vm/spec.js';
import type { DeviceRecord, DomainRecord } from '../vm/store.js';
import { Errors } from '../rpc/errors.js';
import type { OpsEnv } from './env.js';
import { apiErrors } from './env.js';
import { removeDomainNodes, writeDomainRuntime, writeDomainSkeleton, consoleBackendPath, domainPath } from './xs-domain.js';
import { planDevices, removeDevice, waitDeviceReady, writeDevice } from './devices.js';

/** libxl adds this much to maxmem for the domain's own overheads (LIBXL_MAXMEM_CONSTANT, KiB). */
const MAXMEM_SLACK_KIB = 1024;

interface Building {
  domid?: number;
  storePort?: number;
  consolePort?: number;
  storeMfn?: bigint;
  consoleMfn?: bigint;
  devices: DeviceRecord[];
}

function createFlags(spec: VmSpec): number {
  return spec.type === 'pv' ? 0 : CreateFlag.hvm | CreateFlag.hap;
}

/** The atoms of starting spec (the record of the built domain is saved just before the unpause). */
export function startAtoms(env: OpsEnv, spec: VmSpec, opts: { paused: boolean }): Atom[] {
  const { hv, xs, store } = env;
  const b: Building = { devices: [] };
  const domid = (): number => {
    if (b.domid === undefined) throw new Error('no domain yet');
    return b.domid;
  };
  const atoms: Atom[] = [
    {
      name: 'VM_check_memory',
      do: () =>
        apiErrors(async () => {
          const p = await hv.physinfo();
          const freeMib = Math.floor((p.freePages * p.pageSize) / (1024 * 1024));
          if (spec.memory.max_mib > freeMib) throw Errors.notEnoughMemory(spec.memory.max_mib, freeMib);
        }),
    },
    {
      name: 'VM_check_devices',
      do: async () => {
        // A disk written by two running guests is corrupted: refuse a rw disk that another domain has (xenopsd
        // leaves this to the storage layer; here the daemon is the only one that knows).
        for (const vbd of spec.vbds ?? []) {
          if ((vbd.mode ?? 'rw') !== 'rw') continue;
          for (const other of store.listDomains()) {
            if (other.vm === spec.id) continue;
            const clash = (other.builtWith.vbds ?? []).find((o) => o.path === vbd.path && (o.mode ?? 'rw') === 'rw');
            if (clash) throw Errors.deviceBusy(vbd.device, `${vbd.path} is attached read-write to VM ${other.vm}`);
          }
        }
      },
    },
    {
      name: 'VM_create',
      do: () =>
        apiErrors(async () => {
          if (spec.type === 'hvm') throw Errors.notSupported('starting an HVM guest (no device model)');
          b.domid = await hv.createDomain({ handle: spec.id, flags: createFlags(spec), maxVcpus: spec.vcpus.max });
        }),
      undo: async () => {
        if (b.domid !== undefined) await destroyQuiet(env, b.domid);
      },
    },
    {
      name: 'VM_set_max_vcpus',
      do: () => apiErrors(() => hv.setMaxVcpus(domid(), spec.vcpus.max)),
    },
    {
      name: 'VM_set_max_mem',
      do: () => apiErrors(() => hv.setMaxMem(domid(), spec.memory.max_mib * 1024 + MAXMEM_SLACK_KIB)),
    },
    {
      name: 'VM_alloc_evtchns',
      do: () =>
        apiErrors(async () => {
          b.storePort = await hv.evtchnAllocUnbound(domid(), 0);
          b.consolePort = await hv.evtchnAllocUnbound(domid(), 0);
        }),
    },
    {
      name: 'VM_write_skeleton',
      do: () => apiErrors(() => writeDomainSkeleton(xs, domid(), spec)),
      undo: () => removeDomainNodes(xs, domid(), spec.id),
      undoOnOwnFailure: true,
    },
    {
      name: 'VM_build',
      weight: 3,
      do: (ctx: TaskContext) =>
        apiErrors(async () => {
          const r = await hv.build(
            domid(),
            {
              type: spec.type,
              kernel: spec.boot.kernel,
              ramdisk: spec.boot.ramdisk,
              cmdline: spec.boot.cmdline,
              memoryMib: targetMib(spec),
              storePort: b.storePort!,
              consolePort: b.consolePort!,
            },
            ctx.signal,
          );
          b.storeMfn = r.storeMfn;
          b.consoleMfn = r.consoleMfn;
        }),
    },
    {
      name: 'VM_write_runtime',
      do: () =>
        apiErrors(() =>
          writeDomainRuntime(xs, domid(), spec, {
            storePort: b.storePort!,
            storeMfn: b.storeMfn!,
            consolePort: b.consolePort!,
            consoleMfn: b.consoleMfn!,
          }),
        ),
      undo: () => removeDomainNodes(xs, domid(), spec.id),
      undoOnOwnFailure: true,
    },
    {
      name: 'VM_introduce',
      do: () => apiErrors(() => xs.introduceDomain(domid(), b.storeMfn!, b.storePort!)),
      // No undo of its own: VM_create's undo destroys the domain and only then releases it (see destroyQuiet).
    },
  ];
  // Devices are planned only once the domid is known, so their atoms look it up when they run.
  const count = { vbd: (spec.vbds ?? []).length, vif: (spec.vifs ?? []).length };
  for (let i = 0; i < count.vbd + count.vif; i++) {
    const label = i < count.vbd ? `VBD_plug:${spec.vbds![i]!.device}` : `VIF_plug:${spec.vifs![i - count.vbd]!.index ?? i - count.vbd}`;
    atoms.push({
      name: label,
      do: (ctx: TaskContext) =>
        apiErrors(async () => {
          const plan = planDevices(spec, domid())[i]!;
          b.devices.push(plan.record);
          await writeDevice(xs, domid(), plan);
          await waitDeviceReady(xs, plan, {
            initTimeoutMs: env.timeouts.deviceInitMs,
            hotplugTimeoutMs: env.timeouts.hotplugMs,
            signal: ctx.signal,
          });
        }),
      undo: async () => {
        const plan = planDevices(spec, domid())[i]!;
        await removeDevice(xs, plan.record, 0);
      },
      undoOnOwnFailure: true,
    });
  }
  atoms.push(
    {
      name: 'VM_save_record',
      do: () =>
        apiErrors(async () => {
          const d = domid();
          const rec: DomainRecord = {
            vm: spec.id,
            domid: d,
            builtWith: spec,
            storePort: b.storePort!,
            consolePort: b.consolePort!,
            storeMfn: b.storeMfn!.toString(),
            consoleMfn: b.consoleMfn!.toString(),
            startedAt: new Date().toISOString(),
            devices: [
              { kind: 'console', devid: 0, backend: consoleBackendPath(d), frontend: `${domainPath(d)}/console` },
              ...b.devices,
            ],
          };
          await store.putDomain(rec);
          env.updates.add('vm', spec.id);
        }),
      undo: async () => {
        await store.removeDomain(spec.id);
        env.updates.add('vm', spec.id);
      },
    },
  );
  if (!opts.paused) atoms.push({ name: 'VM_unpause', do: () => apiErrors(() => hv.unpause(domid())) });
  return atoms;
}

/**
 * Destroys a domain, treating "already gone" as done; then tells xenstored to forget it (libxl's order). Never
 * XS_RELEASE first: xenstored would forget a live domain and fire no @releaseDomain when it dies, so xenconsoled
 * would keep its console page mapped and on real Xen the domain would stay "dying" for ever. After the destroy the
 * release is redundant or harmless (xenstored may already have dropped the dying domain: its error is ignored).
 */
export async function destroyQuiet(env: OpsEnv, domid: number): Promise<void> {
  const info = await env.hv.getDomainInfo(domid);
  // A dying domain can finish going between the two calls: ESRCH then means the job is done.
  if (info) await env.hv.destroy(domid).catch((err: unknown) => {
    if (!(err instanceof HypervisorError && err.errno === 'ESRCH')) throw err;
  });
  await env.xs.releaseDomain(domid).catch(() => {});
}
