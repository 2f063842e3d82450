// The native socket client against a scripted fake xenstored: framing, req_id matching with replies out of
// order, timeouts, AbortSignal, reconnection, transaction retries, DIRECTORY_PART fallback.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { XsClient } from '../../src/xenstore/client.js';
import { XsConnectionError } from '../../src/xenstore/errors.js';
import { buildFrame, parseDirectoryPart, replyStrings } from '../../src/xenstore/frame.js';
import { XsError, XsTimeoutError, type Watch, type WatchEvent } from '../../src/xenstore/types.js';
import { MsgType } from '../../src/xenstore/wire.js';
import { FakeXenstored } from './fake-xenstored.js';
import { WatchStream } from '../../src/xenstore/watch-stream.js';

const dir = mkdtempSync(join(tmpdir(), 'xs-unit-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const sockPath = () => join(dir, `s${++n}`);

async function nextEvent(w: Watch, ms = 2000): Promise<WatchEvent> {
  const it = w[Symbol.asyncIterator]();
  let timer: NodeJS.Timeout | undefined;
  try {
    const r = await Promise.race([
      it.next(),
      new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error(`no watch event within ${ms} ms`)), ms))),
    ]);
    assert.equal(r.done, false);
    return r.value as WatchEvent;
  } finally {
    clearTimeout(timer);
  }
}

describe('frame codec', () => {
  it('builds a request frame in one buffer with header and NUL-separated payload', () => {
    const f = buildFrame(MsgType.WRITE, 7, 'write', '/a/b', undefined, 'xyz');
    assert.equal(f.readUInt32LE(0), MsgType.WRITE);
    assert.equal(f.readUInt32LE(8), 7);
    assert.equal(f.readUInt32LE(12), 8);
    assert.equal(f.subarray(16).toString('latin1'), '/a/b\0xyz');
    const w = buildFrame(MsgType.WATCH, 0, 'watch', '/p', 'tok');
    assert.equal(w.subarray(16).toString('latin1'), '/p\0tok\0');
  });

  it('rejects NULs inside strings (EINVAL) and payloads over 4096 bytes (E2BIG) before sending', () => {
    assert.throws(() => buildFrame(MsgType.READ, 0, 'read', 'a\0b'), (e: unknown) => e instanceof XsError && e.errno === 'EINVAL');
    assert.throws(
      () => buildFrame(MsgType.WRITE, 0, 'write', '/x', undefined, Buffer.alloc(4096)),
      (e: unknown) => e instanceof XsError && e.errno === 'E2BIG',
    );
    assert.doesNotThrow(() => buildFrame(MsgType.WRITE, 0, 'write', '/x', undefined, Buffer.alloc(4093)));
  });

  it('parses DIRECTORY_PART slices and recognises the final one', () => {
    const mid = parseDirectoryPart(Buffer.from('5\0a\0bb\0'), 'd', '/');
    assert.deepEqual(mid, { generation: '5', children: ['a', 'bb'], done: false, bytes: 5 });
    const last = parseDirectoryPart(Buffer.from('5\0c\0\0'), 'd', '/');
    assert.deepEqual(last.children, ['c']);
    assert.equal(last.done, true);
    const empty = parseDirectoryPart(Buffer.from('5\0\0'), 'd', '/');
    assert.deepEqual(empty, { generation: '5', children: [], done: true, bytes: 1 });
    assert.deepEqual(replyStrings(Buffer.from('x\0y')), ['x', 'y']);
  });
});

describe('watch stream', () => {
  it('queues events until read, drops the oldest past its bound, and surfaces an error after queued events', async () => {
    let unregistered = 0;
    const w = new WatchStream('/p', 't', async () => void unregistered++, 3);
    for (let i = 0; i < 5; i++) w.push({ path: `/p/${i}`, token: 't' });
    assert.equal(w.dropped, 2);
    w.end(new Error('gone'));
    const it = w[Symbol.asyncIterator]();
    assert.equal((await it.next()).value?.path, '/p/2');
    assert.equal((await it.next()).value?.path, '/p/3');
    assert.equal((await it.next()).value?.path, '/p/4');
    await assert.rejects(it.next(), /gone/);
    assert.equal((await it.next()).done, true);
    assert.equal(unregistered, 0, 'ended by the transport, not closed by the user');
  });

  it('wakes a waiting reader and unregisters once on close', async () => {
    let unregistered = 0;
    const w = new WatchStream('/p', 't', async () => void unregistered++);
    const it = w[Symbol.asyncIterator]();
    const waiting = it.next();
    w.push({ path: '/p/x', token: 't' });
    assert.equal((await waiting).value?.path, '/p/x');
    const ending = it.next();
    await w.close();
    await w.close();
    assert.equal((await ending).done, true);
    assert.equal(unregistered, 1);
  });
});

