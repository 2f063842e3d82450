// The accepted sockets of the sim xenstored read into one shared buffer and write straight to their fd
// (socket-io.ts): on this Node the internals used are there, the bytes delivered are the bytes sent
// whatever the read boundaries, writes keep their order when the kernel buffer fills, and a client
// hanging up still closes the socket.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { useReadBuffer, writeSocket } from '../../src/sim/xenstored/socket-io.js';

test('an accepted socket reads into the given buffer and still ends and closes', { timeout: 10_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sim-xenstored-socket-read-'));
  const socketPath = join(dir, 'socket');
  const buf = Buffer.alloc(64);
  const received: Buffer[] = [];
  const server = createServer((sock) => {
    accepted = useReadBuffer(sock, buf, (n) => {
      // The callback sees bytes at the start of the shared buffer, valid only now: copy them.
      received.push(Buffer.from(buf.subarray(0, n)));
      if (n === 0 || n > buf.length) throw new Error(`bad read size ${n}`);
    });
    sock.on('error', () => undefined);
    sock.once('close', () => closed());
  });
  let accepted: boolean | undefined;
  let closed!: () => void;
  const wasClosed = new Promise<void>((r) => (closed = r));
  try {
    await new Promise<void>((r) => server.listen(socketPath, r));
    const client: Socket = connect(socketPath);
    await new Promise<void>((r) => client.once('connect', r));
    // More than the buffer holds in one write: it arrives in several reads.
    const big = Buffer.from(Array.from({ length: 1000 }, (_, i) => i & 0xff));
    client.write(big);
    await new Promise<void>((r) => {
      const check = () => (Buffer.concat(received).length >= big.length ? r() : setTimeout(check, 5));
      check();
    });
    assert.equal(accepted, true, 'this Node lets an accepted socket read into a user buffer');
    assert.ok(received.length >= Math.ceil(big.length / buf.length), 'reads are at most the buffer size');
    assert.deepEqual(Buffer.concat(received), big);
    client.end();
    await wasClosed;
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a socket already given a read buffer is left alone', { timeout: 10_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sim-xenstored-socket-read-'));
  const socketPath = join(dir, 'socket');
  const results: boolean[] = [];
  const server = createServer((sock) => {
    results.push(useReadBuffer(sock, Buffer.alloc(16), () => undefined));
    results.push(useReadBuffer(sock, Buffer.alloc(16), () => undefined));
    sock.destroy();
  });
  try {
    await new Promise<void>((r) => server.listen(socketPath, r));
    const client = connect(socketPath);
    client.on('error', () => undefined);
    await new Promise<void>((r) => client.once('close', () => r()));
    assert.deepEqual(results, [true, false]);
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  }
});

test('writes keep their order when the kernel takes only part of them, and never throw', { timeout: 20_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sim-xenstored-socket-write-'));
  const socketPath = join(dir, 'socket');
  const server = createServer();
  let serverSide!: Socket;
  const accepted = new Promise<void>((r) => {
    server.once('connection', (sock) => {
      serverSide = sock;
      sock.on('error', () => undefined);
      r();
    });
  });
  try {
    await new Promise<void>((r) => server.listen(socketPath, r));
    const client = connect(socketPath);
    client.pause();
    await accepted;
    // 4 MiB in numbered 4 KiB blocks while the client reads nothing: the socket buffer fills, the
    // direct writes meet EAGAIN or a short write and the rest queues in the stream.
    const blocks = 1024;
    let sawQueued = false;
    for (let i = 0; i < blocks; i++) {
      const block = Buffer.alloc(4096, i & 0xff);
      block.writeUInt32LE(i, 0);
      writeSocket(serverSide, block);
      if (i === 0) {
        assert.equal(serverSide.writableLength, 0);
        assert.equal(serverSide.bytesWritten, 0, 'the first block went straight to the fd, not through the stream');
      }
      if (serverSide.writableLength > 0) sawQueued = true;
    }
    assert.equal(sawQueued, true, 'the test filled the kernel buffer');
    const chunks: Buffer[] = [];
    let got = 0;
    await new Promise<void>((r) => {
      client.on('data', (d: Buffer) => {
        chunks.push(d);
        got += d.length;
        if (got >= blocks * 4096) r();
      });
      client.resume();
    });
    const all = Buffer.concat(chunks);
    assert.equal(all.length, blocks * 4096);
    for (let i = 0; i < blocks; i++) {
      assert.equal(all.readUInt32LE(i * 4096), i, `block ${i} in place`);
      assert.equal(all[i * 4096 + 4095], i & 0xff);
    }
    // The peer gone: writing does not throw (the stream reports the error as it always did).
    const closed = new Promise<void>((r) => serverSide.once('close', () => r()));
    client.destroy();
    await new Promise((r) => setTimeout(r, 50));
    for (let i = 0; i < 3; i++) writeSocket(serverSide, Buffer.from('after close'));
    await closed;
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  }
});
