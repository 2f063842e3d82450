import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createConnection, type Socket } from 'node:net';
import { encodeFrame, FrameDecoder } from '../../src/hypervisor/rpc-frames.js';
import { buildGuest, startHarness, waitFor, type Harness } from './harness.js';

/** A raw connection: send bytes, read decoded frames. */
class Raw {
  private readonly decoder = new FrameDecoder();
  private readonly queue: unknown[] = [];
  private waiter: (() => void) | undefined;
  closed = false;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.queue.push(...this.decoder.push(chunk));
      this.waiter?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
    socket.on('error', () => undefined);
  }

  static open(path: string): Promise<Raw> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(path, () => resolve(new Raw(socket)));
      socket.once('error', reject);
    });
  }

  send(bytes: Buffer | unknown): void {
    this.socket.write(Buffer.isBuffer(bytes) ? bytes : encodeFrame(bytes));
  }

  async next(timeoutMs = 2000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    while (this.queue.length === 0) {
      if (this.closed) throw new Error('connection closed');
      if (Date.now() > deadline) throw new Error('no reply');
      await new Promise<void>((r) => {
        this.waiter = r;
        setTimeout(r, 50);
      });
    }
    return this.queue.shift();
  }

  async waitClosed(timeoutMs = 2000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.ok(this.closed, 'connection should be closed');
  }

  close(): void {
    this.socket.destroy();
  }
}

function rawFrame(body: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  return Buffer.concat([head, body]);
}

