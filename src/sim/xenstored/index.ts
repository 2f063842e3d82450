// The simulated host's xenstored: Xen 4.17 C xenstored semantics over a unix socket (every socket
// client is dom0, as with the real daemon) and over in-process connections acting as a given domid.
// Replies, watch events (including their order and the generation counts DIRECTORY_PART shows) match
// the C daemon byte for byte as a dom0 socket client sees them. Not modelled: memory accounted to
// queued output, the 20 s drop of unread guest watch events, throttling of guests with 20 requests
// outstanding. Differences by design: a domain may have several in-process connections (and may open
// them before it is introduced); re-introducing dom0 does not reset dom0's in-process connections.
import { chmod, lstat, unlink } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { Connection, type ConnectionSink } from './connection.js';
import { XsCore, type Quotas } from './core.js';
import { DOMID_FIRST_RESERVED, type DomainState } from './domains.js';
import { processMessage, type HandlerContext } from './handlers.js';
import { useReadBuffer, writeSocket } from './socket-io.js';
import { checkDomains, resetConnection, type ConnectionCloser } from './lifecycle.js';

export interface SimXenstoredOptions {
  quotas?: Partial<{ nodes: number; watches: number; transactions: number; valueSize: number }>;
  latencyMs?: number;
  logger?: Logger;
  /** asked by domainStateChanged(): the hypervisor's view of a domain */
  domainStatus?: (domid: number) => 'running' | 'shutdown' | 'dying' | 'gone';
}

/** Without a hypervisor to ask, every ordinary domid exists (as the C daemon under the test shim sees it). */
/** A client that stops reading while this much output is queued for it is dropped, not buffered forever. */
const MAX_QUEUED_OUTPUT = 32 * 1024 * 1024;

/** Whether something accepts connections on `path` (a live socket is not a stale one). */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

function defaultDomainStatus(domid: number): DomainState {
  return domid < DOMID_FIRST_RESERVED ? 'running' : 'gone';
}

export class SimXenstored {
  private readonly core: XsCore;
  private readonly ctx: HandlerContext;
  private readonly log: Logger | undefined;
  private latencyMs: number;
  private server: Server | undefined;
  private socketPath: string | undefined;
  private readonly sockets = new Set<Socket>();
  /** Connections with output queued since the last flush (a connection may appear twice: see flush). */
  private dirty: Connection[] = [];
  private closing = false;
  /** Where every socket's bytes are read to (see socket-io.ts); a request's payload is only used while handled. */
  private readonly readBuffer = Buffer.allocUnsafe(64 * 1024);

  constructor(opts: SimXenstoredOptions = {}) {
    this.log = opts.logger;
    this.latencyMs = opts.latencyMs ?? 0;
    const status = opts.domainStatus ?? defaultDomainStatus;
    this.core = new XsCore(opts.quotas ?? ({} as Partial<Quotas>), status, opts.logger);
    const closer: ConnectionCloser = { dropConnection: (conn, reason) => this.drop(conn, reason) };
    this.ctx = { core: this.core, closer };
  }

