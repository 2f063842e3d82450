// Daemon benchmark on a sim host (backend delays 0), host and daemon in separate processes, as in production:
//  - VM.start latency (call → task completed) p50/p99 with 1, 100 and 1,000 domains running
//  - 200 VM.start submitted at once: wall time until all completed
//  - VM.stat calls/s and p99 latency with 16 concurrent clients (one keep-alive connection each)
// Prints the figures and writes bench/results/daemon.json. With each figure, the CPU ms per operation of the daemon,
// the sim host and the bench's own client (from /proc and process.cpuUsage): on a shared machine wall times move with
// the load of other work; CPU per operation much less.
// Options: --quick (smaller levels, for a smoke run); --stat-seconds N; --cpu-prof DIR (profiles of sim host and
// daemon, e.g. for `node --import tsx bench/daemon.ts --cpu-prof /tmp/prof`); --out FILE (instead of daemon.json);
// --settle-ms N (pause after each probe shutdown).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startSimHost } from '../test/support/simhost.js';
import { startDaemon } from '../test/support/daemon.js';
import { ApiClient } from '../src/daemon/api-client.js';
import { cpuProbe, type CpuProbe } from './lib/cpu.js';
import { LeanRpcClient } from './lib/lean-client.js';
import { XsClient } from '../src/xenstore/client.js';

const quick = process.argv.includes('--quick');
/** --cpu-prof DIR: the sim host and the daemon run with `node --cpu-prof` and write their profiles into DIR. */
const profIdx = process.argv.indexOf('--cpu-prof');
const profDir = profIdx >= 0 ? resolve(process.argv[profIdx + 1] ?? 'bench/results/prof') : undefined;
const LEVELS = quick ? [1, 20, 100] : [1, 100, 1000];
const SAMPLES = quick ? 30 : 100;
const CONCURRENT = quick ? 50 : 200;
const STAT_CLIENTS = 16;
const WARMUP = quick ? 30 : 150;
/** --settle-ms N: pause after each probe's shutdown, so the sim host's teardown work that goes on after the
 *  shutdown task ends (tens of ms of CPU at 1,000 domains) is not charged to the next start. Default 0. */
const settleIdx = process.argv.indexOf('--settle-ms');
const SETTLE_MS = settleIdx >= 0 ? Number(process.argv[settleIdx + 1]) : 0;
const statIdx = process.argv.indexOf('--stat-seconds');
const STAT_SECONDS = statIdx >= 0 ? Number(process.argv[statIdx + 1]) : quick ? 1 : 3;

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
const round = (x: number) => Math.round(x * 1000) / 1000;

/** CPU ms per operation of each process (daemon, sim host, bench client) over a phase of n operations. */
function perOp(cpu: Record<string, number>, n: number): Record<string, number> {
  return Object.fromEntries(Object.entries(cpu).map(([k, ms]) => [k, round(ms / n)]));
}
const addInto = (acc: Record<string, number>, d: Record<string, number>) => {
  for (const [k, v] of Object.entries(d)) acc[k] = (acc[k] ?? 0) + v;
};
const fmtCpu = (c: Record<string, number>) => Object.entries(c).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ');

const spec = (name: string) => ({ name, type: 'pv', memory: { max_mib: 16 }, vcpus: { max: 1 }, boot: { kernel: '/boot/vmlinuz' } });

async function startOne(api: { call<T>(m: string, p: Record<string, unknown>): Promise<T> }, id: string): Promise<number> {
  const t0 = performance.now();
  const { task } = await api.call<{ task: string }>('VM.start', { id });
  const t = await api.call<{ state: string; error?: unknown }>('TASK.wait', { id: task, timeout_s: 60 });
  const ms = performance.now() - t0;
  if (t.state !== 'completed') throw new Error(`VM.start ${id}: ${t.state} ${JSON.stringify(t.error)}`);
  return ms;
}

