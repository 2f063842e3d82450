// The smallest client of the sim host's hypervisor socket (frames of src/hypervisor/rpc-frames.ts), for
// these tests only: plain calls, no save/restore streams. The daemon has the real one.
import net from 'node:net';
import { FrameDecoder, encodeFrame, type ServerMessage } from '../../src/hypervisor/rpc-frames.js';
import { HypervisorError } from '../../src/hypervisor/types.js';

export class HvClient {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  private constructor(private readonly sock: net.Socket) {
    const dec = new FrameDecoder();
    sock.on('data', (c: Buffer) => {
      for (const m of dec.push(c) as ServerMessage[]) {
        if (m?.t !== 'res') continue;
        const p = this.pending.get(m.id);
        if (!p) continue;
        this.pending.delete(m.id);
        if (m.error) p.reject(new HypervisorError(m.error.call, m.error.errno, m.error.detail));
        else p.resolve(m.ok);
      }
    });
    sock.on('close', () => {
      for (const p of this.pending.values()) p.reject(new Error('hypervisor connection closed'));
      this.pending.clear();
    });
  }

  static connect(path: string): Promise<HvClient> {
    return new Promise((resolve, reject) => {
      const s = net.createConnection(path);
      s.once('error', reject);
      s.once('connect', () => {
        s.off('error', reject);
        resolve(new HvClient(s));
      });
    });
  }

  call<T = unknown>(call: string, ...args: unknown[]): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.sock.write(encodeFrame({ t: 'call', id, call, args }));
    });
  }

  close(): void {
    this.sock.destroy();
  }
}
