// npm run fuzz:xenstored -- [--seed N] [--seconds S] [--connections C]
// A longer seeded fuzz run of the sim xenstored (bounded in time); exits non-zero on any problem.
import { parseArgs } from 'node:util';
import { runFuzz } from './fuzz-core.js';

const { values } = parseArgs({
  options: {
    seed: { type: 'string', default: '1' },
    seconds: { type: 'string', default: '60' },
    connections: { type: 'string', default: '6' },
  },
});
const seconds = Number(values.seconds);
const seed0 = Number(values.seed);
if (!(seconds > 0) || !Number.isInteger(seed0)) {
  console.error('fuzz-run: --seconds must be > 0 and --seed an integer');
  process.exit(2);
}
const end = Date.now() + seconds * 1000;
let failed = false;
let seed = seed0;
while (Date.now() < end && !failed) {
  const slice = Math.min(10_000, end - Date.now());
  const r = await runFuzz({ seed, durationMs: slice, connections: Number(values.connections) });
  console.log(
    `seed ${seed}: ${r.bursts} bursts, ${r.frames} frames, ${r.replies} replies, ${r.reconnects} reconnects, ` +
      `${r.witnessChecks} witness checks, errors ${JSON.stringify(r.errors)}`,
  );
  if (r.problems.length) {
    failed = true;
    console.error(`seed ${seed}: ${r.problems.length} problems:\n  ${r.problems.slice(0, 20).join('\n  ')}`);
  }
  seed++;
}
process.exit(failed ? 1 : 0);
