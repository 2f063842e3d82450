// Node permissions as xenstored keeps them: a list whose first entry names the owner and gives the
// access of everybody not listed; later entries grant one domid r/w/b/n. Bits follow xenstore_lib.h.
import { strtol } from './payload.js';

export const PERM_NONE = 0x00;
export const PERM_READ = 0x01;
export const PERM_WRITE = 0x02;
export const PERM_OWNER = 0x08;
/** Entry kept on the node but ignored: it names a domain that no longer exists (or never did). */
export const PERM_IGNORE = 0x10;

export interface NodePerm {
  /** domid as C stores it: an unsigned 32-bit value (a "-1" in a request becomes 4294967295). */
  readonly id: number;
  readonly bits: number;
}

const LETTER_BITS: Record<string, number> = { n: PERM_NONE, r: PERM_READ, w: PERM_WRITE, b: PERM_READ | PERM_WRITE };

/** Parses `count` entries like `r5` (xs_strings_to_perms: ids in C strtol base-0 syntax); undefined = EINVAL. */
export function parsePerms(strings: string[], count: number): NodePerm[] | undefined {
  const out: NodePerm[] = [];
  for (let i = 0; i < count; i++) {
    const s = strings[i];
    if (s === undefined) return undefined;
    const bits = LETTER_BITS[s[0] ?? ''];
    if (bits === undefined) return undefined;
    const rest = s.slice(1);
    if (rest.length === 0) return undefined;
    const { value, end } = strtol(rest, 0);
    if (end !== rest.length) return undefined;
    out.push({ id: Number(BigInt.asUintN(32, value)), bits });
  }
  return out;
}

function letterOf(bits: number): string {
  switch (bits & ~PERM_IGNORE) {
    case PERM_WRITE:
      return 'w';
    case PERM_READ:
      return 'r';
    case PERM_READ | PERM_WRITE:
      return 'b';
    default:
      return 'n';
  }
}

/** GET_PERMS payload: `n0\0r5\0` (ids printed as C's %i of the unsigned value). */
export function formatPerms(perms: readonly NodePerm[]): string {
  let s = '';
  for (const p of perms) s += `${letterOf(p.bits)}${p.id | 0}\0`;
  return s;
}

/** Who is asking: the connection's domid, whether it is privileged, and the domid it may act for (SET_TARGET). */
export interface Requester {
  readonly id: number;
  readonly privileged: boolean;
  readonly target: number | undefined;
}

/** perm_for_conn: owners, privileged callers and the owner's controlling domain get everything. */
export function permFor(who: Requester, perms: readonly NodePerm[]): number {
  const all = PERM_READ | PERM_WRITE | PERM_OWNER;
  const owner = perms[0]!.id;
  if (who.privileged || owner === who.id || (who.target !== undefined && owner === who.target)) return all;
  for (let i = 1; i < perms.length; i++) {
    const p = perms[i]!;
    if (!(p.bits & PERM_IGNORE) && (p.id === who.id || (who.target !== undefined && p.id === who.target))) {
      return p.bits & all;
    }
  }
  return perms[0]!.bits & all;
}
