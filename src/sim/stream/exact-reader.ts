// Reads exact byte counts from a Readable (the migration stream's records).
import type { Readable } from 'node:stream';

export class ExactReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private readonly iterator: AsyncIterator<Buffer | string>;

  constructor(input: Readable) {
    this.iterator = input[Symbol.asyncIterator]();
  }

  async read(count: number): Promise<Buffer> {
    while (this.buffered < count) {
      const next = await this.iterator.next();
      if (next.done) throw new Error(`stream truncated: wanted ${count} bytes, ${this.buffered} left`);
      const chunk = typeof next.value === 'string' ? Buffer.from(next.value) : next.value;
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
    const out = all.subarray(0, count);
    const rest = all.subarray(count);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }

  /** Stops iterating (without destroying the input when it is already done). */
  release(): void {
    // Nothing waits for this: a rejection here must not become an unhandled one.
    this.iterator.return?.()?.catch(() => undefined);
  }
}
