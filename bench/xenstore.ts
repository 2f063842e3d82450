// xenstore throughput and latency: read and write, one request at a time and 64 in flight, against
// the sim xenstored (standalone process) and Debian's C xenstored (under the test LD_PRELOAD shim),
// with the project's native client (src/xenstore/client.ts), in the same run. Prints a table with
// sim/C ratios and writes bench/results/xenstore.json.
// Usage: npm run bench:xenstore [-- --seconds 1 --rounds 4 --inflight 64]
// Each case runs in `rounds` slices alternating between the servers; ops/s is the median slice, so a
// burst of load from elsewhere on the machine spoils one slice, not the figure.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { XsClient } from '../src/xenstore/client.js';
import { cXenstoredAvailable } from '../test/support/cxenstored/index.js';
import { startCStandalone, startSimStandalone, type BenchServer } from './lib/xenstored-servers.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '1' },
    rounds: { type: 'string', default: '4' },
    inflight: { type: 'string', default: '64' },
  },
});
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const inflight = Number(values.inflight);
if (!(seconds > 0) || !Number.isInteger(rounds) || rounds < 1 || !Number.isInteger(inflight) || inflight < 2) {
  console.error('usage: bench:xenstore [-- --seconds S>0 --rounds N>=1 --inflight N>=2]');
  process.exit(2);
}
const unavailable = cXenstoredAvailable();
if (unavailable) {
  console.error(`bench:xenstore needs the C xenstored: ${unavailable}`);
  process.exit(2);
}

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
type Op = 'read' | 'write';
type Mode = 'sequential' | `${number} in flight`;
const MODES: Mode[] = ['sequential', `${inflight} in flight`];
const VALUE = 'v'.repeat(16);

interface Sample {
  ops: number;
  elapsedMs: number;
  latenciesMs: number[];
  serverCpuMs: number;
}

/** utime + stime of a process, in ms (from /proc; clock ticks are 100 Hz on Linux). */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

async function measure(server: BenchServer, client: XsClient, op: Op, mode: Mode, durationMs: number): Promise<Sample> {
  const workers = mode === 'sequential' ? 1 : inflight;
  const latenciesMs: number[] = [];
  const cpu0 = cpuMs(server.pid);
  const t0 = performance.now();
  const deadline = t0 + durationMs;
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      const path = op === 'read' ? '/bench/r' : `/bench/w/${w}`;
      while (performance.now() < deadline) {
        const start = performance.now();
        if (op === 'read') await client.read(path);
        else await client.write(path, VALUE);
        latenciesMs.push(performance.now() - start);
      }
    }),
  );
  const elapsedMs = performance.now() - t0;
  return { ops: latenciesMs.length, elapsedMs, latenciesMs, serverCpuMs: cpuMs(server.pid) - cpu0 };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;
}

interface Row {
  server: 'sim' | 'C';
  op: Op;
  mode: Mode;
  ops: number;
  opsPerSec: number;
  meanUs: number;
  p50us: number;
  p99us: number;
  serverCpuUsPerOp: number;
}

function summarise(server: 'sim' | 'C', op: Op, mode: Mode, samples: Sample[]): Row {
  const ops = samples.reduce((s, x) => s + x.ops, 0);
  const rates = samples.map((x) => (x.ops / x.elapsedMs) * 1000).sort((a, b) => a - b);
  const mid = rates.length >> 1;
  const medianRate = rates.length % 2 ? rates[mid]! : (rates[mid - 1]! + rates[mid]!) / 2;
  const cpu = samples.reduce((s, x) => s + x.serverCpuMs, 0);
  const lat = samples.flatMap((x) => x.latenciesMs).sort((a, b) => a - b);
  return {
    server,
    op,
    mode,
    ops,
    opsPerSec: Math.round(medianRate),
    meanUs: Math.round((lat.reduce((a, b) => a + b, 0) / lat.length) * 1000),
    p50us: Math.round(percentile(lat, 50) * 1000),
    p99us: Math.round(percentile(lat, 99) * 1000),
    serverCpuUsPerOp: Math.round(((cpu * 1000) / ops) * 10) / 10,
  };
}

