// The xen helper process: runs the long libxenguest operations (domain build, save, restore) for the daemon.
// Everything here blocks on purpose: the process does one operation at a time, and the daemon cancels an
// operation by killing the process, which no in-process mechanism could do to a C call in flight.
// Protocol: protocol.ts. Started by src/hypervisor/xen-helper-client.ts.
import { fstatSync, readSync, writeSync } from 'node:fs';
import { HypervisorError } from '../types.js';
import { loadXenLibraries } from '../../../bindings/lib.js';
import { openXcInterface, type XenCtrl } from '../../../bindings/xenctrl.js';
import { XenGuest, type PrecopyStatsValue } from '../../../bindings/xenguest.js';
import {
  XCFLAGS_LIVE,
  XGS_POLICY_CONTINUE_PRECOPY,
  XGS_POLICY_STOP_AND_COPY,
} from '../../../bindings/structs.js';
import { buildDomain } from '../xen-build.js';
import { EVENT_FD, STREAM_FD, encodeMessage, type HelperEvent, type HelperRequest, type WireError } from './protocol.js';

function send(ev: HelperEvent): void {
  writeSync(EVENT_FD, encodeMessage(ev));
}

function toWire(err: unknown): WireError {
  if (err instanceof HypervisorError) {
    // The message is "call: errno (detail)"; only the detail travels, the receiver rebuilds the rest.
    const prefix = `${err.call}: ${err.errno} (`;
    const detail = err.message.startsWith(prefix) && err.message.endsWith(')') ? err.message.slice(prefix.length, -1) : undefined;
    return { call: err.call, errno: err.errno, detail };
  }
  return { call: 'xen-helper', errno: 'EIO', detail: err instanceof Error ? err.message : String(err) };
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));
let pending = '';

/** The next request line from stdin, blocking; undefined at end of input (the daemon closed the pipe). */
function readRequest(): HelperRequest | undefined {
  const chunk = Buffer.alloc(65536);
  for (;;) {
    const nl = pending.indexOf('\n');
    if (nl >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (line.trim() === '') continue;
      try {
        return JSON.parse(line) as HelperRequest;
      } catch (err) {
        send({ type: 'failed', id: -1, error: { call: 'xen-helper', errno: 'EINVAL', detail: `bad request line: ${(err as Error).message}` } });
      }
    }
    let n: number;
    try {
      n = readSync(0, chunk, 0, chunk.length, null);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') {
        Atomics.wait(sleeper, 0, 0, 5);
        continue;
      }
      throw err;
    }
    if (n === 0) return undefined;
    pending += chunk.subarray(0, n).toString('utf8');
  }
}

function streamSize(): number | undefined {
  try {
    const st = fstatSync(STREAM_FD);
    return st.isFile() ? st.size : undefined;
  } catch {
    return undefined;
  }
}

function runSave(ctrl: XenCtrl, guest: XenGuest, r: Extract<HelperRequest, { type: 'save' }>): Record<string, number> {
  let rounds = r.live ? 0 : 1;
  let pagesSent = 0;
  const sizeBefore = streamSize();
  const suspend = (): number => {
    send({ type: 'suspend', id: r.id });
    for (;;) {
      const reply = readRequest();
      if (!reply) return 0;
      if (reply.type === 'suspended' && reply.id === r.id) return reply.ok ? 1 : 0;
    }
  };
  // Same rule as libxenguest's default policy, with the daemon's limits, plus progress reports.
  const precopyPolicy = (s: PrecopyStatsValue): number => {
    rounds = s.iteration;
    pagesSent = s.total_written;
    send({ type: 'progress', id: r.id, round: s.iteration, sent: s.total_written, dirty: s.dirty_count });
    if (s.dirty_count >= 0 && s.dirty_count < r.dirtyThreshold) return XGS_POLICY_STOP_AND_COPY;
    if (s.iteration >= r.maxRounds) return XGS_POLICY_STOP_AND_COPY;
    return XGS_POLICY_CONTINUE_PRECOPY;
  };
  guest.save(STREAM_FD, r.domid, r.live ? XCFLAGS_LIVE : 0, { suspend, precopyPolicy: r.live ? precopyPolicy : undefined });
  const sizeAfter = streamSize();
  const bytes = sizeBefore !== undefined && sizeAfter !== undefined ? sizeAfter - sizeBefore : -1;
  return { rounds, pagesSent, bytes };
}

function handle(ctrl: XenCtrl, guest: XenGuest, r: HelperRequest): void {
  if (r.type === 'suspended') return; // a late answer to a suspend that already timed out
  try {
    let result: Record<string, string | number>;
    if (r.type === 'build') {
      const out = buildDomain(ctrl, guest, r.domid, r.req);
      result = { storeMfn: out.storeMfn.toString(), consoleMfn: out.consoleMfn.toString() };
    } else if (r.type === 'save') {
      result = runSave(ctrl, guest, r);
    } else if (r.type === 'restore') {
      const out = guest.restore(STREAM_FD, r.domid, { storePort: r.storePort, consolePort: r.consolePort });
      result = { storeMfn: out.storeMfn.toString(), consoleMfn: out.consoleMfn.toString() };
    } else {
      throw new HypervisorError('xen-helper', 'EINVAL', `unknown request type ${JSON.stringify((r as { type: unknown }).type)}`);
    }
    send({ type: 'done', id: r.id, result });
  } catch (err) {
    send({ type: 'failed', id: r.id, error: toWire(err) });
  }
}

export function main(): number {
  let ctrl: XenCtrl;
  let guest: XenGuest;
  try {
    const libs = loadXenLibraries({
      libxenctrl: process.env.XENOPSD_LIBXENCTRL || undefined,
      libxenguest: process.env.XENOPSD_LIBXENGUEST || undefined,
    });
    ctrl = openXcInterface(libs);
    guest = new XenGuest(libs.xenguest, ctrl);
  } catch (err) {
    send({ type: 'fatal', error: toWire(err) });
    return 1;
  }
  send({ type: 'ready', pid: process.pid });
  for (;;) {
    let r: HelperRequest | undefined;
    try {
      r = readRequest();
    } catch (err) {
      send({ type: 'fatal', error: toWire(err) });
      return 1;
    }
    if (!r) break;
    handle(ctrl, guest, r);
  }
  ctrl.close();
  return 0;
}

process.exitCode = main();
