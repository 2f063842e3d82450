// A SimHypervisor served by a HypervisorServer in this process, with the daemon's sim backend
// as the client: tests go through the RPC alone (the in-process model stands in for guests).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SimHypervisor, type SimHypervisorOptions } from '../../src/sim/hypervisor/index.js';
import { HypervisorServer } from '../../src/sim/hypervisor/server.js';
import { connectSimHypervisor, type SimHypervisorBackend } from '../../src/hypervisor/sim.js';

export interface Harness {
  sim: SimHypervisor;
  server: HypervisorServer;
  hv: SimHypervisorBackend;
  dir: string;
  socketPath: string;
  close(): Promise<void>;
}

export async function startHarness(opts: SimHypervisorOptions = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'sim-hv-'));
  const socketPath = join(dir, 'hypervisor.sock');
  const sim = new SimHypervisor(opts);
  const server = new HypervisorServer(sim);
  await server.listen(socketPath);
  const hv = await connectSimHypervisor(socketPath);
  return {
    sim,
    server,
    hv,
    dir,
    socketPath,
    async close() {
      await hv.close();
      await server.close();
      sim.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

let handleCounter = 0;
export function uuid(): string {
  handleCounter++;
  return `00000000-0000-4000-8000-${handleCounter.toString(16).padStart(12, '0')}`;
}

/** Creates, sizes and builds a guest; returns its domid (still paused). */
export async function buildGuest(
  hv: SimHypervisorBackend,
  opts: { memoryMib?: number; type?: 'pv' | 'pvh' | 'hvm'; vcpus?: number } = {},
): Promise<number> {
  const memoryMib = opts.memoryMib ?? 16;
  const type = opts.type ?? 'pv';
  const domid = await hv.createDomain({ handle: uuid(), flags: type === 'pv' ? 0 : 1, maxVcpus: opts.vcpus ?? 1 });
  await hv.setMaxMem(domid, memoryMib * 1024);
  const store = await hv.evtchnAllocUnbound(domid, 0);
  const console = await hv.evtchnAllocUnbound(domid, 0);
  await hv.build(domid, { type, kernel: '/boot/vmlinuz-sim', memoryMib, storePort: store, consolePort: console });
  return domid;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls until fn() is truthy (bounded). */
export async function waitFor<T>(fn: () => Promise<T> | T, timeoutMs = 2000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await sleep(5);
  }
}
