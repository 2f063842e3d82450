// Runs one generated sequence against one xenstored (any unix socket) and records everything a
// client can observe: every reply (type, payload, header tx_id) and, after every step, the watch
// events each connection received, so two servers' transcripts can be compared step by step.
import { MsgType } from '../../src/xenstore/wire.js';
import { RawConn } from '../support/cxenstored/raw-conn.js';
import { DOMIDS, REL_ROOT, ROOT } from './generator.js';
import { typeName, type Frame, type Sequence, type TxRef } from './ops.js';

// Generous: a loaded CI machine must not turn a slow reply into a difference.
const REPLY_TIMEOUT_MS = 5000;
/** Sent for a transaction reference whose TRANSACTION_START failed: an id no server allocated. */
const FAILED_START_TX = 0xfffffffe;

export interface StepRecord {
  /** One line per frame: `TYPE "payload"` (plus ` tx=N` when the header tx_id is not the one sent). */
  replies: string[];
  /**
   * Per connection: the distinct watch events it got during this step, sorted. A set, because the
   * C xenstored drops an event identical to one still queued for that connection (send_event), so
   * how many identical events arrive depends on when its output was flushed.
   */
  events: string[][];
  /** Per connection: the distinct watch events in order of first arrival (strict-order mode). */
  eventsInOrder: string[][];
}

export interface Transcript {
  setup: string[];
  steps: StepRecord[];
}

function show(buf: Buffer): string {
  return JSON.stringify(buf.toString('utf8')).replace(/\\u0000/g, '\\0');
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | 'TIMEOUT'> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<'TIMEOUT'>((r) => (timer = setTimeout(() => r('TIMEOUT'), ms)))]).finally(() =>
    clearTimeout(timer),
  );
}

async function sendFrame(conn: RawConn, frame: Frame, txId: number): Promise<string> {
  if (conn.closed) return 'CONNECTION CLOSED (not sent)';
  let reply;
  if (frame.lieLength !== undefined) {
    const payload = Buffer.from(frame.payload, 'utf8');
    const header = Buffer.alloc(16);
    header.writeUInt32LE(frame.type, 0);
    header.writeUInt32LE(0x7777, 4);
    header.writeUInt32LE(txId, 8);
    header.writeUInt32LE(frame.lieLength, 12);
    conn.writeRaw(Buffer.concat([header, payload]));
    // No reply can match; wait to see whether the server drops the connection.
    const deadline = Date.now() + REPLY_TIMEOUT_MS;
    while (!conn.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    return conn.closed ? 'CONNECTION CLOSED' : 'NO REPLY, CONNECTION KEPT';
  }
  try {
    reply = await withTimeout(conn.request(frame.type, Buffer.from(frame.payload, 'utf8'), txId), REPLY_TIMEOUT_MS);
  } catch {
    return 'CONNECTION CLOSED';
  }
  if (reply === 'TIMEOUT') return 'NO REPLY';
  const txNote = reply.txId === txId ? '' : ` tx=${reply.txId}`;
  let shown = show(reply.payload);
  // CONTROL "quota <domid>" reports the bytes the C daemon allocated for the domain: an artefact of
  // its allocator, not protocol. Everything else in that answer is compared.
  if (reply.type === MsgType.CONTROL) shown = shown.replace(/memory( *): *\d+/g, 'memory$1: <not compared>');
  return `${typeName(reply.type)} ${shown}${txNote}`;
}

/** A round trip on every open connection: events queued before it have arrived when it returns. */
async function barrier(conns: RawConn[]): Promise<void> {
  await Promise.all(
    conns.map(async (c) => {
      if (c.closed) return;
      try {
        await withTimeout(c.request(MsgType.GET_DOMAIN_PATH, Buffer.from('0\0')), REPLY_TIMEOUT_MS);
      } catch {
        /* closed: its events are what arrived */
      }
    }),
  );
}

/** Puts a server back to the state every sequence starts from (after its connections closed). */
export async function resetServer(socketPath: string): Promise<void> {
  const admin = await RawConn.connect(socketPath);
  try {
    const req = async (type: MsgType, payload: string) => {
      const r = await withTimeout(admin.request(type, Buffer.from(payload, 'utf8')), REPLY_TIMEOUT_MS);
      if (r === 'TIMEOUT') throw new Error(`reset of ${socketPath}: no reply to ${typeName(type)} ${JSON.stringify(payload)}`);
    };
    await req(MsgType.RM, `${ROOT}\0`);
    await req(MsgType.RM, `/local/domain/0/${REL_ROOT}\0`);
    for (const domid of DOMIDS) await req(MsgType.RELEASE, `${domid}\0`);
    await req(MsgType.SET_PERMS, '@introduceDomain\0n0\0');
    await req(MsgType.SET_PERMS, '@releaseDomain\0n0\0');
  } finally {
    await admin.close();
  }
}

export async function runSequence(socketPath: string, seq: Sequence): Promise<Transcript> {
  const conns: RawConn[] = [];
  for (let i = 0; i < seq.connections; i++) conns.push(await RawConn.connect(socketPath));
  const startedTx = new Map<number, number>();
  const resolveTx = (tx: TxRef): number => {
    if (tx.kind === 'none') return 0;
    if (tx.kind === 'literal') return tx.id;
    return startedTx.get(tx.step) ?? FAILED_START_TX;
  };
  const transcript: Transcript = { setup: [], steps: [] };
  try {
    // Both servers get the same dom0 home, whatever either creates at start-up.
    const setupConn = conns[0]!;
    transcript.setup.push(await sendFrame(setupConn, { type: MsgType.MKDIR, payload: '/local/domain/0\0', tx: { kind: 'none' } }, 0));
    transcript.setup.push(await sendFrame(setupConn, { type: MsgType.SET_PERMS, payload: '/local/domain/0\0n0\0', tx: { kind: 'none' } }, 0));
    await barrier(conns);
    for (const c of conns) c.takeEvents();

    for (let i = 0; i < seq.steps.length; i++) {
      const step = seq.steps[i]!;
      const conn = conns[step.conn]!;
      const replies = await Promise.all(step.frames.map((f) => sendFrame(conn, f, resolveTx(f.tx))));
      // A connection that left a request unanswered is out of step with us: later requests on it
      // would only time out, so it is closed (both servers' transcripts already differ if one did this).
      if (replies.some((r) => r.startsWith('NO REPLY'))) await conn.close();
      if (step.frames.length === 1 && step.frames[0]!.type === MsgType.TRANSACTION_START) {
        const m = /^TRANSACTION_START "(\d+)\\0"/.exec(replies[0]!);
        if (m) startedTx.set(i, Number(m[1]));
      }
      await barrier(conns);
      const eventsInOrder = conns.map((c) => [...new Set(c.takeEvents().map((e) => `${show(e.payload)} req=${e.reqId} tx=${e.txId}`))]);
      transcript.steps.push({ replies, eventsInOrder, events: eventsInOrder.map((list) => [...list].sort()) });
    }
  } finally {
    await Promise.all(conns.map((c) => c.close()));
  }
  return transcript;
}
