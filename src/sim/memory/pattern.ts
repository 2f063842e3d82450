// Deterministic page contents for pages a simulated guest dirtied: a function of
// (guest seed, pfn, generation), so the sim stores one number per such page and the bytes
// still change every time the guest writes the page again.

/** Fills `out` (a 4 KiB page) with the pattern of (seed, pfn, generation). */
export function fillPattern(out: Uint8Array, seed: number, pfn: number, generation: number): void {
  const words = new Uint32Array(out.buffer, out.byteOffset, out.length >>> 2);
  let state = mix(seed ^ Math.imul(pfn, 0x9e3779b1) ^ Math.imul(generation, 0x85ebca6b)) || 0x6d2b79f5;
  for (let i = 0; i < words.length; i++) {
    // xorshift32: cheap, and never yields an all-zero page (state is never 0).
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    words[i] = state >>> 0;
  }
}

/** murmur3's 32-bit finaliser. */
export function mix(value: number): number {
  let h = value | 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
