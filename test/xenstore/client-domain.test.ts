// The native client over the sim xenstored's in-process per-domain connections (`stream: () => sim.connectAs(domid)`),
// as the sim's guests and backends use it: guest-side semantics a unix socket (always dom0) cannot show —
// relative paths, EACCES, quota errors — and reconnection through the stream factory.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SimXenstored } from '../../src/sim/xenstored/index.js';
import { XsClient } from '../../src/xenstore/client.js';
import { XsError } from '../../src/xenstore/types.js';

const isErrno = (errno: string) => (e: unknown) => e instanceof XsError && e.errno === errno;

describe('native client over sim per-domain connections', { timeout: 30_000 }, () => {
  let sim: SimXenstored;
  let dom0: XsClient;
  before(async () => {
    sim = new SimXenstored({ quotas: { nodes: 20 } });
    dom0 = await XsClient.connect({ stream: () => sim.connectAs(0), timeoutMs: 2000 });
    await dom0.mkdir('/local/domain/5');
    await dom0.setPerms('/local/domain/5', [{ id: 5, perm: 'n' }]);
    await dom0.write('/local/domain/0/secret', 's');
    await dom0.setPerms('/local/domain/0/secret', [{ id: 0, perm: 'n' }]);
  });
  after(async () => {
    await dom0?.close();
    await sim?.close();
  });

  it('resolves relative paths against the domain home and enforces permissions (EACCES)', async () => {
    const guest = await XsClient.connect({ stream: () => sim.connectAs(5), timeoutMs: 2000 });
    try {
      await guest.write('data/x', 'from-guest');
      assert.equal(await dom0.read('/local/domain/5/data/x'), 'from-guest');
      assert.equal(await guest.read('/local/domain/5/data/x'), 'from-guest');
      await assert.rejects(guest.read('/local/domain/0/secret'), isErrno('EACCES'));
      await assert.rejects(guest.write('/local/domain/0/secret', 'x'), isErrno('EACCES'));
      assert.equal(await dom0.read('/local/domain/0/secret'), 's');
    } finally {
      await guest.close();
    }
  });

  it('reports a typed quota error when a guest exceeds its node quota', async () => {
    const guest = await XsClient.connect({ stream: () => sim.connectAs(5), timeoutMs: 2000 });
    try {
      let err: unknown;
      for (let i = 0; i < 40 && !err; i++) await guest.write(`q/n${i}`, 'v').catch((e: unknown) => (err = e));
      // Xen 4.17's C xenstored answers ENOSPC for the node quota (EQUOTA for others); either is a typed XsError.
      assert.ok(err instanceof XsError && ['ENOSPC', 'EQUOTA'].includes(err.errno), `got ${String(err)}`);
      assert.match((err as Error).message, /write q\/n\d+: E/);
    } finally {
      await guest.close();
    }
  });

  it('reconnects through the stream factory when the connection ends, keeping its watches', async () => {
    let opened = 0;
    let current: ReturnType<SimXenstored['connectAs']> | undefined;
    const c = await XsClient.connect({
      stream: () => {
        opened++;
        current = sim.connectAs(0);
        return current;
      },
      timeoutMs: 2000,
      reconnect: { minDelayMs: 10, maxDelayMs: 50 },
    });
    // Nothing else holds the event loop while the client waits to reconnect (its backoff timer is unreferenced).
    const keepAlive = setInterval(() => undefined, 1000);
    try {
      const w = await c.watch('/local/domain/5/watched', 'tw');
      const it = w[Symbol.asyncIterator]();
      assert.equal((await it.next()).value?.path, '/local/domain/5/watched');
      const reconnected = new Promise<void>((res) => c.once('reconnected', () => res()));
      current!.destroy();
      await reconnected;
      assert.equal(opened, 2);
      assert.equal((await it.next()).value?.path, '/local/domain/5/watched', 're-registered watch fires once');
      await dom0.write('/local/domain/5/watched/k', 'v');
      assert.equal((await it.next()).value?.path, '/local/domain/5/watched/k');
    } finally {
      clearInterval(keepAlive);
      await c.close();
    }
  });
});
