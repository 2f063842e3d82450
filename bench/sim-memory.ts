// Memory cost of idle guests in the sim hypervisor: creates N idle 1 GiB PV guests through the
// hypervisor RPC (a SimHypervisor + HypervisorServer in this process, the daemon's sim backend
// as client), unpauses them, lets them run, and reports the process's RSS and heap.
// Usage: npm run bench:sim-memory [-- --guests 1000 --mib 1024]
// Writes bench/results/sim-memory.json.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { SimHypervisor } from '../src/sim/hypervisor/index.js';
import { HypervisorServer } from '../src/sim/hypervisor/server.js';
import { connectSimHypervisor } from '../src/hypervisor/sim.js';

const { values } = parseArgs({
  options: { guests: { type: 'string', default: '1000' }, mib: { type: 'string', default: '1024' } },
});
const guests = Number(values.guests);
const guestMib = Number(values.mib);
const mib = (bytes: number): number => Math.round((bytes / 1024 / 1024) * 10) / 10;

function snapshot(): { rssMib: number; heapUsedMib: number; externalMib: number; arrayBuffersMib: number } {
  global.gc?.();
  const m = process.memoryUsage();
  return { rssMib: mib(m.rss), heapUsedMib: mib(m.heapUsed), externalMib: mib(m.external), arrayBuffersMib: mib(m.arrayBuffers) };
}

const dir = mkdtempSync(join(tmpdir(), 'bench-sim-memory-'));
const sim = new SimHypervisor({ memoryMib: guests * guestMib + 2048 });
const server = new HypervisorServer(sim);
await server.listen(join(dir, 'hypervisor.sock'));
const hv = await connectSimHypervisor(join(dir, 'hypervisor.sock'));

const baseline = snapshot();
const started = performance.now();
for (let i = 0; i < guests; i++) {
  const handle = `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
  const domid = await hv.createDomain({ handle, flags: 0, maxVcpus: 2 });
  await hv.setMaxMem(domid, guestMib * 1024);
  const store = await hv.evtchnAllocUnbound(domid, 0);
  const console = await hv.evtchnAllocUnbound(domid, 0);
  await hv.build(domid, { type: 'pv', kernel: '/boot/vmlinuz', memoryMib: guestMib, storePort: store, consolePort: console });
  await hv.unpause(domid);
}
const buildMs = Math.round(performance.now() - started);
await new Promise((r) => setTimeout(r, 500)); // idle guests run a while
const infos = await hv.getDomainInfoList(1, guests + 10);
const loaded = snapshot();

const result = {
  bench: 'sim-memory',
  date: new Date().toISOString(),
  node: process.version,
  guests,
  guestMib,
  runningGuests: infos.filter((i) => i.running).length,
  guestPages: infos.reduce((n, i) => n + i.totPages, 0),
  buildMs,
  baseline,
  loaded,
  rssGrowthMib: Math.round((loaded.rssMib - baseline.rssMib) * 10) / 10,
  rssBoundMib: 500,
  withinBound: loaded.rssMib < 500,
};
console.log(
  `${guests} idle ${guestMib} MiB guests (${result.runningGuests} running, ${result.guestPages} guest pages) built in ${buildMs} ms\n` +
    `RSS ${loaded.rssMib} MiB (baseline ${baseline.rssMib} MiB, growth ${result.rssGrowthMib} MiB), heap ${loaded.heapUsedMib} MiB, ` +
    `array buffers ${loaded.arrayBuffersMib} MiB — bound 500 MiB: ${result.withinBound ? 'OK' : 'EXCEEDED'}`,
);
mkdirSync('bench/results', { recursive: true });
writeFileSync('bench/results/sim-memory.json', `${JSON.stringify(result, null, 2)}\n`);

await hv.close();
await server.close();
sim.close();
rmSync(dir, { recursive: true, force: true });
