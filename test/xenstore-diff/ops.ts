// The vocabulary of the differential test: one generated step, its printed form, a seeded PRNG.
import { MsgType } from '../../src/xenstore/wire.js';

/**
 * Which transaction id a step sends: none (0), the id some earlier TRANSACTION_START step got back
 * (resolved at run time against each server separately), or a literal number (ids never allocated).
 */
export type TxRef = { kind: 'none' } | { kind: 'started'; step: number } | { kind: 'literal'; id: number };
export const NO_TX: TxRef = { kind: 'none' };

export interface Frame {
  type: number; // a MsgType, or an unknown number on purpose
  /** Payload; `\0` separators written out. Encoded as UTF-8. */
  payload: string;
  tx: TxRef;
  /** Header length to claim instead of the payload's own (malformed frames only). */
  lieLength?: number;
}

export interface Step {
  /** Index of the connection (0-based) the step is sent on. */
  conn: number;
  /** Category name, so a known difference can be left out of the generator by name. */
  category: string;
  /** One frame, or several written back to back (pipelined) on the same connection. */
  frames: Frame[];
}

export interface Sequence {
  seed: number;
  connections: number;
  steps: Step[];
}

export function typeName(t: number): string {
  return MsgType[t] ?? `TYPE_${t}`;
}

function showPayload(p: string): string {
  const shown = JSON.stringify(p.length > 120 ? `${p.slice(0, 100)}…(${p.length} chars)` : p);
  return shown.replace(/\\u0000/g, '\\0');
}

function showTx(tx: TxRef): string {
  if (tx.kind === 'none') return '';
  if (tx.kind === 'started') return ` tx=<id from step ${tx.step}>`;
  return ` tx=${tx.id}`;
}

export function formatFrame(f: Frame): string {
  return `${typeName(f.type)} ${showPayload(f.payload)}${showTx(f.tx)}${f.lieLength !== undefined ? ` (header len ${f.lieLength})` : ''}`;
}

export function formatStep(s: Step, index: number): string {
  const body = s.frames.length === 1 ? formatFrame(s.frames[0]!) : `pipelined [${s.frames.map(formatFrame).join(', ')}]`;
  return `#${index} conn${s.conn} ${body}`;
}

export function formatSequence(seq: Sequence): string {
  return [`seed ${seq.seed}, ${seq.connections} connections:`, ...seq.steps.map((s, i) => `  ${formatStep(s, i)}`)].join('\n');
}

/** mulberry32: small, fast, and the same numbers for the same seed everywhere. */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
}
