// Xenstore permission sets as Xen's toolstack leaves them (see shared/reference/xl-trees): the first entry is the
// owner and also what everyone else gets.
import type { Perm } from '../xenstore/wire.js';

/** (n0,rD): dom0 owns, the guest may read. The default for the guest's own tree. */
export const dom0ReadByGuest = (domid: number): Perm[] => [
  { id: 0, perm: 'n' },
  { id: domid, perm: 'r' },
];
/** (nD): the guest owns, nobody else may read (dom0 reads everything anyway). */
export const guestOwned = (domid: number): Perm[] => [{ id: domid, perm: 'n' }];
/** (nD,r0): the guest owns, dom0 reads: frontend device directories. */
export const guestOwnedDom0Read = (domid: number): Perm[] => [
  { id: domid, perm: 'n' },
  { id: 0, perm: 'r' },
];
/** (n0): dom0 only. */
export const dom0Only: Perm[] = [{ id: 0, perm: 'n' }];
