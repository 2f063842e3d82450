// What the console daemon reads about a domain's console, checked before it is used. console/ring-ref, port and type
// come from xenstore, where a guest (or a buggy toolstack) may have put anything: a value that does not name the
// domain's own console page and an event channel the domain offers to dom0 gives no console, never an exception.
import type { XsOps } from '../../xenstore/types.js';
import { parseU32, readOpt } from '../backends/xenbus.js';

/** What the hypervisor knows of the domain's console: the frame libxl gave as ring-ref and its event channels. */
export interface ConsoleFrames {
  consoleMfn: number;
  evtchns: ReadonlyArray<{ port: number; remoteDomid: number }>;
}

export type ConsoleRecord =
  /** Some of type, ring-ref, port not written yet: the toolstack is still at it (xenconsoled waits for its watch). */
  | { kind: 'incomplete' }
  /** Not a console this daemon serves (type other than xenconsoled, e.g. ioemu: qemu's). */
  | { kind: 'not-ours'; type: string }
  | { kind: 'invalid'; reason: string }
  | { kind: 'valid'; ringRef: bigint; port: number };

const MAX_SHOWN = 40;

/** A value for a log line: quoted and cut short (it may be long or hostile). */
export function shown(raw: string): string {
  return JSON.stringify(raw.length > MAX_SHOWN ? raw.slice(0, MAX_SHOWN) + '…' : raw);
}

/**
 * Reads /local/domain/<domid>/console/{type,ring-ref,port} and checks them against the hypervisor's view:
 * ring-ref must be the domain's console frame (mapping any other frame fails, or maps a page that is no ring) and
 * port an event channel of the domain left unbound for dom0 (binding any other fails).
 */
export async function readConsoleRecord(xs: XsOps, domid: number, frames: ConsoleFrames | undefined): Promise<ConsoleRecord> {
  const base = `/local/domain/${domid}/console`;
  const [type, ringRef, port] = await Promise.all(['type', 'ring-ref', 'port'].map((k) => readOpt(xs, `${base}/${k}`)));
  if (type === undefined || ringRef === undefined || port === undefined) return { kind: 'incomplete' };
  if (type !== 'xenconsoled') {
    // libxl writes ioemu for a console qemu serves; anything else is garbage, and neither is this daemon's.
    return type === 'ioemu' ? { kind: 'not-ours', type } : { kind: 'invalid', reason: `console/type ${shown(type)} is neither xenconsoled nor ioemu` };
  }
  if (!frames) return { kind: 'invalid', reason: 'the hypervisor has no such domain' };
  if (!/^\d{1,20}$/.test(ringRef)) return { kind: 'invalid', reason: `console/ring-ref ${shown(ringRef)} is not a frame number` };
  const ring = BigInt(ringRef);
  if (ring !== BigInt(frames.consoleMfn)) {
    return { kind: 'invalid', reason: `console/ring-ref ${ringRef} is not the domain's console frame: mapping it fails` };
  }
  const evtchn = parseU32(port);
  if (evtchn === undefined || evtchn === 0) return { kind: 'invalid', reason: `console/port ${shown(port)} is not an event channel port` };
  if (!frames.evtchns.some((e) => e.port === evtchn && e.remoteDomid === 0)) {
    return { kind: 'invalid', reason: `console/port ${evtchn} is no event channel the domain offers dom0: binding it fails` };
  }
  return { kind: 'valid', ringRef: ring, port: evtchn };
}

/**
 * The domain's name as a file-name part: characters other than letters, digits, '.', '_' and '-' become '_', at
 * most 64 of them; an empty or missing name gives `dom<domid>`. The name is guest-readable data the toolstack wrote,
 * but it ends up in a path: no '/' and no '..' may get through.
 */
export function logNameFor(domid: number, name: string | undefined): string {
  const safe = (name ?? '').replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 64);
  return safe === '' || /^\.+$/.test(safe) ? `dom${domid}` : safe;
}