describe('native client against a scripted server', () => {
  it('does the basic operations and types errors by errno', async () => {
    const path = sockPath();
    const fake = await new FakeXenstored().listen(path);
    const c = await XsClient.connect({ path, timeoutMs: 2000 });
    try {
      await c.write('/a', 'one');
      assert.equal(await c.read('/a'), 'one');
      await c.write('/a/b', Buffer.from([0xc3, 0xa9]));
      assert.equal(await c.read('/a/b'), 'é');
      assert.deepEqual(await c.directory('/a'), ['b']);
      await c.setPerms('/a', [{ id: 0, perm: 'n' }, { id: 5, perm: 'r' }]);
      assert.deepEqual(await c.getPerms('/a'), [{ id: 0, perm: 'n' }, { id: 5, perm: 'r' }]);
      await assert.rejects(c.read('/nope'), (e: unknown) => e instanceof XsError && e.errno === 'ENOENT' && e.path === '/nope');
      assert.equal(await c.tryRead('/nope'), undefined);
      assert.equal(await c.getDomainPath(3), '/local/domain/3');
      assert.equal(await c.isDomainIntroduced(0), true);
      assert.equal(await c.isDomainIntroduced(4), false);
      await assert.rejects(c.getDomainPath(-1), (e: unknown) => e instanceof XsError && e.errno === 'EINVAL');
      await c.rm('/a');
      assert.equal(await c.tryRead('/a/b'), undefined);
    } finally {
      await c.close();
      await fake.close();
    }
  });

  it('matches replies to requests by req_id when the server answers out of order', async () => {
    const path = sockPath();
    const fake = await new FakeXenstored().listen(path);
    for (let i = 0; i < 8; i++) fake.nodes.set(`/n${i}`, { value: Buffer.from(`v${i}`), perms: ['n0'] });
    fake.opts.reverseBatch = 8;
    const c = await XsClient.connect({ path, timeoutMs: 2000 });
    try {
      const values = await Promise.all(Array.from({ length: 8 }, (_, i) => c.read(`/n${i}`)));
      assert.deepEqual(values, Array.from({ length: 8 }, (_, i) => `v${i}`));
      const ids = fake.received.map((m) => m.reqId);
      assert.equal(new Set(ids).size, ids.length, 'every request in flight has its own req_id');
    } finally {
      await c.close();
      await fake.close();
    }
  });

  it('times out a call the server never answers, and the connection carries on', async () => {
    const path = sockPath();
    const fake = await new FakeXenstored({ silentTypes: new Set([MsgType.READ]) }).listen(path);
    const c = await XsClient.connect({ path, timeoutMs: 5000 });
    try {
      const t0 = Date.now();
      await assert.rejects(c.read('/x', { timeoutMs: 80 }), (e: unknown) => e instanceof XsTimeoutError && e.timeoutMs === 80);
      const took = Date.now() - t0;
      assert.ok(took >= 70 && took < 1500, `timed out after ${took} ms`);
      // Different per-call timeouts expire in their own order.
      const slow = c.read('/y', { timeoutMs: 400 }).catch((e: unknown) => e);
      const fast = c.read('/z', { timeoutMs: 60 }).catch((e: unknown) => e);
      assert.ok((await fast) instanceof XsTimeoutError);
      await c.write('/w', '1');
      assert.ok((await slow) instanceof XsTimeoutError);
    } finally {
      await c.close();
      await fake.close();
    }
  });

  it('honours AbortSignal: already aborted (nothing sent) and aborted while waiting', async () => {
    const path = sockPath();
    const fake = await new FakeXenstored({ silentTypes: new Set([MsgType.READ]) }).listen(path);
    const c = await XsClient.connect({ path, timeoutMs: 5000 });
    try {
      const before = fake.received.length;
      await assert.rejects(c.read('/x', { signal: AbortSignal.abort() }), { name: 'AbortError' });
      const ac = new AbortController();
      const p = c.read('/x', { signal: ac.signal });
      setTimeout(() => ac.abort(new Error('stop now')), 30);
      await assert.rejects(p, /stop now/);
      await c.write('/w', '1');
      assert.equal(fake.received.length, before + 2, 'the pre-aborted call sent nothing');
    } finally {
      await c.close();
      await fake.close();
    }
  });

  it('retries the whole transaction body on EAGAIN and aborts on a body error', async () => {
    const path = sockPath();
    const fake = await new FakeXenstored({ conflicts: 2 }).listen(path);
    const c = await XsClient.connect({ path, timeoutMs: 2000 });
    try {
      let runs = 0;
      const r = await c.transaction(async (tx) => {
        runs++;
        assert.ok(tx.id > 0);
        await tx.write('/t', String(runs));
        return runs;
      });
      assert.equal(r, 3);
      assert.equal(runs, 3);
      await assert.rejects(
        c.transaction(async () => {
          throw new Error('body failed');
        }),
        /body failed/,
      );
      const ends = fake.received.filter((m) => m.type === MsgType.TRANSACTION_END).map((m) => m.payload.toString('latin1'));
      assert.deepEqual(ends, ['T\0', 'T\0', 'T\0', 'F\0']);
      fake.opts.conflicts = 5;
      await assert.rejects(
        c.transaction(async (tx) => tx.write('/t', 'x'), { retries: 2 }),
        (e: unknown) => e instanceof XsError && e.errno === 'EAGAIN',
      );
    } finally {
      await c.close();
      await fake.close();
    }
  });

  it('falls back to DIRECTORY_PART when DIRECTORY answers E2BIG', async () => {
    const path = sockPath();
    const fake = await new FakeXenstored({ directoryLimit: 16, partSize: 40 }).listen(path);
    const kids = Array.from({ length: 30 }, (_, i) => `child-${i}`);
    fake.nodes.set('/big', { value: Buffer.alloc(0), perms: ['n0'] });
    for (const k of kids) fake.nodes.set(`/big/${k}`, { value: Buffer.alloc(0), perms: ['n0'] });
    const c = await XsClient.connect({ path, timeoutMs: 2000 });
    try {
      assert.deepEqual(await c.directory('/big'), kids);
      const parts = fake.received.filter((m) => m.type === MsgType.DIRECTORY_PART);
      assert.ok(parts.length > 3, `used ${parts.length} parts`);
      assert.deepEqual(await c.directory('/'), ['big']);
    } finally {
      await c.close();
      await fake.close();
    }
  });

  it('reconnects after the server restarts: in-flight calls fail, watches are re-registered, transactions are lost', async () => {
    const path = sockPath();
    let fake = await new FakeXenstored({ silentTypes: new Set([MsgType.READ]) }).listen(path);
    const c = await XsClient.connect({ path, timeoutMs: 3000, reconnect: { minDelayMs: 10, maxDelayMs: 50 } });
    try {
      const w = await c.watch('/watched', 'tok');
      assert.deepEqual(await nextEvent(w), { path: '/watched', token: 'tok' });
      const tx = await c.startTransaction();
      const inflight = c.read('/x').catch((e: unknown) => e);
      await new Promise((r) => setTimeout(r, 20));
      const reconnected = new Promise<void>((res) => c.once('reconnected', () => res()));
      await fake.close();
      assert.ok((await inflight) instanceof XsConnectionError);
      // Calls made while disconnected wait for the new connection.
      const queued = c.write('/queued', 'q');
      await new Promise((r) => setTimeout(r, 60));
      fake = await new FakeXenstored().listen(path);
      await reconnected;
      await queued;
      assert.equal(fake.nodes.get('/queued')?.value.toString(), 'q');
      assert.deepEqual(await nextEvent(w), { path: '/watched', token: 'tok' }, 're-registration fires once');
      await c.write('/watched/child', '1');
      assert.deepEqual(await nextEvent(w), { path: '/watched/child', token: 'tok' });
      await assert.rejects(tx.read('/x'), (e: unknown) => e instanceof XsConnectionError && /transaction lost/.test(e.message));
      await w.close();
      assert.ok(fake.received.some((m) => m.type === MsgType.UNWATCH));
    } finally {
      await c.close();
      await fake.close();
    }
  });

  it('ends a transaction whose TRANSACTION_START reply came after the call timed out', async () => {
    const path = sockPath();
    const fake = await new FakeXenstored({ delayMs: new Map([[MsgType.TRANSACTION_START, 150]]) }).listen(path);
    const c = await XsClient.connect({ path, timeoutMs: 2000 });
    try {
      await assert.rejects(c.startTransaction({ timeoutMs: 40 }), XsTimeoutError);
      await new Promise((r) => setTimeout(r, 250));
      const end = fake.received.find((m) => m.type === MsgType.TRANSACTION_END);
      assert.ok(end, 'the leaked transaction was ended');
      assert.equal(end.payload.toString('latin1'), 'F\0');
      assert.equal(end.txId, 1);
    } finally {
      await c.close();
      await fake.close();
    }
  });

  it('takes back a watch whose registration timed out', async () => {
    const path = sockPath();
    const fake = await new FakeXenstored({ silentTypes: new Set([MsgType.WATCH]) }).listen(path);
    const c = await XsClient.connect({ path, timeoutMs: 2000 });
    try {
      await assert.rejects(c.watch('/p', 'tk', { timeoutMs: 50 }), XsTimeoutError);
      await c.write('/sync', '1'); // the UNWATCH went out before this write's reply came back
      const unwatch = fake.received.find((m) => m.type === MsgType.UNWATCH);
      assert.equal(unwatch?.payload.toString('latin1'), '/p\0tk\0');
    } finally {
      await c.close();
      await fake.close();
    }
  });

  it('drops a connection that sends a corrupt frame and reconnects', async () => {
    const path = sockPath();
    const fake = await new FakeXenstored({ corruptTypes: new Set([MsgType.GET_PERMS]) }).listen(path);
    const c = await XsClient.connect({ path, timeoutMs: 2000, reconnect: { minDelayMs: 10, maxDelayMs: 50 } });
    try {
      const reconnected = new Promise<void>((res) => c.once('reconnected', () => res()));
      await assert.rejects(c.getPerms('/'), XsConnectionError);
      await reconnected;
      await c.write('/after', 'ok');
      assert.equal(await c.read('/after'), 'ok');
    } finally {
      await c.close();
      await fake.close();
    }
  });

  it('fails pending and later calls once closed', async () => {
    const path = sockPath();
    const fake = await new FakeXenstored({ silentTypes: new Set([MsgType.READ]) }).listen(path);
    const c = await XsClient.connect({ path, timeoutMs: 3000 });
    const pending = c.read('/x').catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 10));
    await c.close();
    assert.ok((await pending) instanceof XsConnectionError);
    await assert.rejects(c.read('/x'), XsConnectionError);
    await fake.close();
  });

  it('throws a clear error when nothing listens', async () => {
    await assert.rejects(XsClient.connect({ path: join(dir, 'missing.sock') }), /ENOENT/);
  });

  it('delivers watch events by token and ends iterators on break', async () => {
    const path = sockPath();
    const fake = await new FakeXenstored().listen(path);
    const c = await XsClient.connect({ path, timeoutMs: 2000 });
    try {
      const w = await c.watch('/d');
      const seen: string[] = [];
      const loop = (async () => {
        for await (const ev of w) {
          seen.push(ev.path);
          if (seen.length === 3) break;
        }
      })();
      await c.write('/d/1', 'a');
      await c.write('/other', 'x');
      await c.write('/d/2', 'b');
      await loop;
      assert.deepEqual(seen, ['/d', '/d/1', '/d/2']);
      await new Promise((r) => setTimeout(r, 20));
      assert.ok(fake.received.some((m) => m.type === MsgType.UNWATCH), 'break unregistered the watch');
    } finally {
      await c.close();
      await fake.close();
    }
  });
});
