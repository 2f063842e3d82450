// Seeded fuzzing of the sim xenstored: malformed frames, unknown types, missing NULs, invalid paths,
// oversize lengths, half-written packets and watch floods on several socket and guest connections,
// while a witness connection keeps checking that the daemon answers correctly. Used by fuzz.test.ts
// (short run) and fuzz-run.ts (`npm run fuzz:xenstored`, long run).
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { SimXenstored } from '../../src/sim/xenstored/index.js';
import { ERRNO, HEADER_SIZE, MsgType } from '../../src/xenstore/wire.js';

export interface FuzzOptions {
  seed: number;
  /** Stop after this many bursts... */
  bursts?: number;
  /** ...or after this many milliseconds, whichever comes first. */
  durationMs?: number;
  /** Fuzzed connections (half socket/dom0, half guests). */
  connections?: number;
}

export interface FuzzReport {
  bursts: number;
  frames: number;
  replies: number;
  errors: Record<string, number>;
  dropped: number;
  reconnects: number;
  witnessChecks: number;
  problems: string[];
}

/** mulberry32: small, fast, seedable. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const KNOWN_TYPES = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 17, 18, 19, 21, 22];

class FuzzConn {
  private buf: Buffer = Buffer.alloc(0);
  private readonly waiting = new Map<number, { type: number; resolve: (t: number, p: Buffer) => void }>();
  closed = false;
  private closeWaiters: (() => void)[] = [];
  nextReq = 1;
  readonly txIds: number[] = [];
  readonly problems: string[] = [];

  constructor(
    readonly stream: Duplex,
    readonly label: string,
  ) {
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    const onClose = () => {
      if (this.closed) return;
      this.closed = true;
      for (const w of this.waiting.values()) w.resolve(-1, Buffer.alloc(0));
      this.waiting.clear();
      for (const w of this.closeWaiters.splice(0)) w();
    };
    stream.on('end', onClose);
    stream.on('close', onClose);
    stream.on('error', () => undefined);
  }

  private onData(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    while (this.buf.length >= HEADER_SIZE) {
      const len = this.buf.readUInt32LE(12);
      if (len > 4096) {
        this.problems.push(`${this.label}: server sent a frame of ${len} bytes`);
        this.buf = Buffer.alloc(0);
        return;
      }
      if (this.buf.length < HEADER_SIZE + len) return;
      const type = this.buf.readUInt32LE(0);
      const reqId = this.buf.readUInt32LE(4);
      const payload = this.buf.subarray(HEADER_SIZE, HEADER_SIZE + len);
      this.buf = this.buf.subarray(HEADER_SIZE + len);
      if (type === MsgType.WATCH_EVENT) {
        if (reqId !== 0) this.problems.push(`${this.label}: watch event with req_id ${reqId}`);
        const nuls = payload.filter((b) => b === 0).length;
        if (nuls !== 2 || payload[payload.length - 1] !== 0) this.problems.push(`${this.label}: malformed watch event`);
        continue;
      }
      const w = this.waiting.get(reqId);
      if (!w) {
        this.problems.push(`${this.label}: unexpected reply type ${type} req_id ${reqId}`);
        continue;
      }
      this.waiting.delete(reqId);
      w.resolve(type, Buffer.from(payload));
    }
  }

  /** Sends a frame; resolves with the reply (type -1 when the connection closed first). */
  send(frame: Buffer, reqId: number, type: number): Promise<{ type: number; payload: Buffer }> {
    return new Promise((resolve) => {
      if (this.closed) return resolve({ type: -1, payload: Buffer.alloc(0) });
      this.waiting.set(reqId, { type, resolve: (t, p) => resolve({ type: t, payload: p }) });
      this.stream.write(frame);
    });
  }

  writeRaw(bytes: Buffer): void {
    if (!this.closed) this.stream.write(bytes);
  }

  waitClosed(ms: number): Promise<boolean> {
    if (this.closed) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), ms);
      this.closeWaiters.push(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }

  destroy(): void {
    this.stream.destroy();
  }
}

function frame(type: number, reqId: number, txId: number, payload: Buffer, lenOverride?: number): Buffer {
  const out = Buffer.alloc(HEADER_SIZE + payload.length);
  out.writeUInt32LE(type >>> 0, 0);
  out.writeUInt32LE(reqId >>> 0, 4);
  out.writeUInt32LE(txId >>> 0, 8);
  out.writeUInt32LE((lenOverride ?? payload.length) >>> 0, 12);
  payload.copy(out, HEADER_SIZE);
  return out;
}

