// The guest memory model: PfnRanges (holes) against a Set, balloon order, and the lazy dirtier's cost bound.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PfnRanges } from '../../src/sim/memory/pfn-ranges.js';
import { GuestMemory } from '../../src/sim/memory/guest-memory.js';

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

test('PfnRanges agrees with a Set after 3,000 random range adds and deletes; ranges stay merged', () => {
  const rand = rng(7);
  const ranges = new PfnRanges();
  const model = new Set<number>();
  for (let step = 0; step < 3000; step++) {
    const start = Math.floor(rand() * 500);
    const end = start + Math.floor(rand() * 40);
    if (rand() < 0.5) {
      ranges.addRange(start, end);
      for (let p = start; p < end; p++) model.add(p);
    } else {
      ranges.deleteRange(start, end);
      for (let p = start; p < end; p++) model.delete(p);
    }
    if (step % 100 === 0 || step === 2999) {
      assert.equal(ranges.size, model.size, `size at step ${step}`);
      for (let p = 0; p < 560; p++) assert.equal(ranges.has(p), model.has(p), `pfn ${p} at step ${step}`);
      let previousEnd = -1;
      for (const [s, e] of ranges.ranges()) {
        assert.ok(s < e && s > previousEnd, `range [${s}, ${e}) after ${previousEnd}: sorted, non-empty, not touching`);
        previousEnd = e;
      }
    }
  }
  assert.equal(ranges.delete(10_000), false);
  ranges.add(10_000);
  assert.equal(ranges.delete(10_000), true);
});

test('GuestMemory balloon: the highest pages go first, the lowest holes fill first, contents of released pages are dropped', () => {
  const mem = new GuestMemory(1);
  mem.populateRange(100);
  const page = new Uint8Array(4096).fill(7);
  mem.write(90, page);
  mem.release(10); // a hole low down
  assert.equal(mem.releaseHighest(20), 20);
  assert.equal(mem.presentPages, 79);
  assert.ok(!mem.isPresent(99) && !mem.isPresent(80) && mem.isPresent(79) && !mem.isPresent(10));
  assert.equal(mem.touchedPages, 0, 'the written page at pfn 90 went with its pfn');
  assert.equal(mem.populateLowestHoles(5), 5);
  assert.ok(mem.isPresent(10) && mem.isPresent(83) && !mem.isPresent(84));
  assert.equal(mem.populateLowestHoles(1_000), 16, 'never past the p2m');
  assert.equal(mem.presentPages, 100);
  assert.equal(mem.releaseHighest(1_000), 100);
  assert.equal(mem.presentPages, 0);
});

test('a dirtying guest left unobserved for days costs its next observer one pass over its pages, not every write', async () => {
  const { GuestDirtier } = await import('../../src/sim/memory/dirtier.js');
  const mem = new GuestMemory(3);
  mem.populateRange(16 * 256); // 16 MiB
  mem.release(100); // a hole stays a hole
  mem.enableLogDirty();
  const dirtier = new GuestDirtier();
  dirtier.setRate(10_000);
  const started = performance.now();
  const writes = dirtier.advance(mem, 3 * 24 * 3600 * 1000); // three days: 2.6 billion writes
  const tookMs = performance.now() - started;
  assert.equal(writes, 10_000 * 3 * 24 * 3600);
  assert.ok(tookMs < 2_000, `took ${tookMs.toFixed(0)} ms`);
  assert.equal(mem.touchedPages, 16 * 256 - 4 - 1, 'every page but the boot pages and the hole was written');
  assert.equal(mem.peekDirty().length, 16 * 256 - 4 - 1);
  assert.ok(!mem.isPresent(100));
  // Fewer writes than pages keep their exact count of (hashed) pfns.
  mem.cleanDirty();
  dirtier.writePages(mem, 10);
  const dirty = mem.peekDirty().length;
  assert.ok(dirty >= 1 && dirty <= 10, `${dirty} pages dirty after 10 writes`);
});