  async listen(socketPath: string): Promise<void> {
    if (this.server) throw new Error(`xenstored already listening on ${this.socketPath}`);
    try {
      const st = await lstat(socketPath);
      if (!st.isSocket()) throw new Error(`${socketPath} exists and is not a socket`);
      if (await answers(socketPath)) throw new Error(`${socketPath} is in use by a running xenstored`);
      await unlink(socketPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const server = createServer({ allowHalfOpen: false }, (sock) => this.accept(sock));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // Restrictive umask window is not available per call; chmod right after bind instead.
      server.listen(socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    await chmod(socketPath, 0o600);
    server.on('error', (err) => this.log?.error({ err }, 'xenstored socket error'));
    this.server = server;
    this.socketPath = socketPath;
    this.log?.info({ socketPath }, 'xenstored listening');
  }

  private accept(sock: Socket): void {
    if (this.closing) {
      sock.destroy();
      return;
    }
    this.sockets.add(sock);
    sock.setNoDelay?.(true);
    const sink: ConnectionSink = {
      write: (data) => {
        if (sock.destroyed) return;
        writeSocket(sock, data);
        if (sock.writableLength > MAX_QUEUED_OUTPUT) this.drop(conn, 'client does not read its replies');
      },
      close: () => {
        sock.end();
        sock.destroySoon?.();
      },
    };
    const conn = this.newConnection(0, false, sink);
    // Requests are framed and handled synchronously, so every socket can share one read buffer.
    const readBuffer = this.readBuffer;
    if (!useReadBuffer(sock, readBuffer, (n) => this.input(conn, readBuffer, n))) {
      sock.on('data', (chunk: Buffer) => this.input(conn, chunk));
    }
    sock.on('error', () => undefined);
    sock.on('close', () => {
      this.sockets.delete(sock);
      this.forget(conn);
    });
  }

  connectAs(domid: number): Duplex {
    if (!Number.isInteger(domid) || domid < 0 || domid >= DOMID_FIRST_RESERVED) {
      throw new RangeError(`connectAs: domid must be an integer in [0, ${DOMID_FIRST_RESERVED}), got ${domid}`);
    }
    if (this.closing) throw new Error('xenstored is closed');
    let conn: Connection | undefined;
    let ended = false;
    const duplex = new Duplex({
      read() {},
      write: (chunk: Buffer, _enc, cb) => {
        if (conn && !conn.closed) this.input(conn, chunk);
        cb();
      },
      final: (cb) => {
        // The guest hung up: end our side too, so the stream closes completely.
        if (conn) this.drop(conn, 'client closed its side');
        cb();
      },
      destroy: (err, cb) => {
        if (conn) this.forget(conn);
        cb(err);
      },
    });
    const sink: ConnectionSink = {
      write: (data) => {
        if (ended) return;
        duplex.push(data);
        if (duplex.readableLength > MAX_QUEUED_OUTPUT && conn) this.drop(conn, 'client does not read its replies');
      },
      close: () => {
        if (ended) return;
        ended = true;
        duplex.push(null);
      },
    };
    conn = this.newConnection(domid, true, sink);
    return duplex;
  }

  private newConnection(domid: number, asDomain: boolean, sink: ConnectionSink): Connection {
    const domain = asDomain ? this.core.domains.findOrAlloc(domid, this.core.generation) : null;
    const conn = new Connection(domid, domain, sink, (c) => this.dirty.push(c));
    domain?.conns.add(conn);
    this.core.connections.add(conn);
    this.core.connOrder.push(conn);
    return conn;
  }

  private readonly handle = (conn: Connection, type: number, _reqId: number, txId: number, payload: Buffer): void => {
    try {
      processMessage(this.ctx, conn, type, txId, payload);
    } catch (err) {
      // A bug must cost one request, not the daemon.
      this.log?.error({ err, type }, 'xenstored request failed');
      conn.transaction = null;
      conn.error('EIO');
    }
  };

  private input(conn: Connection, chunk: Buffer, end = chunk.length): void {
    const bad = conn.feed(chunk, this.handle, end);
    if (bad) {
      this.log?.warn({ domid: conn.id, reason: bad }, 'dropping xenstore connection');
      this.flush();
      this.drop(conn, bad);
    }
    this.flush();
  }

  /** Writes everything queued, one write per connection. */
  private flush(): void {
    const conns = this.dirty;
    if (conns.length === 0) return;
    // A write may run a client's code that sends more (in-process streams): that flushes separately.
    this.dirty = [];
    for (const conn of conns) {
      // Empty when forgotten since, or when listed twice (forgotten, then an error queued).
      const data = conn.takeOutput();
      if (!data) continue;
      if (this.latencyMs > 0) setTimeout(() => conn.write(data), this.latencyMs);
      else conn.write(data);
    }
  }

  /** ignore_connection / destroy_conn: watches and transactions go, then the transport. */
  private drop(conn: Connection, reason: string): void {
    if (conn.closed) return;
    this.log?.debug({ domid: conn.id, reason }, 'closing xenstore connection');
    this.forget(conn);
    conn.closeTransport();
  }

  private forget(conn: Connection): void {
    if (!this.core.connections.has(conn)) return;
    resetConnection(this.core, conn);
    conn.discardOutput();
    this.core.connections.delete(conn);
    this.core.removeFromOrder(conn);
    conn.domain?.conns.delete(conn);
    conn.closed = true;
  }

  isIntroduced(domid: number): boolean {
    return !!this.core.domains.find(domid)?.introduced;
  }

  domainStateChanged(): void {
    checkDomains(this.core, this.ctx.closer);
    this.flush();
  }

  setLatency(ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`latency must be >= 0 ms, got ${ms}`);
    this.latencyMs = ms;
  }

  stats(): { nodes: number; connections: number; watches: number; transactions: number } {
    let watches = 0;
    let transactions = 0;
    for (const c of this.core.connections) {
      watches += c.watches.length;
      transactions += c.transactions.size;
    }
    return { nodes: this.core.nodeCount, connections: this.core.connections.size, watches, transactions };
  }

  async close(): Promise<void> {
    this.closing = true;
    this.flush();
    for (const conn of [...this.core.connections]) this.drop(conn, 'xenstored closing');
    for (const sock of this.sockets) sock.destroy();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    if (this.socketPath) {
      await unlink(this.socketPath).catch(() => undefined);
      this.socketPath = undefined;
    }
  }
}