const dir = mkdtempSync(join(tmpdir(), 'bench-xenstore-'));
const servers: BenchServer[] = [];
const clients = new Map<string, XsClient>();
const rows: Row[] = [];
try {
  servers.push(await startSimStandalone(join(dir, 'sim'), repo));
  servers.push(await startCStandalone(join(dir, 'c')));
  for (const s of servers) {
    const client = await XsClient.connect({ path: s.socketPath, reconnect: false });
    clients.set(s.name, client);
    await client.write('/bench/r', 'x');
    for (let w = 0; w < inflight; w++) await client.write(`/bench/w/${w}`, VALUE);
  }
  for (const op of ['read', 'write'] as Op[]) {
    for (const mode of MODES) {
      const samples = new Map<string, Sample[]>(servers.map((s) => [s.name, []]));
      // Warm-up (JIT of client and sim), then rounds alternating which server goes first.
      for (const s of servers) await measure(s, clients.get(s.name)!, op, mode, 500);
      for (let r = 0; r < rounds; r++) {
        const order = r % 2 === 0 ? servers : [...servers].reverse();
        for (const s of order) samples.get(s.name)!.push(await measure(s, clients.get(s.name)!, op, mode, seconds * 1000));
      }
      for (const s of servers) rows.push(summarise(s.name, op, mode, samples.get(s.name)!));
    }
  }
} finally {
  for (const c of clients.values()) await c.close();
  for (const s of servers) await s.stop();
  rmSync(dir, { recursive: true, force: true });
}

const ratios = ['read', 'write'].flatMap((op) =>
  MODES.map((mode) => {
    const sim = rows.find((r) => r.server === 'sim' && r.op === op && r.mode === mode)!;
    const c = rows.find((r) => r.server === 'C' && r.op === op && r.mode === mode)!;
    return {
      op,
      mode,
      opsPerSecSimOverC: Math.round((sim.opsPerSec / c.opsPerSec) * 100) / 100,
      p50SimOverC: Math.round((sim.p50us / c.p50us) * 100) / 100,
      p99SimOverC: Math.round((sim.p99us / c.p99us) * 100) / 100,
    };
  }),
);

const pad = (s: string | number, n: number) => String(s).padStart(n);
console.log(`xenstore bench: native client (src/xenstore/client.ts), ${rounds} x ${seconds} s per case, ${cpus().length} CPUs`);
console.log(`${'op'.padEnd(6)}${'mode'.padEnd(14)}${'server'.padEnd(7)}${pad('ops/s', 9)}${pad('mean µs', 9)}${pad('p50 µs', 9)}${pad('p99 µs', 9)}${pad('srv CPU µs/op', 15)}`);
for (const r of rows) {
  console.log(`${r.op.padEnd(6)}${r.mode.padEnd(14)}${r.server.padEnd(7)}${pad(r.opsPerSec, 9)}${pad(r.meanUs, 9)}${pad(r.p50us, 9)}${pad(r.p99us, 9)}${pad(r.serverCpuUsPerOp, 15)}`);
}
console.log('\nsim/C ratios (ops/s: > 1 means the sim is faster; latency: < 1 means the sim is faster)');
for (const r of ratios) {
  console.log(`${r.op.padEnd(6)}${r.mode.padEnd(14)} ops/s ${pad(r.opsPerSecSimOverC.toFixed(2), 5)}x   p50 ${pad(r.p50SimOverC.toFixed(2), 5)}x   p99 ${pad(r.p99SimOverC.toFixed(2), 5)}x`);
}

const resultsDir = join(repo, 'bench', 'results');
mkdirSync(resultsDir, { recursive: true });
writeFileSync(
  join(resultsDir, 'xenstore.json'),
  JSON.stringify(
    { date: new Date().toISOString(), node: process.version, cpus: cpus().length, client: 'native (src/xenstore/client.ts)', seconds, rounds, inflight, rows, ratios },
    null,
    2,
  ) + '\n',
);
console.log(`\nwritten to ${join('bench', 'results', 'xenstore.json')}`);