/**
 * The sim host's xenstored alone: WRITEs one at a time from a client of its own (no daemon involved), so the cost
 * of the xenstored as domains (and their guests' watches) grow is seen apart from the daemon's.
 */
async function rawXenstoreWrites(socketPath: string, pids: Record<string, number>): Promise<Record<string, unknown>> {
  const xs = await XsClient.connect({ path: socketPath, reconnect: false });
  try {
    for (let i = 0; i < 50; i++) await xs.write('/local/domain/0/xbench/warm', String(i));
    const n = 300;
    const lat: number[] = [];
    const p = cpuProbe(pids);
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      await xs.write(`/local/domain/0/xbench/k${i % 10}`, String(i));
      lat.push(performance.now() - t);
    }
    const cpu = perOp(p.read(), n);
    await xs.rm('/local/domain/0/xbench');
    lat.sort((a, b) => a - b);
    return { writes: n, p50_ms: round(pct(lat, 50)), p99_ms: round(pct(lat, 99)), cpu_ms_per_write: cpu };
  } finally {
    await xs.close();
  }
}

async function inBatches<T>(items: T[], width: number, fn: (x: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

async function main(): Promise<void> {
  // The state dir on tmpfs, like the default /run/xenopsd-ng/state.
  const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  const work = mkdtempSync(join(base, 'xbench-'));
  if (profDir) {
    // The test helpers spawn process.execPath: point it at a wrapper that adds the profiler flags (NODE_OPTIONS
    // may not carry --cpu-prof).
    mkdirSync(profDir, { recursive: true });
    const wrapper = join(work, 'node-prof');
    writeFileSync(wrapper, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} --cpu-prof --cpu-prof-dir=${JSON.stringify(profDir)} "$@"\n`, { mode: 0o755 });
    process.execPath = wrapper;
  }
  const sim = await startSimHost({
    memoryMib: 262144,
    pcpus: 64,
    bootDelayMs: 0,
    args: ['--shutdown-delay-ms', '0', '--destroy-delay-ms', '0', '--log-level', 'warn'],
  });
  process.env.LOG_LEVEL = 'warn';
  const daemon = await startDaemon({ simDir: sim.dir, stateDir: join(work, 'state'), socketPath: join(work, 'api.sock'), args: ['--concurrency', '64'] });
  const api = new ApiClient(daemon.socketPath, { maxSockets: 64 });
  const results: Record<string, unknown> = { loadavg_at_start: loadavg(), settle_ms: SETTLE_MS, quick, node: process.version, date: new Date().toISOString() };
  const pids = { daemon: daemon.pid, sim: sim.pid };
  let probe: CpuProbe;
  try {
    // Warm-up (JIT, connections, caches in both processes), not measured: enough cycles for V8's optimising tier,
    // with both clients, or the first level measures the JIT (its p50 came out above the 100-domain one).
    const warm = (await api.call<{ id: string }>('VM.add', { vm: spec('warm') })).id;
    const warmLean = new LeanRpcClient(daemon.socketPath);
    for (let i = 0; i < WARMUP; i++) {
      await startOne(i % 2 === 0 ? warmLean : api, warm);
      const { task } = await api.call<{ task: string }>('VM.shutdown', { id: warm, mode: 'hard' });
      await api.call('TASK.wait', { id: task, timeout_s: 60 });
    }
    warmLean.close();

    // --- VM.start latency at N running domains
    const running: string[] = [];
    const latency: Record<string, unknown> = {};
    const latencyNodeHttp: Record<string, unknown> = {};
    const rawWrites: Record<string, unknown> = {};
    for (const level of LEVELS) {
      const fill: string[] = [];
      for (let i = running.length; i < level - 0; i++) fill.push((await api.call<{ id: string }>('VM.add', { vm: spec(`bg${i}`) })).id);
      await inBatches(fill, 32, (id) => startOne(api, id));
      running.push(...fill);
      const probeVm = (await api.call<{ id: string }>('VM.add', { vm: spec(`probe${level}`) })).id;
      // Alternate samples with a lean client and a node:http one (same conditions); CPU of the starts only (the
      // shutdowns between them are not counted), summed per start.
      const lean = new LeanRpcClient(daemon.socketPath);
      const by = { lean: { samples: [] as number[], cpu: {} as Record<string, number> }, node_http: { samples: [] as number[], cpu: {} as Record<string, number> } };
      // Also CPU over the whole loop (one read at each end: exact to 10 ms in total, but starts and shutdowns together).
      const loopProbe = cpuProbe(pids);
      for (let i = 0; i < 2 * SAMPLES; i++) {
        const kind = i % 2 === 0 ? 'lean' : 'node_http';
        probe = cpuProbe(pids);
        by[kind].samples.push(await startOne(kind === 'lean' ? lean : api, probeVm));
        addInto(by[kind].cpu, probe.read());
        const { task } = await api.call<{ task: string }>('VM.shutdown', { id: probeVm, mode: 'hard' });
        await api.call('TASK.wait', { id: task, timeout_s: 60 });
        if (SETTLE_MS > 0) await new Promise((r) => setTimeout(r, SETTLE_MS));
      }
      const cycleCpu = perOp(loopProbe.read(), 2 * SAMPLES);
      lean.close();
      const figures = (kind: 'lean' | 'node_http') => {
        const samples = by[kind].samples.sort((a, b) => a - b);
        return {
          samples: SAMPLES,
          p50_ms: round(pct(samples, 50)),
          p99_ms: round(pct(samples, 99)),
          max_ms: round(samples[samples.length - 1]!),
          cpu_ms_per_start: perOp(by[kind].cpu, SAMPLES),
        };
      };
      latency[String(level)] = { ...figures('lean'), cpu_ms_per_start_and_hard_shutdown: cycleCpu };
      latencyNodeHttp[String(level)] = figures('node_http');
      rawWrites[String(level)] = await rawXenstoreWrites(sim.xenstoredPath, { sim: sim.pid });
      for (const [kind, f] of [['lean', latency[String(level)]], ['node:http', latencyNodeHttp[String(level)]]] as const) {
        const x = f as ReturnType<typeof figures>;
        console.log(`VM.start with ${level} domains running (${kind} client): p50 ${x.p50_ms.toFixed(2)} ms, p99 ${x.p99_ms.toFixed(2)} ms (${SAMPLES} samples); CPU ms/start: ${fmtCpu(x.cpu_ms_per_start)}`);
      }
      const rw = rawWrites[String(level)] as { p50_ms: number; cpu_ms_per_write: Record<string, number> };
      console.log(`  CPU ms per start + hard shutdown (whole loop, ${2 * SAMPLES} cycles): ${fmtCpu(cycleCpu)}`);
      console.log(`  sim xenstored, one WRITE at a time with ${level} domains: p50 ${rw.p50_ms.toFixed(3)} ms; CPU ms/write: ${fmtCpu(rw.cpu_ms_per_write)}`);
    }
    const ratio = (l: Record<string, unknown>) =>
      round((l[String(LEVELS[LEVELS.length - 1])] as { p50_ms: number }).p50_ms / (l[String(LEVELS[0])] as { p50_ms: number }).p50_ms);
    results.sim_xenstored_raw_write = rawWrites;
    results.start_latency_node_http = { ...latencyNodeHttp, p50_ratio_last_over_first: ratio(latencyNodeHttp) };
    results.start_latency = { ...latency, p50_ratio_last_over_first: ratio(latency) };
    console.log(`p50 ratio ${LEVELS[LEVELS.length - 1]} / ${LEVELS[0]}: ${ratio(latency).toFixed(2)} (lean client), ${ratio(latencyNodeHttp).toFixed(2)} (node:http)`);

    // --- VM.stat throughput with 16 clients (while the domains above run): once with node:http clients (the
    // figure reported before), once with lean clients, whose own CPU per call is a fraction of the daemon's, so on a
    // small machine the figure is the daemon's and not the client's.
    const statPhase = async (kind: 'node-http' | 'lean') => {
      const clients: { call(m: string, p: Record<string, unknown>): Promise<unknown>; close(): void }[] = Array.from(
        { length: STAT_CLIENTS },
        () => (kind === 'lean' ? new LeanRpcClient(daemon.socketPath) : new ApiClient(daemon.socketPath, { maxSockets: 1 })),
      );
      // Connections first, so the phase measures calls, not connects.
      await Promise.all(clients.map((c, i) => c.call('VM.stat', { id: running[i % running.length]! })));
      const statLat: number[] = [];
      let calls = 0;
      probe = cpuProbe(pids);
      const end = performance.now() + STAT_SECONDS * 1000;
      const t0 = performance.now();
      await Promise.all(
        clients.map(async (c, i) => {
          const id = running[i % running.length]!;
          while (performance.now() < end) {
            const s = performance.now();
            await c.call('VM.stat', { id });
            statLat.push(performance.now() - s);
            calls++;
          }
        }),
      );
      const secs = (performance.now() - t0) / 1000;
      const statCpu = perOp(probe.read(), calls);
      clients.forEach((c) => c.close());
      statLat.sort((a, b) => a - b);
      console.log(
        `VM.stat, ${STAT_CLIENTS} ${kind} clients: ${Math.round(calls / secs)} calls/s, p50 ${pct(statLat, 50).toFixed(2)} ms, p99 ${pct(statLat, 99).toFixed(2)} ms; CPU ms/call: ${fmtCpu(statCpu)}`,
      );
      return {
        client: kind,
        clients: STAT_CLIENTS,
        seconds: round(secs),
        calls,
        calls_per_s: Math.round(calls / secs),
        p50_ms: round(pct(statLat, 50)),
        p99_ms: round(pct(statLat, 99)),
        cpu_ms_per_call: statCpu,
      };
    };
    results.stat_node_http = await statPhase('node-http');
    results.stat = await statPhase('lean');

    // --- tear the background down, then 200 starts at once
    await inBatches(running, 32, async (id) => {
      const { task } = await api.call<{ task: string }>('VM.shutdown', { id, mode: 'hard' });
      await api.call('TASK.wait', { id: task, timeout_s: 60 });
    });
    const many: string[] = [];
    for (let i = 0; i < CONCURRENT; i++) many.push((await api.call<{ id: string }>('VM.add', { vm: spec(`burst${i}`) })).id);
    probe = cpuProbe(pids);
    const b0 = performance.now();
    const tasks = await Promise.all(many.map((id) => api.call<{ task: string }>('VM.start', { id }).then((r) => r.task)));
    const finished = await Promise.all(tasks.map((id) => api.call<{ state: string }>('TASK.wait', { id, timeout_s: 120 })));
    const burstMs = performance.now() - b0;
    const burstCpu = perOp(probe.read(), CONCURRENT);
    const failed = finished.filter((t) => t.state !== 'completed').length;
    results.concurrent_starts = { count: CONCURRENT, wall_ms: Math.round(burstMs), failed, cpu_ms_per_start: burstCpu };
    console.log(`${CONCURRENT} concurrent VM.start: ${Math.round(burstMs)} ms (${failed} failed); CPU ms/start: ${fmtCpu(burstCpu)}`);
  } finally {
    api.close();
    await daemon.stop();
    await sim.stop();
    rmSync(work, { recursive: true, force: true });
  }
  const out = resolve(import.meta.dirname, 'results');
  mkdirSync(out, { recursive: true });
  const outIdx = process.argv.indexOf('--out');
  const file = outIdx >= 0 ? resolve(process.argv[outIdx + 1]!) : join(out, 'daemon.json');
  writeFileSync(file, JSON.stringify(results, null, 2) + '\n');
  console.log(`written ${file}`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
