// The one client test suite, run for both XenstoreClient transports ('native' socket client, 'libxenstore'
// through koffi) against a given server: the same calls must give the same results through either transport.
// client-sim.test.ts runs it against the sim xenstored, client-cxenstored.test.ts against Debian's C xenstored.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openXenstore, type XenstoreTransport } from '../../src/xenstore/index.js';
import { XsError, XsTimeoutError, type Watch, type WatchEvent, type XenstoreClient } from '../../src/xenstore/types.js';
import { loadLibxenstore } from '../../bindings/xenstore-lib.js';
import { XsConnectionError } from '../../src/xenstore/errors.js';
import type { TxHandle } from '../../src/xenstore/transaction.js';
import { serverUnavailable, startServer, type ServerHandle, type ServerKind } from './servers.js';

function transportUnavailable(t: XenstoreTransport): string | undefined {
  if (t === 'native') return undefined;
  try {
    loadLibxenstore();
    return undefined;
  } catch (e) {
    return `libxenstore.so.4 not loadable (Debian package libxenstore4): ${(e as Error).message}`;
  }
}

async function nextEvent(w: Watch, ms = 3000): Promise<WatchEvent> {
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

/** Both transports offer startTransaction() beside the interface's transaction() helper. */
const startTx = (c: XenstoreClient) => (c as unknown as { startTransaction(): Promise<TxHandle> }).startTransaction();

const isErrno = (errno: string) => (e: unknown) => e instanceof XsError && e.errno === errno;

const TRANSPORTS: XenstoreTransport[] = ['native', 'libxenstore'];

export function clientSuite(kind: ServerKind): void {
  for (const transport of TRANSPORTS) {
    const skip = serverUnavailable(kind) ?? transportUnavailable(transport);
    describe(`xenstore client over ${transport} against ${kind} xenstored`, { skip, timeout: 60_000 }, () => {
      let dir: string;
      let server: ServerHandle;
      let xs: XenstoreClient;
      const open = (extra: Parameters<typeof openXenstore>[0] = {}) =>
        openXenstore({ transport, path: server.path, timeoutMs: 5000, healthCheckMs: 50, reconnect: { minDelayMs: 20, maxDelayMs: 200 }, ...extra });

      before(async () => {
        dir = mkdtempSync(join(tmpdir(), `xs-${kind}-${transport}-`));
        server = await startServer(kind, dir);
        xs = await open();
      });
      after(async () => {
        await xs?.close();
        await server?.stop();
        rmSync(dir, { recursive: true, force: true });
      });

      it('reads, writes, lists and removes nodes', async () => {
        await xs.write('/t/basic/a', 'alpha');
        await xs.write('/t/basic/b', Buffer.from('beta'));
        await xs.mkdir('/t/basic/dir');
        assert.equal(await xs.read('/t/basic/a'), 'alpha');
        assert.equal(await xs.read('/t/basic/b'), 'beta');
        assert.equal(await xs.read('/t/basic/dir'), '');
        assert.deepEqual((await xs.directory('/t/basic')).sort(), ['a', 'b', 'dir']);
        await xs.write('/t/basic/a', '');
        assert.equal(await xs.read('/t/basic/a'), '');
        await xs.rm('/t/basic');
        await assert.rejects(xs.read('/t/basic/a'), isErrno('ENOENT'));
        assert.equal(await xs.tryRead('/t/basic/a'), undefined);
        await assert.rejects(xs.directory('/t/basic'), isErrno('ENOENT'));
      });

      it('lists a directory too large for one reply (DIRECTORY_PART)', async () => {
        const names = Array.from({ length: 180 }, (_, i) => `a-rather-long-child-name-${String(i).padStart(4, '0')}`);
        await Promise.all(names.map((n) => xs.write(`/t/big/${n}`, '')));
        const listed = await xs.directory('/t/big');
        assert.equal(listed.length, names.length);
        assert.deepEqual([...listed].sort(), names);
        await xs.rm('/t/big');
      });

      it('sets and reads back permissions', async () => {
        await xs.write('/t/perm', 'x');
        await xs.setPerms('/t/perm', [
          { id: 0, perm: 'n' },
          { id: 5, perm: 'r' },
          { id: 6, perm: 'b' },
        ]);
        assert.deepEqual(await xs.getPerms('/t/perm'), [
          { id: 0, perm: 'n' },
          { id: 5, perm: 'r' },
          { id: 6, perm: 'b' },
        ]);
        await xs.write('/t/perm/child', 'y');
        assert.deepEqual(await xs.getPerms('/t/perm/child'), await xs.getPerms('/t/perm'), 'children inherit');
      });

      it('gives typed errors', async () => {
        await assert.rejects(xs.read('/t/missing/node'), isErrno('ENOENT'));
        await assert.rejects(xs.read('/t/bad//path'), isErrno('EINVAL'));
        await assert.rejects(xs.write('/t/big-value', Buffer.alloc(5000)), isErrno('E2BIG'));
        await assert.rejects(xs.getPerms('/t/missing'), isErrno('ENOENT'));
        const e = await xs.read('/t/missing').catch((err: unknown) => err);
        assert.ok(e instanceof XsError && e.op === 'read' && e.path === '/t/missing' && /ENOENT/.test(e.message));
      });

      it('answers domain queries', async () => {
        assert.equal(await xs.getDomainPath(7), '/local/domain/7');
        assert.equal(await xs.getDomainPath(0), '/local/domain/0');
        assert.equal(await xs.isDomainIntroduced(0), true);
      });

      it('introduces and releases domains, firing @introduceDomain and @releaseDomain', async () => {
        const intro = await xs.watch('@introduceDomain', 'tok-intro');
        const rel = await xs.watch('@releaseDomain', 'tok-rel');
        assert.equal((await nextEvent(intro)).path, '@introduceDomain');
        assert.equal((await nextEvent(rel)).path, '@releaseDomain');
        assert.equal(await xs.isDomainIntroduced(9), false);
        await xs.introduceDomain(9, 0x1234n, 17);
        assert.equal(await xs.isDomainIntroduced(9), true);
        assert.deepEqual(await nextEvent(intro), { path: '@introduceDomain', token: 'tok-intro' });
        await xs.releaseDomain(9);
        assert.equal(await xs.isDomainIntroduced(9), false);
        assert.deepEqual(await nextEvent(rel), { path: '@releaseDomain', token: 'tok-rel' });
        await intro.close();
        await rel.close();
      });

      it('sends CONTROL commands', async () => {
        assert.equal(await xs.control(['print', 'hello from the client suite']), 'OK');
      });

      it('commits transactions, and retries the whole body when a concurrent write conflicts', async () => {
        await xs.write('/t/tx/counter', '10');
        let runs = 0;
        const result = await xs.transaction(async (tx) => {
          runs++;
          const v = Number(await tx.read('/t/tx/counter'));
          if (runs === 1) await xs.write('/t/tx/counter', '20'); // someone else changes what we read
          await tx.write('/t/tx/counter', String(v + 1));
          return v + 1;
        });
        assert.equal(runs, 2);
        assert.equal(result, 21);
        assert.equal(await xs.read('/t/tx/counter'), '21');
        // Inside a transaction its own writes are visible, outside not until commit.
        const tx = await startTx(xs);
        await tx.write('/t/tx/isolated', 'in-tx');
        assert.equal(await tx.read('/t/tx/isolated'), 'in-tx');
        assert.equal(await xs.tryRead('/t/tx/isolated'), undefined);
        await tx.end(false);
        assert.equal(await xs.tryRead('/t/tx/isolated'), undefined, 'aborted');
        await assert.rejects(
          xs.transaction(async (t) => {
            await t.write('/t/tx/never', '1');
            throw new Error('body fails');
          }),
          /body fails/,
        );
        assert.equal(await xs.tryRead('/t/tx/never'), undefined);
      });

      it('keeps many requests in flight and matches every reply', async () => {
        const n = 200;
        await Promise.all(Array.from({ length: n }, (_, i) => xs.write(`/t/many/n${i}`, `value-${i}`)));
        const values = await Promise.all(Array.from({ length: n }, (_, i) => xs.read(`/t/many/n${i}`)));
        assert.deepEqual(values, Array.from({ length: n }, (_, i) => `value-${i}`));
        const mixed = await Promise.all(
          Array.from({ length: 60 }, (_, i) => (i % 3 === 0 ? xs.read(`/t/many/missing${i}`).catch((e: unknown) => (e as XsError).errno) : xs.read(`/t/many/n${i}`))),
        );
        mixed.forEach((v, i) => assert.equal(v, i % 3 === 0 ? 'ENOENT' : `value-${i}`));
        await xs.rm('/t/many');
      });

      it('serialises concurrent read-modify-write transactions through EAGAIN retries', async () => {
        await xs.write('/t/tx/shared', '0');
        const workers = 6;
        await Promise.all(
          Array.from({ length: workers }, () =>
            xs.transaction(async (tx) => {
              const v = Number(await tx.read('/t/tx/shared'));
              await new Promise((r) => setTimeout(r, 2)); // widen the window so they overlap
              await tx.write('/t/tx/shared', String(v + 1));
            }, { retries: 100 }),
          ),
        );
        assert.equal(await xs.read('/t/tx/shared'), String(workers));
      });

      it('delivers watch events: once on registration, then for changes at or below the path', async () => {
        const w = await xs.watch('/t/w', 'tok-w');
        assert.deepEqual(await nextEvent(w), { path: '/t/w', token: 'tok-w' });
        await xs.write('/t/w/child', '1');
        assert.deepEqual(await nextEvent(w), { path: '/t/w/child', token: 'tok-w' });
        await xs.write('/t/elsewhere', '1');
        await xs.write('/t/w', '2');
        assert.deepEqual(await nextEvent(w), { path: '/t/w', token: 'tok-w' }, 'nothing for /t/elsewhere');
        await assert.rejects(xs.watch('/t/w', 'tok-w'), isErrno('EEXIST'));
        await w.close();
        await xs.write('/t/w/after', '1');
        const w2 = await xs.watch('/t/w2');
        assert.equal((await nextEvent(w2)).path, '/t/w2');
        await w2.close();
      });

      it('reconnects after xenstored restarts and re-registers watches', async () => {
        const c = await open();
        try {
          const w = await c.watch('/t/restart', 'tok-r');
          assert.equal((await nextEvent(w)).path, '/t/restart');
          const tx = await startTx(c);
          await server.restart();
          // Re-registration on the new server fires the watch once.
          assert.deepEqual(await nextEvent(w, 10_000), { path: '/t/restart', token: 'tok-r' });
          await c.write('/t/restart/x', 'after');
          assert.deepEqual(await nextEvent(w), { path: '/t/restart/x', token: 'tok-r' });
          assert.equal(await c.read('/t/restart/x'), 'after');
          // A transaction of the old connection cannot go on.
          await assert.rejects(tx.read('/t/restart/x'), XsConnectionError);
        } finally {
          await c.close();
        }
        // The suite's shared client (no watches) recovers on its next call: the native client has reconnected
        // (or queues the call until it has); libxenstore's write fails with EPIPE on the dead handle and is sent
        // again on a reopened one.
        await xs.write('/t/alive', '1');
        assert.equal(await xs.read('/t/alive'), '1');
      });

      describe('against a server that never answers', () => {
        let silent: net.Server;
        const sockets = new Set<net.Socket>();
        let silentPath: string;
        before(async () => {
          silentPath = join(dir, 'silent.sock');
          silent = net.createServer((s) => {
            sockets.add(s);
            s.on('error', () => undefined);
          });
          await new Promise<void>((r) => silent.listen(silentPath, () => r()));
        });
        after(async () => {
          // Closing the connections releases any libxenstore call still blocked on a worker thread.
          for (const s of sockets) s.destroy();
          await new Promise<void>((r) => silent.close(() => r()));
        });

        it('times out calls and honours AbortSignal', async () => {
          const c = await openXenstore({ transport, path: silentPath, timeoutMs: 10_000, reconnect: false });
          try {
            const t0 = Date.now();
            // The event loop keeps turning while the call waits (libxenstore's blocking call runs on a worker).
            let ticks = 0;
            const ticker = setInterval(() => ticks++, 10);
            await assert.rejects(c.read('/x', { timeoutMs: 300 }), (e: unknown) => e instanceof XsTimeoutError);
            clearInterval(ticker);
            const took = Date.now() - t0;
            // Loose bounds: CI machines are loaded; a blocked loop would show ~0 ticks, a live one ~30.
            assert.ok(took >= 240 && took < 5000, `took ${took} ms`); // libuv timers count from the loop's cached clock
            assert.ok(ticks >= 3, `only ${ticks} timer ticks in ${took} ms while the call was blocked`);
            await assert.rejects(c.read('/x', { signal: AbortSignal.abort() }), { name: 'AbortError' });
            const ac = new AbortController();
            const p = c.write('/x', 'v', { signal: ac.signal });
            setTimeout(() => ac.abort(), 50);
            await assert.rejects(p, { name: 'AbortError' });
          } finally {
            for (const s of sockets) s.destroy();
            await c.close();
          }
        });
      });
    });
  }
}
