// The last bytes a guest printed on its console, bounded: the oldest output goes first once the cap is reached,
// so a guest that prints forever costs the host a fixed amount of memory.

export const CONSOLE_BUFFER_BYTES = 64 * 1024;

export class OutputBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  /** Bytes dropped from the front since the buffer was made. */
  dropped = 0;

  constructor(readonly capacity = CONSOLE_BUFFER_BYTES) {}

  get length(): number {
    return this.size;
  }

  append(bytes: Buffer): void {
    if (bytes.length === 0) return;
    // A single write larger than the cap keeps only its tail.
    const kept = bytes.length > this.capacity ? bytes.subarray(bytes.length - this.capacity) : bytes;
    this.dropped += bytes.length - kept.length;
    this.chunks.push(kept);
    this.size += kept.length;
    while (this.size > this.capacity) {
      const first = this.chunks[0]!;
      const excess = this.size - this.capacity;
      if (first.length <= excess) {
        this.chunks.shift();
        this.size -= first.length;
        this.dropped += first.length;
      } else {
        this.chunks[0] = first.subarray(excess);
        this.size -= excess;
        this.dropped += excess;
      }
    }
  }

  contents(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }
}
