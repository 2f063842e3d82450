// Choosing and opening a transport: clear errors when libxenstore is missing or nothing listens.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LibXenstoreClient, LibxenstoreUnavailableError, loadLibxenstore } from '../../bindings/xenstore.js';
import { openXenstore, XsClient } from '../../src/xenstore/index.js';
import { XsError } from '../../src/xenstore/types.js';
import { SimXenstored } from '../../src/sim/xenstored/index.js';

function libUnavailable(): string | undefined {
  try {
    loadLibxenstore();
    return undefined;
  } catch (e) {
    return `libxenstore.so.4 not loadable (Debian package libxenstore4): ${(e as Error).message}`;
  }
}

describe('xenstore transports', () => {
  it('names the library when it cannot be loaded', async () => {
    assert.throws(() => loadLibxenstore('libxenstore-not-here.so.9'), (e: unknown) => {
      assert.ok(e instanceof LibxenstoreUnavailableError);
      assert.match(e.message, /libxenstore-not-here\.so\.9/);
      assert.match(e.message, /native/);
      return true;
    });
    await assert.rejects(LibXenstoreClient.open({ library: 'libxenstore-not-here.so.9' }), LibxenstoreUnavailableError);
  });

  it('rejects an unknown transport and a stream with libxenstore', async () => {
    await assert.rejects(openXenstore({ transport: 'bogus' as never, path: '/nonexistent' }), /unknown xenstore transport "bogus"/);
    await assert.rejects(openXenstore({ transport: 'libxenstore', stream: () => new SimXenstored().connectAs(0) }), /cannot use a stream/);
  });

  it('uses the native client for a stream factory', async () => {
    const sim = new SimXenstored();
    const c = await openXenstore({ stream: () => sim.connectAs(0) });
    try {
      assert.ok(c instanceof XsClient);
      assert.equal(await c.getDomainPath(3), '/local/domain/3');
    } finally {
      await c.close();
      await sim.close();
    }
  });

  it('libxenstore: a socket nobody listens on fails with ENOENT naming the path', { skip: libUnavailable() }, async () => {
    const path = join(tmpdir(), `xs-missing-${process.pid}.sock`);
    const before = process.env.XENSTORED_PATH;
    await assert.rejects(LibXenstoreClient.open({ path }), (e: unknown) => e instanceof XsError && e.errno === 'ENOENT' && e.path === path);
    assert.equal(process.env.XENSTORED_PATH, before, 'the environment is restored after xs_open');
  });
});
