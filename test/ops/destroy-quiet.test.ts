// destroyQuiet is what every teardown and undo uses to remove a domain; it must treat "already gone" as done
// (a dying domain can finish going between the lookup and the destroy) and let any other error through.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { destroyQuiet } from '../../src/ops/start.js';
import { HypervisorError } from '../../src/hypervisor/types.js';
import type { OpsEnv } from '../../src/ops/env.js';

function envWith(destroyErrno: string | null): { env: OpsEnv; released: number[] } {
  const released: number[] = [];
  const hv = {
    getDomainInfo: async (domid: number) => ({ domid, dying: true }),
    destroy: async () => {
      if (destroyErrno) throw new HypervisorError('destroy', destroyErrno, 'from the test');
    },
  };
  const xs = { releaseDomain: async (domid: number) => void released.push(domid) };
  return { env: { hv, xs } as unknown as OpsEnv, released };
}

test('a domain that vanishes between lookup and destroy (ESRCH) counts as destroyed', async () => {
  const { env, released } = envWith('ESRCH');
  await destroyQuiet(env, 7);
  assert.deepEqual(released, [7], 'still released from xenstored');
});

test('any other destroy error reaches the caller', async () => {
  const { env, released } = envWith('EIO');
  await assert.rejects(destroyQuiet(env, 7), (err: unknown) => err instanceof HypervisorError && err.errno === 'EIO');
  assert.deepEqual(released, []);
});
