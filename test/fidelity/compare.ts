// Compares two normalised `xenstore-ls -fp` trees node by node (path, permissions, value) over the subtrees a
// toolstack writes for one guest, and sorts the differences into those a table of known differences explains and
// those it does not. Pure functions: the self-check runs them on mutated copies.

/** One node as `xenstore-ls -fp` shows it: the value (sanitised, as printed) and the permissions, e.g. "n0,rDOMID". */
export interface TreeNode {
  value: string;
  perms: string;
}
export type Tree = Map<string, TreeNode>;

const LINE = /^(\S+) = "(.*)"\s+\((.*)\)$/;

/** Parses `path = "value"   (perms)` lines (the normaliser's output); any other line is an error, not skipped. */
export function parseTree(text: string): Tree {
  const tree: Tree = new Map();
  for (const [i, line] of text.split('\n').entries()) {
    if (line === '') continue;
    const m = LINE.exec(line);
    if (!m) throw new Error(`line ${i + 1} is not "path = \\"value\\"   (perms)": ${line}`);
    if (tree.has(m[1]!)) throw new Error(`line ${i + 1}: ${m[1]} appears twice`);
    tree.set(m[1]!, { value: m[2]!, perms: m[3]! });
  }
  return tree;
}

/**
 * The nodes compared both ways: what one guest's start puts in xenstore (its own tree, its backends in dom0, its /vm
 * entry, libxl's private area) and the parents a toolstack creates for them. xl's tree holds a whole host; outside
 * this scope only nodes that the daemon's tree has and xl's host had not count (as extra).
 */
const SCOPE: RegExp[] = [
  /^\/local\/domain\/DOMID(\/|$)/,
  /^\/local\/domain\/0\/backend\/(vbd|vif|console)\/DOMID(\/|$)/,
  /^\/local\/domain\/0\/backend(\/(vbd|vif|console))?$/,
  /^\/vm\/UUID(\/|$)/,
  /^\/vm$/,
  /^\/libxl(\/DOMID(\/.*)?)?$/,
];

export function inScope(path: string): boolean {
  return SCOPE.some((re) => re.test(path));
}

export type DiffKind = 'missing' | 'extra' | 'value' | 'perms';

/** One difference; `expected` is what xl's tree has, `actual` what the daemon's tree has. */
export interface Difference {
  kind: DiffKind;
  path: string;
  expected?: string;
  actual?: string;
}

export interface TreeDiff {
  /** In-scope nodes of xl's tree. */
  expectedNodes: number;
  /** In-scope nodes of the daemon's tree. */
  actualNodes: number;
  /** xl's nodes present in the daemon's tree with the same permissions and value. */
  identical: number;
  differences: Difference[];
}

/** Differences between xl's tree (expected) and the daemon's (actual), in scope and, for extra nodes, anywhere. */
export function diffTrees(expected: Tree, actual: Tree): TreeDiff {
  const differences: Difference[] = [];
  let expectedNodes = 0;
  let actualNodes = 0;
  let identical = 0;
  for (const [path, want] of expected) {
    if (!inScope(path)) continue;
    expectedNodes++;
    const got = actual.get(path);
    if (!got) {
      differences.push({ kind: 'missing', path, expected: `"${want.value}" (${want.perms})` });
      continue;
    }
    let same = true;
    if (got.perms !== want.perms) {
      differences.push({ kind: 'perms', path, expected: want.perms, actual: got.perms });
      same = false;
    }
    if (got.value !== want.value) {
      differences.push({ kind: 'value', path, expected: want.value, actual: got.value });
      same = false;
    }
    if (same) identical++;
  }
  for (const [path, got] of actual) {
    if (inScope(path)) actualNodes++;
    // Outside the guest's subtrees too: a node xl's whole host did not have is one the daemon should not write.
    if (!expected.has(path)) differences.push({ kind: 'extra', path, actual: `"${got.value}" (${got.perms})` });
  }
  return { expectedNodes, actualNodes, identical, differences };
}

/** Who should act on a known difference: nobody (it is legitimate), the daemon (src/ops) or the sim (src/sim). */
export type DiffOwner = 'legit' | 'daemon' | 'sim';

export interface KnownDifference {
  kind: DiffKind;
  /** Normalised path; `*` stands for one path segment, a trailing `/**` for the node and everything under it. */
  path: string;
  /**
   * When given, what xl's side must be: its value or perms (value, perms differences) or `"value" (perms)` (missing).
   * A string must match exactly, a RegExp must match.
   */
  expected?: string | RegExp;
  /** When given, what the daemon's side must be: as `expected` (`"value" (perms)` for extra nodes). */
  actual?: string | RegExp;
  owner: DiffOwner;
  reason: string;
}

function globToRegExp(glob: string): RegExp {
  const deep = glob.endsWith('/**');
  const body = (deep ? glob.slice(0, -3) : glob)
    .split('*')
    .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
    .join('[^/]*');
  return new RegExp(`^${body}${deep ? '(/.*)?' : ''}$`);
}

export function explains(entry: KnownDifference, diff: Difference): boolean {
  if (entry.kind !== diff.kind || !globToRegExp(entry.path).test(diff.path)) return false;
  return sideMatches(entry.expected, diff.expected) && sideMatches(entry.actual, diff.actual);
}

function sideMatches(want: string | RegExp | undefined, got: string | undefined): boolean {
  if (want === undefined) return true;
  if (got === undefined) return false;
  return typeof want === 'string' ? want === got : want.test(got);
}

export interface Classified {
  known: Array<{ diff: Difference; entry: KnownDifference }>;
  /** Differences no entry explains: each one fails the test. */
  unexpected: Difference[];
  /** Entries that explain nothing any more: the table must shrink (each one fails the test too). */
  unused: KnownDifference[];
}

export function classify(differences: Difference[], table: KnownDifference[]): Classified {
  const known: Classified['known'] = [];
  const unexpected: Difference[] = [];
  const used = new Set<KnownDifference>();
  for (const diff of differences) {
    const entry = table.find((e) => explains(e, diff));
    if (entry) {
      known.push({ diff, entry });
      used.add(entry);
    } else unexpected.push(diff);
  }
  return { known, unexpected, unused: table.filter((e) => !used.has(e)) };
}

export function formatDifference(d: Difference): string {
  switch (d.kind) {
    case 'missing':
      return `missing  ${d.path} = ${d.expected} (in xl's tree, not in the daemon's)`;
    case 'extra':
      return `extra    ${d.path} = ${d.actual} (in the daemon's tree, not in xl's)`;
    default:
      return `${d.kind.padEnd(8)} ${d.path}: xl ${JSON.stringify(d.expected)}, daemon ${JSON.stringify(d.actual)}`;
  }
}