function vocabulary(rnd: () => number): string[] {
  const n = () => Math.floor(rnd() * 12);
  return [
    '/fz',
    `/fz/${n()}`,
    `/fz/${n()}/${n()}`,
    `data/${n()}`,
    '/local/domain/0',
    `/local/domain/${n()}/k`,
    '/',
    '/tool',
    '@introduceDomain',
    '@releaseDomain',
    '@other',
    '',
    '//',
    '/fz/',
    '/fz//x',
    '/fz/sp ace',
    '/fz/\u00e9',
    '/' + 'y'.repeat(2100 + n()),
    `${n()}`,
    '-1',
    '99999999999999999999',
    'T',
    'F',
    'X',
    `n${n()}`,
    `r${n()}`,
    `b0x${n()}`,
    'q-1',
    'print',
    'quota',
    'help',
    'check',
  ];
}

function randomBytes(rnd: () => number, len: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = rnd() < 0.2 ? 0 : Math.floor(rnd() * 256);
  return b;
}

function plausiblePayload(rnd: () => number): Buffer {
  const words = vocabulary(rnd);
  const parts: Buffer[] = [];
  const count = Math.floor(rnd() * 4);
  for (let i = 0; i < count; i++) {
    parts.push(Buffer.from(words[Math.floor(rnd() * words.length)]!, 'latin1'));
    // Usually NUL-terminated; sometimes not (missing NULs).
    if (rnd() < 0.85) parts.push(Buffer.from([0]));
  }
  if (rnd() < 0.1) parts.push(randomBytes(rnd, Math.floor(rnd() * 64)));
  return Buffer.concat(parts);
}

