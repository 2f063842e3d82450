// A short seeded fuzz run: the daemon answers every malformed request with a well-formed reply or
// closes that one connection, never dies, and other connections keep getting exact answers.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runFuzz } from './fuzz-core.js';

for (const seed of [1, 2, 3]) {
  test(`fuzz seed ${seed}: malformed frames, bad lengths, half packets, watch floods`, { timeout: 30_000 }, async () => {
    const report = await runFuzz({ seed, bursts: 250, durationMs: 4000 });
    assert.deepEqual(report.problems, []);
    assert.ok(report.witnessChecks > 50, `witness ran ${report.witnessChecks} times`);
    assert.ok(report.replies > 200, `${report.replies} replies`);
    // The run did exercise the error paths.
    assert.ok((report.errors.EINVAL ?? 0) > 0 && (report.errors.ENOSYS ?? 0) > 0, JSON.stringify(report.errors));
    assert.ok(report.reconnects > 0, 'no connection was ever dropped');
  });
}
