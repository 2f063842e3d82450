// Daemon benchmark on a sim host (backend delays 0), host and daemon in separate processes, as in production:
//  - VM.start latency (call → task completed) p50/p99 with 1, 100 and 1,000 domains running
//  - 200 VM.start submitted at once: wall time until all completed
//  - VM.stat calls/s and p99 latency with 16 concurrent clients (one keep-alive connection each)
// Prints the figures and writes bench/results/daemon.json. Options: --quick (smaller levels, for a smoke run).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startSimHost } from '../test/support/simhost.js';
import { startDaemon } from '../test/support/daemon.js';
import { ApiClient } from '../src/daemon/api-client.js';
import { cpuProbe, type CpuProbe } from './lib/cpu.js';

const quick = process.argv.includes('--quick');
/** --cpu-prof DIR: the sim host and the daemon run with `node --cpu-prof` and write their profiles into DIR. */
const profIdx = process.argv.indexOf('--cpu-prof');
const profDir = profIdx >= 0 ? resolve(process.argv[profIdx + 1] ?? 'bench/results/prof') : undefined;
const LEVELS = quick ? [1, 20, 100] : [1, 100, 1000];
const SAMPLES = quick ? 30 : 100;
const CONCURRENT = quick ? 50 : 200;
const STAT_CLIENTS = 16;
const STAT_SECONDS = quick ? 1 : 3;

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

async function startOne(api: ApiClient, id: string): Promise<number> {
  const t0 = performance.now();
  const { task } = await api.call<{ task: string }>('VM.start', { id });
  const t = await api.call<{ state: string; error?: unknown }>('TASK.wait', { id: task, timeout_s: 60 });
  const ms = performance.now() - t0;
  if (t.state !== 'completed') throw new Error(`VM.start ${id}: ${t.state} ${JSON.stringify(t.error)}`);
  return ms;
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
  const results: Record<string, unknown> = { loadavg_at_start: loadavg(), quick, node: process.version, date: new Date().toISOString() };
  const pids = { daemon: daemon.pid, sim: sim.pid };
  let probe: CpuProbe;
  try {
    // Warm-up (JIT, connections, caches in both processes), not measured.
    const warm = (await api.call<{ id: string }>('VM.add', { vm: spec('warm') })).id;
    for (let i = 0; i < 30; i++) {
      await startOne(api, warm);
      const { task } = await api.call<{ task: string }>('VM.shutdown', { id: warm, mode: 'hard' });
      await api.call('TASK.wait', { id: task, timeout_s: 60 });
    }

    // --- VM.start latency at N running domains
    const running: string[] = [];
    const latency: Record<string, unknown> = {};
    for (const level of LEVELS) {
      const fill: string[] = [];
      for (let i = running.length; i < level - 0; i++) fill.push((await api.call<{ id: string }>('VM.add', { vm: spec(`bg${i}`) })).id);
      await inBatches(fill, 32, (id) => startOne(api, id));
      running.push(...fill);
      const samples: number[] = [];
      const probeVm = (await api.call<{ id: string }>('VM.add', { vm: spec(`probe${level}`) })).id;
      // CPU of the starts only (the shutdowns between them are not counted): summed per start.
      const startCpu: Record<string, number> = {};
      for (let i = 0; i < SAMPLES; i++) {
        probe = cpuProbe(pids);
        samples.push(await startOne(api, probeVm));
        addInto(startCpu, probe.read());
        const { task } = await api.call<{ task: string }>('VM.shutdown', { id: probeVm, mode: 'hard' });
        await api.call('TASK.wait', { id: task, timeout_s: 60 });
      }
      samples.sort((a, b) => a - b);
      const cpu = perOp(startCpu, SAMPLES);
      latency[String(level)] = {
        samples: SAMPLES,
        p50_ms: round(pct(samples, 50)),
        p99_ms: round(pct(samples, 99)),
        max_ms: round(samples[samples.length - 1]!),
        cpu_ms_per_start: cpu,
      };
      console.log(`VM.start with ${level} domains running: p50 ${pct(samples, 50).toFixed(2)} ms, p99 ${pct(samples, 99).toFixed(2)} ms (${SAMPLES} samples); CPU ms/start: ${fmtCpu(cpu)}`);
    }
    const first = latency[String(LEVELS[0])] as { p50_ms: number };
    const last = latency[String(LEVELS[LEVELS.length - 1])] as { p50_ms: number };
    results.start_latency = { ...latency, p50_ratio_last_over_first: round(last.p50_ms / first.p50_ms) };
    console.log(`p50 ratio ${LEVELS[LEVELS.length - 1]} / ${LEVELS[0]}: ${(last.p50_ms / first.p50_ms).toFixed(2)}`);

    // --- VM.stat throughput with 16 clients (while the domains above run)
    const clients = Array.from({ length: STAT_CLIENTS }, () => new ApiClient(daemon.socketPath, { maxSockets: 1 }));
    const statLat: number[] = [];
    let calls = 0;
    // Connections first, so the phase measures calls, not connects.
    await Promise.all(clients.map((c, i) => c.call('VM.stat', { id: running[i % running.length]! })));
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
    results.stat = {
      clients: STAT_CLIENTS,
      seconds: round(secs),
      calls,
      calls_per_s: Math.round(calls / secs),
      p50_ms: round(pct(statLat, 50)),
      p99_ms: round(pct(statLat, 99)),
      cpu_ms_per_call: statCpu,
    };
    console.log(
      `VM.stat, ${STAT_CLIENTS} clients: ${Math.round(calls / secs)} calls/s, p50 ${pct(statLat, 50).toFixed(2)} ms, p99 ${pct(statLat, 99).toFixed(2)} ms; CPU ms/call: ${fmtCpu(statCpu)}`,
    );

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
  writeFileSync(join(out, 'daemon.json'), JSON.stringify(results, null, 2) + '\n');
  console.log(`written ${join(out, 'daemon.json')}`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
