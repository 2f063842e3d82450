// Seeded random sequences of xenstore requests for the differential test. Everything a dom0 socket
// can observe: node ops, relative paths, permissions for other domids, watches on several
// connections, conflicting transactions, domain introduction, and the errors of each.
import { MsgType } from '../../src/xenstore/wire.js';
import { NO_TX, Rng, type Frame, type Sequence, type Step, type TxRef } from './ops.js';
import { CATEGORIES, KNOWN_DIFFERENCES, WEIGHTS } from './categories.js';

export { CATEGORIES, KNOWN_DIFFERENCES };

export interface GeneratorOptions {
  /** Categories not to generate (default: the keys of KNOWN_DIFFERENCES). */
  exclude?: ReadonlySet<string>;
  minSteps?: number;
  maxSteps?: number;
}

/** Where the generated sequences write; the runner removes these between sequences. */
export const ROOT = '/t';
export const REL_ROOT = 'r';
export const DOMIDS = [1, 2, 3, 7] as const;

const NAMES = ['a', 'b', 'c', 'd-1', 'e_2', 'f@g'];
const TOKENS = ['t1', 't2', 'tok'];

class SequenceBuilder {
  readonly steps: Step[] = [];
  /** Open transactions per connection: the step that started each. */
  readonly open: number[][];
  readonly ended: number[] = [];
  /** Domids this sequence introduced (and did not release), so RELEASE/RESUME often hit one. */
  readonly introduced = new Set<number>();
  /**
   * Domids named as the target of a SET_TARGET: never RELEASEd in the sequence, and SET_TARGET never
   * names a domain as its own target. The C xenstored keeps a target's connection referenced after
   * its RELEASE; releasing it a second time and then releasing the domain that targeted it makes
   * the C daemon segfault (INTRODUCE 3, INTRODUCE 2, SET_TARGET 3 2, RELEASE 2, RELEASE 2,
   * RELEASE 3 -> SIGSEGV), so it is no reference past that point. The reset between sequences
   * releases every domid once, which is safe.
   */
  readonly targets = new Set<number>();
  /** WATCH requests sent so far (registered or not), for UNWATCH to name. */
  readonly watches: { conn: number; path: string; token: string }[] = [];

  constructor(
    readonly rng: Rng,
    readonly connections: number,
  ) {
    this.open = Array.from({ length: connections }, () => []);
  }

  add(conn: number, category: string, frames: Frame[]): void {
    this.steps.push({ conn, category, frames });
    for (const f of frames) {
      if ((f.type === MsgType.WRITE || f.type === MsgType.MKDIR) && f.payload.startsWith(`${ROOT}/`)) {
        const path = f.payload.slice(0, f.payload.indexOf('\0'));
        if (path.length < 100 && !this.written.includes(path)) this.written.push(path);
      }
    }
  }

  relPath(depthMax = 3): string {
    const depth = 1 + this.rng.int(depthMax);
    const parts = [REL_ROOT];
    for (let i = 0; i < depth; i++) parts.push(this.rng.pick(NAMES));
    return parts.join('/');
  }

  /** Absolute paths some earlier step wrote (they may have been removed since). */
  readonly written: string[] = [];

  absPath(depthMax = 3): string {
    // Sometimes the absolute name of the relative tree, so relative watches see absolute changes.
    if (this.rng.chance(0.06)) return `/local/domain/0/${this.relPath(2)}`;
    if (this.written.length && this.rng.chance(0.45)) return this.rng.pick(this.written);
    // Mostly shallow, so different steps collide on the same nodes.
    const depth = this.rng.chance(0.1) ? 0 : 1 + this.rng.int(this.rng.chance(0.6) ? 2 : depthMax);
    const parts = [ROOT];
    for (let i = 0; i < depth; i++) parts.push(this.rng.pick(NAMES));
    return parts.join('/');
  }

  value(): string {
    const r = this.rng.next();
    if (r < 0.1) return '';
    if (r < 0.15) return 'with\0nul';
    if (r < 0.2) return 'ünïcödé';
    return `v${this.rng.int(1000)}`;
  }

  /** A transaction id for a step on conn: mostly none, often one of conn's open transactions. */
  txFor(conn: number): TxRef {
    const mine = this.open[conn]!;
    if (mine.length > 0 && this.rng.chance(0.5)) return { kind: 'started', step: this.rng.pick(mine) };
    return NO_TX;
  }
}

