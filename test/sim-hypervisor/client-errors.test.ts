// The daemon's sim backend (src/hypervisor/sim.ts) against a scripted server: which error a failed
// save reports when the server's reply and its stream connection arrive in either order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeFrame, FrameDecoder } from '../../src/hypervisor/rpc-frames.js';
import { HypervisorError } from '../../src/hypervisor/types.js';
import { SimHypervisorBackend } from '../../src/hypervisor/sim.js';

test('a save the server fails reports the server\'s error even while the stream connection is still open', { timeout: 10_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sim-hv-client-'));
  const sockets = new Set<Socket>();
  // Answers the stream handshake, then fails every call at once with ESRCH and leaves the stream
  // connection open: the client closes it itself, and that close must not become the save's error.
  const server = createServer((socket) => {
    sockets.add(socket);
    const decoder = new FrameDecoder();
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      for (const msg of decoder.push(chunk) as Array<Record<string, unknown>>) {
        if (msg['t'] === 'stream') socket.write(encodeFrame({ t: 'stream', token: 'tok' }));
        else if (msg['t'] === 'call') {
          socket.write(encodeFrame({ t: 'res', id: msg['id'], error: { call: msg['call'], errno: 'ESRCH', detail: 'domain died during save' } }));
        }
      }
    });
  });
  const socketPath = join(dir, 'hv.sock');
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  const backend = new SimHypervisorBackend(socketPath);
  const fd = openSync(join(dir, 'out.stream'), 'w');
  try {
    await assert.rejects(
      backend.save(3, fd, { live: false }, { suspend: async () => undefined }),
      (err: unknown) => err instanceof HypervisorError && err.errno === 'ESRCH',
    );
  } finally {
    closeSync(fd);
    await backend.close();
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  }
});
