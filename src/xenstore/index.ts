// Entry point of the daemon's xenstore layer: openXenstore() picks the transport.
//
// Transport choice: the issue makes the native client — libxenstore, the library every Xen toolstack links —
// the default, so 'libxenstore' is used whenever libxenstore.so.4 loads; on a machine without it (no
// libxenstore4 package, or a sim-only host) the pure-Node socket client takes over and a log line says so. Both
// implement the same XenstoreClient and pass the same test suite; config `transport` forces one of them.
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { XenstoreClient } from './types.js';
import { XsClient } from './client.js';

export { XsClient, type XsClientOptions } from './client.js';
export { XsConnectionError, XsProtocolError } from './errors.js';
export { XsError, XsTimeoutError, defaultSocketPath } from './types.js';
export type { CallOptions, Transaction, Watch, WatchEvent, XenstoreClient, XsOps } from './types.js';

export type XenstoreTransport = 'native' | 'libxenstore';

export interface XenstoreConfig {
  /** Default: 'libxenstore' when libxenstore.so.4 loads, else 'native'. */
  transport?: XenstoreTransport;
  /** Socket path (both transports); default $XENSTORED_PATH, $XENSTORED_RUNDIR/socket, /var/run/xenstored/socket. */
  path?: string;
  /** Native transport only: open the connection through this instead of a unix socket. */
  stream?: () => Duplex | Promise<Duplex>;
  timeoutMs?: number;
  reconnect?: { minDelayMs?: number; maxDelayMs?: number } | false;
  /** libxenstore transport only: handles in its pool (default 4). */
  handles?: number;
  /** libxenstore transport only: watch-connection health check period in ms (default 1000). */
  healthCheckMs?: number;
  logger?: Logger;
}

/** The transport that openXenstore() would use without an explicit `transport`. */
export async function defaultTransport(logger?: Logger): Promise<XenstoreTransport> {
  try {
    const { loadLibxenstore } = await import('../../bindings/xenstore-lib.js');
    loadLibxenstore();
    return 'libxenstore';
  } catch (err) {
    logger?.info({ err: (err as Error).message }, 'xenstore: libxenstore.so.4 not loadable, using the native socket client');
    return 'native';
  }
}

export async function openXenstore(config: XenstoreConfig = {}): Promise<XenstoreClient> {
  const transport = config.transport ?? (config.stream ? 'native' : await defaultTransport(config.logger));
  if (transport === 'native') {
    return XsClient.connect({
      path: config.path,
      stream: config.stream,
      timeoutMs: config.timeoutMs,
      reconnect: config.reconnect,
      logger: config.logger,
    });
  }
  if (transport !== 'libxenstore') throw new Error(`unknown xenstore transport ${JSON.stringify(transport)} (expected 'native' or 'libxenstore')`);
  if (config.stream) throw new Error("xenstore transport 'libxenstore' cannot use a stream factory; use transport 'native'");
  const { LibXenstoreClient } = await import('../../bindings/xenstore.js');
  return LibXenstoreClient.open({
    path: config.path,
    timeoutMs: config.timeoutMs,
    reconnect: config.reconnect,
    handles: config.handles,
    healthCheckMs: config.healthCheckMs,
    logger: config.logger,
  });
}