type Gen = (b: SequenceBuilder, conn: number) => void;

const perm = (b: SequenceBuilder, domids: readonly number[]) => `${b.rng.pick(['n', 'r', 'w', 'b'])}${b.rng.pick(domids)}`;

const GENERATORS: Record<string, Gen> = {
  node(b, conn) {
    const tx = b.txFor(conn);
    const path = b.absPath();
    const op = b.rng.pick([MsgType.READ, MsgType.WRITE, MsgType.WRITE, MsgType.MKDIR, MsgType.RM, MsgType.DIRECTORY, MsgType.GET_PERMS]);
    const payload = op === MsgType.WRITE ? `${path}\0${b.value()}` : `${path}\0`;
    b.add(conn, 'node', [{ type: op, payload, tx }]);
  },
  relative(b, conn) {
    const tx = b.txFor(conn);
    const path = b.relPath();
    const op = b.rng.pick([MsgType.READ, MsgType.WRITE, MsgType.MKDIR, MsgType.RM, MsgType.DIRECTORY, MsgType.GET_PERMS]);
    const payload = op === MsgType.WRITE ? `${path}\0${b.value()}` : `${path}\0`;
    b.add(conn, 'relative', [{ type: op, payload, tx }]);
  },
  perms(b, conn) {
    const tx = b.txFor(conn);
    const path = b.rng.chance(0.8) ? b.absPath() : b.relPath();
    const n = 1 + b.rng.int(4);
    const perms = Array.from({ length: n }, () => perm(b, [0, ...DOMIDS]));
    b.add(conn, 'perms', [{ type: MsgType.SET_PERMS, payload: `${path}\0${perms.join('\0')}\0`, tx }]);
    if (b.rng.chance(0.7)) b.add(conn, 'perms', [{ type: MsgType.GET_PERMS, payload: `${path}\0`, tx }]);
  },
  'perms-nonexistent-domid'(b, conn) {
    const path = b.absPath();
    const perms = b.rng.chance(0.5) ? [perm(b, [0]), perm(b, [32752, 40000])] : [perm(b, [32752, 65535])];
    b.add(conn, 'perms-nonexistent-domid', [{ type: MsgType.SET_PERMS, payload: `${path}\0${perms.join('\0')}\0`, tx: NO_TX }]);
    b.add(conn, 'perms-nonexistent-domid', [{ type: MsgType.GET_PERMS, payload: `${path}\0`, tx: NO_TX }]);
  },
  'perms-invalid'(b, conn) {
    const path = b.absPath();
    // Also numbers C parses leniently (strtol): leading zeros, signs, overflow, spaces.
    const bad = b.rng.pick(['x1', 'r', '', 'rr1', 'r-1', 'b1x', 'R1', 'r01', 'r+1', 'r 1', 'r1 ', 'r4294967296', 'r99999', 'r0x10']);
    const payload = b.rng.chance(0.2) ? `${path}\0` : `${path}\0${b.rng.chance(0.5) ? 'n0\0' : ''}${bad}\0`;
    b.add(conn, 'perms-invalid', [{ type: MsgType.SET_PERMS, payload, tx: NO_TX }]);
  },
  watch(b, conn) {
    const r = b.rng.next();
    // Mostly nodes of the sequence; sometimes the root, which sees every change.
    const path = r < 0.15 ? b.relPath(2) : r < 0.2 ? '/' : b.absPath(2);
    const token = b.rng.chance(0.9) ? b.rng.pick(TOKENS) : b.rng.pick(['', 'with space', 'a/b', 'ü']);
    const op = b.rng.chance(0.7) ? MsgType.WATCH : MsgType.UNWATCH;
    // A transaction id on WATCH is allowed by the protocol and ignored by xenstored.
    const tx = b.rng.chance(0.1) ? b.txFor(conn) : NO_TX;
    const mine = b.watches.filter((w) => w.conn === conn);
    if (op === MsgType.UNWATCH && mine.length && b.rng.chance(0.7)) {
      // Unwatch a registered watch, sometimes naming its path in the other form (relative <-> absolute).
      const w = b.rng.pick(mine);
      const home = '/local/domain/0/';
      const other = w.path.startsWith(home) ? w.path.slice(home.length) : w.path.startsWith('/') ? w.path : home + w.path;
      const named = b.rng.chance(0.3) ? other : w.path;
      b.add(conn, 'watch', [{ type: op, payload: `${named}\0${w.token}\0`, tx }]);
      return;
    }
    if (op === MsgType.WATCH) b.watches.push({ conn, path, token });
    b.add(conn, 'watch', [{ type: op, payload: `${path}\0${token}\0`, tx }]);
  },
  'watch-special'(b, conn) {
    const special = b.rng.pick(['@introduceDomain', '@releaseDomain']);
    if (b.rng.chance(0.15)) {
      b.add(conn, 'watch-special', [{ type: MsgType.SET_PERMS, payload: `${special}\0n0\0${perm(b, DOMIDS)}\0`, tx: NO_TX }]);
      return;
    }
    if (b.rng.chance(0.1)) {
      b.add(conn, 'watch-special', [{ type: b.rng.pick([MsgType.GET_PERMS, MsgType.READ]), payload: `${special}\0`, tx: NO_TX }]);
      return;
    }
    const op = b.rng.chance(0.8) ? MsgType.WATCH : MsgType.UNWATCH;
    b.add(conn, 'watch-special', [{ type: op, payload: `${special}\0${b.rng.pick(TOKENS)}\0`, tx: NO_TX }]);
  },
  tx(b, conn) {
    const mine = b.open[conn]!;
    if (mine.length === 0 || (mine.length < 3 && b.rng.chance(0.4))) {
      b.add(conn, 'tx', [{ type: MsgType.TRANSACTION_START, payload: '\0', tx: NO_TX }]);
      mine.push(b.steps.length - 1);
      return;
    }
    const started = b.rng.pick(mine);
    const tx: TxRef = { kind: 'started', step: started };
    if (b.rng.chance(0.55)) {
      // Work inside the transaction, mostly on shared nodes so commits conflict.
      const path = b.absPath(2);
      const op = b.rng.pick([MsgType.READ, MsgType.WRITE, MsgType.WRITE, MsgType.RM, MsgType.DIRECTORY, MsgType.MKDIR]);
      b.add(conn, 'tx', [{ type: op, payload: op === MsgType.WRITE ? `${path}\0${b.value()}` : `${path}\0`, tx }]);
      return;
    }
    const verdict = b.rng.pick(['T', 'T', 'T', 'F', 'X']);
    const invalid = b.rng.pick(['X\0', 'T', 'TRUE\0', '\0', 'T\0F\0']);
    b.add(conn, 'tx', [{ type: MsgType.TRANSACTION_END, payload: verdict === 'X' ? invalid : `${verdict}\0`, tx }]);
    if (verdict !== 'X') {
      mine.splice(mine.indexOf(started), 1);
      b.ended.push(started);
    }
  },
  'tx-foreign'(b, conn) {
    const others = b.open.flatMap((steps, c) => (c === conn ? [] : steps));
    let tx: TxRef;
    const r = b.rng.next();
    if (r < 0.4 && others.length) tx = { kind: 'started', step: b.rng.pick(others) };
    else if (r < 0.7 && b.ended.length) tx = { kind: 'started', step: b.rng.pick(b.ended) };
    else tx = { kind: 'literal', id: b.rng.pick([99, 4242, 0xffffffff]) };
    const op = b.rng.pick([MsgType.READ, MsgType.WRITE, MsgType.TRANSACTION_END, MsgType.DIRECTORY]);
    const path = b.absPath(2);
    const payload = op === MsgType.WRITE ? `${path}\0x` : op === MsgType.TRANSACTION_END ? 'T\0' : `${path}\0`;
    b.add(conn, 'tx-foreign', [{ type: op, payload, tx }]);
  },
  domain(b, conn) {
    const known = [...b.introduced];
    const domid = known.length && b.rng.chance(0.7) ? b.rng.pick(known) : b.rng.pick(DOMIDS);
    const r = b.rng.next();
    let frame: Frame;
    if (r < 0.3) {
      frame = { type: MsgType.INTRODUCE, payload: `${domid}\0${1000 + domid}\0${10 + domid}\0`, tx: NO_TX };
      b.introduced.add(domid);
    } else if (r < 0.5 && !b.targets.has(domid)) {
      frame = { type: MsgType.RELEASE, payload: `${domid}\0`, tx: NO_TX };
      b.introduced.delete(domid);
    } else if (r < 0.5) {
      frame = { type: MsgType.IS_DOMAIN_INTRODUCED, payload: `${domid}\0`, tx: NO_TX };
    }
    else if (r < 0.65) frame = { type: MsgType.IS_DOMAIN_INTRODUCED, payload: `${b.rng.pick([0, ...DOMIDS, 32753])}\0`, tx: NO_TX };
    else if (r < 0.8) frame = { type: MsgType.GET_DOMAIN_PATH, payload: `${b.rng.pick([0, ...DOMIDS, 32767])}\0`, tx: NO_TX };
    else if (r < 0.9) frame = { type: MsgType.RESUME, payload: `${domid}\0`, tx: NO_TX };
    else {
      const others = (known.length ? known : [...DOMIDS]).filter((d) => d !== domid);
      const target = others.length ? b.rng.pick(others) : b.rng.pick(DOMIDS.filter((d) => d !== domid));
      b.targets.add(target);
      frame = { type: MsgType.SET_TARGET, payload: `${domid}\0${target}\0`, tx: NO_TX };
    }
    b.add(conn, 'domain', [frame]);
  },
  'domain-invalid'(b, conn) {
    // Domids and ports as C's atoi() reads them: signs, leading blanks or zeros, trailing junk, overflow.
    const payload = b.rng.pick([
      '\0', '0\0', 'x\0', '7\0', '7\x00100\0', '7\x00100\x000\0', '7\x00100\0-1\0', '',
      '-1\0', ' 7\0', '07\0', '7abc\0', '+7\0', '0x10\0', '99999999999\0', '4294967303\0', '32752\0',
      '7\x00100\x00 12\0', '7\x00100\x0012abc\0', '7\x00100\x0099999999999\0',
    ]);
    let type = b.rng.pick([MsgType.INTRODUCE, MsgType.RELEASE, MsgType.RESUME, MsgType.SET_TARGET, MsgType.GET_DOMAIN_PATH, MsgType.IS_DOMAIN_INTRODUCED]);
    // RELEASE "7" is valid: not for a SET_TARGET target (see SequenceBuilder.targets); SET_TARGET 7 7 neither.
    if ((type === MsgType.RELEASE && payload === '7\0' && b.targets.has(7)) || (type === MsgType.SET_TARGET && payload === '7\x007\0')) {
      type = MsgType.RESUME;
    }
    if (type === MsgType.SET_TARGET && payload === '7\x00100\0') b.targets.add(100);
    b.add(conn, 'domain-invalid', [{ type, payload, tx: NO_TX }]);
  },
  'invalid-path'(b, conn) {
    const path = b.rng.pick([`${ROOT}//a`, `${ROOT}/a/`, '', `${ROOT}/a b`, `${ROOT}/a*`, `${ROOT}/ä`, '/', '@foo', '@introduceDomain', `${ROOT}/a:b`, 'rel/../x']);
    const op = b.rng.pick([MsgType.READ, MsgType.WRITE, MsgType.MKDIR, MsgType.RM, MsgType.DIRECTORY, MsgType.GET_PERMS, MsgType.WATCH]);
    const payload = op === MsgType.WRITE ? `${path}\0x` : op === MsgType.WATCH ? `${path}\0tok\0` : `${path}\0`;
    b.add(conn, 'invalid-path', [{ type: op, payload, tx: NO_TX }]);
  },
  'long-path'(b, conn) {
    const relative = b.rng.chance(0.3);
    const limit = relative ? 2048 : 3072;
    const target = b.rng.pick([limit - 1, limit, limit + 1, limit + 40]);
    const prefix = relative ? `${REL_ROOT}/` : `${ROOT}/`;
    // For relative paths the server measures the absolute path, /local/domain/0/ + rel.
    const path = prefix + 'x'.repeat(Math.max(1, target - prefix.length));
    const op = b.rng.pick([MsgType.WRITE, MsgType.READ, MsgType.MKDIR, MsgType.WATCH]);
    const payload = op === MsgType.WRITE ? `${path}\0v` : op === MsgType.WATCH ? `${path}\0tok\0` : `${path}\0`;
    b.add(conn, 'long-path', [{ type: op, payload, tx: NO_TX }]);
  },
  'big-value'(b, conn) {
    const path = b.absPath(1);
    const room = 4096 - Buffer.byteLength(path) - 1;
    const size = b.rng.pick([2048, 2049, room - 1, room]);
    b.add(conn, 'big-value', [{ type: MsgType.WRITE, payload: `${path}\0${'z'.repeat(size)}`, tx: b.txFor(conn) }]);
    b.add(conn, 'big-value', [{ type: MsgType.READ, payload: `${path}\0`, tx: NO_TX }]);
  },
  'directory-part'(b, conn) {
    const path = b.absPath(1);
    const offset = b.rng.pick(['0', '0', '1', '3', '100', 'x', '-1', '99999999999', ' 2', '2x']);
    b.add(conn, 'directory-part', [{ type: MsgType.DIRECTORY_PART, payload: `${path}\0${offset}\0`, tx: b.txFor(conn) }]);
  },
  'directory-e2big'(b, conn) {
    const parent = `${ROOT}/big`;
    const frames: Frame[] = [];
    for (let i = 0; i < 110; i++) frames.push({ type: MsgType.WRITE, payload: `${parent}/child-${String(i).padStart(3, '0')}-${'n'.repeat(30)}\0`, tx: NO_TX });
    b.add(conn, 'directory-e2big', frames);
    b.add(conn, 'directory-e2big', [{ type: MsgType.DIRECTORY, payload: `${parent}\0`, tx: NO_TX }]);
    b.add(conn, 'directory-e2big', [{ type: MsgType.DIRECTORY_PART, payload: `${parent}\0${b.rng.pick(['0', '2000', '4000'])}\0`, tx: NO_TX }]);
  },
  'reset-watches'(b, conn) {
    b.add(conn, 'reset-watches', [{ type: MsgType.RESET_WATCHES, payload: '', tx: NO_TX }]);
    b.open[conn] = []; // RESET_WATCHES also ends the connection's transactions
  },
  control(b, conn) {
    const payload = b.rng.pick([
      'print\0hello\0', 'print\0', 'print\0a\0b\0', 'no-such-command\0', '', 'help\0', 'quota\0', 'quota-soft\0',
      'check\0', 'log\0', 'live-update\0-a\0', 'quota\0max\x002\0', `quota\0${b.rng.pick([0, ...DOMIDS])}\0`,
    ]);
    b.add(conn, 'control', [{ type: MsgType.CONTROL, payload, tx: NO_TX }]);
  },
  'control-memory'(b, conn) {
    b.add(conn, 'control-memory', [{ type: MsgType.CONTROL, payload: 'memreport\0', tx: NO_TX }]);
  },
  'long-event'(b, conn) {
    // Event payload = path + NUL + token + NUL; the C xenstored drops events over 4096 bytes.
    const name = 'y'.repeat(2000);
    const eventLen = b.rng.pick([4095, 4096, 4097]);
    const token = 'k'.repeat(eventLen - 2 - (ROOT.length + 1 + name.length));
    b.add(conn, 'long-event', [{ type: MsgType.WATCH, payload: `${ROOT}\0${token}\0`, tx: NO_TX }]);
    b.add(b.rng.int(b.connections), 'long-event', [{ type: MsgType.WRITE, payload: `${ROOT}/${name}\0v`, tx: NO_TX }]);
    if (b.rng.chance(0.5)) b.add(conn, 'long-event', [{ type: MsgType.RM, payload: `${ROOT}/${name}\0`, tx: NO_TX }]);
  },
  'watch-many'(b, conn) {
    // Many watches on one connection over a subtree, then one change that fires a number of them:
    // the order of the resulting events on that connection is compared.
    const base = `${ROOT}/${b.rng.pick(NAMES)}`;
    const frames: Frame[] = [];
    const paths = [ROOT, base, `${base}/x`, `${base}/x/y`, `${base}/z`, `/local/domain/0/${REL_ROOT}`, `${REL_ROOT}`];
    for (let i = 0; i < 20; i++) frames.push({ type: MsgType.WATCH, payload: `${b.rng.pick(paths)}\0w${i}\0`, tx: NO_TX });
    b.add(conn, 'watch-many', frames);
    b.add(b.rng.int(b.connections), 'watch-many', [{ type: MsgType.WRITE, payload: `${base}/x/y/deep\0v`, tx: NO_TX }]);
    const target = b.rng.pick([base, `${base}/x`, ROOT]);
    b.add(b.rng.int(b.connections), 'watch-many', [{ type: MsgType.RM, payload: `${target}\0`, tx: b.txFor(conn) }]);
  },
  'tx-header'(b, conn) {
    // Requests that are not node operations, sent with the id of an open transaction.
    const mine = b.open[conn]!;
    if (mine.length === 0) {
      b.add(conn, 'tx-header', [{ type: MsgType.TRANSACTION_START, payload: '\0', tx: NO_TX }]);
      mine.push(b.steps.length - 1);
    }
    const tx: TxRef = { kind: 'started', step: b.rng.pick(mine) };
    const [type, payload] = b.rng.pick<[MsgType, string]>([
      [MsgType.TRANSACTION_START, '\0'],
      [MsgType.GET_DOMAIN_PATH, '3\0'],
      [MsgType.IS_DOMAIN_INTRODUCED, '3\0'],
      [MsgType.INTRODUCE, '3\x001003\x0013\0'],
      [MsgType.CONTROL, 'print\0x\0'],
      [MsgType.WATCH, `${ROOT}\0tx\0`],
      [MsgType.UNWATCH, `${ROOT}\0tx\0`],
      [MsgType.SET_PERMS, '@introduceDomain\0n0\0r1\0'],
      [MsgType.DIRECTORY_PART, `${ROOT}\x000\0`],
    ]);
    if (type === MsgType.INTRODUCE) b.introduced.add(3);
    b.add(conn, 'tx-header', [{ type, payload, tx }]);
  },
  malformed(b, conn) {
    const r = b.rng.next();
    let frame: Frame;
    // Not generated: READ/MKDIR/RM/DIRECTORY/GET_PERMS whose payload is not exactly one
    // NUL-terminated string (NUL missing, or extra arguments). The C xenstored (onearg() NULL ->
    // canonicalize() NULL -> returns the stale errno) answers them with whatever errno was left
    // (READ "/t/c" -> EEXIST) or, when that is 0, sends no reply and aborts (consider_message:
    // Assertion `conn->in == NULL' failed). It is no reference for them.
    if (r < 0.35) frame = { type: MsgType.SET_PERMS, payload: `${b.absPath(1)}\0n0`, tx: NO_TX };
    else if (r < 0.55) frame = { type: b.rng.pick([20, 23, 99]), payload: `${ROOT}\0`, tx: NO_TX };
    else if (r < 0.7) frame = { type: MsgType.WATCH, payload: `${b.absPath(1)}\0`, tx: NO_TX };
    else if (r < 0.85) frame = { type: MsgType.GET_DOMAIN_PATH, payload: `${b.rng.pick(DOMIDS)}\0extra\0`, tx: NO_TX };
    else frame = { type: MsgType.WRITE, payload: `${b.absPath(1)}`, tx: NO_TX };
    b.add(conn, 'malformed', [frame]);
  },
  oversize(b, conn) {
    b.add(conn, 'oversize', [{ type: MsgType.WRITE, payload: `${ROOT}/a\0v`, tx: NO_TX, lieLength: 4097 }]);
  },
  pipelined(b, conn) {
    const n = 2 + b.rng.int(6);
    const frames: Frame[] = [];
    for (let i = 0; i < n; i++) {
      const path = b.absPath(2);
      const op = b.rng.pick([MsgType.WRITE, MsgType.READ, MsgType.RM, MsgType.DIRECTORY]);
      frames.push({ type: op, payload: op === MsgType.WRITE ? `${path}\0p${i}` : `${path}\0`, tx: NO_TX });
    }
    b.add(conn, 'pipelined', frames);
  },
};


