// Differential test: the same seeded request sequences against Debian's C xenstored (under the
// LD_PRELOAD shim) and the sim xenstored; every reply and every watch event must match.
// `npm run diff:xenstored` runs 10,000 sequences; this file runs a few hundred.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cXenstoredAvailable } from '../support/cxenstored/index.js';
import { RawConn } from '../support/cxenstored/raw-conn.js';
import { MsgType } from '../../src/xenstore/wire.js';
import { DiffPair, compareTranscripts, formatDifference, removeSteps } from './diff.js';
import { KNOWN_DIFFERENCES, generate } from './generator.js';
import type { Transcript } from './runner.js';
import { simXenstoredAvailable, startC, startSim, type ServerUnderTest } from './servers.js';

const SEQUENCES = Number(process.env.XS_DIFF_COUNT ?? 200);
const FIRST_SEED = Number(process.env.XS_DIFF_SEED ?? 1);
const skip = cXenstoredAvailable() ?? simXenstoredAvailable();

let dir: string;
let servers: ServerUnderTest[] = [];

async function freshPair(): Promise<[ServerUnderTest, ServerUnderTest]> {
  const c = await startC(join(dir, `c${servers.length}`));
  servers.push(c);
  const sim = await startSim(join(dir, `sim${servers.length}`));
  servers.push(sim);
  return [c, sim];
}

before(() => {
  if (!cXenstoredAvailable()) dir = mkdtempSync(join(tmpdir(), 'xenstored-diff-test-'));
});

