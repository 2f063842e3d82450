// npm run diff:xenstored -- [--seed N] [--count N] [--all] [--only cat,cat] [--exclude cat,cat]
//                           [--any-order] [--keep-going] [--steps MIN-MAX] [--self]
// Runs generated sequences against Debian's C xenstored and the sim xenstored and prints the first
// difference with a minimal sequence that shows it (--keep-going: one per distinct kind of difference).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cXenstoredAvailable } from '../support/cxenstored/index.js';
import { DiffPair, formatDifference } from './diff.js';
import { CATEGORIES, KNOWN_DIFFERENCES, generate } from './generator.js';
import { simXenstoredAvailable, startC, startSim } from './servers.js';
import { formatSequence, typeName } from './ops.js';

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      seed: { type: 'string', default: '1' },
      count: { type: 'string', default: '10000' },
      all: { type: 'boolean', default: false },
      only: { type: 'string' },
      exclude: { type: 'string' },
      // Compare each step's events per connection as a set instead of in arrival order.
      'any-order': { type: 'boolean', default: false },
      'keep-going': { type: 'boolean', default: false },
      steps: { type: 'string', default: '8-40' },
      // Compares the C xenstored with a second C xenstored: checks that the reference is deterministic.
      self: { type: 'boolean', default: false },
    },
  });
  const seed0 = Number(values.seed);
  const count = Number(values.count);
  const [minSteps, maxSteps] = values.steps!.split('-').map(Number);
  if (!Number.isInteger(seed0) || !Number.isInteger(count) || count < 1 || !minSteps || !maxSteps || minSteps > maxSteps) {
    console.error('usage: diff:xenstored [--seed N] [--count N] [--steps MIN-MAX] [--all] [--only a,b] [--exclude a,b] [--any-order] [--keep-going] [--self]');
    return 2;
  }
  const listOf = (s: string | undefined) => (s ? s.split(',').filter(Boolean) : []);
  for (const name of [...listOf(values.only), ...listOf(values.exclude)]) {
    if (!(name in CATEGORIES)) {
      console.error(`unknown category ${name}; known: ${Object.keys(CATEGORIES).join(', ')}`);
      return 2;
    }
  }
  const exclude = new Set(values.all ? [] : Object.keys(KNOWN_DIFFERENCES));
  for (const name of listOf(values.exclude)) exclude.add(name);
  if (values.only) for (const name of Object.keys(CATEGORIES)) if (!listOf(values.only).includes(name)) exclude.add(name);

  const missing = cXenstoredAvailable() ?? (values.self ? undefined : simXenstoredAvailable());
  if (missing) {
    console.error(`cannot run: ${missing}`);
    return 2;
  }
  if (!values.all && Object.keys(KNOWN_DIFFERENCES).length) {
    console.log(`leaving out known differences (--all to include): ${Object.keys(KNOWN_DIFFERENCES).join(', ')}`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'xenstored-diff-'));
  // Interrupted (Ctrl-C, a timeout): the C daemons die with this process (the shim sets their
  // parent-death signal); the run directory goes too.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      rmSync(dir, { recursive: true, force: true });
      process.exit(130);
    });
  }
  let generation = 0;
  const pair = new DiffPair(
    () => startC(join(dir, `c${++generation}`)),
    () => (values.self ? startC(join(dir, `c2-${generation}`)) : startSim(join(dir, `sim${generation}`))),
    { strictEventOrder: !values['any-order'] },
  );
  const seen = new Set<string>();
  let failures = 0;
  const started = Date.now();
  try {
    for (let n = 0; n < count; n++) {
      const seq = generate(seed0 + n, { exclude, minSteps, maxSteps });
      let diff;
      try {
        ({ diff } = await pair.check(seq));
      } catch (err) {
        // A server died or stopped answering: the state it had came from this and earlier seeds.
        console.log(`\n=== ${(err as Error).message} (state since the last server start, seeds up to ${seq.seed})`);
        console.log(formatSequence(seq));
        failures++;
        break;
      }
      if (diff) {
        const step = seq.steps[diff.step];
        const signature = step ? `${step.category}/${typeName(step.frames[0]!.type)}/${diff.kind}` : 'setup';
        if (!seen.has(signature)) {
          seen.add(signature);
          failures++;
          const small = await pair.shrink(seq);
          console.log(`\n=== difference (${signature}), seed ${seq.seed}; minimal sequence:`);
          console.log(formatDifference(small.seq, small.diff));
        }
        if (!values['keep-going']) break;
      }
      if ((n + 1) % 500 === 0) console.log(`${n + 1} sequences, ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }
  } finally {
    await pair.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  if (failures) {
    console.log(`\n${failures} distinct difference(s) found (seeds from ${seed0}, ${secs} s)`);
    return 1;
  }
  console.log(`no difference in ${count} sequences (seeds ${seed0}..${seed0 + count - 1}, ${secs} s)`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(2);
  },
);
