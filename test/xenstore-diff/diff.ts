// Compares the C xenstored and the sim xenstored on generated sequences, and shrinks a sequence that
// shows a difference to a minimal one that still shows it.
import { resetServer, runSequence, type Transcript } from './runner.js';
import { formatSequence, formatStep, type Sequence, type Step, type TxRef } from './ops.js';
import type { ServerUnderTest } from './servers.js';
import { MsgType } from '../../src/xenstore/wire.js';

export interface Difference {
  /** Index of the step, or -1 for the set-up every sequence starts with. */
  step: number;
  kind: 'reply' | 'events';
  detail: string;
  reference: string;
  candidate: string;
}

export interface CompareOptions {
  /** Compare each connection's events in arrival order instead of as a set per step. */
  strictEventOrder?: boolean;
}

export function compareTranscripts(ref: Transcript, cand: Transcript, opts: CompareOptions = {}): Difference | undefined {
  for (let i = 0; i < Math.max(ref.setup.length, cand.setup.length); i++) {
    if (ref.setup[i] !== cand.setup[i]) {
      return { step: -1, kind: 'reply', detail: `set-up request ${i}`, reference: String(ref.setup[i]), candidate: String(cand.setup[i]) };
    }
  }
  for (let i = 0; i < ref.steps.length; i++) {
    const r = ref.steps[i]!;
    const c = cand.steps[i]!;
    for (let f = 0; f < r.replies.length; f++) {
      if (r.replies[f] !== c.replies[f]) {
        return { step: i, kind: 'reply', detail: r.replies.length > 1 ? `reply to frame ${f}` : 'reply', reference: r.replies[f]!, candidate: String(c.replies[f]) };
      }
    }
    const rEvents = opts.strictEventOrder ? r.eventsInOrder : r.events;
    const cEvents = opts.strictEventOrder ? c.eventsInOrder : c.events;
    for (let conn = 0; conn < rEvents.length; conn++) {
      const a = JSON.stringify(rEvents[conn]);
      const b = JSON.stringify(cEvents[conn]);
      if (a !== b) return { step: i, kind: 'events', detail: `watch events on conn${conn}`, reference: a, candidate: b };
    }
  }
  return undefined;
}

export type ServerFactory = () => Promise<ServerUnderTest>;

/**
 * The C xenstored keeps half-released domains around after SET_TARGET (see SequenceBuilder.targets
 * in generator.ts); no reset request sequence undoes that safely, so such sequences get new servers.
 */
function needsFreshServers(seq: Sequence): boolean {
  return seq.steps.some((s) => s.frames.some((f) => f.type === MsgType.SET_TARGET));
}

export class DiffPair {
  private servers: [ServerUnderTest, ServerUnderTest] | undefined;

  constructor(
    private readonly startReference: ServerFactory,
    private readonly startCandidate: ServerFactory,
    readonly opts: CompareOptions = {},
  ) {}

  private async current(): Promise<[ServerUnderTest, ServerUnderTest]> {
    this.servers ??= await Promise.all([this.startReference(), this.startCandidate()]);
    return this.servers;
  }

  async stop(): Promise<void> {
    const servers = this.servers;
    this.servers = undefined;
    if (servers) await Promise.all(servers.map((s) => s.stop()));
  }

  /** Runs seq on both servers (each from the common start state) and compares. */
  async check(seq: Sequence): Promise<{ diff?: Difference; ref: Transcript; cand: Transcript }> {
    const [reference, candidate] = await this.current();
    const fresh = needsFreshServers(seq);
    const [ref, cand] = await Promise.all([this.runOn(reference, seq, !fresh), this.runOn(candidate, seq, !fresh)]);
    if (fresh) await this.stop();
    return { diff: compareTranscripts(ref, cand, this.opts), ref, cand };
  }

  private async runOn(server: ServerUnderTest, seq: Sequence, reset: boolean): Promise<Transcript> {
    try {
      const transcript = await runSequence(server.socketPath, seq);
      if (reset) await resetServer(server.socketPath);
      return transcript;
    } catch (err) {
      throw new Error(`${server.name} xenstored failed on seed ${seq.seed}: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * Delta debugging: drops chunks of steps (halves, quarters, ... single steps) while the sequence
   * still shows a difference; then cuts everything after the differing step.
   */
  async shrink(seq: Sequence, budget = 400): Promise<{ seq: Sequence; diff: Difference }> {
    let best = seq;
    let found = (await this.check(seq)).diff;
    if (!found) throw new Error(`seed ${seq.seed}: no difference to shrink`);
    let tries = 0;
    best = truncate(best, found.step);
    for (let chunk = Math.max(1, best.steps.length >> 1); chunk >= 1 && tries < budget; chunk >>= 1) {
      let start = 0;
      while (start < best.steps.length && tries < budget) {
        const trial = removeSteps(best, start, chunk);
        tries++;
        const diff = trial.steps.length ? (await this.check(trial)).diff : undefined;
        if (diff) {
          best = truncate(trial, diff.step);
          found = diff;
        } else {
          start += chunk;
        }
      }
      if (chunk === 1) break;
    }
    // Fewer connections when the higher ones are unused.
    const used = Math.max(0, ...best.steps.map((s) => s.conn)) + 1;
    if (used < best.connections) {
      const trial = { ...best, connections: used };
      const diff = (await this.check(trial)).diff;
      if (diff) {
        best = trial;
        found = diff;
      }
    }
    return { seq: best, diff: found };
  }
}

function truncate(seq: Sequence, step: number): Sequence {
  return step < 0 ? { ...seq, steps: [] } : { ...seq, steps: seq.steps.slice(0, step + 1) };
}

/** Removes steps [start, start+count); transaction references are renumbered or, if gone, made unallocated. */
export function removeSteps(seq: Sequence, start: number, count: number): Sequence {
  const remap = (tx: TxRef): TxRef => {
    if (tx.kind !== 'started') return tx;
    if (tx.step >= start && tx.step < start + count) return { kind: 'literal', id: 0xfffffffe };
    return tx.step >= start + count ? { kind: 'started', step: tx.step - count } : tx;
  };
  const steps: Step[] = [];
  seq.steps.forEach((s, i) => {
    if (i >= start && i < start + count) return;
    steps.push({ ...s, frames: s.frames.map((f) => ({ ...f, tx: remap(f.tx) })) });
  });
  return { ...seq, steps };
}

export function formatDifference(seq: Sequence, diff: Difference): string {
  const where = diff.step < 0 ? 'set-up (MKDIR /local/domain/0; SET_PERMS /local/domain/0 n0)' : formatStep(seq.steps[diff.step]!, diff.step);
  return [
    formatSequence(seq),
    `difference at ${where}`,
    `  ${diff.detail}:`,
    `    C xenstored: ${diff.reference}`,
    `    sim:         ${diff.candidate}`,
  ].join('\n');
}