after(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('fresh servers hold the same tree and allocate the same transaction ids', { skip }, async () => {
  const probes: [MsgType, string][] = [
    [MsgType.DIRECTORY, '/\0'],
    [MsgType.DIRECTORY, '/tool\0'],
    [MsgType.READ, '/tool/xenstored\0'],
    [MsgType.GET_PERMS, '/\0'],
    [MsgType.GET_PERMS, '/tool/xenstored\0'],
    [MsgType.DIRECTORY, '/local\0'],
    [MsgType.GET_PERMS, '@introduceDomain\0'],
    [MsgType.TRANSACTION_START, '\0'],
    [MsgType.TRANSACTION_START, '\0'],
  ];
  const answers = await Promise.all(
    (await freshPair()).map(async (server) => {
      const conn = await RawConn.connect(server.socketPath);
      try {
        const out: string[] = [];
        for (const [type, payload] of probes) {
          const r = await conn.request(type, Buffer.from(payload));
          out.push(`${MsgType[r.type]} ${JSON.stringify(r.payload.toString())}`);
        }
        return out;
      } finally {
        await conn.close();
      }
    }),
  );
  assert.deepEqual(answers[1], answers[0], 'sim (actual) vs C xenstored (expected)');
});

test(`${SEQUENCES} seeded sequences: every reply and watch event of the sim matches the C xenstored`, { skip, timeout: 180_000 }, async (t) => {
  let generation = 0;
  const pair = new DiffPair(
    () => startC(join(dir, `seq-c${++generation}`)),
    () => startSim(join(dir, `seq-sim${generation}`)),
    // Each connection's events in arrival order: the C xenstored's order is deterministic.
    { strictEventOrder: true },
  );
  t.after(() => pair.stop());
  if (Object.keys(KNOWN_DIFFERENCES).length) {
    t.diagnostic(`left out as known differences: ${Object.entries(KNOWN_DIFFERENCES).map(([k, v]) => `${k} (${v})`).join('; ')}`);
  }
  for (let seed = FIRST_SEED; seed < FIRST_SEED + SEQUENCES; seed++) {
    const seq = generate(seed);
    const { diff } = await pair.check(seq);
    if (diff) {
      const small = await pair.shrink(seq, 150);
      assert.fail(`sim differs from the C xenstored (seed ${seed}; reproduce: npm run diff:xenstored -- --seed ${seed} --count 1)\n${formatDifference(small.seq, small.diff)}`);
    }
  }
});

test('a server that differs is caught and shrunk to a short sequence', { skip: cXenstoredAvailable() }, async () => {
  // The candidate is the C xenstored itself with paths limited to 24 characters (-M 24).
  let generation = 0;
  const pair = new DiffPair(
    () => startC(join(dir, `mut-c${++generation}`)),
    () => startC(join(dir, `mut-m${generation}`), { args: ['-M', '24'] }),
  );
  try {
    let found;
    for (let seed = 1; seed <= 50 && !found; seed++) {
      const seq = generate(seed);
      if ((await pair.check(seq)).diff) found = await pair.shrink(seq, 100);
    }
    assert.ok(found, 'no difference found in 50 sequences');
    assert.ok(found.seq.steps.length <= 3, `not shrunk:\n${formatDifference(found.seq, found.diff)}`);
    // Either a long path refused (EINVAL) or the quota listing showing path-max 24.
    assert.match(found.diff.candidate + found.diff.reference, /EINVAL|path-max *: *24/);
  } finally {
    await pair.stop();
  }
});

test('the comparison catches a differing reply, differing events, and ignores duplicate coalescing', () => {
  const base: Transcript = {
    setup: ['MKDIR "OK\\0"'],
    steps: [{ replies: ['READ "v"'], events: [['"/t\\0tok\\0" req=0 tx=0'], []], eventsInOrder: [['"/t\\0tok\\0" req=0 tx=0'], []] }],
  };
  const copy = (): Transcript => structuredClone(base);
  assert.equal(compareTranscripts(base, copy()), undefined);

  const reply = copy();
  reply.steps[0]!.replies[0] = 'ERROR "ENOENT\\0"';
  assert.deepEqual(compareTranscripts(base, reply)?.kind, 'reply');

  const events = copy();
  events.steps[0]!.events[1] = ['"/t\\0tok\\0" req=0 tx=0'];
  assert.equal(compareTranscripts(base, events)?.detail, 'watch events on conn1');

  const order = copy();
  order.steps[0]!.eventsInOrder[0] = ['b', 'a'];
  order.steps[0]!.events[0] = ['a', 'b'];
  const orderRef = copy();
  orderRef.steps[0]!.eventsInOrder[0] = ['a', 'b'];
  orderRef.steps[0]!.events[0] = ['a', 'b'];
  assert.equal(compareTranscripts(orderRef, order), undefined);
  assert.equal(compareTranscripts(orderRef, order, { strictEventOrder: true })?.kind, 'events');
});

test('removing steps renumbers transaction references and unbinds removed ones', () => {
  const seq = generate(7);
  seq.steps = [
    { conn: 0, category: 'tx', frames: [{ type: MsgType.TRANSACTION_START, payload: '\0', tx: { kind: 'none' } }] },
    { conn: 1, category: 'tx', frames: [{ type: MsgType.TRANSACTION_START, payload: '\0', tx: { kind: 'none' } }] },
    { conn: 0, category: 'tx', frames: [{ type: MsgType.WRITE, payload: '/t/a\0x', tx: { kind: 'started', step: 0 } }] },
    { conn: 1, category: 'tx', frames: [{ type: MsgType.WRITE, payload: '/t/a\0y', tx: { kind: 'started', step: 1 } }] },
  ];
  const cut = removeSteps(seq, 0, 1);
  assert.equal(cut.steps.length, 3);
  assert.deepEqual(cut.steps[1]!.frames[0]!.tx, { kind: 'literal', id: 0xfffffffe });
  assert.deepEqual(cut.steps[2]!.frames[0]!.tx, { kind: 'started', step: 0 });
});

test('generation is deterministic per seed and leaves out the known differences', () => {
  assert.deepEqual(generate(42), generate(42));
  assert.notDeepEqual(generate(42), generate(43));
  for (let seed = 1; seed <= 200; seed++) {
    for (const step of generate(seed).steps) assert.ok(!(step.category in KNOWN_DIFFERENCES), `seed ${seed} generated ${step.category}`);
  }
});