describe('sim hypervisor: bad input on the socket gets errors, the server carries on', { timeout: 20_000 }, () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(async () => h.close());

  test('an undecodable frame gets an EPROTO error and the connection goes on', async () => {
    const raw = await Raw.open(h.socketPath);
    raw.send(rawFrame(Buffer.from([0xc1, 0xc1, 0xc1])));
    const err = await raw.next();
    assert.equal(err.t, 'error');
    assert.equal(err.error.errno, 'EPROTO');
    raw.send({ t: 'call', id: 1, call: 'version', args: [] });
    const res = await raw.next();
    assert.deepEqual(res, { t: 'res', id: 1, ok: { major: 4, minor: 17, extra: '.0-sim' } });
    raw.close();
  });

  test('an oversized frame length gets an error and that connection is closed', async () => {
    const raw = await Raw.open(h.socketPath);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(0xfffffff0);
    raw.send(head);
    const err = await raw.next();
    assert.equal(err.error.errno, 'EPROTO');
    assert.match(err.error.detail, /exceeds/);
    await raw.waitClosed();
  });

  test('a connection that breaks its framing while its save waits on a callback: the save ends, the domain is not left busy', async () => {
    const domid = await buildGuest(h.hv, { memoryMib: 4 });
    // A stream connection: its token comes in a frame, then raw stream bytes follow (drained unread).
    const stream = createConnection(h.socketPath);
    stream.on('error', () => undefined);
    stream.write(encodeFrame({ t: 'stream' }));
    const token = await new Promise<string>((resolve) => {
      const decoder = new FrameDecoder();
      const onData = (chunk: Buffer): void => {
        const reply = decoder.push(chunk, () => true)[0] as { token?: string } | undefined;
        if (!reply) return;
        stream.off('data', onData);
        stream.on('data', () => undefined);
        resolve(reply.token!);
      };
      stream.on('data', onData);
    });
    const raw = await Raw.open(h.socketPath);
    raw.send({ t: 'call', id: 1, call: 'save', args: [domid, token, { live: false }] });
    const cb = await raw.next();
    assert.equal(cb.t, 'cb', 'the server asks for the suspend callback');
    const head = Buffer.alloc(4);
    head.writeUInt32BE(0xfffffff0);
    raw.send(head); // the framing is broken: the server closes this connection
    await raw.waitClosed();
    // The save is over (its callback failed with the connection): log-dirty may be enabled again.
    await waitFor(async () => {
      try {
        await h.hv.shadowControl(domid, 'enable_logdirty');
        return true;
      } catch (err) {
        if ((err as { errno?: string }).errno === 'EBUSY') return false;
        throw err;
      }
    });
    await h.hv.shadowControl(domid, 'off');
    stream.destroy();
    await h.hv.destroy(domid);
  });

  test('messages that are not calls: not a map, unknown kind, no id, stray callback answer', async () => {
    const raw = await Raw.open(h.socketPath);
    raw.send(42);
    assert.equal((await raw.next()).error.errno, 'EINVAL');
    raw.send({ t: 'bogus' });
    assert.match((await raw.next()).error.detail, /unknown message kind/);
    raw.send({ t: 'call', call: 'version', args: [] });
    assert.match((await raw.next()).error.detail, /id/);
    raw.send({ t: 'cbres', id: 99, ok: true });
    assert.match((await raw.next()).error.detail, /no callback/);
    raw.close();
  });

  test('unknown calls get ENOSYS; bad arguments get EINVAL naming the argument', async () => {
    const raw = await Raw.open(h.socketPath);
    const cases: [string, unknown, string, RegExp][] = [
      ['frobnicate', [], 'ENOSYS', /unknown call/],
      ['__proto__', [], 'ENOSYS', /unknown call/],
      ['getDomainInfo', ['zero'], 'EINVAL', /#0/],
      ['getDomainInfo', [-1], 'EINVAL', /#0/],
      ['getDomainInfo', [1, 2], 'EINVAL', /takes 1/],
      ['createDomain', [{ handle: 'x', flags: 0 }], 'EINVAL', /maxVcpus/],
      ['createDomain', [{ handle: '00000000-0000-4000-8000-000000000001', flags: 0, maxVcpus: 1, colour: 'red' }], 'EINVAL', /unknown field "colour"/],
      ['createDomain', 'not-an-array', 'EINVAL', /args must be an array/],
      ['shadowControl', [1, 'explode'], 'EINVAL', /one of/],
      ['build', [1, { type: 'pv', kernel: 'k', memoryMib: 'lots', storePort: 1, consolePort: 2 }], 'EINVAL', /memoryMib/],
      ['save', [1, 'no-such-token', { live: true }], 'EINVAL', /token/],
      ['restore', [0, 'no-such-token', { storePort: 1, consolePort: 2 }], 'EINVAL', /token/],
      ['shutdown', [1, 1e9], 'EINVAL', /#1/],
    ];
    let id = 100;
    for (const [call, args, errno, detail] of cases) {
      raw.send({ t: 'call', id: ++id, call, args });
      const res = await raw.next();
      assert.equal(res.id, id);
      assert.equal(res.error?.errno, errno, `${call} ${JSON.stringify(args)} → ${JSON.stringify(res)}`);
      assert.match(res.error.detail, detail);
    }
    raw.close();
  });

  test('a connection dropped mid-frame and garbage bytes do not hurt the server; the backend still works', async () => {
    const raw = await Raw.open(h.socketPath);
    raw.send(Buffer.from([0, 0, 1, 0, 1, 2, 3]));
    raw.close();
    const raw2 = await Raw.open(h.socketPath);
    raw2.send(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    await raw2.next().catch(() => undefined);
    raw2.close();
    assert.equal((await h.hv.version()).major, 4);
    assert.ok((await h.hv.getDomainInfoList(0, 5)).length >= 1);
  });

  test('fuzz: 400 random calls with random arguments all get an answer; the server stays up', async () => {
    let seed = 12345;
    const rnd = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    const values = (): unknown => {
      const pick = rnd(12);
      if (pick === 0) return rnd(5);
      if (pick === 1) return -rnd(1e6);
      if (pick === 2) return 2 ** 40 + rnd(10);
      if (pick === 3) return 'x'.repeat(rnd(40));
      if (pick === 4) return null;
      if (pick === 5) return [values(), values()];
      if (pick === 6) return { handle: '00000000-0000-4000-8000-00000000abcd', flags: rnd(3), maxVcpus: rnd(3) };
      if (pick === 7) return { type: ['pv', 'hvm', 'x'][rnd(3)], kernel: 'k', memoryMib: rnd(20), storePort: 1, consolePort: 2 };
      if (pick === 8) return { live: rnd(2) === 0, maxRounds: rnd(3) };
      if (pick === 9) return 1.5;
      if (pick === 10) return true;
      return { [String(rnd(3))]: values() };
    };
    const calls = ['version', 'physinfo', 'createDomain', 'setMaxVcpus', 'setMaxMem', 'build', 'getDomainInfoList', 'getDomainInfo',
      'pause', 'unpause', 'shutdown', 'destroy', 'evtchnAllocUnbound', 'shadowControl', 'save', 'restore', 'resume', 'memoryChecksum', 'nope'];
    const raw = await Raw.open(h.socketPath);
    for (let id = 1; id <= 400; id++) {
      const args = Array.from({ length: rnd(4) }, () => (rnd(3) === 0 ? rnd(4) : values()));
      raw.send({ t: 'call', id, call: calls[rnd(calls.length)], args });
      const res = await raw.next();
      assert.equal(res.t, 'res');
      assert.equal(res.id, id);
      assert.ok('ok' in res || typeof res.error?.errno === 'string', JSON.stringify(res));
    }
    raw.close();
    assert.equal((await h.hv.version()).major, 4);
  });

  test('the backend reconnects after its connection was dropped by the server', async () => {
    await h.server.close();
    await assert.rejects(h.hv.version());
    await h.server.listen(h.socketPath);
    assert.equal((await h.hv.version()).major, 4);
  });
});