export async function runFuzz(opts: FuzzOptions): Promise<FuzzReport> {
  const rnd = prng(opts.seed);
  const dir = mkdtempSync(join(tmpdir(), 'sim-xenstored-fuzz-'));
  const socketPath = join(dir, 'socket');
  const xs = new SimXenstored({ quotas: { nodes: 200, watches: 64, transactions: 5 } });
  await xs.listen(socketPath);
  const report: FuzzReport = { bursts: 0, frames: 0, replies: 0, errors: {}, dropped: 0, reconnects: 0, witnessChecks: 0, problems: [] };
  const nconn = opts.connections ?? 4;

  const openSocket = (): Promise<Socket> =>
    new Promise((resolve, reject) => {
      const s = connect(socketPath);
      s.once('connect', () => resolve(s));
      s.once('error', reject);
    });
  const open = async (i: number): Promise<FuzzConn> => {
    if (i % 2 === 0) return new FuzzConn(await openSocket(), `socket${i}`);
    const domid = 10 + i;
    return new FuzzConn(xs.connectAs(domid), `dom${domid}`);
  };
  const conns: FuzzConn[] = [];
  for (let i = 0; i < nconn; i++) conns.push(await open(i));
  const witness = new FuzzConn(await openSocket(), 'witness');

  const deadline = Date.now() + (opts.durationMs ?? 1e12);
  const maxBursts = opts.bursts ?? Number.MAX_SAFE_INTEGER;
  try {
    while (report.bursts < maxBursts && Date.now() < deadline) {
      report.bursts++;
      const i = Math.floor(rnd() * nconn);
      let c = conns[i]!;
      if (c.closed) {
        conns[i] = c = await open(i);
        report.reconnects++;
      }
      const pending: Promise<void>[] = [];
      const burst = 1 + Math.floor(rnd() * 8);
      let expectClose = false;
      for (let k = 0; k < burst && !expectClose; k++) {
        const r = rnd();
        const reqId = c.nextReq++;
        const txId = rnd() < 0.7 ? 0 : rnd() < 0.7 && c.txIds.length ? c.txIds[Math.floor(rnd() * c.txIds.length)]! : Math.floor(rnd() * 5);
        report.frames++;
        if (r < 0.03) {
          // Oversize length: the stream cannot be resynchronised; xenstored drops the connection.
          c.writeRaw(frame(MsgType.READ, reqId, 0, Buffer.alloc(0), 4097 + Math.floor(rnd() * 1e6)));
          expectClose = true;
          break;
        }
        if (r < 0.06) {
          // Half-written packet, then the client goes away.
          const f = frame(MsgType.WRITE, reqId, 0, Buffer.from('/fz/half\0value'));
          c.writeRaw(f.subarray(0, 1 + Math.floor(rnd() * (f.length - 1))));
          c.destroy();
          report.dropped++;
          expectClose = true;
          break;
        }
        if (r < 0.09) {
          // A flood of watches (dom0 has no quota; guests run into E2BIG).
          for (let w = 0; w < 150; w++) {
            const id = c.nextReq++;
            pending.push(
              c.send(frame(MsgType.WATCH, id, 0, Buffer.from(`/fz/${w % 7}\0flood${w}-${reqId}\0`)), id, MsgType.WATCH).then((rep) => check(c, MsgType.WATCH, rep)),
            );
          }
          continue;
        }
        let type: number;
        if (r < 0.15) type = [15, 16, 20, 23, 255, 0xffffffff][Math.floor(rnd() * 6)]!;
        else type = KNOWN_TYPES[Math.floor(rnd() * KNOWN_TYPES.length)]!;
        // Avoid changing quotas or releasing the fuzzers' own domains forever: harmless either way, but it
        // would make later bursts less interesting.
        const payload = r < 0.2 ? randomBytes(rnd, Math.floor(rnd() * 300)) : plausiblePayload(rnd);
        if (type === MsgType.CONTROL && payload.includes('set')) continue;
        pending.push(c.send(frame(type, reqId, txId, payload), reqId, type).then((rep) => check(c, type, rep)));
      }
      if (expectClose) {
        await Promise.all(pending);
        if (!(await c.waitClosed(2000))) report.problems.push(`${c.label}: connection not closed after a fatal frame`);
        continue;
      }
      await Promise.all(pending);
      // The witness: an independent connection must get exact answers throughout.
      const id = witness.nextReq++;
      const rep = await witness.send(frame(MsgType.GET_DOMAIN_PATH, id, 0, Buffer.from('42\0')), id, MsgType.GET_DOMAIN_PATH);
      report.witnessChecks++;
      if (rep.type !== MsgType.GET_DOMAIN_PATH || rep.payload.toString('latin1') !== '/local/domain/42\0') {
        report.problems.push(`witness got type ${rep.type} ${JSON.stringify(rep.payload.toString('latin1'))}`);
        break;
      }
    }
    // After the storm: a brand new connection works, and the daemon's books are consistent.
    const fresh = new FuzzConn(await openSocket(), 'fresh');
    const id = fresh.nextReq++;
    const w = await fresh.send(frame(MsgType.WRITE, id, 0, Buffer.from('/after/fuzz\0ok')), id, MsgType.WRITE);
    if (w.type !== MsgType.WRITE) report.problems.push(`fresh connection: WRITE answered type ${w.type}`);
    const id2 = fresh.nextReq++;
    const rd = await fresh.send(frame(MsgType.READ, id2, 0, Buffer.from('/after/fuzz\0')), id2, MsgType.READ);
    if (rd.payload.toString() !== 'ok') report.problems.push('fresh connection: read back failed');
    fresh.destroy();
  } finally {
    for (const c of [...conns, witness]) {
      c.destroy();
      report.problems.push(...c.problems);
    }
    await xs.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return report;

  function check(c: FuzzConn, type: number, rep: { type: number; payload: Buffer }): void {
    if (rep.type === -1) return; // connection closed (a RELEASE of the guest's domain, say)
    report.replies++;
    if (rep.type === MsgType.ERROR) {
      const name = rep.payload.toString('latin1');
      if (!/^E[A-Z0-9]+\0$/.test(name) || !(name.slice(0, -1) in ERRNO)) {
        c.problems.push(`${c.label}: bad ERROR payload ${JSON.stringify(name)}`);
      } else report.errors[name.slice(0, -1)] = (report.errors[name.slice(0, -1)] ?? 0) + 1;
      return;
    }
    if (rep.type !== type) {
      c.problems.push(`${c.label}: request type ${type} answered with type ${rep.type}`);
      return;
    }
    if (type === MsgType.TRANSACTION_START) {
      const txId = Number(rep.payload.toString('latin1').replace(/\0$/, ''));
      if (!(txId > 0)) c.problems.push(`${c.label}: bad transaction id ${JSON.stringify(rep.payload.toString())}`);
      else c.txIds.push(txId);
    }
  }
}