export function generate(seed: number, opts: GeneratorOptions = {}): Sequence {
  const exclude = opts.exclude ?? new Set(Object.keys(KNOWN_DIFFERENCES));
  const rng = new Rng(seed);
  const connections = 2 + rng.int(3);
  const b = new SequenceBuilder(rng, connections);
  const table = Object.entries(WEIGHTS).filter(([name]) => !exclude.has(name));
  const total = table.reduce((s, [, w]) => s + w, 0);
  const length = (opts.minSteps ?? 8) + rng.int((opts.maxSteps ?? 40) - (opts.minSteps ?? 8) + 1);
  if (!exclude.has('node')) {
    // Start from a populated tree, so reads, watches and conflicts meet existing nodes.
    const writes: Frame[] = [];
    for (let i = 3 + rng.int(8); i > 0; i--) writes.push({ type: MsgType.WRITE, payload: `${b.absPath()}\0${b.value()}`, tx: NO_TX });
    b.add(0, 'node', writes);
  }
  while (b.steps.length < length) {
    let x = rng.next() * total;
    let chosen = table[0]![0];
    for (const [name, w] of table) {
      if ((x -= w) < 0) {
        chosen = name;
        break;
      }
    }
    GENERATORS[chosen]!(b, rng.int(connections));
  }
  return { seed, connections, steps: b.steps };
}
